//! Progress and soft errors, reported to whoever runs the library.
//!
//! The library never prints: long operations take a `&dyn Progress`, and the
//! CLI decides whether that is a progress bar, log lines or nothing.

use crate::error::Error;
use std::path::Path;

/// Receives progress and warnings. Called from many threads.
pub trait Progress: Sync {
    /// Something could not be read or written; the operation goes on without it.
    fn warn(&self, _err: &Error) {}
    /// `n` more bytes were read (backup) or written (restore).
    fn bytes_read(&self, _n: u64) {}
    /// A file is finished; `bytes` of it were read or written.
    fn file_done(&self, _path: &Path, _bytes: u64) {}
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {}

/// Collects warnings as text (tests and JSON output).
#[derive(Default)]
pub struct Collect {
    pub warnings: std::sync::Mutex<Vec<String>>,
}

impl Progress for Collect {
    fn warn(&self, err: &Error) {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(err.to_string());
    }
}

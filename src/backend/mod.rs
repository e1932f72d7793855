//! Where repository files live. One trait, the seam for object storage.
//!
//! Names are relative paths with `/` separators: `config`, `data/ab/<id>`,
//! `index/<id>`, `snapshots/<id>`, `locks/<id>`.

pub mod local;
pub mod memory;

use crate::error::Result;
use crate::format::index::Bytes;
use std::sync::Arc;

/// Storage for immutable repository files.
///
/// Every method may be called from many threads at once.
pub trait Backend: Send + Sync {
    /// Store `data` as `name`, atomically and durably: when `put` returns `Ok`
    /// the whole file survives a crash, and no reader ever sees part of it.
    /// An existing file of that name is replaced (names are content hashes, so
    /// a replacement has the same bytes).
    fn put(&self, name: &str, data: &[u8]) -> Result<()>;

    /// Like [`Backend::put`] (atomic), but not necessarily durable: for lock
    /// files, which mean nothing after a crash (their holder is gone) and are
    /// written at every command's start, where an fsync costs latency.
    fn put_volatile(&self, name: &str, data: &[u8]) -> Result<()> {
        self.put(name, data)
    }

    /// The whole file.
    fn get(&self, name: &str) -> Result<Vec<u8>>;

    /// `len` bytes from `offset`. A range beyond the end is an error
    /// (`Corrupt`: the file is shorter than its index says).
    fn get_range(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>>;

    /// The file's length in bytes.
    fn size(&self, name: &str) -> Result<u64>;

    /// Every complete file below `dir` (`"data"` lists `data/ab/<id>`), sorted.
    /// Temporary files of unfinished writes are not listed.
    fn list(&self, dir: &str) -> Result<Vec<String>>;

    /// Remove a file. Removing a missing file is not an error.
    fn delete(&self, name: &str) -> Result<()>;

    /// Whether `name` exists.
    fn exists(&self, name: &str) -> Result<bool>;

    /// The file's bytes for in-place reading; local backends map it (index files
    /// are searched in place, so memory does not grow with the repository).
    fn map(&self, name: &str) -> Result<Bytes> {
        Ok(Arc::new(self.get(name)?))
    }

    /// Start writing a new file in `dir`, streamed rather than held in
    /// memory. Nothing is visible until [`Upload::commit`]; dropping an
    /// uncommitted upload discards it.
    fn upload(&self, dir: &str) -> Result<Box<dyn Upload>>;

    /// When the file was last written, where the backend knows.
    fn modified(&self, _name: &str) -> Result<Option<std::time::SystemTime>> {
        Ok(None)
    }

    /// Remove temporary files of writes that never finished (a killed
    /// process), older than `max_age`. Returns how many were removed.
    fn remove_stale_temp(&self, _max_age: std::time::Duration) -> Result<u64> {
        Ok(0)
    }

    /// A human-readable location, for messages.
    fn location(&self) -> String;
}

/// A file being written by [`Backend::upload`].
pub trait Upload: std::io::Write + Send {
    /// Make the bytes written durable and visible as `name`, atomically (the
    /// same contract as [`Backend::put`]).
    fn commit(self: Box<Self>, name: &str) -> Result<()>;
}

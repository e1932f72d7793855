//! The library's one error type.
//!
//! # Policy
//!
//! Variants are chosen by what the caller does about them, not by where they
//! come from:
//!
//! - [`Error::Io`]: the operating system refused something on a named path. The
//!   caller reports it; during a backup it is a soft error for that entry.
//! - [`Error::Corrupt`]: stored bytes are not what the format promises (bad magic,
//!   failed hash, truncated file). Never retried, never papered over: the object
//!   is named so `check` and the user can find it.
//! - [`Error::NotFound`]: a snapshot, path, blob or file that does not exist.
//! - [`Error::InvalidInput`]: the user asked for something impossible (bad
//!   snapshot prefix, a target that is not empty, a name that would escape).
//! - [`Error::UnsupportedVersion`]: an object of a format version this build
//!   does not read (written by a newer rewind): never "damaged", never skipped.
//! - [`Error::Locked`]: another process holds the repository.
//! - [`Error::ReadOnly`]: a write was attempted on something read-only (the mount).
//! - [`Error::Interrupted`]: SIGINT or SIGTERM asked the operation to stop
//!   ([`crate::interrupt`]); it stopped cleanly.
//!
//! The library never prints and never exits; `cli` turns errors into messages and
//! exit codes, `fuse` turns them into errnos.

use std::path::{Path, PathBuf};

/// Every fallible library function returns this.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{object} is damaged: {reason}")]
    Corrupt { object: String, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    UnsupportedVersion(String),
    #[error("repository is locked: {0}")]
    Locked(String),
    #[error("read-only: {0}")]
    ReadOnly(String),
    #[error("interrupted (signal {0})")]
    Interrupted(i32),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Stored bytes of `object` break the format.
    pub fn corrupt(object: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Error::Corrupt {
            object: object.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The raw OS error number, when this is an I/O error that has one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Attach a path to `std::io::Result`s.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

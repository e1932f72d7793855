//! Where repository objects live. One trait, the seam between the repository
//! and a place to keep bytes: a local directory ([`local`]), memory (tests),
//! S3-compatible object storage ([`s3`]), a directory on another server
//! ([`sftp`]). [`location`] parses what `--repo` names; [`counting`] counts
//! a backend's requests; [`retry`] is how the remote ones try again;
//! [`readahead`] turns their small pack reads into reads of whole windows.
//!
//! A backend stores whole, write-once objects named by their [`FileType`] and
//! a name (a hex id, or `config`). It knows nothing of the format: no codec,
//! no keys, no index. Renames, fsyncs and memory maps stay inside the local
//! backend; nothing above this module can tell a directory from a bucket.
//!
//! Every object has one relative path, built by [`object_path`] and nowhere
//! else:
//!
//! ```text
//! config              the repository's configuration
//! keys/<name>         key files
//! data/<ab>/<name>    packs, under the first two hex digits of their name
//! index/<name>        index files
//! snapshots/<name>    snapshot manifests
//! locks/<name>        locks
//! ```

pub mod counting;
pub mod http;
pub mod local;
pub mod location;
pub mod memory;
pub mod readahead;
pub mod retry;
mod runtime;
pub mod s3;
pub mod sftp;

use crate::error::{Error, Result};
use std::time::SystemTime;

/// What a repository object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileType {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
}

impl FileType {
    /// Every type, in the order `init` creates their directories.
    pub const ALL: [FileType; 6] = [
        FileType::Config,
        FileType::Key,
        FileType::Pack,
        FileType::Index,
        FileType::Snapshot,
        FileType::Lock,
    ];

    /// The directory objects of this type live in (`""` for the config).
    pub fn dir(self) -> &'static str {
        match self {
            FileType::Config => "",
            FileType::Key => "keys",
            FileType::Pack => "data",
            FileType::Index => "index",
            FileType::Snapshot => "snapshots",
            FileType::Lock => "locks",
        }
    }

    /// The largest object of this type a reader accepts. Sizes come from
    /// storage we do not trust: a reader never allocates beyond them.
    pub fn max_size(self) -> u64 {
        match self {
            FileType::Config | FileType::Key => 1 << 20,
            FileType::Lock => 64 << 10,
            FileType::Snapshot => 64 << 20,
            // An index of ~4 TiB of data; prune splits larger ones.
            FileType::Index => 1 << 30,
            // Packs are read by range, except by `check` (streamed).
            FileType::Pack => 4 << 30,
        }
    }

    /// The type's name in messages and reports: `pack`.
    pub fn name(self) -> &'static str {
        match self {
            FileType::Config => "config",
            FileType::Key => "key",
            FileType::Pack => "pack",
            FileType::Index => "index",
            FileType::Snapshot => "snapshot",
            FileType::Lock => "lock",
        }
    }

    /// A name in messages: `pack 1a2b3c4d`.
    pub fn describe(self, name: &str) -> String {
        match self {
            FileType::Config => "config".into(),
            _ => format!("{} {name}", self.name()),
        }
    }
}

/// Whether `name` may name an object of type `t`: lowercase hex of 2 to 64
/// digits (ids, and the random names of locks and keys), or `config`.
pub fn valid_name(t: FileType, name: &str) -> bool {
    match t {
        FileType::Config => name == "config",
        _ => {
            (2..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
    }
}

/// The relative path of an object: the one place names become paths.
pub fn object_path(t: FileType, name: &str) -> String {
    match t {
        FileType::Config => "config".into(),
        FileType::Pack => format!("data/{}/{name}", &name[..2.min(name.len())]),
        _ => format!("{}/{name}", t.dir()),
    }
}

/// An object as a listing reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
    /// When the object was last written, by the storage's own clock (a file
    /// system's mtime, an object store's Last-Modified), where it has one.
    pub modified: Option<SystemTime>,
}

/// Storage for write-once repository objects.
///
/// Every method may be called from many threads at once. Names passed in are
/// valid for their type ([`valid_name`]); a backend refuses others.
pub trait Backend: Send + Sync {
    /// A human-readable location, for messages. Never holds a secret.
    fn location(&self) -> String;

    /// Make the place a new repository goes (a directory, a bucket). Fails
    /// when it already holds a repository; succeeds when it is missing or
    /// empty.
    fn create(&self) -> Result<()>;

    /// Store `data` as object `name` of type `t`, atomically: no reader ever
    /// sees part of it. When `put` returns `Ok`, the object survives a crash
    /// (locks excepted: they mean nothing after a crash, and a backend may
    /// skip the wait for durability). An existing object of that name is
    /// replaced (names of stored data are ids: a replacement has the same
    /// content; a lock's holder rewrites its own).
    fn put(&self, t: FileType, name: &str, data: &[u8]) -> Result<()>;

    /// The whole object: `NotFound` when it does not exist, `Corrupt` when it
    /// is larger than [`FileType::max_size`] or not a plain object.
    fn get(&self, t: FileType, name: &str) -> Result<Vec<u8>>;

    /// `len` bytes from `offset`. A range beyond the end is `Corrupt` (the
    /// object is shorter than its index says).
    fn get_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> Result<Vec<u8>>;

    /// [`Backend::get_range`], in the pieces the bytes arrived in: a remote
    /// backend's response is not copied into one buffer (read-ahead windows,
    /// which are copied out of a frame at a time anyway).
    fn get_range_parts(&self, t: FileType, name: &str, offset: u64, len: usize) -> Result<Parts> {
        self.get_range(t, name, offset, len).map(Parts::from)
    }

    /// Every complete object of type `t`, in no particular order. Objects
    /// still being written are not listed, nor anything that a `get` would
    /// refuse (a symlink, a directory, a FIFO).
    fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>>;

    /// One object's size and time; `NotFound` when it does not exist.
    fn stat(&self, t: FileType, name: &str) -> Result<ObjectInfo>;

    /// Remove an object. Removing a missing one is not an error.
    fn delete(&self, t: FileType, name: &str) -> Result<()>;

    /// Remove leftovers of writes that never finished (a killed process),
    /// older than `max_age`. Returns how many were removed.
    fn remove_stale_temp(&self, _max_age: std::time::Duration) -> Result<u64> {
        Ok(0)
    }

    /// Whether reads are cheap local reads. Remote backends get their tree
    /// packs cached locally, and their requests counted.
    fn is_local(&self) -> bool {
        true
    }

    /// How long after a `put` returns a `list` is sure to show the object
    /// (zero: at once). The lock protocol waits this long between writing
    /// its lock and listing the others'. Storage whose listings lag sets it
    /// (`REWIND_LOCK_SETTLE` milliseconds, for the remote backends).
    fn settle(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Ranges of objects of type `t` (name, offset, length) that are about
    /// to be read, in the order they will be. A backend that reads ahead
    /// ([`readahead`]) may download the first of them, as many as one plan
    /// holds (how many is returned), now and keep them while the returned
    /// [`Planned`] lives, and may wait before returning until it has room
    /// for them; `None` when it keeps nothing (the default). A caller drops
    /// the plan when its reads are done or abandoned.
    fn plan(&self, _t: FileType, _reads: &[(String, u64, u64)]) -> Option<(Planned, usize)> {
        None
    }

    /// As [`Backend::plan`], for a reader that plans the rest of what it
    /// reads a stretch at a time, while it reads (at least one read is
    /// held). Never waits: `None` when the backend has no room now (or
    /// keeps nothing), and the reader goes on without.
    fn plan_now(&self, _t: FileType, _reads: &[(String, u64, u64)]) -> Option<(Planned, usize)> {
        None
    }
}

/// Bytes in pieces, as a response brought them ([`Backend::get_range_parts`]).
#[derive(Default)]
pub struct Parts {
    parts: Vec<bytes::Bytes>,
    /// Where each part ends, from the start of the first.
    ends: Vec<usize>,
}

impl Parts {
    pub fn len(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `len` bytes from `from`, copied into one buffer; `None` past the end.
    pub fn copy(&self, from: usize, len: usize) -> Option<Vec<u8>> {
        let end = from.checked_add(len).filter(|&e| e <= self.len())?;
        let mut out = Vec::with_capacity(len);
        let mut i = self.ends.partition_point(|&e| e <= from);
        let mut at = from;
        while at < end {
            let start = self.ends[i] - self.parts[i].len();
            let part = &self.parts[i][at - start..];
            let take = part.len().min(end - at);
            out.extend_from_slice(&part[..take]);
            at += take;
            i += 1;
        }
        Some(out)
    }
}

impl<B: Into<bytes::Bytes>> FromIterator<B> for Parts {
    fn from_iter<I: IntoIterator<Item = B>>(iter: I) -> Self {
        let mut p = Parts::default();
        for b in iter {
            let b: bytes::Bytes = b.into();
            if !b.is_empty() {
                p.ends.push(p.len() + b.len());
                p.parts.push(b);
            }
        }
        p
    }
}

impl From<Vec<u8>> for Parts {
    fn from(v: Vec<u8>) -> Self {
        std::iter::once(v).collect()
    }
}

/// What [`Backend::plan`] holds for its caller, released when dropped.
pub type Planned = Box<dyn Send + Sync>;

/// The settle time of remote storage: `REWIND_LOCK_SETTLE` milliseconds,
/// else zero (S3, Garage, Ceph and MinIO list an object once its `PUT`
/// returned; a directory over SFTP too).
pub(crate) fn remote_settle() -> std::time::Duration {
    std::env::var("REWIND_LOCK_SETTLE")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|ms| std::time::Duration::from_millis(ms.min(60_000)))
        .unwrap_or_default()
}

/// Refuse a name that is not valid for its type ([`valid_name`]): every
/// backend checks the names it is given with this.
pub(crate) fn check_name(t: FileType, name: &str) -> Result<()> {
    if valid_name(t, name) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{name:?} is not a valid name for a {t:?} object"
        )))
    }
}

/// The error of an object that ends before byte `end` (shorter than its
/// index says).
pub(crate) fn ends_before(t: FileType, name: &str, end: u64) -> Error {
    Error::corrupt(t.describe(name), format!("object ends before byte {end}"))
}

/// The `NotFound` error of a missing object.
pub(crate) fn not_found(t: FileType, name: &str) -> Error {
    Error::NotFound(t.describe(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(object_path(FileType::Config, "config"), "config");
        assert_eq!(object_path(FileType::Pack, "ab12"), "data/ab/ab12");
        assert_eq!(object_path(FileType::Snapshot, "00ff"), "snapshots/00ff");
        assert!(valid_name(FileType::Pack, "0a"));
        for bad in ["", "a", "AB", "../x", "ab/cd", "config", &"a".repeat(65)] {
            assert!(!valid_name(FileType::Pack, bad), "{bad:?}");
        }
        assert!(valid_name(FileType::Config, "config"));
        assert!(!valid_name(FileType::Config, "ab"));
    }

    /// Any range of bytes in pieces (empty ones among them) copies out as
    /// the same range of the joined bytes; a range past the end is `None`.
    #[test]
    fn parts_copy_any_range_across_their_pieces() {
        let all: Vec<u8> = (0..200u32).map(|i| (i * 7) as u8).collect();
        let cuts = [0, 1, 1, 64, 65, 130, 200];
        let parts: Parts = cuts
            .windows(2)
            .map(|w| all[w[0]..w[1]].to_vec())
            .chain([Vec::new()])
            .collect();
        assert_eq!(parts.len(), 200);
        for from in 0..=200 {
            for len in 0..=200 - from {
                assert_eq!(
                    parts.copy(from, len).as_deref(),
                    Some(&all[from..from + len])
                );
            }
            assert_eq!(parts.copy(from, 201 - from), None);
        }
        assert_eq!(parts.copy(usize::MAX, 2), None);
        assert_eq!(Parts::default().copy(0, 0), Some(Vec::new()));
        assert_eq!(
            Parts::from(all.clone()).copy(3, 5).as_deref(),
            Some(&all[3..8])
        );
    }
}

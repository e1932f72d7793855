//! Tree blobs: one directory each.
//!
//! A tree is stored as a blob of kind `tree`; its id is the keyed BLAKE3 of the
//! encoded bytes, so a directory that did not change is the same blob in every
//! snapshot, and a diff can skip it without reading below.
//!
//! Encoding: [bincode 2](https://docs.rs/bincode/2) with its `standard`
//! configuration (little-endian, variable-length integers, lengths before
//! sequences) of [`Tree`], field by field in the order below. Decoding is capped
//! at 1 GiB.
//!
//! | field     | type                   | meaning                                              |
//! |-----------|------------------------|------------------------------------------------------|
//! | `version` | u8                     | `1`                                                  |
//! | `entries` | seq of [`Entry`]       | sorted by `name` bytes, names unique                 |
//!
//! [`Entry`], in order:
//!
//! | field     | type          | meaning                                                       |
//! |-----------|---------------|---------------------------------------------------------------|
//! | `name`    | bytes         | raw name: not empty, not `.` or `..`, no `/`, no NUL          |
//! | `kind`    | [`Kind`]      | file, dir, symlink, fifo, socket, chardev, blockdev           |
//! | `mode`    | u32           | permission bits incl. setuid, setgid, sticky (`& 0o7777`)     |
//! | `uid`,`gid` | u32         | numeric owner                                                 |
//! | `user`,`group` | string   | owner names at backup time, empty when unknown                |
//! | `size`    | u64           | `st_size` (file: logical length, holes included)              |
//! | `mtime`,`atime`,`ctime` | [`Time`] | seconds (i64, may be negative) and nanoseconds    |
//! | `dev`,`ino`,`nlink` | u64  | source identity; files with `nlink > 1` and equal `(dev, ino)` are one hard-link group |
//! | `rdev`    | u64           | device number of char and block devices                       |
//! | `xattrs`  | seq of (bytes, bytes) | every extended attribute, sorted by name (ACLs are `system.posix_acl_*`) |
//! | `target`  | bytes         | symlink target                                                |
//! | `extents` | seq of [`Extent`] | file content: data blobs and holes, in order              |
//! | `subtree` | option of id  | directory content                                              |
//!
//! A file's extents add up to its `size`; every hard link of a group carries the
//! content, so any one of them restores alone.

use super::id::{BlobId, TreeId};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

const VERSION: u8 = 1;
const DECODE_LIMIT: usize = 1 << 30;

/// The largest encoded tree a writer may store: what readers accept.
pub const MAX_ENCODED: usize = DECODE_LIMIT;

/// One directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub version: u8,
    pub entries: Vec<Entry>,
}

/// File type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

/// A timestamp: seconds since the epoch and nanoseconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time {
    pub sec: i64,
    pub nsec: u32,
}

/// A run of file content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Extent {
    /// `len` bytes from a data blob.
    Data { id: BlobId, len: u32 },
    /// `len` bytes of hole: zeros that take no disk.
    Hole { len: u64 },
}

impl Extent {
    pub fn len(&self) -> u64 {
        match *self {
            Extent::Data { len, .. } => len as u64,
            Extent::Hole { len } => len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// One directory entry with its full metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub size: u64,
    pub mtime: Time,
    pub atime: Time,
    pub ctime: Time,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub rdev: u64,
    pub xattrs: Vec<Xattr>,
    pub target: Vec<u8>,
    pub extents: Vec<Extent>,
    pub subtree: Option<TreeId>,
}

impl Entry {
    /// An entry with no metadata yet.
    pub fn new(name: Vec<u8>, kind: Kind) -> Self {
        Entry {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            size: 0,
            mtime: Time::default(),
            atime: Time::default(),
            ctime: Time::default(),
            dev: 0,
            ino: 0,
            nlink: 1,
            rdev: 0,
            xattrs: Vec::new(),
            target: Vec::new(),
            extents: Vec::new(),
            subtree: None,
        }
    }

    /// The hard-link group key, for non-directories linked more than once.
    pub fn link_key(&self) -> Option<(u64, u64)> {
        (self.kind != Kind::Dir && self.nlink > 1).then_some((self.dev, self.ino))
    }

    /// Bytes of disk the content needs (holes excluded).
    pub fn data_bytes(&self) -> u64 {
        self.extents
            .iter()
            .map(|e| match e {
                Extent::Data { len, .. } => *len as u64,
                Extent::Hole { .. } => 0,
            })
            .sum()
    }
}

/// Whether `name` is safe to create inside a directory.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

impl Tree {
    pub fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Tree {
            version: VERSION,
            entries,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("trees always encode")
    }

    /// Decode and validate: version, sorted unique names, safe names, extents
    /// that add up to the size.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        let cfg = bincode::config::standard().with_limit::<DECODE_LIMIT>();
        let (tree, used): (Tree, usize) = bincode::serde::decode_from_slice(bytes, cfg)
            .map_err(|e| Error::corrupt(object, format!("tree does not decode: {e}")))?;
        if used != bytes.len() {
            return Err(Error::corrupt(object, "trailing bytes after tree"));
        }
        if tree.version != VERSION {
            return Err(Error::corrupt(
                object,
                format!("unknown tree version {}", tree.version),
            ));
        }
        for (i, e) in tree.entries.iter().enumerate() {
            if !valid_name(&e.name) {
                return Err(Error::corrupt(
                    object,
                    format!("unsafe entry name {:?}", String::from_utf8_lossy(&e.name)),
                ));
            }
            if i > 0 && tree.entries[i - 1].name >= e.name {
                return Err(Error::corrupt(object, "entries not sorted by name"));
            }
            let total = e
                .extents
                .iter()
                .try_fold(0u64, |sum, x| sum.checked_add(x.len()));
            if e.kind == Kind::File && total != Some(e.size) {
                return Err(Error::corrupt(
                    object,
                    "extents do not add up to the file size",
                ));
            }
        }
        Ok(tree)
    }

    /// The entry called `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lookup() {
        let mut f = Entry::new(b"b\xff\nname".to_vec(), Kind::File);
        f.size = 10;
        f.extents = vec![
            Extent::Data {
                id: BlobId([1; 32]),
                len: 4,
            },
            Extent::Hole { len: 6 },
        ];
        f.mtime = Time {
            sec: -5,
            nsec: 999_999_999,
        };
        let d = Entry::new(b"a".to_vec(), Kind::Dir);
        let t = Tree::new(vec![f.clone(), d]);
        let back = Tree::decode(&t.encode(), "t").unwrap();
        assert_eq!(back, t);
        assert_eq!(back.entries[0].name, b"a");
        assert_eq!(back.get(b"b\xff\nname"), Some(&f));
        assert!(back.get(b"zz").is_none());
    }

    #[test]
    fn unsafe_names_and_bad_sizes_are_rejected() {
        for name in [&b".."[..], b".", b"", b"a/b", b"a\0b"] {
            let t = Tree::new(vec![Entry::new(name.to_vec(), Kind::Dir)]);
            assert!(Tree::decode(&t.encode(), "t").is_err(), "{name:?}");
        }
        let mut f = Entry::new(b"f".to_vec(), Kind::File);
        f.size = 3;
        let t = Tree::new(vec![f]);
        assert!(Tree::decode(&t.encode(), "t").is_err());
        assert!(Tree::decode(&[1, 200, 200, 200], "t").is_err());
    }
}

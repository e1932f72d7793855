//! Tree blobs: one directory each.
//!
//! A tree is stored as a blob of kind `tree`; its id is the keyed BLAKE3 of the
//! encoded bytes, so a directory that did not change is the same blob in every
//! snapshot, and a diff can skip it without reading below.
//!
//! Encoding: [bincode 2](https://docs.rs/bincode/2) with its `standard`
//! configuration (little-endian, variable-length integers, lengths before
//! sequences) of [`Tree`], field by field in the order below. An encoded tree
//! is at most [`MAX_ENCODED`] bytes.
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
//! content, so any one of them restores alone. Other kinds have no extents.
//!
//! # Bounds
//!
//! A reader *must* refuse a tree beyond these (none of which a file system
//! produces, so a writer never stores one):
//!
//! | what                      | at most                                            |
//! |---------------------------|----------------------------------------------------|
//! | encoded tree              | [`MAX_ENCODED`] bytes                              |
//! | `name`                    | [`MAX_NAME`] bytes (`NAME_MAX`)                    |
//! | `target`                  | [`MAX_TARGET`] bytes (`PATH_MAX`)                  |
//! | `user`, `group`           | [`MAX_OWNER`] bytes                                |
//! | `xattrs`                  | [`MAX_XATTRS`] per entry (`XATTR_LIST_MAX` / 2)    |
//! | xattr name, value         | [`MAX_XATTR_NAME`] (`XATTR_NAME_MAX`), [`MAX_XATTR_VALUE`] (`XATTR_SIZE_MAX`) bytes |
//! | data extent `len`         | [`MAX_DATA_EXTENT`] (the largest chunk any chunker cuts) |
//! | file `size`               | `i64::MAX` (`off_t`); the extents' sum, checked    |
//! | nanoseconds of a time     | 999,999,999                                        |
//!
//! Entries and extents are bounded by the encoded size (an entry takes at
//! least 23 bytes, an extent 2). Decoding allocates nothing a length field
//! claims before the input is seen to hold it: byte strings are checked
//! against the input (and their bound) before they are copied, and
//! sequences reserve at most [`PREALLOC`] bytes ahead of their elements.

use super::id::{BlobId, TreeId};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

const VERSION: u8 = 1;

/// The largest encoded tree a writer may store: what readers accept.
pub const MAX_ENCODED: usize = 1 << 30;
/// The longest entry name (the kernel's `NAME_MAX`).
pub const MAX_NAME: usize = 255;
/// The longest symlink target (`PATH_MAX`).
pub const MAX_TARGET: usize = 4096;
/// The longest owner name (user or group).
pub const MAX_OWNER: usize = 4096;
/// The most extended attributes of one entry (`XATTR_LIST_MAX` / 2: a list
/// of names, each with its NUL).
pub const MAX_XATTRS: usize = 32 << 10;
/// The longest extended attribute name (`XATTR_NAME_MAX`).
pub const MAX_XATTR_NAME: usize = 255;
/// The longest extended attribute value (`XATTR_SIZE_MAX`).
pub const MAX_XATTR_VALUE: usize = 64 << 10;
/// The longest data extent: a chunk of the largest chunker a config allows.
pub const MAX_DATA_EXTENT: u32 = 16 << 20;
/// What a sequence reserves at most before its elements are decoded.
pub const PREALLOC: usize = 16 << 10;

/// One directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub version: u8,
    #[serde(deserialize_with = "bounded::entries")]
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
    #[serde(deserialize_with = "bounded::xattr_name")]
    pub name: Vec<u8>,
    #[serde(deserialize_with = "bounded::xattr_value")]
    pub value: Vec<u8>,
}

/// One directory entry with its full metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(deserialize_with = "bounded::name")]
    pub name: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(deserialize_with = "bounded::owner")]
    pub user: String,
    #[serde(deserialize_with = "bounded::owner")]
    pub group: String,
    pub size: u64,
    pub mtime: Time,
    pub atime: Time,
    pub ctime: Time,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub rdev: u64,
    #[serde(deserialize_with = "bounded::xattrs")]
    pub xattrs: Vec<Xattr>,
    #[serde(deserialize_with = "bounded::target")]
    pub target: Vec<u8>,
    #[serde(deserialize_with = "bounded::extents")]
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

    /// What a reader refuses in one entry (beyond its name): times that are
    /// no times, extents that do not add up to the size, data extents longer
    /// than any chunk, content on what is not a file.
    fn check(&self) -> std::result::Result<(), &'static str> {
        if [self.mtime, self.atime, self.ctime]
            .iter()
            .any(|t| t.nsec > 999_999_999)
        {
            return Err("a time with more than 999,999,999 nanoseconds");
        }
        if self.kind != Kind::File {
            return match self.extents.is_empty() {
                true => Ok(()),
                false => Err("content on an entry that is not a file"),
            };
        }
        if self.size > i64::MAX as u64 {
            return Err("file size beyond what a file system can hold");
        }
        let mut total = 0u64;
        for x in &self.extents {
            if let Extent::Data { len, .. } = x {
                if *len > MAX_DATA_EXTENT {
                    return Err("data extent longer than any chunk");
                }
            }
            total = total
                .checked_add(x.len())
                .ok_or("extents do not add up to the file size")?;
        }
        if total != self.size {
            return Err("extents do not add up to the file size");
        }
        Ok(())
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
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && !name.contains(&0)
}

/// Deserializers that check every claimed length before they allocate.
///
/// Byte strings are decoded as borrowed bytes: bincode checks that the
/// input holds them before anything is copied (their encoding is that of a
/// sequence of `u8`, so the format is unchanged). Sequences reserve at most
/// [`PREALLOC`] bytes ahead of the elements actually decoded.
mod bounded {
    use super::*;
    use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    struct Bytes {
        max: usize,
        what: &'static str,
    }

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{} of at most {} bytes", self.what, self.max)
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            if v.len() > self.max {
                return Err(E::custom(format_args!(
                    "{} of {} bytes (at most {})",
                    self.what,
                    v.len(),
                    self.max
                )));
            }
            Ok(v.to_vec())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<u8>, A::Error> {
            collect(seq, self.max, self.what)
        }
    }

    fn bytes<'de, D: Deserializer<'de>>(
        d: D,
        max: usize,
        what: &'static str,
    ) -> Result<Vec<u8>, D::Error> {
        d.deserialize_bytes(Bytes { max, what })
    }

    struct Str {
        max: usize,
    }

    impl<'de> Visitor<'de> for Str {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an owner name of at most {} bytes", self.max)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            if v.len() > self.max {
                return Err(E::custom(format_args!(
                    "owner name of {} bytes (at most {})",
                    v.len(),
                    self.max
                )));
            }
            Ok(v.to_string())
        }
    }

    struct Seq<T> {
        max: usize,
        what: &'static str,
        _t: PhantomData<T>,
    }

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Seq<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "at most {} {}", self.max, self.what)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<T>, A::Error> {
            collect(seq, self.max, self.what)
        }
    }

    /// At most `max` elements, reserving at most [`PREALLOC`] bytes ahead.
    fn collect<'de, A: SeqAccess<'de>, T: Deserialize<'de>>(
        mut seq: A,
        max: usize,
        what: &'static str,
    ) -> Result<Vec<T>, A::Error> {
        let claimed = seq.size_hint().unwrap_or(0);
        if claimed > max {
            return Err(A::Error::custom(format_args!(
                "{claimed} {what} (at most {max})"
            )));
        }
        let ahead = PREALLOC / std::mem::size_of::<T>().max(1);
        let mut out = Vec::with_capacity(claimed.min(ahead));
        while let Some(x) = seq.next_element()? {
            if out.len() == max {
                return Err(A::Error::custom(format_args!("more than {max} {what}")));
            }
            out.push(x);
        }
        Ok(out)
    }

    fn seq<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
        max: usize,
        what: &'static str,
    ) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(Seq {
            max,
            what,
            _t: PhantomData,
        })
    }

    pub fn name<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        bytes(d, MAX_NAME, "entry name")
    }
    pub fn target<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        bytes(d, MAX_TARGET, "symlink target")
    }
    pub fn xattr_name<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        bytes(d, MAX_XATTR_NAME, "xattr name")
    }
    pub fn xattr_value<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        bytes(d, MAX_XATTR_VALUE, "xattr value")
    }
    pub fn owner<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_str(Str { max: MAX_OWNER })
    }
    pub fn entries<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Entry>, D::Error> {
        seq(d, usize::MAX, "entries")
    }
    pub fn xattrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Xattr>, D::Error> {
        seq(d, MAX_XATTRS, "xattrs")
    }
    pub fn extents<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Extent>, D::Error> {
        seq(d, usize::MAX, "extents")
    }
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

    /// Decode and validate: version, the bounds above, sorted unique
    /// names, safe names, extents that add up to the size.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        if bytes.len() > MAX_ENCODED {
            return Err(Error::corrupt(object, "tree larger than any directory"));
        }
        // Every length this format claims is checked against the input
        // before anything is allocated (see `bounded`), so the limit is a
        // backstop: the claims it counts (borrowed byte strings) are bytes
        // of the input.
        let cfg = bincode::config::standard().with_limit::<MAX_ENCODED>();
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
            e.check().map_err(|why| {
                Error::corrupt(
                    object,
                    format!("entry {:?}: {why}", String::from_utf8_lossy(&e.name)),
                )
            })?;
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

//! Typed 32-byte identifiers.
//!
//! | id          | what it names           | how it is computed                          |
//! |-------------|-------------------------|---------------------------------------------|
//! | [`BlobId`]  | a data blob (file chunk) | keyed BLAKE3 of the plaintext, repository key |
//! | [`TreeId`]  | a tree blob (directory) | keyed BLAKE3 of the encoded tree             |
//! | [`PackId`]  | a pack file             | format 1: BLAKE3 of the whole file as stored; format 2: random |
//! | [`IndexId`] | an index file           | format 1: BLAKE3 of the whole file as stored; format 2: keyed BLAKE3 of its plaintext |
//! | [`SnapshotId`] | a snapshot manifest  | format 1: BLAKE3 of the whole file as stored; format 2: keyed BLAKE3 of its plaintext |
//!
//! The repository key of format 1 sits in `config`; format 2 derives two keys
//! from the master secret ([`crypto`](super::crypto)): one for blob ids, one
//! for object ids. Keyed ids name content without revealing it to whoever
//! lacks the key, and every read checks an object against its id.
//!
//! Ids print as 64 lowercase hex digits; files are named by that text.

use crate::error::Error;
type Result<T, E = Error> = std::result::Result<T, E>;
use std::fmt;

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 32]);

        /// Hex text in human-readable formats (JSON), 32 raw bytes in bincode.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    serde::Serialize::serialize(&self.0, s)
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = <String as serde::Deserialize>::deserialize(d)?;
                    $name::from_hex(&s).map_err(serde::de::Error::custom)
                } else {
                    <[u8; 32] as serde::Deserialize>::deserialize(d).map($name)
                }
            }
        }

        impl $name {
            /// Parse 64 hex digits.
            pub fn from_hex(s: &str) -> Result<Self> {
                parse_hex(s).map($name).ok_or_else(|| {
                    Error::InvalidInput(format!("{s:?} is not a {}", stringify!($name)))
                })
            }
            /// The 64 hex digits.
            pub fn to_hex(&self) -> String {
                to_hex(&self.0)
            }
            /// The first 8 hex digits, for humans.
            pub fn short(&self) -> String {
                to_hex(&self.0[..4])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
    };
}

define_id!(
    /// A blob of file data.
    BlobId
);
define_id!(
    /// A tree blob: one directory.
    TreeId
);
define_id!(
    /// A pack file under `data/`.
    PackId
);
define_id!(
    /// An index file under `index/`.
    IndexId
);
define_id!(
    /// A snapshot manifest under `snapshots/`.
    SnapshotId
);

impl TreeId {
    /// Tree blobs live in the same blob space as data blobs.
    pub fn blob(self) -> BlobId {
        BlobId(self.0)
    }
}

/// Keyed BLAKE3: how blob and object ids are computed.
#[derive(Clone)]
pub struct Hasher {
    key: [u8; 32],
    /// Format 2's object-id key; format 1 names objects by their unkeyed hash.
    object_key: Option<[u8; 32]>,
}

impl Hasher {
    /// Format 1: blobs keyed with `key`, objects by the hash of their bytes.
    pub fn new(key: [u8; 32]) -> Self {
        Hasher {
            key,
            object_key: None,
        }
    }

    /// Format 2: both kinds of id keyed.
    pub fn keyed(blob_key: [u8; 32], object_key: [u8; 32]) -> Self {
        Hasher {
            key: blob_key,
            object_key: Some(object_key),
        }
    }

    /// The key of blob ids (copied into a repository made to share them).
    pub fn blob_key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The id of a data blob holding `plain`.
    pub fn blob(&self, plain: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.key, plain).as_bytes())
    }
    /// The id of an encoded tree.
    pub fn tree(&self, encoded: &[u8]) -> TreeId {
        TreeId(self.blob(encoded).0)
    }

    /// Format 2: the id of an object (index file, snapshot) whose plaintext
    /// is `plain`; `None` in format 1, where the id is [`file_hash`] of the
    /// stored bytes.
    pub fn object(&self, plain: &[u8]) -> Option<[u8; 32]> {
        self.object_key
            .map(|k| *blake3::keyed_hash(&k, plain).as_bytes())
    }
}

/// Unkeyed BLAKE3 of a whole stored file: names packs, indexes and snapshots.
pub fn file_hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = BlobId([0xab; 32]);
        assert_eq!(BlobId::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(id.short(), "abababab");
        assert!(BlobId::from_hex("zz").is_err());
        assert!(BlobId::from_hex(&"g".repeat(64)).is_err());
    }

    #[test]
    fn keyed_hash_depends_on_key() {
        let a = Hasher::new([1; 32]).blob(b"x");
        let b = Hasher::new([2; 32]).blob(b"x");
        assert_ne!(a, b);
    }
}

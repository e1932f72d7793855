//! Snapshot manifests: small files under `snapshots/`, one per backup.
//!
//! | part     | content                                         |
//! |----------|-------------------------------------------------|
//! | envelope | `RWND` `S` version 1                            |
//! | body     | one codec frame: the [`Snapshot`] as UTF-8 JSON |
//!
//! The file's name is the BLAKE3 of its bytes ([`SnapshotId`]). A snapshot
//! *must* only be written after every blob its tree reaches is in a durable
//! pack named by a durable index file. Unknown JSON fields are ignored, so
//! later versions can add fields.

use super::codec::{envelope, open_envelope, Codec, FileKind};
use super::id::{SnapshotId, TreeId};
use super::tree::Time;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// One backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the backup started.
    pub time: Time,
    pub host: String,
    pub username: String,
    /// Absolute paths that were backed up (stdin files as their snapshot path).
    pub paths: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The root directory: backed-up paths sit in it by their absolute path.
    pub tree: TreeId,
    #[serde(default)]
    pub parent: Option<SnapshotId>,
    pub program: String,
    #[serde(default)]
    pub summary: Summary,
}

/// What a backup did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    pub other_entries: u64,
    /// Bytes of file content read from disk.
    pub bytes_read: u64,
    /// Logical bytes of all files in the snapshot.
    pub total_bytes: u64,
    pub data_blobs_added: u64,
    pub tree_blobs_added: u64,
    /// Plaintext bytes of new blobs.
    pub bytes_added_raw: u64,
    /// Bytes new blobs take in packs.
    pub bytes_added_stored: u64,
    pub duration_ms: u64,
    /// Entries that could not be read (each was warned about).
    pub errors: u64,
}

impl Snapshot {
    /// The stored file and its id.
    pub fn encode(&self, codec: &Codec) -> (SnapshotId, Vec<u8>) {
        let json = serde_json::to_vec(self).expect("snapshots always serialize");
        let mut file = envelope(FileKind::Snapshot).to_vec();
        file.extend_from_slice(&codec.encode(&json));
        (SnapshotId(super::id::file_hash(&file)), file)
    }

    pub fn decode(file: &[u8], codec: &Codec, name: &str) -> Result<Self> {
        let object = format!("snapshot {name}");
        let body = open_envelope(file, FileKind::Snapshot, &object)?;
        let json = codec.decode(body, None, &object)?;
        serde_json::from_slice(&json).map_err(|e| Error::corrupt(&object, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = Snapshot {
            time: Time {
                sec: 1_700_000_000,
                nsec: 5,
            },
            host: "h".into(),
            username: "root".into(),
            paths: vec!["/srv/www".into()],
            tags: vec!["nightly".into()],
            tree: TreeId([3; 32]),
            parent: None,
            program: "rewind test".into(),
            summary: Summary::default(),
        };
        let codec = Codec::new(3);
        let (id, bytes) = s.encode(&codec);
        assert_eq!(id.0, super::super::id::file_hash(&bytes));
        assert_eq!(Snapshot::decode(&bytes, &codec, "x").unwrap(), s);
        assert!(Snapshot::decode(&bytes[..bytes.len() - 2], &codec, "x").is_err());
    }
}

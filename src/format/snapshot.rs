//! Snapshot manifests: small files under `snapshots/`, one per backup.
//!
//! | part     | content                                         |
//! |----------|-------------------------------------------------|
//! | envelope | `RWND` `S` version 1 or 2                       |
//! | body     | one codec frame: the [`Snapshot`] as UTF-8 JSON |
//!
//! The file's name ([`SnapshotId`]) is, in format 1, the BLAKE3 of its bytes;
//! in format 2, the keyed BLAKE3 of the JSON, which the frame's associated data
//! binds. Every read checks a manifest against its name: one changed byte is
//! an error naming the snapshot, never a snapshot with another time or tree.
//! A snapshot *must* only be written after every blob its tree reaches is in a
//! durable pack named by a durable index file. Unknown JSON fields are
//! ignored, so later versions can add fields.

use super::codec::{Aad, Codec, FileKind};
use super::id::{file_hash, Hasher, SnapshotId, TreeId};
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
    /// For a snapshot `rewind copy` made: the source snapshot's id (in the
    /// repository it was first written to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<SnapshotId>,
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
    /// What the repository grew by: new packs (headers included) and index
    /// files. (Before format 2 this counted only some of the frames.)
    pub bytes_added_stored: u64,
    /// Bytes the new blobs' frames take in the new packs.
    pub bytes_added_data: u64,
    /// Bytes of the new index files.
    pub bytes_added_index: u64,
    pub packs_added: u64,
    pub duration_ms: u64,
    /// Entries that could not be read (each was warned about).
    pub errors: u64,
}

impl Snapshot {
    /// The stored file and its id.
    pub fn encode(&self, codec: &Codec, hasher: &Hasher) -> (SnapshotId, Vec<u8>) {
        let json = serde_json::to_vec(self).expect("snapshots always serialize");
        let mut file = codec.envelope(FileKind::Snapshot).to_vec();
        match hasher.object(&json) {
            Some(id) => {
                codec.encode_into(&json, &Aad::whole(FileKind::Snapshot, id), &mut file);
                (SnapshotId(id), file)
            }
            None => {
                codec.encode_into(&json, &Aad::whole(FileKind::Snapshot, [0; 32]), &mut file);
                (SnapshotId(file_hash(&file)), file)
            }
        }
    }

    /// Decode the manifest stored as `id`, checking it against the id.
    pub fn decode(file: &[u8], codec: &Codec, hasher: &Hasher, id: &SnapshotId) -> Result<Self> {
        let object = format!("snapshot {}", id.short());
        let body = codec.open(file, FileKind::Snapshot, &object)?;
        let aad = Aad::whole(FileKind::Snapshot, id.0);
        let json = codec.decode(body, None, &aad, &object)?;
        let actual = hasher.object(&json).unwrap_or_else(|| file_hash(file));
        if actual != id.0 {
            return Err(Error::corrupt(&object, "content does not match its name"));
        }
        serde_json::from_slice(&json).map_err(|e| Error::corrupt(&object, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::crypto::{MasterKey, Subkeys, MASTER_LEN};

    #[test]
    fn round_trip_and_checked_against_the_name() {
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
            original: None,
        };
        let keys = Subkeys::derive(&MasterKey([2; MASTER_LEN]));
        let plain = (Codec::new(0), Hasher::new([1; 32]));
        let sealed = (
            Codec::encrypted(3, &keys),
            Hasher::keyed(keys.blob_id, keys.object_id),
        );
        for (codec, hasher) in [plain, sealed] {
            let (id, bytes) = s.encode(&codec, &hasher);
            assert_eq!(Snapshot::decode(&bytes, &codec, &hasher, &id).unwrap(), s);
            assert!(Snapshot::decode(&bytes[..bytes.len() - 2], &codec, &hasher, &id).is_err());
            let other = SnapshotId([9; 32]);
            assert!(Snapshot::decode(&bytes, &codec, &hasher, &other).is_err());
            // Every single changed byte is refused, not read as another snapshot.
            for i in 0..bytes.len() {
                let mut changed = bytes.clone();
                changed[i] ^= 0x01;
                assert!(
                    Snapshot::decode(&changed, &codec, &hasher, &id).is_err(),
                    "byte {i}"
                );
            }
        }
    }
}

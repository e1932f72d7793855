//! A snapshot: the input as a stored format-1 file named by its hash, and
//! the input as manifest JSON stored and named as a writer of each format
//! would, so the JSON parser sees it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::format::codec::{Aad, FileKind};
use rewind::format::id::{file_hash, SnapshotId};
use rewind::format::snapshot::Snapshot;

fuzz_target!(|data: &[u8]| {
    let [plain_hasher, keyed] = rewind_fuzz::hashers();
    let plain = rewind_fuzz::plain();
    let _ = Snapshot::decode(data, &plain, &plain_hasher, &SnapshotId(file_hash(data)));
    // Format 1: the JSON in a frame, the file named by its hash.
    let mut file = plain.envelope(FileKind::Snapshot).to_vec();
    plain.encode_into(data, &Aad::whole(FileKind::Snapshot, [0; 32]), &mut file);
    let _ = Snapshot::decode(&file, &plain, &plain_hasher, &SnapshotId(file_hash(&file)));
    // Format 2: sealed, named by the keyed hash of the JSON.
    let sealed = rewind_fuzz::sealed();
    let id = keyed.object(data).expect("a format-2 hasher names objects");
    let mut file = sealed.envelope(FileKind::Snapshot).to_vec();
    sealed.encode_into(data, &Aad::whole(FileKind::Snapshot, id), &mut file);
    let _ = Snapshot::decode(&file, &sealed, &keyed, &SnapshotId(id));
});

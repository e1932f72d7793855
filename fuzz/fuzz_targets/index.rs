//! An index file in its decoded layout: opened (as records of plaintext and
//! of encrypted frames), verified, iterated, and searched for present and
//! absent ids.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::format::id::BlobId;
use rewind::format::index::IndexFile;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    for sealed in [false, true] {
        let Ok(idx) = IndexFile::open(Arc::new(data.to_vec()), "i", sealed) else {
            continue;
        };
        let _ = idx.verify();
        for (id, _) in idx.iter().flatten() {
            let _ = idx.get(&id);
        }
        let _ = idx.get(&BlobId([0; 32]));
        let _ = idx.get(&BlobId([0xff; 32]));
        let _ = idx.packs().count();
    }
});

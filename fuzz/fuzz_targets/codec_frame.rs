//! A plaintext codec frame (scheme byte, then raw or zstd bytes), decoded
//! whole, as a blob of a claimed length (the input's first 4 bytes, as the
//! index and tree would give it), also owned (`decode_vec`, which must
//! agree), and under a small object's cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::format::codec::{Aad, FileKind};

fuzz_target!(|data: &[u8]| {
    let codec = rewind_fuzz::plain();
    let aad = Aad::whole(FileKind::Snapshot, [3; 32]);
    let _ = codec.decode(data, None, &aad, "frame");
    let _ = codec.decode_at_most(data, 16 << 10, &aad, "lock");
    let (len, frame) = rewind_fuzz::take_u32(data);
    let blob = codec.decode(frame, Some(len as usize), &aad, "blob");
    let owned = codec.decode_vec(frame.to_vec(), Some(len as usize), &aad, "blob");
    assert_eq!(blob.ok(), owned.ok());
});

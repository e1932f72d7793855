//! An encrypted codec frame: the input as a frame (the tag refuses it), and
//! the input as the padded body of a frame sealed with the test key, so the
//! scheme, payload length and zstd checks behind the tag see it; whole, as
//! a blob of a claimed length (the input's first 4 bytes; also owned,
//! `decode_vec`, which must agree) and under a cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::format::codec::{Aad, FileKind};

fuzz_target!(|data: &[u8]| {
    let codec = rewind_fuzz::sealed();
    let aad = Aad::whole(FileKind::Index, [4; 32]);
    let _ = codec.decode(data, None, &aad, "frame");
    let (len, body) = rewind_fuzz::take_u32(data);
    let frame = rewind_fuzz::seal_body(body, &aad);
    let _ = codec.decode(&frame, None, &aad, "frame");
    let blob = codec.decode(&frame, Some(len as usize), &aad, "blob");
    let owned = codec.decode_vec(frame.clone(), Some(len as usize), &aad, "blob");
    assert_eq!(blob.ok(), owned.ok());
    let _ = codec.decode_at_most(&frame, 16 << 10, &aad, "lock");
});

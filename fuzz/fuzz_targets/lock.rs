//! A lock object: the input as a stored lock of each format, and as lock
//! JSON sealed with the test key under a lock name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::format::codec::{Aad, FileKind};
use rewind::repo::lock::decode_lock;

const NAME: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let plain = rewind_fuzz::plain();
    let sealed = rewind_fuzz::sealed();
    let _ = decode_lock(&plain, NAME, data);
    let _ = decode_lock(&sealed, NAME, data);
    let mut id = [0u8; 32];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&NAME[2 * i..2 * i + 2], 16).expect("hex");
    }
    let mut file = sealed.envelope(FileKind::Lock).to_vec();
    sealed.encode_into(data, &Aad::whole(FileKind::Lock, id), &mut file);
    let _ = decode_lock(&sealed, NAME, &file);
});

//! A pack header's table (entry count, then fixed-width entries), decoded
//! as it is and from a header frame of each format that holds it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::format::codec::{Aad, FileKind};
use rewind::format::pack;

fuzz_target!(|data: &[u8]| {
    let _ = pack::decode_header(data, "pack header");
    let id = [4; 32];
    let start = 1 << 20;
    let aad = Aad {
        kind: FileKind::Pack,
        id,
        offset: start,
    };
    let plain = rewind_fuzz::plain();
    let frame = plain.encode(data, &aad);
    let _ = pack::decode_header_frame(&frame, start, &plain, id, "pack");
    let sealed = rewind_fuzz::sealed();
    let frame = sealed.encode(data, &aad);
    let _ = pack::decode_header_frame(&frame, start, &sealed, id, "pack");
});

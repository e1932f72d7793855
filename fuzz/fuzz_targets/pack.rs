//! A whole pack file in both formats: the trailer, the header's range, the
//! header frame and its table, as a reader by range and a reader of the
//! whole file take them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::format::pack;

fuzz_target!(|data: &[u8]| {
    let id = [6; 32];
    for codec in [rewind_fuzz::plain(), rewind_fuzz::sealed()] {
        let _ = pack::read_header(data, &codec, id, "pack");
        let Some(trailer) = data
            .len()
            .checked_sub(pack::TRAILER_LEN)
            .map(|at| &data[at..])
        else {
            continue;
        };
        let _ = pack::trailer_header_len(trailer, "pack");
        if let Ok((start, len)) = pack::header_range(data.len() as u64, trailer, "pack") {
            // header_range must stay inside the pack it was given.
            let frame = &data[start as usize..start as usize + len];
            if let Ok(entries) = pack::decode_header_frame(frame, start, &codec, id, "pack") {
                for e in entries {
                    let _ = pack::frame_bytes(data, e.frame);
                }
            }
        }
    }
});

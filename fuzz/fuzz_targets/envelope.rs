//! The envelope every stored object starts with (magic, kind, version),
//! opened as each kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::format::codec::{open_envelope, FileKind};

fuzz_target!(|data: &[u8]| {
    for kind in [
        FileKind::Config,
        FileKind::Pack,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Key,
        FileKind::Lock,
    ] {
        let _ = open_envelope(data, kind, "object");
    }
});

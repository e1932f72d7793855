//! A tree blob's plaintext (bincode), decoded and validated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::format::tree::Tree;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(data, "tree") {
        // What decodes encodes again (a writer copying it).
        let _ = tree.encode();
    }
});

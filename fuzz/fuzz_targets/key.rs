//! A key file: decoded, then unwrapped with a password when its Argon2
//! cost is small enough to run per input (what the caps refuse is refused
//! before Argon2 runs; cheaper parameters keep the fuzzer fast).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::format::key::KeyFile;

/// The most Argon2 work (KiB of memory times passes) run per input.
const BUDGET_KIB: u64 = 4 << 10;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = KeyFile::decode(data, "key") else {
        return;
    };
    let p = key.kdf.params;
    if p.memory_kib as u64 * p.iterations as u64 <= BUDGET_KIB {
        let _ = key.unwrap(b"test password", "key");
    }
});

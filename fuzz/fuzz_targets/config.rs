//! The config: the input as a stored format-1 config, as a stored format-2
//! one, and as config JSON sealed with the test key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::format::codec::{Aad, FileKind};
use rewind::format::config::Config;

const ID: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

fuzz_target!(|data: &[u8]| {
    let _ = Config::stored_version(data);
    let _ = Config::decode_plain(data);
    let sealed = rewind_fuzz::sealed();
    let _ = Config::decode_sealed(data, &sealed, ID);
    let mut file = sealed.envelope(FileKind::Config).to_vec();
    let id = Config::id_bytes(ID).expect("a config id");
    sealed.encode_into(data, &Aad::whole(FileKind::Config, id), &mut file);
    let _ = Config::decode_sealed(&file, &sealed, ID);
});

//! What the fuzz targets share: the codecs they decode with (a plaintext
//! one, and one with a fixed test key), and a way to put hostile bytes
//! behind a valid tag, so the checks after authentication see them too.
//!
//! Every target feeds its input to the decoders of one kind of object and
//! ignores the result: a decoder may refuse anything, and must neither panic
//! nor allocate without bound (libFuzzer's `-rss_limit_mb` and
//! `-malloc_limit_mb` catch the second; see README.md).

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rewind::format::codec::{Aad, Codec};
use rewind::format::crypto::{MasterKey, Subkeys};
use rewind::format::id::Hasher;

/// The plaintext codec (format 1).
pub fn plain() -> Codec {
    Codec::new(3)
}

/// The subkeys of a fixed test master key.
pub fn keys() -> Subkeys {
    Subkeys::derive(&MasterKey::from_bytes([0x5a; 64]))
}

/// The encrypted codec (format 2) with the fixed test key.
pub fn sealed() -> Codec {
    Codec::encrypted(3, &keys())
}

/// The hashers of both formats (format 2's with the test key's subkeys).
pub fn hashers() -> [Hasher; 2] {
    let k = keys();
    [Hasher::new([1; 32]), Hasher::keyed(k.blob_id, k.object_id)]
}

/// The associated data of a frame, as the codec's module docs specify it.
pub fn aad_bytes(a: &Aad) -> Vec<u8> {
    let mut b = b"RWND".to_vec();
    b.push(2);
    b.push(a.kind.tag());
    b.extend_from_slice(&a.id);
    b.extend_from_slice(&a.offset.to_le_bytes());
    b
}

/// Seal `body` (a padded frame body: scheme, payload length, payload,
/// padding) into an encrypted frame with the test key, by the spec rather
/// than through the codec, so any body passes the tag check.
pub fn seal_body(body: &[u8], aad: &Aad) -> Vec<u8> {
    let aead = XChaCha20Poly1305::new(&keys().data.into());
    let nonce = [7u8; 24];
    let mut out = body.to_vec();
    let tag = aead
        .encrypt_inout_detached(&XNonce::from(nonce), &aad_bytes(aad), (&mut out[..]).into())
        .expect("a frame of any length seals");
    [&nonce[..], &out, &tag].concat()
}

/// The first `n` bytes of `data` as a little-endian number, and the rest.
pub fn take_u32(data: &[u8]) -> (u32, &[u8]) {
    match data.split_first_chunk::<4>() {
        Some((n, rest)) => (u32::from_le_bytes(*n), rest),
        None => (0, data),
    }
}

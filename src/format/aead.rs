//! XChaCha20-Poly1305, the AEAD of every encrypted frame and key file.
//!
//! XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03) is ChaCha20-Poly1305
//! (RFC 8439) under a per-nonce subkey: HChaCha20 of the key and the
//! nonce's first 16 bytes gives the subkey, and the nonce's last 8 bytes,
//! after four zero bytes, are the RFC 8439 nonce. The subkey comes from the
//! `chacha20` crate's `hchacha`; the bulk ChaCha20-Poly1305 is ring's
//! (assembly with AVX-512 and AVX2 paths). A sealed 512 KiB frame opens at
//! 2.16 GiB/s with it, 1.19-1.21 GiB/s with RustCrypto's portable
//! `chacha20poly1305` (`cargo bench --bench throughput --
//! codec/sealed_decode_l3_random`, 2026-12-05, 2-core VM). The bytes are
//! the same as any other implementation's; a test checks them against
//! RustCrypto's, and the draft's test vectors.

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};

/// Nonce length.
pub const NONCE_LEN: usize = 24;
/// Tag length.
pub const TAG_LEN: usize = 16;

/// An XChaCha20-Poly1305 key. Its bytes are wiped when dropped.
pub struct XChaCha {
    key: [u8; 32],
}

impl Drop for XChaCha {
    fn drop(&mut self) {
        super::crypto::wipe(&mut self.key);
    }
}

/// A frame failed to authenticate.
#[derive(Debug)]
pub struct Unauthentic;

impl XChaCha {
    pub fn new(key: &[u8; 32]) -> Self {
        XChaCha { key: *key }
    }

    /// The ChaCha20-Poly1305 key and nonce that `nonce` selects.
    fn inner(&self, nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
        let (head, tail) = nonce.split_at(16);
        let head: &[u8; 16] = head.try_into().expect("16 bytes");
        let mut sub: [u8; 32] =
            chacha20::hchacha::<chacha20::R20>(&self.key.into(), &(*head).into()).into();
        let key = UnboundKey::new(&CHACHA20_POLY1305, &sub).expect("32-byte key");
        super::crypto::wipe(&mut sub);
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(tail);
        (LessSafeKey::new(key), Nonce::assume_unique_for_key(n))
    }

    /// Encrypt `buf` in place; returns the tag.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let (key, n) = self.inner(nonce);
        let tag = key
            .seal_in_place_separate_tag(n, Aad::from(aad), buf)
            .expect("frames are far below the AEAD's length limit");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypt `buf` in place when `tag` authenticates it and `aad`. On
    /// failure `buf`'s contents are unspecified: callers drop it.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Unauthentic> {
        let (key, n) = self.inner(nonce);
        key.open_in_place_separate_tag(n, Aad::from(aad), Tag::from(*tag), buf, 0..)
            .map(|_| ())
            .map_err(|_| Unauthentic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::{AeadInOut, KeyInit};
    use chacha20poly1305::XChaCha20Poly1305;

    /// Byte for byte what RustCrypto's XChaCha20-Poly1305 (the
    /// implementation the first encrypted repositories were written with)
    /// produces, and each opens the other's frames.
    #[test]
    fn same_bytes_as_rustcrypto() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut byte = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        for len in [0usize, 1, 15, 16, 63, 64, 65, 255, 256, 1000, 4096, 70_001] {
            let key: [u8; 32] = std::array::from_fn(|_| byte());
            let nonce: [u8; NONCE_LEN] = std::array::from_fn(|_| byte());
            let aad: Vec<u8> = (0..(len % 50)).map(|_| byte()).collect();
            let plain: Vec<u8> = (0..len).map(|_| byte()).collect();

            let mut ours = plain.clone();
            let tag = XChaCha::new(&key).seal(&nonce, &aad, &mut ours);
            let mut theirs = plain.clone();
            let their_tag = XChaCha20Poly1305::new(&key.into())
                .encrypt_inout_detached(&nonce.into(), &aad, (&mut theirs[..]).into())
                .unwrap();
            assert_eq!(ours, theirs, "ciphertext, {len} bytes");
            assert_eq!(&tag[..], &their_tag[..], "tag, {len} bytes");

            let mut back = theirs.clone();
            XChaCha::new(&key)
                .open(&nonce, &aad, &mut back, &their_tag.into())
                .unwrap();
            assert_eq!(back, plain);

            let mut bad = ours.clone();
            if len > 0 {
                bad[len / 2] ^= 1;
                assert!(XChaCha::new(&key)
                    .open(&nonce, &aad, &mut bad, &tag)
                    .is_err());
            }
            let mut other = nonce;
            other[20] ^= 0x80;
            let mut again = ours.clone();
            assert!(XChaCha::new(&key)
                .open(&other, &aad, &mut again, &tag)
                .is_err());
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The test vectors of draft-irtf-cfrg-xchacha-03 (HChaCha20, 2.2.1;
    /// AEAD_XChaCha20_Poly1305, A.3.1): independent of any implementation.
    /// A failed open leaves no plaintext in the buffer.
    #[test]
    fn draft_03_test_vectors() {
        let k: [u8; 32] = std::array::from_fn(|i| i as u8);
        let n: [u8; 16] = hex("000000090000004a0000000031415927").try_into().unwrap();
        let sub: [u8; 32] = chacha20::hchacha::<chacha20::R20>(&k.into(), &n.into()).into();
        assert_eq!(
            sub.to_vec(),
            hex("82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc")
        );

        let key: [u8; 32] = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
            .try_into()
            .unwrap();
        let nonce: [u8; 24] = hex("404142434445464748494a4b4c4d4e4f5051525354555657")
            .try_into()
            .unwrap();
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only \
one tip for the future, sunscreen would be it.";
        let cipher = hex(
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb\
             731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452\
             2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9\
             21f9664c97637da9768812f615c68b13b52e",
        );
        let tag: [u8; 16] = hex("c0875924c1c7987947deafd8780acf49").try_into().unwrap();
        let mut buf = plain.to_vec();
        assert_eq!(XChaCha::new(&key).seal(&nonce, &aad, &mut buf), tag);
        assert_eq!(buf, cipher);
        XChaCha::new(&key)
            .open(&nonce, &aad, &mut buf, &tag)
            .unwrap();
        assert_eq!(buf, plain);
        let mut bad = tag;
        bad[0] ^= 1;
        let mut buf = cipher.clone();
        assert!(XChaCha::new(&key)
            .open(&nonce, &aad, &mut buf, &bad)
            .is_err());
        assert!(
            buf.iter().all(|&b| b == 0) || buf == cipher,
            "plaintext after a failed open"
        );
    }
}

//! Keys of an encrypted repository, and the sizes an attacker may see.
//!
//! # Keys
//!
//! An encrypted repository has one random 64-byte *master secret*, made at
//! `init` and never changed (a password change re-wraps it, see
//! [`key`](super::key)). Every key in use is derived from it with BLAKE3's
//! `derive_key`, one context string each:
//!
//! | context                                  | key for                                  |
//! |------------------------------------------|------------------------------------------|
//! | `rewind 2026-12 data encryption`         | XChaCha20-Poly1305 of every object       |
//! | `rewind 2026-12 blob id`                 | keyed BLAKE3 naming data and tree blobs  |
//! | `rewind 2026-12 object id`               | keyed BLAKE3 naming index files and snapshots |
//! | `rewind 2026-12 chunker`                 | the chunker's gear table and cut PRF     |
//! | `rewind 2026-12 padding`                 | the keyed part of each frame's padding   |
//!
//! # Padding
//!
//! A frame's plaintext is padded before encryption to a length that says
//! little about its content: first to Padmé's length (Nikitin et al., "Reducing
//! Metadata Leakage from Encrypted Files and Communication with PURBs", PETS
//! 2019: at most 12% larger, and a length of `E` bits leaks about `log2 E`
//! bits), then by a further keyed pseudo-random amount below the Padmé step,
//! drawn from the padding key and the frame's random nonce, so that the same
//! plaintext stored twice has unrelated sizes and the step boundaries blur.

use blake3::derive_key;

/// Length of the master secret.
pub const MASTER_LEN: usize = 64;

/// The repository's master secret. Its bytes are wiped when dropped.
pub struct MasterKey(pub(crate) [u8; MASTER_LEN]);

impl Drop for MasterKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl MasterKey {
    /// A secret from its bytes (tests, benchmarks).
    pub fn from_bytes(bytes: [u8; MASTER_LEN]) -> Self {
        MasterKey(bytes)
    }

    /// A fresh random secret.
    pub fn generate() -> crate::error::Result<Self> {
        let mut k = [0u8; MASTER_LEN];
        super::config::getrandom(&mut k)?;
        Ok(MasterKey(k))
    }
}

/// Overwrite a secret in a way the optimiser keeps.
pub fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: a volatile write through a valid reference.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Every key derived from a master secret.
#[derive(Clone)]
pub struct Subkeys {
    pub data: [u8; 32],
    pub blob_id: [u8; 32],
    pub object_id: [u8; 32],
    pub chunker: [u8; 32],
    pub padding: [u8; 32],
}

impl Drop for Subkeys {
    fn drop(&mut self) {
        for k in [
            &mut self.data,
            &mut self.blob_id,
            &mut self.object_id,
            &mut self.chunker,
            &mut self.padding,
        ] {
            wipe(k);
        }
    }
}

impl Subkeys {
    pub fn derive(master: &MasterKey) -> Self {
        let k = |ctx: &str| derive_key(ctx, &master.0);
        Subkeys {
            data: k("rewind 2026-12 data encryption"),
            blob_id: k("rewind 2026-12 blob id"),
            object_id: k("rewind 2026-12 object id"),
            chunker: k("rewind 2026-12 chunker"),
            padding: k("rewind 2026-12 padding"),
        }
    }
}

/// Padmé: `len` rounded up so that only its top `log2(log2(len)) + 1` bits
/// may be set. Returns `len` itself for lengths below 2.
pub fn padme(len: usize) -> usize {
    if len < 2 {
        return len;
    }
    let e = usize::BITS - 1 - len.leading_zeros(); // floor(log2 len)
    let s = u32::BITS - e.leading_zeros(); // floor(log2 e) + 1
    let last_bits = e - s;
    let mask = (1usize << last_bits) - 1;
    (len + mask) & !mask
}

/// The padded length of a plaintext of `len` bytes, for a frame whose keyed
/// jitter word is `jitter`: Padmé's length plus `jitter` modulo its step.
pub fn padded_len(len: usize, jitter: u64) -> usize {
    let p = padme(len);
    let step = if p < 2 {
        1
    } else {
        let e = usize::BITS - 1 - p.leading_zeros();
        let s = u32::BITS - e.leading_zeros();
        1usize << (e - s)
    };
    p + (jitter % step as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padme_rounds_to_few_significant_bits_and_costs_at_most_12_percent() {
        assert_eq!(padme(0), 0);
        assert_eq!(padme(1), 1);
        assert_eq!(padme(100), 104); // E = 6, S = 3: three low bits zero
        for len in [
            9usize,
            100,
            1000,
            4097,
            65_537,
            131_072,
            1 << 20,
            (1 << 20) + 1,
        ] {
            let p = padme(len);
            assert!(p >= len);
            assert!((p - len) as f64 <= len as f64 * 0.12 + 1.0, "{len} -> {p}");
            let e = usize::BITS - 1 - p.leading_zeros();
            let s = u32::BITS - e.leading_zeros();
            assert_eq!(p.trailing_zeros().min(e - s), e - s, "{len} -> {p}");
        }
        assert_eq!(padme((1 << 20) + 1), (1 << 20) + (1 << 15));
    }

    #[test]
    fn jitter_stays_below_one_step() {
        for len in [10usize, 5000, 200_000] {
            let base = padme(len);
            for j in [0u64, 1, 12345, u64::MAX] {
                let p = padded_len(len, j);
                assert!(p >= base && p < base + base / 8 + 2, "{len} {j} {p}");
            }
        }
    }

    #[test]
    fn subkeys_differ_and_follow_the_master() {
        let m = MasterKey([7; MASTER_LEN]);
        let k = Subkeys::derive(&m);
        let all = [k.data, k.blob_id, k.object_id, k.chunker, k.padding];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j]);
            }
        }
        assert_ne!(Subkeys::derive(&MasterKey([8; MASTER_LEN])).data, k.data);
    }
}

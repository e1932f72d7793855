//! Content-defined chunking over byte slices. No I/O: the caller pushes bytes
//! and asks where the next cut is.
//!
//! Cut points depend only on the bytes around them, so inserting or deleting
//! bytes in the middle of a file (a database dump) changes only the chunks
//! near the edit; the rest keep their ids and deduplicate.
//!
//! # Two chunkers
//!
//! - Format 1 (unencrypted repositories): FastCDC (2020 variant,
//!   normalization level 1) with its public gear table. Chunk boundaries are
//!   a public function of the content, which is fine where the content is in
//!   plaintext anyway.
//! - Format 2 (encrypted repositories): the *keyed* chunker below. With a
//!   public or a weakly keyed chunker, the sizes of encrypted chunks identify
//!   content: Truong, Merz, Scarlata, Günther and Paterson ("Breaking and
//!   Fixing Content-Defined Chunking", 2025) recover the keys of the keyed
//!   rolling hashes of restic, borg, bupstash and tarsnap from chunk sizes
//!   of content an attacker plants, and then fingerprint the rest.
//!
//! # The keyed chunker
//!
//! Their fix, which this follows: a rolling hash over the window, then a
//! pseudo-random function of it decides the cut.
//!
//! 1. A gear hash with a secret table: `h = (h << 1) + G[byte]` over 64-bit
//!    words, so `h` is a keyed function of the last 64 bytes; `G` is 256
//!    words of BLAKE3's keyed output (key: the chunker key).
//! 2. Candidates: a position whose `h` has its top `k` bits zero (`k` is
//!    the config's `candidate_bits`, 4 in new repositories: one position in
//!    16 on average; its top bits are the ones every byte of the window
//!    reaches). With `k` = 0 (repositories made before it existed) every
//!    position is a candidate.
//! 3. At every candidate past the minimum size, `PRF(h)` decides: AES-128
//!    of `h` under a key derived from the chunker key, whose low bits must
//!    be zero (18 - `k` bits before the average size, 16 - `k` after), so
//!    a position is a cut with FastCDC's normalization-level-1
//!    probabilities, and chunk sizes have the same distribution.
//!
//! The candidate filter is what makes it fast: AES runs on one position in
//! 16, not on every one (`chunker` bench figures are in the README's notes).
//!
//! An attacker who sees chunk sizes, and even knows the content, learns
//! at each cut that `h` there had its top `k` bits zero (`k` bits of the
//! gear table's secret, with carries, per cut), and that `PRF(h)` passed
//! its mask at that point: outputs of a pseudo-random function at points it
//! cannot choose without the key, which say nothing of its outputs
//! elsewhere. Even a full recovery of the gear table (from many cuts of
//! planted content) only tells which positions are candidates, one in 16;
//! which of them are cuts is still decided by AES under a key it has not
//! seen, and the padded, compressed sizes it observes blur a cut's position
//! over far more than 16 bytes. What remains visible is what any
//! deduplicating store shows: how many chunks a file has, their (padded)
//! sizes, and that a chunk an attacker planted is stored once. `chunker`
//! bench figures are in the README's notes.

use crate::format::config::ChunkerParams;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use fastcdc::v2020::{cut, logarithm2, MASKS};

/// Which chunker, with its parameters.
#[derive(Clone)]
enum Algorithm {
    FastCdc { masks: [u64; 4] },
    Keyed(Box<Keyed>),
}

/// The keyed chunker's secrets.
#[derive(Clone)]
struct Keyed {
    gear: [u64; 256],
    prf: aes::Aes128,
    mask_s: u64,
    mask_l: u64,
    /// Zero: the PRF decides at every position (the first format-2
    /// chunker). Otherwise the positions whose gear hash has this many top
    /// bits zero are the candidates, and the PRF decides among them with
    /// as many bits fewer in its masks.
    candidate: u64,
}

/// Bytes of input scanned for candidates before their PRF outputs are
/// computed in one batch (a cut past it wastes at most this much work).
/// The cuts do not depend on it. Its scratch arrays (positions, hashes, AES
/// blocks: 28 bytes a byte of region, see [`Scratch`]) were once zeroed on
/// the stack at each call, 56 KiB at 2048, more than the L1 data cache: a
/// profile of a backup showed zstd and the page-cache copies 10-15% slower
/// encrypted than plain.
const REGION: usize = 512;

/// Positions decided per batch: AES runs several blocks in parallel (up
/// to 64 at once with VAES-512), and a batch well past that width keeps
/// the pipeline full.
const BATCH: usize = 256;

/// Finds cut points with fixed parameters.
#[derive(Clone)]
pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    algorithm: Algorithm,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker")
            .field("min", &self.min)
            .field("avg", &self.avg)
            .field("max", &self.max)
            .field("keyed", &matches!(self.algorithm, Algorithm::Keyed(_)))
            .finish()
    }
}

impl Chunker {
    /// FastCDC without a key (format 1), or the keyed chunker with `key`,
    /// asking the PRF at every position.
    pub fn new(p: ChunkerParams, key: Option<&[u8; 32]>) -> Self {
        Self::with_candidates(p, key, 0)
    }

    /// As [`Chunker::new`]; with a key and `candidate_bits` > 0, the PRF
    /// decides only at positions whose gear hash has its top
    /// `candidate_bits` zero (see the module docs). Callers check
    /// `candidate_bits` < log2(avg) - 1 (the config does).
    pub fn with_candidates(p: ChunkerParams, key: Option<&[u8; 32]>, candidate_bits: u32) -> Self {
        let bits = logarithm2(p.avg);
        let algorithm = match key {
            None => {
                let (mask_s, mask_l) = (MASKS[(bits + 1) as usize], MASKS[(bits - 1) as usize]);
                Algorithm::FastCdc {
                    masks: [mask_s, mask_l, mask_s << 1, mask_l << 1],
                }
            }
            Some(key) => {
                let mut gear = [0u64; 256];
                let mut xof = blake3::Hasher::new_keyed(key);
                xof.update(b"rewind chunker gear table");
                let mut bytes = [0u8; 256 * 8];
                xof.finalize_xof().fill(&mut bytes);
                for (g, b) in gear.iter_mut().zip(bytes.chunks_exact(8)) {
                    *g = u64::from_le_bytes(b.try_into().expect("8 bytes"));
                }
                let prf_key = blake3::keyed_hash(key, b"rewind chunker cut prf");
                let prf = aes::Aes128::new_from_slice(&prf_key.as_bytes()[..16]).expect("16 bytes");
                let k = candidate_bits.min(bits - 2);
                let mask = |b: u32| (1u64 << (b - k)) - 1;
                Algorithm::Keyed(Box::new(Keyed {
                    gear,
                    prf,
                    mask_s: mask(bits + 1),
                    mask_l: mask(bits - 1),
                    candidate: !(u64::MAX >> k),
                }))
            }
        };
        Chunker {
            min: p.min as usize,
            avg: p.avg as usize,
            max: p.max as usize,
            algorithm,
        }
    }

    /// The largest chunk this chunker cuts.
    pub fn max_size(&self) -> usize {
        self.max
    }

    /// The length of the chunk that starts at `data[0]`, or `None` when the
    /// answer needs more bytes (`data` is shorter than the largest chunk and
    /// `eof` is false). With `eof`, the rest of `data` ends the last chunk.
    pub fn next_cut(&self, data: &[u8], eof: bool) -> Option<usize> {
        if data.is_empty() {
            return None;
        }
        let window = &data[..data.len().min(self.max)];
        let n = match &self.algorithm {
            Algorithm::FastCdc { masks } => {
                let [s, l, sl, ll] = *masks;
                cut(window, self.min, self.avg, self.max, s, l, sl, ll).1
            }
            Algorithm::Keyed(k) => k.cut(window, self.min, self.avg),
        };
        if n == data.len() && n < self.max && !eof {
            return None;
        }
        Some(n.max(1))
    }

    /// All chunk lengths of a complete buffer.
    pub fn split(&self, mut data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some(n) = self.next_cut(data, true) {
            out.push(n);
            data = &data[n..];
        }
        out
    }
}

impl Keyed {
    /// The length of the first chunk of `data` (at most the largest chunk
    /// long): the first position past `min` whose PRF passes its mask, else
    /// all of `data`.
    fn cut(&self, data: &[u8], min: usize, avg: usize) -> usize {
        let n = data.len();
        if n <= min {
            return n;
        }
        if self.candidate != 0 {
            return self.cut_candidates(data, min, avg);
        }
        let mut h = 0u64;
        let mut blocks = [aes::Block::default(); BATCH];
        let mut at = min;
        while at < n {
            let end = (at + BATCH).min(n);
            for (j, block) in (at..end).zip(blocks.iter_mut()) {
                h = (h << 1).wrapping_add(self.gear[data[j] as usize]);
                block[..8].copy_from_slice(&h.to_le_bytes());
                block[8..].fill(0);
            }
            let batch = &mut blocks[..end - at];
            self.prf.encrypt_blocks(batch);
            for (j, block) in (at..end).zip(batch.iter()) {
                let mask = if j < avg { self.mask_s } else { self.mask_l };
                let v = u64::from_le_bytes(block[..8].try_into().expect("8 bytes"));
                if v & mask == 0 {
                    return j + 1;
                }
            }
            at = end;
        }
        n
    }

    /// [`Keyed::cut`] with a candidate filter: a region of input is
    /// scanned with the gear hash alone (branch-free: every position is
    /// written, the count advances only for candidates, rather than a
    /// second pass over stored hashes), then the PRF runs over that
    /// region's candidates in one batch.
    fn cut_candidates(&self, data: &[u8], min: usize, avg: usize) -> usize {
        SCRATCH.with(|s| {
            let s = &mut *s.borrow_mut();
            self.cut_candidates_in(data, min, avg, s)
        })
    }

    fn cut_candidates_in(&self, data: &[u8], min: usize, avg: usize, s: &mut Scratch) -> usize {
        let Scratch {
            at_pos,
            hashes,
            blocks,
        } = s;
        let n = data.len();
        let mut h = 0u64;
        let mut at = min;
        while at < n {
            let end = (at + REGION).min(n);
            let mut count = 0;
            for (j, &byte) in data[at..end].iter().enumerate() {
                h = (h << 1).wrapping_add(self.gear[byte as usize]);
                at_pos[count] = j as u32;
                hashes[count] = h;
                count += (h & self.candidate == 0) as usize;
            }
            for (block, &h) in blocks.iter_mut().zip(&hashes[..count]) {
                block[..8].copy_from_slice(&h.to_le_bytes());
                block[8..].fill(0);
            }
            let batch = &mut blocks[..count];
            self.prf.encrypt_blocks(batch);
            for (&j, block) in at_pos.iter().zip(batch.iter()) {
                let j = at + j as usize;
                let mask = if j < avg { self.mask_s } else { self.mask_l };
                let v = u64::from_le_bytes(block[..8].try_into().expect("8 bytes"));
                if v & mask == 0 {
                    return j + 1;
                }
            }
            at = end;
        }
        n
    }
}

/// [`Keyed::cut_candidates`]'s arrays, one set per thread, made once: only
/// the entries a region's candidates use are touched (about one in 16),
/// where arrays made per call were zeroed whole each time, and pushed the
/// data of the compression that follows out of the caches.
struct Scratch {
    at_pos: Box<[u32; REGION]>,
    hashes: Box<[u64; REGION]>,
    blocks: Box<[aes::Block; REGION]>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch {
        at_pos: Box::new([0; REGION]),
        hashes: Box::new([0; REGION]),
        blocks: Box::new([aes::Block::default(); REGION]),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::noise;

    const PARAMS: ChunkerParams = ChunkerParams {
        min: 2048,
        avg: 8192,
        max: 32768,
    };

    /// Every chunker, with small sizes.
    fn both() -> [Chunker; 3] {
        [
            Chunker::new(PARAMS, None),
            Chunker::new(PARAMS, Some(&[7; 32])),
            Chunker::with_candidates(PARAMS, Some(&[7; 32]), 4),
        ]
    }

    #[test]
    fn chunks_cover_input_within_bounds() {
        for c in both() {
            let data = noise(1 << 20, 1);
            let cuts = c.split(&data);
            assert_eq!(cuts.iter().sum::<usize>(), data.len());
            assert!(cuts[..cuts.len() - 1]
                .iter()
                .all(|&n| (2048..=32768).contains(&n)));
            assert!(cuts.len() > 60 && cuts.len() < 300, "{}", cuts.len());
        }
    }

    /// The keyed chunker's cuts depend on its key: another key cuts the same
    /// content elsewhere, so chunk sizes do not identify content across
    /// repositories.
    #[test]
    fn keyed_cuts_depend_on_the_key() {
        let data = noise(1 << 20, 9);
        let a = Chunker::new(PARAMS, Some(&[1; 32])).split(&data);
        let b = Chunker::new(PARAMS, Some(&[2; 32])).split(&data);
        let fast = Chunker::new(PARAMS, None).split(&data);
        assert_ne!(a, b);
        assert_ne!(a, fast);
        let ends = |v: &[usize]| {
            v.iter()
                .scan(0, |s, n| {
                    *s += n;
                    Some(*s)
                })
                .collect::<std::collections::HashSet<_>>()
        };
        let shared = ends(&a).intersection(&ends(&b)).count();
        assert!(
            shared < a.len() / 4,
            "{shared} of {} cut points shared",
            a.len()
        );
    }

    /// The candidate filter keeps the size distribution: mean chunk sizes
    /// of the three chunkers agree within 10% over 16 MiB (about 128
    /// chunks each at the default sizes; here 2000).
    #[test]
    fn candidates_keep_the_size_distribution() {
        let data = noise(16 << 20, 5);
        let means: Vec<f64> = both()
            .iter()
            .map(|c| {
                let cuts = c.split(&data);
                data.len() as f64 / cuts.len() as f64
            })
            .collect();
        for m in &means {
            assert!((m / means[0] - 1.0).abs() < 0.1, "{means:?}");
        }
    }

    /// Candidates are where the top bits of the gear hash are zero: every
    /// cut but the last ends at such a position.
    #[test]
    fn candidate_cuts_fall_on_candidates() {
        let key = [7; 32];
        let c = Chunker::with_candidates(PARAMS, Some(&key), 4);
        let Algorithm::Keyed(k) = &c.algorithm else {
            panic!("keyed")
        };
        let data = noise(1 << 20, 6);
        let mut at = 0;
        let cuts = c.split(&data);
        for &n in &cuts[..cuts.len() - 1] {
            // The gear hash restarts at `min` within each chunk.
            let h = data[at + PARAMS.min as usize..at + n]
                .iter()
                .fold(0u64, |h, &b| (h << 1).wrapping_add(k.gear[b as usize]));
            assert_eq!(h >> 60, 0, "cut at {n} is not a candidate");
            at += n;
        }
        assert_ne!(
            cuts,
            Chunker::new(PARAMS, Some(&key)).split(&data),
            "the filter changes where cuts fall"
        );
    }

    #[test]
    fn streaming_gives_the_same_cuts_as_whole_buffer() {
        for c in both() {
            let data = noise(300_000, 2);
            let whole = c.split(&data);
            // Feed 5000 bytes at a time, as a reader would.
            let (mut buf, mut pos, mut cuts) = (Vec::new(), 0, Vec::new());
            loop {
                let eof = pos >= data.len();
                while let Some(n) = c.next_cut(&buf, eof) {
                    cuts.push(n);
                    buf.drain(..n);
                }
                if eof {
                    break;
                }
                let end = (pos + 5000).min(data.len());
                buf.extend_from_slice(&data[pos..end]);
                pos = end;
            }
            assert_eq!(cuts, whole);
        }
    }

    #[test]
    fn an_insert_changes_only_nearby_chunks() {
        for c in both() {
            let data = noise(1 << 20, 3);
            let mut edited = data[..500_000].to_vec();
            edited.extend_from_slice(b"INSERTED ROW");
            edited.extend_from_slice(&data[500_000..]);
            let pieces = |d: &[u8]| {
                let mut at = 0;
                c.split(d)
                    .into_iter()
                    .map(|n| {
                        at += n;
                        d[at - n..at].to_vec()
                    })
                    .collect::<std::collections::HashSet<_>>()
            };
            let (a, b) = (pieces(&data), pieces(&edited));
            let changed = b.difference(&a).count();
            assert!(changed <= 2, "{changed} chunks changed");
        }
    }
}

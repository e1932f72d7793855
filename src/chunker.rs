//! Content-defined chunking: FastCDC (2020 variant, normalization level 1) over
//! byte slices. No I/O: the caller pushes bytes and asks where the next cut is.
//!
//! Cut points depend only on the bytes around them, so inserting or deleting
//! bytes in the middle of a file (a database dump) changes only the chunks
//! near the edit; the rest keep their ids and deduplicate.

use crate::format::config::ChunkerParams;
use fastcdc::v2020::{cut, logarithm2, MASKS};

/// Finds cut points with fixed parameters.
#[derive(Clone, Debug)]
pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    masks: [u64; 4],
}

impl Chunker {
    pub fn new(p: ChunkerParams) -> Self {
        let bits = logarithm2(p.avg);
        let (mask_s, mask_l) = (MASKS[(bits + 1) as usize], MASKS[(bits - 1) as usize]);
        Chunker {
            min: p.min as usize,
            avg: p.avg as usize,
            max: p.max as usize,
            masks: [mask_s, mask_l, mask_s << 1, mask_l << 1],
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
        let [s, l, sl, ll] = self.masks;
        let (_, n) = cut(window, self.min, self.avg, self.max, s, l, sl, ll);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn small() -> Chunker {
        Chunker::new(ChunkerParams {
            min: 2048,
            avg: 8192,
            max: 32768,
        })
    }

    #[test]
    fn chunks_cover_input_within_bounds() {
        let c = small();
        let data = noise(1 << 20, 1);
        let cuts = c.split(&data);
        assert_eq!(cuts.iter().sum::<usize>(), data.len());
        assert!(cuts[..cuts.len() - 1]
            .iter()
            .all(|&n| (2048..=32768).contains(&n)));
        assert!(cuts.len() > 60 && cuts.len() < 300, "{}", cuts.len());
    }

    #[test]
    fn streaming_gives_the_same_cuts_as_whole_buffer() {
        let c = small();
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

    #[test]
    fn an_insert_changes_only_nearby_chunks() {
        let c = small();
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

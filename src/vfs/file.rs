//! A file's content as a map from offsets to extents.
//!
//! The extents (data blobs and holes) are kept with their cumulative end
//! offsets, so the extent holding any offset is one binary search away,
//! whatever the file's size. Everything here is pure: [`FileMap::pieces`] says
//! which bytes of which blobs a read needs, and the caller fetches them.

use crate::format::id::BlobId;
use crate::format::tree::Extent;

/// Part of a read: bytes of one extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// `len` bytes from `start` within data blob `id` (extent `index`, whose
    /// blob holds `blob_len` bytes).
    Data {
        index: usize,
        id: BlobId,
        blob_len: u32,
        start: usize,
        len: usize,
    },
    /// `len` zeros.
    Hole { len: usize },
}

impl Piece {
    pub fn len(&self) -> usize {
        match *self {
            Piece::Data { len, .. } | Piece::Hole { len } => len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where `lseek` should look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whence {
    /// `SEEK_DATA`: the next offset holding data.
    Data,
    /// `SEEK_HOLE`: the next offset in a hole (the end of the file counts).
    Hole,
}

/// A file's extents and their cumulative end offsets.
#[derive(Clone, Debug)]
pub struct FileMap {
    extents: Vec<Extent>,
    ends: Vec<u64>,
}

impl FileMap {
    pub fn new(extents: &[Extent]) -> FileMap {
        let mut end = 0u64;
        let ends = extents
            .iter()
            .map(|e| {
                end += e.len();
                end
            })
            .collect();
        FileMap {
            extents: extents.to_vec(),
            ends,
        }
    }

    /// The file's length.
    pub fn size(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    pub fn extent_count(&self) -> usize {
        self.extents.len()
    }

    /// Where extent `i` starts.
    pub fn start(&self, i: usize) -> u64 {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    /// The extent holding byte `offset`: binary search over the cumulative
    /// ends (empty extents are never chosen).
    pub fn find(&self, offset: u64) -> Option<usize> {
        let i = self.ends.partition_point(|&end| end <= offset);
        (i < self.extents.len()).then_some(i)
    }

    /// The pieces that make up `len` bytes from `offset`, cut at the end of
    /// the file.
    pub fn pieces(&self, offset: u64, len: usize) -> Vec<Piece> {
        let end = offset.saturating_add(len as u64).min(self.size());
        let mut out = Vec::new();
        let Some(mut i) = self.find(offset) else {
            return out;
        };
        let mut pos = offset;
        while pos < end && i < self.extents.len() {
            let (start, stop) = (self.start(i), self.ends[i]);
            let take = (stop.min(end) - pos) as usize;
            if take > 0 {
                out.push(match self.extents[i] {
                    Extent::Data { id, len } => Piece::Data {
                        index: i,
                        id,
                        blob_len: len,
                        start: (pos - start) as usize,
                        len: take,
                    },
                    Extent::Hole { .. } => Piece::Hole { len: take },
                });
            }
            pos += take as u64;
            i += 1;
        }
        out
    }

    /// Data extents after extent `index`, up to `max_bytes` of them: what a
    /// sequential reader will want next.
    pub fn data_after(&self, index: usize, max_bytes: u64) -> Vec<(usize, BlobId, u32)> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for (i, e) in self.extents.iter().enumerate().skip(index + 1) {
            if let Extent::Data { id, len } = *e {
                if bytes + len as u64 > max_bytes && !out.is_empty() {
                    break;
                }
                bytes += len as u64;
                out.push((i, id, len));
            }
        }
        out
    }

    /// `lseek(SEEK_DATA / SEEK_HOLE)` from `offset`; `None` means `ENXIO`
    /// (at or past the end, or no data after `offset`).
    pub fn seek(&self, offset: u64, whence: Whence) -> Option<u64> {
        if offset >= self.size() {
            return None;
        }
        let first = self.find(offset)?;
        for i in first..self.extents.len() {
            let hit = matches!(
                (whence, self.extents[i]),
                (Whence::Data, Extent::Data { .. }) | (Whence::Hole, Extent::Hole { .. })
            );
            if hit && self.ends[i] > self.start(i) {
                return Some(self.start(i).max(offset));
            }
        }
        match whence {
            Whence::Data => None,
            Whence::Hole => Some(self.size()),
        }
    }
}

/// 512-byte blocks a file with `data_bytes` of data (holes excluded) would
/// take on disk in 4 KiB pages: what `st_blocks` shows, so that `du` and
/// sparse-aware copies (`cp`, `rsync --sparse`) see the holes.
pub fn blocks(data_bytes: u64) -> u64 {
    data_bytes.div_ceil(4096) * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> FileMap {
        // [0,4) data A, [4,10) hole, [10,13) data B, [13,13) empty hole, [13,20) hole
        FileMap::new(&[
            Extent::Data {
                id: BlobId([1; 32]),
                len: 4,
            },
            Extent::Hole { len: 6 },
            Extent::Data {
                id: BlobId([2; 32]),
                len: 3,
            },
            Extent::Hole { len: 0 },
            Extent::Hole { len: 7 },
        ])
    }

    #[test]
    fn find_binary_searches_cumulative_ends() {
        let m = map();
        let table = [
            (0, Some(0)),
            (3, Some(0)),
            (4, Some(1)),
            (9, Some(1)),
            (10, Some(2)),
            (12, Some(2)),
            (13, Some(4)),
            (19, Some(4)),
            (20, None),
        ];
        for (off, want) in table {
            assert_eq!(m.find(off), want, "offset {off}");
        }
        assert_eq!(m.size(), 20);
        assert_eq!(FileMap::new(&[]).find(0), None);
    }

    #[test]
    fn pieces_cross_extents_and_stop_at_the_end() {
        let m = map();
        let a = BlobId([1; 32]);
        let b = BlobId([2; 32]);
        assert_eq!(
            m.pieces(2, 10),
            [
                Piece::Data {
                    index: 0,
                    id: a,
                    blob_len: 4,
                    start: 2,
                    len: 2
                },
                Piece::Hole { len: 6 },
                Piece::Data {
                    index: 2,
                    id: b,
                    blob_len: 3,
                    start: 0,
                    len: 2
                },
            ]
        );
        assert_eq!(
            m.pieces(11, 100),
            [
                Piece::Data {
                    index: 2,
                    id: b,
                    blob_len: 3,
                    start: 1,
                    len: 2
                },
                Piece::Hole { len: 7 }
            ]
        );
        assert!(m.pieces(20, 5).is_empty());
        assert!(m.pieces(u64::MAX, 5).is_empty());
        let total: usize = m.pieces(0, 1 << 20).iter().map(Piece::len).sum();
        assert_eq!(total, 20);
    }

    #[test]
    fn seek_data_and_hole() {
        let m = map();
        let table = [
            (0, Whence::Data, Some(0)),
            (0, Whence::Hole, Some(4)),
            (5, Whence::Data, Some(10)),
            (5, Whence::Hole, Some(5)),
            (11, Whence::Hole, Some(13)),
            (14, Whence::Data, None),
            (20, Whence::Hole, None),
        ];
        for (off, w, want) in table {
            assert_eq!(m.seek(off, w), want, "{off} {w:?}");
        }
        let dense = FileMap::new(&[Extent::Data {
            id: BlobId([1; 32]),
            len: 8,
        }]);
        assert_eq!(dense.seek(3, Whence::Hole), Some(8));
    }

    #[test]
    fn read_ahead_takes_data_extents_up_to_a_budget() {
        let m = map();
        assert_eq!(m.data_after(0, 100), [(2, BlobId([2; 32]), 3)]);
        assert!(m.data_after(2, 100).is_empty());
        let many: Vec<Extent> = (0..10)
            .map(|i| Extent::Data {
                id: BlobId([i; 32]),
                len: 10,
            })
            .collect();
        let m = FileMap::new(&many);
        assert_eq!(m.data_after(0, 25).len(), 2);
        assert_eq!(m.data_after(0, 5).len(), 1, "always at least one");
    }

    #[test]
    fn blocks_round_up_to_pages() {
        assert_eq!(blocks(0), 0);
        assert_eq!(blocks(1), 8);
        assert_eq!(blocks(4096), 8);
        assert_eq!(blocks(4097), 16);
    }
}

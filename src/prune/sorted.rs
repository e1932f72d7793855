//! Sorted streams of blob ids without holding them all: an external sorter
//! for the ids snapshots use, and a k-way merge of sorted sources (index files,
//! sorted runs). Memory stays flat however large the repository grows.

use crate::error::{Error, Result};
use crate::format::id::BlobId;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

/// Ids held in memory before a sorted run goes to disk (8 MiB).
const BATCH: usize = 1 << 18;

/// Merge sorted streams of `(id, value)` into one sorted stream. Equal ids
/// come out together, in source order, so the first of a group is the one
/// from the earliest source.
pub struct KMerge<I: Iterator<Item = Result<(BlobId, T)>>, T> {
    sources: Vec<I>,
    heads: Vec<Option<(BlobId, T)>>,
    heap: BinaryHeap<Reverse<(BlobId, usize)>>,
    error: Option<Error>,
}

impl<I: Iterator<Item = Result<(BlobId, T)>>, T> KMerge<I, T> {
    pub fn new(sources: Vec<I>) -> Self {
        let mut m = KMerge {
            heads: (0..sources.len()).map(|_| None).collect(),
            sources,
            heap: BinaryHeap::new(),
            error: None,
        };
        for i in 0..m.sources.len() {
            m.advance(i);
        }
        m
    }

    fn advance(&mut self, i: usize) {
        match self.sources[i].next() {
            Some(Ok((id, v))) => {
                self.heads[i] = Some((id, v));
                self.heap.push(Reverse((id, i)));
            }
            Some(Err(e)) => self.error = Some(e),
            None => {}
        }
    }
}

impl<I: Iterator<Item = Result<(BlobId, T)>>, T> Iterator for KMerge<I, T> {
    type Item = Result<(BlobId, T)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        let Reverse((_, i)) = self.heap.pop()?;
        let item = self.heads[i].take().expect("heads follow the heap");
        self.advance(i);
        Some(Ok(item))
    }
}

/// Collects ids in any order, with repeats; yields them sorted and unique.
pub struct IdSorter {
    batch: Vec<BlobId>,
    runs: Vec<File>,
}

impl IdSorter {
    pub fn new() -> Self {
        IdSorter {
            batch: Vec::new(),
            runs: Vec::new(),
        }
    }

    pub fn push(&mut self, id: BlobId) -> Result<()> {
        self.batch.push(id);
        if self.batch.len() >= BATCH {
            self.spill()?;
        }
        Ok(())
    }

    /// Write the batch, sorted and unique, to an anonymous temporary file.
    fn spill(&mut self) -> Result<()> {
        self.batch.sort_unstable();
        self.batch.dedup();
        let io = |e| Error::io("temporary file for prune", e);
        let mut f = tempfile::tempfile().map_err(io)?;
        {
            let mut w = BufWriter::new(&mut f);
            for id in &self.batch {
                w.write_all(&id.0).map_err(io)?;
            }
            w.flush().map_err(io)?;
        }
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        self.runs.push(f);
        self.batch.clear();
        Ok(())
    }

    /// Every id pushed, sorted, each once.
    pub fn finish(mut self) -> Result<SortedIds> {
        if !self.runs.is_empty() && !self.batch.is_empty() {
            self.spill()?;
        }
        let sources: Vec<Run> = if self.runs.is_empty() {
            self.batch.sort_unstable();
            self.batch.dedup();
            vec![Run::Memory(self.batch.into_iter())]
        } else {
            self.runs
                .into_iter()
                .map(|f| Run::File(BufReader::new(f)))
                .collect()
        };
        Ok(SortedIds {
            merge: KMerge::new(sources),
            last: None,
        })
    }
}

impl Default for IdSorter {
    fn default() -> Self {
        Self::new()
    }
}

/// One sorted run.
pub enum Run {
    Memory(std::vec::IntoIter<BlobId>),
    File(BufReader<File>),
}

impl Iterator for Run {
    type Item = Result<(BlobId, ())>;
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Run::Memory(it) => it.next().map(|id| Ok((id, ()))),
            Run::File(r) => {
                let mut b = [0u8; 32];
                match r.read_exact(&mut b) {
                    Ok(()) => Some(Ok((BlobId(b), ()))),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
                    Err(e) => Some(Err(Error::io("temporary file for prune", e))),
                }
            }
        }
    }
}

/// Sorted unique ids.
pub struct SortedIds {
    merge: KMerge<Run, ()>,
    last: Option<BlobId>,
}

impl Iterator for SortedIds {
    type Item = Result<BlobId>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.merge.next()? {
                Err(e) => return Some(Err(e)),
                Ok((id, ())) if Some(id) == self.last => continue,
                Ok((id, ())) => {
                    self.last = Some(id);
                    return Some(Ok(id));
                }
            }
        }
    }
}

/// Answers "is this id in the set?" for ids asked in increasing order.
pub struct Membership {
    ids: std::iter::Peekable<SortedIds>,
    /// Ids of the set walked past without being asked about.
    skipped: u64,
}

impl Membership {
    pub fn new(ids: SortedIds) -> Self {
        Membership {
            ids: ids.peekable(),
            skipped: 0,
        }
    }

    /// How many ids of the set were never asked about: with every index id
    /// asked in order, these are the used blobs no index knows.
    pub fn never_asked(mut self) -> Result<u64> {
        for id in self.ids {
            id?;
            self.skipped += 1;
        }
        Ok(self.skipped)
    }

    /// Whether `id` is in the set; ids must be asked in increasing order.
    pub fn contains(&mut self, id: &BlobId) -> Result<bool> {
        loop {
            match self.ids.peek() {
                None => return Ok(false),
                Some(Err(_)) => {
                    return Err(self
                        .ids
                        .next()
                        .expect("peeked")
                        .expect_err("peeked an error"))
                }
                Some(Ok(next)) if next < id => {
                    self.ids.next();
                    self.skipped += 1;
                }
                Some(Ok(next)) if next == id => {
                    self.ids.next();
                    return Ok(true);
                }
                Some(Ok(_)) => return Ok(false),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> BlobId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_be_bytes());
        BlobId(b)
    }

    #[test]
    fn sorts_and_dedups_in_memory_and_through_runs() {
        for total in [10u32, 3 * BATCH as u32 + 7] {
            let mut s = IdSorter::new();
            for n in (0..total).rev() {
                s.push(id(n / 2)).unwrap();
            }
            let out: Vec<BlobId> = s.finish().unwrap().map(Result::unwrap).collect();
            assert_eq!(out.len() as u32, total.div_ceil(2));
            assert!(out.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn membership_walks_forward() {
        let mut s = IdSorter::new();
        for n in [5, 1, 9] {
            s.push(id(n)).unwrap();
        }
        let mut m = Membership::new(s.finish().unwrap());
        let asked: Vec<bool> = [0, 1, 2, 5, 6, 9, 10]
            .iter()
            .map(|&n| m.contains(&id(n)).unwrap())
            .collect();
        assert_eq!(asked, [false, true, false, true, false, true, false]);
        assert_eq!(m.never_asked().unwrap(), 0);
        // An id of the set passed over unasked is counted.
        let mut s = IdSorter::new();
        for n in [1, 2, 3] {
            s.push(id(n)).unwrap();
        }
        let mut m = Membership::new(s.finish().unwrap());
        assert!(m.contains(&id(1)).unwrap());
        assert!(m.contains(&id(3)).unwrap());
        assert_eq!(m.never_asked().unwrap(), 1);
    }

    #[test]
    fn kmerge_keeps_source_order_for_equal_ids() {
        let a = vec![Ok((id(1), "a1")), Ok((id(3), "a3"))].into_iter();
        let b = vec![Ok((id(1), "b1")), Ok((id(2), "b2"))].into_iter();
        let out: Vec<&str> = KMerge::new(vec![a, b]).map(|r| r.unwrap().1).collect();
        assert_eq!(out, ["a1", "b1", "b2", "a3"]);
    }
}

//! Reads: open files, the chunk cache and read-ahead.
//!
//! A read asks the [`FileMap`] which pieces it needs, takes each data blob
//! from the chunk cache (or the repository, decompressed and checked against
//! its id) and copies the bytes out. A reader that goes on sequentially gets
//! the next chunks loaded in the background, so decompression overlaps the
//! kernel's copy. Once every byte of a chunk has been handed to a reader, the
//! chunk leaves the cache: the kernel keeps the file's pages in its own cache
//! (snapshots never change), so keeping ours too would only double the
//! memory. Chunks read in part (random access, `head`) stay, bounded by the
//! cache's budget.

use super::cache::Cache;
use super::file::{FileMap, Piece, Whence};
use super::inode::Ino;
use crate::error::{Error, Result};
use crate::format::id::BlobId;
use crate::format::tree::Extent;
use crate::repo::Repository;
use std::sync::{Arc, Mutex, Weak};

/// How far ahead of a sequential reader chunks are loaded.
const READ_AHEAD_BYTES: u64 = 4 << 20;

/// Bookkeeping per chunk in the cache, besides its bytes.
const CHUNK_OVERHEAD: u64 = 128;

/// Data blobs, cached and read ahead.
pub struct Chunks {
    repo: Arc<Repository>,
    cache: Cache<BlobId, Vec<u8>>,
    ahead: Mutex<Option<crossbeam_channel::Sender<(BlobId, u32)>>>,
}

impl Chunks {
    /// A chunk store keeping up to `budget` bytes of decompressed chunks.
    pub fn new(repo: Arc<Repository>, budget: u64) -> Arc<Chunks> {
        Arc::new(Chunks {
            repo,
            cache: Cache::new(budget),
            ahead: Mutex::new(None),
        })
    }

    /// Start `threads` read-ahead workers. Without them, reads still work,
    /// just without loading ahead. The workers end when the store is dropped.
    pub fn start_read_ahead(self: &Arc<Self>, threads: usize) -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded::<(BlobId, u32)>(64);
        for i in 0..threads {
            let rx = rx.clone();
            let chunks: Weak<Chunks> = Arc::downgrade(self);
            std::thread::Builder::new()
                .name(format!("rewind-ahead-{i}"))
                .spawn(move || {
                    for (id, len) in rx {
                        let Some(c) = chunks.upgrade() else { break };
                        // A failure is reported when the reader gets there.
                        let _ = c.get(&id, len);
                    }
                })
                .map_err(|e| Error::io("read-ahead thread", e))?;
        }
        *self.ahead.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        Ok(())
    }

    /// The plaintext of data blob `id`, which the tree says is `len` bytes.
    pub fn get(&self, id: &BlobId, len: u32) -> Result<Arc<Vec<u8>>> {
        self.cache.get_or_load(
            id,
            |v| v.len() as u64 + CHUNK_OVERHEAD,
            || self.load(id, len),
        )
    }

    /// Like [`Chunks::get`], but a chunk not cached is not kept: for bytes
    /// that go to the kernel's cache instead (pushed files).
    pub fn fetch(&self, id: &BlobId, len: u32) -> Result<Arc<Vec<u8>>> {
        match self.cache.peek(id) {
            Some(c) if c.len() != len as usize => Err(wrong_length(id)),
            Some(c) => Ok(c),
            None => self.load(id, len).map(Arc::new),
        }
    }

    /// Data blob `id` from the repository, which the tree says is `len` bytes.
    fn load(&self, id: &BlobId, len: u32) -> Result<Vec<u8>> {
        let data = read_blob(&self.repo, id)?;
        if data.len() != len as usize {
            return Err(wrong_length(id));
        }
        Ok(data)
    }

    /// Queue chunks for loading; those that do not fit in the queue are
    /// skipped (the reader will load them itself).
    fn read_ahead(&self, ids: &[(BlobId, u32)]) {
        if let Some(tx) = &*self.ahead.lock().unwrap_or_else(|e| e.into_inner()) {
            for &job in ids {
                if tx.try_send(job).is_err() {
                    break;
                }
            }
        }
    }

    /// Bytes of chunks cached now.
    pub fn cached_bytes(&self) -> u64 {
        self.cache.weight()
    }
}

fn wrong_length(id: &BlobId) -> Error {
    Error::corrupt(
        format!("blob {}", id.short()),
        "length differs from the tree",
    )
}

/// The plaintext of blob `id`, checked against its id. A blob missing from
/// the index makes the index reload once: a backup that finished since the
/// last look may have added it.
pub fn read_blob(repo: &Repository, id: &BlobId) -> Result<Vec<u8>> {
    let loc = match repo.lookup(id)? {
        Some(loc) => loc,
        None => {
            repo.reload_index()?;
            repo.lookup(id)?.ok_or_else(|| {
                Error::corrupt(
                    format!("blob {}", id.short()),
                    "not in any index (missing data)",
                )
            })?
        }
    };
    repo.read_blob_at(id, &loc)
}

/// A file being read: its map, what was handed out of each chunk, and where
/// its reader got to (for read-ahead).
pub struct OpenFile {
    pub ino: Ino,
    map: FileMap,
    state: Mutex<ReadState>,
}

struct ReadState {
    /// Where the last read ended: a read starting here is sequential.
    next: u64,
    /// Extents up to this index have been queued for read-ahead.
    queued: usize,
    /// Bytes of each extent handed out so far. Counted, not just "the read
    /// reached the chunk's end", because the kernel's parallel read-ahead
    /// requests arrive in any order.
    served: Vec<u32>,
    /// Data bytes not handed out yet.
    unserved: u64,
}

impl OpenFile {
    pub fn new(ino: Ino, extents: &[Extent]) -> OpenFile {
        let map = FileMap::new(extents);
        let unserved = extents
            .iter()
            .map(|e| match e {
                Extent::Data { len, .. } => *len as u64,
                Extent::Hole { .. } => 0,
            })
            .sum();
        let served = vec![0; map.extent_count()];
        OpenFile {
            ino,
            map,
            state: Mutex::new(ReadState {
                next: 0,
                queued: 0,
                served,
                unserved,
            }),
        }
    }

    /// Roughly the bytes this state takes.
    pub fn weight(&self) -> u64 {
        (self.map.extent_count() * 52 + 400) as u64
    }

    /// Up to `size` bytes from `offset` (fewer only at the end of the file),
    /// and whether every data byte of the file has now been handed out.
    pub fn read(&self, chunks: &Chunks, offset: u64, size: usize) -> Result<(Vec<u8>, bool)> {
        let pieces = self.map.pieces(offset, size);
        let mut out = Vec::with_capacity(pieces.iter().map(Piece::len).sum());
        for p in &pieces {
            match *p {
                Piece::Hole { len } => out.resize(out.len() + len, 0),
                Piece::Data {
                    id,
                    blob_len,
                    start,
                    len,
                    ..
                } => {
                    let chunk = chunks.get(&id, blob_len)?;
                    // The cache is keyed by blob id alone: a tree that gives
                    // the same blob another length is damage, not a panic.
                    let piece = chunk
                        .get(start..start + len)
                        .filter(|_| chunk.len() == blob_len as usize);
                    let piece = piece.ok_or_else(|| {
                        Error::corrupt(
                            format!("blob {}", id.short()),
                            "its length differs between trees",
                        )
                    })?;
                    out.extend_from_slice(piece);
                }
            }
        }
        let done = self.after_read(chunks, offset, out.len() as u64, &pieces);
        Ok((out, done))
    }

    /// Count what was handed out, drop chunks handed out in full, and queue
    /// the next ones for a sequential reader. Returns whether the whole file
    /// has been handed out.
    fn after_read(&self, chunks: &Chunks, offset: u64, n: u64, pieces: &[Piece]) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let sequential = offset > 0 && offset == st.next;
        st.next = offset + n;
        let mut last = None;
        for p in pieces {
            if let Piece::Data {
                index,
                id,
                blob_len,
                len,
                ..
            } = *p
            {
                let before = st.served[index];
                st.served[index] = before.saturating_add(len as u32).min(blob_len);
                st.unserved -= (st.served[index] - before) as u64;
                if st.served[index] == blob_len {
                    // The kernel has all of it now (and again, if a late
                    // request loaded it once more).
                    chunks.cache.discard(&id);
                }
                last = Some(index);
            }
        }
        let done = st.unserved == 0;
        let Some(last) = last.filter(|_| sequential) else {
            return done;
        };
        let from = last.max(st.queued);
        let queued_ahead = self.map.start(from).saturating_sub(self.map.start(last));
        if queued_ahead >= READ_AHEAD_BYTES {
            return done;
        }
        let next = self.map.data_after(from, READ_AHEAD_BYTES - queued_ahead);
        let Some(&(upto, _, _)) = next.last() else {
            return done;
        };
        st.queued = upto;
        drop(st);
        let jobs: Vec<(BlobId, u32)> = next.into_iter().map(|(_, id, len)| (id, len)).collect();
        chunks.read_ahead(&jobs);
        done
    }

    /// `lseek` for `SEEK_DATA` / `SEEK_HOLE`; `None` means `ENXIO`.
    pub fn seek(&self, offset: u64, whence: Whence) -> Option<u64> {
        self.map.seek(offset, whence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::repo::writer::RepoWriter;

    fn store(blobs: &[Vec<u8>]) -> (Arc<Chunks>, Vec<Extent>) {
        let repo = Arc::new(
            Repository::init(
                Arc::new(MemoryBackend::new()),
                &crate::repo::InitOptions::test(),
            )
            .unwrap(),
        );
        let w = RepoWriter::new(repo.clone(), 3, false).unwrap();
        let mut extents = Vec::new();
        for b in blobs {
            let id = w.add_data(b).unwrap();
            extents.push(Extent::Data {
                id,
                len: b.len() as u32,
            });
            extents.push(Extent::Hole { len: 3 });
        }
        w.flush().unwrap();
        (Chunks::new(repo, 1 << 20), extents)
    }

    #[test]
    fn reads_at_any_offset_give_the_content_with_zeros_for_holes() {
        let blobs: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i + 1; 10 + i as usize]).collect();
        let (chunks, extents) = store(&blobs);
        let mut want = Vec::new();
        for b in &blobs {
            want.extend_from_slice(b);
            want.extend_from_slice(&[0; 3]);
        }
        let f = OpenFile::new(2, &extents);
        for off in 0..want.len() {
            for size in [1, 5, 13, 100] {
                let got = f.read(&chunks, off as u64, size).unwrap().0;
                assert_eq!(
                    got,
                    want[off..(off + size).min(want.len())],
                    "offset {off} size {size}"
                );
            }
        }
    }

    #[test]
    fn chunks_read_to_the_end_leave_the_cache() {
        let blobs = vec![vec![7u8; 1000], vec![8u8; 1000]];
        let (chunks, extents) = store(&blobs);
        let f = OpenFile::new(2, &extents);
        f.read(&chunks, 0, 500).unwrap();
        assert!(chunks.cached_bytes() >= 1000, "half-read chunk stays");
        f.read(&chunks, 500, 500).unwrap();
        assert_eq!(chunks.cached_bytes(), 0, "fully read chunk goes");
    }

    #[test]
    fn a_length_that_differs_from_the_tree_is_corrupt() {
        let (chunks, extents) = store(&[vec![1u8; 10]]);
        let Extent::Data { id, .. } = extents[0] else {
            unreachable!()
        };
        assert!(matches!(chunks.get(&id, 11), Err(Error::Corrupt { .. })));
        let missing = BlobId([0xee; 32]);
        assert!(matches!(
            chunks.get(&missing, 1),
            Err(Error::Corrupt { .. })
        ));
    }
}

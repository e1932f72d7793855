//! [`RepoWriter`]: the one type that adds to a repository, and the order it
//! does it in.
//!
//! 1. Blobs are hashed and checked against the index and this session's own
//!    blobs. Small ones (under 64 KiB: small files, file tails, most trees)
//!    gather in a bundle that is compressed as one frame; larger ones are
//!    compressed alone. Frames stream into an open pack on disk (one pack for
//!    data, one for trees).
//! 2. A full pack is finished (header re-decoded), fsynced and renamed into
//!    place (the backend's `upload` contract).
//! 3. Index files list only packs that are already durable; one is written
//!    whenever enough blobs wait for it, and at the end.
//! 4. The snapshot is written last, after the final index.
//!
//! After any failed write the writer refuses all further work, so a blob that
//! was accepted but never reached the disk can never be referenced by a
//! snapshot.

use super::{pack_name, Repository};
use crate::backend::Upload;
use crate::error::{Error, Result};
use crate::format::codec::Codec;
use crate::format::id::{file_hash, BlobId, IndexId, PackId, SnapshotId, TreeId};
use crate::format::index::{self, IndexFile};
use crate::format::pack::{BlobKind, FrameBlob, PackEntry, PackWriter};
use crate::format::snapshot::Snapshot;
use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

/// Blobs waiting for an index file before one is written mid-backup.
const INDEX_FLUSH_BLOBS: usize = 100_000;
/// Blobs smaller than this are bundled with their neighbours.
const SMALL_BLOB: usize = 64 << 10;
/// A bundle is compressed once it holds this much.
const BUNDLE_TARGET: usize = 256 << 10;

/// What a writer added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub packs: u64,
}

/// Pack bytes on their way to the backend, hashed as they go (the hash names
/// the pack). Without an upload (dry run) the bytes are only counted.
struct PackOut {
    upload: Option<Box<dyn Upload>>,
    hasher: blake3::Hasher,
}

impl Write for PackOut {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = match &mut self.upload {
            Some(u) => u.write(b)?,
            None => b.len(),
        };
        self.hasher.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Small blobs waiting to be compressed together.
#[derive(Default)]
struct Bundle {
    plain: Vec<u8>,
    blobs: Vec<FrameBlob>,
}

struct State {
    packs: [Option<PackWriter<PackOut>>; 2],
    bundles: [Bundle; 2],
    /// Blobs accepted in this session and not yet in a visible index file.
    pending: HashSet<BlobId>,
    /// Durable packs not yet named by an index file.
    written: Vec<(PackId, Vec<PackEntry>)>,
    written_blobs: usize,
    /// Every pack and index file this writer made durable.
    made: (Vec<PackId>, Vec<String>),
    stats: WriteStats,
    /// The first failed write; after it the writer refuses all work.
    failed: Option<String>,
    /// That failure itself, for the caller to report once.
    failure: Option<Error>,
}

/// Adds blobs to a repository. Shared by the backup's worker threads.
pub struct RepoWriter {
    repo: Arc<Repository>,
    codec: Codec,
    dry_run: bool,
    /// Store blobs even when the index has them (prune's repacking).
    ignore_index: bool,
    state: Mutex<State>,
}

fn slot(kind: BlobKind) -> usize {
    match kind {
        BlobKind::Data => 0,
        BlobKind::Tree => 1,
    }
}

impl RepoWriter {
    /// A writer compressing at zstd `level`; `dry_run` computes everything but
    /// writes nothing.
    pub fn new(repo: Arc<Repository>, level: i32, dry_run: bool) -> Self {
        RepoWriter {
            repo,
            codec: Codec::new(level),
            dry_run,
            ignore_index: false,
            state: Mutex::new(State {
                packs: [None, None],
                bundles: Default::default(),
                pending: HashSet::new(),
                written: Vec::new(),
                written_blobs: 0,
                made: Default::default(),
                stats: WriteStats::default(),
                failed: None,
                failure: None,
            }),
        }
    }

    /// A writer for prune: it copies blobs that the index lists in packs about
    /// to be deleted, so it must not skip them as known.
    pub fn for_repack(repo: Arc<Repository>, level: i32) -> Self {
        RepoWriter {
            ignore_index: true,
            ..Self::new(repo, level, false)
        }
    }

    pub fn repo(&self) -> &Arc<Repository> {
        &self.repo
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = &st.failed {
            return Err(Error::InvalidInput(format!(
                "an earlier write to the repository failed ({why}); nothing more is written"
            )));
        }
        Ok(st)
    }

    /// Run `f`, and refuse all further work if it fails.
    fn guard<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let res = f();
        if let Err(e) = &res {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            self.record_failure(&mut st, e);
        }
        res
    }

    /// Remember the first failure (later ones are its consequences).
    fn record_failure(&self, st: &mut State, e: &Error) {
        if st.failed.is_none() {
            st.failed = Some(e.to_string());
            st.failure = Some(Error::io(
                self.repo.backend().location(),
                std::io::Error::other(e.to_string()),
            ));
        }
    }

    /// Store a data blob unless the repository has it. Returns its id.
    pub fn add_data(&self, plain: &[u8]) -> Result<BlobId> {
        let id = self.repo.hasher().blob(plain);
        self.add(BlobKind::Data, id, plain)?;
        Ok(id)
    }

    /// Store an encoded tree unless the repository has it.
    pub fn add_tree(&self, encoded: &[u8]) -> Result<TreeId> {
        let id = self.repo.hasher().tree(encoded);
        self.add(BlobKind::Tree, id.blob(), encoded)?;
        Ok(id)
    }

    fn add(&self, kind: BlobKind, id: BlobId, plain: &[u8]) -> Result<()> {
        if !self.ignore_index && self.repo.has_blob(&id)? {
            return Ok(());
        }
        let full_bundle = {
            let mut st = self.lock()?;
            if !st.pending.insert(id) {
                return Ok(());
            }
            match kind {
                BlobKind::Data => st.stats.data_blobs += 1,
                BlobKind::Tree => st.stats.tree_blobs += 1,
            }
            st.stats.raw_bytes += plain.len() as u64;
            if plain.len() >= SMALL_BLOB {
                None
            } else {
                let b = &mut st.bundles[slot(kind)];
                b.blobs
                    .push((kind, id, b.plain.len() as u32, plain.len() as u32));
                b.plain.extend_from_slice(plain);
                (b.plain.len() >= BUNDLE_TARGET).then(|| std::mem::take(b))
            }
        };
        self.guard(|| match full_bundle {
            Some(b) => self.write_frame(kind, &b.plain, &b.blobs),
            None if plain.len() >= SMALL_BLOB => {
                self.write_frame(kind, plain, &[(kind, id, 0, plain.len() as u32)])
            }
            None => Ok(()),
        })
    }

    /// Compress a frame (outside the lock) and append it to the open pack.
    fn write_frame(&self, kind: BlobKind, plain: &[u8], blobs: &[FrameBlob]) -> Result<()> {
        let frame = self.codec.encode(plain);
        let full = {
            let mut st = self.lock()?;
            st.stats.stored_bytes += frame.len() as u64;
            let s = slot(kind);
            if st.packs[s].is_none() {
                st.packs[s] = Some(self.new_pack()?);
            }
            let pack = st.packs[s].as_mut().expect("just set");
            if let Err(e) = pack.add_frame(&frame, plain.len(), blobs) {
                // Record it before the lock is let go: the next thread must
                // see this error, not the pack writer's refusal that follows.
                self.record_failure(&mut st, &e);
                return Err(e);
            }
            if pack.len() >= self.repo.config().pack_size as u64 {
                st.packs[s].take()
            } else {
                None
            }
        };
        match full {
            Some(pack) => self.finish_pack(pack),
            None => Ok(()),
        }
    }

    fn new_pack(&self) -> Result<PackWriter<PackOut>> {
        let upload = if self.dry_run {
            None
        } else {
            Some(self.repo.backend().upload("data")?)
        };
        PackWriter::new(PackOut {
            upload,
            hasher: blake3::Hasher::new(),
        })
    }

    /// Finish a pack, make it durable, and queue its entries for the next index.
    fn finish_pack(&self, pack: PackWriter<PackOut>) -> Result<()> {
        let (out, entries) = pack.finish(self.repo.codec())?;
        let id = PackId(*out.hasher.finalize().as_bytes());
        if let Some(upload) = out.upload {
            upload.commit(&pack_name(&id))?;
        }
        let mut st = self.lock()?;
        st.made.0.push(id);
        st.stats.packs += 1;
        st.written_blobs += entries.len();
        st.written.push((id, entries));
        if st.written_blobs >= INDEX_FLUSH_BLOBS {
            self.write_index(&mut st)?;
        }
        Ok(())
    }

    /// Write an index file for the durable packs, make it visible to lookups,
    /// and forget those blobs from the pending set.
    fn write_index(&self, st: &mut State) -> Result<()> {
        if st.written.is_empty() {
            return Ok(());
        }
        let packs = std::mem::take(&mut st.written);
        st.written_blobs = 0;
        if self.dry_run {
            return Ok(());
        }
        let bytes = index::encode(&packs);
        let id = IndexId(file_hash(&bytes));
        let name = format!("index/{}", id.to_hex());
        self.repo.backend().put(&name, &bytes)?;
        st.made.1.push(name.clone());
        self.repo
            .add_index(IndexFile::open(Arc::new(bytes), &name)?);
        for (_, entries) in &packs {
            for e in entries {
                st.pending.remove(&e.id);
            }
        }
        Ok(())
    }

    /// Write the open bundles and packs and the final index. Everything added
    /// so far is then durable and indexed.
    pub fn flush(&self) -> Result<()> {
        self.guard(|| {
            for kind in [BlobKind::Data, BlobKind::Tree] {
                let b = std::mem::take(&mut self.lock()?.bundles[slot(kind)]);
                if !b.blobs.is_empty() {
                    self.write_frame(kind, &b.plain, &b.blobs)?;
                }
            }
            let open: Vec<_> = {
                let mut st = self.lock()?;
                st.packs.iter_mut().filter_map(Option::take).collect()
            };
            for pack in open {
                if !pack.is_empty() {
                    self.finish_pack(pack)?;
                }
            }
            let mut st = self.lock()?;
            self.write_index(&mut st)
        })
    }

    /// Flush, then write the snapshot: the last step of a backup.
    pub fn commit(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        self.flush()?;
        if self.dry_run {
            return Ok(snapshot.encode(self.repo.codec()).0);
        }
        self.repo.save_snapshot(snapshot)
    }

    /// The first failed write, once: the error a backup should end with (the
    /// failure is remembered; this only hands out its report).
    pub fn take_failure(&self) -> Option<Error> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failure
            .take()
    }

    /// The packs and index files this writer made durable (their names may
    /// equal older files': content decides names).
    pub fn made(&self) -> (Vec<PackId>, Vec<String>) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .made
            .clone()
    }

    /// Whether a write has failed.
    pub fn has_failed(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed
            .is_some()
    }

    pub fn stats(&self) -> WriteStats {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::format::tree::Tree;

    #[test]
    fn blobs_round_trip_and_deduplicate() {
        let repo = Arc::new(Repository::init(Arc::new(MemoryBackend::new())).unwrap());
        let w = RepoWriter::new(repo.clone(), 3, false);
        let a = w.add_data(b"hello").unwrap();
        let b = w.add_data(b"hello").unwrap();
        assert_eq!(a, b);
        let big = vec![7u8; 200_000];
        let c = w.add_data(&big).unwrap();
        let t = w.add_tree(&Tree::new(vec![]).encode()).unwrap();
        w.flush().unwrap();
        assert_eq!(w.stats().data_blobs, 2);
        assert_eq!(repo.read_blob(&a).unwrap(), b"hello");
        assert_eq!(repo.read_blob(&c).unwrap(), big);
        assert!(repo.load_tree(&t).unwrap().entries.is_empty());
        // A fresh open sees the same through the stored index.
        let again = Repository::open(repo.backend().clone()).unwrap();
        assert_eq!(again.read_blob(&a).unwrap(), b"hello");
        let w2 = RepoWriter::new(Arc::new(again), 3, false);
        w2.add_data(b"hello").unwrap();
        assert_eq!(w2.stats().data_blobs, 0);
    }

    #[test]
    fn many_small_blobs_share_frames_and_all_read_back() {
        let repo = Arc::new(Repository::init(Arc::new(MemoryBackend::new())).unwrap());
        let w = RepoWriter::new(repo.clone(), 3, false);
        let blobs: Vec<Vec<u8>> = (0..2000)
            .map(|i| format!("small file {i}\n").repeat(20).into_bytes())
            .collect();
        let ids: Vec<BlobId> = blobs.iter().map(|b| w.add_data(b).unwrap()).collect();
        w.flush().unwrap();
        for (id, b) in ids.iter().zip(&blobs) {
            assert_eq!(&repo.read_blob(id).unwrap(), b);
        }
        let (a, b) = (
            repo.lookup(&ids[0]).unwrap().unwrap(),
            repo.lookup(&ids[1]).unwrap().unwrap(),
        );
        assert_eq!(a.frame, b.frame, "neighbouring small blobs share a frame");
        assert!(w.stats().stored_bytes < w.stats().raw_bytes / 10);
    }

    #[test]
    fn damaged_blob_is_detected_not_returned() {
        let mem = Arc::new(MemoryBackend::new());
        let repo = Arc::new(Repository::init(mem.clone()).unwrap());
        let w = RepoWriter::new(repo.clone(), 0, false);
        let id = w.add_data(b"some bytes to damage").unwrap();
        w.flush().unwrap();
        let loc = repo.lookup(&id).unwrap().unwrap();
        mem.tamper(&pack_name(&loc.pack), |b| {
            b[loc.frame.offset as usize + 3] ^= 0x40
        });
        assert!(matches!(repo.read_blob(&id), Err(Error::Corrupt { .. })));
    }
}

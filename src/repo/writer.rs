//! [`RepoWriter`]: the one type that adds to a repository, and the order it
//! does it in.
//!
//! 1. Blobs are hashed, checked against the index and this session's own blobs,
//!    compressed, and appended to an open pack (one for data, one for trees).
//! 2. A full pack is finished (header re-decoded), written under a temporary
//!    name, fsynced and renamed (the backend's `put` contract).
//! 3. Index files list only packs that are already durable; one is written
//!    whenever enough blobs wait for it, and at the end.
//! 4. The snapshot is written last, after the final index.
//!
//! After any failed write the writer refuses all further work, so a blob that
//! was accepted but never reached the disk can never be referenced by a
//! snapshot.

use super::{pack_name, Repository};
use crate::error::{Error, Result};
use crate::format::id::{file_hash, BlobId, IndexId, PackId, SnapshotId, TreeId};
use crate::format::index::{self, IndexFile};
use crate::format::pack::{BlobKind, PackEntry, PackWriter};
use crate::format::snapshot::Snapshot;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// Blobs waiting for an index file before one is written mid-backup.
const INDEX_FLUSH_BLOBS: usize = 100_000;

/// What a writer added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub packs: u64,
}

struct State {
    data: Option<PackWriter<Vec<u8>>>,
    tree: Option<PackWriter<Vec<u8>>>,
    /// Blobs accepted in this session and not yet in a visible index file.
    pending: HashSet<BlobId>,
    /// Durable packs not yet named by an index file.
    written: Vec<(PackId, Vec<PackEntry>)>,
    written_blobs: usize,
    stats: WriteStats,
    failed: bool,
}

/// Adds blobs to a repository. Shared by the backup's worker threads.
pub struct RepoWriter {
    repo: Arc<Repository>,
    level: i32,
    dry_run: bool,
    state: Mutex<State>,
}

impl RepoWriter {
    /// A writer compressing at zstd `level`; `dry_run` computes everything but
    /// writes nothing.
    pub fn new(repo: Arc<Repository>, level: i32, dry_run: bool) -> Self {
        RepoWriter {
            repo,
            level,
            dry_run,
            state: Mutex::new(State {
                data: None,
                tree: None,
                pending: HashSet::new(),
                written: Vec::new(),
                written_blobs: 0,
                stats: WriteStats::default(),
                failed: false,
            }),
        }
    }

    pub fn repo(&self) -> &Arc<Repository> {
        &self.repo
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.failed {
            return Err(Error::InvalidInput(
                "an earlier write to the repository failed; nothing more is written".into(),
            ));
        }
        Ok(st)
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
        if self.repo.has_blob(&id)? || !self.lock()?.pending.insert(id) {
            return Ok(());
        }
        let frame = crate::format::codec::Codec::new(self.level).encode(plain);
        let full = {
            let mut st = self.lock()?;
            match kind {
                BlobKind::Data => st.stats.data_blobs += 1,
                BlobKind::Tree => st.stats.tree_blobs += 1,
            }
            st.stats.raw_bytes += plain.len() as u64;
            st.stats.stored_bytes += frame.len() as u64;
            let slot = match kind {
                BlobKind::Data => &mut st.data,
                BlobKind::Tree => &mut st.tree,
            };
            if slot.is_none() {
                *slot = Some(PackWriter::new(Vec::with_capacity(self.pack_target() + (1 << 20)))?);
            }
            let pack = slot.as_mut().expect("just set");
            pack.add(kind, id, plain.len(), &frame)?;
            if pack.len() as usize >= self.pack_target() {
                slot.take()
            } else {
                None
            }
        };
        if let Some(pack) = full {
            self.write_pack(pack)?;
        }
        Ok(())
    }

    fn pack_target(&self) -> usize {
        self.repo.config().pack_size as usize
    }

    /// Finish a pack, store it, and queue its entries for the next index file.
    fn write_pack(&self, pack: PackWriter<Vec<u8>>) -> Result<()> {
        let res = pack.finish(self.repo.codec()).and_then(|(bytes, entries)| {
            let id = PackId(file_hash(&bytes));
            if !self.dry_run {
                self.repo.backend().put(&pack_name(&id), &bytes)?;
            }
            Ok((id, entries))
        });
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match res {
            Ok((id, entries)) => {
                st.stats.packs += 1;
                st.written_blobs += entries.len();
                st.written.push((id, entries));
                if st.written_blobs >= INDEX_FLUSH_BLOBS {
                    self.write_index(&mut st)?;
                }
                Ok(())
            }
            Err(e) => {
                st.failed = true;
                Err(e)
            }
        }
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
        if let Err(e) = self.repo.backend().put(&name, &bytes) {
            st.failed = true;
            return Err(e);
        }
        self.repo.add_index(IndexFile::open(Arc::new(bytes), &name)?);
        for (_, entries) in &packs {
            for e in entries {
                st.pending.remove(&e.id);
            }
        }
        Ok(())
    }

    /// Write the open packs and the final index. Everything added so far is
    /// then durable and indexed.
    pub fn flush(&self) -> Result<()> {
        let open: Vec<_> = {
            let mut st = self.lock()?;
            [st.data.take(), st.tree.take()].into_iter().flatten().collect()
        };
        for pack in open {
            if !pack.is_empty() {
                self.write_pack(pack)?;
            }
        }
        let mut st = self.lock()?;
        self.write_index(&mut st)
    }

    /// Flush, then write the snapshot: the last step of a backup.
    pub fn commit(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        self.flush()?;
        let (id, bytes) = snapshot.encode(self.repo.codec());
        if !self.dry_run {
            self.repo.backend().put(&format!("snapshots/{}", id.to_hex()), &bytes)?;
        }
        Ok(id)
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
        let t = w.add_tree(&Tree::new(vec![]).encode()).unwrap();
        w.flush().unwrap();
        assert_eq!(w.stats().data_blobs, 1);
        assert_eq!(repo.read_blob(&a).unwrap(), b"hello");
        assert!(repo.load_tree(&t).unwrap().entries.is_empty());
        // A fresh open sees the same through the stored index.
        let again = Repository::open(repo.backend().clone()).unwrap();
        assert_eq!(again.read_blob(&a).unwrap(), b"hello");
        let w2 = RepoWriter::new(Arc::new(again), 3, false);
        w2.add_data(b"hello").unwrap();
        assert_eq!(w2.stats().data_blobs, 0);
    }

    #[test]
    fn damaged_blob_is_detected_not_returned() {
        let mem = Arc::new(MemoryBackend::new());
        let repo = Arc::new(Repository::init(mem.clone()).unwrap());
        let w = RepoWriter::new(repo.clone(), 0, false);
        let id = w.add_data(b"some bytes to damage").unwrap();
        w.flush().unwrap();
        let loc = repo.lookup(&id).unwrap().unwrap();
        mem.tamper(&pack_name(&loc.pack), |b| b[loc.offset as usize + 3] ^= 0x40);
        assert!(matches!(repo.read_blob(&id), Err(Error::Corrupt { .. })));
    }
}

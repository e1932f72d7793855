//! [`RepoWriter`]: the one type that adds to a repository, and the order it
//! does it in.
//!
//! 1. Blobs are hashed and checked against the index (in packs that exist)
//!    and this session's own blobs. Small ones (under 64 KiB: small files,
//!    file tails, most trees) gather in a bundle that is compressed as one
//!    frame; larger ones are compressed alone, outside any lock. Frames are
//!    sealed into an open pack in memory (one pack for data, one for trees).
//! 2. A full pack is finished (header re-decoded) and handed to the upload
//!    pool: a few threads that store whole packs (the backend's `put`:
//!    durable and atomic), so slow storage never holds up the workers.
//! 3. Index files list only packs whose upload finished; one is written
//!    whenever enough blobs wait for it, and at the end.
//! 4. The snapshot is written last, after the final index; then the writer
//!    confirms that what it references still exists ([`RepoWriter::commit`]).
//!
//! After any failed write the writer refuses all further work, so a blob that
//! was accepted but never reached the repository can never be referenced by
//! a snapshot.

use super::Repository;
use crate::error::{Error, Result};
use crate::format::codec::Codec;
use crate::format::id::{file_hash, BlobId, PackId, SnapshotId, TreeId};
use crate::format::pack::{BlobKind, FrameBlob, PackEntry, PackWriter};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Extent, Kind};
use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Blobs waiting for an index file before one is written mid-backup.
const INDEX_FLUSH_BLOBS: usize = 100_000;
/// Blobs smaller than this are bundled with their neighbours.
const SMALL_BLOB: usize = 64 << 10;
/// A bundle is compressed once it holds this much.
const BUNDLE_TARGET: usize = 256 << 10;
/// Packs stored at once by default.
pub const DEFAULT_CONNECTIONS: usize = 4;

/// What a writer added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Plaintext bytes of new blobs.
    pub raw_bytes: u64,
    /// Bytes the new blobs' frames take in packs.
    pub stored_bytes: u64,
    pub packs: u64,
    /// Bytes of the new packs, headers included.
    pub pack_bytes: u64,
    pub index_files: u64,
    /// Bytes of the new index objects.
    pub index_bytes: u64,
}

impl WriteStats {
    /// What the repository grew by: packs and index files.
    pub fn added_bytes(&self) -> u64 {
        self.pack_bytes + self.index_bytes
    }
}

/// Small blobs waiting to be compressed together.
#[derive(Default)]
struct Bundle {
    plain: Vec<u8>,
    blobs: Vec<FrameBlob>,
}

/// A pack being filled, and the id its frames are bound to (format 2).
struct OpenPack {
    writer: PackWriter<Vec<u8>>,
    id: [u8; 32],
}

struct State {
    packs: [Option<OpenPack>; 2],
    bundles: [Bundle; 2],
    /// Blobs accepted in this session and not yet in a visible index file.
    pending: HashSet<BlobId>,
    /// Stored packs not yet named by an index file.
    written: Vec<(PackId, Vec<PackEntry>)>,
    written_blobs: usize,
    /// Every pack and index file this writer stored.
    made: (Vec<PackId>, Vec<String>),
    stats: WriteStats,
    /// Packs handed to the upload pool and not yet stored (or failed).
    in_flight: usize,
    /// The first failed write; after it the writer refuses all work.
    failed: Option<String>,
    /// That failure itself, for the caller to report once.
    failure: Option<Error>,
}

/// A finished pack on its way to the repository.
struct Upload {
    id: PackId,
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// Adds blobs to a repository. Shared by the backup's worker threads.
pub struct RepoWriter {
    inner: Arc<Inner>,
    uploads: Option<crossbeam_channel::Sender<Upload>>,
    pool: Vec<std::thread::JoinHandle<()>>,
}

struct Inner {
    repo: Arc<Repository>,
    codec: Codec,
    dry_run: bool,
    /// Store blobs even when the index has them (prune's repacking).
    ignore_index: bool,
    state: Mutex<State>,
    /// Signalled when an upload ends.
    uploaded: Condvar,
    /// The index objects the repository held when the writer started.
    start_index: HashSet<String>,
}

fn slot(kind: BlobKind) -> usize {
    match kind {
        BlobKind::Data => 0,
        BlobKind::Tree => 1,
    }
}

impl RepoWriter {
    /// A writer compressing at zstd `level`; `dry_run` computes everything but
    /// writes nothing. It lists the packs first: a blob whose pack is gone is
    /// stored again rather than referenced.
    pub fn new(repo: Arc<Repository>, level: i32, dry_run: bool) -> Result<Self> {
        Self::with_options(repo, level, dry_run, false, DEFAULT_CONNECTIONS)
    }

    /// [`RepoWriter::new`] storing up to `connections` packs at once.
    pub fn with_connections(
        repo: Arc<Repository>,
        level: i32,
        dry_run: bool,
        connections: usize,
    ) -> Result<Self> {
        Self::with_options(repo, level, dry_run, false, connections)
    }

    /// A writer for prune, storing up to `connections` packs at once: it
    /// copies blobs that the index lists in packs about to be deleted, so it
    /// must not skip them as known.
    pub fn for_repack(repo: Arc<Repository>, level: i32, connections: usize) -> Result<Self> {
        Self::with_options(repo, level, false, true, connections)
    }

    fn with_options(
        repo: Arc<Repository>,
        level: i32,
        dry_run: bool,
        ignore_index: bool,
        connections: usize,
    ) -> Result<Self> {
        if !ignore_index {
            repo.load_pack_list()?;
        }
        let inner = Arc::new(Inner {
            codec: repo.codec().with_level(level),
            start_index: repo.index_names(),
            repo,
            dry_run,
            ignore_index,
            state: Mutex::new(State {
                packs: [None, None],
                bundles: Default::default(),
                pending: HashSet::new(),
                written: Vec::new(),
                written_blobs: 0,
                made: Default::default(),
                stats: WriteStats::default(),
                in_flight: 0,
                failed: None,
                failure: None,
            }),
            uploaded: Condvar::new(),
        });
        let (tx, rx) = crossbeam_channel::bounded::<Upload>(connections.max(1));
        let mut pool = Vec::new();
        for i in 0..connections.max(1) {
            let (inner, rx) = (inner.clone(), rx.clone());
            let t = std::thread::Builder::new()
                .name(format!("rewind-upload-{i}"))
                .spawn(move || {
                    for up in rx {
                        inner.store(up);
                    }
                })
                .map_err(|e| Error::io("upload thread", e))?;
            pool.push(t);
        }
        Ok(RepoWriter {
            inner,
            uploads: Some(tx),
            pool,
        })
    }

    pub fn repo(&self) -> &Arc<Repository> {
        &self.inner.repo
    }

    /// Store a data blob unless the repository has it. Returns its id.
    pub fn add_data(&self, plain: &[u8]) -> Result<BlobId> {
        let id = self.inner.repo.hasher().blob(plain);
        self.add(BlobKind::Data, id, plain)?;
        Ok(id)
    }

    /// Store an encoded tree unless the repository has it.
    pub fn add_tree(&self, encoded: &[u8]) -> Result<TreeId> {
        let id = self.inner.repo.hasher().tree(encoded);
        self.add(BlobKind::Tree, id.blob(), encoded)?;
        Ok(id)
    }

    fn add(&self, kind: BlobKind, id: BlobId, plain: &[u8]) -> Result<()> {
        let inner = &self.inner;
        if !inner.ignore_index && inner.repo.has_blob(&id)? {
            return Ok(());
        }
        let full_bundle = {
            let mut st = inner.lock()?;
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
        inner.guard(|| match full_bundle {
            Some(b) => self.write_frame(kind, &b.plain, &b.blobs),
            None if plain.len() >= SMALL_BLOB => {
                self.write_frame(kind, plain, &[(kind, id, 0, plain.len() as u32)])
            }
            None => Ok(()),
        })
    }

    /// Compress a frame (outside the lock), seal it into the open pack.
    fn write_frame(&self, kind: BlobKind, plain: &[u8], blobs: &[FrameBlob]) -> Result<()> {
        let inner = &self.inner;
        let compressed = inner.codec.compress(plain);
        let full = {
            let mut st = inner.lock()?;
            let s = slot(kind);
            if st.packs[s].is_none() {
                st.packs[s] = Some(inner.new_pack()?);
            }
            let pack = st.packs[s].as_mut().expect("just set");
            let before = pack.writer.len();
            if let Err(e) = pack.writer.add_frame(&compressed, blobs) {
                // Record it before the lock is let go: the next thread must
                // see this error, not the pack writer's refusal that follows.
                inner.record_failure(&mut st, &e);
                return Err(e);
            }
            let grew = pack.writer.len() - before;
            st.stats.stored_bytes += grew;
            let pack = st.packs[s].as_ref().expect("just set");
            if pack.writer.len() >= inner.repo.config().pack_size as u64 {
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

    /// Finish a pack and hand it to the upload pool.
    fn finish_pack(&self, pack: OpenPack) -> Result<()> {
        let inner = &self.inner;
        let (bytes, entries) = pack.writer.finish()?;
        let id = if inner.codec.is_encrypted() {
            PackId(pack.id)
        } else {
            PackId(file_hash(&bytes))
        };
        {
            let mut st = inner.lock()?;
            st.stats.packs += 1;
            st.stats.pack_bytes += bytes.len() as u64;
            if inner.dry_run {
                return Ok(());
            }
            st.in_flight += 1;
        }
        let tx = self.uploads.as_ref().expect("open until dropped");
        if tx.send(Upload { id, bytes, entries }).is_err() {
            let e = Error::InvalidInput("the upload pool is gone".into());
            let mut st = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            st.in_flight -= 1;
            inner.record_failure(&mut st, &e);
            return Err(e);
        }
        Ok(())
    }

    /// Write the open bundles and packs, wait for every upload, and write the
    /// final index. Everything added so far is then stored and indexed.
    pub fn flush(&self) -> Result<()> {
        let inner = &self.inner;
        inner.guard(|| {
            for kind in [BlobKind::Data, BlobKind::Tree] {
                let b = std::mem::take(&mut inner.lock()?.bundles[slot(kind)]);
                if !b.blobs.is_empty() {
                    self.write_frame(kind, &b.plain, &b.blobs)?;
                }
            }
            let open: Vec<_> = {
                let mut st = inner.lock()?;
                st.packs.iter_mut().filter_map(Option::take).collect()
            };
            for pack in open {
                if !pack.writer.is_empty() {
                    self.finish_pack(pack)?;
                }
            }
            let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            while st.in_flight > 0 {
                st = inner.uploaded.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            drop(st);
            let mut st = inner.lock()?;
            inner.write_index(&mut st)
        })
    }

    /// Flush, then write the snapshot: the last step of a backup. Then make
    /// sure nothing it references was deleted meanwhile; if something was,
    /// the snapshot is removed again and the backup fails.
    ///
    /// The protocol that makes a prune racing a backup harmless:
    ///
    /// 1. Before the snapshot is written, the locks this process holds must
    ///    still hold ([`Repository::check_locks_held`]): not removed, not
    ///    left unrefreshed past the stale age.
    /// 2. The snapshot is written.
    /// 3. The writer waits while another process holds a live exclusive
    ///    lock: a prune that listed the snapshots before step 2 (and so does
    ///    not know this one) runs to its end, or goes stale, whereupon it
    ///    deletes nothing more (it checks its own lock before deleting).
    /// 4. Every pack this writer stored must exist; and if any index object
    ///    that existed when the writer started is gone (a prune replaces the
    ///    index before it deletes a pack), every blob the snapshot references
    ///    must be indexed in a pack that exists. Otherwise the snapshot is
    ///    removed and the backup fails, asking to be run again.
    ///
    /// A prune that lists the snapshots after step 2 sees this one and keeps
    /// its data; one that listed them before is waited for in step 3 and its
    /// deletions seen in step 4.
    pub fn commit(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        let inner = &self.inner;
        self.flush()?;
        if inner.dry_run {
            return Ok(snapshot.encode(inner.repo.codec(), inner.repo.hasher()).0);
        }
        inner.repo.check_locks_held()?;
        let id = inner.repo.save_snapshot(snapshot)?;
        if let Err(e) = inner.confirm(snapshot) {
            let _ = inner.repo.remove_snapshot(&id);
            return Err(e);
        }
        Ok(id)
    }

    /// The first failed write, once: the error a backup should end with (the
    /// failure is remembered; this only hands out its report).
    pub fn take_failure(&self) -> Option<Error> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failure
            .take()
    }

    /// The packs and index files this writer stored (their names may
    /// equal older files': in format 1 content decides names).
    pub fn made(&self) -> (Vec<PackId>, Vec<String>) {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .made
            .clone()
    }

    /// Whether a write has failed.
    pub fn has_failed(&self) -> bool {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed
            .is_some()
    }

    pub fn stats(&self) -> WriteStats {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats
    }
}

impl Drop for RepoWriter {
    fn drop(&mut self) {
        self.uploads.take();
        for t in self.pool.drain(..) {
            let _ = t.join();
        }
    }
}

impl Inner {
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
            st.failure = Some(copy_error(e));
        }
    }

    fn new_pack(&self) -> Result<OpenPack> {
        let mut id = [0u8; 32];
        if self.codec.is_encrypted() {
            crate::format::config::getrandom(&mut id)?;
        }
        Ok(OpenPack {
            writer: PackWriter::new(
                Vec::with_capacity(self.repo.config().pack_size as usize + (1 << 20)),
                &self.codec,
                id,
            )?,
            id,
        })
    }

    /// Store one pack (an upload thread), and queue its entries for the
    /// next index file.
    fn store(&self, up: Upload) {
        let res =
            self.repo
                .backend()
                .put(crate::backend::FileType::Pack, &up.id.to_hex(), &up.bytes);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match res {
            Ok(()) => {
                if up.entries.first().is_some_and(|e| e.kind == BlobKind::Tree) {
                    self.repo.cache_tree_pack(&up.id, &up.bytes);
                }
                self.repo.note_pack(up.id);
                st.made.0.push(up.id);
                st.written_blobs += up.entries.len();
                st.written.push((up.id, up.entries));
                if st.written_blobs >= INDEX_FLUSH_BLOBS && st.failed.is_none() {
                    if let Err(e) = self.write_index(&mut st) {
                        self.record_failure(&mut st, &e);
                    }
                }
            }
            Err(e) => self.record_failure(&mut st, &e),
        }
        st.in_flight -= 1;
        drop(st);
        self.uploaded.notify_all();
    }

    /// Write an index file for the stored packs, make it visible to lookups,
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
        let layout = crate::format::index::encode(&packs);
        let name = self.repo.save_index_layout(layout)?;
        st.stats.index_files += 1;
        if let Ok(info) = self
            .repo
            .backend()
            .stat(crate::backend::FileType::Index, &name)
        {
            st.stats.index_bytes += info.size;
        }
        st.made.1.push(name);
        for (_, entries) in &packs {
            for e in entries {
                st.pending.remove(&e.id);
            }
        }
        Ok(())
    }

    /// Steps 3 and 4 of [`RepoWriter::commit`].
    fn confirm(&self, snapshot: &Snapshot) -> Result<()> {
        let repo = &self.repo;
        repo.wait_for_exclusive_holders()?;
        let made = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .made
            .clone();
        for p in &made.0 {
            match repo.stat_pack(p) {
                Ok(_) => {}
                Err(Error::NotFound(_)) => {
                    return Err(lost(&format!("pack {} that it wrote", p.short())))
                }
                Err(e) => return Err(e),
            }
        }
        let now = repo.list_index_names()?;
        if self.start_index.iter().all(|n| now.contains(n)) {
            return Ok(());
        }
        // A prune ran: everything the snapshot references must still be there.
        repo.reload_index()?;
        repo.load_pack_list()?;
        let mut seen: HashSet<TreeId> = HashSet::new();
        let mut stack = vec![snapshot.tree];
        while let Some(tid) = stack.pop() {
            if !seen.insert(tid) {
                continue;
            }
            if repo.lookup_present(&tid.blob())?.is_none() {
                return Err(lost(&format!("tree {}", tid.short())));
            }
            let tree = repo.load_tree(&tid)?;
            for e in &tree.entries {
                match e.kind {
                    Kind::Dir => stack.extend(e.subtree),
                    Kind::File => {
                        for x in &e.extents {
                            if let Extent::Data { id, .. } = x {
                                if repo.lookup_present(id)?.is_none() {
                                    return Err(lost(&format!("blob {}", id.short())));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn lost(what: &str) -> Error {
    Error::Locked(format!(
        "data this backup uses ({what}) was deleted while it ran (a prune that did not see its lock); no snapshot was kept: run the backup again"
    ))
}

/// The same error as a value of its own (errors are not `Clone`: an I/O
/// error's source is not).
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Io { path, source } => Error::Io {
            path: path.clone(),
            source: match source.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(source.kind(), source.to_string()),
            },
        },
        Error::Corrupt { object, reason } => Error::Corrupt {
            object: object.clone(),
            reason: reason.clone(),
        },
        other => Error::InvalidInput(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::{Backend, FileType};
    use crate::format::tree::Tree;
    use crate::repo::InitOptions;

    fn repos() -> Vec<(MemoryBackend, Arc<Repository>)> {
        [InitOptions::plain(), InitOptions::test()]
            .iter()
            .map(|o| {
                let mem = MemoryBackend::new();
                let repo = Arc::new(Repository::init(Arc::new(mem.clone()), o).unwrap());
                (mem, repo)
            })
            .collect()
    }

    #[test]
    fn blobs_round_trip_and_deduplicate() {
        for (mem, repo) in repos() {
            let w = RepoWriter::new(repo.clone(), 3, false).unwrap();
            let a = w.add_data(b"hello").unwrap();
            let b = w.add_data(b"hello").unwrap();
            assert_eq!(a, b);
            let big = vec![7u8; 200_000];
            let c = w.add_data(&big).unwrap();
            let t = w.add_tree(&Tree::new(vec![]).encode()).unwrap();
            w.flush().unwrap();
            assert_eq!(w.stats().data_blobs, 2);
            assert_eq!(repo.read_data(&a, 5).unwrap(), b"hello");
            assert!(repo.read_data(&a, 6).is_err(), "lengths must agree");
            assert_eq!(repo.read_blob(&c, None).unwrap(), big);
            assert!(repo.load_tree(&t).unwrap().entries.is_empty());
            // What the writer says it added is what the repository grew by.
            let total: u64 = mem
                .names()
                .iter()
                .filter(|(t, _)| matches!(t, FileType::Pack | FileType::Index))
                .map(|(t, n)| mem.stat(*t, n).unwrap().size)
                .sum();
            assert_eq!(w.stats().added_bytes(), total);
            // A fresh open sees the same through the stored index.
            let again = Repository::open(
                Arc::new(mem.clone()),
                &crate::repo::OpenOptions {
                    password: &|| Ok(crate::repo::Secret::new(b"test password".to_vec())),
                    cache_root: None,
                },
            )
            .unwrap();
            again.reload_index().unwrap();
            assert_eq!(again.read_data(&a, 5).unwrap(), b"hello");
            let w2 = RepoWriter::new(Arc::new(again), 3, false).unwrap();
            w2.add_data(b"hello").unwrap();
            assert_eq!(w2.stats().data_blobs, 0);
        }
    }

    #[test]
    fn many_small_blobs_share_frames_and_all_read_back() {
        for (_, repo) in repos() {
            let w = RepoWriter::new(repo.clone(), 3, false).unwrap();
            let blobs: Vec<Vec<u8>> = (0..2000)
                .map(|i| format!("small file {i}\n").repeat(20).into_bytes())
                .collect();
            let ids: Vec<BlobId> = blobs.iter().map(|b| w.add_data(b).unwrap()).collect();
            w.flush().unwrap();
            for (id, b) in ids.iter().zip(&blobs) {
                assert_eq!(&repo.read_blob(id, None).unwrap(), b);
            }
            let (a, b) = (
                repo.lookup(&ids[0]).unwrap().unwrap(),
                repo.lookup(&ids[1]).unwrap().unwrap(),
            );
            assert_eq!(a.frame, b.frame, "neighbouring small blobs share a frame");
            assert!(w.stats().stored_bytes < w.stats().raw_bytes / 10);
        }
    }

    #[test]
    fn damaged_blob_is_detected_not_returned() {
        for (mem, repo) in repos() {
            let w = RepoWriter::new(repo.clone(), 0, false).unwrap();
            let id = w.add_data(b"some bytes to damage").unwrap();
            w.flush().unwrap();
            let loc = repo.lookup(&id).unwrap().unwrap();
            mem.tamper(FileType::Pack, &loc.pack.to_hex(), |b| {
                b[loc.frame.offset as usize + loc.frame.stored_len as usize / 2] ^= 0x40
            });
            assert!(matches!(
                repo.read_blob(&id, None),
                Err(Error::Corrupt { .. })
            ));
        }
    }

    /// A prune that deleted what a backup deduplicated against (one that
    /// did not see its lock) makes the backup fail and keeps no snapshot,
    /// however the locks looked.
    #[test]
    fn a_snapshot_referencing_deleted_data_is_not_kept() {
        for (mem, repo) in repos() {
            // Data of an earlier backup, in its own pack and index file.
            let w = RepoWriter::new(repo.clone(), 0, false).unwrap();
            let old = w.add_data(&vec![1u8; 100_000]).unwrap();
            w.flush().unwrap();
            drop(w);
            // A backup deduplicates against it...
            let w = RepoWriter::new(repo.clone(), 0, false).unwrap();
            assert_eq!(w.add_data(&vec![1u8; 100_000]).unwrap(), old);
            let mut root = crate::format::tree::Entry::new(b"f".to_vec(), Kind::File);
            root.size = 100_000;
            root.extents = vec![Extent::Data {
                id: old,
                len: 100_000,
            }];
            let tree = w
                .add_tree(&crate::format::tree::Tree::new(vec![root]).encode())
                .unwrap();
            w.flush().unwrap();
            // ...while a prune replaces the index and deletes the pack.
            let loc = repo.lookup(&old).unwrap().unwrap();
            for (t, n) in mem.names() {
                if t == FileType::Index && !w.made().1.contains(&n) {
                    mem.delete(t, &n).unwrap();
                }
            }
            mem.delete(FileType::Pack, &loc.pack.to_hex()).unwrap();
            let snap = Snapshot {
                time: Default::default(),
                host: "h".into(),
                username: "u".into(),
                paths: vec!["/f".into()],
                tags: vec![],
                tree,
                parent: None,
                program: "test".into(),
                summary: Default::default(),
                original: None,
            };
            let e = w.commit(&snap).unwrap_err().to_string();
            assert!(e.contains("was deleted while it ran"), "{e}");
            assert!(repo.snapshot_ids().unwrap().is_empty(), "no snapshot kept");
        }
    }

    /// A blob whose pack is gone is stored again, not referenced.
    #[test]
    fn blobs_of_lost_packs_are_stored_again() {
        for (mem, repo) in repos() {
            let w = RepoWriter::new(repo.clone(), 0, false).unwrap();
            let id = w.add_data(&vec![3u8; 100_000]).unwrap();
            w.flush().unwrap();
            drop(w);
            let pack = repo.lookup(&id).unwrap().unwrap().pack;
            mem.delete(FileType::Pack, &pack.to_hex()).unwrap();
            let w = RepoWriter::new(repo.clone(), 0, false).unwrap();
            w.add_data(&vec![3u8; 100_000]).unwrap();
            w.flush().unwrap();
            assert_eq!(w.stats().data_blobs, 1, "stored again");
            assert_eq!(repo.read_blob(&id, None).unwrap(), vec![3u8; 100_000]);
        }
    }
}

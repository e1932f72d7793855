//! A repository: a backend, the codec, the keys and the index.
//!
//! [`Repository`] is the one way to reach repository objects: every object is
//! saved, loaded, listed and removed here by (file type, id), always through
//! the codec. Nothing outside this module calls the backend.
//! [`writer::RepoWriter`] adds to a repository, and owns the write order.
//!
//! - `keys`: opening a repository with a password, `init`, key files.
//! - `indexes`: the index, read through the local cache and searched in place.
//! - `blobs`: reading blobs and pack headers.
//! - `disk_cache`: the local cache of decoded index files (and tree packs of
//!   remote repositories).
//! - [`walk`]: the tree walker (depth-first, explicit stack, visitor policy).
//! - [`lock`]: locks, and the checks that make a prune racing a backup harmless.

mod blobs;
pub mod content;
mod disk_cache;
mod frames;
mod indexes;
mod keys;
pub mod lock;
pub mod walk;
pub mod writer;

pub use disk_cache::default_cache_root;
pub use keys::{InitOptions, KeyInfo, OpenOptions, Secret};

use crate::backend::{Backend, FileType, ObjectInfo};
use crate::error::{Error, Result};
use crate::format::codec::Codec;
use crate::format::config::Config;
use crate::format::crypto::MasterKey;
use crate::format::id::{Hasher, IndexId, PackId, SnapshotId, TreeId};
use crate::format::index::IndexFile;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Entry, Kind};
use disk_cache::DiskCache;
use frames::FrameCache;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

/// Requests [`Repository::fetch_each`] has in flight at most.
const FETCH_THREADS: usize = 8;

/// An open repository. Cheap to share between threads behind an `Arc`.
pub struct Repository {
    backend: Arc<dyn Backend>,
    config: Config,
    codec: Codec,
    hasher: Hasher,
    /// Format 2: the master secret (for new key files) and the chunker key.
    master: Option<MasterKey>,
    chunker_key: Option<[u8; 32]>,
    /// The key file that opened the repository (format 2).
    key_name: Option<String>,
    cache: Option<DiskCache>,
    /// Why the cache asked for could not be used.
    cache_error: Option<String>,
    /// The index files searched by lookups, smallest first.
    index: RwLock<Vec<IndexFile>>,
    /// Index objects the repository listed when the index was last read.
    index_names: Mutex<HashSet<String>>,
    bad_index: Mutex<Vec<String>>,
    /// Packs that existed when a writer last asked (see
    /// [`Repository::load_pack_list`]); `None` until then.
    packs: RwLock<Option<HashSet<PackId>>>,
    frames: Mutex<FrameCache>,
    /// The locks this process holds on the repository.
    held: Mutex<Vec<Arc<lock::Held>>>,
}

/// Every readable snapshot, oldest first, and the errors of unreadable ones.
pub type SnapshotList = (Vec<(SnapshotId, Snapshot)>, Vec<Error>);

impl Repository {
    /// Open the repository in directory `dir`, with the password from
    /// `REWIND_PASSWORD` or `REWIND_PASSWORD_FILE` when it is encrypted, no
    /// local cache, and its index read (library users and tests; the command
    /// line builds its [`OpenOptions`] from its flags).
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let backend = Arc::new(crate::backend::local::LocalBackend::new(dir));
        let repo = Self::open(backend, &OpenOptions::from_env())?;
        repo.reload_index()?;
        Ok(repo)
    }

    fn assemble(
        backend: Arc<dyn Backend>,
        config: Config,
        opened: keys::Opened,
        cache_root: Option<&Path>,
    ) -> Result<Self> {
        // A cache that cannot be used (another user's, a full disk) costs
        // speed, not the command: index files are then held in memory.
        let (cache, cache_error) = match cache_root.map(|root| DiskCache::open(root, &config.id)) {
            Some(Ok(c)) => (Some(c), None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (None, None),
        };
        Ok(Repository {
            backend,
            codec: opened.codec,
            hasher: opened.hasher,
            master: opened.master,
            chunker_key: opened.chunker_key,
            key_name: opened.key_name,
            config,
            cache,
            cache_error,
            index: RwLock::new(Vec::new()),
            index_names: Mutex::new(HashSet::new()),
            bad_index: Mutex::new(Vec::new()),
            packs: RwLock::new(None),
            frames: Mutex::new(FrameCache::new(16 << 20)),
            held: Mutex::new(Vec::new()),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn codec(&self) -> &Codec {
        &self.codec
    }
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// Whether objects are encrypted (format 2).
    pub fn is_encrypted(&self) -> bool {
        self.config.is_encrypted()
    }

    /// The chunker this repository cuts with: FastCDC in format 1, the keyed
    /// chunker in format 2.
    pub fn chunker(&self) -> crate::chunker::Chunker {
        crate::chunker::Chunker::with_candidates(
            self.config.chunker,
            self.chunker_key.as_ref(),
            self.config.candidate_bits,
        )
    }

    /// Why the local cache asked for is not used, if it is not.
    pub fn cache_error(&self) -> Option<&str> {
        self.cache_error.as_deref()
    }

    /// Where the repository is, for messages (never a secret).
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Whether objects are read from this machine's disks (no requests to
    /// count, nothing worth caching).
    pub fn is_local(&self) -> bool {
        self.backend.is_local()
    }

    /// The backend, for the writer and the lock in this module only.
    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    // --- snapshots -------------------------------------------------------

    /// The ids of every stored snapshot manifest, in no order.
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        Ok(self
            .backend
            .list(FileType::Snapshot)?
            .into_iter()
            .filter_map(|o| SnapshotId::from_hex(&o.name).ok())
            .collect())
    }

    /// One snapshot manifest, checked against its id.
    ///
    /// A remote repository's manifests come from the local cache when it
    /// has them (checked against their ids as downloaded ones are: a
    /// damaged cached file is fetched again), and go into it when
    /// downloaded.
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let name = id.to_hex();
        let cache = self.remote_cache();
        if let Some(bytes) = cache.and_then(|c| c.snapshot(&name)) {
            if let Ok(s) = Snapshot::decode(&bytes, &self.codec, &self.hasher, id) {
                return Ok(s);
            }
        }
        let bytes = self.backend.get(FileType::Snapshot, &name)?;
        let s = Snapshot::decode(&bytes, &self.codec, &self.hasher, id)?;
        if let Some(c) = cache {
            let _ = c.put_snapshot(&name, &bytes);
        }
        Ok(s)
    }

    /// The local cache, for a remote repository (a local one is read in
    /// place).
    fn remote_cache(&self) -> Option<&DiskCache> {
        self.cache.as_ref().filter(|_| !self.backend.is_local())
    }

    /// Store a snapshot manifest; returns its id. Only
    /// [`writer::RepoWriter::commit`] writes a new backup's snapshot (after its
    /// data and index); other callers rewrite existing ones (`tag`).
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        let (id, bytes) = snapshot.encode(&self.codec, &self.hasher);
        self.backend.put(FileType::Snapshot, &id.to_hex(), &bytes)?;
        if let Some(cache) = self.remote_cache() {
            let _ = cache.put_snapshot(&id.to_hex(), &bytes);
        }
        Ok(id)
    }

    /// Remove a snapshot manifest (`forget`). Removing a missing one is not an error.
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.backend.delete(FileType::Snapshot, &id.to_hex())
    }

    /// Every snapshot, oldest first. Damaged manifests are returned as errors
    /// beside the good ones.
    ///
    /// A remote repository's manifests come through the local cache
    /// ([`Repository::load_snapshot`]), so that a backup finding its parent
    /// lists the snapshots but downloads only new ones; manifests no longer
    /// listed leave the cache.
    pub fn snapshots(&self) -> Result<SnapshotList> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let ids = self.snapshot_ids()?;
        if let Some(cache) = self.remote_cache() {
            let listed: HashSet<String> = ids.iter().map(|id| id.to_hex()).collect();
            cache.retain_snapshots(&|name| listed.contains(name));
        }
        let loaded = self.fetch_each(&ids, |id| self.load_snapshot(id));
        for (id, got) in ids.into_iter().zip(loaded) {
            match got {
                Ok(s) => good.push((id, s)),
                Err(Error::NotFound(_)) => {} // removed by a concurrent forget
                Err(e) => bad.push(e),
            }
        }
        good.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok((good, bad))
    }

    /// `f` of every item, in order: side by side ([`side_by_side`]) for a
    /// remote repository, where each is a request's round trip (a cold
    /// cache: every snapshot manifest and index file); in turn for a local
    /// one.
    pub(crate) fn fetch_each<T: Sync, R: Send>(
        &self,
        items: &[T],
        f: impl Fn(&T) -> R + Sync,
    ) -> Vec<R> {
        if self.is_local() {
            return items.iter().map(f).collect();
        }
        side_by_side(items, FETCH_THREADS, f)
    }

    /// Resolve a snapshot spec: an id, a unique id prefix, or `latest`; `filter`
    /// narrows the candidates.
    pub fn find_snapshot(
        &self,
        spec: &str,
        filter: &SnapshotFilter,
    ) -> Result<(SnapshotId, Snapshot)> {
        let (all, _) = self.snapshots()?;
        let mut candidates: Vec<_> = all.into_iter().filter(|(_, s)| filter.matches(s)).collect();
        if spec == "latest" {
            return candidates
                .pop()
                .ok_or_else(|| Error::NotFound(format!("snapshot latest{}", filter.describe())));
        }
        if spec.len() < 4 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput(format!(
                "{spec:?} is not a snapshot id, an id prefix of 4 or more hex digits, or `latest`"
            )));
        }
        let spec_lc = spec.to_ascii_lowercase();
        candidates.retain(|(id, _)| id.to_hex().starts_with(&spec_lc));
        match candidates.len() {
            0 => Err(Error::NotFound(format!("snapshot {spec}"))),
            1 => Ok(candidates.pop().expect("one")),
            n => Err(Error::InvalidInput(format!(
                "snapshot prefix {spec} is ambiguous ({n} snapshots match)"
            ))),
        }
    }

    /// The entry at `path` (components separated by `/`) below `root`. The root
    /// itself is returned as a synthetic directory entry.
    pub fn entry_at(&self, root: &TreeId, path: &[u8]) -> Result<Entry> {
        let mut cur = Entry::new(b"/".to_vec(), Kind::Dir);
        cur.mode = 0o755;
        cur.subtree = Some(*root);
        for comp in path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
        {
            let sub = match (cur.kind, cur.subtree) {
                (Kind::Dir, Some(sub)) => sub,
                _ => {
                    return Err(Error::NotFound(format!(
                        "{} in snapshot",
                        String::from_utf8_lossy(path)
                    )))
                }
            };
            let tree = self.load_tree(&sub)?;
            cur = tree.get(comp).cloned().ok_or_else(|| {
                Error::NotFound(format!("{} in snapshot", String::from_utf8_lossy(path)))
            })?;
        }
        Ok(cur)
    }

    // --- packs -----------------------------------------------------------

    /// Every pack with its size and time.
    pub fn list_packs(&self) -> Result<Vec<(PackId, ObjectInfo)>> {
        Ok(self
            .backend
            .list(FileType::Pack)?
            .into_iter()
            .filter_map(|o| PackId::from_hex(&o.name).ok().map(|id| (id, o)))
            .collect())
    }

    /// A pack's size and time; `NotFound` when it is gone.
    pub fn stat_pack(&self, id: &PackId) -> Result<ObjectInfo> {
        self.backend.stat(FileType::Pack, &id.to_hex())
    }

    /// `len` bytes of pack `id` from `offset`, as stored.
    pub fn read_pack_range(&self, id: &PackId, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.backend
            .get_range(FileType::Pack, &id.to_hex(), offset, len)
    }

    /// Remove a pack (prune, after the index no longer names it).
    pub fn delete_pack(&self, id: &PackId) -> Result<()> {
        self.backend.delete(FileType::Pack, &id.to_hex())
    }

    /// Remove leftovers of writes that never finished.
    pub fn remove_stale_temp(&self, max_age: std::time::Duration) -> Result<u64> {
        self.backend.remove_stale_temp(max_age)
    }

    /// Remove an index object (prune, repair); its cached copy goes at the
    /// next [`Repository::reload_index`].
    pub fn delete_index(&self, name: &str) -> Result<()> {
        self.backend.delete(FileType::Index, name)
    }

    /// Whether pack `id` was listed by the last [`Repository::load_pack_list`]
    /// (true before any).
    pub fn pack_present(&self, id: &PackId) -> bool {
        match &*self.packs.read().unwrap_or_else(|e| e.into_inner()) {
            Some(set) => set.contains(id),
            None => true,
        }
    }

    /// List the packs once, so that [`Repository::pack_present`] (and the
    /// writer's deduplication) knows which exist: a blob whose pack is gone
    /// is stored again rather than referenced. Returns how many there are.
    pub fn load_pack_list(&self) -> Result<usize> {
        let set: HashSet<PackId> = self.list_packs()?.into_iter().map(|(id, _)| id).collect();
        let n = set.len();
        if let Some(cache) = &self.cache {
            cache.retain_packs(&|name| PackId::from_hex(name).is_ok_and(|id| set.contains(&id)));
        }
        *self.packs.write().unwrap_or_else(|e| e.into_inner()) = Some(set);
        Ok(n)
    }

    /// A pack this process just stored exists.
    pub(crate) fn note_pack(&self, id: PackId) {
        if let Some(set) = &mut *self.packs.write().unwrap_or_else(|e| e.into_inner()) {
            set.insert(id);
        }
    }

    /// Index ids are stored names too.
    pub fn index_name(id: &IndexId) -> String {
        id.to_hex()
    }
}

/// Add a location prefix to a config error.
fn prefix_error(e: Error, prefix: &str) -> Error {
    match e {
        Error::Corrupt { object, reason } => Error::Corrupt {
            object: format!("{prefix}{object}"),
            reason,
        },
        Error::InvalidInput(m) => Error::InvalidInput(format!("{prefix}{m}")),
        Error::UnsupportedVersion(m) => Error::UnsupportedVersion(format!("{prefix}{m}")),
        other => other,
    }
}

/// Which snapshots `latest` and listings consider.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    pub host: Option<String>,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
}

impl SnapshotFilter {
    /// Whether it lets every snapshot through.
    pub fn is_empty(&self) -> bool {
        self.host.is_none() && self.paths.is_empty() && self.tags.is_empty()
    }

    pub fn matches(&self, s: &Snapshot) -> bool {
        self.host.as_ref().is_none_or(|h| &s.host == h)
            && self.paths.iter().all(|p| s.paths.contains(p))
            && self.tags.iter().all(|t| s.tags.contains(t))
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        for p in &self.paths {
            parts.push(format!("path {p}"));
        }
        for t in &self.tags {
            parts.push(format!("tag {t}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}

/// `f` of every item, in order, on up to `threads` threads. The calling
/// thread is one of them, so it ends even when no other can be started.
pub(crate) fn side_by_side<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if items.len() < 2 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = Mutex::new(Vec::with_capacity(items.len()));
    let work = || loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(item) = items.get(i) else { break };
        let r = f(item);
        done.lock().unwrap_or_else(|e| e.into_inner()).push((i, r));
    };
    std::thread::scope(|s| {
        for _ in 1..items.len().min(threads) {
            if std::thread::Builder::new().spawn_scoped(s, work).is_err() {
                break;
            }
        }
        work();
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod side_by_side_tests {
    use super::*;

    /// Results come back in the items' order, however long each took, and
    /// the work is spread over several threads at once.
    #[test]
    fn results_keep_their_order_and_run_side_by_side() {
        let items: Vec<u64> = (0..40).collect();
        let running = std::sync::atomic::AtomicUsize::new(0);
        let most = std::sync::atomic::AtomicUsize::new(0);
        let got = side_by_side(&items, FETCH_THREADS, |&i| {
            use std::sync::atomic::Ordering::SeqCst;
            let now = running.fetch_add(1, SeqCst) + 1;
            most.fetch_max(now, SeqCst);
            // Later items finish first.
            std::thread::sleep(std::time::Duration::from_millis(40 - i));
            running.fetch_sub(1, SeqCst);
            (i, std::thread::current().id())
        });
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), items);
        let threads: HashSet<_> = got.iter().map(|g| g.1).collect();
        assert!(threads.len() > 1, "one thread did everything");
        assert!(most.into_inner() > 1, "never two at once");
        assert!(side_by_side(&[] as &[u8], 4, |_| 0).is_empty());
        assert_eq!(side_by_side(&[7], 4, |x| x * 2), vec![14]);
    }
}

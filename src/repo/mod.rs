//! A repository: a backend, the codec, the hash key and the index.
//!
//! [`Repository`] reads: blobs by id (checked against their hash), trees,
//! snapshots. [`writer::RepoWriter`] adds to it, and owns the write order.

mod cache;
pub mod content;
pub mod lock;
pub mod writer;

use crate::backend::local::LocalBackend;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::format::codec::Codec;
use crate::format::config::Config;
use crate::format::id::{BlobId, Hasher, PackId, SnapshotId, TreeId};
use crate::format::index::{IndexFile, Location};
use crate::format::pack::{self, BlobKind, Frame, PackEntry};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Entry, Kind, Tree};
use cache::FrameCache;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

/// An open repository. Cheap to share between threads behind an `Arc`.
pub struct Repository {
    backend: Arc<dyn Backend>,
    config: Config,
    codec: Codec,
    hasher: Hasher,
    /// The mapped index files, smallest first: the order lookups search them.
    index: RwLock<Vec<IndexFile>>,
    frames: Mutex<FrameCache>,
    bad_index: Mutex<Vec<String>>,
}

/// The name of a pack file.
/// Every readable snapshot, oldest first, and the errors of unreadable ones.
pub type SnapshotList = (Vec<(SnapshotId, Snapshot)>, Vec<Error>);

fn blob_slice<'a>(plain: &'a [u8], inner: u32, len: u32, object: &str) -> Result<&'a [u8]> {
    plain
        .get(inner as usize..inner as usize + len as usize)
        .ok_or_else(|| Error::corrupt(object, "blob lies outside its frame"))
}

pub fn pack_name(id: &PackId) -> String {
    let hex = id.to_hex();
    format!("data/{}/{hex}", &hex[..2])
}

impl Repository {
    /// Create a repository in an empty backend.
    pub fn init(backend: Arc<dyn Backend>) -> Result<Self> {
        if backend.exists("config")? {
            return Err(Error::InvalidInput(format!(
                "{} already holds a repository",
                backend.location()
            )));
        }
        let config = Config::generate()?;
        backend.put("config", &config.encode())?;
        Self::with_config(backend, config)
    }

    /// Open an existing repository and map its index.
    pub fn open(backend: Arc<dyn Backend>) -> Result<Self> {
        let repo = Self::open_unindexed(backend)?;
        repo.reload_index()?;
        Ok(repo)
    }

    /// Open a repository reading only its config: lookups find nothing
    /// until [`Repository::reload_index`] (for the mount, which reads its
    /// index once it holds its lock).
    pub fn open_unindexed(backend: Arc<dyn Backend>) -> Result<Self> {
        let bytes = match backend.get("config") {
            Ok(b) => b,
            Err(Error::NotFound(_)) => {
                return Err(Error::InvalidInput(format!(
                    "{} is not a rewind repository (it has no config file; create one with `rewind init`)",
                    backend.location()
                )))
            }
            Err(e) => return Err(e),
        };
        let config = Config::decode(&bytes)
            .map_err(|e| prefix_error(e, &format!("{}/", backend.location())))?;
        Self::with_config(backend, config)
    }

    /// Open the repository in directory `dir`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let repo = Self::open_dir_unindexed(dir)?;
        repo.reload_index()?;
        Ok(repo)
    }

    /// [`Repository::open_unindexed`] for the repository in directory `dir`.
    pub fn open_dir_unindexed(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::NotFound(format!("repository {}", dir.display())));
        }
        Self::open_unindexed(Arc::new(LocalBackend::new(dir)))
    }

    fn with_config(backend: Arc<dyn Backend>, config: Config) -> Result<Self> {
        Ok(Repository {
            hasher: Hasher::new(config.key()?),
            codec: Codec::new(config.compression),
            backend,
            config,
            index: RwLock::new(Vec::new()),
            frames: Mutex::new(FrameCache::new(16 << 20)),
            bad_index: Mutex::new(Vec::new()),
        })
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
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

    /// Bring the mapped index up to date with `index/`: map new files, drop
    /// files that are gone (a prune replaced them). Commands call this right
    /// after taking their lock, so they never trust an index from before a
    /// prune they waited for.
    pub fn reload_index(&self) -> Result<()> {
        let names: HashSet<String> = self.backend.list("index")?.into_iter().collect();
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        let mut bad = self.bad_index.lock().unwrap_or_else(|e| e.into_inner());
        index.retain(|f| names.contains(f.name()));
        let known: HashSet<String> = index.iter().map(|f| f.name().to_string()).collect();
        bad.clear();
        let mut fresh: Vec<&String> = names.iter().filter(|n| !known.contains(*n)).collect();
        fresh.sort();
        for name in fresh {
            // A damaged index file must not make the repository unusable:
            // its packs still hold their headers (`repair index`), and
            // `check` and `prune` refuse to go on while it is there.
            match self
                .backend
                .map(name)
                .and_then(|b| IndexFile::open(b, name))
            {
                Ok(file) => index.push(file),
                // A newer format must be refused, not skipped.
                Err(e @ Error::InvalidInput(_)) => return Err(e),
                Err(e) => bad.push(e.to_string()),
            }
        }
        index.sort_by_key(IndexFile::byte_len);
        Ok(())
    }

    /// Index files that could not be opened, with the reason.
    pub fn unreadable_index_files(&self) -> Vec<String> {
        self.bad_index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Make a just-written index file visible to lookups.
    pub(crate) fn add_index(&self, file: IndexFile) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        let at = index.partition_point(|f| f.byte_len() <= file.byte_len());
        index.insert(at, file);
    }

    /// The index files currently mapped.
    pub fn index_files(&self) -> Vec<IndexFile> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Where blob `id` is stored, if anywhere.
    ///
    /// Files are searched smallest first. A small file is read whole at its
    /// first lookup, so a miss in it costs no disk read, while a miss in a
    /// large file not yet in memory costs the two or three pages its search
    /// visits. A snapshot's trees are mostly in the small files its own and
    /// recent backups wrote, so the mount's first lookups read no page of
    /// the large index of the first backup.
    pub fn lookup(&self, id: &BlobId) -> Result<Option<Location>> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        for file in index.iter() {
            if let Some(loc) = file.get(id)? {
                return Ok(Some(loc));
            }
        }
        Ok(None)
    }

    /// Whether blob `id` is in the index.
    pub fn has_blob(&self, id: &BlobId) -> Result<bool> {
        Ok(self.lookup(id)?.is_some())
    }

    /// The plaintext of blob `id`, checked against its id.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self.lookup(id)?.ok_or_else(|| {
            Error::corrupt(
                format!("blob {}", id.short()),
                "not in any index (missing data)",
            )
        })?;
        self.read_blob_at(id, &loc)
    }

    /// The plaintext of blob `id` at `loc`, checked against its id.
    pub fn read_blob_at(&self, id: &BlobId, loc: &Location) -> Result<Vec<u8>> {
        let object = format!("blob {} in pack {}", id.short(), loc.pack.short());
        let plain = self.frame_plain(
            &loc.pack,
            loc.frame,
            loc.frame.raw_len != loc.raw_len,
            &object,
        )?;
        let blob = blob_slice(&plain, loc.inner, loc.raw_len, &object)?;
        self.verify_blob(id, loc.kind, blob, &object)?;
        if blob.len() == plain.len() {
            // A frame of its own is not cached: hand over its buffer, not a copy
            // (this is every chunk a restore or the mount reads).
            return Ok(Arc::try_unwrap(plain).unwrap_or_else(|shared| shared.to_vec()));
        }
        Ok(blob.to_vec())
    }

    /// The decoded plaintext of a frame. Bundles (frames of several small
    /// blobs) are kept in a small cache: readers of neighbouring small files
    /// decompress each bundle once.
    fn frame_plain(
        &self,
        pack: &PackId,
        frame: Frame,
        bundle: bool,
        object: &str,
    ) -> Result<Arc<Vec<u8>>> {
        let key = (*pack, frame.offset);
        if bundle {
            if let Some(hit) = self
                .frames
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
            {
                return Ok(hit);
            }
        }
        let bytes = match self.backend.get_range(
            &pack_name(pack),
            frame.offset as u64,
            frame.stored_len as usize,
        ) {
            Err(Error::NotFound(_)) => return Err(Error::corrupt(object, "pack file is missing")),
            Err(Error::Corrupt { reason, .. }) => return Err(Error::corrupt(object, reason)),
            other => other?,
        };
        let plain = Arc::new(
            self.codec
                .decode(&bytes, Some(frame.raw_len as usize), object)?,
        );
        if bundle {
            self.frames
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, plain.clone());
        }
        Ok(plain)
    }

    /// Check that `plain` hashes to `id`.
    pub fn verify_blob(
        &self,
        id: &BlobId,
        kind: BlobKind,
        plain: &[u8],
        object: &str,
    ) -> Result<()> {
        let actual = match kind {
            BlobKind::Data => self.hasher.blob(plain),
            BlobKind::Tree => self.hasher.tree(plain).blob(),
        };
        if actual != *id {
            return Err(Error::corrupt(object, "content does not match its id"));
        }
        Ok(())
    }

    /// Decode every frame of a whole pack held in memory and check every blob.
    /// Returns the blobs that failed, with the reason.
    pub fn verify_pack(
        &self,
        bytes: &[u8],
        entries: &[PackEntry],
        object: &str,
    ) -> Vec<(BlobId, String)> {
        let mut bad = Vec::new();
        let mut current: Option<(Frame, Result<Vec<u8>>)> = None;
        for e in entries {
            if current.as_ref().map(|(f, _)| *f) != Some(e.frame) {
                let (start, len) = (e.frame.offset as usize, e.frame.stored_len as usize);
                let decoded = match bytes.get(start..start + len) {
                    Some(frame) => self
                        .codec
                        .decode(frame, Some(e.frame.raw_len as usize), object),
                    None => Err(Error::corrupt(
                        object,
                        "frame lies beyond the end of the pack",
                    )),
                };
                current = Some((e.frame, decoded));
            }
            let res = match &current.as_ref().expect("just set").1 {
                Ok(plain) => blob_slice(plain, e.inner, e.raw_len, object)
                    .and_then(|b| self.verify_blob(&e.id, e.kind, b, object)),
                Err(err) => Err(Error::corrupt(object, err)),
            };
            if let Err(err) = res {
                bad.push((e.id, err.to_string()));
            }
        }
        bad
    }

    /// Load and validate a tree.
    pub fn load_tree(&self, id: &TreeId) -> Result<Tree> {
        let bytes = self.read_blob(&id.blob())?;
        Tree::decode(&bytes, &format!("tree {}", id.short()))
    }

    /// The header entries of a pack, read from its end.
    pub fn pack_header(&self, id: &PackId) -> Result<Vec<PackEntry>> {
        let name = pack_name(id);
        let object = format!("pack {}", id.short());
        let size = self.backend.size(&name)?;
        if size < (pack::TRAILER_LEN + 8) as u64 {
            return Err(Error::corrupt(&object, "pack too short"));
        }
        let trailer =
            self.backend
                .get_range(&name, size - pack::TRAILER_LEN as u64, pack::TRAILER_LEN)?;
        let hlen = pack::trailer_header_len(&trailer, &object)?;
        let start = (size - pack::TRAILER_LEN as u64)
            .checked_sub(hlen as u64)
            .ok_or_else(|| Error::corrupt(&object, "header length out of range"))?;
        let frame = self.backend.get_range(&name, start, hlen)?;
        let plain = self.codec.decode(&frame, None, &object)?;
        pack::decode_header(&plain, &object)
    }

    /// Store a snapshot manifest; returns its id. Only
    /// [`writer::RepoWriter::commit`] writes a new backup's snapshot (after its
    /// data and index); other callers rewrite existing ones (`tag`).
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        let (id, bytes) = snapshot.encode(&self.codec);
        self.backend
            .put(&format!("snapshots/{}", id.to_hex()), &bytes)?;
        Ok(id)
    }

    /// Remove a snapshot manifest (`forget`). Removing a missing one is not an error.
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.backend.delete(&format!("snapshots/{}", id.to_hex()))
    }

    /// The plaintext of data blob `id`, which a tree says is `len` bytes: the
    /// lengths must agree before a byte is handed out.
    pub fn read_data(&self, id: &BlobId, len: u32) -> Result<Vec<u8>> {
        let data = self.read_blob(id)?;
        if data.len() != len as usize {
            return Err(Error::corrupt(
                format!("blob {}", id.short()),
                "length differs from the tree",
            ));
        }
        Ok(data)
    }

    /// Every snapshot, oldest first. Damaged manifests are returned as errors
    /// beside the good ones.
    pub fn snapshots(&self) -> Result<SnapshotList> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for name in self.backend.list("snapshots")? {
            let hex = name.trim_start_matches("snapshots/");
            let Ok(id) = SnapshotId::from_hex(hex) else {
                continue;
            };
            match self
                .backend
                .get(&name)
                .and_then(|b| Snapshot::decode(&b, &self.codec, hex))
            {
                Ok(s) => good.push((id, s)),
                Err(Error::NotFound(_)) => {} // removed by a concurrent forget
                Err(e) => bad.push(e),
            }
        }
        good.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok((good, bad))
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
}

fn prefix_error(e: Error, prefix: &str) -> Error {
    match e {
        Error::Corrupt { object, reason } => Error::Corrupt {
            object: format!("{prefix}{object}"),
            reason,
        },
        Error::InvalidInput(m) => Error::InvalidInput(format!("{prefix}{m}")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::fixtures::{self, entries, id};
    use crate::backend::local::LocalBackend;
    use crate::format::id::PackId;
    use crate::format::index::encode;
    use std::fs::File;
    use std::path::Path;

    /// Pages of file `path` in the page cache.
    fn resident(path: &Path) -> usize {
        let f = File::open(path).unwrap();
        // SAFETY: a private read-only map of a file nobody changes.
        let map = unsafe { memmap2::Mmap::map(&f) }.unwrap();
        fixtures::resident(&map)
    }

    /// A blob in a small index file is found without reading a page of a
    /// large one that is not in memory: the mount's first lookups (the
    /// latest snapshot's trees, in the small index of its backup) read no
    /// page of the first backup's large index.
    #[test]
    fn lookups_search_small_index_files_first() {
        let Some(dir) = fixtures::evictable_dir() else {
            return;
        };
        let repo = Repository::init(Arc::new(LocalBackend::new(dir.path()))).unwrap();
        std::fs::create_dir_all(dir.path().join("index")).unwrap();
        // Named so that the large file sorts last, and was searched first
        // when files were searched newest-listed first.
        let large = dir.path().join("index").join("f".repeat(64));
        let small = dir.path().join("index").join("0".repeat(64));
        std::fs::write(&large, encode(&[(PackId([1; 32]), entries(0..100_000))])).unwrap();
        std::fs::write(
            &small,
            encode(&[(PackId([2; 32]), entries(200_000..200_010))]),
        )
        .unwrap();
        fixtures::evict(&large);
        repo.reload_index().unwrap();
        // Opening reads the header's page.
        let opened = resident(&large);
        assert!(opened <= 1, "the large file was not evicted");
        for i in 200_000..200_010 {
            let loc = repo.lookup(&id(i)).unwrap().expect("in the small file");
            assert_eq!(loc.pack, PackId([2; 32]));
        }
        assert_eq!(
            resident(&large),
            opened,
            "lookups of blobs in the small file read the large one"
        );
        let loc = repo.lookup(&id(77)).unwrap().expect("in the large file");
        assert_eq!(loc.pack, PackId([1; 32]));
        assert!(repo.lookup(&id(300_000)).unwrap().is_none());
    }
}

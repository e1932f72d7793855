//! The index: every index object, decoded once into the local cache (or
//! memory), mapped and searched in place.

use super::Repository;
use crate::backend::{FileType, ObjectInfo};
use crate::error::{Error, Result};
use crate::format::codec::{Aad, FileKind, ENVELOPE_LEN};
use crate::format::id::{file_hash, BlobId, IndexId, PackId};
use crate::format::index::{self, Bytes, IndexFile, Location};
use crate::format::pack::PackEntry;
use std::collections::HashSet;
use std::sync::Arc;

/// Where a decoded index file's body starts (envelope and scheme byte).
const BODY: usize = ENVELOPE_LEN + 1;

/// Index objects larger than this are opened one at a time (see
/// [`Repository::reload_index`]).
const SIDE_BY_SIDE_MAX: u64 = 4 << 20;

/// The name of an index object's decoded copy in the cache: its name, size
/// and time, so that an object replaced or cut short in the repository is
/// decoded again rather than taken from the cache.
fn cache_key(o: &ObjectInfo) -> String {
    let t = o
        .modified
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    format!(
        "{}-{}-{}.{:09}",
        o.name,
        o.size,
        t.as_secs(),
        t.subsec_nanos()
    )
}

impl Repository {
    /// Bring the index up to date with the repository's index objects: read
    /// new ones, drop those that are gone (a prune replaced them). Commands
    /// call this right after taking their lock, so they never trust an index
    /// from before a prune they waited for.
    pub fn reload_index(&self) -> Result<()> {
        let listed: Vec<ObjectInfo> = self.backend.list(FileType::Index)?;
        let names: HashSet<String> = listed.iter().map(|o| o.name.clone()).collect();
        let known: HashSet<String> = self
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let mut fresh: Vec<&ObjectInfo> =
            listed.iter().filter(|o| !known.contains(&o.name)).collect();
        fresh.sort_by(|a, b| a.name.cmp(&b.name));
        let mut opened = Vec::new();
        let mut bad = Vec::new();
        // Small files side by side (a backup's own index: a repository of
        // many hosts holds hundreds, a round trip each); large ones (a
        // prune's, tens of MiB, held two or three times while decoded) one
        // at a time.
        let (small, large): (Vec<&ObjectInfo>, Vec<&ObjectInfo>) =
            fresh.iter().partition(|o| o.size <= SIDE_BY_SIDE_MAX);
        let got = self.fetch_each(&small, |object| self.open_index(object));
        let got = got
            .into_iter()
            .zip(small)
            .chain(large.into_iter().map(|o| (self.open_index(o), o)));
        let mut got: Vec<_> = got.collect();
        got.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        for (got, _) in got {
            // A damaged index file must not make the repository unusable:
            // its packs still hold their headers (`repair index`), and
            // `check` and `prune` refuse to go on while it is there.
            match got {
                Ok(file) => opened.push(file),
                // A newer format must be refused, not skipped.
                Err(e @ Error::UnsupportedVersion(_)) => return Err(e),
                Err(Error::NotFound(_)) => {} // removed by a prune meanwhile
                Err(e) => bad.push(e.to_string()),
            }
        }
        if let Some(cache) = &self.cache {
            let keys: HashSet<String> = listed.iter().map(cache_key).collect();
            cache.retain_index(&|k| keys.contains(k));
        }
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        index.retain(|f| names.contains(f.name()));
        index.extend(opened);
        index.sort_by_key(IndexFile::byte_len);
        *self.bad_index.lock().unwrap_or_else(|e| e.into_inner()) = bad;
        *self.index_names.lock().unwrap_or_else(|e| e.into_inner()) = names;
        Ok(())
    }

    /// Index object `object`, from the cache or decoded and checked against
    /// its id (and then cached).
    fn open_index(&self, object: &ObjectInfo) -> Result<IndexFile> {
        let name = &object.name;
        let sealed = self.codec.is_encrypted();
        let key = cache_key(object);
        if let Some(cache) = &self.cache {
            if let Some(bytes) = cache.index(&key)? {
                match IndexFile::open(bytes, name, sealed) {
                    Ok(f) => return Ok(f),
                    // Not what was written: fetch it again.
                    Err(_) => cache.remove_index(&key),
                }
            }
        }
        let decoded = self.decode_index(name)?;
        let bytes: Bytes = match self.cache.as_ref().map(|c| c.put_index(&key, &decoded)) {
            Some(Ok(mapped)) => mapped,
            // A cache that cannot take it (a full disk): held in memory.
            _ => Arc::new(decoded),
        };
        IndexFile::open(bytes, name, sealed)
    }

    /// Decode every index object from the repository itself, not the cache,
    /// checking each against its id and checksum (`check`, and `prune`
    /// before it trusts the index). Returns the damaged files' names, each
    /// with its error.
    pub fn verify_index_objects(&self) -> Result<Vec<(String, String)>> {
        let mut names: Vec<String> = self.list_index_names()?.into_iter().collect();
        names.sort();
        let mut bad = Vec::new();
        for name in names {
            match self.decode_index(&name) {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e @ Error::UnsupportedVersion(_)) => return Err(e),
                Err(e) => bad.push((name, e.to_string())),
            }
        }
        Ok(bad)
    }

    /// The decoded layout of index object `name`, checked against its id and
    /// its checksum.
    pub(crate) fn decode_index(&self, name: &str) -> Result<Vec<u8>> {
        let object = format!("index {name}");
        let id =
            IndexId::from_hex(name).map_err(|_| Error::corrupt(&object, "name is not an id"))?;
        let stored = self.backend.get(FileType::Index, name)?;
        let decoded = if self.codec.is_encrypted() {
            let frame = self.codec.open(&stored, FileKind::Index, &object)?;
            let body =
                self.codec
                    .decode(frame, None, &Aad::whole(FileKind::Index, id.0), &object)?;
            if self.hasher.object(&body) != Some(id.0) {
                return Err(Error::corrupt(&object, "content does not match its name"));
            }
            let mut out = crate::format::codec::envelope(FileKind::Index, 1).to_vec();
            out.push(0);
            out.extend_from_slice(&body);
            out
        } else {
            self.codec.open(&stored, FileKind::Index, &object)?;
            if file_hash(&stored) != id.0 {
                return Err(Error::corrupt(&object, "content does not match its name"));
            }
            stored
        };
        IndexFile::open(Arc::new(decoded.clone()), name, self.codec.is_encrypted())?.verify()?;
        Ok(decoded)
    }

    /// Store an index file in its decoded layout (from [`index::encode`] or
    /// an [`index::IndexWriter`]) as this repository's index object, cache
    /// it, and make it visible to lookups. Returns its name.
    pub(crate) fn save_index_layout(&self, layout: Vec<u8>) -> Result<String> {
        if layout.len() < BODY {
            return Err(Error::InvalidInput("index layout too short".into()));
        }
        let (name, stored) = if self.codec.is_encrypted() {
            let body = &layout[BODY..];
            let id = self.hasher.object(body).expect("format 2 keys object ids");
            let mut out = self.codec.envelope(FileKind::Index).to_vec();
            self.codec
                .encode_into(body, &Aad::whole(FileKind::Index, id), &mut out);
            (IndexId(id).to_hex(), out)
        } else {
            (IndexId(file_hash(&layout)).to_hex(), layout.clone())
        };
        self.backend.put(FileType::Index, &name, &stored)?;
        let sealed = self.codec.is_encrypted();
        let key = match self.backend.stat(FileType::Index, &name) {
            Ok(o) => cache_key(&o),
            Err(_) => name.clone(),
        };
        let bytes: Bytes = match self.cache.as_ref().map(|c| c.put_index(&key, &layout)) {
            Some(Ok(mapped)) => mapped,
            _ => Arc::new(layout),
        };
        let file = IndexFile::open(bytes, &name, sealed)?;
        self.add_index(file);
        Ok(name)
    }

    /// [`Repository::save_index_layout`] of the entries of durable packs.
    pub(crate) fn save_index(&self, packs: &[(PackId, Vec<PackEntry>)]) -> Result<String> {
        self.save_index_layout(index::encode(packs))
    }

    /// Index files that could not be opened, with the reason.
    pub fn unreadable_index_files(&self) -> Vec<String> {
        self.bad_index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The names of the index objects listed by the last
    /// [`Repository::reload_index`] (and those written since).
    pub fn index_names(&self) -> HashSet<String> {
        self.index_names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The names of the index objects the repository holds now.
    pub fn list_index_names(&self) -> Result<HashSet<String>> {
        Ok(self
            .backend
            .list(FileType::Index)?
            .into_iter()
            .map(|o| o.name)
            .collect())
    }

    /// Make a just-written index file visible to lookups.
    fn add_index(&self, file: IndexFile) {
        self.index_names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(file.name().to_string());
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        index.retain(|f| f.name() != file.name());
        let at = index.partition_point(|f| f.byte_len() <= file.byte_len());
        index.insert(at, file);
    }

    /// The index files currently searched.
    pub fn index_files(&self) -> Vec<IndexFile> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Where blob `id` is stored, if anywhere (its first record).
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

    /// Every record of blob `id` (a blob stored again after its pack was
    /// lost has two).
    pub fn lookup_all(&self, id: &BlobId) -> Result<Vec<Location>> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for file in index.iter() {
            if let Some(loc) = file.get(id)? {
                if !out.contains(&loc) {
                    out.push(loc);
                }
            }
        }
        Ok(out)
    }

    /// Where blob `id` is stored in a pack that exists, as far as the last
    /// [`Repository::load_pack_list`] knows (before one, every pack is taken
    /// to exist): what a writer may deduplicate against.
    pub fn lookup_present(&self, id: &BlobId) -> Result<Option<Location>> {
        // The first record in a present pack, as `lookup_all` lists them,
        // without its list: a no-change backup asks this of every blob of
        // every file, from every worker at once.
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        for file in index.iter() {
            if let Some(loc) = file.get(id)? {
                if self.pack_present(&loc.pack) {
                    return Ok(Some(loc));
                }
            }
        }
        Ok(None)
    }

    /// Whether blob `id` is indexed in a pack that exists.
    pub fn has_blob(&self, id: &BlobId) -> Result<bool> {
        Ok(self.lookup_present(id)?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;
    use crate::backend::Backend;
    use crate::repo::disk_cache::fixtures::{self, entries, id};
    use crate::repo::InitOptions;
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
        let dir = fixtures::evictable_dir();
        let opts = InitOptions {
            cache_root: Some(dir.path().join("cache")),
            ..InitOptions::plain()
        };
        let repo =
            Repository::init(Arc::new(LocalBackend::new(dir.path().join("repo"))), &opts).unwrap();
        let large = repo
            .save_index(&[(PackId([1; 32]), entries(0..100_000))])
            .unwrap();
        let small = repo
            .save_index(&[(PackId([2; 32]), entries(200_000..200_010))])
            .unwrap();
        let repo_id = repo.config().id.clone();
        // The cached copy of index object `n` (named by name, size and time).
        let cached = |n: &str| {
            let dir = dir.path().join("cache").join(&repo_id).join("index");
            std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(n))
                .unwrap()
        };
        // Mapped pages stay in the page cache: unmap them first.
        drop(repo);
        fixtures::evict(&cached(&large));
        fixtures::evict(&cached(&small));
        // A fresh open maps the cached files.
        let opts = crate::repo::OpenOptions {
            cache_root: Some(dir.path().join("cache")),
            ..crate::repo::OpenOptions::from_env()
        };
        let repo =
            Repository::open(Arc::new(LocalBackend::new(dir.path().join("repo"))), &opts).unwrap();
        repo.reload_index().unwrap();
        // Opening reads the header's page.
        let opened = resident(&cached(&large));
        assert!(opened <= 1, "the large file was not evicted");
        for i in 200_000..200_010 {
            let loc = repo.lookup(&id(i)).unwrap().expect("in the small file");
            assert_eq!(loc.pack, PackId([2; 32]));
        }
        assert_eq!(
            resident(&cached(&large)),
            opened,
            "lookups of blobs in the small file read the large one"
        );
        let loc = repo.lookup(&id(77)).unwrap().expect("in the large file");
        assert_eq!(loc.pack, PackId([1; 32]));
        assert!(repo.lookup(&id(300_000)).unwrap().is_none());
    }

    /// An index object is checked against its name before it is used or
    /// cached: a changed byte, a swapped file or a truncated one is an
    /// unreadable index file, never a source of locations.
    #[test]
    fn index_objects_are_checked_against_their_names() {
        for opts in [InitOptions::plain(), InitOptions::test()] {
            let mem = crate::backend::memory::MemoryBackend::new();
            let repo = Repository::init(Arc::new(mem.clone()), &opts).unwrap();
            let a = repo
                .save_index(&[(PackId([1; 32]), entries(0..10))])
                .unwrap();
            let b = repo
                .save_index(&[(PackId([2; 32]), entries(10..20))])
                .unwrap();
            type Damage = Box<dyn Fn(&mut Vec<u8>)>;
            let damage: [(&str, Damage); 3] = [
                (
                    "flip",
                    Box::new(|v: &mut Vec<u8>| *v.last_mut().unwrap() ^= 1),
                ),
                ("cut", Box::new(|v: &mut Vec<u8>| v.truncate(v.len() - 40))),
                (
                    "swap",
                    Box::new({
                        let other = mem.get(FileType::Index, &b).unwrap();
                        move |v: &mut Vec<u8>| *v = other.clone()
                    }),
                ),
            ];
            for (what, f) in damage {
                let m = crate::backend::memory::MemoryBackend::new();
                for (t, n) in mem.names() {
                    m.put(t, &n, &mem.get(t, &n).unwrap()).unwrap();
                }
                m.tamper(FileType::Index, &a, f);
                let open = crate::repo::OpenOptions {
                    password: &|| Ok(crate::repo::Secret::new(b"test password".to_vec())),
                    cache_root: None,
                };
                let r = Repository::open(Arc::new(m), &open).unwrap();
                r.reload_index().unwrap();
                let bad = r.unreadable_index_files();
                assert_eq!(bad.len(), 1, "{what}: {bad:?}");
                assert!(bad[0].contains(&format!("index {a}")), "{what}: {bad:?}");
                assert!(r.lookup(&id(3)).unwrap().is_none(), "{what}");
                assert!(r.lookup(&id(13)).unwrap().is_some(), "{what}");
            }
        }
    }
}

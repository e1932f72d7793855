//! The local cache: decoded index files (and, for remote repositories, tree
//! packs and snapshot manifests), so that lookups search a memory map and a
//! second backup from the same host downloads only what changed.
//!
//! ```text
//! $XDG_CACHE_HOME/rewind/            CACHEDIR.TAG (backups with --exclude-caches skip it)
//!   <repository id>/index/<name>     decoded index files (the index module's layout)
//!   <repository id>/packs/<name>     whole tree packs of remote repositories
//!   <repository id>/snapshots/<name> snapshot manifests of remote repositories,
//!                                    as stored (encrypted as the repository is)
//! ```
//!
//! Directories are 0700 and files 0600. Files are written under a temporary
//! name and renamed, so a reader sees a whole file or none, and never
//! changed: a file that another process could truncate under a memory map
//! (an index in a repository on NFS that a prune elsewhere replaces) is
//! never mapped; only these files are.
//!
//! The cache is never trusted over the repository. An index file is cached
//! only after it was checked against its id (format 1: the hash of the stored
//! bytes; format 2: its authenticated frame and the keyed hash of its
//! plaintext), and a cached file is used only while the repository still
//! lists that id; the rest are removed. A damaged cache file can send a
//! lookup to the wrong place, but never make a read return wrong bytes:
//! every blob read is checked against its id.

use crate::error::{Error, IoContext, Result};
use crate::format::index::{Bytes, IndexBytes};
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The default cache root: `$XDG_CACHE_HOME/rewind`, else `~/.cache/rewind`.
pub fn default_cache_root() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("rewind"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache/rewind"))
}

const TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by rewind.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// One repository's part of the cache.
pub(crate) struct DiskCache {
    dir: PathBuf,
    counter: AtomicU64,
}

fn make_dir(path: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    let meta = fs::symlink_metadata(path).at(path)?;
    if !meta.is_dir() {
        return Err(Error::InvalidInput(format!(
            "cache directory {} is not a directory",
            path.display()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).at(path)?;
    }
    Ok(())
}

impl DiskCache {
    /// The cache of repository `id` under `root`, made if missing.
    pub fn open(root: &Path, id: &str) -> Result<Self> {
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).at(parent)?;
        }
        make_dir(root)?;
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = fs::write(&tag, TAG);
        }
        let dir = root.join(id);
        make_dir(&dir)?;
        make_dir(&dir.join("index"))?;
        make_dir(&dir.join("packs"))?;
        make_dir(&dir.join("snapshots"))?;
        Ok(DiskCache {
            dir,
            counter: AtomicU64::new(0),
        })
    }

    fn index_path(&self, name: &str) -> PathBuf {
        self.dir.join("index").join(name)
    }

    /// A cached index file, mapped; `None` when it is not cached.
    pub fn index(&self, name: &str) -> Result<Option<Bytes>> {
        let path = self.index_path(name);
        let f = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let len = f.metadata().at(&path)?.len();
        if len == 0 {
            return Ok(None);
        }
        // SAFETY: cache files are written once under a temporary name and
        // renamed into place, and only ever unlinked, never truncated, so
        // the mapping stays valid.
        let map = unsafe { memmap2::Mmap::map(&f) }.at(&path)?;
        // Touch only the pages asked for until the index says otherwise (see
        // `IndexBytes`): the kernel would otherwise read around each one (up
        // to the device's whole read-ahead, megabytes) when a command needs
        // a few blobs.
        let _ = map.advise(memmap2::Advice::Random);
        Ok(Some(Arc::new(Mapped(map))))
    }

    /// Store a decoded index file, then map it.
    pub fn put_index(&self, name: &str, bytes: &[u8]) -> Result<Bytes> {
        self.write(&self.index_path(name), bytes)?;
        Ok(self
            .index(name)?
            .unwrap_or_else(|| Arc::new(bytes.to_vec())))
    }

    /// Forget a cached index file (it was damaged, or the repository no
    /// longer has it).
    pub fn remove_index(&self, name: &str) {
        let _ = fs::remove_file(self.index_path(name));
    }

    /// Remove cached index files whose key `keep` refuses (and leftovers of
    /// writes that never finished).
    pub fn retain_index(&self, keep: &dyn Fn(&str) -> bool) {
        self.retain("index", keep);
    }

    /// A cached pack, whole; `None` when it is not cached.
    pub fn pack(&self, name: &str) -> Option<PathBuf> {
        let path = self.dir.join("packs").join(name);
        path.is_file().then_some(path)
    }

    /// `len` bytes of a cached pack from `offset`.
    pub fn read_pack_range(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let path = self.dir.join("packs").join(name);
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .at(&path)?;
        let size = f.metadata().at(&path)?.len();
        if offset.checked_add(len as u64).is_none_or(|end| end > size) {
            return Err(Error::corrupt(
                format!("cached pack {name}"),
                "shorter than its index says",
            ));
        }
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, offset).at(&path)?;
        Ok(buf)
    }

    /// Store a whole pack.
    pub fn put_pack(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.dir.join("packs").join(name);
        self.write(&path, bytes)?;
        Ok(path)
    }

    /// A cached snapshot manifest's stored bytes, if cached (checked
    /// against its id by the caller, like one downloaded).
    pub fn snapshot(&self, name: &str) -> Option<Vec<u8>> {
        use std::io::Read;
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.dir.join("snapshots").join(name))
            .ok()?;
        let mut bytes = Vec::new();
        let limit = crate::backend::FileType::Snapshot.max_size();
        f.take(limit + 1).read_to_end(&mut bytes).ok()?;
        (bytes.len() as u64 <= limit).then_some(bytes)
    }

    /// Cache a snapshot manifest's stored bytes.
    pub fn put_snapshot(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.write(&self.dir.join("snapshots").join(name), bytes)
    }

    /// Remove cached snapshot manifests not in `keep` (forgotten ones).
    pub fn retain_snapshots(&self, keep: &dyn Fn(&str) -> bool) {
        self.retain("snapshots", keep);
    }

    /// Remove cached packs not in `keep`.
    pub fn retain_packs(&self, keep: &dyn Fn(&str) -> bool) {
        self.retain("packs", keep);
    }

    /// Remove the files of subdirectory `dir` whose names `keep` refuses.
    fn retain(&self, dir: &str, keep: &dyn Fn(&str) -> bool) {
        let Ok(rd) = fs::read_dir(self.dir.join(dir)) else {
            return;
        };
        for e in rd.flatten() {
            if let Ok(n) = e.file_name().into_string() {
                if !keep(&n) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().expect("cache files have a directory");
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        let res = (|| -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(bytes)?;
            fs::rename(&tmp, path)
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(path, e));
        }
        Ok(())
    }
}

/// Index files up to this size are read whole at their first lookup.
const READ_WHOLE_MAX: usize = 1 << 20;

/// Index files up to this size are read whole once lookups come in bulk (an
/// index of ~1 TiB of data is ~500 MiB: that one stays page by page, read
/// around each page).
const READ_AHEAD_MAX: usize = 64 << 20;

/// Pieces in which a mapping is read ahead. One `MADV_WILLNEED` reads at most
/// the device's read-ahead (often 128 KiB), however long its range.
const READ_AHEAD_PIECE: usize = 128 << 10;

/// A mapped index file.
struct Mapped(memmap2::Mmap);

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Mapped {
    /// Start reading the whole file into the page cache, in the background.
    fn read_whole(&self) {
        let len = self.0.len();
        for at in (0..len).step_by(READ_AHEAD_PIECE) {
            let piece = READ_AHEAD_PIECE.min(len - at);
            let _ = self.0.advise_range(memmap2::Advice::WillNeed, at, piece);
        }
    }
}

impl IndexBytes for Mapped {
    fn searched(&self) {
        if self.0.len() <= READ_WHOLE_MAX {
            self.read_whole();
        }
    }

    fn bulk(&self) {
        if self.0.len() <= READ_AHEAD_MAX {
            self.read_whole();
        }
        let _ = self.0.advise(memmap2::Advice::Normal);
    }
}

/// Index files and page-cache probes for tests here and in `repo`.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::format::id::BlobId;
    use crate::format::pack::{BlobKind, Frame, PackEntry};

    pub fn page() -> usize {
        // SAFETY: sysconf only reads a system value.
        unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
    }

    /// Pages of a mapping in the page cache (mincore asks, reads nothing).
    pub fn resident(bytes: &[u8]) -> usize {
        let mut vec = vec![0u8; bytes.len().div_ceil(page())];
        // SAFETY: `bytes` is a live mapping, page-aligned as mmap returns it.
        let r = unsafe { libc::mincore(bytes.as_ptr() as *mut _, bytes.len(), vec.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore");
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    /// The blob id numbered `i`.
    pub fn id(i: u32) -> BlobId {
        BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    /// A temporary directory whose files can be dropped from the page cache:
    /// under the build's target directory, which is on disk wherever `/tmp`
    /// is tmpfs. A test that needs it fails, rather than passing unchecked,
    /// when even that directory keeps every page (a target on tmpfs).
    pub fn evictable_dir() -> tempfile::TempDir {
        let base = std::env::var_os("CARGO_TARGET_TMPDIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        std::fs::create_dir_all(&base).unwrap();
        let dir = tempfile::tempdir_in(&base).unwrap();
        let fs_type = nix::sys::statfs::statfs(dir.path())
            .unwrap()
            .filesystem_type();
        assert!(
            fs_type != nix::sys::statfs::TMPFS_MAGIC,
            "{} is on tmpfs: the page cache cannot be emptied there",
            dir.path().display()
        );
        dir
    }

    /// Write `path` to disk and drop it from the page cache.
    pub fn evict(path: &std::path::Path) {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path).unwrap();
        f.sync_all().unwrap();
        // SAFETY: an advice on an open descriptor.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(r, 0);
    }

    /// Pack entries for the blobs numbered `ids`.
    pub fn entries(ids: impl Iterator<Item = u32>) -> Vec<PackEntry> {
        ids.map(|i| PackEntry {
            kind: BlobKind::Data,
            id: id(i),
            frame: Frame {
                offset: i,
                stored_len: 10,
                raw_len: 20,
            },
            inner: 0,
            raw_len: 20,
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{entries, evict, evictable_dir, id, page, resident};
    use super::*;
    use crate::format::id::PackId;
    use crate::format::index::{encode, IndexFile};

    /// A cache holding index file `i` with `records` records, written and
    /// dropped from the page cache.
    fn cold_index(records: u32) -> (tempfile::TempDir, DiskCache) {
        let dir = evictable_dir();
        let cache = DiskCache::open(dir.path(), "r").unwrap();
        cache
            .put_index("aa", &encode(&[(PackId([1; 32]), entries(0..records))]))
            .unwrap();
        evict(&cache.index_path("aa"));
        (dir, cache)
    }

    fn wait_resident(bytes: &[u8], what: &str) {
        let pages = bytes.len().div_ceil(page());
        let start = std::time::Instant::now();
        while resident(bytes) < pages {
            let got = resident(bytes);
            assert!(
                start.elapsed().as_secs() < 10,
                "{what}: {got} of {pages} pages read"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// A small index (an incremental backup's) is read whole at its first
    /// lookup, however small the device's read-ahead.
    #[test]
    fn a_small_index_is_read_whole_at_its_first_lookup() {
        let (_dir, cache) = cold_index(10_000);
        let bytes = cache.index("aa").unwrap().unwrap();
        assert!(bytes.len() > 512 << 10 && bytes.len() <= READ_WHOLE_MAX);
        assert_eq!(resident(&bytes), 0, "the file was not evicted");
        let index = IndexFile::open(bytes.clone(), "i", false).unwrap();
        assert!(index.get(&id(7)).unwrap().is_some());
        wait_resident(&bytes, "after the first lookup");
    }

    /// Until lookups come in bulk, a large index is read only where its
    /// searches go; from then on it is read whole, in the background.
    #[test]
    fn a_large_index_is_read_whole_once_lookups_come_in_bulk() {
        let (_dir, cache) = cold_index(100_000);
        let bytes = cache.index("aa").unwrap().unwrap();
        assert!(bytes.len() > READ_WHOLE_MAX);
        let index = IndexFile::open(bytes.clone(), "i", false).unwrap();
        for i in 0..15 {
            assert!(index.get(&id(i * 997)).unwrap().is_some());
        }
        let read = resident(&bytes);
        assert!(read <= 15 * 4, "{read} pages read for 15 lookups");
        assert!(index.get(&id(5)).unwrap().is_some());
        wait_resident(&bytes, "after 16 lookups");
    }

    #[test]
    fn cache_is_private_and_tagged() {
        let dir = tempfile::tempdir().unwrap();
        let old = unsafe { libc::umask(0) };
        let cache = DiskCache::open(&dir.path().join("rewind"), "r").unwrap();
        cache.put_index("ab", b"x").unwrap();
        unsafe { libc::umask(old) };
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("rewind")), 0o700);
        assert_eq!(mode(&dir.path().join("rewind/r/index")), 0o700);
        assert_eq!(mode(&cache.index_path("ab")), 0o600);
        let tag = fs::read_to_string(dir.path().join("rewind/CACHEDIR.TAG")).unwrap();
        assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"));
    }
}

//! A repository in a local directory.

use super::{Backend, Upload};
use crate::error::{Error, IoContext, Result};
use crate::format::index::Bytes;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How many pack files stay open for reads.
const OPEN_FILES: usize = 128;

/// Files under a root directory.
pub struct LocalBackend {
    root: PathBuf,
    open: Mutex<HashMap<String, Arc<File>>>,
    tmp_counter: AtomicU64,
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend {
            root: root.into(),
            open: Mutex::new(HashMap::new()),
            tmp_counter: AtomicU64::new(0),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Temp name, write, (fsync,) rename, (fsync the directory).
    fn write_file(&self, name: &str, data: &[u8], durable: bool) -> Result<()> {
        let path = self.path(name);
        let dir = path.parent().expect("names have a parent");
        ensure_dir(dir)?;
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(data)?;
            if durable {
                f.sync_all()?;
            }
            Ok(())
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(&path, e));
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(&path, e));
        }
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
    }

    fn open_cached(&self, name: &str) -> Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.get(name) {
            return Ok(f.clone());
        }
        let path = self.path(name);
        let f = Arc::new(File::open(&path).map_err(|e| not_found_or_io(name, &path, e))?);
        if open.len() >= OPEN_FILES {
            open.clear();
        }
        open.insert(name.to_string(), f.clone());
        Ok(f)
    }
}

fn not_found_or_io(name: &str, path: &Path, e: std::io::Error) -> Error {
    if e.kind() == ErrorKind::NotFound {
        Error::NotFound(name.to_string())
    } else {
        Error::io(path, e)
    }
}

/// Create `dir` if missing, and make its entry in its parent durable (a new
/// `data/ab/` must survive a crash as surely as the pack renamed into it).
fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).at(dir)?;
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// fsync a directory so a rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

impl Backend for LocalBackend {
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        self.write_file(name, data, true)
    }

    fn put_volatile(&self, name: &str, data: &[u8]) -> Result<()> {
        self.write_file(name, data, false)
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.path(name);
        fs::read(&path).map_err(|e| not_found_or_io(name, &path, e))
    }

    fn get_range(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let f = self.open_cached(name)?;
        // Lengths come from index records: never allocate for a range the
        // file cannot hold (a damaged record could ask for gigabytes).
        let size = f.metadata().at(self.path(name))?.len();
        if offset.checked_add(len as u64).is_none_or(|end| end > size) {
            return Err(Error::corrupt(
                format!("pack {name}"),
                format!(
                    "file ends at byte {size}, before byte {}",
                    offset.saturating_add(len as u64)
                ),
            ));
        }
        let mut buf = vec![0u8; len];
        match f.read_exact_at(&mut buf, offset) {
            Ok(()) => Ok(buf),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(Error::corrupt(
                format!("pack {name}"),
                format!("file ends before byte {}", offset + len as u64),
            )),
            Err(e) => Err(Error::io(self.path(name), e)),
        }
    }

    fn size(&self, name: &str) -> Result<u64> {
        let path = self.path(name);
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| not_found_or_io(name, &path, e))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_string()];
        while let Some(rel) = stack.pop() {
            let path = self.path(&rel);
            let rd = match fs::read_dir(&path) {
                Ok(rd) => rd,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
            for ent in rd {
                let ent = ent.at(&path)?;
                let name = ent.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') {
                    continue;
                }
                let child = format!("{rel}/{name}");
                if ent.file_type().at(ent.path())?.is_dir() {
                    stack.push(child);
                } else {
                    out.push(child);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().expect("names have a parent")),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn exists(&self, name: &str) -> Result<bool> {
        Ok(self.path(name).exists())
    }

    fn map(&self, name: &str) -> Result<Bytes> {
        let path = self.path(name);
        let f = File::open(&path).map_err(|e| not_found_or_io(name, &path, e))?;
        let len = f.metadata().at(&path)?.len();
        if len == 0 {
            return Ok(Arc::new(Vec::new()));
        }
        // SAFETY: repository files are immutable once renamed into place; prune
        // only unlinks them, which keeps a mapping valid.
        let map = unsafe { memmap2::Mmap::map(&f) }.at(&path)?;
        // Touch only the pages asked for until the index says otherwise (see
        // `IndexBytes`): the kernel would otherwise read around each one (up
        // to the device's whole read-ahead, megabytes) when a command needs
        // a few blobs.
        let _ = map.advise(memmap2::Advice::Random);
        Ok(Arc::new(Mapped(map)))
    }

    fn upload(&self, dir: &str) -> Result<Box<dyn Upload>> {
        let dir = self.path(dir);
        ensure_dir(&dir)?;
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .at(&tmp)?;
        Ok(Box::new(LocalUpload {
            file: Some(file),
            tmp,
            root: self.root.clone(),
        }))
    }

    fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        let path = self.path(name);
        Ok(Some(
            fs::metadata(&path).and_then(|m| m.modified()).at(&path)?,
        ))
    }

    fn remove_stale_temp(&self, max_age: std::time::Duration) -> Result<u64> {
        let mut dirs = vec![self.root.clone()];
        for top in ["data", "index", "snapshots", "locks"] {
            dirs.push(self.path(top));
            if top == "data" {
                if let Ok(rd) = fs::read_dir(self.path(top)) {
                    dirs.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
                }
            }
        }
        let mut removed = 0;
        for dir in dirs {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > max_age);
                if old && e.file_name().to_string_lossy().starts_with(".tmp-") {
                    fs::remove_file(e.path()).at(e.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }
}

/// A temporary file that becomes a repository file on commit.
struct LocalUpload {
    file: Option<File>,
    tmp: PathBuf,
    root: PathBuf,
}

impl Write for LocalUpload {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let tmp = &self.tmp;
        self.file
            .as_mut()
            .expect("open until commit")
            .write(b)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", tmp.display())))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Upload for LocalUpload {
    fn commit(mut self: Box<Self>, name: &str) -> Result<()> {
        let path = self.root.join(name);
        let file = self.file.take().expect("committed once");
        file.sync_all().at(&path)?;
        drop(file);
        let dir = path.parent().expect("names have a parent");
        ensure_dir(dir)?;
        fs::rename(&self.tmp, &path).at(&path)?;
        sync_dir(dir)
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // Not committed (or the rename failed): never leave the temporary file.
        if self.file.is_some() || self.tmp.exists() {
            let _ = fs::remove_file(&self.tmp);
        }
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

impl crate::format::index::IndexBytes for Mapped {
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

    /// A temporary directory whose files can be dropped from the page cache;
    /// `None` on tmpfs, which keeps every page (the test is then skipped).
    pub fn evictable_dir() -> Option<tempfile::TempDir> {
        let dir = tempfile::tempdir().unwrap();
        let fs_type = nix::sys::statfs::statfs(dir.path())
            .unwrap()
            .filesystem_type();
        if fs_type == nix::sys::statfs::TMPFS_MAGIC {
            eprintln!("skipped: {} is on tmpfs", dir.path().display());
            return None;
        }
        Some(dir)
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

    /// A repository directory holding index file `index/i` with `records`
    /// records, written and dropped from the page cache; `None` where the
    /// page cache cannot be emptied (tmpfs keeps every page).
    fn cold_index(records: u32) -> Option<(tempfile::TempDir, LocalBackend)> {
        let dir = evictable_dir()?;
        fs::create_dir(dir.path().join("index")).unwrap();
        let path = dir.path().join("index/i");
        fs::write(&path, encode(&[(PackId([1; 32]), entries(0..records))])).unwrap();
        evict(&path);
        let backend = LocalBackend::new(dir.path());
        Some((dir, backend))
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
        let Some((_dir, backend)) = cold_index(10_000) else {
            return;
        };
        let bytes = backend.map("index/i").unwrap();
        assert!(bytes.len() > 512 << 10 && bytes.len() <= READ_WHOLE_MAX);
        assert_eq!(resident(&bytes), 0, "the file was not evicted");
        let index = IndexFile::open(bytes.clone(), "i").unwrap();
        assert!(index.get(&id(7)).unwrap().is_some());
        wait_resident(&bytes, "after the first lookup");
    }

    /// Until lookups come in bulk, a large index is read only where its
    /// searches go; from then on it is read whole, in the background.
    #[test]
    fn a_large_index_is_read_whole_once_lookups_come_in_bulk() {
        let Some((_dir, backend)) = cold_index(100_000) else {
            return;
        };
        let bytes = backend.map("index/i").unwrap();
        assert!(bytes.len() > READ_WHOLE_MAX);
        let index = IndexFile::open(bytes.clone(), "i").unwrap();
        for i in 0..15 {
            assert!(index.get(&id(i * 997)).unwrap().is_some());
        }
        let read = resident(&bytes);
        assert!(read <= 15 * 4, "{read} pages read for 15 lookups");
        assert!(index.get(&id(5)).unwrap().is_some());
        wait_resident(&bytes, "after 16 lookups");
    }
}

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
        // A small file (an incremental backup's index) is read whole, in the
        // background: a lookup searches every index file, and each miss in a
        // cold one would cost a read from disk. A large one is read only
        // where searches touch it until lookups come in bulk: the kernel
        // would otherwise read around each page (up to the device's whole
        // read-ahead, megabytes) when a command needs a few blobs.
        let advice = match len <= READ_WHOLE_MAX {
            true => memmap2::Advice::WillNeed,
            false => memmap2::Advice::Random,
        };
        let _ = map.advise(advice);
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

/// Mapped files up to this size are read whole as soon as they are mapped.
const READ_WHOLE_MAX: u64 = 1 << 20;

/// Mapped files up to this size are read whole, in the background, once
/// lookups come in bulk (an index of ~1 TiB of data is ~500 MiB: that one
/// stays page by page, read around each page).
const READ_AHEAD_MAX: u64 = 64 << 20;

/// A mapped index file.
struct Mapped(memmap2::Mmap);

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl crate::format::index::IndexBytes for Mapped {
    fn bulk(&self) {
        if self.0.len() as u64 <= READ_AHEAD_MAX {
            let _ = self.0.advise(memmap2::Advice::WillNeed);
        }
        let _ = self.0.advise(memmap2::Advice::Normal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Pages of a mapping in the page cache (mincore asks, reads nothing).
    fn resident(bytes: &[u8]) -> usize {
        let mut vec = vec![0u8; bytes.len().div_ceil(4096)];
        // SAFETY: `bytes` is a live mapping, page-aligned as mmap returns it.
        let r = unsafe { libc::mincore(bytes.as_ptr() as *mut _, bytes.len(), vec.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore");
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    /// Write `len` bytes to `path` and drop them from the page cache.
    fn cold_file(path: &Path, len: usize) {
        cold_bytes(path, &vec![7u8; len]);
    }

    /// Write `bytes` to `path` and drop them from the page cache.
    fn cold_bytes(path: &Path, bytes: &[u8]) {
        fs::write(path, bytes).unwrap();
        let f = File::open(path).unwrap();
        f.sync_all().unwrap();
        // SAFETY: an advice on an open descriptor.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(r, 0);
    }

    #[test]
    fn small_maps_are_read_whole_and_large_ones_only_where_touched() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("index")).unwrap();
        cold_file(&dir.path().join("index/small"), 256 << 10);
        cold_file(&dir.path().join("index/large"), 4 << 20);
        let backend = LocalBackend::new(dir.path());
        let small = backend.map("index/small").unwrap();
        let large = backend.map("index/large").unwrap();
        assert_eq!(resident(&large), 0, "the large file was not evicted");
        std::hint::black_box(large[2 << 20]);
        let start = std::time::Instant::now();
        while resident(&small) < small.len() / 4096 {
            assert!(
                start.elapsed().as_secs() < 10,
                "the small file was not read whole"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // The device's read-ahead would bring 32 pages or more.
        assert!(
            resident(&large) <= 4,
            "{} pages of the large file read",
            resident(&large)
        );
    }

    /// Until lookups come in bulk, a large index is read only where its
    /// searches go; from then on it is read whole, in the background.
    #[test]
    fn a_large_index_is_read_whole_once_lookups_come_in_bulk() {
        use crate::format::id::{BlobId, PackId};
        use crate::format::index::{encode, IndexFile};
        use crate::format::pack::{BlobKind, Frame, PackEntry};
        let id = |i: u32| BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes());
        let entries = (0..40_000u32)
            .map(|i| PackEntry {
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
            .collect();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("index")).unwrap();
        cold_bytes(
            &dir.path().join("index/large"),
            &encode(&[(PackId([1; 32]), entries)]),
        );
        let bytes = LocalBackend::new(dir.path()).map("index/large").unwrap();
        let pages = bytes.len() / 4096;
        assert!(pages > 500);
        let index = IndexFile::open(bytes.clone(), "large").unwrap();
        for i in 0..15 {
            assert!(index.get(&id(i * 997)).unwrap().is_some());
        }
        assert!(
            resident(&bytes) <= 15 * 4,
            "{} pages read for 15 lookups",
            resident(&bytes)
        );
        assert!(index.get(&id(5)).unwrap().is_some());
        let start = std::time::Instant::now();
        while resident(&bytes) < pages {
            assert!(
                start.elapsed().as_secs() < 10,
                "{} of {pages} pages read",
                resident(&bytes)
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

//! A repository in a local directory.
//!
//! Every name is resolved from a directory file descriptor, one component at
//! a time, never following a symlink (`O_NOFOLLOW`, `O_DIRECTORY` for
//! directories): a symlink, FIFO or device planted in the repository is
//! refused, not followed, opened or waited on (`O_NONBLOCK`). Only regular
//! files are objects, and a file larger than its type allows is refused
//! before it is read. `list` applies the same rules, so it and `get` agree on
//! what exists.
//!
//! Objects are written under a temporary name (`.tmp-<pid>-<n>`) in their
//! directory, fsynced, renamed into place, and the directory fsynced (locks
//! skip the fsyncs: they mean nothing after a crash). Files are created 0600
//! and directories 0700, whatever the umask: a repository is nobody else's
//! business, encrypted or not.

use super::{check_name, not_found, valid_name, Backend, FileType, ObjectInfo};
use crate::error::{Error, Result};
use crate::meta;
use std::collections::HashMap;
use std::ffi::CString;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How many pack files stay open for reads.
const OPEN_FILES: usize = 128;

/// Mode of every file the backend creates.
const FILE_MODE: libc::mode_t = 0o600;
/// Mode of every directory the backend creates.
const DIR_MODE: libc::mode_t = 0o700;

/// An open object and its size, for range reads.
struct OpenFile {
    fd: OwnedFd,
    size: u64,
}

/// Objects under a root directory.
pub struct LocalBackend {
    root: PathBuf,
    /// Open directories by relative path (`""` is the root).
    dirs: Mutex<HashMap<String, Arc<OwnedFd>>>,
    open: Mutex<HashMap<(FileType, String), Arc<OpenFile>>>,
    tmp_counter: AtomicU64,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn c(name: &str) -> CString {
    CString::new(name).expect("object names hold no NUL")
}

fn is_reg(st: &libc::stat64) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

fn is_dir(st: &libc::stat64) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn mtime(st: &libc::stat64) -> Option<SystemTime> {
    let t = Duration::new(
        st.st_mtime.max(0) as u64,
        st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
    );
    SystemTime::UNIX_EPOCH.checked_add(t)
}

/// The relative directory of an object, and its file name there.
fn split(t: FileType, name: &str) -> (String, &str) {
    let path = super::object_path(t, name);
    match path.rsplit_once('/') {
        Some((dir, _)) => (dir.to_string(), name),
        None => (String::new(), name),
    }
}

impl LocalBackend {
    /// The repository in directory `root` (nothing is opened yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend {
            root: root.into(),
            dirs: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
            tmp_counter: AtomicU64::new(0),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn io(&self, rel: &str, e: io::Error) -> Error {
        Error::io(self.path(rel), e)
    }

    /// The open directory `rel` (`""`: the root; otherwise components below
    /// it, each opened without following a symlink). With `create`, missing
    /// directories are made (0700, durably).
    fn dir(&self, rel: &str, create: bool) -> Result<Arc<OwnedFd>> {
        if let Some(fd) = self.dirs.lock().unwrap_or_else(|e| e.into_inner()).get(rel) {
            return Ok(fd.clone());
        }
        let fd = match rel.rsplit_once('/') {
            None if rel.is_empty() => {
                // The root itself may be reached through symlinks (a user's
                // path); nothing below it is.
                Arc::new(meta::open_dir_path(&self.root).map_err(|e| self.io("", e))?)
            }
            split => {
                let (parent, last) = split.unwrap_or(("", rel));
                let parent_fd = self.dir(parent, create)?;
                Arc::new(self.open_or_make(&parent_fd, parent, last, create)?)
            }
        };
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rel.to_string(), fd.clone());
        Ok(fd)
    }

    fn open_or_make(
        &self,
        parent: &OwnedFd,
        prel: &str,
        last: &str,
        create: bool,
    ) -> Result<OwnedFd> {
        let rel = if prel.is_empty() {
            last.to_string()
        } else {
            format!("{prel}/{last}")
        };
        let name = c(last);
        match meta::open_dir_at(parent.as_raw_fd(), &name) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.kind() == ErrorKind::NotFound && create => {}
            Err(e) => return Err(self.dir_error(&rel, e)),
        }
        match cvt(unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), DIR_MODE) }) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(self.io(&rel, e)),
        }
        let fd =
            meta::open_dir_at(parent.as_raw_fd(), &name).map_err(|e| self.dir_error(&rel, e))?;
        // The umask may have taken bits we want; it cannot have added any.
        cvt(unsafe { libc::fchmod(fd.as_raw_fd(), DIR_MODE) }).map_err(|e| self.io(&rel, e))?;
        // The new entry must survive a crash as surely as what goes in it.
        cvt(unsafe { libc::fsync(parent.as_raw_fd()) }).map_err(|e| self.io(prel, e))?;
        Ok(fd)
    }

    /// A directory that cannot be opened as one: name what is in its place.
    fn dir_error(&self, rel: &str, e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => Error::corrupt(
                format!("repository {}", self.root.display()),
                format!("{rel} is not a directory (a symlink or a file is in its place)"),
            ),
            _ => self.io(rel, e),
        }
    }

    /// The directory holding object `name` of type `t`, or `None` when it
    /// does not exist.
    fn dir_of(&self, t: FileType, name: &str) -> Result<Option<(Arc<OwnedFd>, String)>> {
        let (dir, _) = split(t, name);
        match self.dir(&dir, false) {
            Ok(fd) => Ok(Some((fd, dir))),
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Open object `name` for reading: a regular file no larger than its type
    /// allows. Returns the file and its size.
    fn open_object(&self, t: FileType, name: &str) -> Result<OpenFile> {
        check_name(t, name)?;
        let Some((dir, rel)) = self.dir_of(t, name)? else {
            return Err(not_found(t, name));
        };
        let path = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let fd = match meta::open_at(dir.as_raw_fd(), &c(name), libc::O_RDONLY) {
            Ok(fd) => fd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(not_found(t, name)),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(Error::corrupt(
                    t.describe(name),
                    format!("{} is a symlink, not a file", self.path(&path).display()),
                ))
            }
            Err(e) => return Err(self.io(&path, e)),
        };
        let st = meta::stat_fd(fd.as_raw_fd()).map_err(|e| self.io(&path, e))?;
        if !is_reg(&st) {
            return Err(Error::corrupt(
                t.describe(name),
                format!("{} is not a regular file", self.path(&path).display()),
            ));
        }
        let size = st.st_size as u64;
        if size > t.max_size() {
            return Err(Error::corrupt(
                t.describe(name),
                format!("{size} bytes, more than a {t:?} object may hold"),
            ));
        }
        Ok(OpenFile { fd, size })
    }

    fn open_cached(&self, t: FileType, name: &str) -> Result<Arc<OpenFile>> {
        let key = (t, name.to_string());
        if let Some(f) = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(f.clone());
        }
        let f = Arc::new(self.open_object(t, name)?);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= OPEN_FILES {
            open.clear();
        }
        open.insert(key, f.clone());
        Ok(f)
    }

    /// Temp name, write, (fsync,) rename, (fsync the directory).
    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        check_name(t, name)?;
        let durable = t != FileType::Lock;
        let (rel, _) = split(t, name);
        let dir = self.dir(&rel, true)?;
        let d = dir.as_raw_fd();
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = c(&format!(".tmp-{}-{n}", std::process::id()));
        let target = c(name);
        let path = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let res = (|| -> io::Result<()> {
            let fd = cvt(unsafe {
                libc::openat(
                    d,
                    tmp.as_ptr(),
                    libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    FILE_MODE as libc::c_uint,
                )
            })?;
            // SAFETY: a descriptor openat just returned, owned here only.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            cvt(unsafe { libc::fchmod(fd.as_raw_fd(), FILE_MODE) })?;
            write_all(fd.as_raw_fd(), data)?;
            if durable {
                cvt(unsafe { libc::fsync(fd.as_raw_fd()) })?;
            }
            drop(fd);
            cvt(unsafe { libc::renameat(d, tmp.as_ptr(), d, target.as_ptr()) })?;
            if durable {
                cvt(unsafe { libc::fsync(d) })?;
            }
            Ok(())
        })();
        if let Err(e) = res {
            unsafe { libc::unlinkat(d, tmp.as_ptr(), 0) };
            return Err(self.io(&path, e));
        }
        Ok(())
    }

    fn list_dir(
        &self,
        rel: &str,
        dir: &OwnedFd,
        out: &mut Vec<ObjectInfo>,
        t: FileType,
    ) -> Result<()> {
        let names = meta::read_dir(dir.as_raw_fd()).map_err(|e| self.io(rel, e))?;
        for ent in names {
            let Ok(name) = std::str::from_utf8(&ent.name) else {
                continue;
            };
            if !valid_name(t, name) {
                continue; // temporary files, strays
            }
            match meta::stat_at(dir.as_raw_fd(), &c(name)) {
                Ok(st) if is_reg(&st) && st.st_size as u64 <= t.max_size() => {
                    out.push(ObjectInfo {
                        name: name.to_string(),
                        size: st.st_size as u64,
                        modified: mtime(&st),
                    })
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {} // removed meanwhile
                Err(e) => return Err(self.io(&format!("{rel}/{name}"), e)),
            }
        }
        Ok(())
    }
}

fn write_all(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(ErrorKind::WriteZero, "write returned 0"));
        }
        data = &data[n as usize..];
    }
    Ok(())
}

fn read_exact_at(fd: RawFd, buf: &mut [u8], mut offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        let n = unsafe { libc::pread64(fd, rest.as_mut_ptr().cast(), rest.len(), offset as i64) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        done += n as usize;
        offset += n as u64;
    }
    Ok(done)
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<()> {
        match std::fs::symlink_metadata(&self.root) {
            Ok(_) if !self.root.is_dir() => {
                return Err(Error::InvalidInput(format!(
                    "{} exists and is not a directory",
                    self.root.display()
                )))
            }
            Ok(_) => {
                if self.root.join("config").exists() {
                    return Err(Error::InvalidInput(format!(
                        "{} already holds a repository",
                        self.root.display()
                    )));
                }
                let mut entries = std::fs::read_dir(&self.root).map_err(|e| self.io("", e))?;
                if entries.next().is_some() {
                    return Err(Error::InvalidInput(format!(
                        "{} is not empty; a repository needs an empty directory",
                        self.root.display()
                    )));
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
                }
                match std::fs::create_dir(&self.root) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(self.io("", e)),
                }
            }
            Err(e) => return Err(self.io("", e)),
        }
        let root = self.dir("", false)?;
        cvt(unsafe { libc::fchmod(root.as_raw_fd(), DIR_MODE) }).map_err(|e| self.io("", e))?;
        for t in FileType::ALL {
            if !t.dir().is_empty() {
                self.dir(t.dir(), true)?;
            }
        }
        Ok(())
    }

    fn put(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.write(t, name, data)
    }

    fn get(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let f = self.open_object(t, name)?;
        let mut buf = vec![0u8; f.size as usize];
        let n = read_exact_at(f.fd.as_raw_fd(), &mut buf, 0)
            .map_err(|e| self.io(&super::object_path(t, name), e))?;
        // Objects are written once; a shorter read means it was cut
        // meanwhile, and what was read is all there is.
        buf.truncate(n);
        Ok(buf)
    }

    fn get_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let f = self.open_cached(t, name)?;
        // Lengths come from index records: never allocate for a range the
        // file cannot hold (a damaged record could ask for gigabytes).
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|end| end > f.size) {
            return Err(Error::corrupt(
                t.describe(name),
                format!(
                    "object ends at byte {}, before byte {}",
                    f.size,
                    offset.saturating_add(len as u64)
                ),
            ));
        }
        let mut buf = vec![0u8; len];
        let n = read_exact_at(f.fd.as_raw_fd(), &mut buf, offset)
            .map_err(|e| self.io(&super::object_path(t, name), e))?;
        if n < len {
            return Err(super::ends_before(t, name, offset + len as u64));
        }
        Ok(buf)
    }

    fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        match t {
            FileType::Config => {
                if let Ok(info) = self.stat(t, "config") {
                    out.push(info);
                }
            }
            FileType::Pack => {
                let data = match self.dir("data", false) {
                    Ok(fd) => fd,
                    Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                        return Ok(out)
                    }
                    Err(e) => return Err(e),
                };
                for sub in meta::read_dir(data.as_raw_fd()).map_err(|e| self.io("data", e))? {
                    let Ok(sub) = String::from_utf8(sub.name) else {
                        continue;
                    };
                    if sub.len() != 2 || !valid_name(FileType::Pack, &sub) {
                        continue;
                    }
                    let rel = format!("data/{sub}");
                    match meta::stat_at(data.as_raw_fd(), &c(&sub)) {
                        Ok(st) if is_dir(&st) => {}
                        _ => continue,
                    }
                    let fd = match self.dir(&rel, false) {
                        Ok(fd) => fd,
                        Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                            continue
                        }
                        Err(e) => return Err(e),
                    };
                    let before = out.len();
                    self.list_dir(&rel, &fd, &mut out, t)?;
                    // A pack belongs in the directory of its first two digits.
                    let mut i = before;
                    while i < out.len() {
                        if out[i].name.starts_with(&sub) {
                            i += 1;
                        } else {
                            out.swap_remove(i);
                        }
                    }
                }
            }
            _ => match self.dir(t.dir(), false) {
                Ok(fd) => self.list_dir(t.dir(), &fd, &mut out, t)?,
                Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
        }
        Ok(out)
    }

    fn stat(&self, t: FileType, name: &str) -> Result<ObjectInfo> {
        check_name(t, name)?;
        let Some((dir, rel)) = self.dir_of(t, name)? else {
            return Err(not_found(t, name));
        };
        match meta::stat_at(dir.as_raw_fd(), &c(name)) {
            Ok(st) if is_reg(&st) => Ok(ObjectInfo {
                name: name.to_string(),
                size: st.st_size as u64,
                modified: mtime(&st),
            }),
            Ok(_) => Err(Error::corrupt(
                t.describe(name),
                format!(
                    "{} is not a regular file",
                    self.path(&format!("{rel}/{name}")).display()
                ),
            )),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(not_found(t, name)),
            Err(e) => Err(self.io(&format!("{rel}/{name}"), e)),
        }
    }

    fn delete(&self, t: FileType, name: &str) -> Result<()> {
        check_name(t, name)?;
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(t, name.to_string()));
        let Some((dir, rel)) = self.dir_of(t, name)? else {
            return Ok(());
        };
        match cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), c(name).as_ptr(), 0) }) {
            Ok(_) => {
                if t != FileType::Lock {
                    cvt(unsafe { libc::fsync(dir.as_raw_fd()) }).map_err(|e| self.io(&rel, e))?;
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(&format!("{rel}/{name}"), e)),
        }
    }

    fn remove_stale_temp(&self, max_age: Duration) -> Result<u64> {
        let mut dirs: Vec<String> = vec![String::new()];
        for t in FileType::ALL {
            if !t.dir().is_empty() {
                dirs.push(t.dir().to_string());
            }
        }
        if let Ok(data) = self.dir("data", false) {
            for sub in meta::read_dir(data.as_raw_fd()).unwrap_or_default() {
                if let Ok(sub) = String::from_utf8(sub.name) {
                    if sub.len() == 2 && valid_name(FileType::Pack, &sub) {
                        dirs.push(format!("data/{sub}"));
                    }
                }
            }
        }
        let mut removed = 0;
        for rel in dirs {
            let Ok(fd) = self.dir(&rel, false) else {
                continue;
            };
            let Ok(names) = meta::read_dir(fd.as_raw_fd()) else {
                continue;
            };
            for ent in names {
                if !ent.name.starts_with(b".tmp-") {
                    continue;
                }
                let Ok(name) = meta::cstr(&ent.name) else {
                    continue;
                };
                let old = meta::stat_at(fd.as_raw_fd(), &name)
                    .ok()
                    .filter(is_reg)
                    .and_then(|st| mtime(&st))
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > max_age);
                if old {
                    match cvt(unsafe { libc::unlinkat(fd.as_raw_fd(), name.as_ptr(), 0) }) {
                        Ok(_) => removed += 1,
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => {
                            let rel = format!("{rel}/{}", String::from_utf8_lossy(&ent.name));
                            return Err(self.io(&rel, e));
                        }
                    }
                }
            }
        }
        Ok(removed)
    }
}

/// Where a local repository path's objects are, for tests that damage them.
pub fn path_of(root: &Path, t: FileType, name: &str) -> PathBuf {
    root.join(super::object_path(t, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn backend() -> (tempfile::TempDir, LocalBackend) {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("repo"));
        b.create().unwrap();
        (dir, b)
    }

    #[test]
    fn objects_round_trip_with_private_modes_whatever_the_umask() {
        let (_d, b) = backend();
        let old = unsafe { libc::umask(0o022) };
        b.put(FileType::Pack, "ab01", b"pack bytes").unwrap();
        b.put(FileType::Snapshot, "cd", b"snap").unwrap();
        unsafe { libc::umask(old) };
        assert_eq!(b.get(FileType::Pack, "ab01").unwrap(), b"pack bytes");
        assert_eq!(b.get_range(FileType::Pack, "ab01", 5, 5).unwrap(), b"bytes");
        assert!(matches!(
            b.get_range(FileType::Pack, "ab01", 5, 6),
            Err(Error::Corrupt { .. })
        ));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&b.root.join("data/ab/ab01")), 0o600);
        assert_eq!(mode(&b.root.join("data/ab")), 0o700);
        assert_eq!(mode(&b.root), 0o700);
        let names: Vec<String> = b
            .list(FileType::Pack)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, ["ab01"]);
        assert_eq!(b.stat(FileType::Pack, "ab01").unwrap().size, 10);
        b.delete(FileType::Pack, "ab01").unwrap();
        b.delete(FileType::Pack, "ab01").unwrap();
        assert!(matches!(
            b.get(FileType::Pack, "ab01"),
            Err(Error::NotFound(_))
        ));
    }

    /// Symlinks, FIFOs and oversized files planted in a repository are
    /// refused by reads and left out of listings: never followed, opened or
    /// waited on, and no write lands outside the repository.
    #[test]
    fn planted_symlinks_fifos_and_devices_are_refused() {
        let (d, b) = backend();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        // A symlinked pack directory: a write must not go through it.
        symlink(&outside, b.root.join("data/ee")).unwrap();
        assert!(b.put(FileType::Pack, "ee01", b"x").is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // A symlink to /dev/zero and a FIFO where objects go.
        symlink("/dev/zero", b.root.join("index/aa")).unwrap();
        nix::unistd::mkfifo(&b.root.join("locks/bb"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(
            b.get(FileType::Index, "aa"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            b.get(FileType::Lock, "bb"),
            Err(Error::Corrupt { .. })
        ));
        assert!(b.list(FileType::Index).unwrap().is_empty());
        assert!(b.list(FileType::Lock).unwrap().is_empty());
        assert!(b.list(FileType::Pack).unwrap().is_empty());
        // A lock larger than a lock may be.
        std::fs::write(b.root.join("locks/cc"), vec![0u8; 100 << 10]).unwrap();
        assert!(matches!(
            b.get(FileType::Lock, "cc"),
            Err(Error::Corrupt { .. })
        ));
        // Names that are not ids are refused before anything is touched.
        assert!(b.get(FileType::Snapshot, "../config").is_err());
    }

    #[test]
    fn create_refuses_a_repository_and_a_non_empty_directory() {
        let (_d, b) = backend();
        b.put(FileType::Config, "config", b"c").unwrap();
        assert!(b.create().is_err());
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("f"), b"x").unwrap();
        assert!(LocalBackend::new(other.path()).create().is_err());
    }
}

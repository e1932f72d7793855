//! Restore: a snapshot, or a path in it, back onto disk with all its metadata.
//!
//! One thread walks the trees and creates every entry (directories, links,
//! devices, and regular files opened empty); a pool writes file contents and
//! their metadata through the open descriptors. A directory's own metadata is
//! applied after its children are created, so its mtime and a read-only mode
//! stick. Every call is relative to an open directory, so names are raw bytes
//! and paths may exceed `PATH_MAX`.
//!
//! Order per entry: create, content, owner (which clears setuid bits), mode,
//! extended attributes (after chown, which clears `security.capability`),
//! times last.

use crate::backup::Excludes;
use crate::error::{Error, Result};
use crate::format::tree::{Entry, Extent, Kind, Xattr};
use crate::meta::{self, cstr, Names};
use crate::progress::Progress;
use crate::repo::Repository;
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// How to restore.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    pub target: PathBuf,
    /// Only entries matching one of these (and the directories above them).
    pub includes: Vec<String>,
    /// Replace what is in the target instead of refusing a non-empty target.
    pub overwrite: bool,
    /// Use stored uid/gid as they are, without mapping names.
    pub numeric_owner: bool,
    pub threads: usize,
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreOutcome {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    pub bytes: u64,
    /// Entries that could not be restored (each reported as a warning).
    pub errors: u64,
    /// Entries whose owner could not be set (not root).
    pub owner_denied: u64,
    /// Extended attributes that could not be set.
    pub xattr_denied: u64,
}

#[derive(Default)]
struct Counts {
    files: AtomicU64,
    dirs: AtomicU64,
    other: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    owner_denied: AtomicU64,
    xattr_denied: AtomicU64,
}

/// A file whose content the pool writes.
struct Job {
    fd: OwnedFd,
    dir: Arc<OwnedFd>,
    entry: Entry,
    path: PathBuf,
}

struct Restorer<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    includes: Option<Excludes>,
    progress: &'a dyn Progress,
    names: Names,
    counts: Counts,
    /// Hard-link groups restored so far, by source `(dev, ino)`.
    links: std::sync::Mutex<HashMap<(u64, u64), LinkGroup>>,
    /// Failed files to remove once the pool is done.
    doomed: std::sync::Mutex<Vec<(Arc<OwnedFd>, CString)>>,
    /// Running as root: every owner and xattr must then be restored.
    root: bool,
}

/// A hard-link group as restored so far. Later members are links to the
/// first, made before its content is written; if that write fails they are
/// taken back, so no link is left holding part of a file.
struct LinkGroup {
    /// The first member: directory, name, and path for messages.
    dir: Arc<OwnedFd>,
    name: CString,
    path: PathBuf,
    /// Regular files linked to the first so far.
    linked: Vec<(Arc<OwnedFd>, CString, PathBuf)>,
    /// The first member's content failed: later members get their own copy
    /// (which fails, by name, the same way).
    failed: bool,
}

impl LinkGroup {
    fn new(dir: &Arc<OwnedFd>, name: &CString, path: &Path) -> Self {
        LinkGroup {
            dir: dir.clone(),
            name: name.clone(),
            path: path.to_path_buf(),
            linked: Vec::new(),
            failed: false,
        }
    }

    /// Link `name` in `dir` to the first member.
    fn link(&self, dir: RawFd, name: &CString) -> bool {
        let r = unsafe {
            libc::linkat(
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
                dir,
                name.as_ptr(),
                0,
            )
        };
        r == 0
    }
}

/// Restore `entry` (found at `snap_path` in the snapshot) into `opts.target`:
/// a directory's children go into the target, anything else becomes
/// `target/<name>`.
pub fn restore(
    repo: &Repository,
    entry: &Entry,
    snap_path: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    prepare_target(&opts.target, opts.overwrite)?;
    let includes = if opts.includes.is_empty() {
        None
    } else {
        Some(Excludes::new(&opts.includes)?)
    };
    let r = Restorer {
        repo,
        opts,
        includes,
        progress,
        names: Names::default(),
        counts: Counts::default(),
        links: Default::default(),
        doomed: Default::default(),
        root: unsafe { libc::geteuid() } == 0,
    };
    let target =
        Arc::new(meta::open_dir_path(&opts.target).map_err(|e| Error::io(&opts.target, e))?);
    let (tx, rx) = crossbeam_channel::bounded::<Job>(opts.threads.max(1) * 16);
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1) {
            let rx = rx.clone();
            let r = &r;
            s.spawn(move || {
                for job in rx {
                    r.write_file(job);
                }
            });
        }
        // The walk recurses once per directory level: give it room for paths
        // far beyond PATH_MAX (the stack is only reserved, not used).
        let walker = std::thread::Builder::new()
            .name("restore-walk".into())
            .stack_size(1 << 30)
            .spawn_scoped(s, || {
                let tx = tx;
                if entry.kind == Kind::Dir {
                    let matched = r.includes.is_none();
                    r.children(&target, entry, snap_path, &opts.target, matched, &tx);
                } else {
                    let path = opts.target.join(OsStr::from_bytes(&entry.name));
                    r.entry(&target, entry, snap_path, &path, true, &tx);
                }
            });
        match walker {
            Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(e) => r.warn(Error::io("restore walker thread", e)),
        }
    });
    r.unlink_doomed();
    if entry.kind == Kind::Dir && entry.name != b"/" {
        // A restored subdirectory takes its own metadata onto the target,
        // made or found empty or overwritten: the target *is* that directory.
        let parent = opts.target.parent().unwrap_or(Path::new("/"));
        if let (Ok(pfd), Some(name)) = (meta::open_dir_path(parent), opts.target.file_name()) {
            r.apply_meta(pfd.as_raw_fd(), name.as_bytes(), entry, &opts.target, None);
        }
    }
    let c = &r.counts;
    Ok(RestoreOutcome {
        files: c.files.load(Relaxed),
        dirs: c.dirs.load(Relaxed),
        other: c.other.load(Relaxed),
        bytes: c.bytes.load(Relaxed),
        errors: c.errors.load(Relaxed),
        owner_denied: c.owner_denied.load(Relaxed),
        xattr_denied: c.xattr_denied.load(Relaxed),
    })
}

/// Create the target if needed; refuse a non-empty one unless overwriting.
fn prepare_target(target: &Path, overwrite: bool) -> Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if !m.is_dir() => Err(Error::InvalidInput(format!(
            "target {} is not a directory",
            target.display()
        ))),
        Ok(_) => {
            let mut rd = std::fs::read_dir(target).map_err(|e| Error::io(target, e))?;
            if !overwrite && rd.next().is_some() {
                return Err(Error::InvalidInput(format!(
                    "target {} is not empty; restore into an empty directory or pass --overwrite",
                    target.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(target).map_err(|e| Error::io(target, e))
        }
        Err(e) => Err(Error::io(target, e)),
    }
}

impl Restorer<'_> {
    fn warn(&self, e: Error) {
        self.counts.errors.fetch_add(1, Relaxed);
        self.progress.warn(&e);
    }

    fn included(&self, snap_dir: &Path, name: &[u8]) -> bool {
        self.includes
            .as_ref()
            .is_none_or(|inc| inc.matches(snap_dir, name))
    }

    /// Restore the children of directory entry `dir` into the open `fd`.
    /// Returns whether anything was restored.
    fn children(
        &self,
        fd: &Arc<OwnedFd>,
        dir: &Entry,
        snap: &Path,
        path: &Path,
        matched: bool,
        tx: &crossbeam_channel::Sender<Job>,
    ) -> bool {
        let Some(sub) = dir.subtree else { return false };
        let tree = match self.repo.load_tree(&sub) {
            Ok(t) => t,
            Err(e) => {
                self.warn(with_path(e, path));
                return false;
            }
        };
        let mut any = false;
        for child in &tree.entries {
            let m = matched || self.included(snap, &child.name);
            let name = OsStr::from_bytes(&child.name);
            any |= self.entry(fd, child, &snap.join(name), &path.join(name), m, tx);
        }
        any
    }

    /// Restore one entry into `dir`. Returns whether it was restored.
    fn entry(
        &self,
        dir: &Arc<OwnedFd>,
        e: &Entry,
        snap: &Path,
        path: &Path,
        matched: bool,
        tx: &crossbeam_channel::Sender<Job>,
    ) -> bool {
        if e.kind != Kind::Dir && !matched {
            return false;
        }
        let res = match e.kind {
            Kind::Dir => return self.directory(dir, e, snap, path, matched, tx),
            Kind::File => self.file(dir, e, path, tx),
            Kind::Symlink => self.symlink(dir, e, path),
            _ => self.special(dir, e, path),
        };
        match res {
            Ok(()) => true,
            Err(err) => {
                self.warn(err);
                false
            }
        }
    }

    fn directory(
        &self,
        dir: &Arc<OwnedFd>,
        e: &Entry,
        snap: &Path,
        path: &Path,
        matched: bool,
        tx: &crossbeam_channel::Sender<Job>,
    ) -> bool {
        let res = (|| -> io::Result<OwnedFd> {
            let name = cstr(&e.name)?;
            let made = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) };
            if made < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EEXIST) || !self.opts.overwrite {
                    return Err(err);
                }
                if !meta::stat_at(dir.as_raw_fd(), &name)
                    .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                {
                    remove_at(dir.as_raw_fd(), &name)?;
                    if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) } < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
            meta::open_dir_at(dir.as_raw_fd(), &name)
        })();
        let fd = match res {
            Ok(fd) => Arc::new(fd),
            Err(err) => {
                self.warn(Error::io(path, err));
                return false;
            }
        };
        let any = self.children(&fd, e, snap, path, matched, tx);
        drop(fd);
        if !any && !matched {
            // Made only on the way to included entries, and none were found.
            if let Ok(name) = cstr(&e.name) {
                unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) };
            }
            return false;
        }
        self.counts.dirs.fetch_add(1, Relaxed);
        self.apply_meta(dir.as_raw_fd(), &e.name, e, path, None);
        true
    }

    fn file(
        &self,
        dir: &Arc<OwnedFd>,
        e: &Entry,
        path: &Path,
        tx: &crossbeam_channel::Sender<Job>,
    ) -> Result<()> {
        let name = cstr(&e.name).map_err(|err| Error::io(path, err))?;
        if self.link_to_group(dir, e, &name, path)? {
            self.counts.files.fetch_add(1, Relaxed);
            return Ok(());
        }
        self.clear(dir.as_raw_fd(), &name, path)?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, 0o600) };
        if fd < 0 {
            return Err(Error::io(path, io::Error::last_os_error()));
        }
        let job = Job {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            dir: dir.clone(),
            entry: e.clone(),
            path: path.to_path_buf(),
        };
        let _ = tx.send(job);
        Ok(())
    }

    /// Make `name` a hard link to the first restored member of its link
    /// group, if the group has one; the first member of a group is recorded
    /// instead. Returns whether a link was made. Links are remembered so that
    /// a first member whose content fails can take them back.
    fn link_to_group(
        &self,
        dir: &Arc<OwnedFd>,
        e: &Entry,
        name: &CString,
        path: &Path,
    ) -> Result<bool> {
        let Some(key) = e.link_key() else {
            return Ok(false);
        };
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        match links.get_mut(&key) {
            Some(group) if !group.failed => {
                self.clear(dir.as_raw_fd(), name, path)?;
                if group.link(dir.as_raw_fd(), name) {
                    group
                        .linked
                        .push((dir.clone(), name.clone(), path.to_path_buf()));
                    return Ok(true);
                }
                // The first member may be gone: the caller writes a copy.
            }
            Some(_) => {}
            None => {
                links.insert(key, LinkGroup::new(dir, name, path));
            }
        }
        Ok(false)
    }

    /// With `--overwrite`, remove whatever is at `name`.
    fn clear(&self, dir: RawFd, name: &CString, path: &Path) -> Result<()> {
        if self.opts.overwrite && meta::stat_at(dir, name).is_ok() {
            remove_at(dir, name).map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }

    fn symlink(&self, dir: &Arc<OwnedFd>, e: &Entry, path: &Path) -> Result<()> {
        let io_err = |err| Error::io(path, err);
        let name = cstr(&e.name).map_err(io_err)?;
        let target = cstr(&e.target).map_err(io_err)?;
        self.clear(dir.as_raw_fd(), &name, path)?;
        if unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) } < 0 {
            return Err(io_err(io::Error::last_os_error()));
        }
        self.counts.other.fetch_add(1, Relaxed);
        self.apply_meta(dir.as_raw_fd(), &e.name, e, path, None);
        Ok(())
    }

    fn special(&self, dir: &Arc<OwnedFd>, e: &Entry, path: &Path) -> Result<()> {
        let io_err = |err| Error::io(path, err);
        let name = cstr(&e.name).map_err(io_err)?;
        if self.link_to_group(dir, e, &name, path)? {
            self.counts.other.fetch_add(1, Relaxed);
            return Ok(());
        }
        self.clear(dir.as_raw_fd(), &name, path)?;
        let mode = meta::mode_type(e.kind) | 0o600;
        if unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, e.rdev as libc::dev_t) } < 0
        {
            return Err(io_err(io::Error::last_os_error()));
        }
        self.counts.other.fetch_add(1, Relaxed);
        self.apply_meta(dir.as_raw_fd(), &e.name, e, path, None);
        Ok(())
    }

    /// Pool side: content, then metadata through the descriptor.
    fn write_file(&self, job: Job) {
        match self.write_content(&job) {
            Ok(n) => {
                self.counts.files.fetch_add(1, Relaxed);
                self.counts.bytes.fetch_add(n, Relaxed);
                self.progress.file_done(&job.path, n);
                self.apply_meta(
                    job.dir.as_raw_fd(),
                    &job.entry.name,
                    &job.entry,
                    &job.path,
                    Some(job.fd.as_raw_fd()),
                );
            }
            Err(e) => {
                // Never leave a file that looks restored but holds wrong bytes.
                if let Ok(name) = cstr(&job.entry.name) {
                    self.defer_unlink(&job.dir, name);
                }
                self.warn(with_path(e, &job.path));
                self.unlink_group(&job);
            }
        }
    }

    /// The content of `job` failed: if it is the first member of a hard-link
    /// group, take back the links already made to it, naming each.
    fn unlink_group(&self, job: &Job) {
        let Some(key) = job.entry.link_key() else {
            return;
        };
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let Some(group) = links.get_mut(&key).filter(|g| g.path == job.path) else {
            return;
        };
        group.failed = true;
        for (dir, name, path) in std::mem::take(&mut group.linked) {
            self.defer_unlink(&dir, name);
            self.counts.files.fetch_sub(1, Relaxed);
            let why = format!(
                "not restored: a hard link of {}, which failed",
                job.path.display()
            );
            self.warn(Error::io(&path, io::Error::other(why)));
        }
    }

    /// Remove a failed file once every directory's metadata is in place (the
    /// pool runs behind the walk, which has already set the directory's times
    /// and perhaps a read-only mode).
    fn defer_unlink(&self, dir: &Arc<OwnedFd>, name: CString) {
        self.doomed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((dir.clone(), name));
    }

    /// The deferred removals, keeping each directory's restored mode and times.
    fn unlink_doomed(&self) {
        let doomed = std::mem::take(&mut *self.doomed.lock().unwrap_or_else(|p| p.into_inner()));
        for (dir, name) in doomed {
            let d = dir.as_raw_fd();
            let Ok(st) = meta::stat_fd(d) else { continue };
            if unsafe { libc::unlinkat(d, name.as_ptr(), 0) } < 0 {
                // A read-only directory of our own: open it up for a moment.
                unsafe { libc::fchmod(d, (st.st_mode & 0o7777) | 0o300) };
                unsafe { libc::unlinkat(d, name.as_ptr(), 0) };
                unsafe { libc::fchmod(d, st.st_mode & 0o7777) };
            }
            let ts = [
                libc::timespec {
                    tv_sec: st.st_atime,
                    tv_nsec: st.st_atime_nsec,
                },
                libc::timespec {
                    tv_sec: st.st_mtime,
                    tv_nsec: st.st_mtime_nsec,
                },
            ];
            unsafe { libc::futimens(d, ts.as_ptr()) };
        }
    }

    fn write_content(&self, job: &Job) -> Result<u64> {
        let fd = job.fd.as_raw_fd();
        let mut offset = 0u64;
        let mut written = 0u64;
        for ext in &job.entry.extents {
            if let Extent::Data { id, len } = ext {
                let data = self.repo.read_data(id, *len)?;
                if data.len() != *len as usize {
                    return Err(Error::corrupt(
                        format!("blob {}", id.short()),
                        "length differs from the tree",
                    ));
                }
                write_all_at(fd, &data, offset).map_err(|e| Error::io(&job.path, e))?;
                written += data.len() as u64;
                self.progress.bytes_read(data.len() as u64);
            }
            offset += ext.len();
        }
        if unsafe { libc::ftruncate64(fd, job.entry.size as i64) } < 0 {
            return Err(Error::io(&job.path, io::Error::last_os_error()));
        }
        Ok(written)
    }

    /// Owner, mode, xattrs, times. Through `fd` for regular files; by name in
    /// `dir` for the rest.
    fn apply_meta(&self, dir: RawFd, name: &[u8], e: &Entry, path: &Path, fd: Option<RawFd>) {
        let Ok(cname) = cstr(name) else { return };
        let (uid, gid) = if self.opts.numeric_owner {
            (e.uid, e.gid)
        } else {
            (
                self.names.uid(&e.user).unwrap_or(e.uid),
                self.names.gid(&e.group).unwrap_or(e.gid),
            )
        };
        let owner = match fd {
            Some(fd) => cvt(unsafe { libc::fchown(fd, uid, gid) }),
            None => meta::set_owner_at(dir, &cname, uid, gid),
        };
        if let Err(err) = owner {
            if err.raw_os_error() == Some(libc::EPERM) && !self.root {
                self.counts.owner_denied.fetch_add(1, Relaxed);
            } else {
                self.warn(Error::io(path, err));
            }
        }
        if e.kind != Kind::Symlink {
            let r = match fd {
                Some(fd) => cvt(unsafe { libc::fchmod(fd, e.mode) }),
                None => meta::set_mode_at(dir, &cname, e.mode),
            };
            if let Err(err) = r {
                self.warn(Error::io(path, err));
            }
        }
        for x in &e.xattrs {
            let r = match fd {
                Some(fd) => set_xattr_fd(fd, x),
                None => meta::set_xattr_at(dir, name, x),
            };
            if let Err(err) = r {
                match err.raw_os_error() {
                    // Expected without root; as root it is a real loss.
                    Some(libc::EPERM) | Some(libc::ENOTSUP) | Some(libc::EACCES) if !self.root => {
                        self.counts.xattr_denied.fetch_add(1, Relaxed);
                    }
                    _ => self.warn(Error::io(
                        path,
                        io::Error::new(
                            err.kind(),
                            format!("xattr {}: {err}", String::from_utf8_lossy(&x.name)),
                        ),
                    )),
                }
            }
        }
        let times = match fd {
            Some(fd) => {
                let ts = [timespec(e.atime), timespec(e.mtime)];
                cvt(unsafe { libc::futimens(fd, ts.as_ptr()) })
            }
            None => meta::set_times_at(dir, &cname, e.atime, e.mtime),
        };
        if let Err(err) = times {
            self.warn(Error::io(path, err));
        }
    }
}

fn timespec(t: crate::format::tree::Time) -> libc::timespec {
    libc::timespec {
        tv_sec: t.sec,
        tv_nsec: t.nsec as i64,
    }
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn set_xattr_fd(fd: RawFd, x: &Xattr) -> io::Result<()> {
    let name = cstr(&x.name)?;
    cvt(unsafe { libc::fsetxattr(fd, name.as_ptr(), x.value.as_ptr().cast(), x.value.len(), 0) })
}

fn write_all_at(fd: RawFd, mut data: &[u8], mut offset: u64) -> io::Result<()> {
    while !data.is_empty() {
        let n = unsafe { libc::pwrite64(fd, data.as_ptr().cast(), data.len(), offset as i64) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
        offset += n as u64;
    }
    Ok(())
}

/// Remove `name` in `dir`, recursively if it is a directory.
fn remove_at(dir: RawFd, name: &CString) -> io::Result<()> {
    if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if !matches!(err.raw_os_error(), Some(libc::EISDIR) | Some(libc::EPERM)) {
        return Err(err);
    }
    let sub = meta::open_dir_at(dir, name)?;
    for child in meta::read_dir(sub.as_raw_fd())? {
        remove_at(sub.as_raw_fd(), &cstr(&child.name)?)?;
    }
    cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) })
}

/// Name the file an error concerns, for errors that do not already.
fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Corrupt { object, reason } => Error::Corrupt {
            object: format!("{} ({object})", path.display()),
            reason,
        },
        Error::Io { .. } => e,
        other => Error::InvalidInput(format!("{}: {other}", path.display())),
    }
}

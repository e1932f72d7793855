//! File metadata through directory file descriptors and `*at` calls.
//!
//! Every path operation here is relative to an open directory, so names are raw
//! bytes and paths may be longer than `PATH_MAX`. Extended attributes are
//! read as `/proc/self/fd/<dirfd>/<name>`, which is short whatever the depth
//! and works for symlinks (`l*xattr` do not follow the last component).
//!
//! Metadata is *set* only through a descriptor ([`Handle`]) of the file
//! itself, never by name: a name can be swapped for a symlink between the
//! call that made the file and the one that sets its mode.

use crate::format::tree::{Entry, Kind, Time, Xattr};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A C string of a name or path (names from trees never hold NUL).
pub fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

/// Open a path as a directory (following symlinks in it).
pub fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str().as_bytes())?;
    let fd = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open the directory `name` in `dir`, never following a symlink.
pub fn open_dir_at(dir: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    open_at(dir, name, libc::O_RDONLY | libc::O_DIRECTORY)
}

/// Open `name` in `dir` for reading without following a symlink, and without
/// touching its atime where permitted.
pub fn open_at(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // O_NONBLOCK: a FIFO swapped in after the stat must not hang the reader.
    let base = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    let mut fd = unsafe { libc::openat(dir, name.as_ptr(), base | libc::O_NOATIME) };
    if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
        fd = unsafe { libc::openat(dir, name.as_ptr(), base) };
    }
    let fd = cvt(fd)?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One directory entry name with the type `getdents` reported.
pub struct DirName {
    pub name: Vec<u8>,
    /// `DT_*`, `DT_UNKNOWN` when the file system does not say.
    pub d_type: u8,
}

/// The names in an open directory, without `.` and `..`, in no order.
pub fn read_dir(dir: RawFd) -> io::Result<Vec<DirName>> {
    let dup = cvt(unsafe { libc::fcntl(dir, libc::F_DUPFD_CLOEXEC, 0) })?;
    let dirp = unsafe { libc::fdopendir(dup) };
    if dirp.is_null() {
        let e = io::Error::last_os_error();
        unsafe { libc::close(dup) };
        return Err(e);
    }
    unsafe { libc::rewinddir(dirp) };
    let mut out = Vec::new();
    let res = loop {
        unsafe { *libc::__errno_location() = 0 };
        let ent = unsafe { libc::readdir64(dirp) };
        if ent.is_null() {
            let errno = unsafe { *libc::__errno_location() };
            break if errno == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(errno))
            };
        }
        let ent = unsafe { &*ent };
        let name = unsafe { CStr::from_ptr(ent.d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            out.push(DirName {
                name: name.to_vec(),
                d_type: ent.d_type,
            });
        }
    };
    unsafe { libc::closedir(dirp) };
    res.map(|_| out)
}

/// `lstat` of `name` in `dir`.
pub fn stat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat64> {
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstatat64(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

/// `lstat` of `name` in `dir` that never mounts an automount point there
/// (what a backup that stays on one file system may ask of a directory it
/// does not open).
pub fn stat_at_no_automount(dir: RawFd, name: &CStr) -> io::Result<libc::stat64> {
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    let flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT;
    cvt(unsafe { libc::fstatat64(dir, name.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

/// `fstat` of an open file.
pub fn stat_fd(fd: RawFd) -> io::Result<libc::stat64> {
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstat64(fd, &mut st) })?;
    Ok(st)
}

/// The target of the symlink `name` in `dir`, as bytes.
pub fn read_link_at(dir: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if (n as usize) < buf.len() {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        buf.resize(buf.len() * 4, 0);
    }
}

/// The `/proc/self/fd` path of `name` inside `dir`.
pub fn proc_path(dir: RawFd, name: &[u8]) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{dir}/").into_bytes();
    p.extend_from_slice(name);
    cstr(&p)
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENOSYS))
}

/// Whether `name` in `dir` may have extended attributes. Most entries have
/// none, and `listxattrat` (Linux 6.13) answers that without a path lookup
/// through `/proc/self/fd`, which is most of the cost of a metadata-only walk.
/// Where the call is missing or refused, or fails, the answer is "maybe", and
/// the caller reads them the usual way.
pub fn has_xattrs(dir: RawFd, name: &CStr) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    const SYS_LISTXATTRAT: libc::c_long = 465;
    static MISSING: AtomicBool = AtomicBool::new(false);
    if MISSING.load(Relaxed) {
        return true;
    }
    let n = unsafe {
        libc::syscall(
            SYS_LISTXATTRAT,
            dir,
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            std::ptr::null_mut::<libc::c_char>(),
            0usize,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error().raw_os_error();
        if matches!(
            e,
            Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EINVAL)
        ) {
            MISSING.store(true, Relaxed);
        }
    }
    n != 0
}

/// Every extended attribute of `name` in `dir` (not following a symlink),
/// sorted by name.
pub fn xattrs_at(dir: RawFd, name: &[u8]) -> io::Result<Vec<Xattr>> {
    if !has_xattrs(dir, &cstr(name)?) {
        return Ok(Vec::new());
    }
    let path = proc_path(dir, name)?;
    let mut list = vec![0u8; 1024];
    let len = loop {
        let n = unsafe { libc::llistxattr(path.as_ptr(), list.as_mut_ptr().cast(), list.len()) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => {
                let need = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
                list.resize((need.max(0) as usize).max(list.len() * 2), 0);
            }
            _ if unsupported(&e) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    };
    let mut out = Vec::new();
    for xname in list[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = cstr(xname)?;
        let mut value = vec![0u8; 256];
        let mut gone = false;
        loop {
            let n = unsafe {
                libc::lgetxattr(
                    path.as_ptr(),
                    cname.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            if n >= 0 {
                value.truncate(n as usize);
                break;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) => {
                    let need = unsafe {
                        libc::lgetxattr(path.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0)
                    };
                    value.resize((need.max(0) as usize).max(value.len() * 2), 0);
                }
                Some(libc::ENODATA) => {
                    gone = true; // removed meanwhile
                    break;
                }
                _ => return Err(e),
            }
        }
        if gone {
            continue;
        }
        out.push(Xattr {
            name: xname.to_vec(),
            value,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The kind of a `st_mode`, or `None` for something unknown.
pub fn kind_of(mode: u32) -> Option<Kind> {
    Some(match mode & libc::S_IFMT {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        libc::S_IFIFO => Kind::Fifo,
        libc::S_IFSOCK => Kind::Socket,
        libc::S_IFCHR => Kind::CharDev,
        libc::S_IFBLK => Kind::BlockDev,
        _ => return None,
    })
}

/// The `S_IF*` bits of a kind.
pub fn mode_type(kind: Kind) -> u32 {
    match kind {
        Kind::File => libc::S_IFREG,
        Kind::Dir => libc::S_IFDIR,
        Kind::Symlink => libc::S_IFLNK,
        Kind::Fifo => libc::S_IFIFO,
        Kind::Socket => libc::S_IFSOCK,
        Kind::CharDev => libc::S_IFCHR,
        Kind::BlockDev => libc::S_IFBLK,
    }
}

/// An entry with everything `stat` says (no xattrs, content or names yet).
pub fn entry_from_stat(name: Vec<u8>, st: &libc::stat64) -> Option<Entry> {
    let mut e = Entry::new(name, kind_of(st.st_mode)?);
    fill_from_stat(&mut e, st);
    Some(e)
}

/// Overwrite an entry's stat-derived fields.
pub fn fill_from_stat(e: &mut Entry, st: &libc::stat64) {
    e.mode = st.st_mode & 0o7777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    e.size = if e.kind == Kind::Dir {
        0
    } else {
        st.st_size as u64
    };
    e.mtime = Time {
        sec: st.st_mtime,
        nsec: st.st_mtime_nsec as u32,
    };
    e.atime = Time {
        sec: st.st_atime,
        nsec: st.st_atime_nsec as u32,
    };
    e.ctime = Time {
        sec: st.st_ctime,
        nsec: st.st_ctime_nsec as u32,
    };
    e.dev = st.st_dev;
    e.ino = st.st_ino;
    e.nlink = st.st_nlink;
    e.rdev = if matches!(e.kind, Kind::CharDev | Kind::BlockDev) {
        st.st_rdev
    } else {
        0
    };
}

/// An open file that metadata is set through: never a name, so nothing can
/// be swapped in between the check and the change.
#[derive(Clone, Copy, Debug)]
pub enum Handle {
    /// A regular file or directory opened for I/O (`fchown`, `fchmod`,
    /// `fsetxattr`, `futimens`).
    Open(RawFd),
    /// An `O_PATH | O_NOFOLLOW` descriptor of a symlink, FIFO, socket or
    /// device, which cannot (or must not) be opened for I/O: calls with
    /// `AT_EMPTY_PATH`, else through `/proc/self/fd/N`, whose last step
    /// lands on the descriptor's own inode and follows nothing further.
    Path(RawFd),
}

impl Handle {
    fn fd(self) -> RawFd {
        match self {
            Handle::Open(fd) | Handle::Path(fd) => fd,
        }
    }

    /// `/proc/self/fd/N` of the descriptor.
    fn proc(self) -> io::Result<CString> {
        cstr(format!("/proc/self/fd/{}", self.fd()).as_bytes())
    }
}

/// Open `name` in `dir` as `O_PATH | O_NOFOLLOW`: a handle on the entry itself
/// (a symlink is not followed) that reads and writes nothing.
pub fn open_path_at(dir: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let fd = cvt(unsafe { libc::openat(dir, name.as_ptr(), flags) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Set the owner of the file behind `h`.
pub fn set_owner(h: Handle, uid: u32, gid: u32) -> io::Result<()> {
    let r = match h {
        Handle::Open(fd) => unsafe { libc::fchown(fd, uid, gid) },
        Handle::Path(fd) => unsafe {
            libc::fchownat(
                fd,
                c"".as_ptr(),
                uid,
                gid,
                libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            )
        },
    };
    cvt(r).map(drop)
}

/// Set the permission bits of the file behind `h`. A symlink's are set only
/// where the kernel and file system can (`fchmodat2`, Linux 6.6, and few
/// file systems): `Ok` otherwise, as Linux ignores them.
pub fn set_mode(h: Handle, mode: u32, symlink: bool) -> io::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    const SYS_FCHMODAT2: libc::c_long = 452;
    static NO_FCHMODAT2: AtomicBool = AtomicBool::new(false);
    let fd = match h {
        Handle::Open(fd) => return cvt(unsafe { libc::fchmod(fd, mode) }).map(drop),
        Handle::Path(fd) => fd,
    };
    if !NO_FCHMODAT2.load(Relaxed) {
        let nofollow = if symlink {
            libc::AT_SYMLINK_NOFOLLOW
        } else {
            0
        };
        let flags = libc::AT_EMPTY_PATH | nofollow;
        let r = unsafe { libc::syscall(SYS_FCHMODAT2, fd, c"".as_ptr(), mode, flags) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOSYS) => NO_FCHMODAT2.store(true, Relaxed),
            // A kernel whose fchmodat2 does not take AT_EMPTY_PATH.
            Some(libc::EINVAL) => {}
            Some(libc::EOPNOTSUPP) if symlink => return Ok(()),
            _ => return Err(e),
        }
    }
    if symlink {
        return Ok(());
    }
    cvt(unsafe { libc::chmod(h.proc()?.as_ptr(), mode) }).map(drop)
}

/// Set access and modification times of the file behind `h`.
pub fn set_times(h: Handle, atime: Time, mtime: Time) -> io::Result<()> {
    let ts = [timespec(atime), timespec(mtime)];
    let fd = match h {
        Handle::Open(fd) => return cvt(unsafe { libc::futimens(fd, ts.as_ptr()) }).map(drop),
        Handle::Path(fd) => fd,
    };
    // AT_EMPTY_PATH since Linux 5.8; before, EINVAL.
    let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW;
    if unsafe { libc::utimensat(fd, c"".as_ptr(), ts.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EINVAL) {
        return Err(e);
    }
    let path = h.proc()?;
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), ts.as_ptr(), 0) }).map(drop)
}

/// Set one extended attribute of the file behind `h`.
pub fn set_xattr(h: Handle, x: &Xattr) -> io::Result<()> {
    let name = cstr(&x.name)?;
    let (value, len) = (x.value.as_ptr().cast(), x.value.len());
    let r = match h {
        Handle::Open(fd) => unsafe { libc::fsetxattr(fd, name.as_ptr(), value, len, 0) },
        Handle::Path(_) => unsafe {
            libc::setxattr(h.proc()?.as_ptr(), name.as_ptr(), value, len, 0)
        },
    };
    cvt(r).map(drop)
}

/// A tree time as a `timespec`.
pub fn timespec(t: Time) -> libc::timespec {
    libc::timespec {
        tv_sec: t.sec,
        tv_nsec: t.nsec as i64,
    }
}

/// Cached uid/gid to name lookups, and back.
#[derive(Default)]
pub struct Names {
    users: Mutex<HashMap<u32, String>>,
    groups: Mutex<HashMap<u32, String>>,
    uids: Mutex<HashMap<String, Option<u32>>>,
    gids: Mutex<HashMap<String, Option<u32>>>,
}

impl Names {
    pub fn user(&self, uid: u32) -> String {
        let mut m = self.users.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_default()
            })
            .clone()
    }

    pub fn group(&self, gid: u32) -> String {
        let mut m = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map(|g| g.name)
                    .unwrap_or_default()
            })
            .clone()
    }

    /// The uid of user `name` on this system.
    pub fn uid(&self, name: &str) -> Option<u32> {
        if name.is_empty() {
            return None;
        }
        let mut m = self.uids.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(name.to_string()).or_insert_with(|| {
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw())
        })
    }

    /// The gid of group `name` on this system.
    pub fn gid(&self, name: &str) -> Option<u32> {
        if name.is_empty() {
            return None;
        }
        let mut m = self.gids.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(name.to_string()).or_insert_with(|| {
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
        })
    }
}

/// The raw fd of anything that has one.
pub fn raw(fd: &impl AsRawFd) -> RawFd {
    fd.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn metadata_is_set_through_a_path_handle_on_the_entry_itself() {
        let t = tempfile::tempdir().unwrap();
        let dir = open_dir_path(t.path()).unwrap();
        let d = dir.as_raw_fd();
        std::fs::write(t.path().join("target"), b"x").unwrap();
        std::os::unix::fs::symlink("target", t.path().join("link")).unwrap();
        let fifo = t.path().join("fifo");
        assert_eq!(
            unsafe { libc::mkfifo(cstr(fifo.as_os_str().as_bytes()).unwrap().as_ptr(), 0o600) },
            0
        );
        let (atime, mtime) = (
            Time {
                sec: 1_000,
                nsec: 1,
            },
            Time {
                sec: 2_000,
                nsec: 2,
            },
        );
        let x = Xattr {
            name: b"trusted.t".to_vec(),
            value: b"v".to_vec(),
        };
        for (name, symlink) in [("link", true), ("fifo", false)] {
            let fd = open_path_at(d, &cstr(name.as_bytes()).unwrap()).unwrap();
            let h = Handle::Path(fd.as_raw_fd());
            set_owner(h, 1234, 5678).unwrap();
            set_mode(h, 0o751, symlink).unwrap();
            set_xattr(h, &x).unwrap();
            set_times(h, atime, mtime).unwrap();
            let md = std::fs::symlink_metadata(t.path().join(name)).unwrap();
            assert_eq!((md.uid(), md.gid()), (1234, 5678), "{name}");
            assert_eq!((md.mtime(), md.mtime_nsec()), (2_000, 2), "{name}");
            assert_eq!((md.atime(), md.atime_nsec()), (1_000, 1), "{name}");
            if !symlink {
                assert_eq!(md.mode() & 0o7777, 0o751);
            }
            let got = xattrs_at(d, name.as_bytes()).unwrap();
            assert_eq!(got, vec![x.clone()], "{name}");
        }
        // The symlink's target was not touched.
        let target = std::fs::metadata(t.path().join("target")).unwrap();
        assert_eq!((target.uid(), target.mode() & 0o777 != 0o751), (0, true));
        assert!(xattrs_at(d, b"target").unwrap().is_empty());
    }
}

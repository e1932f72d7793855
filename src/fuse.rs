//! The fuser adapter: each handler calls [`Vfs`], then replies once. The only
//! module that uses fuser.
//!
//! Errors become errnos in one place, `Adapter::errno`: damage (`Corrupt`)
//! and repository I/O failures are `EIO` with one log line naming the file;
//! `NotFound` is `ENOENT`; every write is `EROFS`. Nothing here panics.
//!
//! Caching: everything inside a snapshot is immutable, so its attributes and
//! names (also names that do not exist) are cached by the kernel for a day,
//! its files keep their pages between opens (`FOPEN_KEEP_CACHE`, the default
//! once `open` answers ENOSYS) and its directory listings are cached
//! (`FOPEN_CACHE_DIR`). The virtual directories change when snapshots are
//! added and are cached for a second.
//!
//! Round trips: listings carry attributes (`readdirplus`), and `open`,
//! `flush` and `release` are turned off after their first call (in a mount of
//! one snapshot `opendir` and `releasedir` too), so reading a file whose
//! directory was listed costs one `read` per MiB, and none at all for the
//! small files pushed into the page cache ahead of an in-order reader
//! (`notify_store`, see [`crate::vfs::push`]).

use crate::error::Error;
use crate::format::tree::{Kind, Time};
use crate::vfs::{attr, mountpoint, Attr, Caller, DirItem, Vfs, Whence};
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow,
    WriteFlags,
};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the kernel may cache what lies inside a snapshot.
const STABLE_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long it may cache the virtual directories, which grow with new snapshots.
const VIRTUAL_TTL: Duration = Duration::from_secs(1);
/// Read-ahead asked of the kernel for the mount, in KiB: sequential readers
/// then send requests of up to a MiB.
const READ_AHEAD_KIB: u32 = 1024;

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Let users other than the one mounting in (the kernel still checks the
    /// stored modes and owners).
    pub allow_other: bool,
    /// Threads serving requests.
    pub threads: usize,
    /// What `mount` and `df` show as the source.
    pub fsname: String,
}

/// Mount `vfs` on `mountpoint` and serve it until it is unmounted.
/// `prepare` runs once mounted, before any request is served (requests wait
/// in the kernel meanwhile); if it fails, the mount is undone and its error
/// returned. What it returns is kept until the mount ends, and `ready` is
/// called with it once the mount is usable.
pub fn serve<T, E>(
    vfs: Arc<Vfs>,
    mountpoint: &Path,
    opts: &MountOptions,
    prepare: impl FnOnce() -> std::result::Result<T, E>,
    ready: impl FnOnce(&T),
) -> std::result::Result<(), E>
where
    E: From<Error>,
{
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::NoAtime,
        MountOption::DefaultPermissions,
        MountOption::FSName(opts.fsname.clone()),
    ];
    config.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    let adapter = Adapter {
        vfs: vfs.clone(),
        mountpoint: mountpoint.to_path_buf(),
        logged: Mutex::new(HashSet::new()),
        no_open: false,
        no_opendir: false,
    };
    let session =
        fuser::Session::new(adapter, mountpoint, &config).map_err(|e| Error::io(mountpoint, e))?;
    vfs.push_to(Arc::new(Notify(session.notifier())))?;
    // Off the path to the first request: only later reads need it.
    let mnt = mountpoint.to_path_buf();
    let _ = std::thread::Builder::new().spawn(move || {
        if let Ok(Some(m)) = mountpoint::find(&mnt) {
            let _ = mountpoint::set_read_ahead(&m.dev, READ_AHEAD_KIB);
        }
    });
    let prepared = match prepare() {
        Ok(p) => p,
        Err(e) => {
            // Processes may be waiting inside the mount (a `stat` of its
            // root): detach it lazily first, so the plain unmount that
            // dropping the session does cannot fail with EBUSY and leave a
            // dead mount behind. Their requests then fail.
            let _ = mountpoint::detach(mountpoint);
            drop(session);
            return Err(e);
        }
    };
    ready(&prepared);
    session.run().map_err(|e| Error::io(mountpoint, e))?;
    drop(prepared);
    Ok(())
}

/// Pushed file contents go to the kernel's page cache (`notify_store`).
struct Notify(fuser::Notifier);

impl crate::vfs::push::Sink for Notify {
    fn store(&self, ino: u64, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.store(INodeNo(ino), offset, data)
    }
}

struct Adapter {
    vfs: Arc<Vfs>,
    mountpoint: PathBuf,
    /// Failures already logged: each is logged once, however often the
    /// kernel retries it.
    logged: Mutex<HashSet<String>>,
    /// The kernel can do without `open` (it said so at init).
    no_open: bool,
    /// The kernel can do without `opendir` (it said so at init).
    no_opendir: bool,
}

impl Adapter {
    /// The one mapping from library errors to errnos.
    fn errno(&self, e: &Error) -> Errno {
        match e {
            Error::NotFound(_) => Errno::ENOENT,
            Error::ReadOnly(_) => Errno::EROFS,
            Error::InvalidInput(_) => Errno::EINVAL,
            Error::UnsupportedVersion(_) => {
                self.log(e);
                Errno::EIO
            }
            Error::Locked(_) => Errno::EAGAIN,
            Error::Interrupted(_) => Errno::EINTR,
            Error::Corrupt { .. } | Error::Io { .. } => {
                self.log(e);
                Errno::EIO
            }
        }
    }

    /// One line on stderr per distinct failure, naming the file in the mount.
    fn log(&self, e: &Error) {
        let text = e.to_string();
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.len() > 10_000 {
            logged.clear();
        }
        if logged.insert(text.clone()) {
            let sep = if text.starts_with('/') { "" } else { ": " };
            eprintln!("rewind: {}{sep}{text}", self.mountpoint.display());
        }
    }

    /// How long a name in directory `parent` may be cached: names in the
    /// virtual directories change (a snapshot is removed, or gets its id
    /// appended when another shares its second).
    fn entry_ttl(&self, parent: INodeNo) -> Duration {
        if self.vfs.is_stable(parent.0) {
            STABLE_TTL
        } else {
            VIRTUAL_TTL
        }
    }

    fn read_only(&self) -> Errno {
        self.errno(&Error::ReadOnly("snapshots cannot be changed".into()))
    }
}

fn ttl(a: &Attr) -> Duration {
    if a.stable {
        STABLE_TTL
    } else {
        VIRTUAL_TTL
    }
}

fn system_time(t: Time) -> SystemTime {
    let nanos = Duration::from_nanos(t.nsec.min(999_999_999) as u64);
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::from_secs(t.sec as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + nanos
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: system_time(a.atime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.mtime),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

/// Who a request comes from, for extended attributes: the request carries no
/// capabilities, and uid 0 is the caller that has `CAP_SYS_ADMIN` in practice.
fn caller(req: &Request) -> Caller {
    if req.uid() == 0 {
        Caller::Privileged
    } else {
        Caller::Unprivileged
    }
}

/// An xattr reply: the size when asked for it, `ERANGE` when it does not fit.
fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Enforce stored ACLs along with the modes; look up names in
        // parallel; list directories with attributes, so a walk followed by
        // opens (`find | xargs cat`, `cp -r`) needs no lookup per file.
        let wanted = [
            InitFlags::FUSE_POSIX_ACL,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_DO_READDIRPLUS,
        ];
        for flag in wanted {
            let _ = config.add_capabilities(flag);
        }
        self.no_open = config
            .capabilities()
            .contains(InitFlags::FUSE_NO_OPEN_SUPPORT);
        self.no_opendir = config
            .capabilities()
            .contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.vfs.lookup(parent.0, name.as_bytes()) {
            Ok(a) => reply.entry_with_ttls(
                &ttl(&a),
                &self.entry_ttl(parent),
                &file_attr(&a),
                Generation(0),
            ),
            // Inside a snapshot a missing name stays missing: let the kernel
            // remember that (inode 0 is a negative entry).
            Err(Error::NotFound(_)) if self.vfs.is_stable(parent.0) => {
                let mut none =
                    file_attr(&attr::synthetic_dir(0, 0, 0, (0, 0), Time::default(), true));
                none.ino = INodeNo(0);
                reply.entry(&STABLE_TTL, &none, Generation(0));
            }
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.vfs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.vfs.getattr(ino.0) {
            Ok(a) => reply.attr(&ttl(&a), &file_attr(&a)),
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.vfs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(self.read_only());
        }
        match self.vfs.open(ino.0) {
            // Reads need no handle: ENOSYS tells the kernel to skip `open`
            // and `release` from now on (keeping its page cache), saving two
            // round trips per file.
            Ok(()) if self.no_open => reply.error(Errno::ENOSYS),
            Ok(()) => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
            ),
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.vfs.read(ino.0, offset, size as usize) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    /// Nothing to flush on a read-only file system; ENOSYS tells the kernel
    /// to stop asking, which saves a round trip on every `close`.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // A mount of one snapshot never changes: ENOSYS tells the kernel to
        // skip `opendir` and `releasedir` from now on and to cache every
        // listing, saving two round trips per directory. A mount of the
        // whole repository answers, so its virtual directories stay fresh.
        if self.no_opendir && self.vfs.is_stable(crate::vfs::ROOT) {
            return reply.error(Errno::ENOSYS);
        }
        let flags = if self.vfs.is_stable(ino.0) {
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR
        } else {
            FopenFlags::empty()
        };
        reply.opened(FileHandle(0), flags);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut add = |i: DirItem<'_>| {
            reply.add(
                INodeNo(i.ino),
                i.next,
                file_type(i.kind),
                OsStr::from_bytes(i.name),
            )
        };
        match self.vfs.readdir(ino.0, offset, &mut add) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    /// A listing with each entry's attributes, which also counts as a lookup
    /// of each (the kernel will `forget` them).
    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let mut failed = None;
        let mut counted = Vec::new();
        let mut add = |i: DirItem<'_>| {
            let name = OsStr::from_bytes(i.name);
            if i.name == b"." || i.name == b".." {
                // Never linked by the kernel, so not counted.
                let a = attr::synthetic_dir(i.ino, 0o555, 1, (0, 0), Time::default(), false);
                return reply.add(
                    INodeNo(i.ino),
                    i.next,
                    name,
                    &Duration::ZERO,
                    &file_attr(&a),
                    Generation(0),
                );
            }
            match self.vfs.lookup(ino.0, i.name) {
                Ok(a) => {
                    let ttl = ttl(&a).min(self.entry_ttl(ino));
                    let full = reply.add(
                        INodeNo(a.ino),
                        i.next,
                        name,
                        &ttl,
                        &file_attr(&a),
                        Generation(0),
                    );
                    match full {
                        true => self.vfs.forget(a.ino, 1), // not sent after all
                        false => counted.push(a.ino),
                    }
                    full
                }
                // A virtual directory can change between listing and lookup
                // (a snapshot forgotten, or renamed `T-<id>` when a second
                // one lands in the same second): leave that name out rather
                // than failing the whole listing.
                Err(crate::error::Error::NotFound(_)) => false,
                Err(e) => {
                    failed = Some(e);
                    true
                }
            }
        };
        let res = self.vfs.readdir(ino.0, offset, &mut add);
        match res.err().or(failed) {
            None => reply.ok(),
            Some(e) => {
                for i in counted {
                    self.vfs.forget(i, 1);
                }
                reply.error(self.errno(&e))
            }
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, self.vfs.inodes() as u64, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.vfs.getxattr(ino.0, name.as_bytes(), caller(req)) {
            Ok(Some(v)) => reply_xattr(reply, size, &v),
            Ok(None) => reply.error(Errno::NO_XATTR),
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.vfs.listxattr(ino.0, caller(req)) {
            Ok(names) => reply_xattr(reply, size, &names),
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        if mask.contains(fuser::AccessFlags::W_OK) {
            return reply.error(self.read_only());
        }
        reply.ok();
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let whence = match whence {
            libc::SEEK_DATA => Whence::Data,
            libc::SEEK_HOLE => Whence::Hole,
            _ => return reply.error(Errno::EINVAL),
        };
        if offset < 0 {
            return reply.error(Errno::ENXIO);
        }
        match self.vfs.seek(ino.0, offset as u64, whence) {
            Ok(Some(o)) => reply.offset(o as i64),
            Ok(None) => reply.error(Errno::ENXIO),
            Err(e) => reply.error(self.errno(&e)),
        }
    }

    // Every write: EROFS (the kernel refuses most of them first, since the
    // mount is read-only).

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(self.read_only());
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(self.read_only());
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(self.read_only());
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(self.read_only());
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(self.read_only());
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(self.read_only());
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(self.read_only());
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(self.read_only());
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(self.read_only());
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(self.read_only());
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(self.read_only());
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(self.read_only());
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(self.read_only());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_1970_and_after_2038_survive() {
        for (sec, nsec) in [
            (0, 0),
            (-1, 5),
            (-86_400, 999_999_999),
            (4_102_444_800, 2),
            (1_500_000_000, 987_654_321),
        ] {
            let st = system_time(Time { sec, nsec });
            let back = match st.duration_since(UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
                Err(e) => {
                    let d = e.duration();
                    let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
                    if n == 0 {
                        (-s, 0)
                    } else {
                        (-s - 1, 1_000_000_000 - n)
                    }
                }
            };
            assert_eq!(back, (sec, nsec));
        }
    }
}

//! Restore: a snapshot, or a path in it, back onto disk with all its metadata.
//!
//! # Pipeline
//!
//! One thread walks the trees (`walk`) and creates every entry (directories,
//! symlinks, devices, hard links, and regular files opened empty); a pool
//! (`write`) writes file contents and then their metadata through the open
//! descriptors. A directory's own metadata is applied when the walk leaves
//! it, after its children are made, so its mtime and a read-only mode stick.
//! Files whose content failed are removed at the end, each directory keeping
//! its restored times.
//!
//! # Only through descriptors restore opened itself
//!
//! The target is opened once; every later call is relative to a descriptor
//! of a directory restore made or entered (`O_DIRECTORY | O_NOFOLLOW`), so a
//! name in the target swapped for a symlink while restore runs leads nowhere
//! outside it. Regular files are created `O_EXCL | O_NOFOLLOW`; symlinks,
//! FIFOs, sockets and devices are opened `O_PATH | O_NOFOLLOW` right after
//! they are made and checked to be what was made (type, no second link). Owner,
//! mode, extended attributes and times are then set through that descriptor
//! ([`meta::Handle`]), never by name. A directory whose descriptor was closed
//! is opened again only as the same inode (`dirs`).
//!
//! # Order per entry
//!
//! Create, content, owner (which clears setuid bits), mode, extended
//! attributes (after chown, which clears `security.capability`), times last.
//! A file whose owner could not be set gets no setuid bit, one whose group
//! could not be set no setgid bit: a user restoring someone else's setuid
//! program must not end up with a setuid program of their own.
//!
//! # Memory and open files
//!
//! Linear in depth and small: per level of the walk, one decoded tree and a
//! name; at most `dirs::WINDOW` directories open besides the target; files
//! queued for the pool are bounded (`queue_len`: 16 per writer from a local
//! repository; from a remote one up to 8192, or half the open files the
//! process may have), and hold at most 2^20 extents (40 MiB) unless a single
//! file has more (a planned extent's location counts as two more).
//! Hard-link groups and failed files keep a `dirs::DirNode` (a name per
//! level), not a descriptor.
//!
//! # Planned downloads
//!
//! From a remote repository, each file's first reads (up to 8 MiB of stored
//! data, in at most 4 windows of 2 MiB) are planned when the walk queues
//! it, before it reaches the pool: the backend's read-ahead
//! ([`crate::backend::readahead`]) downloads them on several connections
//! while the pool writes the files queued before, and keeps them until the
//! file is written or has failed. The walk waits when the plans hold their
//! budget (64 MiB); the pool never does: a writer plans the rest of a
//! bigger file a stretch at a time, each when the one before is half read,
//! in a budget of their own (48 MiB) and only when it has room at once
//! (`write::Stretches`), so a file
//! whose data lies in short runs among other files' data downloads the
//! windows its runs are in, not the 8 MiB after each. A planned blob is
//! read at the location its plan found ([`Repository::read_data_at`]), any
//! other through [`Repository::read_data`]; both decode and check it.
//!
//! # Filters, `--delete`, `--dry-run`
//!
//! `--include` and `--exclude` pick entries by name or snapshot path
//! (`select`). With `delete`, each directory restored is then cleared of
//! entries the snapshot does not have (`remove`); excluded entries are
//! neither restored nor deleted. A dry run walks the same way and reports
//! ([`Changes`]) what it would create, replace and delete, changing nothing.

mod apply;
mod dirs;
mod links;
mod remove;
mod select;
mod walk;
mod write;

use crate::error::{Error, Result};
use crate::format::tree::{Entry, Kind};
use crate::meta::{self, Names};
use crate::progress::Progress;
use crate::repo::content::Budget;
use crate::repo::Repository;
use dirs::DirNode;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// How to restore.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    /// Only entries matching one of these (and the directories above them).
    pub includes: Vec<String>,
    /// Not entries matching one of these, nor anything below them.
    pub excludes: Vec<String>,
    /// Replace what is in the target instead of refusing a non-empty target.
    pub overwrite: bool,
    /// Remove what is in the target and not in the snapshot (implies
    /// `overwrite`; the restored entry must be a directory).
    pub delete: bool,
    /// Report what would change ([`Changes`]), change nothing.
    pub dry_run: bool,
    /// Directories never removed or emptied, by `delete` or in the way of an
    /// entry (the repository being read, when it is in the target).
    pub protect: Vec<PathBuf>,
    /// Use stored uid/gid as they are, without mapping names.
    pub numeric_owner: bool,
    pub threads: usize,
}

/// What a restore did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreOutcome {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    pub bytes: u64,
    /// Entries that were in the target and were replaced.
    pub replaced: u64,
    /// Entries removed from the target (`delete`, and what replaced
    /// directories held).
    pub deleted: u64,
    /// Entries that could not be restored (each reported as a warning).
    pub errors: u64,
    /// Entries whose owner could not be set (not root).
    pub owner_denied: u64,
    /// Files restored without their setuid or setgid bit, as their owner or
    /// group could not be set.
    pub setid_dropped: u64,
    /// Extended attributes that could not be set.
    pub xattr_denied: u64,
}

/// What a restore does to one path of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Made where nothing was.
    Create,
    /// Made in place of what was there (a directory there goes whole).
    Replace,
    /// Removed: not in the snapshot (`delete`), or inside a replaced directory.
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Replace => "replace",
            Action::Delete => "delete",
        }
    }
}

/// Told of each change to the target as it is made, or instead of making it
/// in a dry run; parents before their children, except that a deleted
/// directory comes after its contents. Directories that exist and are kept
/// are not reported.
pub trait Changes: Sync {
    fn change(&self, _action: Action, _path: &Path, _kind: Kind) {}
}

/// Reports no changes.
pub struct NoChanges;

impl Changes for NoChanges {}

#[derive(Default)]
struct Counts {
    files: AtomicU64,
    dirs: AtomicU64,
    other: AtomicU64,
    bytes: AtomicU64,
    replaced: AtomicU64,
    deleted: AtomicU64,
    errors: AtomicU64,
    owner_denied: AtomicU64,
    setid_dropped: AtomicU64,
    xattr_denied: AtomicU64,
}

/// What the walk and the pool share.
struct Restorer<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    /// `overwrite` or `delete`.
    overwrite: bool,
    filter: select::Filter,
    progress: &'a dyn Progress,
    changes: &'a dyn Changes,
    names: Names,
    counts: Counts,
    links: links::Links,
    /// Files to remove once the pool is done: their content failed, or the
    /// restore was interrupted before it was written.
    doomed: Mutex<Vec<dirs::Place>>,
    /// Running as root: every owner and xattr must then be restored.
    root: bool,
    /// Extents of the files queued for the pool (see [`QUEUED_EXTENTS`]).
    queued: Budget,
    /// Something was left undone because a stop was requested.
    interrupted: AtomicBool,
    /// The identities of [`RestoreOptions::protect`].
    protect: Vec<dirs::Id>,
}

/// Restore `entry` (found at `snap_path` in the snapshot) into `opts.target`:
/// a directory's children go into the target, anything else becomes
/// `target/<name>`. Returns [`Error::Interrupted`] when a stop was requested
/// ([`crate::interrupt`]), after removing files not fully written and setting
/// the metadata of the directories it was in.
pub fn restore(
    repo: &Repository,
    entry: &Entry,
    snap_path: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    changes: &dyn Changes,
) -> Result<RestoreOutcome> {
    if opts.delete && entry.kind != Kind::Dir {
        return Err(Error::InvalidInput(format!(
            "--delete needs a directory, and {} in the snapshot is not one",
            snap_path.display()
        )));
    }
    let overwrite = opts.overwrite || opts.delete;
    let r = Restorer {
        repo,
        opts,
        overwrite,
        filter: select::Filter::new(&opts.includes, &opts.excludes)?,
        progress,
        changes,
        names: Names::default(),
        counts: Counts::default(),
        links: Default::default(),
        doomed: Default::default(),
        root: unsafe { libc::geteuid() } == 0,
        interrupted: AtomicBool::new(false),
        queued: Budget::new(QUEUED_EXTENTS),
        protect: opts
            .protect
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino())
            })
            .collect(),
    };
    let target = open_target(&opts.target, overwrite, opts.dry_run)?;
    let root = match &target {
        Some(fd) => {
            let st = meta::stat_fd(fd.as_raw_fd()).map_err(|e| Error::io(&opts.target, e))?;
            DirNode::root(dirs::identity(&st))
        }
        None => DirNode::root((0, 0)),
    };
    let threads = if opts.dry_run { 0 } else { opts.threads.max(1) };
    let (tx, rx) = crossbeam_channel::bounded::<write::Job>(queue_len(repo, threads));
    std::thread::scope(|s| {
        let mut writers = 0;
        for _ in 0..threads {
            let rx = rx.clone();
            let r = &r;
            let writer = std::thread::Builder::new()
                .name("restore-write".into())
                .spawn_scoped(s, move || {
                    for job in rx {
                        r.write_file(job);
                    }
                });
            match writer {
                Ok(_) => writers += 1,
                // Fewer writers only slow the restore (and say nothing);
                // none would stall it.
                Err(e) if writers == 0 => return r.warn(Error::io(&opts.target, e)),
                Err(_) => break,
            }
        }
        drop(rx);
        let dup = target.as_ref().map(|fd| dirs::dup(fd.as_raw_fd()));
        match dup.transpose() {
            Ok(fd) => walk::run(&r, entry, snap_path, root, fd, tx),
            Err(e) => r.warn(Error::io(&opts.target, e)),
        }
    });
    if let Some(fd) = &target {
        r.unlink_doomed(fd.as_raw_fd());
        if entry.kind == Kind::Dir && entry.name != b"/" && !opts.dry_run {
            // A restored subdirectory takes its own metadata onto the target,
            // made or found empty or overwritten: the target *is* that directory.
            r.apply_meta(
                meta::Handle::Open(fd.as_raw_fd()),
                entry,
                &opts.target,
                None,
            );
        }
    }
    if r.interrupted.load(Relaxed) {
        return Err(crate::interrupt::check()
            .err()
            .unwrap_or(Error::Interrupted(libc::SIGINT)));
    }
    let c = &r.counts;
    Ok(RestoreOutcome {
        files: c.files.load(Relaxed),
        dirs: c.dirs.load(Relaxed),
        other: c.other.load(Relaxed),
        bytes: c.bytes.load(Relaxed),
        replaced: c.replaced.load(Relaxed),
        deleted: c.deleted.load(Relaxed),
        errors: c.errors.load(Relaxed),
        owner_denied: c.owner_denied.load(Relaxed),
        setid_dropped: c.setid_dropped.load(Relaxed),
        xattr_denied: c.xattr_denied.load(Relaxed),
    })
}

/// Files queued for the pool, at most (each holds its descriptor). From a
/// remote repository the queue is as long as open files allow, up to
/// [`REMOTE_QUEUE`]: files are planned when queued ([`Restorer::plan`]), and
/// small files need many in the queue to plan far enough ahead to keep the
/// connections busy; the plans' own budget bounds their memory.
fn queue_len(repo: &Repository, threads: usize) -> usize {
    let local = threads.max(1) * 16;
    if repo.is_local() {
        return local;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return local;
    }
    let spare = usize::try_from(lim.rlim_cur)
        .unwrap_or(usize::MAX)
        .saturating_sub(256)
        / 2;
    spare.clamp(local, REMOTE_QUEUE.max(local))
}

/// Files queued for the pool from a remote repository, at most. Small
/// files plan little each (a few share a window), and the queue is what
/// bounds how far ahead they plan: 4096 left the server idle while the
/// writers worked through a source tree (restore from s3s-fs 4.58-4.89 s,
/// against 4.05-4.47 s at 8192; 9872, this machine's limit, was no
/// better).
const REMOTE_QUEUE: usize = 8192;

/// Extents of the files queued for the pool, at most (40 bytes each) before
/// the walk waits, unless nothing is queued: a long queue of files made of
/// many chunks (a big file whose chunks are all one blob) stays small.
const QUEUED_EXTENTS: u64 = 1 << 20;

/// Open the target once (a symlink given as the target is followed, as `cd`
/// would), creating it if needed; refuse a non-empty one unless
/// overwriting. A dry run creates nothing: `None` for a missing target.
fn open_target(target: &Path, overwrite: bool, dry_run: bool) -> Result<Option<OwnedFd>> {
    let open = || meta::open_dir_path(target);
    let fd = match open() {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            if dry_run {
                return Ok(None);
            }
            std::fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
            open().map_err(|e| Error::io(target, e))?
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(Error::InvalidInput(format!(
                "target {} is not a directory",
                target.display()
            )))
        }
        Err(e) => return Err(Error::io(target, e)),
    };
    if !overwrite {
        let names = meta::read_dir(fd.as_raw_fd()).map_err(|e| Error::io(target, e))?;
        if !names.is_empty() {
            return Err(Error::InvalidInput(format!(
                "target {} is not empty; restore into an empty directory or pass --overwrite",
                target.display()
            )));
        }
    }
    Ok(Some(fd))
}

impl Restorer<'_> {
    /// A file of `n` extents is being queued: wait while the queue holds
    /// [`QUEUED_EXTENTS`] (the pool takes files off it without waiting).
    fn queue_extents(&self, n: usize) {
        self.queued.acquire(n as u64);
    }

    /// A file of `n` extents left the queue.
    fn dequeue_extents(&self, n: usize) {
        self.queued.release(n as u64);
    }

    fn warn(&self, e: Error) {
        self.counts.errors.fetch_add(1, Relaxed);
        self.progress.warn(&e);
    }

    fn change(&self, action: Action, path: &Path, kind: Kind) {
        match action {
            Action::Replace => self.counts.replaced.fetch_add(1, Relaxed),
            Action::Delete => self.counts.deleted.fetch_add(1, Relaxed),
            Action::Create => 0,
        };
        self.changes.change(action, path, kind);
    }
}

/// Name the file an error concerns, for errors that do not already.
fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Corrupt { object, reason } => Error::Corrupt {
            object: format!("{} ({object})", path.display()),
            reason,
        },
        Error::Io { path: ref p, .. } if p == path => e,
        Error::Interrupted(_) => e,
        // The repository's object that could not be read (a download that
        // failed): the file it was for, then the object and why.
        Error::Io { .. } => Error::io(path, io::Error::other(e.to_string())),
        other => Error::InvalidInput(format!("{}: {other}", path.display())),
    }
}

/// The last OS error as a `Result`.
fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

//! A snapshot tree beside a live directory: the walk behind `rewind diff SNAP
//! LIVE_PATH` and `rewind verify`.
//!
//! ```text
//! directory job: load tree ─ list dir (O_NOATIME) ─ merge by name ─ stat ─ xattrs ─ readlink
//!                └─ metadata compared here; subdirectories and files that need reading become jobs
//! file job:      open (O_NOATIME) ─ hole layout (SEEK_DATA) ─ hash each extent ─ compare ids
//! afterwards:    hard-link groups of both sides compared
//! ```
//!
//! A pool of threads runs both kinds of job from one bounded [`Queue`]: a
//! metadata walk is bound by `stat` and `listxattr` calls, so it spreads over
//! the cores (and, with a cold cache, keeps several inode reads in flight);
//! reading files spreads over them too. When the queue is full the submitter
//! runs the job itself, so memory and open directories stay bounded.

use super::entry::{meta_details, Rules};
use super::links::{self, Member};
use super::live::{check_content, filled_holes, live_entry, Wanted};
use super::queue::Queue;
use super::trees::size_detail;
use super::{join, Category, CategorySet, Change, Detail, Report};
use crate::error::{Error, Result};
use crate::format::id::TreeId;
use crate::format::tree::{Entry, Extent, Kind, Tree};
use crate::meta::{self, cstr, Names};
use crate::progress::Progress;
use crate::repo::walk::{walk, Flow, Visit};
use crate::repo::Repository;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// When to read a live file's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentCheck {
    /// Always (verify, `diff --content`).
    Always,
    /// Only when size is the same but mtime or ctime is not (diff): a file
    /// whose size, mtime and ctime all match is taken as unchanged, as the
    /// backup does; a different size is a change without reading.
    WhenStatDiffers,
}

/// How to compare a snapshot with a live tree.
#[derive(Clone, Copy, Debug)]
pub struct LiveOptions {
    /// Categories not compared (and not read: ignoring `content` reads no bytes).
    pub ignore: CategorySet,
    pub content: ContentCheck,
    /// Owners match by number only, not also by name.
    pub numeric_owner: bool,
    /// Compare the live path's own metadata too, or only what is inside it
    /// (the snapshot root, which stores no metadata of its own).
    pub compare_root: bool,
    /// Reader threads.
    pub threads: usize,
}

/// Compare `entry` (at `snap_path` in a snapshot) with the live `path`:
/// with `compare_root`, `path` is the live counterpart of `entry`; without,
/// `entry` is a directory and `path` holds its contents.
pub fn compare_live(
    repo: &Repository,
    entry: &Entry,
    snap_path: &[u8],
    path: &Path,
    opts: &LiveOptions,
    progress: &dyn Progress,
) -> Result<Report> {
    let w = Walker {
        repo,
        opts,
        rules: Rules {
            ignore: opts.ignore,
            numeric_owner: opts.numeric_owner,
            nlink: false,
        },
        want: Wanted {
            xattrs: !(opts.ignore.contains(Category::Xattr) && opts.ignore.contains(Category::Acl)),
        },
        progress,
        names: Names::default(),
        changes: Mutex::default(),
        members: Mutex::default(),
        entries: AtomicU64::new(0),
        trees_read: AtomicU64::new(0),
        files_hashed: AtomicU64::new(0),
        bytes_hashed: AtomicU64::new(0),
    };
    let root = open_root(path, opts.compare_root)?;
    let threads = opts.threads.max(1);
    let queue = Queue::new(threads * 16);
    let mut buf = Vec::new();
    let q = &queue;
    match root {
        Root::Entry(dir, name) => w.pair(&dir, entry, &name, snap_path.to_vec(), q, &mut buf),
        Root::Contents(dir) if entry.kind == Kind::Dir => w.submit(
            Job::Dir(entry.clone(), dir, snap_path.to_vec()),
            q,
            &mut buf,
        ),
        Root::Contents(_) => w.error(snap_path.to_vec(), entry.kind, not_a_dir(path)),
    }
    std::thread::scope(|s| {
        for _ in 0..threads {
            let w = &w;
            s.spawn(move || {
                let mut buf = Vec::new();
                while let Some(job) = q.next() {
                    w.run(job, q, &mut buf);
                    q.finished();
                }
            });
        }
    });
    Ok(w.finish())
}

/// Where the walk starts: the parent and name of the live counterpart, or the
/// directory whose contents are compared.
enum Root {
    Entry(Arc<OwnedFd>, Vec<u8>),
    Contents(Arc<OwnedFd>),
}

fn open_root(path: &Path, compare_root: bool) -> Result<Root> {
    let open = |p: &Path| {
        meta::open_dir_path(p)
            .map(Arc::new)
            .map_err(|e| Error::io(p, e))
    };
    if !compare_root {
        return open(path).map(Root::Contents);
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            Ok(Root::Entry(open(parent)?, name.as_bytes().to_vec()))
        }
        _ => Ok(Root::Entry(open(path)?, b".".to_vec())),
    }
}

fn not_a_dir(path: &Path) -> io::Error {
    io::Error::other(format!("{} is not a directory", path.display()))
}

/// Work for the pool.
enum Job {
    /// A snapshot directory, the live directory open beside it, its path.
    Dir(Entry, Arc<OwnedFd>, Vec<u8>),
    File(FileJob),
}

/// A regular file whose bytes or holes need reading.
struct FileJob {
    dir: Arc<OwnedFd>,
    name: Vec<u8>,
    path: Vec<u8>,
    snap: Entry,
    /// `(st_dev, st_ino)` as the walker saw it: the file must still be that one.
    id: (u64, u64),
    details: Vec<Detail>,
    hash: bool,
    holes: bool,
}

struct Walker<'a> {
    repo: &'a Repository,
    opts: &'a LiveOptions,
    rules: Rules,
    want: Wanted,
    progress: &'a dyn Progress,
    names: Names,
    changes: Mutex<Vec<Change>>,
    members: Mutex<Vec<(Member, Kind)>>,
    entries: AtomicU64,
    trees_read: AtomicU64,
    files_hashed: AtomicU64,
    bytes_hashed: AtomicU64,
}

impl Walker<'_> {
    /// Queue a job, or run it here when the queue is full.
    fn submit(&self, job: Job, q: &Queue<Job>, buf: &mut Vec<u8>) {
        if let Some(job) = q.offer(job) {
            self.run(job, q, buf);
        }
    }

    fn run(&self, job: Job, q: &Queue<Job>, buf: &mut Vec<u8>) {
        match job {
            Job::Dir(snap, fd, path) => self.dir(&snap, &fd, &path, q, buf),
            Job::File(f) => self.read_file(f, buf),
        }
    }

    fn wants(&self, c: Category) -> bool {
        !self.opts.ignore.contains(c)
    }

    fn push(&self, path: Vec<u8>, a: Option<Kind>, b: Option<Kind>, details: Vec<Detail>) {
        if details.is_empty() && a == b {
            return;
        }
        let change = Change {
            path,
            a,
            b,
            details,
        };
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(change);
    }

    /// The live side of `path` could not be read: not proven, so a difference.
    fn error(&self, path: Vec<u8>, kind: Kind, err: impl std::fmt::Display) {
        let d = Detail::new(Category::Error, "", err.to_string());
        self.push(path, Some(kind), Some(kind), vec![d]);
    }

    fn load(&self, e: &Entry) -> Result<Tree> {
        match e.subtree {
            Some(id) => {
                self.trees_read.fetch_add(1, Relaxed);
                self.repo.load_tree(&id)
            }
            None => Ok(Tree::default()),
        }
    }

    /// A snapshot directory beside the live directory open as `fd`.
    fn dir(&self, snap: &Entry, fd: &Arc<OwnedFd>, path: &[u8], q: &Queue<Job>, buf: &mut Vec<u8>) {
        let tree = match self.load(snap) {
            Ok(t) => t,
            Err(e) => return self.error(path.to_vec(), snap.kind, e),
        };
        let mut live = match meta::read_dir(fd.as_raw_fd()) {
            Ok(n) => n,
            Err(e) => return self.error(path.to_vec(), snap.kind, e),
        };
        live.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let (mut s, mut l) = (tree.entries.iter().peekable(), live.iter().peekable());
        loop {
            let order = match (s.peek(), l.peek()) {
                (None, None) => return,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => x.name.cmp(&y.name),
            };
            match order {
                std::cmp::Ordering::Less => {
                    let e = s.next().expect("peeked");
                    self.removed(e, join(path, &e.name));
                }
                std::cmp::Ordering::Greater => {
                    let n = l.next().expect("peeked");
                    self.added(fd, &n.name, n.d_type, join(path, &n.name));
                }
                std::cmp::Ordering::Equal => {
                    let (e, n) = (s.next().expect("peeked"), l.next().expect("peeked"));
                    self.pair(fd, e, &n.name, join(path, &n.name), q, buf);
                }
            }
        }
    }

    /// `snap` beside the live entry `name` in `dir`.
    fn pair(
        &self,
        dir: &Arc<OwnedFd>,
        snap: &Entry,
        name: &[u8],
        path: Vec<u8>,
        q: &Queue<Job>,
        buf: &mut Vec<u8>,
    ) {
        self.entries.fetch_add(1, Relaxed);
        let (mut live, st) = match live_entry(dir.as_raw_fd(), name, self.want) {
            Ok(x) => x,
            Err(e) => return self.error(path, snap.kind, e),
        };
        // Names matter (and are looked up) only where the numbers differ.
        if live.uid != snap.uid {
            live.user = self.names.user(live.uid);
        }
        if live.gid != snap.gid {
            live.group = self.names.group(live.gid);
        }
        if live.kind != snap.kind {
            self.push(path.clone(), Some(snap.kind), Some(live.kind), Vec::new());
            self.removed_below(snap, &path);
            if live.kind == Kind::Dir {
                self.added_below(dir, name, &path);
            }
            return;
        }
        let mut details = Vec::new();
        meta_details(snap, &live, &self.rules, &mut details);
        if live.kind != Kind::Dir
            && self.wants(Category::Links)
            && (snap.link_key().is_some() || live.nlink > 1)
        {
            let member = Member {
                path: path.clone(),
                snap: snap.link_key(),
                live: (live.nlink > 1).then_some((st.st_dev, st.st_ino)),
            };
            let mut m = self.members.lock().unwrap_or_else(|e| e.into_inner());
            m.push((member, live.kind));
        }
        match live.kind {
            Kind::File => self.file(dir, snap, &live, &st, path, details, q, buf),
            Kind::Dir => {
                self.push(path.clone(), Some(Kind::Dir), Some(Kind::Dir), details);
                match cstr(name).and_then(|c| meta::open_dir_at(dir.as_raw_fd(), &c)) {
                    Ok(fd) => self.submit(Job::Dir(snap.clone(), Arc::new(fd), path), q, buf),
                    Err(e) => self.error(path, Kind::Dir, e),
                }
            }
            k => self.push(path, Some(k), Some(k), details),
        }
    }

    /// Decide whether a file's bytes and holes need reading; if so, hand it
    /// to the pool, which reports it.
    #[allow(clippy::too_many_arguments)]
    fn file(
        &self,
        dir: &Arc<OwnedFd>,
        snap: &Entry,
        live: &Entry,
        st: &libc::stat64,
        path: Vec<u8>,
        mut details: Vec<Detail>,
        q: &Queue<Job>,
        buf: &mut Vec<u8>,
    ) {
        let k = Some(Kind::File);
        if snap.size != live.size {
            if self.wants(Category::Content) {
                details.push(size_detail(snap.size, live.size));
            }
            return self.push(path, k, k, details);
        }
        let has_holes = snap
            .extents
            .iter()
            .any(|e| matches!(e, Extent::Hole { len } if *len > 0));
        let read = match self.opts.content {
            ContentCheck::Always => true,
            ContentCheck::WhenStatDiffers => snap.mtime != live.mtime || snap.ctime != live.ctime,
        };
        let hash = read && self.wants(Category::Content);
        let holes = read && has_holes && self.wants(Category::Holes);
        if !hash && !holes {
            return self.push(path, k, k, details);
        }
        let job = FileJob {
            dir: dir.clone(),
            name: live.name.clone(),
            path,
            snap: snap.clone(),
            id: (st.st_dev, st.st_ino),
            details,
            hash,
            holes,
        };
        self.submit(Job::File(job), q, buf);
    }

    /// Pool side: holes, then bytes; one change with everything found.
    fn read_file(&self, mut job: FileJob, buf: &mut Vec<u8>) {
        let res = (|| -> io::Result<()> {
            let c = cstr(&job.name)?;
            let flags = libc::O_RDONLY | libc::O_NONBLOCK;
            let fd = meta::open_at(job.dir.as_raw_fd(), &c, flags)?;
            let st = meta::stat_fd(fd.as_raw_fd())?;
            if (st.st_dev, st.st_ino) != job.id || st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(io::Error::other("replaced while being compared"));
            }
            if job.holes {
                let filled = filled_holes(fd.as_raw_fd(), &job.snap.extents, st.st_blksize as u64)?;
                if filled > 0 {
                    let holes: u64 = super::holes(&job.snap.extents).iter().map(|h| h.1).sum();
                    job.details.push(Detail::new(
                        Category::Holes,
                        format!("{holes} bytes of holes"),
                        format!("{filled} bytes of them allocated"),
                    ));
                }
            }
            if job.hash {
                let on_read = |n| self.progress.bytes_read(n);
                let hasher = self.repo.hasher();
                let r = check_content(fd.as_raw_fd(), &job.snap.extents, hasher, buf, &on_read)?;
                self.files_hashed.fetch_add(1, Relaxed);
                self.bytes_hashed.fetch_add(r.bytes_read, Relaxed);
                self.progress
                    .file_done(Path::new(OsStr::from_bytes(&job.path)), r.bytes_read);
                if let Some(off) = r.differs_at {
                    job.details.push(Detail::new(
                        Category::Content,
                        format!("bytes from offset {off}"),
                        "other bytes",
                    ));
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            job.details
                .push(Detail::new(Category::Error, "", e.to_string()));
        }
        let k = Some(Kind::File);
        self.push(job.path, k, k, job.details);
    }

    /// An entry only in the snapshot, and everything below it.
    fn removed(&self, e: &Entry, path: Vec<u8>) {
        self.entries.fetch_add(1, Relaxed);
        self.push(path.clone(), Some(e.kind), None, Vec::new());
        self.removed_below(e, &path);
    }

    /// Everything below `e` (at `path`), only in the snapshot: the tree
    /// walker's order (depth first, name order, depth bounded by memory); a
    /// tree that cannot be read is reported and its directory left out.
    fn removed_below(&self, e: &Entry, path: &[u8]) {
        struct Removed<'w, 'a>(&'w Walker<'a>);
        impl Visit for Removed<'_, '_> {
            type Error = Error;
            fn enter(&mut self, path: &[u8], id: TreeId) -> Result<Option<Tree>> {
                self.0.trees_read.fetch_add(1, Relaxed);
                match self.0.repo.load_tree(&id) {
                    Ok(tree) => Ok(Some(tree)),
                    Err(err) => {
                        let at = if path.is_empty() { b"/" } else { path };
                        self.0.error(at.to_vec(), Kind::Dir, err);
                        Ok(None)
                    }
                }
            }
            fn entry(&mut self, path: &[u8], e: &mut Entry) -> Result<Flow> {
                self.0.entries.fetch_add(1, Relaxed);
                self.0.push(path.to_vec(), Some(e.kind), None, Vec::new());
                Ok(Flow::Next)
            }
        }
        if let (Kind::Dir, Some(root)) = (e.kind, e.subtree) {
            // The walk joins names with `/`: the root's own path is "".
            let prefix = path.strip_suffix(b"/").unwrap_or(path);
            // Its visitor never fails.
            let _ = walk(root, prefix, &mut Removed(self));
        }
    }

    /// An entry only in the live tree, and everything below it.
    fn added(&self, dir: &OwnedFd, name: &[u8], d_type: u8, path: Vec<u8>) {
        if self.added_one(dir, name, d_type, &path) == Some(Kind::Dir) {
            self.added_below(dir, name, &path);
        }
    }

    /// Report entry `name` of `dir` (at `path`), only in the live tree:
    /// its kind, or `None` when it cannot be read (reported).
    fn added_one(&self, dir: &OwnedFd, name: &[u8], d_type: u8, path: &[u8]) -> Option<Kind> {
        self.entries.fetch_add(1, Relaxed);
        let kind = match kind_of_dtype(d_type) {
            Some(k) => k,
            None => {
                let st = cstr(name).and_then(|c| meta::stat_at(dir.as_raw_fd(), &c));
                match st.map(|st| meta::kind_of(st.st_mode)) {
                    Ok(Some(k)) => k,
                    Ok(None) => {
                        self.error(path.to_vec(), Kind::File, "unknown file type");
                        return None;
                    }
                    Err(e) => {
                        self.error(path.to_vec(), Kind::File, e);
                        return None;
                    }
                }
            }
        };
        self.push(path.to_vec(), None, Some(kind), Vec::new());
        Some(kind)
    }

    /// Everything below directory `name` of `dir` (at `path`), only in the
    /// live tree: depth first in name order, with an explicit stack of the
    /// directories it is in (each holds its descriptor while it is listed).
    fn added_below(&self, dir: &OwnedFd, name: &[u8], path: &[u8]) {
        let mut path = path.to_vec();
        let mut stack = Vec::new();
        stack.extend(self.added_listing(dir, name, &path));
        while let Some((fd, rest, len)) = stack.last_mut() {
            let len = *len;
            let Some(n) = rest.next() else {
                stack.pop();
                continue;
            };
            path.truncate(len);
            push_name(&mut path, &n.name);
            let below = match self.added_one(fd, &n.name, n.d_type, &path) {
                Some(Kind::Dir) => self.added_listing(fd, &n.name, &path),
                _ => None,
            };
            stack.extend(below);
        }
    }

    /// Directory `name` of `dir` (at `path`) opened, its names sorted, and
    /// the length of its path; a directory that cannot be listed is
    /// reported.
    fn added_listing(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        path: &[u8],
    ) -> Option<(OwnedFd, std::vec::IntoIter<meta::DirName>, usize)> {
        let res = cstr(name).and_then(|c| {
            let fd = meta::open_dir_at(dir.as_raw_fd(), &c)?;
            let names = meta::read_dir(fd.as_raw_fd())?;
            Ok((fd, names))
        });
        match res {
            Ok((fd, mut names)) => {
                names.sort_unstable_by(|a, b| a.name.cmp(&b.name));
                Some((fd, names.into_iter(), path.len()))
            }
            Err(e) => {
                self.error(path.to_vec(), Kind::Dir, e);
                None
            }
        }
    }

    /// Compare hard-link groups, then gather the report.
    fn finish(self) -> Report {
        let members = self.members.into_inner().unwrap_or_else(|e| e.into_inner());
        let (members, kinds): (Vec<Member>, Vec<Kind>) = members.into_iter().unzip();
        let mut changes = self.changes.into_inner().unwrap_or_else(|e| e.into_inner());
        for (i, detail) in links::differences(&members) {
            let k = Some(kinds[i]);
            changes.push(Change {
                path: members[i].path.clone(),
                a: k,
                b: k,
                details: vec![detail],
            });
        }
        let mut r = Report {
            changes,
            entries: self.entries.into_inner(),
            trees_read: self.trees_read.into_inner(),
            files_hashed: self.files_hashed.into_inner(),
            bytes_hashed: self.bytes_hashed.into_inner(),
        };
        r.finish();
        r
    }
}

fn kind_of_dtype(d: u8) -> Option<Kind> {
    Some(match d {
        libc::DT_REG => Kind::File,
        libc::DT_DIR => Kind::Dir,
        libc::DT_LNK => Kind::Symlink,
        libc::DT_FIFO => Kind::Fifo,
        libc::DT_SOCK => Kind::Socket,
        libc::DT_CHR => Kind::CharDev,
        libc::DT_BLK => Kind::BlockDev,
        _ => return None,
    })
}

/// `path` + `/` + `name`, as [`join`] makes it: no second `/` after the root.
fn push_name(path: &mut Vec<u8>, name: &[u8]) {
    if !path.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name);
}

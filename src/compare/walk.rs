//! A snapshot tree beside a live directory: the walk behind `rewind diff SNAP
//! LIVE_PATH` and `rewind verify`.
//!
//! ```text
//! the walk (this thread):  load tree ─ list dir (O_NOATIME) ─ merge by name ─ go into directories
//! pair job (the pool):     stat ─ xattrs ─ readlink ─ metadata compared
//! file job (the pool):     open (O_NOATIME) ─ hole layout (SEEK_DATA) ─ hash each extent ─ compare ids
//! afterwards:              hard-link groups of both sides compared
//! ```
//!
//! The walk is the tree walker's ([`crate::repo::walk::run`]) over pairs of
//! listings: a directory of the walk is a snapshot tree and the live
//! directory beside it, either of which may be absent (a directory on one
//! side only, or one that changed type, is walked against nothing, so what
//! is below it is reported as missing or extra by the same walk). Whether a
//! live entry is a directory to go into comes from the listing's `d_type`
//! (a `stat` where the file system does not say).
//!
//! A pool of threads runs the jobs the walk hands out from one bounded
//! [`Queue`]: comparing metadata is bound by `stat` and `listxattr` calls,
//! so it spreads over the cores (and, with a cold cache, keeps several inode
//! reads in flight); reading files spreads over them too. When the queue is
//! full the submitter runs the job itself, so memory stays bounded.

use super::entry::{meta_details, Rules};
use super::links::{self, Member};
use super::live::{check_content, filled_holes, live_entry, Wanted};
use super::queue::Queue;
use super::trees::size_detail;
use super::{Category, CategorySet, Change, Detail, Report};
use crate::error::{Error, Result};
use crate::format::id::TreeId;
use crate::format::tree::{Entry, Extent, Kind, Tree};
use crate::meta::{self, cstr, Names};
use crate::progress::Progress;
use crate::repo::walk::{self, Flow};
use crate::repo::Repository;
use std::cell::Cell;
use std::convert::Infallible;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
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
        queued_dirs: AtomicUsize::new(0),
        entries: AtomicU64::new(0),
        trees_read: AtomicU64::new(0),
        files_hashed: AtomicU64::new(0),
        bytes_hashed: AtomicU64::new(0),
    };
    let root = open_root(path, opts.compare_root)?;
    let threads = opts.threads.max(1);
    let queue = Queue::new(threads * 16);
    let q = &queue;
    std::thread::scope(|s| {
        let walking = q.hold();
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
        let mut walk = LiveWalk {
            w: &w,
            q,
            buf: Vec::new(),
            batch: Vec::new(),
            batch_dirs: 0,
            levels: Vec::new(),
            depth: 0,
        };
        let below = match root {
            Root::Entry(dir, name) => {
                let snap = Some(entry.clone());
                walk.step(Some(&dir), &name, snap, Some(0), snap_path.to_vec())
            }
            Root::Contents(dir) if entry.kind == Kind::Dir => {
                Some(LiveDir::new(entry.subtree, Some(dir)))
            }
            Root::Contents(_) => {
                w.error(snap_path.to_vec(), entry.kind, not_a_dir(path));
                None
            }
        };
        if let Some(below) = below {
            // The walk joins names with `/`: the root's own path is "".
            let prefix = snap_path.strip_suffix(b"/").unwrap_or(snap_path);
            let Ok(()) = walk::run(below, prefix, &mut walk);
        }
        walk.flush();
        drop(walking);
    });
    Ok(w.finish())
}

/// `fd` if it is the directory `id` names (`(st_dev, st_ino)`).
fn same_dir(fd: OwnedFd, id: (u64, u64)) -> io::Result<OwnedFd> {
    let st = meta::stat_fd(fd.as_raw_fd())?;
    if (st.st_dev, st.st_ino) == id {
        Ok(fd)
    } else {
        Err(io::Error::other("moved while being compared"))
    }
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
    /// Entries on both sides: each live one read and compared with the
    /// snapshot's; the number of distinct directories they hold counted in
    /// [`Walker::queued_dirs`].
    Pairs(Vec<Pair>, usize),
    /// A file to read, counted (1) or not (0) in [`Walker::queued_dirs`]
    /// for the directory it holds open.
    File(Box<FileJob>, usize),
}

/// An entry on both sides: the snapshot's, the live one's directory and
/// name, its path.
struct Pair {
    dir: Arc<OwnedFd>,
    snap: Entry,
    name: Vec<u8>,
    path: Vec<u8>,
}

/// Pairs handed to the pool in one job: a few hundred `stat` calls, not a
/// queue operation (and a thread woken) per entry or per directory.
const PAIRS_PER_JOB: usize = 128;

/// A directory of the walk: the snapshot's tree (`None`: nothing on that
/// side, or a directory stored without a tree) beside the live directory
/// open (`None`: only in the snapshot).
struct LiveDir {
    tree: Option<TreeId>,
    /// Taken by [`Walk::enter`]: the walk's frames hold no descriptor,
    /// [`LiveWalk::levels`] decides which stay open.
    fd: Cell<Option<Arc<OwnedFd>>>,
}

impl LiveDir {
    fn new(tree: Option<TreeId>, fd: Option<Arc<OwnedFd>>) -> LiveDir {
        LiveDir {
            tree,
            fd: Cell::new(fd),
        }
    }
}

/// A directory the walk is in, on the live side.
struct Level {
    /// Open while it is among the innermost [`OPEN_LEVELS`] live levels;
    /// else opened again, through `..` of the level below it, when the
    /// walk comes back to it.
    fd: Option<Arc<OwnedFd>>,
    /// `(st_dev, st_ino)` when opened: what is opened again must be it.
    id: (u64, u64),
    /// Its name in the level above (to open it again from there).
    name: Vec<u8>,
    /// It could not be opened again: the rest of it is not compared.
    lost: bool,
}

/// Live directories the walk keeps open, at most (besides those the pool's
/// jobs hold): a walk as deep as memory allows needs no descriptor per level.
const OPEN_LEVELS: usize = 32;

/// Live directories the pool's queued jobs (pairs to compare, files to read)
/// may hold open together, at most; past that the submitter does the job
/// itself.
const QUEUED_DIRS: usize = 64;

/// Distinct live directories in one pair job, at most.
const DIRS_PER_JOB: usize = 8;

/// One name of a merged listing: the snapshot's entry and the live
/// entry's `d_type`, each where that side has it; once visited, the
/// directory to go into below it.
struct Node {
    name: Vec<u8>,
    snap: Option<Entry>,
    live: Option<u8>,
    below: Option<LiveDir>,
}

/// The walk: lists and merges on this thread, hands the entries to
/// compare to the pool.
struct LiveWalk<'w, 'a> {
    w: &'w Walker<'a>,
    q: &'w Queue<Job>,
    buf: Vec<u8>,
    /// Pairs not handed to the pool yet, and how many directories they are in.
    batch: Vec<Pair>,
    batch_dirs: usize,
    /// The live side of each directory the walk is in, innermost last
    /// (directories only in the snapshot have none, and are all below
    /// those that have one).
    levels: Vec<Level>,
    /// Directories the walk is in, live or not.
    depth: usize,
}

impl LiveWalk<'_, '_> {
    /// The entry `name` of live directory `dir` (`None`: no live side),
    /// with `snap` and a live `d_type` where each side has it (0 when the
    /// file system does not say), at `path`: reported or handed to the
    /// pool; the directory to go into below it, if any.
    fn step(
        &mut self,
        dir: Option<&Arc<OwnedFd>>,
        name: &[u8],
        snap: Option<Entry>,
        live: Option<u8>,
        path: Vec<u8>,
    ) -> Option<LiveDir> {
        let w = self.w;
        let (dir, live) = match (dir, live) {
            (Some(dir), Some(d_type)) => (dir, d_type),
            _ => {
                // Only in the snapshot: it and everything below are missing.
                let snap = snap?;
                w.entries.fetch_add(1, Relaxed);
                w.push(path, Some(snap.kind), None, Vec::new());
                let tree = snap.subtree.filter(|_| snap.kind == Kind::Dir);
                return tree.map(|tree| LiveDir::new(Some(tree), None));
            }
        };
        let Some(snap) = snap else {
            // Only in the live tree: it and everything below are extra.
            return match w.added_one(dir, name, live, &path) {
                Some(Kind::Dir) => self.open(dir, name, path, None),
                _ => None,
            };
        };
        let live = match kind_of_dtype(live) {
            Some(k) => Some(k),
            None => cstr(name)
                .and_then(|c| meta::stat_at(dir.as_raw_fd(), &c))
                .ok()
                .and_then(|st| meta::kind_of(st.st_mode)),
        };
        let tree = snap.subtree.filter(|_| snap.kind == Kind::Dir);
        let is_dir = live == Some(Kind::Dir);
        self.pair_later(Pair {
            dir: dir.clone(),
            snap,
            name: name.to_vec(),
            path: path.clone(),
        });
        match (is_dir, tree) {
            (true, tree) => self.open(dir, name, path, tree),
            // No live directory (another type, or unreadable: the pair job
            // reports it): what was below it is missing.
            (false, Some(tree)) if live.is_some() => Some(LiveDir::new(Some(tree), None)),
            (false, _) => None,
        }
    }

    /// The innermost level opened again by its names from the nearest
    /// level above it that is open.
    fn reopen_by_names(&self) -> io::Result<OwnedFd> {
        let last = self.levels.len().saturating_sub(1);
        let from = self.levels[..last]
            .iter()
            .rposition(|l| l.fd.is_some())
            .ok_or_else(|| io::Error::other("no directory above it is open"))?;
        let base = self.levels[from].fd.clone().expect("found open");
        let mut fd: Option<OwnedFd> = None;
        for level in &self.levels[from + 1..=last] {
            let dir = fd.as_ref().map_or(base.as_raw_fd(), |f| f.as_raw_fd());
            fd = Some(meta::open_dir_at(dir, &cstr(&level.name)?)?);
        }
        fd.ok_or_else(|| io::Error::other("nothing to open"))
    }

    /// Hand `pair` to the pool with others.
    fn pair_later(&mut self, pair: Pair) {
        if !self
            .batch
            .last()
            .is_some_and(|p| Arc::ptr_eq(&p.dir, &pair.dir))
        {
            self.batch_dirs += 1;
        }
        self.batch.push(pair);
        if self.batch.len() >= PAIRS_PER_JOB || self.batch_dirs >= DIRS_PER_JOB {
            self.flush();
        }
    }

    /// Hand the pairs waiting to the pool, or compare them here when the
    /// pool's queued jobs hold [`QUEUED_DIRS`] directories already.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let pairs = std::mem::replace(&mut self.batch, Vec::with_capacity(PAIRS_PER_JOB));
        let dirs = std::mem::take(&mut self.batch_dirs);
        let w = self.w;
        if w.queued_dirs.load(Relaxed) + dirs > QUEUED_DIRS {
            w.run(Job::Pairs(pairs, 0), self.q, &mut self.buf);
        } else {
            w.queued_dirs.fetch_add(dirs, Relaxed);
            w.submit(Job::Pairs(pairs, dirs), self.q, &mut self.buf);
        }
    }

    /// Live directory `name` of `dir` opened, beside snapshot tree `tree`.
    fn open(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        path: Vec<u8>,
        tree: Option<TreeId>,
    ) -> Option<LiveDir> {
        match cstr(name).and_then(|c| meta::open_dir_at(dir.as_raw_fd(), &c)) {
            Ok(fd) => Some(LiveDir::new(tree, Some(Arc::new(fd)))),
            Err(e) => {
                self.w.error(path, Kind::Dir, e);
                None
            }
        }
    }
}

impl walk::Walk for LiveWalk<'_, '_> {
    type Dir = LiveDir;
    type List = Vec<Node>;
    type Node = Node;
    type Error = Infallible;

    fn name(n: &Node) -> &[u8] {
        &n.name
    }

    fn below(n: &Node) -> Option<LiveDir> {
        n.below.as_ref().map(|d| LiveDir::new(d.tree, d.fd.take()))
    }

    /// The snapshot's tree and the live directory, listed and merged by
    /// name; a side that cannot be read is reported and the directory not
    /// compared further.
    fn enter(
        &mut self,
        path: &[u8],
        dir: &LiveDir,
    ) -> std::result::Result<Option<Vec<Node>>, Infallible> {
        let w = self.w;
        let at = || {
            if path.is_empty() {
                b"/".to_vec()
            } else {
                path.to_vec()
            }
        };
        let tree = match dir.tree {
            Some(id) => {
                w.trees_read.fetch_add(1, Relaxed);
                match w.repo.load_tree(&id) {
                    Ok(t) => t,
                    Err(e) => {
                        w.error(at(), Kind::Dir, e);
                        return Ok(None);
                    }
                }
            }
            None => Tree::default(),
        };
        let fd = dir.fd.take();
        let mut live = match &fd {
            Some(fd) => match meta::read_dir(fd.as_raw_fd()) {
                Ok(n) => n,
                Err(e) => {
                    w.error(at(), Kind::Dir, e);
                    return Ok(None);
                }
            },
            None => Vec::new(),
        };
        live.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let mut out = Vec::with_capacity(tree.entries.len().max(live.len()));
        let (mut s, mut l) = (
            tree.entries.into_iter().peekable(),
            live.into_iter().peekable(),
        );
        loop {
            let order = match (s.peek(), l.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => x.name.cmp(&y.name),
            };
            let (snap, live) = match order {
                std::cmp::Ordering::Less => (s.next(), None),
                std::cmp::Ordering::Greater => (None, l.next()),
                std::cmp::Ordering::Equal => (s.next(), l.next()),
            };
            let (name, live) = match (&snap, live) {
                (_, Some(n)) => (n.name, Some(n.d_type)),
                (Some(e), None) => (e.name.clone(), None),
                (None, None) => unreachable!("an entry was peeked"),
            };
            out.push(Node {
                name,
                snap,
                live,
                below: None,
            });
        }
        self.depth += 1;
        if let Some(fd) = fd {
            let id = meta::stat_fd(fd.as_raw_fd()).map_or((0, 0), |st| (st.st_dev, st.st_ino));
            let name = path.rsplit(|&b| b == b'/').next().unwrap_or_default();
            self.levels.push(Level {
                fd: Some(fd),
                id,
                name: name.to_vec(),
                lost: false,
            });
            // The outermost level (where the walk started) stays open.
            match self.levels.len().checked_sub(OPEN_LEVELS + 1) {
                Some(far) if far > 0 => self.levels[far].fd = None,
                _ => {}
            }
        }
        Ok(Some(out))
    }

    fn entry(&mut self, path: &[u8], n: &mut Node) -> std::result::Result<Flow, Infallible> {
        // The live side is the innermost level while the walk is in live
        // directories, none once below them (only in the snapshot).
        let dir = match self.levels.last() {
            Some(l) if self.depth == self.levels.len() => {
                if l.lost {
                    return Ok(Flow::Leave);
                }
                l.fd.clone()
            }
            _ => None,
        };
        n.below = self.step(dir.as_ref(), &n.name, n.snap.take(), n.live, path.to_vec());
        Ok(Flow::Next)
    }

    fn leave(
        &mut self,
        path: &[u8],
        _: LiveDir,
        _: Vec<Node>,
    ) -> std::result::Result<(), Infallible> {
        let live = self.depth == self.levels.len();
        self.depth -= 1;
        if !live {
            return Ok(());
        }
        let Some(done) = self.levels.pop() else {
            return Ok(());
        };
        let Some(up) = self.levels.last_mut() else {
            return Ok(());
        };
        if up.fd.is_some() {
            return Ok(());
        }
        // Coming back to a directory whose descriptor went: `..` of the one
        // just left, if that is still the directory it was; else (the one
        // left was lost) by name from the nearest level still open.
        let want = up.id;
        let again = done
            .fd
            .ok_or_else(|| io::Error::other("not open"))
            .and_then(|fd| meta::open_dir_at(fd.as_raw_fd(), c".."))
            .and_then(|fd| same_dir(fd, want))
            .or_else(|_| self.reopen_by_names())
            .and_then(|fd| same_dir(fd, want));
        let up = self.levels.last_mut().expect("checked above");
        match again {
            Ok(fd) => up.fd = Some(Arc::new(fd)),
            Err(e) => {
                up.lost = true;
                let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
                let at = if cut == 0 {
                    b"/".as_slice()
                } else {
                    &path[..cut]
                };
                self.w.error(at.to_vec(), Kind::Dir, e);
            }
        }
        Ok(())
    }
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
    /// Directories the queued pair jobs hold (see [`QUEUED_DIRS`]).
    queued_dirs: AtomicUsize,
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
            Job::Pairs(pairs, dirs) => {
                for p in pairs {
                    self.pair(&p.dir, &p.snap, &p.name, p.path, q, buf);
                }
                self.queued_dirs.fetch_sub(dirs, Relaxed);
            }
            Job::File(f, dirs) => {
                self.read_file(*f, buf);
                self.queued_dirs.fetch_sub(dirs, Relaxed);
            }
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
            // What is below either side is the walk's.
            self.push(path, Some(snap.kind), Some(live.kind), Vec::new());
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
        // Each queued job holds its directory open: past the bound, read here.
        if self.queued_dirs.load(Relaxed) >= QUEUED_DIRS {
            return self.read_file(job, buf);
        }
        self.queued_dirs.fetch_add(1, Relaxed);
        self.submit(Job::File(Box::new(job), 1), q, buf);
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

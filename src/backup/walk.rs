//! The walk: one thread (the walker) goes through the directories depth
//! first, regular files are stat'ed and read by a pool, and each directory's
//! tree blob is written by whichever thread finishes its last child. Nothing
//! waits for a directory to finish before going on, so the pool's disk queue
//! stays full.
//!
//! A few threads (the listers) open and list directories before the walker
//! comes to them, with their trees in the previous snapshot: the next
//! subdirectories of each directory the walker is in, the deepest first. A
//! directory read from a cold cache waits on the disk on a lister, not on
//! the walker, and files still reach the pool in the walker's order, which
//! is the order of new data in packs (a restore and the mount read a
//! directory's files from few packs). The walker takes a listing only for
//! the directory it stat'ed itself (same device and inode) and only if it
//! is fresh (5 s); else it lists the directory again, from a warm cache.
//! (`history::ahead` reads a snapshot's trees ahead of a walk in the same
//! way, but queues each tree's subtrees itself and reads each tree id once:
//! trees are immutable and shared between snapshots, where a live
//! directory is listed where the walker asks, and only once it is stat'ed
//! the same.)

use super::exclude::Excludes;
use super::file::read_file;
use super::{BackupOptions, Counters};
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::format::id::TreeId;
use crate::format::tree::{Entry, Kind, Tree};
use crate::meta::{self, cstr, Names};
use crate::progress::Progress;
use crate::repo::writer::RepoWriter;
use crate::signal::Signal;
use crossbeam_channel::{Receiver, Sender};
use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};

/// Stack reserved for the walker thread: one frame per directory level.
const WALKER_STACK: usize = 1 << 30;

/// What of a directory the backup takes.
pub(super) enum Selection {
    /// The entry and everything below it.
    Whole,
    /// Only the named children (a directory on the way to a backed-up path).
    Partial(BTreeMap<Vec<u8>, Selection>),
    /// An entry that does not come from the file system (stdin).
    Synthetic(Box<Entry>),
}

impl Selection {
    /// Insert `components` below this selection, ending in `leaf`.
    pub fn insert(&mut self, components: &[Vec<u8>], leaf: Selection) {
        let Selection::Partial(map) = self else {
            return;
        }; // already whole
        match components {
            [] => *self = leaf,
            [last] => {
                let slot = map
                    .entry(last.clone())
                    .or_insert(Selection::Partial(BTreeMap::new()));
                if !matches!(leaf, Selection::Partial(_)) {
                    *slot = leaf;
                }
            }
            [first, rest @ ..] => map
                .entry(first.clone())
                .or_insert(Selection::Partial(BTreeMap::new()))
                .insert(rest, leaf),
        }
    }
}

/// Threads listing directories ahead of the walker.
const LISTERS: usize = 3;

/// Subdirectories of one directory listed ahead of the walker, at most.
const AHEAD: usize = 16;

/// Directories listed ahead in all, at most: each holds an open descriptor
/// and its names until the walker comes to it.
const AHEAD_TOTAL: usize = 256;

/// Names and previous entries held by listings the walker has not taken,
/// at most: a lister that would go beyond drops what it read (the walker
/// lists that directory again, from a warm cache).
const AHEAD_NAMES: usize = 1 << 18;

/// A listing older than this when the walker comes to it is read again
/// (from a warm cache): files still get the moment's view of their
/// directory, as when the walker listed each itself, however long the
/// subtrees before it took.
const AHEAD_FRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// A directory for a lister: `name` in `parent`, at `depth`.
struct Request {
    parent: Arc<OwnedFd>,
    name: Vec<u8>,
    /// The file system of `parent`.
    dev: u64,
    previous: Option<Entry>,
    /// Its place in the queue: the deepest first, then in order.
    key: (Reverse<usize>, u64),
    state: Mutex<RequestState>,
    done: Condvar,
}

enum RequestState {
    Queued,
    Listing,
    /// `None`: the lister left it to the walker (an error, which the walker
    /// finds and names again, another file system, or too many names held).
    Done(Option<Listed>),
    /// The walker took it or gave it up: a lister leaves it alone, or drops
    /// what it read.
    Claimed,
}

/// What a lister found: the open directory, its names sorted and its tree
/// in the previous snapshot.
struct Listed {
    fd: OwnedFd,
    /// `st_dev` and `st_ino` of `fd`: the walker takes the listing only for
    /// the directory it stat'ed itself.
    id: (u64, u64),
    names: Vec<meta::DirName>,
    previous: Option<Tree>,
    at: std::time::Instant,
}

impl Listed {
    /// What it counts against [`AHEAD_NAMES`].
    fn weight(&self) -> usize {
        self.names.len() + self.previous.as_ref().map_or(0, |t| t.entries.len())
    }
}

/// The listers' queue.
#[derive(Default)]
pub(super) struct Ahead {
    state: Mutex<AheadState>,
    /// A request was made, or the queue closed.
    ready: Signal,
    /// Names and previous entries in listings not yet taken.
    held: AtomicUsize,
}

#[derive(Default)]
struct AheadState {
    queue: BTreeMap<(Reverse<usize>, u64), Arc<Request>>,
    seq: u64,
    /// Requests made and not yet claimed.
    outstanding: usize,
    closed: bool,
}

impl Ahead {
    /// Ask for `name` in `parent` to be listed; `None` when
    /// [`AHEAD_TOTAL`] are.
    fn request(
        &self,
        parent: &Arc<OwnedFd>,
        name: &[u8],
        dev: u64,
        previous: Option<Entry>,
        depth: usize,
    ) -> Option<Arc<Request>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.outstanding >= AHEAD_TOTAL {
            return None;
        }
        s.seq += 1;
        let r = Arc::new(Request {
            parent: parent.clone(),
            name: name.to_vec(),
            dev,
            previous,
            key: (Reverse(depth), s.seq),
            state: Mutex::new(RequestState::Queued),
            done: Condvar::new(),
        });
        s.queue.insert(r.key, r.clone());
        s.outstanding += 1;
        drop(s);
        self.ready.notify_one();
        Some(r)
    }

    /// The next request for a lister; `None` once closed.
    fn next(&self) -> Option<Arc<Request>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some((_, r)) = s.queue.pop_first() {
                return Some(r);
            }
            if s.closed {
                return None;
            }
            s = self.ready.wait(s);
        }
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.ready.notify_all();
    }

    /// The walker's side: what the lister found, waiting for a listing
    /// under way (`wait`; else it is dropped when done); `None` when no
    /// lister had taken it or it left it (the walker lists the directory
    /// itself).
    fn claim(&self, r: &Request, wait: bool) -> Option<Listed> {
        let mut st = r.state.lock().unwrap_or_else(|e| e.into_inner());
        let (got, queued) = loop {
            match std::mem::replace(&mut *st, RequestState::Claimed) {
                RequestState::Listing if wait => {
                    *st = RequestState::Listing;
                    st = r.done.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                RequestState::Done(l) => break (l, false),
                RequestState::Queued => break (None, true),
                RequestState::Listing | RequestState::Claimed => break (None, false),
            }
        };
        drop(st);
        if let Some(l) = &got {
            self.held.fetch_sub(l.weight(), Relaxed);
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.outstanding -= 1;
        if queued {
            s.queue.remove(&r.key);
        }
        got
    }

    /// Count `l` against [`AHEAD_NAMES`]; false (and not counted) when it
    /// would go beyond.
    fn hold(&self, l: &Listed) -> bool {
        let w = l.weight();
        if self.held.fetch_add(w, Relaxed) + w > AHEAD_NAMES {
            self.held.fetch_sub(w, Relaxed);
            return false;
        }
        true
    }
}

/// A request the walker has yet to claim; claimed (and what was listed
/// dropped) if it never does.
struct Claim<'a> {
    ahead: &'a Ahead,
    request: Option<Arc<Request>>,
}

impl Claim<'_> {
    fn take(&mut self) -> Option<Listed> {
        let r = self.request.take()?;
        self.ahead.claim(&r, true)
    }
}

impl Drop for Claim<'_> {
    /// Given up (an early return, or not a directory after all): a listing
    /// under way is not waited for.
    fn drop(&mut self) {
        if let Some(r) = self.request.take() {
            self.ahead.claim(&r, false);
        }
    }
}

/// A directory whose tree is being built. Its children fill `slots`; when
/// `remaining` drops to zero the tree is written and the parent told.
struct DirNode {
    path: PathBuf,
    /// Directories above it.
    depth: usize,
    slots: Mutex<Vec<Option<Entry>>>,
    remaining: AtomicUsize,
    parent: Option<(Arc<DirNode>, usize)>,
    result: Mutex<Option<TreeId>>,
}

/// A regular file for the pool.
struct Job {
    dir: Arc<OwnedFd>,
    name: Vec<u8>,
    path: PathBuf,
    previous: Option<Entry>,
    node: Arc<DirNode>,
    slot: usize,
}

pub(super) struct Walk<'a> {
    pub writer: &'a RepoWriter,
    pub chunker: Chunker,
    pub opts: &'a BackupOptions,
    pub excludes: Excludes,
    pub progress: &'a dyn Progress,
    pub names: Names,
    pub counters: Counters,
    pub fatal: Mutex<Option<Error>>,
    pub ahead: Ahead,
}

impl DirNode {
    fn new(path: PathBuf, parent: Option<(Arc<DirNode>, usize)>) -> Arc<Self> {
        Arc::new(DirNode {
            path,
            depth: parent.as_ref().map_or(0, |(p, _)| p.depth + 1),
            slots: Mutex::new(Vec::new()),
            remaining: AtomicUsize::new(1), // the walker's hold
            parent,
            result: Mutex::new(None),
        })
    }

    fn add_slot(&self, entry: Option<Entry>) -> usize {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.push(entry);
        self.remaining.fetch_add(1, AcqRel);
        slots.len() - 1
    }

    fn fill(&self, slot: usize, entry: Option<Entry>) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())[slot] = entry;
    }
}

impl Walk<'_> {
    /// Back up the selection below `/` and return the root tree.
    pub fn run(
        &self,
        root: Selection,
        parent_root: Option<Tree>,
        threads: usize,
    ) -> Result<TreeId> {
        let node = DirNode::new(PathBuf::from("/"), None);
        let root_node = node.clone();
        let (tx, rx) = crossbeam_channel::bounded::<Job>(threads * 64);
        std::thread::scope(|s| {
            // As many workers as start (a system out of threads gets fewer,
            // or the backup fails naming why; it never aborts).
            let mut started = 0;
            for _ in 0..threads {
                let rx: Receiver<Job> = rx.clone();
                let worker = std::thread::Builder::new().spawn_scoped(s, move || {
                    for job in rx {
                        self.file_job(job);
                    }
                });
                match worker {
                    Ok(_) => started += 1,
                    Err(e) if started == 0 => {
                        self.fail(Error::io("backup worker threads", e));
                        return;
                    }
                    Err(_) => break,
                }
            }
            for i in 0..LISTERS {
                let lister = std::thread::Builder::new()
                    .name(format!("list-{i}"))
                    .spawn_scoped(s, move || {
                        while let Some(r) = self.ahead.next() {
                            self.list_ahead(&r);
                        }
                    });
                if lister.is_err() {
                    break; // the walker lists what they would have
                }
            }
            // The walk recurses once per directory level: give it room for
            // paths far beyond PATH_MAX (the stack is only reserved, not used).
            let walker = std::thread::Builder::new()
                .name("walk".into())
                .stack_size(WALKER_STACK)
                .spawn_scoped(s, move || {
                    let node = root_node;
                    match meta::open_dir_path(Path::new("/")) {
                        Ok(fd) => {
                            let fd = Arc::new(fd);
                            match root {
                                Selection::Partial(children) => {
                                    self.selected(Some(fd), &node, children, parent_root, &tx)
                                }
                                // `backup /`: the root directory whole.
                                _ => match meta::stat_fd(fd.as_raw_fd()) {
                                    Ok(st) => {
                                        self.directory(fd, &node, st.st_dev, parent_root, None, &tx)
                                    }
                                    Err(e) => self.fail(Error::io("/", e)),
                                },
                            }
                        }
                        Err(e) => self.fail(Error::io("/", e)),
                    }
                    self.release(&node);
                });
            let walked = match walker {
                Ok(h) => h.join(),
                Err(e) => {
                    self.fail(Error::io("walker thread", e));
                    Ok(())
                }
            };
            self.ahead.close();
            walked.unwrap_or_else(|p| std::panic::resume_unwind(p));
        });
        if let Some(e) = self.fatal.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        let id = *node.result.lock().unwrap_or_else(|e| e.into_inner());
        id.ok_or_else(|| Error::InvalidInput("backup did not complete".into()))
    }

    fn fail(&self, e: Error) {
        let mut f = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(e);
        }
    }

    fn failed(&self) -> bool {
        self.fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn warn(&self, e: Error) {
        self.counters.errors.fetch_add(1, Relaxed);
        self.progress.warn(&e);
    }

    /// Drop one hold on `node`; the last one writes its tree, and passes the
    /// hold it had on its parent up (a loop, not recursion: trees are deep).
    fn release(&self, node: &Arc<DirNode>) {
        let mut node = node.clone();
        loop {
            if node.remaining.fetch_sub(1, AcqRel) != 1 {
                return;
            }
            let entries: Vec<Entry> =
                std::mem::take(&mut *node.slots.lock().unwrap_or_else(|e| e.into_inner()))
                    .into_iter()
                    .flatten()
                    .collect();
            let encoded = Tree::new(entries).encode();
            let id = if encoded.len() > crate::format::tree::MAX_ENCODED {
                self.fail(Error::InvalidInput(format!(
                    "{}: directory too large to store ({} bytes of metadata)",
                    node.path.display(),
                    encoded.len()
                )));
                None
            } else {
                match self.writer.add_tree(&encoded) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        self.fail(e);
                        None
                    }
                }
            };
            match &node.parent {
                Some((parent, slot)) => {
                    if let Some(entry) =
                        parent.slots.lock().unwrap_or_else(|e| e.into_inner())[*slot].as_mut()
                    {
                        entry.subtree = id;
                    }
                    let parent = parent.clone();
                    node = parent;
                }
                None => {
                    *node.result.lock().unwrap_or_else(|e| e.into_inner()) = id;
                    return;
                }
            }
        }
    }

    /// Visit the selected children of a directory on the way to backed-up paths.
    fn selected(
        &self,
        dir: Option<Arc<OwnedFd>>,
        node: &Arc<DirNode>,
        children: BTreeMap<Vec<u8>, Selection>,
        previous: Option<Tree>,
        tx: &Sender<Job>,
    ) {
        for (name, sel) in children {
            let prev = previous.as_ref().and_then(|t| t.get(&name)).cloned();
            match sel {
                Selection::Synthetic(entry) => {
                    node.add_slot(Some(*entry));
                    self.release(node);
                }
                Selection::Whole => match &dir {
                    Some(dir) => {
                        self.visit(dir, node, name, libc::DT_UNKNOWN, prev, None, None, tx)
                    }
                    None => self.warn(Error::NotFound(
                        node.path.join(os(&name)).display().to_string(),
                    )),
                },
                Selection::Partial(grand) => {
                    let path = node.path.join(os(&name));
                    let on_disk = dir
                        .as_ref()
                        .map(|d| (d, self.dir_entry(d.as_raw_fd(), &name, &path)));
                    let (entry, fd) = match on_disk {
                        Some((dir, Ok((entry, _)))) => (entry, self.open_child(dir, &name, &path)),
                        // Directories that exist only to hold a stdin file.
                        Some((_, Err(_))) | None if only_synthetic(&grand) => {
                            (synthetic_dir(name.clone()), None)
                        }
                        Some((_, Err(e))) => {
                            self.warn(e);
                            continue;
                        }
                        None => (synthetic_dir(name.clone()), None),
                    };
                    let slot = node.add_slot(Some(entry));
                    let child = DirNode::new(path, Some((node.clone(), slot)));
                    let prev_tree = self.previous_tree(prev.as_ref());
                    self.selected(fd, &child, grand, prev_tree, tx);
                    self.release(&child);
                }
            }
        }
    }

    fn open_child(&self, dir: &Arc<OwnedFd>, name: &[u8], path: &Path) -> Option<Arc<OwnedFd>> {
        match cstr(name).and_then(|c| meta::open_dir_at(dir.as_raw_fd(), &c)) {
            Ok(fd) => Some(Arc::new(fd)),
            Err(e) => {
                self.warn(Error::io(path, e));
                None
            }
        }
    }

    fn previous_tree(&self, prev: Option<&Entry>) -> Option<Tree> {
        let sub = prev.filter(|e| e.kind == Kind::Dir)?.subtree?;
        self.writer.repo().load_tree(&sub).ok()
    }

    /// Stat a directory and read its xattrs; returns the entry and `st_dev`.
    fn dir_entry(&self, dir: i32, name: &[u8], path: &Path) -> Result<(Entry, u64)> {
        let c = cstr(name).map_err(|e| Error::io(path, e))?;
        let st = meta::stat_at(dir, &c).map_err(|e| Error::io(path, e))?;
        let entry = self.entry(dir, name.to_vec(), &st, path)?;
        Ok((entry, st.st_dev))
    }

    /// A full entry from a stat: names and xattrs included.
    fn entry(&self, dir: i32, name: Vec<u8>, st: &libc::stat64, path: &Path) -> Result<Entry> {
        let mut entry = meta::entry_from_stat(name, st)
            .ok_or_else(|| Error::InvalidInput(format!("{}: unknown file type", path.display())))?;
        entry.user = self.names.user(entry.uid);
        entry.group = self.names.group(entry.gid);
        entry.xattrs = meta::xattrs_at(dir, &entry.name).map_err(|e| Error::io(path, e))?;
        Ok(entry)
    }

    /// Back up the whole directory open as `dir` into `node`; `names` are
    /// its names sorted, when a lister has read them.
    #[allow(clippy::too_many_arguments)]
    fn directory(
        &self,
        dir: Arc<OwnedFd>,
        node: &Arc<DirNode>,
        dev: u64,
        previous: Option<Tree>,
        names: Option<io::Result<Vec<meta::DirName>>>,
        tx: &Sender<Job>,
    ) {
        let mut names = match names.unwrap_or_else(|| sorted_names(&dir)) {
            Ok(n) => n,
            Err(e) => return self.warn(Error::io(&node.path, e)),
        };
        if self.opts.exclude_caches && self.is_cache_dir(&dir, &names) {
            names.retain(|n| n.name == b"CACHEDIR.TAG");
        }
        let markers = &self.opts.exclude_if_present;
        if names.iter().any(|n| markers.contains(&n.name)) {
            names.retain(|n| markers.contains(&n.name));
        }
        // Requests for the next subdirectories, by index in `names`;
        // dropped (claimed) on an early return.
        let mut ahead: VecDeque<(usize, Claim)> = VecDeque::new();
        let mut next = 0;
        for i in 0..names.len() {
            if let Err(e) = crate::interrupt::check() {
                return self.fail(e);
            }
            if self.failed() {
                return;
            }
            next = next.max(i + 1);
            while ahead.len() < AHEAD && next < names.len() {
                let n = &names[next];
                if n.d_type == libc::DT_DIR && !self.excludes.matches(&node.path, &n.name) {
                    let prev = previous.as_ref().and_then(|t| t.get(&n.name)).cloned();
                    let Some(r) = self.ahead.request(&dir, &n.name, dev, prev, node.depth + 1)
                    else {
                        break; // enough are listed ahead; try again at the next name
                    };
                    let claim = Claim {
                        ahead: &self.ahead,
                        request: Some(r),
                    };
                    ahead.push_back((next, claim));
                }
                next += 1;
            }
            let request = match ahead.front() {
                Some((j, _)) if *j == i => ahead.pop_front().map(|(_, c)| c),
                _ => None,
            };
            let name = std::mem::take(&mut names[i].name);
            if self.excludes.matches(&node.path, &name) {
                continue;
            }
            let prev = previous.as_ref().and_then(|t| t.get(&name)).cloned();
            self.visit(
                &dir,
                node,
                name,
                names[i].d_type,
                prev,
                Some(dev),
                request,
                tx,
            );
        }
    }

    /// A lister's part: open and list the directory `r` names.
    fn list_ahead(&self, r: &Request) {
        {
            let mut st = r.state.lock().unwrap_or_else(|e| e.into_inner());
            if !matches!(*st, RequestState::Queued) {
                return;
            }
            *st = RequestState::Listing;
        }
        let listed = self.read_ahead(r).filter(|l| self.ahead.hold(l));
        let mut st = r.state.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*st, RequestState::Listing) {
            *st = RequestState::Done(listed);
            drop(st);
            r.done.notify_all();
        } else if let Some(l) = listed {
            // Given up meanwhile.
            self.ahead.held.fetch_sub(l.weight(), Relaxed);
        }
    }

    /// Open and list `r`'s directory, or leave it to the walker.
    fn read_ahead(&self, r: &Request) -> Option<Listed> {
        if self.failed() {
            return None;
        }
        let c = cstr(&r.name).ok()?;
        if self.opts.one_file_system {
            // Never open (nor mount) what the walker leaves out.
            let st = meta::stat_at_no_automount(r.parent.as_raw_fd(), &c).ok()?;
            if st.st_dev != r.dev {
                return None;
            }
        }
        let fd = meta::open_dir_at(r.parent.as_raw_fd(), &c).ok()?;
        let st = meta::stat_fd(fd.as_raw_fd()).ok()?;
        let names = sorted_names(&fd).ok()?;
        let previous = self.previous_tree(r.previous.as_ref());
        Some(Listed {
            fd,
            id: (st.st_dev, st.st_ino),
            names,
            previous,
            at: std::time::Instant::now(),
        })
    }

    fn is_cache_dir(&self, dir: &Arc<OwnedFd>, names: &[meta::DirName]) -> bool {
        const SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";
        if !names.iter().any(|n| n.name == b"CACHEDIR.TAG") {
            return false;
        }
        let Ok(c) = CString::new("CACHEDIR.TAG") else {
            return false;
        };
        let Ok(fd) = meta::open_at(dir.as_raw_fd(), &c, libc::O_RDONLY) else {
            return false;
        };
        let mut buf = [0u8; 43];
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        n == buf.len() as isize && buf == SIGNATURE
    }

    /// One child of a directory: files go to the pool, the rest is done here.
    /// `dev` is the file system of the directory (`None` at a backed-up path);
    /// `request`, a lister's listing of it, if one was asked for.
    #[allow(clippy::too_many_arguments)]
    fn visit(
        &self,
        dir: &Arc<OwnedFd>,
        node: &Arc<DirNode>,
        name: Vec<u8>,
        d_type: u8,
        prev: Option<Entry>,
        dev: Option<u64>,
        request: Option<Claim>,
        tx: &Sender<Job>,
    ) {
        let path = node.path.join(os(&name));
        if d_type == libc::DT_REG {
            return self.queue_file(dir, node, name, path, prev, tx);
        }
        let (entry, st_dev) = match self.dir_entry(dir.as_raw_fd(), &name, &path) {
            Ok(x) => x,
            Err(e) => return self.warn_vanished(e),
        };
        match entry.kind {
            Kind::File => self.queue_file(dir, node, name, path, prev, tx),
            Kind::Dir => {
                self.counters.dirs.fetch_add(1, Relaxed);
                let ino = entry.ino;
                let crosses = dev.is_some_and(|d| d != st_dev) && self.opts.one_file_system;
                let slot = node.add_slot(Some(entry));
                let child = DirNode::new(path.clone(), Some((node.clone(), slot)));
                let listed = match request {
                    Some(mut c) if !crosses => c.take(),
                    _ => None,
                };
                if !crosses {
                    match listed {
                        Some(l) if l.id == (st_dev, ino) && l.at.elapsed() < AHEAD_FRESH => self
                            .directory(
                                Arc::new(l.fd),
                                &child,
                                st_dev,
                                l.previous,
                                Some(Ok(l.names)),
                                tx,
                            ),
                        // Not listed ahead, listed long ago, or not the
                        // directory the walker stat'ed (replaced meanwhile);
                        // an error is found and named here.
                        _ => {
                            if let Some(fd) = self.open_child(dir, &name, &path) {
                                let prev_tree = self.previous_tree(prev.as_ref());
                                self.directory(fd, &child, st_dev, prev_tree, None, tx);
                            }
                        }
                    }
                }
                self.release(&child);
            }
            _ => {
                let mut entry = entry;
                if entry.kind == Kind::Symlink {
                    match cstr(&name).and_then(|c| meta::read_link_at(dir.as_raw_fd(), &c)) {
                        Ok(t) => entry.target = t,
                        Err(e) => return self.warn_vanished(Error::io(&path, e)),
                    }
                }
                self.counters.other.fetch_add(1, Relaxed);
                node.add_slot(Some(entry));
                self.release(node);
            }
        }
    }

    /// Hand a regular file to the pool, holding a slot for it in `node`.
    fn queue_file(
        &self,
        dir: &Arc<OwnedFd>,
        node: &Arc<DirNode>,
        name: Vec<u8>,
        path: PathBuf,
        previous: Option<Entry>,
        tx: &Sender<Job>,
    ) {
        let slot = node.add_slot(None);
        let job = Job {
            dir: dir.clone(),
            name,
            path,
            previous,
            node: node.clone(),
            slot,
        };
        if tx.send(job).is_err() {
            self.release(node);
        }
    }

    /// A vanished entry is a warning like any other unreadable one.
    fn warn_vanished(&self, e: Error) {
        if e.raw_os_error() == Some(libc::ENOENT) {
            if let Error::Io { path, .. } = &e {
                return self.warn(Error::io(path, io::Error::other("vanished during backup")));
            }
        }
        self.warn(e)
    }

    /// Pool side: stat, compare with the previous snapshot, read if needed.
    fn file_job(&self, job: Job) {
        if let Err(e) = crate::interrupt::check() {
            self.fail(e);
        }
        let entry = if self.failed() {
            None
        } else {
            match self.file_entry(&job) {
                Ok(e) => e,
                Err(e) => {
                    if self.writer.has_failed() {
                        // The repository, not this file, failed: end the backup
                        // with the first write error (a full disk, say).
                        self.fail(self.writer.take_failure().unwrap_or(e));
                    } else if matches!(e, Error::Io { .. }) {
                        self.warn_vanished(e);
                    } else {
                        self.fail(e);
                    }
                    None
                }
            }
        };
        job.node.fill(job.slot, entry);
        self.release(&job.node);
    }

    /// The file's entry; `None` when it is larger than `--exclude-larger-than`.
    fn file_entry(&self, job: &Job) -> Result<Option<Entry>> {
        let dirfd = job.dir.as_raw_fd();
        let io_err = |e| Error::io(&job.path, e);
        let c = cstr(&job.name).map_err(io_err)?;
        let st = meta::stat_at(dirfd, &c).map_err(io_err)?;
        if self
            .opts
            .exclude_larger_than
            .is_some_and(|max| st.st_size as u64 > max)
            && (st.st_mode & libc::S_IFMT) == libc::S_IFREG
        {
            return Ok(None);
        }
        let mut entry = self.entry(dirfd, job.name.clone(), &st, &job.path)?;
        if entry.kind != Kind::File {
            return Err(Error::io(
                &job.path,
                io::Error::other("changed type during backup"),
            ));
        }
        let c = &self.counters;
        c.total_bytes.fetch_add(entry.size, Relaxed);
        if let Some(prev) = job.previous.as_ref().filter(|p| unchanged(p, &entry)) {
            if self.blobs_present(prev)? {
                entry.extents = prev.extents.clone();
                c.files_unchanged.fetch_add(1, Relaxed);
                self.progress.file_done(&job.path, 0);
                return Ok(Some(entry));
            }
        }
        let fd = meta::open_at(dirfd, &c_name(&job.name)?, libc::O_RDONLY).map_err(io_err)?;
        let before = meta::stat_fd(fd.as_raw_fd()).map_err(io_err)?;
        if before.st_ino != st.st_ino || before.st_dev != st.st_dev {
            return Err(Error::io(
                &job.path,
                io::Error::other("replaced during backup"),
            ));
        }
        let on_read = |n: u64| self.progress.bytes_read(n);
        let content = read_file(
            fd.as_raw_fd(),
            before.st_size as u64,
            before.st_blocks as u64,
            &self.chunker,
            self.writer,
            &job.path,
            &on_read,
        )?;
        let after = meta::stat_fd(fd.as_raw_fd()).map_err(io_err)?;
        if changed_while_read(&before, &after) || content.size != after.st_size as u64 {
            self.warn(Error::io(
                &job.path,
                io::Error::other("changed while being read; the snapshot holds what was read"),
            ));
        }
        meta::fill_from_stat(&mut entry, &before);
        entry.size = content.size;
        entry.extents = content.extents;
        c.bytes_read.fetch_add(content.bytes_read, Relaxed);
        let counter = if job.previous.is_some() {
            &c.files_changed
        } else {
            &c.files_new
        };
        counter.fetch_add(1, Relaxed);
        self.progress.file_done(&job.path, content.bytes_read);
        Ok(Some(entry))
    }

    fn blobs_present(&self, prev: &Entry) -> Result<bool> {
        for e in &prev.extents {
            if let crate::format::tree::Extent::Data { id, .. } = e {
                if !self.writer.repo().has_blob(id)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

/// The names in `dir`, sorted.
fn sorted_names(dir: &OwnedFd) -> io::Result<Vec<meta::DirName>> {
    let mut names = meta::read_dir(dir.as_raw_fd())?;
    names.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(names)
}

fn c_name(name: &[u8]) -> Result<CString> {
    cstr(name).map_err(|e| Error::io(os(name), e))
}

fn os(name: &[u8]) -> &std::ffi::OsStr {
    std::ffi::OsStr::from_bytes(name)
}

/// A file is taken as unchanged when type, size, mtime, ctime and inode match.
fn unchanged(prev: &Entry, now: &Entry) -> bool {
    prev.kind == Kind::File
        && prev.size == now.size
        && prev.mtime == now.mtime
        && prev.ctime == now.ctime
        && prev.ino == now.ino
}

fn changed_while_read(a: &libc::stat64, b: &libc::stat64) -> bool {
    (
        a.st_size,
        a.st_mtime,
        a.st_mtime_nsec,
        a.st_ctime,
        a.st_ctime_nsec,
    ) != (
        b.st_size,
        b.st_mtime,
        b.st_mtime_nsec,
        b.st_ctime,
        b.st_ctime_nsec,
    )
}

/// Whether every leaf below is a synthetic entry.
fn only_synthetic(children: &BTreeMap<Vec<u8>, Selection>) -> bool {
    children.values().all(|c| match c {
        Selection::Synthetic(_) => true,
        Selection::Partial(g) => only_synthetic(g),
        Selection::Whole => false,
    })
}

/// A directory that exists only in the snapshot (the parents of a stdin file).
pub(super) fn synthetic_dir(name: Vec<u8>) -> Entry {
    let mut e = Entry::new(name, Kind::Dir);
    e.mode = 0o755;
    let now = super::now();
    e.mtime = now;
    e.atime = now;
    e.ctime = now;
    // SAFETY: getuid and getgid cannot fail.
    e.uid = unsafe { libc::getuid() };
    e.gid = unsafe { libc::getgid() };
    let names = Names::default();
    e.user = names.user(e.uid);
    e.group = names.group(e.gid);
    e
}

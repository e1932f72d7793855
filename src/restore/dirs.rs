//! The directories a restore works in: reached only through descriptors it
//! opened itself, with a bounded number open whatever the depth.
//!
//! A [`DirNode`] records a directory as its name in its parent and the inode
//! it was when first opened; a [`Stack`] is the path from the target down to
//! where a walk is, with at most [`WINDOW`] directories open besides the
//! target. A directory whose descriptor was closed is opened again through
//! `..` of its child, or by name from the nearest open ancestor, never
//! following a symlink, and must be the same inode as before: anything else
//! (moved, or replaced, while restore was below it) is an error for the rest
//! of that directory, never a write somewhere else.

use crate::meta::{self, cstr};
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Directory descriptors a [`Stack`] keeps open below its root.
pub const WINDOW: usize = 32;

/// `(st_dev, st_ino)`.
pub type Id = (u64, u64);

/// The identity of a `stat`.
pub fn identity(st: &libc::stat64) -> Id {
    (st.st_dev, st.st_ino)
}

/// A name in a directory restore made: where a file is, kept without a
/// descriptor.
pub type Place = (Arc<DirNode>, Box<[u8]>);

/// What a directory that is not the one restore made turns into.
fn changed() -> io::Error {
    io::Error::other("directory moved or replaced during the restore")
}

/// A directory restore made or entered, as a chain of names up to the
/// target, so that it can be opened again later and known to be the same.
pub struct DirNode {
    parent: Option<Arc<DirNode>>,
    name: Box<[u8]>,
    id: Id,
}

impl DirNode {
    /// The target itself.
    pub fn root(id: Id) -> Arc<Self> {
        Arc::new(DirNode {
            parent: None,
            name: Box::default(),
            id,
        })
    }

    /// `name` in `self`, which was `id` when opened.
    pub fn child(self: &Arc<Self>, name: &[u8], id: Id) -> Arc<Self> {
        Arc::new(DirNode {
            parent: Some(self.clone()),
            name: name.into(),
            id,
        })
    }

    pub fn name(&self) -> &[u8] {
        &self.name
    }

    pub fn id(&self) -> Id {
        self.id
    }

    /// The nodes from the target (first) down to `self`.
    fn chain(&self) -> Vec<&DirNode> {
        let mut chain = vec![self];
        let mut n = self;
        while let Some(p) = &n.parent {
            chain.push(p);
            n = p;
        }
        chain.reverse();
        chain
    }

    /// Where this directory is, below `target`, for messages.
    pub fn path(&self, target: &Path) -> PathBuf {
        let mut path = target.to_path_buf();
        for n in &self.chain()[1..] {
            path.push(OsStr::from_bytes(&n.name));
        }
        path
    }

    /// Open this directory again, name by name from `root` (the target's
    /// descriptor), each step checked to be the directory it was.
    pub fn reopen(&self, root: RawFd) -> io::Result<OwnedFd> {
        let mut cur = dup(root)?;
        for n in &self.chain()[1..] {
            cur = open_same(cur.as_raw_fd(), &n.name, n.id)?;
        }
        Ok(cur)
    }
}

/// A directory's descriptor: a [`Stack`]'s, or one opened for the caller.
pub enum DirRef {
    Held(RawFd),
    Opened(OwnedFd),
}

impl DirRef {
    pub fn raw(&self) -> RawFd {
        match self {
            DirRef::Held(fd) => *fd,
            DirRef::Opened(fd) => fd.as_raw_fd(),
        }
    }
}

/// A duplicate of `fd`.
pub fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if d < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor fcntl just made, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

/// Open directory `name` in `dir` (not following a symlink) and check that it
/// is `id`.
fn open_same(dir: RawFd, name: &[u8], id: Id) -> io::Result<OwnedFd> {
    let fd = meta::open_dir_at(dir, &cstr(name)?)?;
    check_same(&fd, id)?;
    Ok(fd)
}

fn check_same(fd: &OwnedFd, id: Id) -> io::Result<()> {
    if identity(&meta::stat_fd(fd.as_raw_fd())?) == id {
        Ok(())
    } else {
        Err(changed())
    }
}

/// A directory's descriptor in a [`Stack`].
pub enum DirFd {
    Open(OwnedFd),
    /// Closed to stay within [`WINDOW`]; opened again when the walk is back.
    Closed,
    /// Not on disk (a dry run's directory that would be made).
    Absent,
    /// Could not be opened again as the same directory; the error is taken
    /// by the first to report it.
    Lost(Option<io::Error>),
}

/// One directory of a [`Stack`], with the walk's state for it.
pub struct Frame<T> {
    pub node: Arc<DirNode>,
    pub fd: DirFd,
    pub data: T,
}

impl<T> Frame<T> {
    /// The descriptor, when open.
    pub fn raw(&self) -> Option<RawFd> {
        match &self.fd {
            DirFd::Open(fd) => Some(fd.as_raw_fd()),
            _ => None,
        }
    }
}

/// The directories from a root down to where a walk is.
pub struct Stack<T> {
    frames: Vec<Frame<T>>,
    /// Indexes of the open frames below the root, shallowest first.
    open: VecDeque<usize>,
}

impl<T> Stack<T> {
    /// A stack of the root alone; its descriptor stays open (or absent).
    pub fn new(node: Arc<DirNode>, fd: Option<OwnedFd>, data: T) -> Self {
        let fd = fd.map_or(DirFd::Absent, DirFd::Open);
        Stack {
            frames: vec![Frame { node, fd, data }],
            open: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn top(&self) -> &Frame<T> {
        self.frames.last().expect("the root is never popped")
    }

    pub fn top_mut(&mut self) -> &mut Frame<T> {
        self.frames.last_mut().expect("the root is never popped")
    }

    /// The frame at `depth` (the root is 0).
    pub fn at_mut(&mut self, depth: usize) -> &mut Frame<T> {
        &mut self.frames[depth]
    }

    /// Enter a directory (`None`: absent, in a dry run), closing the
    /// shallowest open one beyond the window.
    pub fn push(&mut self, node: Arc<DirNode>, fd: Option<OwnedFd>, data: T) {
        let fd = match fd {
            Some(fd) => {
                self.open.push_back(self.frames.len());
                DirFd::Open(fd)
            }
            None => DirFd::Absent,
        };
        self.frames.push(Frame { node, fd, data });
        if self.open.len() > WINDOW {
            if let Some(i) = self.open.pop_front() {
                self.frames[i].fd = DirFd::Closed;
            }
        }
    }

    /// Give frame `at`, which was [`DirFd::Absent`] (a directory made only
    /// now), its node and descriptor; frames below it must be absent too.
    pub fn open_at(&mut self, at: usize, node: Arc<DirNode>, fd: OwnedFd) {
        self.frames[at].node = node;
        self.frames[at].fd = DirFd::Open(fd);
        self.open.push_back(at);
        if self.open.len() > WINDOW {
            if let Some(i) = self.open.pop_front() {
                self.frames[i].fd = DirFd::Closed;
            }
        }
    }

    /// Mark frame `at` and all below it lost (their error was reported).
    pub fn lose_from(&mut self, at: usize) {
        for f in &mut self.frames[at..] {
            f.fd = DirFd::Lost(None);
        }
        self.open.retain(|&i| i < at);
    }

    /// Leave the top directory (never the root): the one it is in is opened
    /// again if it was closed, or becomes [`DirFd::Lost`].
    pub fn pop(&mut self) -> Frame<T> {
        assert!(self.frames.len() > 1, "the root is never popped");
        let child = self.frames.pop().expect("checked");
        if self.open.back() == Some(&self.frames.len()) {
            self.open.pop_back();
        }
        let at = self.frames.len() - 1;
        if matches!(self.frames[at].fd, DirFd::Closed) {
            let id = self.frames[at].node.id;
            let by_dotdot = child
                .raw()
                .ok_or_else(changed)
                .and_then(|fd| open_same(fd, b"..", id));
            self.frames[at].fd = match by_dotdot.or_else(|_| self.reopen(at)) {
                Ok(fd) => {
                    self.open.push_back(at);
                    DirFd::Open(fd)
                }
                Err(e) => DirFd::Lost(Some(e)),
            };
        }
        child
    }

    /// `node`, a directory below this stack's root: the descriptor of its
    /// frame if it is on the stack and open, else opened by name from the
    /// deepest open frame on its way, each step checked.
    pub fn open_node(&self, node: &DirNode) -> io::Result<DirRef> {
        let chain = node.chain();
        for i in (0..chain.len().min(self.frames.len())).rev() {
            let f = &self.frames[i];
            let Some(fd) = f
                .raw()
                .filter(|_| std::ptr::eq(Arc::as_ptr(&f.node), chain[i]))
            else {
                continue;
            };
            let Some((next, rest)) = chain[i + 1..].split_first() else {
                return Ok(DirRef::Held(fd));
            };
            let mut cur = open_same(fd, &next.name, next.id)?;
            for n in rest {
                cur = open_same(cur.as_raw_fd(), &n.name, n.id)?;
            }
            return Ok(DirRef::Opened(cur));
        }
        Err(changed())
    }

    /// Open frame `at` again by name from the nearest open frame above it.
    fn reopen(&self, at: usize) -> io::Result<OwnedFd> {
        let from = (0..at)
            .rev()
            .find(|&i| self.frames[i].raw().is_some())
            .ok_or_else(changed)?;
        let mut cur = dup(self.frames[from].raw().ok_or_else(changed)?)?;
        for f in &self.frames[from + 1..=at] {
            cur = open_same(cur.as_raw_fd(), &f.node.name, f.node.id)?;
        }
        Ok(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn id_of(p: &Path) -> Id {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.dev(), m.ino())
    }

    /// A chain of `n` directories `d` below a temporary directory.
    fn chain(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let t = tempfile::tempdir().unwrap();
        let mut paths = vec![t.path().to_path_buf()];
        for _ in 0..n {
            let p = paths.last().unwrap().join("d");
            std::fs::create_dir(&p).unwrap();
            paths.push(p);
        }
        (t, paths)
    }

    /// Descriptors this process has open below `dir` (other tests run
    /// alongside, so all of them would not do).
    fn open_below(dir: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|p| p.starts_with(dir))
            .count()
    }

    #[test]
    fn a_deep_walk_holds_a_window_and_comes_back_through_every_level() {
        let depth = WINDOW * 3;
        let (_t, paths) = chain(depth);
        let root = DirNode::root(id_of(&paths[0]));
        let fd = meta::open_dir_path(&paths[0]).unwrap();
        let mut s = Stack::new(root, Some(fd), 0usize);
        let open = || open_below(&paths[0]);
        for (i, p) in paths.iter().enumerate().skip(1) {
            let parent = s.top().raw().unwrap();
            let fd = meta::open_dir_at(parent, c"d").unwrap();
            let node = s.top().node.child(b"d", id_of(p));
            s.push(node, Some(fd), i);
        }
        assert_eq!(open(), 1 + WINDOW, "the root and a window");
        for i in (1..=depth).rev() {
            assert_eq!(s.pop().data, i);
            let top = s.top();
            assert_eq!(top.data, i - 1);
            let st = meta::stat_fd(top.raw().expect("open again")).unwrap();
            assert_eq!(identity(&st), id_of(&paths[i - 1]));
        }
        assert_eq!(open(), 1, "the root alone");
    }

    #[test]
    fn a_closed_directory_is_found_by_name_or_lost_never_followed() {
        let depth = WINDOW + 2;
        let (t, paths) = chain(depth);
        let root = DirNode::root(id_of(&paths[0]));
        let fd = meta::open_dir_path(&paths[0]).unwrap();
        let mut s = Stack::new(root, Some(fd), ());
        for p in paths.iter().skip(1) {
            let fd = meta::open_dir_at(s.top().raw().unwrap(), c"d").unwrap();
            let node = s.top().node.child(b"d", id_of(p));
            s.push(node, Some(fd), ());
        }
        // Levels 1 and 2 were closed. Level 3 moves out of level 2: its `..`
        // is no longer level 2, which is found by name from the root.
        std::fs::rename(&paths[3], t.path().join("moved3")).unwrap();
        while s.len() > 3 {
            s.pop();
            assert!(s.top().raw().is_some(), "open again at {}", s.len() - 1);
        }
        let st = meta::stat_fd(s.top().raw().unwrap()).unwrap();
        assert_eq!(identity(&st), id_of(&paths[2]));
        // Level 1 is swapped for a symlink to a look-alike, and level 2 moves
        // out of it: neither `..` nor the name leads to level 1.
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir_all(elsewhere.join("d")).unwrap();
        let moved1 = t.path().join("moved1");
        std::fs::rename(&paths[1], &moved1).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &paths[1]).unwrap();
        std::fs::rename(moved1.join("d"), t.path().join("moved2")).unwrap();
        s.pop();
        assert!(
            matches!(s.top().fd, DirFd::Lost(Some(_))),
            "level 1 is lost"
        );
        let node = s.top().node.clone();
        assert!(node.reopen(s.frames[0].raw().unwrap()).is_err());
    }
}

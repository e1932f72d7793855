//! The restore's visit of the snapshot's trees: entries made as the tree
//! walker ([`crate::repo::walk`]) reaches them, in tree order.
//!
//! The walker holds the trees, in name order; this visitor holds, in a
//! [`Stack`] of its own (pushed in [`Visit::enter`], popped in
//! [`Visit::leave`]), each directory's descriptor, its [`DirNode`] and what
//! was done to it, for the directories the walk is in.
//!
//! - An entry ([`Visit::entry`]) is picked by the filters and made in the
//!   top directory; a regular file is created empty and its entry taken
//!   (not cloned) into a write job for the pool. A directory is made (or,
//!   overwriting, reused) there, its entry taken into its level; the walker
//!   then enters it and this visitor reads its tree. A tree that does not
//!   load is a warning: the directory is still made and gets its metadata,
//!   but `--delete` removes nothing in it.
//! - Leaving a directory removes what `--delete` removes (the names in the
//!   tree the walker gives back), then sets its metadata through its own
//!   descriptor.
//! - A directory entered only to look for included entries is made (and
//!   reported, counted, given its metadata) once something is to be
//!   restored in it; until then it is absent, and what the target has in its
//!   place stays.
//! - A directory whose descriptor is lost ([`DirFd::Lost`]) has the rest of
//!   its listing skipped ([`Flow::Leave`]); the error is reported when it is
//!   left.
//! - On an interrupt, no more entries are made ([`Flow::Stop`]), but the
//!   walker still leaves every directory the walk is in, the deepest first:
//!   each gets its metadata, and `--delete` removes nothing more.

use super::dirs::{identity, DirFd, DirNode, Id, Stack};
use super::links::{First, Group};
use super::remove::Remover;
use super::select::Pick;
use super::write::Job;
use super::{with_path, Action, Restorer};
use crate::error::{Error, Result};
use crate::format::id::TreeId;
use crate::format::tree::{Entry, Kind, Tree};
use crate::meta::{self, cstr, Handle};
use crate::repo::walk::{walk, Flow, Visit};
use crossbeam_channel::Sender;
use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// The visit's state for one directory.
struct Level {
    /// The directory's own entry (`None` for the target).
    entry: Option<Entry>,
    /// Included, or inside an included directory (or no includes given).
    matched: bool,
    /// Something was restored in it.
    any: bool,
    /// What was done to make it: `None` for a directory that was there.
    change: Option<Action>,
    /// Its change was reported (deferred until something is restored in it
    /// when it is not included itself).
    reported: bool,
    /// Its tree was read: `--delete` may remove what the tree lacks.
    complete: bool,
}

/// A directory [`Visit::entry`] made (or found, or left absent until
/// needed), for [`Visit::enter`] to go into.
struct Made {
    node: Arc<DirNode>,
    fd: Option<OwnedFd>,
    /// Where it is in the target.
    path: PathBuf,
    level: Level,
}

/// Restore `entry` into the target (`fd`, whose node is `root`; `None` in a
/// dry run of a target that does not exist), sending files to the pool
/// through `tx`: a directory's entries go into the target, anything else
/// becomes `target/<name>`.
pub fn run(
    r: &Restorer<'_>,
    entry: &Entry,
    snap_path: &Path,
    root: Arc<DirNode>,
    fd: Option<OwnedFd>,
    tx: Sender<Job>,
) {
    let is_dir = entry.kind == Kind::Dir;
    let snap = match is_dir {
        true => snap_path,
        false => snap_path.parent().unwrap_or(Path::new("/")),
    };
    let level = Level {
        entry: None,
        // A single entry asked for by path is restored whatever the includes.
        matched: !is_dir,
        any: false,
        change: None,
        reported: true,
        complete: is_dir,
    };
    let mut v = Restore {
        r,
        stack: Stack::new(root, fd, level),
        path: r.opts.target.clone(),
        snap: snap.to_path_buf(),
        tx,
        dry: r.opts.dry_run,
        stopping: false,
        root_entered: false,
        made: None,
    };
    match (is_dir, entry.subtree) {
        (true, Some(id)) => {
            if let Err(e) = walk(id, b"", &mut v) {
                r.warn(e);
            }
        }
        // A directory stored without a tree: nothing in it to restore.
        (true, None) => v.close(&[]),
        (false, _) => {
            let mut e = entry.clone();
            if v.flow() == Flow::Next {
                v.child(&mut e);
            }
            v.close(&[]);
        }
    }
}

/// The restore's [`Visit`]: see the module docs.
struct Restore<'a, 'r> {
    r: &'a Restorer<'r>,
    stack: Stack<Level>,
    /// Where the top directory is in the target, and in the snapshot.
    path: PathBuf,
    snap: PathBuf,
    tx: Sender<Job>,
    dry: bool,
    /// A stop was requested: nothing more is made or deleted.
    stopping: bool,
    /// The target (the root of the walk, on the stack from the start) was
    /// given its tree.
    root_entered: bool,
    /// The directory the last entry made, if it is to be entered.
    made: Option<Made>,
}

impl Visit for Restore<'_, '_> {
    type Error = Error;

    fn enter(&mut self, _: &[u8], id: TreeId) -> Result<Option<Tree>> {
        let matched = match self.made.take() {
            Some(made) => Some(self.push(made)),
            None if !self.root_entered => None,
            None => return Ok(None),
        };
        self.root_entered = true;
        let tree = match self.r.repo.load_tree(&id) {
            Ok(t) => t,
            Err(err) => {
                self.r.warn(with_path(err, &self.path));
                self.stack.top_mut().data.complete = false;
                Tree::default()
            }
        };
        if matched == Some(true) {
            self.restored();
        }
        Ok(Some(tree))
    }

    fn entry(&mut self, _: &[u8], e: &mut Entry) -> Result<Flow> {
        let flow = self.flow();
        if flow != Flow::Next {
            return Ok(flow);
        }
        self.child(e);
        if e.kind == Kind::Dir && e.subtree.is_none() {
            // A directory stored without a tree (too large to store at
            // backup) is made and left empty: the walker does not enter it.
            if let Some(made) = self.made.take() {
                if self.push(made) {
                    self.restored();
                }
                self.close(&[]);
            }
        }
        Ok(Flow::Next)
    }

    fn leave(&mut self, _: &[u8], _: TreeId, tree: Tree) -> Result<()> {
        self.close(&tree.entries);
        Ok(())
    }
}

impl<'a, 'r> Restore<'a, 'r> {
    /// Whether the walk goes on to the next entry of the top directory:
    /// not after a stop was requested, nor in a directory whose descriptor
    /// was lost.
    fn flow(&mut self) -> Flow {
        if self.stop_requested() {
            Flow::Stop
        } else if matches!(self.stack.top().fd, DirFd::Lost(_)) {
            Flow::Leave
        } else {
            Flow::Next
        }
    }

    /// Notice a requested stop (once: the restore then reports it).
    fn stop_requested(&mut self) -> bool {
        if !self.stopping && crate::interrupt::requested() {
            self.stopping = true;
            self.r.interrupted.store(true, Relaxed);
        }
        self.stopping
    }

    /// Restore one entry of the top directory, if picked: a directory is
    /// made and left in [`Restore::made`] to be entered.
    fn child(&mut self, e: &mut Entry) {
        let pick = self
            .r
            .filter
            .pick(&self.snap, &e.name, self.stack.top().data.matched);
        if pick == Pick::Skip || (pick == Pick::Maybe && e.kind != Kind::Dir) {
            return;
        }
        let path = self.path.join(OsStr::from_bytes(&e.name));
        if e.kind == Kind::Dir && pick == Pick::Maybe {
            return self.make(e, false, path);
        }
        if let Err(err) = self.materialize() {
            return self.r.warn(err);
        }
        if e.kind == Kind::Dir {
            return self.make(e, true, path);
        }
        match self.leaf(e, &path) {
            Ok(action) => {
                self.restored();
                self.r.change(action, &path, e.kind);
            }
            Err(err) => self.r.warn(err),
        }
    }

    /// Something was restored in the top directory: it and every directory
    /// above it not yet reported are, from the top down.
    fn restored(&mut self) {
        let n = self.stack.len();
        let mut lo = n;
        while lo > 0 && !self.stack.at_mut(lo - 1).data.reported {
            lo -= 1;
        }
        let mut path = self.path.clone();
        for _ in lo..n {
            path.pop();
        }
        for i in lo..n {
            let f = self.stack.at_mut(i);
            path.push(OsStr::from_bytes(f.node.name()));
            f.data.reported = true;
            if let Some(action) = f.data.change {
                self.r.change(action, &path, Kind::Dir);
            }
        }
        self.stack.top_mut().data.any = true;
    }

    /// Make (or reuse, or find) directory `e` (`matched`: included, not only
    /// looked into), and keep it to be entered, its entry taken.
    fn make(&mut self, e: &mut Entry, matched: bool, path: PathBuf) {
        let made = match (self.dry, matched, self.stack.top().raw()) {
            (true, _, _) => self.dry_dir(e, &path),
            (false, true, Some(dir)) => {
                let node = self.stack.top().node.clone();
                self.make_dir(dir, &node, e, &path)
            }
            (false, true, None) => Err(Error::io(&path, lost())),
            (false, false, _) => self.find_dir(e, &path),
        };
        let (fd, id, change) = match made {
            Ok(m) => m,
            Err(err) => return self.r.warn(err),
        };
        let node = self.stack.top().node.child(&e.name, id);
        let level = Level {
            entry: Some(take(e)),
            matched,
            any: false,
            change,
            reported: false,
            complete: true,
        };
        self.made = Some(Made {
            node,
            fd,
            path,
            level,
        });
    }

    /// Go into a directory [`Restore::make`] made. Returns whether it is
    /// included (and so to be reported once its tree is read).
    fn push(&mut self, made: Made) -> bool {
        let Made {
            node,
            fd,
            path,
            level,
        } = made;
        let name = node.name();
        self.snap.push(OsStr::from_bytes(name));
        self.path = path;
        let matched = level.matched;
        self.stack.push(node, fd, level);
        matched
    }

    /// Done with the top directory (`children`: the names in its tree):
    /// remove what the snapshot does not have, set its metadata, and go
    /// back up. The target, the root of the walk, is only cleared.
    fn close(&mut self, children: &[Entry]) {
        self.stop_requested();
        if self.stack.len() == 1 {
            if !self.stopping {
                self.delete_extras(children);
            }
            return;
        }
        let top = self.stack.top_mut();
        if let DirFd::Lost(err) = &mut top.fd {
            if let Some(e) = err.take() {
                let e = io::Error::new(e.kind(), format!("{e}; the rest of it is not restored"));
                self.r.warn(Error::io(&self.path, e));
            }
        }
        let lost = matches!(top.fd, DirFd::Lost(_));
        if !lost && !self.stopping {
            self.delete_extras(children);
        }
        let top = self.stack.top();
        let keep = !lost && (top.data.any || top.data.matched);
        if keep {
            if let (Some(fd), Some(e)) = (top.raw(), &top.data.entry) {
                if !self.dry {
                    self.r.apply_meta(Handle::Open(fd), e, &self.path, None);
                }
            }
            self.r.counts.dirs.fetch_add(1, Relaxed);
        }
        let done = self.stack.pop();
        let parent = self.stack.top_mut();
        if keep {
            parent.data.any = true;
        } else if done.data.change.is_some() && matches!(done.fd, DirFd::Open(_) | DirFd::Closed) {
            // Made on the way to included entries, and all failed.
            if let (Some(dir), Ok(name)) = (parent.raw(), cstr(done.node.name())) {
                unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) };
            }
        }
        self.path.pop();
        self.snap.pop();
    }

    /// With `delete`: remove from the top directory what its tree
    /// (`children`, in name order) does not have and the filters pick.
    fn delete_extras(&mut self, children: &[Entry]) {
        let top = self.stack.top();
        let Some(dir) = top.raw() else { return };
        if !self.r.opts.delete || !top.data.complete {
            return;
        }
        let names = match meta::read_dir(dir) {
            Ok(n) => n,
            Err(e) => return self.r.warn(Error::io(&self.path, e)),
        };
        let (node, matched) = (top.node.clone(), top.data.matched);
        let r = self.r;
        let mut removed = |p: &Path, k: Kind| r.change(Action::Delete, p, k);
        let warn = |e: Error| r.warn(e);
        let mut remover = Remover {
            dry: self.dry,
            filter: Some(&r.filter),
            removed: &mut removed,
            protect: &r.protect,
            warn: &warn,
        };
        for n in names {
            let known = children.binary_search_by(|c| c.name.as_slice().cmp(&n.name));
            if known.is_ok() || crate::interrupt::requested() {
                continue;
            }
            let pick = r.filter.pick(&self.snap, &n.name, matched);
            let path = self.path.join(OsStr::from_bytes(&n.name));
            remover.remove(dir, &node, &n.name, pick, &path, &self.snap, true);
        }
    }

    /// With overwrite, whatever is at `name` in `dir` goes (a directory with
    /// all in it). Returns whether something was there.
    fn clear(&self, dir: RawFd, node: &Arc<DirNode>, name: &[u8], path: &Path) -> Result<bool> {
        let c = cstr(name).map_err(|e| Error::io(path, e))?;
        match meta::stat_at(dir, &c) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
            Err(e) => return Err(Error::io(path, e)),
            Ok(_) if !self.r.overwrite => {
                return Err(Error::io(path, io::Error::from_raw_os_error(libc::EEXIST)))
            }
            Ok(_) => {}
        }
        let r = self.r;
        let mut removed = |p: &Path, k: Kind| r.change(Action::Delete, p, k);
        let warn = |e: Error| r.warn(e);
        let mut remover = Remover {
            dry: self.dry,
            filter: None,
            removed: &mut removed,
            protect: &r.protect,
            warn: &warn,
        };
        // With no filter, the snapshot path is not looked at.
        if !remover.remove(dir, node, name, Pick::In, path, &self.snap, false) {
            let e = io::Error::other("what is there could not be removed");
            return Err(Error::io(path, e));
        }
        Ok(true)
    }

    /// Make the directories above that were entered only to look for
    /// included entries and are not in the target yet: something is about
    /// to be restored in them. A dry run has nothing to make.
    fn materialize(&mut self) -> Result<()> {
        let n = self.stack.len();
        let mut lo = n;
        while !self.dry && lo > 1 && matches!(self.stack.at_mut(lo - 1).fd, DirFd::Absent) {
            lo -= 1;
        }
        let mut path = self.path.clone();
        for _ in lo..n {
            path.pop();
        }
        for i in lo..n {
            path.push(OsStr::from_bytes(self.stack.at_mut(i).node.name()));
            let parent = self.stack.at_mut(i - 1);
            let (dir, node) = (parent.raw(), parent.node.clone());
            let e = self
                .stack
                .at_mut(i)
                .data
                .entry
                .take()
                .expect("a directory's own entry");
            let made = match dir {
                Some(dir) => self.make_dir(dir, &node, &e, &path),
                None => Err(Error::io(&path, lost())),
            };
            self.stack.at_mut(i).data.entry = Some(e);
            match made {
                Ok((Some(fd), id, change)) => {
                    let name = self.stack.at_mut(i).node.name().to_vec();
                    self.stack.open_at(i, node.child(&name, id), fd);
                    self.stack.at_mut(i).data.change = change;
                }
                Ok((None, ..)) => unreachable!("make_dir opens what it makes"),
                Err(err) => {
                    self.stack.lose_from(i);
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Directory `e`, entered only to look for included entries: an
    /// existing directory is opened; anything else waits (absent) until
    /// something is found to restore in it ([`Restore::materialize`]).
    fn find_dir(&self, e: &Entry, path: &Path) -> Result<(Option<OwnedFd>, Id, Option<Action>)> {
        let io_err = |err| Error::io(path, err);
        let Some(dir) = self.stack.top().raw() else {
            return Ok((None, (0, 0), Some(Action::Create)));
        };
        let name = cstr(&e.name).map_err(io_err)?;
        match meta::stat_at(dir, &name) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR && self.r.overwrite => {
                let node = self.stack.top().node.clone();
                self.make_dir(dir, &node, e, path)
            }
            Ok(_) => Ok((None, (0, 0), Some(Action::Replace))),
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                Ok((None, (0, 0), Some(Action::Create)))
            }
            Err(err) => Err(io_err(err)),
        }
    }

    /// Make directory `e` in `dir` (node `node`), or reuse one that is there.
    fn make_dir(
        &self,
        dir: RawFd,
        node: &Arc<DirNode>,
        e: &Entry,
        path: &Path,
    ) -> Result<(Option<OwnedFd>, Id, Option<Action>)> {
        let io_err = |err| Error::io(path, err);
        let name = cstr(&e.name).map_err(io_err)?;
        let mkdir = || super::cvt(unsafe { libc::mkdirat(dir, name.as_ptr(), 0o700) });
        let mut change = Some(Action::Create);
        if let Err(err) = mkdir() {
            if err.raw_os_error() != Some(libc::EEXIST) || !self.r.overwrite {
                return Err(io_err(err));
            }
            let is_dir = meta::stat_at(dir, &name)
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
            if is_dir {
                change = None;
            } else {
                self.clear(dir, node, &e.name, path)?;
                mkdir().map_err(io_err)?;
                change = Some(Action::Replace);
            }
        }
        let fd = meta::open_dir_at(dir, &name).map_err(io_err)?;
        let st = meta::stat_fd(fd.as_raw_fd()).map_err(io_err)?;
        if change.is_none() && !self.r.root && st.st_mode & 0o300 != 0o300 {
            // A read-only directory of the user's own, from an earlier
            // restore: writable until its metadata is set again on leaving.
            unsafe { libc::fchmod(fd.as_raw_fd(), (st.st_mode & 0o7777) | 0o700) };
        }
        Ok((Some(fd), identity(&st), change))
    }

    /// What making directory `e` would do, in a dry run: an existing
    /// directory is entered (`Some` descriptor), anything else would be made.
    fn dry_dir(&self, e: &Entry, path: &Path) -> Result<(Option<OwnedFd>, Id, Option<Action>)> {
        let io_err = |err| Error::io(path, err);
        let Some(dir) = self.stack.top().raw() else {
            return Ok((None, (0, 0), Some(Action::Create)));
        };
        let name = cstr(&e.name).map_err(io_err)?;
        match meta::stat_at(dir, &name) {
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                Ok((None, (0, 0), Some(Action::Create)))
            }
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR && self.r.overwrite => {
                let fd = meta::open_dir_at(dir, &name).map_err(io_err)?;
                let st = meta::stat_fd(fd.as_raw_fd()).map_err(io_err)?;
                Ok((Some(fd), identity(&st), None))
            }
            Ok(_) => {
                let node = self.stack.top().node.clone();
                self.clear(dir, &node, &e.name, path)?;
                Ok((None, (0, 0), Some(Action::Replace)))
            }
            Err(err) => Err(io_err(err)),
        }
    }

    /// Restore a non-directory into the top directory.
    fn leaf(&mut self, e: &mut Entry, path: &Path) -> Result<Action> {
        let io_err = |err| Error::io(path, err);
        let top = self.stack.top();
        let node = top.node.clone();
        let dir = match (&top.fd, self.dry) {
            (DirFd::Absent, true) => {
                self.r.count_dry(e);
                return Ok(Action::Create);
            }
            _ => top.raw().ok_or_else(|| io_err(lost()))?,
        };
        // A directory this restore made is empty but for what it put there
        // itself: nothing to look for (and a name that is there after all,
        // made by someone else since, fails O_EXCL below, named).
        let fresh = top.data.change.is_some() && !self.dry;
        let replaced = !fresh && self.clear(dir, &node, &e.name, path)?;
        let action = if replaced {
            Action::Replace
        } else {
            Action::Create
        };
        if self.dry {
            self.r.count_dry(e);
            return Ok(action);
        }
        let name = cstr(&e.name).map_err(io_err)?;
        if let Some(key) = e.link_key() {
            if self.link(dir, &node, key, &name, path)? {
                let count = match e.kind {
                    Kind::File => &self.r.counts.files,
                    _ => &self.r.counts.other,
                };
                count.fetch_add(1, Relaxed);
                return Ok(action);
            }
        }
        match e.kind {
            Kind::File => self.file(dir, node, e, &name, path)?,
            Kind::Symlink => {
                let target = cstr(&e.target).map_err(io_err)?;
                super::cvt(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) })
                    .map_err(io_err)?;
                self.special(dir, node, e, &name, path)?;
            }
            Kind::Dir => unreachable!("directories are entered"),
            _ => {
                let mode = meta::mode_type(e.kind) | 0o600;
                let rdev = e.rdev as libc::dev_t;
                super::cvt(unsafe { libc::mknodat(dir, name.as_ptr(), mode, rdev) })
                    .map_err(io_err)?;
                self.special(dir, node, e, &name, path)?;
            }
        }
        Ok(action)
    }

    /// Create a regular file empty and hand it to the pool.
    fn file(
        &self,
        dir: RawFd,
        node: Arc<DirNode>,
        e: &mut Entry,
        name: &CStr,
        path: &Path,
    ) -> Result<()> {
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // Private until its content and metadata are in place: the walk sets
        // a directory's mode when it leaves it, before the pool has written
        // the files queued in it, and a hard link may show it elsewhere.
        let fd = unsafe { libc::openat(dir, name.as_ptr(), flags, 0o600) };
        if fd < 0 {
            return Err(Error::io(path, io::Error::last_os_error()));
        }
        // SAFETY: a descriptor openat just returned, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let (first_link, made) = match e.link_key() {
            Some(key) => {
                let st = meta::stat_fd(fd.as_raw_fd()).map_err(|err| Error::io(path, err))?;
                let first = First {
                    node: node.clone(),
                    name: e.name.as_slice().into(),
                    id: identity(&st),
                };
                (self.r.links.add_first(key, first, true), Some(st))
            }
            None => (false, None),
        };
        let plan = self.r.plan(&e.extents);
        // A planned extent's location (about 60 bytes) counts as two more.
        let queued = e.extents.len() + plan.as_ref().map_or(0, |p| 2 * p.1.len());
        // At once: a file that holds more than the budget is queued alone,
        // which a second wait, for its plan, would never be.
        self.r.queue_extents(queued);
        let job = Job {
            fd,
            dir: node,
            queued,
            entry: take(e),
            path: path.to_path_buf(),
            first_link,
            plan,
            made,
        };
        if let Err(unsent) = self.tx.send(job) {
            self.r.dequeue_extents(unsent.0.queued);
        }
        Ok(())
    }

    /// A symlink, FIFO, socket or device just made: opened as itself
    /// (`O_PATH`), checked to be what was made, and its metadata set.
    fn special(
        &self,
        dir: RawFd,
        node: Arc<DirNode>,
        e: &Entry,
        name: &CStr,
        path: &Path,
    ) -> Result<()> {
        let io_err = |err| Error::io(path, err);
        let fd = meta::open_path_at(dir, name).map_err(io_err)?;
        let st = meta::stat_fd(fd.as_raw_fd()).map_err(io_err)?;
        if meta::kind_of(st.st_mode) != Some(e.kind) || st.st_nlink > 1 {
            let why = "replaced while being restored; its metadata is not set";
            return Err(io_err(io::Error::other(why)));
        }
        self.r
            .apply_meta(Handle::Path(fd.as_raw_fd()), e, path, Some(&st));
        self.r.counts.other.fetch_add(1, Relaxed);
        if let Some(key) = e.link_key() {
            let first = First {
                node,
                name: e.name.as_slice().into(),
                id: identity(&st),
            };
            self.r.links.add_first(key, first, false);
        }
        Ok(())
    }

    /// Make `name` in `dir` a hard link to the first restored member of its
    /// group, if there is one to link to. Returns whether it was linked; if
    /// not, the caller makes the entry itself.
    fn link(
        &self,
        dir: RawFd,
        node: &Arc<DirNode>,
        key: (u64, u64),
        name: &CStr,
        path: &Path,
    ) -> Result<bool> {
        let mut groups = self.r.links.lock();
        let Some(group) = groups.get_mut(&key) else {
            return Ok(false);
        };
        let Some(first) = group.first() else {
            return Ok(false);
        };
        // The first member may be gone, or its directory changed: the
        // caller makes a copy.
        let Ok(from) = self.stack.open_node(&first.node) else {
            return Ok(false);
        };
        let Ok(first_name) = cstr(&first.name) else {
            return Ok(false);
        };
        let linked =
            unsafe { libc::linkat(from.raw(), first_name.as_ptr(), dir, name.as_ptr(), 0) } == 0;
        if !linked {
            return Ok(false);
        }
        // A name swapped in for the first member would have been linked
        // instead: what was linked must be the inode restore made.
        let same = meta::stat_at(dir, name).is_ok_and(|st| identity(&st) == first.id);
        if !same {
            unsafe { libc::unlinkat(dir, name.as_ptr(), 0) };
            let why = "the first hard link of its group was replaced; restored as a copy";
            self.r.warn(Error::io(path, io::Error::other(why)));
            return Ok(false);
        }
        if let Group::Writing(_, linked) = group {
            linked.push((node.clone(), name.to_bytes().into()));
        }
        Ok(true)
    }
}

/// Take `e`, leaving its name (for `--delete`), kind and subtree (for the
/// walker to go into a directory).
fn take(e: &mut Entry) -> Entry {
    let mut stub = Entry::new(e.name.clone(), e.kind);
    stub.subtree = e.subtree;
    std::mem::replace(e, stub)
}

fn lost() -> io::Error {
    io::Error::other("its directory could not be opened again")
}

impl Restorer<'_> {
    /// Count `e` as a dry run's restore would.
    fn count_dry(&self, e: &Entry) {
        if e.kind == Kind::File {
            self.counts.files.fetch_add(1, Relaxed);
            self.counts.bytes.fetch_add(e.data_bytes(), Relaxed);
        } else {
            self.counts.other.fetch_add(1, Relaxed);
        }
    }
}

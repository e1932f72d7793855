//! The mount's logic, without fuser: what `rewind mount` shows and how it
//! reads. [`crate::fuse`] is a thin adapter that calls [`Vfs`] and replies;
//! the tests here call [`Vfs`] directly.
//!
//! # Map
//!
//! - [`layout`]: the virtual directories (`snapshots/`, `ids/`, `hosts/`,
//!   `tags/`, `latest`) as data built from the snapshot list.
//! - [`catalog`]: that list, refreshed while mounted.
//! - [`history`]: `history/`, every path across the snapshots, a file's
//!   versions side by side; merged from the trees when looked at.
//! - [`inode`]: inode numbers from pure functions, and the table of inodes the
//!   kernel holds.
//! - [`attr`]: what `stat` shows.
//! - [`file`](mod@file): a file's extents with cumulative offsets; reads and `lseek` by
//!   binary search.
//! - [`read`]: files being read, the bounded chunk cache, read-ahead.
//! - [`push`]: small files stored in the kernel's page cache ahead of a
//!   reader going through a directory in order.
//! - [`cache`]: the bounded, load-once cache under chunks, trees and read
//!   state.
//! - [`mountpoint`]: checks before mounting, detaching after.
//!
//! # Choices
//!
//! - Trees load on first lookup and stay only while the kernel holds one of
//!   their entries (plus a bounded cache), so mounting is instant and memory
//!   follows what was looked at.
//! - Everything inside a snapshot is immutable, so the kernel may cache
//!   attributes, names, directory listings and pages for long; only the
//!   virtual directories change.
//! - Reads need no file handle: their state belongs to the inode, so the
//!   kernel can skip `open`, `flush` and `release` (three round trips per
//!   file that a `cp -a` or `find | xargs cat` would otherwise wait for).
//! - A reader going through a directory in order gets the directory's next
//!   small files pushed into the kernel's page cache ahead of it
//!   ([`push`]), so most of its reads need no round trip at all.
//! - A mount starts with an empty root ([`Vfs::unrooted`]) and gets it
//!   ([`Vfs::set_root`]) once the mount is in place, so reading the
//!   snapshots overlaps the kernel's side of mounting.
//! - Every write is refused by the kernel (the mount is read-only) and again by
//!   the adapter (`EROFS`).
//!
//! Not done: one snapshot shown at several paths (`ids/…`, `snapshots/…`,
//! `hosts/…`) is a separate view at each, with its own inode numbers and
//! hard-link groups; `statfs` reports no sizes.

pub mod attr;
pub mod cache;
pub mod catalog;
mod dir;
pub mod file;
pub mod history;
pub mod inode;
pub mod layout;
pub mod mountpoint;
pub mod push;
pub mod read;

pub use attr::Attr;
pub use file::Whence;
pub use inode::{Ino, ROOT};

use crate::error::{Error, Result};
use crate::format::id::TreeId;
use crate::format::tree::{Kind, Time, Tree};
use crate::repo::Repository;
use catalog::Catalog;
use inode::{entry_key, Node, Table};
use layout::join;
use push::{Cursors, Job, Pusher, Sink};
use read::{Chunks, OpenFile};
use std::sync::{Arc, OnceLock};

/// Decoded trees kept beyond those the kernel holds entries of.
const TREE_CACHE_BYTES: u64 = 64 << 20;
/// Read state (extent maps) of recently read files.
const FILE_STATE_BYTES: u64 = 4 << 20;
/// Paths across snapshots ([`history::Trail`]s) kept for `history/`.
const TRAIL_BYTES: u64 = 8 << 20;
/// Listings of `history/` directories kept.
const LISTING_BYTES: u64 = 8 << 20;
/// Threads pushing files into the kernel's cache.
const PUSH_THREADS: usize = 2;

/// What the mount shows at its root.
#[derive(Clone, Debug)]
pub enum Root {
    /// The whole repository, through the virtual directories.
    Repository,
    /// One snapshot's root tree.
    Snapshot { tree: TreeId, time: Time },
}

/// Tuning.
#[derive(Clone, Debug)]
pub struct Options {
    /// Bytes of decompressed chunks to keep.
    pub cache_bytes: u64,
    /// Threads that load chunks ahead of sequential readers (0: none).
    pub read_ahead_threads: usize,
    /// Owner shown for directories that are not stored (uid, gid).
    pub owner: (u32, u32),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cache_bytes: 256 << 20,
            read_ahead_threads: 2,
            owner: (0, 0),
        }
    }
}

/// Who asks for extended attributes. Linux shows `trusted.*` attributes
/// only to callers with `CAP_SYS_ADMIN`; local file systems filter the names
/// themselves, and FUSE leaves it to the file system, so the mount must too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// May see `trusted.*` (the adapter: a request from uid 0).
    Privileged,
    /// Sees every namespace but `trusted.*`.
    Unprivileged,
}

impl Caller {
    /// Whether this caller may see the attribute `name`.
    pub fn sees(self, name: &[u8]) -> bool {
        self == Caller::Privileged || !name.starts_with(b"trusted.")
    }
}

/// One name in a directory listing.
#[derive(Clone, Copy, Debug)]
pub struct DirItem<'a> {
    pub ino: Ino,
    pub kind: Kind,
    pub name: &'a [u8],
    /// The offset that continues the listing after this name.
    pub next: u64,
}

/// A mounted repository or snapshot. Shared by all request threads.
pub struct Vfs {
    repo: Arc<Repository>,
    /// The snapshot list, for a mount of the whole repository.
    catalog: OnceLock<Catalog>,
    nodes: Table,
    trees: cache::Cache<TreeId, Tree>,
    chunks: Arc<Chunks>,
    /// Read state of recently read files.
    files: cache::Cache<Ino, OpenFile>,
    /// Paths of `history/` across their snapshots.
    trails: cache::Cache<history::HistKey, history::Trail>,
    /// Listings of `history/` directories.
    listings: cache::Cache<history::HistKey, history::Listing>,
    owner: (u32, u32),
    /// When mounted: the date of the virtual directories of an empty repository.
    mounted: Time,
    /// Read-ahead workers to start with the root.
    read_ahead_threads: usize,
    /// Whether [`Vfs::set_root`] ran.
    rooted: std::sync::atomic::AtomicBool,
    /// Where readers of each directory got to, for pushing.
    cursors: Cursors,
    /// Pushes files into the kernel's cache, once there is a kernel.
    pusher: OnceLock<Pusher>,
}

impl Vfs {
    /// Open `root` of `repo` for mounting. For the whole repository this reads
    /// the snapshot manifests; trees are read later, when looked at.
    pub fn new(repo: Arc<Repository>, root: Root, opts: &Options) -> Result<Vfs> {
        let vfs = Vfs::unrooted(repo, opts);
        vfs.set_root(root)?;
        Ok(vfs)
    }

    /// A mount with nothing at its root yet: nothing is read, so the mount
    /// can be in place before the snapshots are. [`Vfs::set_root`] must
    /// follow before any request.
    pub fn unrooted(repo: Arc<Repository>, opts: &Options) -> Vfs {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Vfs {
            chunks: Chunks::new(repo.clone(), opts.cache_bytes),
            repo,
            catalog: OnceLock::new(),
            nodes: Table::new(Node::Layout { path: Vec::new() }),
            trees: cache::Cache::new(TREE_CACHE_BYTES),
            files: cache::Cache::new(FILE_STATE_BYTES),
            trails: cache::Cache::new(TRAIL_BYTES),
            listings: cache::Cache::new(LISTING_BYTES),
            owner: opts.owner,
            mounted: Time {
                sec: now.as_secs() as i64,
                nsec: 0,
            },
            read_ahead_threads: opts.read_ahead_threads,
            rooted: std::sync::atomic::AtomicBool::new(false),
            cursors: Cursors::default(),
            pusher: OnceLock::new(),
        }
    }

    /// Show `root` at the mount's root, and start the read-ahead. Once.
    pub fn set_root(&self, root: Root) -> Result<()> {
        if self.rooted.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::InvalidInput(
                "the mount's root is set already".into(),
            ));
        }
        match root {
            Root::Repository => {
                let catalog = Catalog::new(self.repo.clone())?;
                let _ = self.catalog.set(catalog);
            }
            Root::Snapshot { tree, time } => self.nodes.set_root(Node::SnapRoot {
                path: Vec::new(),
                tree,
                time,
            }),
        }
        if self.read_ahead_threads > 0 {
            self.chunks.start_read_ahead(self.read_ahead_threads)?;
        }
        Ok(())
    }

    /// From now on, push the next small files of a directory read in order
    /// into `sink` (the kernel's page cache); see [`push`].
    pub fn push_to(&self, sink: Arc<dyn Sink>) -> Result<()> {
        let pusher = Pusher::start(&self.chunks, sink, PUSH_THREADS)?;
        let _ = self.pusher.set(pusher);
        Ok(())
    }

    /// The entry `name` in directory `parent`; counts one kernel reference.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        let slot = self.nodes.get(parent)?;
        let (key, node) = self
            .child(parent, &slot.node, name)
            .map_err(|e| self.about(parent, e))?;
        let ino = self.nodes.remember(key, parent, || node);
        self.getattr(ino)
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: Ino, n: u64) {
        self.nodes.forget(ino, n);
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let slot = self.nodes.get(ino)?;
        match &slot.node {
            Node::Layout { path } => self.layout_attr(ino, path),
            // nlink 1: "not counted" (as btrfs says for every directory),
            // so listing snapshots reads none of their trees.
            Node::SnapRoot { time, .. } => {
                Ok(attr::synthetic_dir(ino, 0o755, 1, self.owner, *time, true))
            }
            Node::Entry { .. } => Ok(attr::of_entry(ino, entry_of(&slot.node)?)),
            Node::History { top, path } => self.history_attr(ino, top, path),
            // Versions of one path are not links of each other.
            Node::Version { .. } => Ok(Attr {
                nlink: 1,
                ..attr::of_entry(ino, entry_of(&slot.node)?)
            }),
        }
    }

    /// Whether `ino` never changes (it lies inside a snapshot, or is a
    /// version in `history/`).
    pub fn is_stable(&self, ino: Ino) -> bool {
        self.nodes
            .get(ino)
            .is_ok_and(|s| !matches!(s.node, Node::Layout { .. } | Node::History { .. }))
    }

    /// The target of symlink `ino`.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let slot = self.nodes.get(ino)?;
        match &slot.node {
            Node::Layout { path } => match self.catalog()?.layout().at(path) {
                Some(layout::Item::Link(t)) => Ok(t.clone()),
                _ => Err(Error::InvalidInput("not a symlink".into())),
            },
            Node::Entry { .. } | Node::Version { .. } => {
                let e = entry_of(&slot.node)?;
                if e.kind != Kind::Symlink {
                    return Err(Error::InvalidInput("not a symlink".into()));
                }
                Ok(e.target.clone())
            }
            Node::SnapRoot { .. } | Node::History { .. } => {
                Err(Error::InvalidInput("not a symlink".into()))
            }
        }
    }

    /// List directory `ino` from `offset` (0 starts with `.` and `..`),
    /// calling `add` for each name until it returns true (buffer full).
    pub fn readdir(
        &self,
        ino: Ino,
        offset: u64,
        add: &mut dyn FnMut(DirItem<'_>) -> bool,
    ) -> Result<()> {
        let slot = self.nodes.get(ino)?;
        if offset == 0
            && add(DirItem {
                ino,
                kind: Kind::Dir,
                name: b".",
                next: 1,
            })
        {
            return Ok(());
        }
        if offset <= 1
            && add(DirItem {
                ino: slot.parent,
                kind: Kind::Dir,
                name: b"..",
                next: 2,
            })
        {
            return Ok(());
        }
        let skip = offset.saturating_sub(2) as usize;
        let listed = match &slot.node {
            Node::Layout { path } => self.list_layout(path, skip, add),
            Node::SnapRoot { tree, .. } => self.list_tree(ino, ino, tree, skip, add),
            Node::Entry { view, .. } => {
                let sub = subtree_of(&slot.node)?;
                self.list_tree(*view, ino, &sub, skip, add)
            }
            Node::History { top, path } => self.list_history(ino, top, path, skip, add),
            Node::Version { .. } => Err(Error::InvalidInput("not a directory".into())),
        };
        listed.map_err(|e| self.about(ino, e))
    }

    /// Check that `ino` is a regular file that can be read. Reads need no
    /// handle: their state lives with the inode, so the kernel may skip
    /// `open` and `release` entirely.
    pub fn open(&self, ino: Ino) -> Result<()> {
        self.file(ino).map(drop)
    }

    /// The read state of regular file `ino`, kept while it is being read.
    fn file(&self, ino: Ino) -> Result<Arc<OpenFile>> {
        self.files.get_or_load(&ino, OpenFile::weight, || {
            let slot = self.nodes.get(ino)?;
            let e = entry_of(&slot.node)?;
            if e.kind != Kind::File {
                return Err(Error::InvalidInput(format!(
                    "{} is not a regular file",
                    self.path(ino)
                )));
            }
            Ok(OpenFile::new(ino, &e.extents))
        })
    }

    /// Up to `size` bytes of regular file `ino` from `offset`. Errors name
    /// the file by its path in the mount.
    pub fn read(&self, ino: Ino, offset: u64, size: usize) -> Result<Vec<u8>> {
        if offset == 0 {
            self.push_after(ino);
        }
        let f = self.file(ino)?;
        let (data, done) = f
            .read(&self.chunks, offset, size)
            .map_err(|e| self.about(ino, e))?;
        if done {
            // Handed out in full: the kernel holds the pages; a later read
            // (after it dropped them) starts afresh.
            self.files.discard(&ino);
        }
        Ok(data)
    }

    /// A reader started file `ino`: if it goes through the directory in
    /// order, queue the next files for pushing. Only inodes the kernel holds
    /// (listed or looked up) can take a push.
    fn push_after(&self, ino: Ino) {
        let Some(pusher) = self.pusher.get() else {
            return;
        };
        let Ok(slot) = self.nodes.get(ino) else {
            return;
        };
        let Node::Entry { view, dir, index } = &slot.node else {
            return;
        };
        for i in self.cursors.started(slot.parent, &dir.entries, *index) {
            let key = entry_key(*view, slot.parent, &dir.entries[i]);
            let Some((ino, held)) = self.nodes.held(key) else {
                continue;
            };
            // All links of a hard-link group share the inode of the link the
            // kernel found first; links read at different moments of a
            // backup may differ, so only that link's bytes may go in.
            let own = held.parent == slot.parent
                && matches!(held.node, Node::Entry { index: j, .. } if j == i);
            if own {
                pusher.queue(Job {
                    ino,
                    dir: dir.clone(),
                    index: i,
                });
            }
        }
    }

    /// `lseek(SEEK_DATA / SEEK_HOLE)` in regular file `ino`; `None` means
    /// `ENXIO`.
    pub fn seek(&self, ino: Ino, offset: u64, whence: Whence) -> Result<Option<u64>> {
        Ok(self.file(ino)?.seek(offset, whence))
    }

    /// The value of extended attribute `name` of `ino`, if it has one and
    /// `caller` may see it.
    pub fn getxattr(&self, ino: Ino, name: &[u8], caller: Caller) -> Result<Option<Vec<u8>>> {
        let slot = self.nodes.get(ino)?;
        let Some(e) = slot.node.entry() else {
            return Ok(None);
        };
        Ok(e.xattrs
            .iter()
            .find(|x| x.name == name && caller.sees(&x.name))
            .map(|x| x.value.clone()))
    }

    /// The names of `ino`'s extended attributes that `caller` may see, each
    /// followed by a NUL.
    pub fn listxattr(&self, ino: Ino, caller: Caller) -> Result<Vec<u8>> {
        let slot = self.nodes.get(ino)?;
        let mut out = Vec::new();
        for x in slot
            .node
            .entry()
            .map(|e| e.xattrs.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|x| caller.sees(&x.name))
        {
            out.extend_from_slice(&x.name);
            out.push(0);
        }
        Ok(out)
    }

    /// `ino`'s path from the mount's root (`/snapshots/…/etc/passwd`), for
    /// messages.
    pub fn path(&self, ino: Ino) -> String {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut cur = ino;
        for _ in 0..100_000 {
            let Ok(slot) = self.nodes.get(cur) else {
                names.push(b"?".to_vec());
                break;
            };
            match &slot.node {
                Node::Layout { path } | Node::SnapRoot { path, .. } => {
                    if !path.is_empty() {
                        names.push(path.clone());
                    }
                    break;
                }
                Node::History { top, path } => {
                    names.push(join(top, path));
                    break;
                }
                Node::Version { name, .. } => {
                    names.push(name.clone());
                    cur = slot.parent;
                }
                Node::Entry { .. } => {
                    names.push(
                        slot.node
                            .entry()
                            .map(|e| e.name.clone())
                            .unwrap_or_default(),
                    );
                    cur = slot.parent;
                }
            }
        }
        names.reverse();
        format!("/{}", String::from_utf8_lossy(&names.join(&b'/')))
    }

    /// Inodes held for the kernel now.
    pub fn inodes(&self) -> usize {
        self.nodes.len()
    }

    /// Bytes of decompressed chunks cached now.
    pub fn cached_bytes(&self) -> u64 {
        self.chunks.cached_bytes()
    }

    /// Name the file or directory in an error about it.
    fn about(&self, ino: Ino, e: Error) -> Error {
        match e {
            Error::Corrupt { object, reason } => Error::Corrupt {
                object: format!("{} ({object})", self.path(ino)),
                reason,
            },
            Error::Io { path, source } => Error::Io {
                path: self.path(ino).into(),
                source: std::io::Error::new(source.kind(), format!("{}: {source}", path.display())),
            },
            other => other,
        }
    }

    fn catalog(&self) -> Result<&Catalog> {
        self.catalog.get().ok_or_else(|| {
            Error::NotFound("virtual directory (the mount shows one snapshot)".into())
        })
    }
}

fn entry_of(node: &Node) -> Result<&crate::format::tree::Entry> {
    node.entry()
        .ok_or_else(|| Error::InvalidInput("not a stored entry".into()))
}

/// The tree of directory entry `node`.
fn subtree_of(node: &Node) -> Result<TreeId> {
    let e = entry_of(node)?;
    match (e.kind, e.subtree) {
        (Kind::Dir, Some(t)) => Ok(t),
        _ => Err(Error::InvalidInput(format!(
            "{} is not a directory",
            String::from_utf8_lossy(&e.name)
        ))),
    }
}

#[cfg(test)]
mod tests;

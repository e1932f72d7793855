//! `rewind dump`: a file's bytes, or a snapshot (or a path in it) as a tar
//! stream, to any writer.
//!
//! ```text
//! walk (trees, in the content reader's thread) ─> members, each directory before its contents
//!   └─> ContentStream: data extents decoded ahead by a pool ─> tar headers + content ─> out
//! ```
//!
//! Members are named as `tar -C PARENT -c NAME` names them: the dumped entry
//! by its own name, everything below it under that name (`dump
//! latest:/srv/www` gives `www/`, `www/index.php`, …). The snapshot root has
//! no name and no metadata: dumping it gives its children at the top
//! (`srv/www/…`, the paths restic and borg give). The first member of a
//! hard-link group carries the content; later members are links to it.
//!
//! Memory stays flat whatever the size: content is read ahead within the
//! [`ReadAhead`] budget and written as it comes; holes are never
//! materialised (sparse members, see [`tar`]).
//!
//! An error (a damaged chunk, a tree that does not load) names the file,
//! ends the archive where it is, without the end-of-archive marker, and makes
//! every tar reader fail on it ([`tar::TarWriter::abort`]): a short archive is
//! never passed off as a whole one. A stop request ([`crate::interrupt`],
//! looked at before each member and each piece of content) ends it the same
//! way, with [`Error::Interrupted`].

pub mod acl;
#[cfg(test)]
mod read;
pub mod tar;

use crate::error::{Error, Result};
use crate::format::id::TreeId;
use crate::format::tree::Tree;
use crate::format::tree::{Entry, Kind};
use crate::progress::Progress;
use crate::repo::content::{ContentStream, Extents, Feed, Piece, Pieces, ReadAhead};
use crate::repo::walk::{self, Flow, Visit};
use crate::repo::Repository;
use std::collections::hash_map::{Entry as Slot, HashMap};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tar::{Member, TarWriter};

/// What a tar dump wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpOutcome {
    /// Members written (hard links included).
    pub members: u64,
    /// Regular files with their content.
    pub files: u64,
    /// Content bytes (holes excluded).
    pub bytes: u64,
    /// Sockets left out: tar has no type for them.
    pub sockets: u64,
    /// Extended attributes left out: names tar cannot store.
    pub lost_xattrs: u64,
}

/// Write the content of file `entry` (at `snap_path` in its snapshot) to
/// `out`, holes as zeros. Returns the bytes written.
pub fn write_content<W: Write>(
    repo: &Arc<Repository>,
    entry: &Entry,
    snap_path: &Path,
    mut out: W,
    opts: ReadAhead,
) -> Result<u64> {
    let out_err = |e| Error::io("standard output", e);
    let mut zeros = Vec::new();
    let mut written = 0u64;
    for piece in Pieces::new(repo.clone(), entry.extents.clone(), opts)? {
        crate::interrupt::check()?;
        match piece.map_err(|e| with_path(e, snap_path))? {
            Piece::Data(d) => {
                out.write_all(&d).map_err(out_err)?;
                written += d.len() as u64;
            }
            Piece::Hole(n) => {
                zeros.resize(zeros.len().max(n.min(1 << 20) as usize), 0);
                let mut left = n;
                while left > 0 {
                    let k = left.min(zeros.len() as u64) as usize;
                    out.write_all(&zeros[..k]).map_err(out_err)?;
                    left -= k as u64;
                }
                written += n;
            }
        }
    }
    out.flush().map_err(out_err)?;
    Ok(written)
}

/// Write `top` (found at `snap_path` in its snapshot) and everything below it
/// to `out` as a tar archive. Sockets and extended attributes tar cannot hold
/// are reported through `progress` and counted; any other failure ends the
/// archive unfinished and is returned, naming the file.
pub fn write_tar<W: Write>(
    repo: &Arc<Repository>,
    top: &Entry,
    snap_path: &Path,
    out: W,
    opts: ReadAhead,
    progress: &dyn Progress,
) -> Result<DumpOutcome> {
    let root = top.kind == Kind::Dir && top.name == b"/";
    let parent = match snap_path.parent() {
        Some(p) if !root => p.to_path_buf(),
        _ => PathBuf::from("/"),
    };
    let (walk_repo, walk_top, walk_parent) = (repo.clone(), top.clone(), parent.clone());
    let mut stream = ContentStream::start_with(repo.clone(), opts, move |feed| {
        send_members(&walk_repo, walk_top, root, walk_parent, feed)
    })?;
    let mut tar = TarWriter::new(out, "standard output");
    let mut outcome = DumpOutcome::default();
    let mut run = || -> Result<()> {
        while let Some(item) = stream.next_file() {
            crate::interrupt::check()?;
            let item = item?;
            let path = parent.join(OsStr::from_bytes(&item.path));
            write_member(&mut tar, &mut stream, &item, &path, &mut outcome, progress)?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => {
            tar.finish()?;
            Ok(outcome)
        }
        Err(e) => {
            // The error is what the caller must see; a failure to write the
            // broken ending is secondary (the archive is unusable either way).
            let _ = tar.abort();
            Err(e)
        }
    }
}

/// One member: headers, then its content as the stream gives it.
fn write_member<W: Write>(
    tar: &mut TarWriter<W>,
    stream: &mut ContentStream<Result<Item>>,
    item: &Item,
    path: &Path,
    outcome: &mut DumpOutcome,
    progress: &dyn Progress,
) -> Result<()> {
    let e = &item.entry;
    if e.kind == Kind::Socket && item.link.is_none() {
        outcome.sockets += 1;
        progress.warn(&Error::InvalidInput(format!(
            "{}: socket not dumped (tar has no type for sockets)",
            path.display()
        )));
        return Ok(());
    }
    let member = Member {
        path: &item.path,
        entry: e,
        link: item.link.as_deref(),
    };
    let encoded = tar::encode(&member).map_err(|err| with_path(err, path))?;
    for name in &encoded.unwritable {
        outcome.lost_xattrs += 1;
        progress.warn(&Error::InvalidInput(format!(
            "{}: extended attribute {:?} not dumped (a tar header cannot hold a name with '=')",
            path.display(),
            String::from_utf8_lossy(name)
        )));
    }
    tar.begin(&encoded)?;
    outcome.members += 1;
    if item.link.is_some() || e.kind != Kind::File {
        return Ok(());
    }
    let mut done = 0u64;
    while let Some(piece) = stream.next_piece() {
        crate::interrupt::check()?;
        match piece.map_err(|err| with_path(err, path))? {
            Piece::Data(d) => {
                tar.content(&d)?;
                done += d.len() as u64;
                progress.bytes_read(d.len() as u64);
            }
            // A file with holes is a sparse member: its map says where they are.
            Piece::Hole(_) => {}
        }
    }
    if done != encoded.content {
        return Err(Error::InvalidInput(format!(
            "{}: content reader gave {done} of {} bytes",
            path.display(),
            encoded.content
        )));
    }
    outcome.files += 1;
    outcome.bytes += done;
    progress.file_done(path, done);
    Ok(())
}

/// A member as the walk finds it.
struct Item {
    /// The path in the archive.
    path: Vec<u8>,
    entry: Entry,
    /// The archive path of the first member of its hard-link group.
    link: Option<Vec<u8>>,
}

impl Extents for Result<Item> {
    /// A regular file's content, once: hard links to it carry none.
    fn extents(&self) -> &[crate::format::tree::Extent] {
        match self {
            Ok(i) if i.link.is_none() && i.entry.kind == Kind::File => &i.entry.extents,
            _ => &[],
        }
    }
}

/// Send the entries below (and including) `top`, the dumped one, to `feed`
/// in archive order: each directory before its contents, names in tree
/// order. A walk of the tree walker, so depth is bounded by memory, not the
/// stack (paths may exceed `PATH_MAX`). It ends after its first error, sent
/// as the last item. `root`: `top` is the snapshot's root directory, which
/// is not a member itself.
fn send_members(
    repo: &Repository,
    top: Entry,
    root: bool,
    parent: PathBuf,
    feed: &mut Feed<'_, Result<Item>>,
) {
    let prefix = if root { Vec::new() } else { top.name.clone() };
    let below = top.subtree.filter(|_| top.kind == Kind::Dir);
    let mut w = DumpWalk {
        repo,
        feed,
        root,
        links: HashMap::new(),
        parent,
        waiting: None,
        stopped: false,
    };
    // The root is not a member; another dumped directory is, once its tree
    // is read.
    let flow = if root {
        Flow::Next
    } else {
        w.member(top, &prefix)
    };
    let Some(below) = below.filter(|_| flow == Flow::Next) else {
        if let Some(item) = w.waiting.take() {
            w.send(item);
        }
        return;
    };
    if let Err(e) = walk::walk(below, &prefix, &mut w) {
        w.feed.send(Err(e));
    }
}

/// The dump's walk: each entry becomes a member, sent to the content
/// stream; a directory's member is sent once its tree is read.
struct DumpWalk<'w, 'f> {
    repo: &'w Repository,
    feed: &'w mut Feed<'f, Result<Item>>,
    /// Dumping a whole snapshot: archive paths are the walk's without the
    /// leading `/`.
    root: bool,
    /// Hard-link groups met so far: (dev, ino) to the first member's path.
    links: HashMap<(u64, u64), Vec<u8>>,
    /// The snapshot directory that holds the dumped entry (for messages).
    parent: PathBuf,
    /// A directory's member, sent when its tree is read.
    waiting: Option<Item>,
    /// The consumer is gone: nothing more is read or sent.
    stopped: bool,
}

impl DumpWalk<'_, '_> {
    /// The archive path of the walk's `path`.
    fn archive<'p>(&self, path: &'p [u8]) -> &'p [u8] {
        match (self.root, path.first()) {
            (true, Some(b'/')) => &path[1..],
            _ => path,
        }
    }

    /// Entry `e` at archive path `path` is a member: sent now, or for a
    /// directory with a tree, once the tree is read.
    fn member(&mut self, e: Entry, path: &[u8]) -> Flow {
        // Sockets are left out, so they are never the target of a link.
        let link = match e.link_key() {
            Some(key) if e.kind != Kind::Socket => match self.links.entry(key) {
                Slot::Occupied(first) => Some(first.get().clone()),
                Slot::Vacant(v) => {
                    v.insert(path.to_vec());
                    None
                }
            },
            _ => None,
        };
        let dir = e.kind == Kind::Dir && e.subtree.is_some();
        let item = Item {
            path: path.to_vec(),
            entry: e,
            link,
        };
        if dir {
            self.waiting = Some(item);
            return Flow::Next;
        }
        self.send(item)
    }

    /// Send `item`; once the consumer is gone, stop.
    fn send(&mut self, item: Item) -> Flow {
        if !self.stopped && self.feed.send(Ok(item)) {
            return Flow::Next;
        }
        self.stopped = true;
        Flow::Stop
    }
}

impl Visit for DumpWalk<'_, '_> {
    type Error = Error;

    fn enter(&mut self, path: &[u8], id: TreeId) -> Result<Option<Tree>> {
        if self.stopped {
            return Ok(None);
        }
        let tree = self.repo.load_tree(&id).map_err(|e| {
            let at = self.parent.join(OsStr::from_bytes(self.archive(path)));
            with_path(e, &at)
        })?;
        if let Some(item) = self.waiting.take() {
            if self.send(item) == Flow::Stop {
                return Ok(None);
            }
        }
        Ok(Some(tree))
    }

    fn entry(&mut self, path: &[u8], e: &mut Entry) -> Result<Flow> {
        if self.stopped {
            return Ok(Flow::Stop);
        }
        let path = self.archive(path).to_vec();
        // Taken, not cloned: the walk reads only the kind and the subtree
        // afterwards.
        let (kind, subtree) = (e.kind, e.subtree);
        let entry = std::mem::replace(e, Entry::new(Vec::new(), kind));
        e.subtree = subtree;
        Ok(self.member(entry, &path))
    }
}

/// Name the file an error concerns.
fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Corrupt { object, reason } => Error::Corrupt {
            object: format!("{} ({object})", path.display()),
            reason,
        },
        Error::Io { path: what, source } => Error::io(
            path,
            std::io::Error::new(source.kind(), format!("{}: {source}", what.display())),
        ),
        Error::Interrupted(sig) => Error::Interrupted(sig),
        other => Error::InvalidInput(format!("{}: {other}", path.display())),
    }
}

#[cfg(test)]
mod tests;

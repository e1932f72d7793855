//! `history/`: every path the snapshots of a host ever held, merged into one
//! tree, where a file is a directory of its distinct versions.
//!
//! ```text
//! history/srv/www/                     every name srv/www held in any snapshot
//! history/srv/www/config.php/          config.php's versions, one per change:
//!     2026-12-01T02:15:01-ab12cd34     as snapshot ab12cd34 (the first to hold it) stored it
//!     2026-12-03T02:15:02-5e6f7a8b     a later change
//! ```
//!
//! # What a history directory shows
//!
//! - A directory lists every name it held in any snapshot of the history.
//! - A path that is not a directory (a file, symlink, device, FIFO, socket)
//!   is a directory of its versions. Going through the snapshots that hold
//!   the path, oldest first, a version starts wherever the entry differs from
//!   the one in the snapshot before that held the path ([`crate::history`]
//!   says what counts: content, mode, owner, mtime, xattrs; not atime, ctime,
//!   nlink or the inode). So unchanged nights do not repeat, a snapshot that
//!   does not hold the path (another backup job of the host) changes nothing,
//!   and a file deleted and later restored as it was is one version. A version is
//!   named `<local time>-<short id>` of the first snapshot that held it
//!   (the full id should two versions of one path share that name), and is
//!   the stored entry: stat, xattrs, reads and `readlink` as in `snapshots/`,
//!   with nlink 1.
//! - A path that was a directory in some snapshots and something else in
//!   others lists both: the names it held as a directory and the versions
//!   from the times it was not. (A version's name wins over a child of the
//!   same name.)
//! - A history directory takes the mode and owner of the newest entry at its
//!   path (for a file, its read bits also as search bits) and its mtime, so
//!   the kernel lets in whoever the newest snapshot lets in; each version keeps
//!   its own.
//!
//! # How it is merged
//!
//! Lazily, level by level, from the trees. A [`Trail`] is one path across
//! the snapshots of a history: the distinct entries found at it ([`Place`]s,
//! 16-byte fingerprints instead of extents) and which snapshot holds which.
//! The trail of `a/b` is built from the trail of `a`: `b` is looked up once
//! in each distinct tree of `a`, so snapshots that share a tree share the
//! work. Trails and listings are kept in the mount's bounded caches, keyed
//! by the history's stamp (a new snapshot: a new stamp, merged afresh), and
//! trees come from the tree cache, so memory stays bounded whatever the
//! number of snapshots or paths looked at.

use super::attr::{self, Attr};
use super::inode::{history_key, version_key, Ino, Key, Node};
use super::layout::{join, local_time_name, split, History, SnapInfo};
use super::{DirItem, Vfs};
use crate::error::{Error, Result};
use crate::format::id::TreeId;
use crate::format::tree::{Entry, Kind, Time, Tree};
use crate::history::fingerprint;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Threads loading the trees of one level of a history at once.
const PREFETCH_THREADS: usize = 4;

/// Cache key of a history directory: the history's stamp and the path.
pub type HistKey = ([u8; 16], Vec<u8>);

/// What a history keeps of the entry at a path in one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The tree holding the entry and its index there; `None` for a
    /// snapshot's root, which is not an entry.
    pub at: Option<(TreeId, usize)>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Time,
    pub subtree: Option<TreeId>,
    /// [`crate::history::fingerprint`]: equal for entries that are one version.
    pub fingerprint: [u8; 16],
}

impl Place {
    fn of(e: &Entry, tree: TreeId, index: usize) -> Place {
        Place {
            at: Some((tree, index)),
            kind: e.kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            subtree: e.subtree,
            fingerprint: fingerprint(e),
        }
    }

    /// The permissions of the history directory of an entry like this one:
    /// a directory's own, a file's with search bits where it has read bits.
    pub fn dir_perm(&self) -> u16 {
        let m = self.mode & 0o7777;
        if self.kind == Kind::Dir {
            return m as u16;
        }
        let m = m & 0o777;
        (m | (m & 0o444) >> 2) as u16
    }
}

/// One version of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub name: Vec<u8>,
    /// Its entry, in [`Trail::places`].
    pub place: usize,
    /// The first snapshot (position in the history) that held it.
    pub first: usize,
}

/// One path across the snapshots of a history.
#[derive(Clone, Debug, Default)]
pub struct Trail {
    /// The distinct entries found at the path.
    pub places: Vec<Place>,
    /// For each snapshot holding the path, oldest first: (its position in
    /// the history, its entry in `places`).
    pub held: Vec<(usize, usize)>,
    pub versions: Vec<Version>,
}

impl Trail {
    /// The snapshots' roots.
    pub fn root(snaps: &[SnapInfo]) -> Trail {
        let mut places: Vec<Place> = Vec::new();
        let mut of_tree: HashMap<TreeId, usize> = HashMap::new();
        let mut held = Vec::with_capacity(snaps.len());
        for (i, s) in snaps.iter().enumerate() {
            let p = *of_tree.entry(s.tree).or_insert_with(|| {
                places.push(Place {
                    at: None,
                    kind: Kind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    mtime: s.time,
                    subtree: Some(s.tree),
                    fingerprint: s.tree.0[..16].try_into().expect("16 bytes"),
                });
                places.len() - 1
            });
            held.push((i, p));
        }
        Trail {
            places,
            held,
            versions: Vec::new(),
        }
    }

    /// The trail of `name` inside this trail's path: looked up once in each
    /// distinct directory tree held here, loaded with `load`.
    pub fn step(
        &self,
        name: &[u8],
        snaps: &[SnapInfo],
        time_name: &dyn Fn(Time) -> String,
        load: &mut dyn FnMut(&TreeId) -> Result<Arc<Tree>>,
    ) -> Result<Trail> {
        let mut places = Vec::new();
        let mut of_entry: HashMap<(TreeId, usize), usize> = HashMap::new();
        let mut child_of = Vec::with_capacity(self.places.len());
        for p in &self.places {
            let (Kind::Dir, Some(sub)) = (p.kind, p.subtree) else {
                child_of.push(None);
                continue;
            };
            let tree = load(&sub)?;
            let Ok(index) = tree
                .entries
                .binary_search_by(|e| e.name.as_slice().cmp(name))
            else {
                child_of.push(None);
                continue;
            };
            let at = *of_entry.entry((sub, index)).or_insert_with(|| {
                places.push(Place::of(&tree.entries[index], sub, index));
                places.len() - 1
            });
            child_of.push(Some(at));
        }
        let held: Vec<(usize, usize)> = self
            .held
            .iter()
            .filter_map(|&(snap, p)| child_of[p].map(|c| (snap, c)))
            .collect();
        let versions = versions(&places, &held, snaps, time_name);
        Ok(Trail {
            places,
            held,
            versions,
        })
    }

    /// The distinct trees of the path where it is a directory: what
    /// [`Trail::step`] and [`Trail::children`] load.
    pub fn dirs(&self) -> Vec<TreeId> {
        let mut seen = BTreeSet::new();
        self.places
            .iter()
            .filter_map(|p| match (p.kind, p.subtree) {
                (Kind::Dir, Some(sub)) if seen.insert(sub) => Some(sub),
                _ => None,
            })
            .collect()
    }

    /// The entry of the newest snapshot that holds the path.
    pub fn newest(&self) -> Option<&Place> {
        self.held.last().map(|&(_, p)| &self.places[p])
    }

    /// Every name held inside the path where it was a directory, sorted.
    pub fn children(
        &self,
        load: &mut dyn FnMut(&TreeId) -> Result<Arc<Tree>>,
    ) -> Result<Vec<Vec<u8>>> {
        let mut names: BTreeSet<Vec<u8>> = BTreeSet::new();
        for sub in self.dirs() {
            for e in &load(&sub)?.entries {
                if !names.contains(&e.name) {
                    names.insert(e.name.clone());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Roughly the bytes it takes, for the cache.
    pub fn weight(&self) -> u64 {
        let names: usize = self.versions.iter().map(|v| v.name.len() + 64).sum();
        (self.places.len() * std::mem::size_of::<Place>() + self.held.len() * 16 + names + 96)
            as u64
    }
}

/// The versions of a path: a new one wherever the entry differs from the
/// one in the snapshot before that held the path. Directories are not
/// versions, but a directory in between makes the next file a new version.
pub fn versions(
    places: &[Place],
    held: &[(usize, usize)],
    snaps: &[SnapInfo],
    time_name: &dyn Fn(Time) -> String,
) -> Vec<Version> {
    let mut out = Vec::new();
    let mut before: Option<&[u8; 16]> = None;
    for &(snap, p) in held {
        let place = &places[p];
        if place.kind != Kind::Dir && before != Some(&place.fingerprint) {
            out.push(Version {
                name: Vec::new(),
                place: p,
                first: snap,
            });
        }
        before = Some(&place.fingerprint);
    }
    let name = |v: &Version, full: bool| {
        let s = &snaps[v.first];
        let id = if full { s.id.to_hex() } else { s.id.short() };
        format!("{}-{id}", time_name(s.time)).into_bytes()
    };
    let short: Vec<Vec<u8>> = out.iter().map(|v| name(v, false)).collect();
    let mut count: HashMap<&[u8], usize> = HashMap::new();
    for n in &short {
        *count.entry(n).or_default() += 1;
    }
    let full: Vec<bool> = short.iter().map(|n| count[n.as_slice()] > 1).collect();
    for (v, full) in out.iter_mut().zip(full) {
        v.name = name(v, full);
    }
    out
}

/// One name in a history directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listed {
    /// A path below: a history directory.
    Child,
    /// The version at this index of the trail's versions.
    Version(usize),
}

/// A history directory's names, sorted, with what each is and its type.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub items: Vec<(Vec<u8>, Listed, Kind)>,
}

impl Listing {
    /// The children of a path and its versions, in one name order; a
    /// version wins over a child of the same name.
    pub fn new(trail: &Trail, children: Vec<Vec<u8>>) -> Listing {
        let mut items: Vec<(Vec<u8>, Listed, Kind)> = trail
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let kind = trail.places[v.place].kind;
                (v.name.clone(), Listed::Version(i), kind)
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let versions = items.len();
        for name in children {
            if items[..versions]
                .binary_search_by(|(n, ..)| n.as_slice().cmp(&name))
                .is_err()
            {
                items.push((name, Listed::Child, Kind::Dir));
            }
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        Listing { items }
    }

    fn weight(&self) -> u64 {
        self.items
            .iter()
            .map(|(n, ..)| n.len() as u64 + 48)
            .sum::<u64>()
            + 64
    }
}

impl Vfs {
    /// Run `f` on the history whose top is at layout path `top`, as the
    /// snapshot list is now.
    fn with_history<T>(&self, top: &[u8], f: impl FnOnce(&History) -> Result<T>) -> Result<T> {
        let layout = self.catalog()?.layout();
        let h = layout
            .history(top)
            .ok_or_else(|| Error::NotFound(String::from_utf8_lossy(top).into_owned()))?;
        f(h)
    }

    /// The trail of `path` in history `h`, from the cache or built from the
    /// nearest cached trail above it.
    fn trail(&self, h: &History, path: &[u8]) -> Result<Arc<Trail>> {
        let key = |p: &[u8]| (h.stamp, p.to_vec());
        let mut missing = Vec::new();
        let mut p = path;
        let mut trail = loop {
            if let Some(t) = self.trails.peek(&key(p)) {
                break t;
            }
            if p.is_empty() {
                break self
                    .trails
                    .get_or_load(&key(p), Trail::weight, || Ok(Trail::root(&h.snaps)))?;
            }
            missing.push(p);
            p = split(p).0;
        };
        for p in missing.into_iter().rev() {
            let above = trail;
            trail = self.trails.get_or_load(&key(p), Trail::weight, || {
                self.prefetch(&above.dirs());
                above.step(split(p).1, &h.snaps, &local_time_name, &mut |id| {
                    self.tree(id)
                })
            })?;
        }
        Ok(trail)
    }

    /// The attributes of history directory `path` of the history at `top`.
    pub(super) fn history_attr(&self, ino: Ino, top: &[u8], path: &[u8]) -> Result<Attr> {
        self.with_history(top, |h| {
            if path.is_empty() {
                let time = h.snaps.last().map_or(self.mounted, |s| s.time);
                return Ok(attr::synthetic_dir(ino, 0o555, 1, self.owner, time, false));
            }
            let trail = self.trail(h, path)?;
            let p = trail.newest().ok_or_else(|| not_found(path))?;
            Ok(attr::synthetic_dir(
                ino,
                p.dir_perm(),
                1,
                (p.uid, p.gid),
                p.mtime,
                false,
            ))
        })
    }

    /// `name` in history directory `path` (inode `dir`): a version of the
    /// path, or the history directory of a path below.
    pub(super) fn history_child(
        &self,
        dir: Ino,
        top: &[u8],
        path: &[u8],
        name: &[u8],
    ) -> Result<(Key, Node)> {
        self.with_history(top, |h| {
            let trail = self.trail(h, path)?;
            if let Some(v) = trail.versions.iter().find(|v| v.name == name) {
                let (tree, index) = trail.places[v.place].at.ok_or_else(|| not_found(name))?;
                let node = Node::Version {
                    name: name.to_vec(),
                    dir: self.tree(&tree)?,
                    index,
                };
                return Ok((version_key(dir, name), node));
            }
            let child = join(path, name);
            if self.trail(h, &child)?.held.is_empty() {
                return Err(not_found(&child));
            }
            let key = history_key(top, &child);
            let node = Node::History {
                top: top.to_vec(),
                path: child,
            };
            Ok((key, node))
        })
    }

    /// Names of history directory `path` (inode `dir`) from position `skip`.
    pub(super) fn list_history(
        &self,
        dir: Ino,
        top: &[u8],
        path: &[u8],
        skip: usize,
        add: &mut dyn FnMut(DirItem<'_>) -> bool,
    ) -> Result<()> {
        let listing = self.with_history(top, |h| {
            self.listings
                .get_or_load(&(h.stamp, path.to_vec()), Listing::weight, || {
                    let trail = self.trail(h, path)?;
                    self.prefetch(&trail.dirs());
                    let children = trail.children(&mut |id| self.tree(id))?;
                    Ok(Listing::new(&trail, children))
                })
        })?;
        for (i, (name, what, kind)) in listing.items.iter().enumerate().skip(skip) {
            let ino = match what {
                Listed::Child => history_key(top, &join(path, name)).ino,
                Listed::Version(_) => version_key(dir, name).ino,
            };
            let item = DirItem {
                ino,
                kind: *kind,
                name,
                next: i as u64 + 3,
            };
            if add(item) {
                break;
            }
        }
        Ok(())
    }
}

impl Vfs {
    /// Load `ids` into the tree cache on a few threads, ahead of a pass that
    /// needs each of them (the distinct trees of one level of a history):
    /// reading and decoding overlap. Failures are left for that pass to
    /// meet and report; so are trees the cache could not keep.
    fn prefetch(&self, ids: &[TreeId]) {
        if ids.len() < 2 {
            return;
        }
        crate::repo::side_by_side(ids, PREFETCH_THREADS, |id| {
            let _ = self.tree(id);
        });
    }
}

fn not_found(name: &[u8]) -> Error {
    Error::NotFound(String::from_utf8_lossy(name).into_owned())
}

#[cfg(test)]
mod tests;

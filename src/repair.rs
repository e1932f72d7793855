//! `repair snapshots`: snapshots whose data is lost, rewritten without it.
//!
//! A blob is usable when some index record places it in a pack that exists
//! and is long enough to hold it (a pack lost or cut short loses the blobs
//! in it). Every snapshot's trees are walked bottom up: a file that needs an
//! unusable blob (or whose length the index contradicts) is removed from its
//! directory, and a directory whose tree is unusable or unreadable is kept
//! with its metadata and emptied. Trees that lose nothing keep their ids, so
//! a repaired snapshot shares everything intact with the others. Each
//! changed snapshot is written anew (its tags gain `repaired`, all else is
//! kept) and the damaged one removed; then `check` passes and `prune` can
//! run again.
//!
//! Blobs that reading found damaged (`check --read-data`'s findings, passed
//! in) count as lost too.
//!
//! Packs in no index may hold what seems lost: the caller runs
//! `repair index` first (the CLI refuses until then).

use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId, SnapshotId, TreeId};
use crate::format::pack;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Extent, Kind, Tree};
use crate::repo::walk::{bottom_up, BottomUp};
use crate::repo::writer::RepoWriter;
use crate::repo::Repository;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The tag a repaired snapshot carries.
pub const REPAIRED_TAG: &str = "repaired";

/// What a repair found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairReport {
    /// Snapshots looked at.
    pub snapshots: usize,
    /// Snapshots that lost data, each with what it lost.
    pub repaired: Vec<Repaired>,
    /// Snapshots whose manifest could not be read (not repairable: forget them).
    pub unreadable: Vec<String>,
}

/// One snapshot that lost data.
#[derive(Clone, Debug, Serialize)]
pub struct Repaired {
    /// The damaged snapshot (removed, unless a dry run).
    pub old: String,
    /// Its replacement (its id would be this in a dry run, where nothing is written).
    pub new: String,
    /// Files removed because their data is lost (absolute paths, lossy UTF-8).
    pub removed: Vec<String>,
    /// Directories kept empty because their listing is lost.
    pub emptied: Vec<String>,
}

/// A path lost below a tree, relative to it.
#[derive(Clone, Debug)]
enum Loss {
    Removed(Vec<u8>),
    Emptied(Vec<u8>),
}

impl Loss {
    fn under(&self, name: &[u8]) -> Loss {
        let join = |p: &[u8]| [name, b"/", p].concat();
        match self {
            Loss::Removed(p) => Loss::Removed(join(p)),
            Loss::Emptied(p) => Loss::Emptied(join(p)),
        }
    }
}

/// What became of a tree.
#[derive(Clone)]
enum Outcome {
    /// Nothing below it is lost.
    Same,
    /// Rewritten as this tree, having lost these paths.
    New(TreeId, Arc<Vec<Loss>>),
    /// Unusable or unreadable: the directory is emptied.
    Broken,
}

/// Rewrite every snapshot of `repo` that needs lost data (nothing is written
/// with `dry_run`). The caller holds the exclusive lock.
///
/// `damaged`: blobs known to be damaged although their pack is there (what
/// `check --read-data` found); they count as lost.
pub fn repair_snapshots(
    repo: &Arc<Repository>,
    damaged: &HashSet<BlobId>,
    dry_run: bool,
) -> Result<RepairReport> {
    let mut report = RepairReport::default();
    let sizes: HashMap<PackId, u64> = repo
        .list_packs()?
        .into_iter()
        .map(|(id, info)| (id, info.size))
        .collect();
    let writer = RepoWriter::new(repo.clone(), repo.config().compression, dry_run)?;
    let mut fixer = Fixer {
        repo,
        writer: &writer,
        sizes,
        trees: HashMap::new(),
        usable: damaged.iter().map(|id| (*id, None)).collect(),
        empty: None,
    };
    let (snaps, bad) = repo.snapshots()?;
    report.unreadable = bad.iter().map(|e| e.to_string()).collect();
    report.snapshots = snaps.len();
    let mut todo: Vec<(SnapshotId, Snapshot, Arc<Vec<Loss>>)> = Vec::new();
    for (id, snap) in snaps {
        crate::interrupt::check()?;
        let (tree, losses) = match fixer.tree(snap.tree)? {
            Outcome::Same => continue,
            Outcome::New(t, l) => (t, l),
            Outcome::Broken => (fixer.empty()?, Arc::new(vec![Loss::Emptied(Vec::new())])),
        };
        let mut new = snap.clone();
        new.tree = tree;
        if !new.tags.iter().any(|t| t == REPAIRED_TAG) {
            new.tags.push(REPAIRED_TAG.into());
        }
        todo.push((id, new, losses));
    }
    writer.flush()?;
    for (old, snap, losses) in todo {
        crate::interrupt::check()?;
        let new = writer.commit(&snap)?;
        if !dry_run {
            repo.remove_snapshot(&old)?;
        }
        let path = |p: &[u8]| format!("/{}", String::from_utf8_lossy(p));
        let (mut removed, mut emptied) = (Vec::new(), Vec::new());
        for l in losses.iter() {
            match l {
                Loss::Removed(p) => removed.push(path(p)),
                Loss::Emptied(p) => emptied.push(path(p)),
            }
        }
        report.repaired.push(Repaired {
            old: old.to_hex(),
            new: new.to_hex(),
            removed,
            emptied,
        });
    }
    Ok(report)
}

struct Fixer<'a> {
    repo: &'a Arc<Repository>,
    writer: &'a RepoWriter,
    /// Every pack in the repository, with its size.
    sizes: HashMap<PackId, u64>,
    /// Trees done in this run.
    trees: HashMap<TreeId, Outcome>,
    /// Blob id -> its stored length when usable (`None`: lost).
    usable: HashMap<BlobId, Option<u32>>,
    empty: Option<TreeId>,
}

impl Fixer<'_> {
    /// The length of blob `id` when some index record places it whole in a
    /// pack that exists; `None` when it is lost.
    fn usable(&mut self, id: &BlobId) -> Result<Option<u32>> {
        if let Some(u) = self.usable.get(id) {
            return Ok(*u);
        }
        let found = self.repo.lookup_all(id)?.into_iter().find(|loc| {
            let end = loc.frame.offset as u64 + loc.frame.stored_len as u64;
            self.sizes
                .get(&loc.pack)
                .is_some_and(|&size| size >= end + pack::TRAILER_LEN as u64)
        });
        let u = found.map(|loc| loc.raw_len);
        self.usable.insert(*id, u);
        Ok(u)
    }

    fn empty(&mut self) -> Result<TreeId> {
        if let Some(id) = self.empty {
            return Ok(id);
        }
        let id = self.writer.add_tree(&Tree::new(Vec::new()).encode())?;
        self.empty = Some(id);
        Ok(id)
    }

    /// What becomes of tree `root` (children first: [`bottom_up`]).
    fn tree(&mut self, root: TreeId) -> Result<Outcome> {
        bottom_up(root, self)?;
        Ok(self.trees.get(&root).cloned().unwrap_or(Outcome::Broken))
    }

    /// `tree` with its lost files removed and its subtrees' outcomes applied.
    fn rewrite(&mut self, mut tree: Tree) -> Result<Outcome> {
        let mut losses = Vec::new();
        let mut keep = Vec::with_capacity(tree.entries.len());
        for mut e in std::mem::take(&mut tree.entries) {
            if e.kind == Kind::Dir {
                if let Some(sub) = e.subtree {
                    match self.trees.get(&sub).cloned().unwrap_or(Outcome::Broken) {
                        Outcome::Same => {}
                        Outcome::New(t, l) => {
                            e.subtree = Some(t);
                            losses.extend(l.iter().map(|x| x.under(&e.name)));
                        }
                        Outcome::Broken => {
                            e.subtree = Some(self.empty()?);
                            losses.push(Loss::Emptied(e.name.clone()));
                        }
                    }
                }
            } else if e.kind == Kind::File {
                let mut lost = false;
                for x in &e.extents {
                    if let Extent::Data { id, len } = x {
                        if self.usable(id)? != Some(*len) {
                            lost = true;
                            break;
                        }
                    }
                }
                if lost {
                    losses.push(Loss::Removed(e.name.clone()));
                    continue;
                }
            }
            keep.push(e);
        }
        if losses.is_empty() {
            return Ok(Outcome::Same);
        }
        tree.entries = keep;
        let id = self.writer.add_tree(&tree.encode())?;
        Ok(Outcome::New(id, Arc::new(losses)))
    }
}

impl BottomUp for Fixer<'_> {
    /// A tree whose blob is lost or does not load is [`Outcome::Broken`],
    /// not gone below.
    fn enter(&mut self, id: TreeId) -> Result<Option<Tree>> {
        if self.trees.contains_key(&id) || self.usable(&id.blob())?.is_none() {
            self.trees.entry(id).or_insert(Outcome::Broken);
            return Ok(None);
        }
        match self.repo.load_tree(&id) {
            Ok(t) => Ok(Some(t)),
            Err(Error::Interrupted(m)) => Err(Error::Interrupted(m)),
            Err(_) => {
                self.trees.insert(id, Outcome::Broken);
                Ok(None)
            }
        }
    }

    fn leave(&mut self, id: TreeId, tree: Tree) -> Result<()> {
        let outcome = self.rewrite(tree)?;
        self.trees.insert(id, outcome);
        Ok(())
    }
}

//! `copy`: snapshots from one repository into another, each with its own
//! keys and format, local or remote.
//!
//! ```text
//! for each snapshot (oldest first) not in the destination yet:
//!   trees, bottom up: a tree the destination already has is skipped whole
//!   data blobs the destination lacks: read (checked), stored again
//!   RepoWriter: packs, then index, then the snapshot (with `original`)
//! ```
//!
//! Two repositories share blob ids when one was made with `init
//! --copy-chunker-params-from` the other (the same chunker and blob-id key):
//! then a blob or a whole tree the destination has is never read, and a copy
//! costs what changed since the last one. Otherwise every data blob of a
//! copied snapshot is read and its id computed with the destination's key,
//! and every tree rewritten; blobs the destination has are not stored twice.
//!
//! A copied snapshot keeps its time, host, paths, tags and summary, and
//! names the source snapshot in `original`, so a snapshot is copied once
//! however often `copy` runs.

use crate::error::{Error, Result};
use crate::format::id::{BlobId, SnapshotId, TreeId};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Extent, Tree};
use crate::progress::Progress;
use crate::repo::walk::{bottom_up, BottomUp};
use crate::repo::writer::RepoWriter;
use crate::repo::Repository;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What a copy did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CopyReport {
    /// (source id, destination id) of each snapshot copied.
    pub copied: Vec<(String, String)>,
    /// Source snapshots the destination already had.
    pub skipped: Vec<String>,
    /// Blobs the destination did not have.
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Plaintext bytes read from the source.
    pub bytes_read: u64,
    /// What the destination grew by.
    pub bytes_added: u64,
}

/// Whether the two repositories name blobs alike.
fn same_ids(src: &Repository, dst: &Repository) -> bool {
    src.hasher().blob_key() == dst.hasher().blob_key()
}

/// Copy `snapshots` (of `src`, oldest first) into `dst`, skipping those it
/// has, storing up to `connections` packs at once. The caller holds a
/// shared lock on each.
pub fn copy(
    src: &Repository,
    dst: &Arc<Repository>,
    snapshots: &[(SnapshotId, Snapshot)],
    connections: usize,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let mut report = CopyReport::default();
    let (present, _) = dst.snapshots()?;
    let mut have: HashSet<SnapshotId> = present.iter().filter_map(|(_, s)| s.original).collect();
    // A snapshot the destination holds itself (copied back, or shared ids).
    have.extend(present.iter().map(|(id, _)| *id));
    let writer =
        RepoWriter::with_connections(dst.clone(), dst.config().compression, false, connections)?;
    let mut copier = Copier {
        src,
        dst,
        writer: &writer,
        same: same_ids(src, dst),
        trees: HashMap::new(),
        blobs: HashMap::new(),
        report: &mut report,
        progress,
    };
    let mut todo = Vec::new();
    for (id, snap) in snapshots {
        if have.contains(id) {
            copier.report.skipped.push(id.to_hex());
            continue;
        }
        crate::interrupt::check()?;
        let tree = copier.tree(snap.tree)?;
        let mut copied = snap.clone();
        copied.tree = tree;
        copied.original = Some(snap.original.unwrap_or(*id));
        copied.parent = None;
        todo.push((*id, copied));
    }
    // Every blob first, then the snapshots: one index for all of them.
    writer.flush()?;
    for (id, snap) in todo {
        let new = writer.commit(&snap)?;
        report.copied.push((id.to_hex(), new.to_hex()));
    }
    let stats = writer.stats();
    report.bytes_added = stats.added_bytes();
    report.data_blobs = stats.data_blobs;
    report.tree_blobs = stats.tree_blobs;
    Ok(report)
}

struct Copier<'a> {
    src: &'a Repository,
    dst: &'a Arc<Repository>,
    writer: &'a RepoWriter,
    /// The repositories share blob ids.
    same: bool,
    /// Source tree id -> destination tree id, for trees done in this run.
    trees: HashMap<TreeId, TreeId>,
    /// Source data blob id -> destination id (only when ids differ).
    blobs: HashMap<BlobId, BlobId>,
    report: &'a mut CopyReport,
    progress: &'a dyn Progress,
}

impl Copier<'_> {
    /// The destination's id of source tree `root`, copying what it lacks
    /// (children first: [`bottom_up`]).
    fn tree(&mut self, root: TreeId) -> Result<TreeId> {
        bottom_up(root, self)?;
        self.trees
            .get(&root)
            .copied()
            .ok_or_else(|| Error::corrupt(format!("tree {}", root.short()), "was not copied"))
    }

    /// The destination's id of source data blob `id`, copying it if needed.
    fn data(&mut self, id: &BlobId, len: u32) -> Result<BlobId> {
        if self.same {
            if self.dst.has_blob(id)? {
                return Ok(*id);
            }
        } else if let Some(new) = self.blobs.get(id) {
            return Ok(*new);
        }
        crate::interrupt::check()?;
        let plain = self.src.read_data(id, len)?;
        self.report.bytes_read += plain.len() as u64;
        self.progress.bytes_read(plain.len() as u64);
        let new = self.writer.add_data(&plain)?;
        if !self.same {
            self.blobs.insert(*id, new);
        }
        Ok(new)
    }
}

impl BottomUp for Copier<'_> {
    fn enter(&mut self, id: TreeId) -> Result<Option<Tree>> {
        if self.trees.contains_key(&id) {
            return Ok(None);
        }
        // A tree the destination has holds everything below it (a tree is
        // written only after its children).
        if self.same && self.dst.has_blob(&id.blob())? {
            self.trees.insert(id, id);
            return Ok(None);
        }
        self.src.load_tree(&id).map(Some)
    }

    fn leave(&mut self, id: TreeId, mut tree: Tree) -> Result<()> {
        for e in &mut tree.entries {
            if let Some(sub) = e.subtree {
                e.subtree = Some(*self.trees.get(&sub).ok_or_else(|| {
                    Error::corrupt(format!("tree {}", id.short()), "a subtree was not copied")
                })?);
            }
            for x in &mut e.extents {
                if let Extent::Data { id, len } = x {
                    *id = self.data(id, *len)?;
                }
            }
        }
        let new = self.writer.add_tree(&tree.encode())?;
        self.trees.insert(id, new);
        Ok(())
    }
}

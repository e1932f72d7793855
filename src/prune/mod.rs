//! Prune: delete what no snapshot needs, and never a byte that one does.
//!
//! ```text
//! snapshots -> trees -> used blob ids          (external sort: flat memory)
//! index files -> k-way merge by id ⋈ used ids  -> per pack: used and unused bytes
//! decide: unused packs go; packs whose unused share passes --max-unused are repacked
//! repack: copy their used blobs into new packs + a new index   (fsynced)
//! merge:  one new index of every blob in the packs that stay   (fsynced)
//! only then: delete the old index files, then the old packs
//! ```
//!
//! A prune killed at any moment leaves a valid repository: until the old index
//! files are deleted they still describe every old pack, which still exists;
//! after that, the new index files describe everything kept. Deleting a pack
//! that an index still names would be the one fatal order, and it never
//! happens. Prune runs under an exclusive lock, so no backup adds blobs while
//! it decides what is used.

mod repair;
mod sorted;

pub use repair::repair_index;

use crate::backend::ObjectInfo;
use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId, TreeId};
use crate::format::index::{IndexWriter, Location};
use crate::format::tree::{Entry, Extent, Kind, Tree};
use crate::progress::Progress;
use crate::repo::walk::{walk, Flow, Visit};
use crate::repo::writer::RepoWriter;
use crate::repo::Repository;
use sorted::{IdSorter, KMerge, Membership};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// How aggressive to be.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Repack a pack when more than this percentage of its bytes is unused.
    pub max_unused: f64,
    pub dry_run: bool,
    /// Packs stored at once while repacking.
    pub connections: usize,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: 5.0,
            dry_run: false,
            connections: crate::repo::writer::DEFAULT_CONNECTIONS,
        }
    }
}

/// What prune found and did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PruneReport {
    pub packs_before: u64,
    pub bytes_before: u64,
    pub blobs_used: u64,
    pub blobs_unused: u64,
    /// Stored bytes of blobs some snapshot uses.
    pub bytes_used: u64,
    /// Stored bytes of blobs no snapshot uses (and of duplicate copies).
    pub bytes_unused: u64,
    pub packs_deleted: u64,
    pub packs_repacked: u64,
    /// Packs no index names (left by interrupted backups).
    pub packs_unreferenced: u64,
    pub packs_written: u64,
    pub index_files_replaced: u64,
    pub bytes_after: u64,
    pub bytes_freed: u64,
    pub dry_run: bool,
}

#[derive(Default, Clone, Copy)]
struct PackUse {
    total: u64,
    used: u64,
    /// Blobs readers find here that a snapshot uses: a pack with any goes
    /// only by repacking, whatever its byte shares round to.
    used_blobs: u64,
}

/// What becomes of a pack.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fate {
    Keep,
    Repack,
    Delete,
}

/// The stored bytes a blob accounts for: its share of a bundled frame,
/// rounded up (a small blob in a well-compressed frame is never 0 bytes).
fn stored_share(loc: &Location) -> u64 {
    (loc.frame.stored_len as u64 * loc.raw_len as u64).div_ceil(loc.frame.raw_len.max(1) as u64)
}

/// Prune `repo`. The caller holds an exclusive lock.
pub fn prune(
    repo: &Arc<Repository>,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut damaged = repo.unreadable_index_files();
    damaged.extend(repo.verify_index_objects()?.into_iter().map(|(_, e)| e));
    if let Some(bad) = damaged.first() {
        return Err(Error::InvalidInput(format!(
            "{bad}; refusing to prune while an index file is damaged (run `rewind repair index` first)"
        )));
    }
    let old_index: Vec<String> = repo
        .index_files()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let listed = repo.list_packs()?;
    let on_disk: HashMap<PackId, u64> = listed.iter().map(|(id, o)| (*id, o.size)).collect();
    let modified: HashMap<PackId, ObjectInfo> = listed.into_iter().collect();
    report.packs_before = on_disk.len() as u64;
    report.bytes_before = on_disk.values().sum();

    let usage = pack_usage(repo, &modified, &mut report)?;
    let mut fates: HashMap<PackId, Fate> = HashMap::new();
    for (pack, size) in &on_disk {
        let fate = match usage.get(pack) {
            // A pack no index names yet may belong to a backup still running
            // (one whose lock went stale): only old ones go.
            None if recent(&modified[pack]) => Fate::Keep,
            None => {
                report.packs_unreferenced += 1;
                Fate::Delete
            }
            Some(u) if u.used_blobs == 0 => Fate::Delete,
            Some(u) if (u.total - u.used) as f64 * 100.0 > opts.max_unused * u.total as f64 => {
                Fate::Repack
            }
            Some(_) => Fate::Keep,
        };
        match fate {
            Fate::Delete => report.packs_deleted += 1,
            Fate::Repack => report.packs_repacked += 1,
            Fate::Keep => report.bytes_after += size,
        }
        fates.insert(*pack, fate);
    }
    if opts.dry_run {
        report.bytes_after += repack_estimate(&usage, &fates, &on_disk);
        report.bytes_freed = report.bytes_before.saturating_sub(report.bytes_after);
        return Ok(report);
    }
    let writer = RepoWriter::for_repack(repo.clone(), repo.config().compression, opts.connections)?;
    if report.packs_repacked > 0 {
        repack(repo, &writer, &modified, &fates, progress)?;
    }
    writer.flush()?;
    report.packs_written = writer.stats().packs;
    // What the repack wrote may carry old names (names are content hashes: a
    // prune rerun after a killed one writes the same packs and index again).
    // None of it is deleted below.
    let (made_packs, made_index) = writer.made();
    for p in &made_packs {
        fates.insert(*p, Fate::Keep);
    }
    let mut new_index: HashSet<String> = made_index.into_iter().collect();
    // The merged index may come out byte for byte equal to an old file, and
    // so carry its name: that one must not be deleted below.
    new_index.extend(write_merged_index(repo, &fates)?);
    // Before anything goes: every blob a snapshot uses is indexed in a pack
    // that stays. A fault in the accounting above then costs a prune, never
    // data.
    confirm_kept(repo, &fates)?;
    // The new index files are durable: the old ones, then the old packs, may
    // go, as long as this process's lock still holds (a prune suspended past
    // the stale age, or whose lock was removed, deletes nothing).
    repo.check_locks_held()?;
    for name in &old_index {
        if !new_index.contains(name) {
            repo.check_locks_held()?;
            repo.delete_index(name)?;
            report.index_files_replaced += 1;
        }
    }
    for (pack, fate) in &fates {
        if *fate != Fate::Keep {
            repo.check_locks_held()?;
            repo.delete_pack(pack)?;
        }
    }
    repo.remove_stale_temp(crate::repo::lock::stale_after())?;
    report.bytes_after = repo.list_packs()?.iter().map(|(_, o)| o.size).sum();
    report.bytes_freed = report.bytes_before.saturating_sub(report.bytes_after);
    Ok(report)
}

/// Each blob's index records in packs that exist, the copy prune keeps
/// first: the one in the newest pack (by the storage's time, then pack id).
/// Copies arise where a backup stored a blob again or a repack was cut
/// short (the same record in several index files is one copy): a prune
/// killed after writing its new packs and index leaves every blob it
/// moved in an old pack and a new one. Counting the new copy as the
/// used one makes the rerun delete the old packs (no used blob left in them)
/// instead of keeping both; an arbitrary choice could keep both copies for
/// good, each pack looking mostly used.
fn blob_groups<'a>(
    repo: &'a Repository,
    listed: &'a HashMap<PackId, ObjectInfo>,
) -> impl Iterator<Item = Result<(BlobId, Vec<Location>)>> + 'a {
    let rank = move |l: &Location| (listed[&l.pack].modified, l.pack);
    let mut records = merged_index(repo)
        .filter(move |r| {
            r.as_ref()
                .map_or(true, |(_, l)| listed.contains_key(&l.pack))
        })
        .peekable();
    std::iter::from_fn(move || {
        let (id, first) = match records.next()? {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let mut locs = vec![first];
        while let Some(Ok((next, _))) = records.peek() {
            if *next != id {
                break;
            }
            if let Some(Ok((_, l))) = records.next() {
                locs.push(l);
            }
        }
        // The same record in two index files (a kept pack named by an old
        // index and by the one a cut-short prune wrote) is one copy.
        let at = |l: &Location| (l.pack, l.frame.offset, l.inner);
        locs.sort_by_key(at);
        locs.dedup_by_key(|l| at(l));
        let newest = (0..locs.len()).max_by_key(|&i| rank(&locs[i])).unwrap_or(0);
        locs.swap(0, newest);
        Some(Ok((id, locs)))
    })
}

/// Every index record, merged in id order; the first of equal ids is the one
/// readers use.
fn merged_index(repo: &Repository) -> impl Iterator<Item = Result<(BlobId, Location)>> {
    let files = repo.index_files();
    let iters: Vec<_> = files
        .into_iter()
        .map(|f| {
            let n = f.len();
            (0..n).map(move |i| f.record_at(i))
        })
        .collect();
    KMerge::new(iters)
}

/// Ids that some snapshot uses, sorted.
fn used_blobs(repo: &Repository) -> Result<Membership> {
    let (snaps, bad) = repo.snapshots()?;
    if let Some(e) = bad.into_iter().next() {
        return Err(Error::InvalidInput(format!(
            "{e}; refusing to prune while a snapshot cannot be read (it may need data prune would delete)"
        )));
    }
    let mut u = UsedBlobs {
        repo,
        sorter: IdSorter::new(),
        recent: HashSet::new(),
        sid: String::new(),
    };
    for (sid, snap) in &snaps {
        u.sid = sid.short();
        walk(snap.tree, b"", &mut u)?;
    }
    Ok(Membership::new(u.sorter.finish()?))
}

/// The walk of [`used_blobs`]: a tree that cannot be read ends it.
struct UsedBlobs<'a> {
    repo: &'a Repository,
    sorter: IdSorter,
    /// Trees walked recently: skips shared subtrees across snapshots with
    /// bounded memory (cleared when full, costing only repeated reads).
    recent: HashSet<TreeId>,
    /// The snapshot walked (short id).
    sid: String,
}

impl Visit for UsedBlobs<'_> {
    type Error = Error;

    fn enter(&mut self, _: &[u8], id: TreeId) -> Result<Option<Tree>> {
        crate::interrupt::check()?;
        if self.recent.len() >= 1 << 16 {
            self.recent.clear();
        }
        if !self.recent.insert(id) {
            return Ok(None);
        }
        self.sorter.push(id.blob())?;
        let tree = self.repo.load_tree(&id).map_err(|e| {
            Error::InvalidInput(format!(
                "snapshot {}: {e}; refusing to prune a damaged repository",
                self.sid
            ))
        })?;
        Ok(Some(tree))
    }

    fn entry(&mut self, _: &[u8], e: &mut Entry) -> Result<Flow> {
        if e.kind != Kind::File {
            return Ok(Flow::Next);
        }
        for x in &e.extents {
            if let Extent::Data { id, .. } = x {
                self.sorter.push(*id)?;
            }
        }
        Ok(Flow::Next)
    }
}

/// Used and total stored bytes per pack. A blob stored twice counts as used
/// only where readers find it (its first record).
fn pack_usage(
    repo: &Repository,
    listed: &HashMap<PackId, ObjectInfo>,
    report: &mut PruneReport,
) -> Result<HashMap<PackId, PackUse>> {
    let mut used = used_blobs(repo)?;
    let mut usage: HashMap<PackId, PackUse> = HashMap::new();
    for group in blob_groups(repo, listed) {
        let (id, locs) = group?;
        for (i, loc) in locs.iter().enumerate() {
            let share = stored_share(loc);
            let u = usage.entry(loc.pack).or_default();
            u.total += share;
            if i > 0 {
                report.bytes_unused += share; // another copy: its bytes are unused
            } else if used.contains(&id)? {
                u.used += share;
                u.used_blobs += 1;
                report.blobs_used += 1;
                report.bytes_used += share;
            } else {
                report.blobs_unused += 1;
                report.bytes_unused += share;
            }
        }
    }
    let missing = used.never_asked()?;
    if missing > 0 {
        return Err(Error::InvalidInput(format!(
            "{missing} blobs that snapshots use are in no index or only in missing packs; \
             refusing to prune a damaged repository (see `rewind check`, `rewind repair index`)"
        )));
    }
    Ok(usage)
}

/// Whether a pack was written too recently to be judged unreferenced: it
/// may belong to a backup still running (whose index is not written yet).
fn recent(o: &ObjectInfo) -> bool {
    match o.modified {
        Some(t) => t
            .elapsed()
            .map_or(true, |age| age < crate::repo::lock::stale_after()),
        None => false,
    }
}

/// What repacked packs will take after prune (for dry runs).
fn repack_estimate(
    usage: &HashMap<PackId, PackUse>,
    fates: &HashMap<PackId, Fate>,
    sizes: &HashMap<PackId, u64>,
) -> u64 {
    fates
        .iter()
        .filter(|(_, f)| **f == Fate::Repack)
        .map(|(p, _)| {
            let u = usage[p];
            sizes[p] * u.used / u.total.max(1)
        })
        .sum()
}

/// Fail unless every blob a snapshot uses has an index record in a pack
/// whose fate is [`Fate::Keep`] (the new packs included).
fn confirm_kept(repo: &Repository, fates: &HashMap<PackId, Fate>) -> Result<()> {
    let mut used = used_blobs(repo)?;
    for rec in merged_index(repo) {
        crate::interrupt::check()?;
        let (id, loc) = rec?;
        if fates.get(&loc.pack) == Some(&Fate::Keep) {
            used.contains(&id)?;
        }
    }
    let lost = used.never_asked()?;
    if lost > 0 {
        return Err(Error::InvalidInput(format!(
            "prune would leave {lost} blobs that snapshots use in no kept pack; nothing was deleted (please report this)"
        )));
    }
    Ok(())
}

/// Copy the used blobs of packs to be repacked into new packs.
fn repack(
    repo: &Arc<Repository>,
    writer: &RepoWriter,
    listed: &HashMap<PackId, ObjectInfo>,
    fates: &HashMap<PackId, Fate>,
    progress: &dyn Progress,
) -> Result<()> {
    let mut used = used_blobs(repo)?;
    for group in blob_groups(repo, listed) {
        crate::interrupt::check()?;
        let (id, locs) = group?;
        // The copy counted as used (see `blob_groups`): moved when its pack
        // is repacked, unless another copy is in a pack that stays.
        let loc = locs[0];
        if fates.get(&loc.pack) != Some(&Fate::Repack)
            || locs.iter().any(|l| fates.get(&l.pack) == Some(&Fate::Keep))
            || !used.contains(&id)?
        {
            continue;
        }
        let plain = repo.read_blob_at(&id, &loc)?;
        progress.bytes_read(plain.len() as u64);
        match loc.kind {
            crate::format::pack::BlobKind::Data => writer.add_data(&plain)?,
            crate::format::pack::BlobKind::Tree => writer.add_tree(&plain)?.blob(),
        };
    }
    Ok(())
}

/// Records per index file prune writes: bounds the memory one takes (60 MiB)
/// whatever the repository's size.
const RECORDS_PER_INDEX: u32 = 1 << 20;

/// Index files for every blob whose pack stays, written record by record, at
/// most [`RECORDS_PER_INDEX`] each. Returns their names.
fn write_merged_index(repo: &Repository, fates: &HashMap<PackId, Fate>) -> Result<Vec<String>> {
    let keep = |loc: &Location| fates.get(&loc.pack) == Some(&Fate::Keep);
    let records = || {
        let mut prev: Option<BlobId> = None;
        merged_index(repo).filter(move |r| match r {
            Ok((id, loc)) if keep(loc) && prev != Some(*id) => {
                prev = Some(*id);
                true
            }
            Ok(_) => false,
            Err(_) => true,
        })
    };
    let mut count = 0u64;
    for r in records() {
        r?;
        count += 1;
    }
    let mut names = Vec::new();
    let mut it = records();
    while count > 0 {
        let n = count.min(RECORDS_PER_INDEX as u64) as u32;
        count -= n as u64;
        // The packs this file's records name, then the records.
        let batch: Vec<(BlobId, Location)> = (&mut it).take(n as usize).collect::<Result<_>>()?;
        let mut packs: Vec<PackId> = batch.iter().map(|(_, l)| l.pack).collect();
        packs.sort();
        packs.dedup();
        let mut w = IndexWriter::new(Vec::new(), &packs, n)?;
        for (id, loc) in &batch {
            w.push(id, loc)?;
        }
        let (layout, _) = w.finish()?;
        names.push(repo.save_index_layout(layout)?);
    }
    Ok(names)
}

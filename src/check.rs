//! `check`: proves the repository is whole, and names what is not.
//!
//! Always: every index file's checksum and order; every pack an index names
//! exists and holds every blob the index places in it; every snapshot decodes;
//! every tree every snapshot reaches decodes; every blob a file needs is
//! indexed. With `read_data` (all packs or a random share of them): every byte
//! of each chosen pack is read, the pack's hash matches its name, its header
//! decodes, and every blob in it decodes to its id.
//!
//! Damage is reported by pack and by the files that depend on it, in every
//! snapshot that reaches them. A blob counts as damaged only when it cannot be
//! read back as the index places it (its pack is missing, cut short before the
//! blob's end, or the blob fails to decode when read): exactly the blobs a
//! restore would fail on, so the files `check` names are the files a restore
//! fails, and no others.

use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId, TreeId};
use crate::format::index::Location;
use crate::format::pack::{self, PackEntry};
use crate::format::tree::{Entry, Extent, Kind, Tree};
use crate::progress::Progress;
use crate::repo::walk::{walk, Flow, Visit};
use crate::repo::Repository;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// How much data to read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadData {
    None,
    All,
    /// This percentage of packs, chosen at random.
    Subset(f64),
}

/// What check found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub snapshots: usize,
    pub trees: usize,
    pub packs: usize,
    pub packs_read: usize,
    pub bytes_read: u64,
    /// Packs no index names (left by an interrupted backup; harmless).
    pub unreferenced_packs: Vec<PackId>,
    pub damaged_packs: BTreeSet<PackId>,
    /// `snapshot-id:path` of files and directories that need damaged data.
    pub damaged_files: Vec<String>,
    /// Blobs that reading their packs found damaged (with --read-data).
    pub damaged_blobs: HashSet<BlobId>,
    /// Index files that are damaged (`repair index` rebuilds them).
    pub damaged_index_files: usize,
    /// Every problem, one line each.
    pub errors: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    fn damaged(&mut self, pack: PackId, why: String) {
        self.errors.push(format!("pack {pack}: {why}"));
        self.damaged_packs.insert(pack);
    }
}

/// Where each indexed blob is, as a reader finds it: in a pack that exists
/// when some index record says so (a blob stored again after its pack was
/// lost), else where the later index file says.
type Blobs = HashMap<BlobId, Location>;

/// Check `repo`.
pub fn check(repo: &Repository, read: ReadData, progress: &dyn Progress) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let on_disk: BTreeSet<PackId> = repo.list_packs()?.into_iter().map(|(id, _)| id).collect();
    let blobs = read_indexes(repo, &on_disk, &mut report)?;
    let mut by_pack: HashMap<PackId, Vec<(BlobId, Location)>> = HashMap::new();
    for (id, loc) in &blobs {
        by_pack.entry(loc.pack).or_default().push((*id, *loc));
    }
    report.packs = on_disk.len();
    report.unreferenced_packs = on_disk
        .iter()
        .filter(|p| !by_pack.contains_key(p))
        .copied()
        .collect();

    let mut bad_blobs: HashSet<BlobId> = HashSet::new();
    for (pack, indexed) in &by_pack {
        check_pack_size(repo, pack, indexed, &mut bad_blobs, &mut report);
    }
    let to_read: Vec<PackId> = match read {
        ReadData::None => Vec::new(),
        ReadData::All => on_disk.iter().copied().collect(),
        ReadData::Subset(pct) => choose(&on_disk, pct),
    };
    let none = Vec::new();
    let before_reading = bad_blobs.clone();
    for pack in to_read {
        crate::interrupt::check()?;
        report.packs_read += 1;
        let indexed = by_pack.get(&pack).unwrap_or(&none);
        read_pack(repo, &pack, indexed, &mut bad_blobs, &mut report, progress);
    }
    report.damaged_blobs = bad_blobs.difference(&before_reading).copied().collect();
    walk_snapshots(repo, &blobs, &bad_blobs, &mut report)?;
    Ok(report)
}

/// Every record of every intact index file. A damaged index file is reported
/// and its records ignored: its blobs then count as missing.
fn read_indexes(
    repo: &Repository,
    on_disk: &BTreeSet<PackId>,
    report: &mut CheckReport,
) -> Result<Blobs> {
    let mut blobs = Blobs::new();
    // The objects themselves, not their cached copies: what another host
    // (or this one, with a cold cache) would read.
    let damaged = repo.verify_index_objects()?;
    let errors: Vec<String> = damaged.iter().map(|(_, e)| e.clone()).collect();
    let cached = repo.unreadable_index_files();
    let cached: Vec<String> = cached.into_iter().filter(|e| !errors.contains(e)).collect();
    report.damaged_index_files += errors.len() + cached.len();
    report.errors.extend(cached);
    report.errors.extend(errors);
    for file in repo.index_files() {
        if damaged.iter().any(|(n, _)| n == file.name()) {
            continue;
        }
        if let Err(e) = file.verify() {
            report.errors.push(e.to_string());
            report.damaged_index_files += 1;
            continue;
        }
        for rec in file.iter() {
            let (id, loc) = rec?;
            match blobs.get(&id) {
                Some(old) if on_disk.contains(&old.pack) && !on_disk.contains(&loc.pack) => {}
                _ => {
                    blobs.insert(id, loc);
                }
            }
        }
    }
    Ok(blobs)
}

/// A pack the index names must exist and reach past the end of its last blob.
fn check_pack_size(
    repo: &Repository,
    pack: &PackId,
    indexed: &[(BlobId, Location)],
    bad_blobs: &mut HashSet<BlobId>,
    report: &mut CheckReport,
) {
    let end = indexed.iter().map(|(_, l)| blob_end(l)).max().unwrap_or(0);
    match repo.stat_pack(pack).map(|o| o.size) {
        Ok(size) if size >= end + pack::TRAILER_LEN as u64 => {
            // The trailer makes the pack self-describing (`repair index`
            // needs it): read its 12 bytes even without --read-data.
            let object = format!("pack {pack}");
            let trailer = repo
                .read_pack_range(pack, size - pack::TRAILER_LEN as u64, pack::TRAILER_LEN)
                .and_then(|t| pack::trailer_header_len(&t, &object));
            if let Err(e) = trailer {
                report.damaged(*pack, format!("has no valid trailer: {e}"));
            }
        }
        Ok(size) => {
            report.damaged(
                *pack,
                format!("is truncated ({size} bytes, its blobs need {end} and a trailer)"),
            );
            bad_blobs.extend(
                indexed
                    .iter()
                    .filter(|(_, l)| blob_end(l) > size)
                    .map(|(id, _)| *id),
            );
        }
        Err(e) => {
            let why = match e {
                Error::NotFound(_) => "is missing".to_string(),
                e => e.to_string(),
            };
            report.damaged(*pack, why);
            bad_blobs.extend(indexed.iter().map(|(id, _)| *id));
        }
    }
}

fn blob_end(loc: &Location) -> u64 {
    loc.frame.offset as u64 + loc.frame.stored_len as u64
}

/// A random `pct` percent of `packs` (at least one when there are any).
fn choose(packs: &BTreeSet<PackId>, pct: f64) -> Vec<PackId> {
    let want = ((packs.len() as f64 * pct / 100.0).ceil() as usize).min(packs.len());
    let mut seed = [0u8; 32];
    let _ = crate::format::config::getrandom(&mut seed);
    let mut keyed: Vec<([u8; 32], PackId)> = packs
        .iter()
        .map(|p| (*blake3::keyed_hash(&seed, &p.0).as_bytes(), *p))
        .collect();
    keyed.sort();
    keyed.into_iter().take(want).map(|(_, p)| p).collect()
}

/// How much of a pack `check` reads at once: packs are streamed, not held.
const READ_PIECE: u64 = 8 << 20;

/// Read a whole pack, in pieces: its hash (format 1: it must match the
/// name), its header, and every blob in it, both where the index places
/// them (what restores read) and where the header does (what an index
/// rebuild would read). Memory stays at a piece and a frame.
fn read_pack(
    repo: &Repository,
    pack: &PackId,
    indexed: &[(BlobId, Location)],
    bad_blobs: &mut HashSet<BlobId>,
    report: &mut CheckReport,
    progress: &dyn Progress,
) {
    let object = format!("pack {}", pack.short());
    let fail = |report: &mut CheckReport, why: String| {
        if !report.damaged_packs.contains(pack) {
            report.damaged(*pack, why);
        }
    };
    let size = match repo.stat_pack(pack) {
        Ok(o) => o.size,
        Err(e) => {
            fail(report, e.to_string());
            bad_blobs.extend(indexed.iter().map(|(id, _)| *id));
            return;
        }
    };
    let mut todo: Vec<PackEntry> = indexed
        .iter()
        .map(|(id, l)| PackEntry {
            kind: l.kind,
            id: *id,
            frame: l.frame,
            inner: l.inner,
            raw_len: l.raw_len,
        })
        .collect();
    match repo.pack_header(pack) {
        Ok(entries) => todo.extend(entries),
        Err(e) => report.damaged(*pack, format!("header: {e}")),
    }
    todo.sort_by_key(|e| (e.frame.offset, e.inner, e.id));
    todo.dedup_by_key(|e| (e.frame.offset, e.inner, e.id));
    let frame_end = |e: &PackEntry| e.frame.offset as u64 + e.frame.stored_len as u64;
    for e in todo.iter().filter(|e| frame_end(e) > size) {
        report.damaged(
            *pack,
            format!("blob {}: its frame lies beyond the end", e.id),
        );
        bad_blobs.insert(e.id);
    }
    let mut hash = blake3::Hasher::new();
    let (mut buf, mut buf_start, mut pos, mut next) = (Vec::new(), 0u64, 0u64, 0usize);
    while pos < size {
        let n = READ_PIECE.min(size - pos) as usize;
        let piece = match repo.read_pack_range(pack, pos, n) {
            Ok(b) => b,
            Err(e) => {
                fail(report, e.to_string());
                bad_blobs.extend(todo[next..].iter().map(|e| e.id));
                return;
            }
        };
        progress.bytes_read(piece.len() as u64);
        report.bytes_read += piece.len() as u64;
        hash.update(&piece);
        buf.extend_from_slice(&piece);
        pos += n as u64;
        if let Err(e) = crate::interrupt::check() {
            report.errors.push(e.to_string());
            return;
        }
        let upto = next
            + todo[next..]
                .iter()
                .take_while(|e| frame_end(e) <= pos)
                .count();
        for (id, why) in repo.verify_frames(pack, &buf, buf_start, &todo[next..upto], &object) {
            report.damaged(*pack, format!("blob {id}: {why}"));
            bad_blobs.insert(id);
        }
        next = upto;
        let keep_from = todo
            .get(next)
            .map_or(pos, |e| (e.frame.offset as u64).min(pos))
            .max(buf_start);
        buf.drain(..(keep_from - buf_start) as usize);
        buf_start = keep_from;
    }
    if !repo.is_encrypted() && *hash.finalize().as_bytes() != pack.0 {
        report.damaged(*pack, "content does not match its name".into());
    }
}

/// Walk every snapshot's trees; report damaged trees and files needing bad data.
///
/// Each snapshot is walked on its own, so a damaged file shared by many
/// snapshots is named in each; a tree found whole is not walked again.
fn walk_snapshots(
    repo: &Repository,
    blobs: &Blobs,
    bad_blobs: &HashSet<BlobId>,
    report: &mut CheckReport,
) -> Result<()> {
    let (snaps, bad) = repo.snapshots()?;
    for e in bad {
        report.errors.push(e.to_string());
    }
    report.snapshots = snaps.len();
    let mut c = Checker {
        repo,
        blobs,
        bad_blobs,
        report,
        sid: String::new(),
        seen: HashSet::new(),
        whole: HashSet::new(),
        damage_at_enter: Vec::new(),
    };
    for (sid, snap) in snaps {
        c.sid = sid.short();
        walk(snap.tree, b"", &mut c)?;
    }
    Ok(())
}

/// The walk of [`walk_snapshots`]: a damaged tree is recorded and its
/// siblings walked on.
struct Checker<'a> {
    repo: &'a Repository,
    blobs: &'a Blobs,
    bad_blobs: &'a HashSet<BlobId>,
    report: &'a mut CheckReport,
    /// The snapshot walked (short id).
    sid: String,
    /// Trees counted.
    seen: HashSet<TreeId>,
    /// Trees with nothing damaged below: not walked again.
    whole: HashSet<TreeId>,
    /// For each directory the walk is in, how many damaged files were
    /// recorded when it was entered: it is whole if none were since.
    damage_at_enter: Vec<usize>,
}

impl Visit for Checker<'_> {
    type Error = Error;

    fn enter(&mut self, path: &[u8], id: TreeId) -> Result<Option<Tree>> {
        crate::interrupt::check()?;
        if self.whole.contains(&id) {
            return Ok(None);
        }
        if self.seen.insert(id) {
            self.report.trees += 1;
        }
        let tree = blob_problem(&id.blob(), self.blobs, self.bad_blobs)
            .map(Err)
            .unwrap_or_else(|| self.repo.load_tree(&id).map_err(|e| e.to_string()));
        match tree {
            Ok(t) => {
                self.damage_at_enter.push(self.report.damaged_files.len());
                Ok(Some(t))
            }
            Err(why) => {
                let p = shown(path);
                self.report.errors.push(format!(
                    "snapshot {}: directory {}: tree {}: {why}",
                    self.sid,
                    p.display(),
                    id.short()
                ));
                let damaged = format!("{}:{}", self.sid, p.display());
                self.report.damaged_files.push(damaged);
                Ok(None)
            }
        }
    }

    fn entry(&mut self, path: &[u8], e: &mut Entry) -> Result<Flow> {
        if e.kind != Kind::File {
            return Ok(Flow::Next);
        }
        let (blobs, bad) = (self.blobs, self.bad_blobs);
        let why = e.extents.iter().find_map(|x| match x {
            Extent::Data { id, len } => {
                blob_problem(id, blobs, bad).or_else(|| length_problem(id, *len, blobs))
            }
            Extent::Hole { .. } => None,
        });
        if let Some(why) = why {
            let p = shown(path);
            let sid = &self.sid;
            self.report
                .errors
                .push(format!("snapshot {sid}: file {}: {why}", p.display()));
            self.report
                .damaged_files
                .push(format!("{sid}:{}", p.display()));
        }
        Ok(Flow::Next)
    }

    fn leave(&mut self, _: &[u8], id: TreeId, _: Tree) -> Result<()> {
        let at_enter = self.damage_at_enter.pop().expect("one per tree entered");
        if self.report.damaged_files.len() == at_enter {
            self.whole.insert(id);
        }
        Ok(())
    }
}

/// A walk path as a path: the snapshot root is `/`.
fn shown(path: &[u8]) -> &Path {
    match path {
        b"" => Path::new("/"),
        p => Path::new(OsStr::from_bytes(p)),
    }
}

/// The tree and the index must agree on a blob's length.
fn length_problem(id: &BlobId, len: u32, blobs: &Blobs) -> Option<String> {
    let loc = blobs.get(id)?;
    (loc.raw_len != len).then(|| {
        format!(
            "the tree gives blob {} {len} bytes, the index {}",
            id.short(),
            loc.raw_len
        )
    })
}

fn blob_problem(id: &BlobId, blobs: &Blobs, bad: &HashSet<BlobId>) -> Option<String> {
    match blobs.get(id) {
        None => Some(format!(
            "blob {} is not in the index (missing data)",
            id.short()
        )),
        Some(loc) if bad.contains(id) => Some(format!(
            "needs blob {} in damaged pack {}",
            id.short(),
            loc.pack.short()
        )),
        Some(_) => None,
    }
}

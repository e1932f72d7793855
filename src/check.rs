//! `check`: proves the repository is whole, and names what is not.
//!
//! Always: every index file's checksum and order; every pack an index names
//! exists and is long enough; every snapshot decodes; every tree every snapshot
//! reaches decodes; every blob a file needs is indexed. With `read_data`
//! (all packs or a random share of them): every byte of each chosen pack is
//! read, the pack's hash matches its name, and every blob in it decodes to its
//! id. Damage is reported by pack and by the files that depend on it.

use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId, TreeId};
use crate::format::pack;
use crate::format::tree::{Extent, Kind};
use crate::progress::Progress;
use crate::repo::{pack_name, Repository};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

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
    /// Every problem, one line each.
    pub errors: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Check `repo`.
pub fn check(repo: &Repository, read: ReadData, progress: &dyn Progress) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let mut bad_blobs: HashSet<BlobId> = HashSet::new();
    let mut blob_pack: HashMap<BlobId, PackId> = HashMap::new();
    let mut pack_end: HashMap<PackId, u64> = HashMap::new();
    for file in repo.index_files() {
        if let Err(e) = file.verify() {
            report.errors.push(e.to_string());
            continue;
        }
        for rec in file.iter() {
            let (id, loc) = rec?;
            blob_pack.insert(id, loc.pack);
            let end = pack_end.entry(loc.pack).or_default();
            *end = (*end).max(loc.offset as u64 + loc.stored_len as u64);
        }
    }
    let on_disk: BTreeSet<PackId> = repo
        .backend()
        .list("data")?
        .iter()
        .filter_map(|n| n.rsplit('/').next().and_then(|h| PackId::from_hex(h).ok()))
        .collect();
    report.packs = on_disk.len();
    report.unreferenced_packs = on_disk.iter().filter(|p| !pack_end.contains_key(p)).copied().collect();
    for (pack, end) in &pack_end {
        let damage = match repo.backend().size(&pack_name(pack)) {
            Err(Error::NotFound(_)) => Some("is missing".to_string()),
            Err(e) => Some(e.to_string()),
            Ok(size) if size < end + pack::TRAILER_LEN as u64 => Some(format!("is truncated ({size} bytes)")),
            Ok(_) => None,
        };
        if let Some(d) = damage {
            report.errors.push(format!("pack {pack} {d}"));
            report.damaged_packs.insert(*pack);
        }
    }
    let to_read: Vec<PackId> = match read {
        ReadData::None => Vec::new(),
        ReadData::All => on_disk.iter().copied().collect(),
        ReadData::Subset(pct) => choose(&on_disk, pct),
    };
    for pack in to_read {
        report.packs_read += 1;
        match read_pack(repo, &pack, progress) {
            Ok((n, bad)) => {
                report.bytes_read += n;
                if !bad.is_empty() {
                    report.damaged_packs.insert(pack);
                    for (id, why) in bad {
                        report.errors.push(format!("pack {pack}: blob {id}: {why}"));
                        bad_blobs.insert(id);
                    }
                }
            }
            Err(e) => {
                report.errors.push(format!("pack {pack}: {e}"));
                report.damaged_packs.insert(pack);
            }
        }
    }
    for (id, pack) in &blob_pack {
        if report.damaged_packs.contains(pack) {
            bad_blobs.insert(*id);
        }
    }
    walk_snapshots(repo, &blob_pack, &bad_blobs, &mut report)?;
    Ok(report)
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

/// Read a whole pack; returns bytes read and the blobs that failed.
fn read_pack(repo: &Repository, pack: &PackId, progress: &dyn Progress) -> Result<(u64, Vec<(BlobId, String)>)> {
    let object = format!("pack {}", pack.short());
    let bytes = repo.backend().get(&pack_name(pack))?;
    progress.bytes_read(bytes.len() as u64);
    let mut bad = Vec::new();
    if crate::format::id::file_hash(&bytes) != pack.0 {
        bad.push((BlobId(pack.0), "pack content does not match its name".to_string()));
    }
    let entries = pack::read_header(&bytes, repo.codec(), &object)?;
    for e in entries {
        let frame = &bytes[e.offset as usize..(e.offset + e.stored_len) as usize];
        if let Err(err) = repo.decode_blob(&e.id, e.kind, frame, e.raw_len as usize, &object) {
            bad.push((e.id, err.to_string()));
        }
    }
    Ok((bytes.len() as u64, bad))
}

/// Walk every snapshot's trees; report damaged trees and files needing bad data.
fn walk_snapshots(
    repo: &Repository,
    blob_pack: &HashMap<BlobId, PackId>,
    bad_blobs: &HashSet<BlobId>,
    report: &mut CheckReport,
) -> Result<()> {
    let (snaps, bad) = repo.snapshots()?;
    for e in bad {
        report.errors.push(e.to_string());
    }
    report.snapshots = snaps.len();
    let mut seen: HashSet<TreeId> = HashSet::new();
    for (sid, snap) in snaps {
        let mut stack: Vec<(TreeId, PathBuf)> = vec![(snap.tree, PathBuf::from("/"))];
        while let Some((tree_id, path)) = stack.pop() {
            if !seen.insert(tree_id) {
                continue;
            }
            report.trees += 1;
            let tree = match blob_problem(&tree_id.blob(), blob_pack, bad_blobs)
                .map(Err)
                .unwrap_or_else(|| repo.load_tree(&tree_id).map_err(|e| e.to_string()))
            {
                Ok(t) => t,
                Err(why) => {
                    report.errors.push(format!("snapshot {}: directory {}: tree {}: {why}", sid.short(), path.display(), tree_id.short()));
                    report.damaged_files.push(format!("{}:{}", sid.short(), path.display()));
                    continue;
                }
            };
            for entry in &tree.entries {
                let p = path.join(std::ffi::OsStr::from_bytes(&entry.name));
                match entry.kind {
                    Kind::Dir => {
                        if let Some(sub) = entry.subtree {
                            stack.push((sub, p));
                        }
                    }
                    Kind::File => {
                        let why = entry.extents.iter().find_map(|x| match x {
                            Extent::Data { id, .. } => blob_problem(id, blob_pack, bad_blobs),
                            Extent::Hole { .. } => None,
                        });
                        if let Some(why) = why {
                            report.errors.push(format!("snapshot {}: file {}: {why}", sid.short(), p.display()));
                            report.damaged_files.push(format!("{}:{}", sid.short(), p.display()));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn blob_problem(id: &BlobId, blob_pack: &HashMap<BlobId, PackId>, bad: &HashSet<BlobId>) -> Option<String> {
    match blob_pack.get(id) {
        None => Some(format!("blob {} is not in the index (missing data)", id.short())),
        Some(pack) if bad.contains(id) => Some(format!("needs blob {} in damaged pack {}", id.short(), pack.short())),
        Some(_) => None,
    }
}

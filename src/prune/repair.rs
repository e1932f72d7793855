//! `repair index`: rebuild every index file from the pack headers alone.

use crate::error::Result;
use crate::format::id::PackId;
use crate::format::pack::PackEntry;
use crate::progress::Progress;
use crate::repo::Repository;

/// Packs per rebuilt index file: bounds the memory a rebuild needs.
const PACKS_PER_INDEX: usize = 256;

/// What a rebuild did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepairReport {
    pub packs: u64,
    pub blobs: u64,
    /// Packs whose header could not be read: named, and left out of the index.
    pub unreadable: Vec<String>,
    pub index_files_written: u64,
    pub index_files_removed: u64,
}

/// Read every pack's header and write new index files from them; then remove
/// the old index files. The caller holds an exclusive lock.
pub fn repair_index(repo: &Repository, progress: &dyn Progress) -> Result<RepairReport> {
    let mut report = RepairReport::default();
    let old: Vec<String> = repo.list_index_names()?.into_iter().collect();
    let mut written: Vec<String> = Vec::new();
    let mut batch: Vec<(PackId, Vec<PackEntry>)> = Vec::new();
    let mut flush =
        |batch: &mut Vec<(PackId, Vec<PackEntry>)>, report: &mut RepairReport| -> Result<()> {
            if batch.is_empty() {
                return Ok(());
            }
            written.push(repo.save_index(batch)?);
            report.index_files_written += 1;
            batch.clear();
            Ok(())
        };
    for (id, _) in repo.list_packs()? {
        let name = id.to_hex();
        match repo.pack_header(&id) {
            Ok(entries) => {
                report.packs += 1;
                report.blobs += entries.len() as u64;
                batch.push((id, entries));
            }
            Err(e) => {
                progress.warn(&e);
                report.unreadable.push(format!("{name}: {e}"));
            }
        }
        if batch.len() >= PACKS_PER_INDEX {
            flush(&mut batch, &mut report)?;
        }
    }
    flush(&mut batch, &mut report)?;
    // Old index files may hold the only record of a pack whose header is
    // damaged (its blobs may still read fine): then they all stay.
    if report.unreadable.is_empty() {
        for name in old {
            if !written.contains(&name) {
                repo.delete_index(&name)?;
                report.index_files_removed += 1;
            }
        }
    }
    repo.reload_index()?;
    Ok(report)
}

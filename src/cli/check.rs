//! `rewind check`.

use super::output::{self, bytes};
use super::RepoArg;
use crate::check::{self, ReadData};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Read and verify every byte of every pack
    #[arg(long)]
    pub read_data: bool,
    /// Read and verify a random N% of packs (e.g. 10%)
    #[arg(long, value_name = "N%", conflicts_with = "read_data", value_parser = super::parse::percent)]
    pub read_data_subset: Option<f64>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(repo: &RepoArg, args: Args) -> Result<u8> {
    let read = match (args.read_data_subset, args.read_data) {
        (Some(pct), _) => ReadData::Subset(pct),
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let (repo, _lock) = repo.open_locked(false, "check")?;
    let report = check::check(&repo, read, &crate::progress::Silent)?;
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "ok": report.ok(), "snapshots": report.snapshots, "trees": report.trees,
                "packs": report.packs, "packs_read": report.packs_read, "bytes_read": report.bytes_read,
                "unreferenced_packs": report.unreferenced_packs.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
                "damaged_packs": report.damaged_packs.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
                "damaged_files": report.damaged_files, "errors": report.errors,
                "damaged_index_files": report.damaged_index_files,
                "repairs": repair_hints(&report).iter().map(|(cmd, _)| *cmd).collect::<Vec<_>>(),
            })
        )?;
    } else {
        for e in &report.errors {
            outln!("error: {e}")?;
        }
        if output::chatty() {
            outln!(
                "{}, {}, {} ({} read, {})",
                output::count(report.snapshots as u64, "snapshot", "snapshots"),
                output::count(report.trees as u64, "tree", "trees"),
                output::count(report.packs as u64, "pack", "packs"),
                report.packs_read,
                bytes(report.bytes_read)
            )?;
        }
        if !report.unreferenced_packs.is_empty() {
            outln!(
                "{} in no index (left by an interrupted backup; harmless, prune removes them)",
                output::count(
                    report.unreferenced_packs.len() as u64,
                    "pack is",
                    "packs are"
                )
            )?;
        }
        if !report.damaged_packs.is_empty() {
            outln!("damaged packs:")?;
            for p in &report.damaged_packs {
                outln!("  {p}")?;
            }
        }
        if !report.damaged_files.is_empty() {
            outln!("files and directories that need damaged data (snapshot:path):")?;
            for f in &report.damaged_files {
                outln!("  {f}")?;
            }
        }
        if output::chatty() || !report.ok() {
            outln!(
                "{}",
                if report.ok() {
                    "no errors found"
                } else {
                    "the repository is damaged"
                }
            )?;
        }
        for (cmd, why) in repair_hints(&report) {
            outln!("{cmd}: {why}")?;
        }
    }
    Ok(if report.ok() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILURE
    })
}

/// What to run about what check found, in order: the command and why.
fn repair_hints(report: &check::CheckReport) -> Vec<(&'static str, &'static str)> {
    let mut hints = Vec::new();
    let lost = !report.damaged_files.is_empty();
    if report.damaged_index_files > 0 || (lost && !report.unreferenced_packs.is_empty()) {
        hints.push(("rewind repair index", "rebuilds the index from the packs' own headers (damaged index files, or packs in no index that may hold what is missing)"));
    }
    if lost {
        hints.push(("rewind repair snapshots", "rewrites the snapshots that need lost or damaged data without it (put back any intact copy of a lost pack first; --dry-run lists what goes; add --read-data for damage only reading finds), so that check passes and prune runs again"));
    }
    hints
}

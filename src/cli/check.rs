//! `rewind check`.

use super::output::bytes;
use super::RepoArg;
use crate::check::{self, ReadData};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Read and verify every byte of every pack
    #[arg(long)]
    pub read_data: bool,
    /// Read and verify a random N% of packs (e.g. 10%)
    #[arg(long, value_name = "N%", conflicts_with = "read_data", value_parser = percentage)]
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
        println!(
            "{}",
            serde_json::json!({
                "ok": report.ok(), "snapshots": report.snapshots, "trees": report.trees,
                "packs": report.packs, "packs_read": report.packs_read, "bytes_read": report.bytes_read,
                "unreferenced_packs": report.unreferenced_packs.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
                "damaged_packs": report.damaged_packs.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
                "damaged_files": report.damaged_files, "errors": report.errors,
            })
        );
    } else {
        for e in &report.errors {
            println!("error: {e}");
        }
        println!(
            "{} snapshots, {} trees, {} packs ({} read, {})",
            report.snapshots,
            report.trees,
            report.packs,
            report.packs_read,
            bytes(report.bytes_read)
        );
        if !report.unreferenced_packs.is_empty() {
            println!(
                "{} packs are not in any index (left by an interrupted backup; harmless, prune removes them)",
                report.unreferenced_packs.len()
            );
        }
        if !report.damaged_packs.is_empty() {
            println!("damaged packs:");
            for p in &report.damaged_packs {
                println!("  {p}");
            }
        }
        if !report.damaged_files.is_empty() {
            println!("files and directories that need damaged data (snapshot:path):");
            for f in &report.damaged_files {
                println!("  {f}");
            }
        }
        println!(
            "{}",
            if report.ok() {
                "no errors found"
            } else {
                "the repository is damaged"
            }
        );
    }
    Ok(if report.ok() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILURE
    })
}

/// `10%` or `10`: a percentage from 0 to 100. A bad one is a usage error (exit 2).
fn percentage(s: &str) -> std::result::Result<f64, String> {
    let pct: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| "expected a percentage like 10%".to_string())?;
    if !(0.0..=100.0).contains(&pct) {
        return Err("must be between 0% and 100%".into());
    }
    Ok(pct)
}

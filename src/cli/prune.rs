//! `rewind prune`.

use super::output::bytes;
use super::RepoArg;
use crate::prune::{self, PruneOptions, PruneReport};
use anyhow::{Context, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Repack a pack when more than this share of it is unused (e.g. 5%, 0% to repack everything partly used)
    #[arg(long, default_value = "5%", value_parser = super::parse::percent)]
    pub max_unused: f64,
    /// Show what would be deleted and repacked, change nothing (takes only a shared lock)
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub fn options(max_unused: f64, dry_run: bool) -> PruneOptions {
    PruneOptions {
        max_unused,
        dry_run,
        ..PruneOptions::default()
    }
}

pub fn run(repo_arg: &RepoArg, args: Args) -> Result<u8> {
    let opts = PruneOptions {
        connections: repo_arg.connections(),
        ..options(args.max_unused, args.dry_run)
    };
    // A dry run changes nothing: it may run beside backups and mounts.
    let (repo, _lock) = repo_arg.open_locked(!args.dry_run, "prune")?;
    let report = prune::prune(&repo, &opts, &crate::progress::Silent).context("prune failed")?;
    print(&report, args.json)?;
    Ok(super::EXIT_OK)
}

pub fn print(r: &PruneReport, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string(r)?)?;
        return Ok(());
    }
    if !super::output::chatty() {
        return Ok(());
    }
    let would = if r.dry_run {
        " (dry run: nothing changed)"
    } else {
        ""
    };
    outln!(
        "blobs: {} used ({}), {} unused ({})",
        r.blobs_used,
        bytes(r.bytes_used),
        r.blobs_unused,
        bytes(r.bytes_unused)
    )?;
    outln!(
        "packs: {} before; {} deleted ({} not in any index), {} repacked into {} new",
        r.packs_before,
        r.packs_deleted,
        r.packs_unreferenced,
        r.packs_repacked,
        r.packs_written
    )?;
    outln!(
        "size: {} before, {} after, {} freed{would}",
        bytes(r.bytes_before),
        bytes(r.bytes_after),
        bytes(r.bytes_freed)
    )?;
    Ok(())
}

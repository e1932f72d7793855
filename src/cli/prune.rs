//! `rewind prune`.

use super::output::bytes;
use super::RepoArg;
use crate::prune::{self, PruneOptions, PruneReport};
use anyhow::{bail, Context, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Repack a pack when more than this share of it is unused (e.g. 5%, 0% to repack everything partly used)
    #[arg(long, default_value = "5%")]
    pub max_unused: String,
    /// Show what would be deleted and repacked, change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// Parse `--max-unused`.
pub fn options(max_unused: &str, dry_run: bool) -> Result<PruneOptions> {
    let pct: f64 = max_unused
        .trim_end_matches('%')
        .parse()
        .with_context(|| format!("--max-unused {max_unused:?}: expected a percentage like 5%"))?;
    if !(0.0..=100.0).contains(&pct) {
        bail!("--max-unused {max_unused:?}: must be between 0% and 100%");
    }
    Ok(PruneOptions {
        max_unused: pct,
        dry_run,
        ..PruneOptions::default()
    })
}

pub fn run(repo_arg: &RepoArg, args: Args) -> Result<u8> {
    let opts = PruneOptions {
        connections: repo_arg.connections(),
        ..options(&args.max_unused, args.dry_run)?
    };
    let (repo, _lock) = repo_arg.open_locked(true, "prune")?;
    let report = prune::prune(&repo, &opts, &crate::progress::Silent).context("prune failed")?;
    print(&report, args.json);
    Ok(super::EXIT_OK)
}

pub fn print(r: &PruneReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).expect("serializes"));
        return;
    }
    let would = if r.dry_run {
        " (dry run: nothing changed)"
    } else {
        ""
    };
    println!(
        "blobs: {} used ({}), {} unused ({})",
        r.blobs_used,
        bytes(r.bytes_used),
        r.blobs_unused,
        bytes(r.bytes_unused)
    );
    println!(
        "packs: {} before; {} deleted ({} not in any index), {} repacked into {} new",
        r.packs_before, r.packs_deleted, r.packs_unreferenced, r.packs_repacked, r.packs_written
    );
    println!(
        "size: {} before, {} after, {} freed{would}",
        bytes(r.bytes_before),
        bytes(r.bytes_after),
        bytes(r.bytes_freed)
    );
}

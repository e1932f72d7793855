//! `rewind repair`.

use super::RepoArg;
use anyhow::{Context, Result};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Rebuild the index from the pack headers (after index files were lost or damaged)
    Index {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Rewrite snapshots whose data is lost (files removed, unreadable directories emptied), so that check passes and prune runs again
    Snapshots {
        /// Say what would be removed; write nothing
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Read every pack first, and count blobs found damaged as lost
        #[arg(long)]
        read_data: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

pub fn run(repo_arg: &RepoArg, cmd: Command) -> Result<u8> {
    match cmd {
        Command::Index { json } => index(repo_arg, json),
        Command::Snapshots {
            dry_run,
            read_data,
            json,
        } => snapshots(repo_arg, dry_run, read_data, json),
    }
}

fn index(repo_arg: &RepoArg, json: bool) -> Result<u8> {
    let (repo, _lock) = repo_arg.open_locked(true, "repair index")?;
    let report = crate::prune::repair_index(&repo, &super::output::Reporter::new("read", false))
        .context("rebuilding the index")?;
    if json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        outln!(
            "indexed {} blobs in {} packs: {} index files written, {} old ones removed",
            report.blobs,
            report.packs,
            report.index_files_written,
            report.index_files_removed
        )?;
        for u in &report.unreadable {
            outln!(
                "unreadable pack header (old index files kept, so its blobs stay indexed): {u}"
            )?;
        }
    }
    Ok(if report.unreadable.is_empty() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILURE
    })
}

fn snapshots(repo_arg: &RepoArg, dry_run: bool, read_data: bool, json: bool) -> Result<u8> {
    // A dry run changes nothing: a shared lock, so it runs beside a mount.
    let (repo, _lock) = repo_arg.open_locked(!dry_run, "repair snapshots")?;
    // Packs in no index may hold what looks lost: index them first.
    let mut indexed = std::collections::HashSet::new();
    for file in repo.index_files() {
        for rec in file.iter() {
            indexed.insert(rec?.1.pack);
        }
    }
    let on_disk: std::collections::HashSet<_> =
        repo.list_packs()?.into_iter().map(|(p, _)| p).collect();
    let unindexed = on_disk.iter().filter(|p| !indexed.contains(p)).count();
    let missing = indexed.iter().filter(|p| !on_disk.contains(p)).count();
    let damaged_index = repo.verify_index_objects()?;
    if unindexed > 0 || !damaged_index.is_empty() {
        anyhow::bail!(
            "repository {}: {} and {} damaged index files: run `rewind repair index` first (what looks lost may be there)",
            repo.location(),
            super::output::count(unindexed as u64, "pack is in no index", "packs are in no index"),
            damaged_index.len()
        );
    }
    let damaged = if read_data {
        let reporter = super::output::Reporter::new("read", super::stderr_is_tty() && !json);
        let found = crate::check::check(&repo, crate::check::ReadData::All, &reporter);
        reporter.finish();
        found?.damaged_blobs
    } else {
        Default::default()
    };
    let report = crate::repair::repair_snapshots(&repo, &damaged, dry_run)
        .with_context(|| format!("repairing the snapshots of {}", repo.location()))?;
    for u in &report.unreadable {
        errln!("warning: {u} (not repairable: `rewind forget` it)");
    }
    // The index still names the lost packs: rebuilt from the packs that are
    // there, it names only what exists, and check passes.
    if missing > 0 && !dry_run {
        let reporter = super::output::Reporter::new("read", super::stderr_is_tty() && !json);
        let rebuilt = crate::prune::repair_index(&repo, &reporter);
        reporter.finish();
        rebuilt.context("rebuilding the index without the lost packs")?;
        if !json && super::output::chatty() {
            outln!(
                "index rebuilt without the {} it named",
                super::output::count(missing as u64, "lost pack", "lost packs")
            )?;
        }
    }
    if json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        let q = |p: &str| super::output::quote(p.as_bytes()).into_owned();
        for r in &report.repaired {
            let verb = if dry_run { "would become" } else { "is now" };
            outln!(
                "snapshot {} {verb} {}: {} removed, {} emptied",
                &r.old[..8],
                &r.new[..8],
                super::output::count(r.removed.len() as u64, "file", "files"),
                super::output::count(r.emptied.len() as u64, "directory", "directories"),
            )?;
            for p in &r.removed {
                outln!("  removed {}", q(p))?;
            }
            for p in &r.emptied {
                outln!("  emptied {}/", q(p).trim_end_matches('/'))?;
            }
        }
        if report.repaired.is_empty() {
            outln!(
                "{} checked, none needs lost data",
                super::output::count(report.snapshots as u64, "snapshot", "snapshots")
            )?;
        } else if dry_run {
            outln!("dry run: nothing was written")?;
        }
    }
    Ok(if report.unreadable.is_empty() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILURE
    })
}

//! `rewind forget`.

use super::output::time;
use super::{FilterArgs, RepoArg};
use crate::forget::{self, Policy};
use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Keep the N newest snapshots
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: u32,
    /// Keep the newest snapshot of each of the last N hours that have one
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_hourly: u32,
    /// Keep the newest snapshot of each of the last N days that have one
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_daily: u32,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_weekly: u32,
    /// Keep the newest snapshot of each of the last N months that have one
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_monthly: u32,
    /// Keep the newest snapshot of each of the last N years that have one
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_yearly: u32,
    /// Keep every snapshot within this long of the newest (e.g. 14d, 1y6m)
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep every snapshot with this tag (repeatable)
    #[arg(long, value_name = "TAG")]
    pub keep_tag: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Apply the policy to each group of snapshots with equal values of these
    #[arg(long, default_value = "host,paths", value_name = "host,paths,tags")]
    pub group_by: String,
    /// Show what would be removed, remove nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Run prune afterwards
    #[arg(long)]
    pub prune: bool,
    /// With --prune: repack packs with more than this share unused
    #[arg(long, default_value = "5%")]
    pub max_unused: String,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

impl Args {
    fn policy(&self) -> Result<Policy> {
        let within = match &self.keep_within {
            None => None,
            Some(s) => Some(forget::parse_duration(s).with_context(|| {
                format!("--keep-within {s:?}: expected e.g. 14d, 2w, 1y6m, 12h")
            })?),
        };
        Ok(Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within,
            tags: self.keep_tag.clone(),
        })
    }
}

/// The grouping key of a snapshot.
fn group_key(s: &Snapshot, by: &[&str]) -> String {
    let mut parts = Vec::new();
    for b in by {
        match *b {
            "host" => parts.push(format!("host {}", s.host)),
            "paths" => parts.push(format!("paths {}", s.paths.join(" "))),
            "tags" => parts.push(format!("tags {}", s.tags.join(","))),
            _ => {}
        }
    }
    parts.join(", ")
}

pub fn run(repo_arg: &RepoArg, args: Args) -> Result<u8> {
    let policy = args.policy()?;
    if policy.is_empty() {
        bail!("no policy given (--keep-last, --keep-daily, …); refusing to forget every snapshot");
    }
    let by: Vec<&str> = args
        .group_by
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = by.iter().find(|b| !["host", "paths", "tags"].contains(b)) {
        bail!("--group-by: unknown field {bad:?} (use host, paths, tags)");
    }
    let (repo, _lock) = repo_arg.open_locked(true, "forget")?;
    let (all, bad) = repo.snapshots()?;
    for e in &bad {
        eprintln!("warning: {e}");
    }
    let filter = args.filter.filter();
    let mut groups: BTreeMap<String, Vec<(SnapshotId, Snapshot)>> = BTreeMap::new();
    for (id, s) in all.into_iter().filter(|(_, s)| filter.matches(s)) {
        groups.entry(group_key(&s, &by)).or_default().push((id, s));
    }
    let mut json = Vec::new();
    let mut removed = 0;
    for (key, snaps) in &groups {
        let input: Vec<_> = snaps
            .iter()
            .map(|(_, s)| (s.time, s.tags.clone()))
            .collect();
        let decisions = forget::apply(&input, &policy, &forget::local_civil);
        if !args.json {
            println!("{}:", if key.is_empty() { "all snapshots" } else { key });
        }
        let mut keep = Vec::new();
        let mut remove = Vec::new();
        for ((id, s), d) in snaps.iter().zip(&decisions).rev() {
            if d.keep {
                if !args.json {
                    println!(
                        "  keep    {}  {}  {}",
                        id.short(),
                        time(s.time),
                        d.reasons.join(", ")
                    );
                }
                keep.push(serde_json::json!({"id": id.to_hex(), "time": time(s.time), "reasons": d.reasons}));
            } else {
                if !args.json {
                    println!("  remove  {}  {}", id.short(), time(s.time));
                }
                remove.push(serde_json::json!({"id": id.to_hex(), "time": time(s.time)}));
                if !args.dry_run {
                    repo.remove_snapshot(id)
                        .with_context(|| format!("removing snapshot {}", id.short()))?;
                }
                removed += 1;
            }
        }
        json.push(serde_json::json!({"group": key, "keep": keep, "remove": remove}));
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"dry_run": args.dry_run, "groups": json})
        );
    } else {
        let verb = if args.dry_run {
            "would be removed (dry run)"
        } else {
            "removed"
        };
        println!("{removed} snapshots {verb}");
    }
    if args.prune && !args.dry_run {
        let opts = crate::prune::PruneOptions {
            connections: repo_arg.connections(),
            ..super::prune::options(&args.max_unused, false)?
        };
        let report =
            crate::prune::prune(&repo, &opts, &crate::progress::Silent).context("prune failed")?;
        super::prune::print(&report, args.json);
    }
    Ok(super::EXIT_OK)
}

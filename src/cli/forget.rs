//! `rewind forget`: named snapshots, or those a retention policy lets go.

use super::output::{self, time};
use super::{json, select, FilterArgs, RepoArg};
use crate::forget::{self, Policy};
use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;
use crate::repo::Repository;
use anyhow::{Context, Result};
use std::collections::BTreeMap;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Forget these snapshots (ids, id prefixes, `latest`) instead of applying a policy
    #[arg(value_name = "SNAP")]
    pub snapshots: Vec<String>,
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
    #[arg(long, value_name = "DURATION", value_parser = super::parse::period)]
    pub keep_within: Option<i64>,
    /// Keep every snapshot with this tag (repeatable)
    #[arg(long, value_name = "TAG", value_parser = super::parse::tag)]
    pub keep_tag: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Apply the policy to each group of snapshots with equal values of these
    #[arg(long, default_value = "host,paths", value_name = "host,paths,tags")]
    pub group_by: String,
    /// Show what would be removed, remove nothing (takes only a shared lock)
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Run prune afterwards
    #[arg(long)]
    pub prune: bool,
    /// With --prune: repack packs with more than this share unused
    #[arg(long, default_value = "5%", value_parser = super::parse::percent)]
    pub max_unused: f64,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

impl Args {
    fn policy(&self) -> Policy {
        Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            tags: self.keep_tag.clone(),
        }
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

/// What forget decided for one group.
struct Group {
    key: String,
    /// Newest first, with the rules that keep each.
    keep: Vec<(SnapshotId, Snapshot, Vec<String>)>,
    remove: Vec<(SnapshotId, Snapshot)>,
}

pub fn run(repo_arg: &RepoArg, args: Args) -> Result<u8> {
    let policy = args.policy();
    let by: Vec<&str> = args
        .group_by
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = by.iter().find(|b| !["host", "paths", "tags"].contains(b)) {
        usage!("--group-by: unknown field {bad:?} (use host, paths, tags)");
    }
    if args.snapshots.is_empty() && policy.is_empty() {
        usage!(
            "name snapshots to forget, or give a policy (--keep-last, --keep-daily, …); \
             refusing to forget every snapshot"
        );
    }
    if !args.snapshots.is_empty() && !policy.is_empty() {
        usage!("give snapshots to forget or a --keep-* policy, not both");
    }
    // A dry run changes nothing: it may run beside backups and mounts.
    let (repo, _lock) = repo_arg.open_locked(!args.dry_run, "forget")?;
    let groups = if args.snapshots.is_empty() {
        by_policy(&repo, &args, &policy, &by)?
    } else {
        named(&repo, &args)?
    };
    // The work first, then the report: a closed stdout changes nothing.
    let mut removed = 0u64;
    if !args.dry_run {
        for (id, _) in groups.iter().flat_map(|g| &g.remove) {
            crate::interrupt::check()?;
            repo.remove_snapshot(id)
                .with_context(|| format!("removing snapshot {}", id.short()))?;
            removed += 1;
        }
    }
    report(&groups, &args)?;
    if !args.json && output::chatty() {
        let n: u64 = groups.iter().map(|g| g.remove.len() as u64).sum();
        let verb = if args.dry_run {
            "would be removed (dry run)"
        } else {
            "removed"
        };
        let n = if args.dry_run { n } else { removed };
        outln!("{} {verb}", output::count(n, "snapshot", "snapshots"))?;
    }
    if args.prune && !args.dry_run {
        let opts = crate::prune::PruneOptions {
            connections: repo_arg.connections(),
            ..super::prune::options(args.max_unused, false)
        };
        let report =
            crate::prune::prune(&repo, &opts, &crate::progress::Silent).context("prune failed")?;
        super::prune::print(&report, args.json)?;
    }
    Ok(super::EXIT_OK)
}

/// The snapshots named on the command line, as one group to remove.
fn named(repo: &Repository, args: &Args) -> Result<Vec<Group>> {
    let filter = args.filter.filter();
    let mut remove: Vec<(SnapshotId, Snapshot)> = Vec::new();
    for spec in &args.snapshots {
        let (id, s, _) = select::find_with_path(repo, spec, None, &filter)?;
        if !remove.iter().any(|(r, _)| r == &id) {
            remove.push((id, s));
        }
    }
    remove.sort_by_key(|s| std::cmp::Reverse(s.1.time));
    Ok(vec![Group {
        key: "named".into(),
        keep: Vec::new(),
        remove,
    }])
}

/// Apply the policy to each group.
fn by_policy(repo: &Repository, args: &Args, policy: &Policy, by: &[&str]) -> Result<Vec<Group>> {
    let (all, bad) = repo.snapshots()?;
    for e in &bad {
        errln!("warning: {e}");
    }
    let filter = args.filter.filter();
    let mut groups: BTreeMap<String, Vec<(SnapshotId, Snapshot)>> = BTreeMap::new();
    for (id, s) in all.into_iter().filter(|(_, s)| filter.matches(s)) {
        groups.entry(group_key(&s, by)).or_default().push((id, s));
    }
    let mut out = Vec::new();
    for (key, snaps) in groups {
        let input: Vec<_> = snaps
            .iter()
            .map(|(_, s)| (s.time, s.tags.clone()))
            .collect();
        let decisions = forget::apply(&input, policy, &forget::local_civil);
        let mut g = Group {
            key,
            keep: Vec::new(),
            remove: Vec::new(),
        };
        for ((id, s), d) in snaps.into_iter().zip(decisions).rev() {
            if d.keep {
                g.keep.push((id, s, d.reasons));
            } else {
                g.remove.push((id, s));
            }
        }
        out.push(g);
    }
    Ok(out)
}

fn report(groups: &[Group], args: &Args) -> Result<()> {
    if args.json {
        let snap = |id: &SnapshotId, s: &Snapshot| {
            serde_json::json!({
                "id": id.to_hex(), "short_id": id.short(), "time": json::time(s.time),
                "host": s.host, "paths": s.paths, "tags": s.tags,
            })
        };
        let v: Vec<serde_json::Value> = groups
            .iter()
            .map(|g| {
                let keep: Vec<_> = g
                    .keep
                    .iter()
                    .map(|(id, s, reasons)| {
                        let mut v = snap(id, s);
                        v["reasons"] = reasons.clone().into();
                        v
                    })
                    .collect();
                let remove: Vec<_> = g.remove.iter().map(|(id, s)| snap(id, s)).collect();
                serde_json::json!({"group": g.key, "keep": keep, "remove": remove})
            })
            .collect();
        outln!(
            "{}",
            serde_json::json!({"dry_run": args.dry_run, "groups": v})
        )?;
        return Ok(());
    }
    if !output::chatty() {
        return Ok(());
    }
    for g in groups {
        if args.snapshots.is_empty() {
            outln!(
                "{}:",
                if g.key.is_empty() {
                    "all snapshots"
                } else {
                    &g.key
                }
            )?;
        }
        for (id, s, reasons) in &g.keep {
            outln!(
                "  keep    {}  {}  {}",
                id.short(),
                time(s.time),
                reasons.join(", ")
            )?;
        }
        for (id, s) in &g.remove {
            outln!("  remove  {}  {}", id.short(), time(s.time))?;
        }
    }
    Ok(())
}

//! `rewind tag`: add, remove or replace the tags of snapshots (restic's
//! `--add`, `--remove`, `--set`).
//!
//! A snapshot's id is the hash of its manifest, so a retagged snapshot gets
//! a new id: the new manifest is written first, then the old one removed,
//! under the exclusive lock (as `forget`). A crash between the two leaves
//! both, which differ only in their tags; `forget` the old id.

use super::{json, select, FilterArgs, RepoArg};
use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;
use anyhow::{Context, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to retag (ids, id prefixes, `latest`) [default: every snapshot --host, --path and --tag select]
    #[arg(value_name = "SNAP")]
    pub snapshots: Vec<String>,
    /// Add this tag (`a,b` or repeated for several)
    #[arg(long, value_delimiter = ',', value_parser = super::parse::tag, value_name = "TAG")]
    pub add: Vec<String>,
    /// Remove this tag (`a,b` or repeated for several)
    #[arg(long, value_delimiter = ',', value_parser = super::parse::tag, value_name = "TAG")]
    pub remove: Vec<String>,
    /// Replace all tags with these (`a,b` or repeated; `--set ''` is refused: use --remove)
    #[arg(long, value_delimiter = ',', value_parser = super::parse::tag, value_name = "TAG",
          conflicts_with_all = ["add", "remove"])]
    pub set: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print JSON: the old and new id of each snapshot changed
    #[arg(long)]
    pub json: bool,
}

pub fn run(repo_arg: &RepoArg, args: Args) -> Result<u8> {
    if args.add.is_empty() && args.remove.is_empty() && args.set.is_empty() {
        usage!("say what to do: --add TAG, --remove TAG or --set TAG");
    }
    let filter = args.filter.filter();
    if args.snapshots.is_empty() && filter.is_empty() {
        usage!("name the snapshots to retag, or select them with --host, --path or --tag");
    }
    let (repo, _lock) = repo_arg.open_locked(true, "tag")?;
    let mut chosen: Vec<(SnapshotId, Snapshot)> = Vec::new();
    if args.snapshots.is_empty() {
        let (all, bad) = repo.snapshots()?;
        for e in &bad {
            errln!("warning: {e}");
        }
        chosen.extend(all.into_iter().filter(|(_, s)| filter.matches(s)));
    }
    for spec in &args.snapshots {
        let (id, s, _) = select::find_with_path(&repo, spec, None, &filter)?;
        if !chosen.iter().any(|(c, _)| c == &id) {
            chosen.push((id, s));
        }
    }
    let mut changes = Vec::new();
    for (old, snap) in chosen {
        crate::interrupt::check()?;
        let tags = retag(&snap.tags, &args);
        if tags == snap.tags {
            continue;
        }
        let new_snap = Snapshot { tags, ..snap };
        let new = repo
            .save_snapshot(&new_snap)
            .with_context(|| format!("writing the retagged snapshot {}", old.short()))?;
        repo.remove_snapshot(&old)
            .with_context(|| format!("removing snapshot {} (now {})", old.short(), new.short()))?;
        changes.push((old, new, new_snap));
    }
    if args.json {
        let v: Vec<serde_json::Value> = changes
            .iter()
            .map(|(old, new, s)| {
                let mut v = json::snapshot(new, s);
                v["old_id"] = old.to_hex().into();
                v["old_short_id"] = old.short().into();
                v
            })
            .collect();
        outln!("{}", serde_json::Value::from(v))?;
    } else if super::output::chatty() {
        for (old, new, s) in &changes {
            outln!(
                "{} -> {}  tags {}",
                old.short(),
                new.short(),
                s.tags.join(",")
            )?;
        }
        outln!(
            "{} changed",
            super::output::count(changes.len() as u64, "snapshot", "snapshots")
        )?;
    }
    Ok(super::EXIT_OK)
}

/// The tags after `--set`, or after `--remove` then `--add`, in the order
/// first given, without duplicates.
fn retag(tags: &[String], args: &Args) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let from: Vec<&String> = if args.set.is_empty() {
        tags.iter()
            .filter(|t| !args.remove.contains(t))
            .chain(&args.add)
            .collect()
    } else {
        args.set.iter().collect()
    };
    for t in from {
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

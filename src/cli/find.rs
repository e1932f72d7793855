//! `rewind find`: every path that matches a pattern, with the snapshots that
//! hold it and whether it changed from one to the next.
//!
//! Exit codes, as grep's: 0 something matched, 1 nothing did, 2 a usage
//! error (a bad pattern); 3 when some trees could not be read (each named on
//! stderr), so the answer may be incomplete.

use super::json;
use super::ls::owner;
use super::output::{mode, quote, time, Reporter};
use super::{FilterArgs, RepoArg};
use crate::compare::kind_name;
use crate::error::Error;
use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Entry, Kind};
use crate::history::find::{find, Hit, Matcher};
use crate::history::Change;
use anyhow::{Context, Result};
use std::io::Write;

const NO_MATCH: u8 = 1;
const USAGE: u8 = 2;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Patterns, as `backup --exclude` takes them: without `/` a name anywhere (`config.php`, `*.sql`), with `/` an absolute path (`/srv/www/*.php`, `/etc/**/nginx.conf`)
    #[arg(required = true, value_name = "PATTERN")]
    pub patterns: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Show only the N newest of the snapshots searched (whether a path changed is still judged against the snapshot before)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub newest: Option<u64>,
    /// One JSON object per matching path
    #[arg(long)]
    pub json: bool,
}

pub fn run(repo_arg: &RepoArg, args: Args) -> Result<u8> {
    let matcher = match Matcher::new(&args.patterns) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("rewind: error: {e}");
            return Ok(USAGE);
        }
    };
    let (repo, _lock) = repo_arg.open_locked(false, "find")?;
    let (all, bad) = repo.snapshots().context("listing snapshots")?;
    for e in &bad {
        eprintln!("warning: {e}");
    }
    let filter = args.filter.filter();
    let snaps: Vec<_> = all.into_iter().filter(|(_, s)| filter.matches(s)).collect();
    if snaps.is_empty() {
        eprintln!("rewind: no snapshots to search");
        return Ok(NO_MATCH);
    }
    let shown_from = match args.newest {
        Some(n) => snaps
            .len()
            .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX)),
        None => 0,
    };
    let show_host = snaps.iter().any(|(_, s)| s.host != snaps[0].1.host);
    let progress = Reporter::new("searched", false);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut paths, mut lines) = (0u64, 0u64);
    let stats = find(&repo, &snaps, &matcher, &progress, &mut |path, hits| {
        let shown: Vec<&Hit> = hits.iter().filter(|h| h.snapshot >= shown_from).collect();
        if shown.is_empty() {
            return Ok(());
        }
        paths += 1;
        lines += shown.len() as u64;
        let written = if args.json {
            write_json(&mut out, path, &shown, &snaps)
        } else {
            write_human(&mut out, path, &shown, &snaps, show_host)
        };
        written.map_err(|e| Error::io("standard output", e))
    })
    .context("searching snapshots")?;
    if !args.json {
        let n = snaps.len() - shown_from;
        let s = |n: u64| if n == 1 { "" } else { "s" };
        writeln!(
            out,
            "{paths} path{} ({lines} line{}) in {n} snapshot{}; {} tree{} read",
            s(paths),
            s(lines),
            s(n as u64),
            stats.trees_read,
            s(stats.trees_read),
        )?;
    }
    out.flush()?;
    Ok(if stats.errors > 0 {
        super::EXIT_PARTIAL
    } else if paths > 0 {
        super::EXIT_OK
    } else {
        NO_MATCH
    })
}

/// The path, then one line per snapshot: id, time, [host,] mode, owner,
/// size, mtime, change, [-> target].
fn write_human(
    out: &mut impl Write,
    path: &[u8],
    hits: &[&Hit],
    snaps: &[(SnapshotId, Snapshot)],
    show_host: bool,
) -> std::io::Result<()> {
    writeln!(out, "{}", quote(path))?;
    let owners: Vec<String> = hits
        .iter()
        .map(|h| {
            let e = h.entry;
            format!("{}:{}", owner(&e.user, e.uid), owner(&e.group, e.gid))
        })
        .collect();
    let owner_width = owners.iter().map(String::len).max().unwrap_or(0);
    let host_width = hits
        .iter()
        .map(|h| snaps[h.snapshot].1.host.len())
        .max()
        .unwrap_or(0);
    for (h, owner) in hits.iter().zip(&owners) {
        let (id, snap) = &snaps[h.snapshot];
        let e = h.entry;
        write!(out, "  {}  {}", id.short(), time(snap.time))?;
        if show_host {
            write!(out, "  {:<host_width$}", snap.host)?;
        }
        write!(
            out,
            "  {}  {owner:<owner_width$}  {:>12}  {}  {}",
            mode(e),
            e.size,
            time(e.mtime),
            h.change.name()
        )?;
        if e.kind == Kind::Symlink {
            write!(out, "  -> {}", quote(&e.target))?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn write_json(
    out: &mut impl Write,
    path: &[u8],
    hits: &[&Hit],
    snaps: &[(SnapshotId, Snapshot)],
) -> std::io::Result<()> {
    let mut v = serde_json::json!({
        "snapshots": hits.iter().map(|h| hit_json(h, snaps)).collect::<Vec<_>>(),
    });
    json::name(&mut v, "path", path);
    writeln!(out, "{v}")
}

fn hit_json(h: &Hit, snaps: &[(SnapshotId, Snapshot)]) -> serde_json::Value {
    let (id, snap) = &snaps[h.snapshot];
    let e: &Entry = h.entry;
    let mut v = serde_json::json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": json::time(snap.time),
        "host": snap.host,
        "type": kind_name(e.kind),
        "mode": format!("{:04o}", e.mode & 0o7777),
        "uid": e.uid, "gid": e.gid, "user": e.user, "group": e.group,
        "size": e.size,
        "mtime": json::time(e.mtime),
        "status": h.change.name(),
        "content_changed": match h.change {
            Change::New => None,
            c => Some(c == Change::Content),
        },
    });
    if e.kind == Kind::Symlink {
        json::name(&mut v, "target", &e.target);
    }
    v
}

//! `rewind diff`: two snapshots, or a snapshot and the live tree.
//!
//! The second argument is a live path when it contains `/`, or when it exists
//! on disk and is not a snapshot (`latest`, an id or a unique id prefix). So
//! `rewind diff latest .` and `rewind diff latest /srv/www` compare with the
//! live tree; a directory called `latest` or `1a2b` is `./latest`, `./1a2b`.

use super::output::{self, quote, Reporter};
use super::{json, select, FilterArgs, RepoArg};
use crate::compare::{
    self, Category, CategorySet, Change, ContentCheck, DiffOptions, LiveOptions, Report, Status,
};
use crate::format::id::SnapshotId;
use crate::format::snapshot::Snapshot;
use crate::repo::Repository;
use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SNAP_A[:PATH]: a snapshot (id, id prefix or `latest`), optionally a path in it
    pub a: String,
    /// SNAP_B (the newer snapshot) or LIVE_PATH (compared with the same absolute path in SNAP_A, or with SNAP_A:PATH)
    pub b: String,
    /// Two snapshots: only compare below this path
    pub path: Option<String>,
    /// Live: read and hash every file, also those whose size, mtime and ctime match
    #[arg(long)]
    pub content: bool,
    /// Also report atime changes (left out by default: reading a file changes it)
    #[arg(long)]
    pub atime: bool,
    /// Leave out a category (repeatable): mode, owner, mtime, atime, xattr, acl, links, holes, content
    #[arg(long = "ignore", value_name = "CATEGORY", value_parser = ignorable)]
    pub ignore: Vec<Category>,
    /// Live: owners match by uid/gid only, not also by user and group name
    #[arg(long)]
    pub numeric_owner: bool,
    /// Show each difference's old and new value under its entry
    #[arg(long, short = 'l')]
    pub long: bool,
    /// Live: reader threads
    #[arg(long, default_value_t = 8, value_parser = super::parse::threads)]
    pub threads: usize,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// What the arguments ask for, checked.
enum Plan {
    Snapshots {
        a: Box<(SnapshotId, Snapshot)>,
        b: Box<(SnapshotId, Snapshot)>,
        path: String,
    },
    Live {
        snap: Box<(SnapshotId, Snapshot)>,
        /// The path in the snapshot.
        path: String,
        live: PathBuf,
    },
}

pub fn run(repo_arg: &RepoArg, args: Args) -> Result<u8> {
    let (repo, _lock) = repo_arg.open_locked(false, "diff")?;
    let plan = plan(&repo, &args)?;
    let mut ignore = CategorySet::of(&args.ignore);
    if !args.atime {
        ignore.insert(Category::Atime);
    }
    let (report, a_json, b_json) = match &plan {
        Plan::Snapshots { a, b, path } => {
            let find = |s: &Snapshot, id: &SnapshotId| {
                repo.entry_at(&s.tree, path.as_bytes())
                    .with_context(|| format!("{path} in snapshot {}", id.short()))
            };
            let (ea, eb) = (find(&a.1, &a.0)?, find(&b.1, &b.0)?);
            let opts = DiffOptions { ignore };
            let report = compare::diff_snapshots(&repo, &ea, &eb, path.as_bytes(), &opts)
                .context("comparing snapshots")?;
            let side = |id: &SnapshotId| serde_json::json!({ "snapshot": id.to_hex(), "short_id": id.short(), "path": path });
            (report, side(&a.0), side(&b.0))
        }
        Plan::Live { snap, path, live } => {
            let entry = repo.entry_at(&snap.1.tree, path.as_bytes()).with_context(|| {
                format!(
                    "{path} is not in snapshot {} (its paths: {}); compare another path with SNAP:PATH",
                    snap.0.short(),
                    snap.1.paths.join(", ")
                )
            })?;
            let opts = LiveOptions {
                ignore,
                content: if args.content {
                    ContentCheck::Always
                } else {
                    ContentCheck::WhenStatDiffers
                },
                numeric_owner: args.numeric_owner,
                // The snapshot root is made up (no metadata is stored for `/`).
                compare_root: entry.name != b"/",
                threads: args.threads.max(1),
            };
            let progress = Reporter::new("hashed", super::stderr_is_tty() && !args.json);
            let report =
                compare::compare_live(&repo, &entry, path.as_bytes(), live, &opts, &progress);
            progress.finish();
            let report = report.with_context(|| format!("comparing with {}", live.display()))?;
            let a = serde_json::json!({
                "snapshot": snap.0.to_hex(), "short_id": snap.0.short(), "path": path,
            });
            let mut b = serde_json::json!({});
            json::name(&mut b, "live", live.as_os_str().as_bytes());
            (report, a, b)
        }
    };
    let code = if report.changes.is_empty() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILURE
    };
    let mut out = output::stdout();
    let printed = print(&mut out, &report, &args, a_json, b_json);
    output::finish(code, printed)
}

/// The report on stdout: lines (`-q`: no summary) or JSON.
fn print(
    out: &mut impl Write,
    report: &Report,
    args: &Args,
    a_json: serde_json::Value,
    b_json: serde_json::Value,
) -> Result<()> {
    if args.json {
        let v = serde_json::json!({
            "a": a_json, "b": b_json,
            "identical": report.changes.is_empty(),
            "changes": report.changes.iter().map(change_json).collect::<Vec<_>>(),
            "summary": summary_json(report),
            "stats": {
                "entries": report.entries, "trees_read": report.trees_read,
                "files_hashed": report.files_hashed, "bytes_hashed": report.bytes_hashed,
            },
        });
        writeln!(out, "{v}")?;
    } else {
        for c in &report.changes {
            print_change(out, c, args.long)?;
        }
        if output::chatty() {
            writeln!(out, "{}", summary(report))?;
        }
    }
    out.flush()?;
    Ok(())
}

fn plan(repo: &Repository, args: &Args) -> Result<Plan> {
    let filter = args.filter.filter();
    let (spec, sub) = select::split(&args.a);
    // `latest` is the newest snapshot that holds the compared path.
    let find = |spec: &str, path: &str| {
        let holding = (path != "/").then_some(path);
        select::find(repo, spec, &filter, holding)
            .with_context(|| format!("finding snapshot {spec}"))
    };
    let is_path = args.b.contains('/')
        || (Path::new(&args.b).symlink_metadata().is_ok()
            && select::find(repo, &args.b, &filter, None).is_err());
    if !is_path {
        let path = match (args.path.as_deref(), sub) {
            (Some(_), Some(_)) => {
                usage!("give the path once: as SNAP_A:PATH or as the third argument")
            }
            (Some(p), None) | (None, Some(p)) => select::absolute(p),
            (None, None) => "/".to_string(),
        };
        return Ok(Plan::Snapshots {
            a: Box::new(find(spec, &path)?),
            b: Box::new(find(&args.b, &path)?),
            path,
        });
    }
    if args.path.is_some() {
        usage!(
            "a third argument (PATH) only goes with two snapshots; with a live path use SNAP:PATH"
        );
    }
    let live = absolute(Path::new(&args.b))?;
    let path = match sub {
        Some(p) => select::absolute(p),
        None => live
            .to_str()
            .context("the live path is not UTF-8; name its snapshot path with SNAP:PATH")?
            .to_string(),
    };
    Ok(Plan::Live {
        snap: Box::new(find(spec, &path)?),
        path,
        live,
    })
}

/// The absolute path of `p` as a backup would record it: `.` and `..`
/// resolved, symlinks above the last component resolved.
fn absolute(p: &Path) -> Result<PathBuf> {
    p.symlink_metadata()
        .with_context(|| format!("live path {}", p.display()))?;
    let cwd = std::env::current_dir().context("current directory")?;
    let mut abs = PathBuf::from("/");
    for c in cwd.join(p).components() {
        match c {
            Component::Normal(n) => abs.push(n),
            Component::ParentDir => {
                abs.pop();
            }
            _ => {}
        }
    }
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Ok(parent
            .canonicalize()
            .with_context(|| format!("resolving {}", parent.display()))?
            .join(name)),
        _ => Ok(abs),
    }
}

fn print_change(out: &mut impl Write, c: &Change, long: bool) -> Result<()> {
    let status = c.status();
    write!(out, "{}\t{}", status.letter(), quote(&c.path))?;
    match status {
        Status::Added | Status::Removed => {}
        Status::TypeChanged => {
            let k = |k: Option<_>| k.map(compare::kind_name).unwrap_or("");
            write!(out, "\t{}->{}", k(c.a), k(c.b))?;
        }
        _ => {
            let cats: Vec<&str> = c.categories().iter().map(|c| c.name()).collect();
            write!(out, "\t{}", cats.join(","))?;
        }
    }
    writeln!(out)?;
    if long {
        for d in &c.details {
            let item = if d.item.is_empty() {
                String::new()
            } else {
                format!(" {}", d.item)
            };
            writeln!(out, "\t{}{item}: {} -> {}", d.category, d.a, d.b)?;
        }
    }
    Ok(())
}

const STATUSES: [(Status, &str); 6] = [
    (Status::Added, "added"),
    (Status::Removed, "removed"),
    (Status::Modified, "modified"),
    (Status::TypeChanged, "type changed"),
    (Status::Metadata, "metadata only"),
    (Status::Error, "unreadable"),
];

fn summary(r: &Report) -> String {
    if r.changes.is_empty() {
        return "no differences".into();
    }
    let parts: Vec<String> = STATUSES
        .iter()
        .map(|(s, name)| (r.count(*s), name))
        .filter(|(n, _)| *n > 0)
        .map(|(n, name)| format!("{n} {name}"))
        .collect();
    let n = r.changes.len();
    let s = if n == 1 { "" } else { "s" };
    format!("{n} change{s}: {}", parts.join(", "))
}

fn summary_json(r: &Report) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (s, name) in STATUSES {
        m.insert(name.replace(' ', "_"), r.count(s).into());
    }
    m.into()
}

fn change_json(c: &Change) -> serde_json::Value {
    let kind = |k: Option<_>| k.map(compare::kind_name);
    let mut v = serde_json::json!({
        "status": c.status().letter().to_string(),
        "a_type": kind(c.a), "b_type": kind(c.b),
        "categories": c.categories().iter().map(|c| c.name()).collect::<Vec<_>>(),
        "details": c.details.iter().map(|d| serde_json::json!({
            "category": d.category.name(), "item": d.item, "a": d.a, "b": d.b,
        })).collect::<Vec<_>>(),
    });
    json::name(&mut v, "path", &c.path);
    v
}

/// A category that may be ignored.
pub(super) fn ignorable(s: &str) -> std::result::Result<Category, String> {
    let names = || {
        Category::IGNORABLE
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match Category::parse(s) {
        Some(c) if Category::IGNORABLE.contains(&c) => Ok(c),
        _ => Err(format!("expected one of {}", names())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ignorable_categories_parse() {
        assert_eq!(ignorable("atime"), Ok(Category::Atime));
        assert_eq!(ignorable("xattrs"), Ok(Category::Xattr));
        assert!(ignorable("missing").unwrap_err().contains("mode, owner"));
        assert!(ignorable("nonsense").is_err());
    }
}

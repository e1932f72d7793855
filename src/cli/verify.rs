//! `rewind verify`: prove that a directory is exactly a snapshot.

use super::diff::ignorable;
use super::output::{self, bytes, quote, Reporter};
use super::{json, select, FilterArgs, RepoArg};
use crate::compare::{self, Category, CategorySet, Change, ContentCheck, LiveOptions, Status};
use crate::format::id::SnapshotId;
use crate::format::tree::Kind;
use anyhow::{Context, Result};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SNAP[:PATH]: a snapshot (id, id prefix or `latest`: the newest holding PATH) and optionally a path in it [default: /]
    pub snapshot: String,
    /// The directory to prove: a restore (as `restore SNAP[:PATH] --target DIR` made it), a copy, a mount, a live tree
    pub dir: PathBuf,
    /// Do not compare a category (repeatable): mode, owner, mtime, atime, xattr, acl, links, holes, content
    #[arg(long = "ignore", value_name = "CATEGORY", value_parser = ignorable)]
    pub ignore: Vec<Category>,
    /// Also compare access times (left out by default: reading a tree, as a
    /// restore test does, changes them)
    #[arg(long)]
    pub atime: bool,
    /// Owners match by uid/gid only, not also by user and group name
    #[arg(long)]
    pub numeric_owner: bool,
    /// Reader threads
    #[arg(long, default_value_t = 8, value_parser = super::parse::threads)]
    pub threads: usize,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(repo_arg: &RepoArg, args: Args) -> Result<u8> {
    let started = std::time::Instant::now();
    let (repo, _lock) = repo_arg.open_locked(false, "verify")?;
    let (id, snap, sub) =
        select::find_with_path(&repo, &args.snapshot, None, &args.filter.filter())?;
    let sub = sub.as_str();
    let entry = repo
        .entry_at(&snap.tree, sub.as_bytes())
        .with_context(|| format!("snapshot {}", id.short()))?;
    // As restore lays it out: a directory's contents in DIR, anything else as DIR/<name>.
    // A directory's own metadata goes onto DIR too (restore applies it when it
    // creates the target), except for the snapshot root, which has none.
    let (live, compare_root) = if entry.kind == Kind::Dir {
        (args.dir.clone(), entry.name != b"/")
    } else {
        (args.dir.join(OsStr::from_bytes(&entry.name)), true)
    };
    let mut ignore = CategorySet::of(&args.ignore);
    if !args.atime {
        ignore.insert(Category::Atime);
    }
    let opts = LiveOptions {
        ignore,
        content: ContentCheck::Always,
        numeric_owner: args.numeric_owner,
        compare_root,
        threads: args.threads.max(1),
    };
    let reporter = Reporter::new("hashed", super::stderr_is_tty() && !args.json);
    let snap_path = Path::new("/").join(sub.trim_start_matches('/'));
    let report = compare::compare_live(
        &repo,
        &entry,
        snap_path.as_os_str().as_bytes(),
        &live,
        &opts,
        &reporter,
    );
    reporter.finish();
    let report = report.with_context(|| format!("verifying {}", args.dir.display()))?;
    let secs = started.elapsed().as_secs_f64();
    let lines: Vec<Line> = report.changes.iter().flat_map(lines).collect();
    let mut ignored: Vec<&str> = args.ignore.iter().map(|c| c.name()).collect();
    if !args.atime && !ignored.contains(&"atime") {
        ignored.push("atime");
    }
    let code = if lines.is_empty() {
        super::EXIT_OK
    } else {
        super::EXIT_FAILURE
    };
    let outcome = Outcome {
        id,
        snap_path,
        ignored,
        secs,
        lines,
        report,
    };
    let mut out = output::stdout();
    let printed = print(&mut out, &args, &outcome);
    output::finish(code, printed)
}

/// What verify found, for [`print`].
struct Outcome<'a> {
    id: SnapshotId,
    snap_path: PathBuf,
    ignored: Vec<&'a str>,
    secs: f64,
    lines: Vec<Line>,
    report: crate::compare::Report,
}

/// The differences and a verdict (`-q`: only the differences), or JSON.
fn print(out: &mut impl Write, args: &Args, o: &Outcome) -> Result<()> {
    let (id, lines, report) = (&o.id, &o.lines, &o.report);
    let what = format!("snapshot {}:{}", id.short(), o.snap_path.display());
    if args.json {
        let mut v = serde_json::json!({
            "ok": lines.is_empty(),
            "snapshot": id.to_hex(), "short_id": id.short(), "path": o.snap_path,
            "ignored": o.ignored,
            "differences": lines.iter().map(Line::json).collect::<Vec<_>>(),
            "counts": counts(lines).into_iter().map(|(c, n)| (c.name().to_string(), serde_json::Value::from(n))).collect::<serde_json::Map<_, _>>(),
            "entries": report.entries, "files_hashed": report.files_hashed,
            "bytes_hashed": report.bytes_hashed, "seconds": o.secs,
        });
        json::name(&mut v, "dir", args.dir.as_os_str().as_bytes());
        writeln!(out, "{v}")?;
        out.flush()?;
        return Ok(());
    }
    for l in lines {
        writeln!(out, "{}\t{}\t{}", l.category, quote(&l.path), l.text)?;
    }
    if output::chatty() {
        let rate = report.bytes_hashed as f64 / o.secs.max(1e-9) / 1e6;
        let ignoring = if o.ignored.is_empty() {
            String::new()
        } else {
            format!(", ignoring {}", o.ignored.join(", "))
        };
        writeln!(
            out,
            "verified {} entries, {} hashed in {:.1} s ({rate:.0} MB/s){ignoring}",
            report.entries,
            bytes(report.bytes_hashed),
            o.secs
        )?;
    }
    if lines.is_empty() {
        if output::chatty() {
            writeln!(out, "OK: {} is exactly {what}", args.dir.display())?;
        }
    } else {
        let per: Vec<String> = counts(lines)
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        writeln!(
            out,
            "DIFFERENT: {} ({}) between {} and {what}",
            output::count(lines.len() as u64, "difference", "differences"),
            per.join(", "),
            args.dir.display()
        )?;
    }
    out.flush()?;
    Ok(())
}

/// One difference, as verify reports it.
struct Line {
    category: Category,
    path: Vec<u8>,
    text: String,
}

impl Line {
    fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "category": self.category.name(), "detail": self.text });
        json::name(&mut v, "path", &self.path);
        v
    }
}

/// A change as verify's lines: `missing` and `extra` entries, a changed
/// `type`, or one line per difference found on the entry.
fn lines(c: &Change) -> Vec<Line> {
    let kind = |k: Option<_>| k.map(compare::kind_name).unwrap_or("?");
    let line = |category, text: String| Line {
        category,
        path: c.path.clone(),
        text,
    };
    match c.status() {
        Status::Added => vec![line(Category::Extra, format!("{} not in the snapshot", kind(c.b)))],
        Status::Removed => vec![line(Category::Missing, format!("{} not found", kind(c.a)))],
        Status::TypeChanged => vec![line(
            Category::Type,
            format!("snapshot {}, found {}", kind(c.a), kind(c.b)),
        )],
        _ => c
            .details
            .iter()
            .map(|d| {
                let text = match d.category {
                    Category::Error => d.b.clone(),
                    Category::Atime if c.a == Some(Kind::Symlink) => format!(
                        "snapshot {}, found {} (reading a symlink sets its atime: an earlier verify or backup may have)",
                        d.a, d.b
                    ),
                    _ if d.item.is_empty() => format!("snapshot {}, found {}", d.a, d.b),
                    _ => format!("{}: snapshot {}, found {}", d.item, d.a, d.b),
                };
                line(d.category, text)
            })
            .collect(),
    }
}

fn counts(lines: &[Line]) -> Vec<(Category, usize)> {
    let mut v: Vec<(Category, usize)> = Vec::new();
    for l in lines {
        match v.iter_mut().find(|(c, _)| *c == l.category) {
            Some((_, n)) => *n += 1,
            None => v.push((l.category, 1)),
        }
    }
    v.sort();
    v
}

//! `rewind ls`.
//!
//! Names go out as raw bytes to a pipe or file, and quoted with C escapes
//! (as `diff` quotes them) on a terminal, so a name holding a newline or an
//! escape sequence can neither split a line nor drive the terminal. `--json`
//! gives every name exactly (see [`super::json`]).

use super::output::{self, mode, quote, time};
use super::{json, select, FilterArgs, RepoArg};
use crate::format::id::TreeId;
use crate::format::tree::{Entry, Kind, Tree};
use crate::repo::walk::{walk, Flow, Visit};
use crate::repo::Repository;
use anyhow::{Context, Result};
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SNAP[:PATH]: a snapshot (id, id prefix or `latest`: the newest holding PATH), optionally a path in it
    pub snapshot: String,
    /// List below this path of the snapshot (or give it as SNAP:PATH) [default: /]
    pub path: Option<String>,
    /// Long listing: mode, owner, size, mtime
    #[arg(short = 'l', long)]
    pub long: bool,
    /// Only the entries directly in PATH
    #[arg(long)]
    pub no_recursive: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
}

pub fn run(repo: &RepoArg, args: Args) -> Result<u8> {
    let repo = repo.open()?;
    let (id, snap, path) = select::find_with_path(
        &repo,
        &args.snapshot,
        args.path.as_deref(),
        &args.filter.filter(),
    )?;
    let entry = repo
        .entry_at(&snap.tree, path.as_bytes())
        .with_context(|| format!("snapshot {}", id.short()))?;
    let mut out = output::stdout();
    let base = path.trim_end_matches('/').as_bytes().to_vec();
    let quoted = output::stdout_is_tty();
    if entry.kind == Kind::Dir {
        list(&repo, &entry, &base, &args, quoted, &mut out)
            .with_context(|| format!("snapshot {}", id.short()))?;
    } else {
        print(&entry, &base, &args, quoted, &mut out)?;
    }
    out.flush()?;
    Ok(super::EXIT_OK)
}

/// Everything below directory `dir` (at `path`), parents before children.
fn list(
    repo: &Repository,
    dir: &Entry,
    path: &[u8],
    args: &Args,
    quoted: bool,
    out: &mut impl Write,
) -> Result<()> {
    let Some(sub) = dir.subtree else {
        return Ok(());
    };
    let mut lister = Lister {
        repo,
        entered: false,
        args,
        quoted,
        out,
    };
    walk(sub, path, &mut lister)
}

struct Lister<'a, W> {
    repo: &'a Repository,
    /// The listed directory was entered: with `--no-recursive`, the only one.
    entered: bool,
    args: &'a Args,
    quoted: bool,
    out: &'a mut W,
}

impl<W: Write> Visit for Lister<'_, W> {
    type Error = anyhow::Error;

    fn enter(&mut self, path: &[u8], id: TreeId) -> Result<Option<Tree>> {
        if self.args.no_recursive && self.entered {
            return Ok(None);
        }
        self.entered = true;
        let tree = self
            .repo
            .load_tree(&id)
            .with_context(|| format!("reading directory {}", quote(path)))?;
        Ok(Some(tree))
    }

    fn entry(&mut self, path: &[u8], e: &mut Entry) -> Result<Flow> {
        print(e, path, self.args, self.quoted, self.out)?;
        Ok(Flow::Next)
    }
}

fn print(e: &Entry, path: &[u8], args: &Args, quoted: bool, out: &mut impl Write) -> Result<()> {
    if args.json {
        let mut v = serde_json::json!({
            "type": crate::compare::kind_name(e.kind),
            "mode": format!("{:04o}", e.mode),
            "uid": e.uid, "gid": e.gid, "user": e.user, "group": e.group,
            "size": e.size,
            "mtime": json::time(e.mtime),
            "atime": json::time(e.atime),
            "ctime": json::time(e.ctime),
            "nlink": e.nlink,
        });
        json::name(&mut v, "path", path);
        if e.kind == Kind::Symlink {
            json::name(&mut v, "target", &e.target);
        }
        writeln!(out, "{v}")?;
        return Ok(());
    }
    if args.long {
        write!(
            out,
            "{} {:>8} {:>8} {:>12} {} ",
            mode(e),
            owner(&e.user, e.uid),
            owner(&e.group, e.gid),
            e.size,
            time(e.mtime)
        )?;
    }
    let name = |out: &mut dyn Write, bytes: &[u8]| -> std::io::Result<()> {
        if quoted {
            out.write_all(quote(bytes).as_bytes())
        } else {
            out.write_all(bytes)
        }
    };
    name(out, path)?;
    if args.long && e.kind == Kind::Symlink {
        out.write_all(b" -> ")?;
        name(out, &e.target)?;
    }
    out.write_all(b"\n")?;
    Ok(())
}

/// An owner as `ls -l` shows it: the name, or the number when there is none.
pub(super) fn owner(name: &str, id: u32) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        name.to_string()
    }
}

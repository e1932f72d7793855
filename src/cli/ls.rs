//! `rewind ls`.

use super::output::{mode, time};
use super::{FilterArgs, RepoArg};
use crate::format::tree::{Entry, Kind};
use crate::repo::Repository;
use anyhow::{Context, Result};
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot: id, id prefix or `latest`
    pub snapshot: String,
    /// List below this path of the snapshot [default: /]
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
    let (_, snap) = repo
        .find_snapshot(&args.snapshot, &args.filter.filter())
        .with_context(|| format!("finding snapshot {}", args.snapshot))?;
    let path = args.path.clone().unwrap_or_else(|| "/".into());
    let entry = repo
        .entry_at(&snap.tree, path.as_bytes())
        .with_context(|| format!("snapshot {}", args.snapshot))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let base = path.trim_end_matches('/').as_bytes().to_vec();
    if entry.kind == Kind::Dir {
        list(&repo, &entry, &base, &args, &mut out)?;
    } else {
        print(&entry, &base, &args, &mut out)?;
    }
    out.flush()?;
    Ok(super::EXIT_OK)
}

fn list(
    repo: &Repository,
    dir: &Entry,
    path: &[u8],
    args: &Args,
    out: &mut impl Write,
) -> Result<()> {
    let Some(sub) = dir.subtree else {
        return Ok(());
    };
    let tree = repo
        .load_tree(&sub)
        .with_context(|| format!("reading directory {}", String::from_utf8_lossy(path)))?;
    for e in &tree.entries {
        let mut p = path.to_vec();
        p.push(b'/');
        p.extend_from_slice(&e.name);
        print(e, &p, args, out)?;
        if e.kind == Kind::Dir && !args.no_recursive {
            list(repo, e, &p, args, out)?;
        }
    }
    Ok(())
}

fn print(e: &Entry, path: &[u8], args: &Args, out: &mut impl Write) -> Result<()> {
    if args.json {
        let v = serde_json::json!({
            "path": String::from_utf8_lossy(path),
            "type": format!("{:?}", e.kind).to_lowercase(),
            "mode": format!("{:04o}", e.mode),
            "uid": e.uid, "gid": e.gid, "user": e.user, "group": e.group,
            "size": e.size,
            "mtime": format!("{}.{:09}", e.mtime.sec, e.mtime.nsec),
            "nlink": e.nlink,
            "target": (e.kind == Kind::Symlink).then(|| String::from_utf8_lossy(&e.target).into_owned()),
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    if args.long {
        let owner = |name: &str, id: u32| {
            if name.is_empty() {
                id.to_string()
            } else {
                name.to_string()
            }
        };
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
    out.write_all(path)?;
    if args.long && e.kind == Kind::Symlink {
        out.write_all(b" -> ")?;
        out.write_all(&e.target)?;
    }
    out.write_all(b"\n")?;
    Ok(())
}

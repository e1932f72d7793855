//! `rewind restore`.

use super::output::{bytes, Reporter};
use super::{select, FilterArgs, RepoArg};
use crate::restore::{self, RestoreOptions};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SNAP[:PATH]: a snapshot (id, id prefix or `latest`: the newest holding PATH) and optionally a path in it
    pub snapshot: String,
    /// Directory to restore into (created if missing; must be empty without --overwrite)
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// Only restore entries matching this glob (name, or absolute path in the snapshot) (repeatable)
    #[arg(long = "include", short = 'i')]
    pub includes: Vec<String>,
    /// Replace existing files in the target
    #[arg(long)]
    pub overwrite: bool,
    /// Use stored uid/gid numbers, ignoring user and group names
    #[arg(long)]
    pub numeric_owner: bool,
    /// Writer threads
    #[arg(long, default_value_t = 8, value_parser = super::parse::threads)]
    pub threads: usize,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(repo: &RepoArg, args: Args) -> Result<u8> {
    let (repo, _lock) = repo.open_locked(false, "restore")?;
    let (id, snap, sub) =
        select::find_with_path(&repo, &args.snapshot, None, &args.filter.filter())?;
    let sub = sub.as_str();
    let entry = repo
        .entry_at(&snap.tree, sub.as_bytes())
        .with_context(|| format!("snapshot {}", id.short()))?;
    let opts = RestoreOptions {
        target: args.target.clone(),
        includes: args.includes.clone(),
        overwrite: args.overwrite,
        numeric_owner: args.numeric_owner,
        threads: args.threads.max(1),
    };
    let reporter = Reporter::new("written", super::stderr_is_tty() && !args.json);
    let snap_path = Path::new("/").join(sub.trim_start_matches('/'));
    let out = restore::restore(&repo, &entry, &snap_path, &opts, &reporter);
    reporter.finish();
    let out = out.with_context(|| {
        format!(
            "restoring snapshot {} into {}",
            id.short(),
            args.target.display()
        )
    })?;
    if args.json {
        outln!(
            "{}",
            serde_json::json!({
                "snapshot": id.to_hex(), "short_id": id.short(), "files": out.files, "dirs": out.dirs, "other": out.other,
                "bytes": out.bytes, "errors": out.errors,
                "owner_denied": out.owner_denied, "xattr_denied": out.xattr_denied,
            })
        )?;
    } else if super::output::chatty() {
        outln!(
            "restored {} files, {} directories, {} other entries, {} from snapshot {} into {}",
            out.files,
            out.dirs,
            out.other,
            bytes(out.bytes),
            id.short(),
            args.target.display()
        )?;
    }
    if out.owner_denied > 0 {
        errln!(
            "warning: could not set the owner of {} entries (restoring owners needs root)",
            out.owner_denied
        );
    }
    if out.xattr_denied > 0 {
        errln!(
            "warning: could not set {} extended attributes (trusted.* and security.* need root; the file system may not support them)",
            out.xattr_denied
        );
    }
    if out.errors > 0 {
        errln!(
            "error: {} entries could not be restored (named above)",
            out.errors
        );
        return Ok(super::EXIT_PARTIAL);
    }
    Ok(super::EXIT_OK)
}

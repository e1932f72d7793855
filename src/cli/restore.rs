//! `rewind restore`.

use super::json;
use super::output::quote;
use super::output::{bytes, Reporter};
use super::{select, FilterArgs, RepoArg};
use crate::format::tree::Kind;
use crate::restore::{self, Action, Changes, RestoreOptions, RestoreOutcome};
use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    /// Do not restore (nor delete) entries matching this glob, nor anything below them (repeatable)
    #[arg(long = "exclude", short = 'e')]
    pub excludes: Vec<String>,
    /// Replace existing files in the target
    #[arg(long)]
    pub overwrite: bool,
    /// Also delete what is in the target and not in the snapshot (implies --overwrite)
    #[arg(long)]
    pub delete: bool,
    /// List what would be created, replaced and deleted; change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// List every entry created, replaced and deleted
    #[arg(long, short = 'v')]
    pub verbose: bool,
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

/// The changes, as lines on stdout or collected for JSON.
struct Listing {
    lines: bool,
    json: Option<Mutex<Vec<serde_json::Value>>>,
}

impl Changes for Listing {
    fn change(&self, action: Action, path: &Path, kind: Kind) {
        let bytes = path.as_os_str().as_bytes();
        if self.lines {
            let slash = if kind == Kind::Dir { "/" } else { "" };
            let line = format!("{:<7} {}{slash}", action.as_str(), quote(bytes));
            // A closed pipe (`… --dry-run | head`) ends only the listing.
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
        if let Some(list) = &self.json {
            let mut v = serde_json::json!({
                "action": action.as_str(),
                "type": format!("{kind:?}").to_lowercase(),
            });
            json::name(&mut v, "path", bytes);
            list.lock().unwrap_or_else(|p| p.into_inner()).push(v);
        }
    }
}

pub fn run(repo: &RepoArg, args: Args) -> Result<u8> {
    crate::interrupt::install();
    let repo_dir = repo.path().ok();
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
        excludes: args.excludes.clone(),
        overwrite: args.overwrite,
        delete: args.delete,
        dry_run: args.dry_run,
        protect: repo_dir.into_iter().collect(),
        numeric_owner: args.numeric_owner,
        threads: args.threads.max(1),
    };
    let listed = args.dry_run || args.verbose;
    let listing = Listing {
        lines: listed && !args.json,
        json: (listed && args.json).then(Mutex::default),
    };
    let verb = if args.dry_run {
        "to restore"
    } else {
        "written"
    };
    let reporter = Reporter::new(verb, super::stderr_is_tty() && !args.json && !listed);
    let snap_path = Path::new("/").join(sub.trim_start_matches('/'));
    let out = restore::restore(&repo, &entry, &snap_path, &opts, &reporter, &listing);
    reporter.finish();
    let out = out.with_context(|| {
        format!(
            "restoring snapshot {} into {}",
            id.short(),
            args.target.display()
        )
    })?;
    if args.json {
        let mut v = serde_json::json!({
            "snapshot": id.to_hex(), "short_id": id.short(), "dry_run": args.dry_run,
            "files": out.files, "dirs": out.dirs, "other": out.other,
            "bytes": out.bytes, "replaced": out.replaced, "deleted": out.deleted,
            "errors": out.errors, "owner_denied": out.owner_denied,
            "setid_dropped": out.setid_dropped, "xattr_denied": out.xattr_denied,
        });
        if let Some(list) = listing.json {
            v["changes"] = list.into_inner().unwrap_or_else(|p| p.into_inner()).into();
        }
        outln!("{v}")?;
    } else if super::output::chatty() || args.dry_run {
        outln!("{}", summary(&out, &id.short(), &args))?;
    }
    warnings(&out);
    if out.errors > 0 {
        errln!(
            "error: {} entries could not be restored (named above)",
            out.errors
        );
        return Ok(super::EXIT_PARTIAL);
    }
    Ok(super::EXIT_OK)
}

fn summary(out: &RestoreOutcome, snap: &str, args: &Args) -> String {
    let what = format!(
        "{} files, {} directories, {} other entries, {}",
        out.files,
        out.dirs,
        out.other,
        bytes(out.bytes)
    );
    let target = args.target.display();
    let mut changed = Vec::new();
    if out.replaced > 0 {
        changed.push(format!("{} replaced", out.replaced));
    }
    if out.deleted > 0 || args.delete {
        changed.push(format!("{} deleted", out.deleted));
    }
    let changed = if changed.is_empty() {
        String::new()
    } else {
        format!(" ({})", changed.join(", "))
    };
    if args.dry_run {
        format!("dry run: would restore {what} from snapshot {snap} into {target}{changed}; nothing was changed")
    } else {
        format!("restored {what} from snapshot {snap} into {target}{changed}")
    }
}

fn warnings(out: &RestoreOutcome) {
    if out.owner_denied > 0 {
        errln!(
            "warning: could not set the owner of {} entries (restoring owners needs root)",
            out.owner_denied
        );
    }
    if out.setid_dropped > 0 {
        errln!(
            "warning: {} files restored without their setuid/setgid bit, as their owner or group could not be set",
            out.setid_dropped
        );
    }
    if out.xattr_denied > 0 {
        errln!(
            "warning: could not set {} extended attributes (trusted.* and security.* need root; the file system may not support them)",
            out.xattr_denied
        );
    }
}

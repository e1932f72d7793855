//! The command line. Raw clap arguments become checked options here, and only
//! then call the library. The only module that uses clap, and with `main.rs`
//! the only one that uses anyhow.
//!
//! Exit codes: 0 success; 1 failure; 2 usage error; 3 finished, but some files
//! could not be read or restored (each named on stderr).

mod backup;
mod cat;
mod check;
mod diff;
mod find;
mod forget;
mod init;
mod ls;
mod mount;
mod output;
mod prune;
mod repair;
mod restore;
mod snapshots;
mod stats;
mod unlock;
mod verify;

use crate::repo::{Repository, SnapshotFilter};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_PARTIAL: u8 = 3;

/// Permission-exact, deduplicated snapshots of directory trees.
#[derive(Parser, Debug)]
#[command(name = "rewind", version, about, propagate_version = true)]
pub struct Cli {
    /// Repository directory [default: $XDG_DATA_HOME/rewind or ~/.local/share/rewind]
    #[arg(long, short = 'r', env = "REWIND_REPO", global = true)]
    pub repo: Option<PathBuf>,

    /// Wait this long for a conflicting lock to go away (e.g. 30s, 10m, 2h) [default: 0, fail at once]
    #[arg(long, global = true, value_name = "DURATION")]
    pub lock_wait: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a repository
    Init(init::Args),
    /// Back up paths (or standard input) as a new snapshot
    Backup(backup::Args),
    /// List snapshots
    Snapshots(snapshots::Args),
    /// List the entries of a snapshot
    Ls(ls::Args),
    /// Write a file of a snapshot to standard output
    Cat(cat::Args),
    /// Restore a snapshot, or a path in it, into a directory
    Restore(restore::Args),
    /// Check the repository's integrity
    Check(check::Args),
    /// Show what changed between two snapshots, or between a snapshot and the live tree
    Diff(diff::Args),
    /// Prove that a directory (a restore, a copy, a mount) is exactly a snapshot
    Verify(verify::Args),
    /// Show sizes, deduplication and compression
    Stats(stats::Args),
    /// Find paths across snapshots: which snapshots hold them, and when they changed
    Find(find::Args),
    /// Mount the repository, or one snapshot, read-only through FUSE
    Mount(mount::Args),
    /// Unmount a rewind mount (also a dead one)
    Umount(mount::UmountArgs),
    /// Remove snapshots by a retention policy
    Forget(forget::Args),
    /// Delete data no snapshot needs, repack partly used packs, merge the index
    Prune(prune::Args),
    /// Remove stale locks
    Unlock(unlock::Args),
    /// Rebuild parts of the repository
    #[command(subcommand)]
    Repair(repair::Command),
}

/// Parse the command line and run it. Returns the exit code.
pub fn run() -> Result<u8> {
    let cli = Cli::parse();
    raise_fd_limit();
    let lock_wait = match &cli.lock_wait {
        None => std::time::Duration::ZERO,
        Some(s) => parse_wait(s)?,
    };
    let repo = RepoArg {
        explicit: cli.repo.clone(),
        lock_wait,
    };
    match cli.command {
        Command::Init(a) => init::run(&repo, a),
        Command::Backup(a) => backup::run(&repo, a),
        Command::Snapshots(a) => snapshots::run(&repo, a),
        Command::Ls(a) => ls::run(&repo, a),
        Command::Cat(a) => cat::run(&repo, a),
        Command::Restore(a) => restore::run(&repo, a),
        Command::Check(a) => check::run(&repo, a),
        Command::Diff(a) => diff::run(&repo, a),
        Command::Verify(a) => verify::run(&repo, a),
        Command::Stats(a) => stats::run(&repo, a),
        Command::Find(a) => find::run(&repo, a),
        Command::Mount(a) => mount::run(&repo, a),
        Command::Umount(a) => mount::umount(a),
        Command::Forget(a) => forget::run(&repo, a),
        Command::Prune(a) => prune::run(&repo, a),
        Command::Unlock(a) => unlock::run(&repo, a),
        Command::Repair(c) => repair::run(&repo, c),
    }
}

/// Where the repository is.
pub struct RepoArg {
    explicit: Option<PathBuf>,
    lock_wait: std::time::Duration,
}

impl RepoArg {
    /// The repository directory: `--repo`, `REWIND_REPO`, or the default.
    pub fn path(&self) -> Result<PathBuf> {
        if let Some(p) = &self.explicit {
            return Ok(p.clone());
        }
        default_repo()
    }

    pub fn is_default(&self) -> bool {
        self.explicit.is_none()
    }

    /// Take a shared lock (or an exclusive one) for `command`, waiting up to
    /// `--lock-wait` for conflicting holders. The caller must call
    /// [`Repository::reload_index`] afterwards, before it looks anything up:
    /// what was mapped before may predate a prune it waited for.
    ///
    /// A reader that may not write the repository (a read-only mount, another
    /// user's repository) goes on without a shared lock, with a warning.
    pub fn lock_unindexed(
        &self,
        repo: &Arc<Repository>,
        exclusive: bool,
        command: &str,
    ) -> Result<Option<crate::repo::lock::Lock>> {
        let lock = match crate::repo::lock::acquire(repo, exclusive, command, self.lock_wait) {
            Ok(lock) => Some(lock),
            Err(crate::error::Error::Io { source, .. })
                if !exclusive
                    && (source.kind() == std::io::ErrorKind::PermissionDenied
                        || source.raw_os_error() == Some(libc::EROFS)) =>
            {
                eprintln!(
                    "warning: cannot write a lock in {} ({source}); going on without one",
                    repo.backend().location()
                );
                None
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("locking repository {}", repo.backend().location())))
            }
        };
        Ok(lock)
    }

    /// Open the repository.
    pub fn open(&self) -> Result<Arc<Repository>> {
        let repo = self.open_unindexed()?;
        repo.reload_index()?;
        Ok(repo)
    }

    /// Open the repository and take its lock ([`RepoArg::lock_unindexed`]);
    /// the index is read once, under the lock.
    pub fn open_locked(
        &self,
        exclusive: bool,
        command: &str,
    ) -> Result<(Arc<Repository>, Option<crate::repo::lock::Lock>)> {
        let repo = self.open_unindexed()?;
        let lock = self.lock_unindexed(&repo, exclusive, command)?;
        repo.reload_index()?;
        Ok((repo, lock))
    }

    fn open_unindexed(&self) -> Result<Arc<Repository>> {
        let path = self.path()?;
        let repo = Repository::open_dir_unindexed(&path)
            .with_context(|| format!("opening repository {}", path.display()))?;
        Ok(Arc::new(repo))
    }
}

/// `$XDG_DATA_HOME/rewind`, else `~/.local/share/rewind`.
pub fn default_repo() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("rewind"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("cannot find a default repository: set --repo, REWIND_REPO or HOME")?;
    Ok(PathBuf::from(home).join(".local/share/rewind"))
}

/// Filters that narrow `latest` and listings.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots that include this path
    #[arg(long = "path")]
    pub paths: Vec<String>,
    /// Only snapshots with this tag
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

impl FilterArgs {
    pub fn filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            host: self.host.clone(),
            paths: self.paths.clone(),
            tags: self.tags.clone(),
        }
    }
}

/// Split `SNAP[:PATH]`.
pub fn split_snap_path(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((s, p)) => (s, Some(p)),
        None => (spec, None),
    }
}

/// Whether stderr is a terminal (progress bars only there).
pub fn stderr_is_tty() -> bool {
    unsafe { libc::isatty(2) == 1 }
}

/// `30s`, `10m`, `2h`, `1d` or plain seconds.
fn parse_wait(s: &str) -> Result<std::time::Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("--lock-wait {s:?}: expected e.g. 30s, 10m, 2h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => anyhow::bail!("--lock-wait {s:?}: unknown unit {unit:?} (use s, m, h or d)"),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// Restores keep a directory open per hard-link group and mounts keep packs
/// open: lift the soft limit on open files to the hard one (often 1024 vs
/// 524288 under systemd).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max
    {
        lim.rlim_cur = lim.rlim_max;
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

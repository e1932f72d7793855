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
mod forget;
mod init;
mod key;
mod ls;
mod mount;
mod output;
mod password;
mod prune;
mod repair;
mod restore;
mod snapshots;
mod stats;
mod unlock;
mod verify;

use crate::backend::counting::{Counter, Counting};
use crate::backend::location::Location;
use crate::backend::Backend;
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
    /// Repository: a directory, s3:https://HOST/BUCKET[/PREFIX] or sftp:[USER@]HOST:/PATH [default: $XDG_DATA_HOME/rewind or ~/.local/share/rewind]
    #[arg(
        long,
        short = 'r',
        env = "REWIND_REPO",
        global = true,
        value_name = "LOCATION"
    )]
    pub repo: Option<PathBuf>,

    /// Requests to a remote repository in flight at once, and packs stored at once by backup, prune and copy [default: 4 for a local repository, 8 for a remote one]
    #[arg(long, global = true, env = "REWIND_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub connections: Option<u16>,

    /// Wait this long for a conflicting lock to go away (e.g. 30s, 10m, 2h) [default: 0, fail at once]
    #[arg(long, global = true, value_name = "DURATION")]
    pub lock_wait: Option<String>,

    #[command(flatten)]
    pub password: password::PasswordArgs,

    /// Local cache of index files [default: $XDG_CACHE_HOME/rewind or ~/.cache/rewind]
    #[arg(long, global = true, env = "REWIND_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Keep no local cache: index files are read into memory at each start
    #[arg(long, global = true)]
    pub no_cache: bool,

    /// Argon2id cost of new keys, as m=64M,t=3,p=4 (the default; lower only for tests)
    #[arg(long, global = true, env = "REWIND_KDF_PARAMS", hide = true)]
    pub kdf_params: Option<String>,

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
    /// List, add, change and remove the passwords of an encrypted repository
    #[command(subcommand)]
    Key(key::Command),
}

/// Parse the command line and run it. Returns the exit code.
pub fn run() -> Result<u8> {
    let cli = Cli::parse();
    raise_fd_limit();
    let lock_wait = match &cli.lock_wait {
        None => std::time::Duration::ZERO,
        Some(s) => parse_wait(s)?,
    };
    let kdf = match &cli.kdf_params {
        None => crate::format::key::KdfParams::default(),
        Some(s) => crate::format::key::KdfParams::parse(s)?,
    };
    let repo = RepoArg {
        explicit: cli.repo.clone(),
        lock_wait,
        password: cli.password.clone(),
        cache_dir: cli.cache_dir.clone(),
        no_cache: cli.no_cache,
        kdf,
        secret: std::sync::OnceLock::new(),
        connections: cli.connections.map(usize::from),
        counter: Counter::default(),
    };
    let result = dispatch(&repo, cli.command);
    if std::env::var_os("REWIND_REQUEST_STATS").is_some_and(|v| !v.is_empty() && v != "0") {
        report_requests();
    }
    result
}

/// Print the request counts of every remote repository this process used
/// (`REWIND_REQUEST_STATS`).
fn report_requests() {
    for (location, counter) in COUNTERS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        eprintln!("{location}: {}", counter.snapshot().summary());
    }
}

/// The counters of the remote repositories opened, by location.
static COUNTERS: std::sync::Mutex<Vec<(String, Counter)>> = std::sync::Mutex::new(Vec::new());

fn dispatch(repo: &RepoArg, command: Command) -> Result<u8> {
    match command {
        Command::Init(a) => init::run(repo, a),
        Command::Backup(a) => backup::run(repo, a),
        Command::Snapshots(a) => snapshots::run(repo, a),
        Command::Ls(a) => ls::run(repo, a),
        Command::Cat(a) => cat::run(repo, a),
        Command::Restore(a) => restore::run(repo, a),
        Command::Check(a) => check::run(repo, a),
        Command::Diff(a) => diff::run(repo, a),
        Command::Verify(a) => verify::run(repo, a),
        Command::Stats(a) => stats::run(repo, a),
        Command::Mount(a) => mount::run(repo, a),
        Command::Umount(a) => mount::umount(a),
        Command::Forget(a) => forget::run(repo, a),
        Command::Prune(a) => prune::run(repo, a),
        Command::Unlock(a) => unlock::run(repo, a),
        Command::Repair(c) => repair::run(repo, c),
        Command::Key(c) => key::run(repo, c),
    }
}

/// Where the repository is, and how to open it.
#[derive(Clone)]
pub struct RepoArg {
    explicit: Option<PathBuf>,
    lock_wait: std::time::Duration,
    password: password::PasswordArgs,
    cache_dir: Option<PathBuf>,
    no_cache: bool,
    /// Argon2id cost of new keys.
    pub kdf: crate::format::key::KdfParams,
    /// The password, once asked for.
    secret: std::sync::OnceLock<Vec<u8>>,
    /// `--connections`.
    connections: Option<usize>,
    /// The requests to the repository, if it is remote.
    counter: Counter,
}

impl RepoArg {
    /// Where the repository is: `--repo`, `REWIND_REPO`, or the default
    /// directory.
    pub fn target(&self) -> Result<Location> {
        match &self.explicit {
            Some(p) => Ok(Location::parse(p.as_os_str())?),
            None => Ok(Location::Local(default_repo()?)),
        }
    }

    /// The repository directory, when the repository is local.
    pub fn path(&self) -> Result<PathBuf> {
        match self.target()? {
            Location::Local(p) => Ok(p),
            remote => anyhow::bail!("{remote} is not a local directory"),
        }
    }

    pub fn is_default(&self) -> bool {
        self.explicit.is_none()
    }

    /// Name the repository by another path (an absolute one).
    pub fn set_path(&mut self, path: PathBuf) {
        self.explicit = Some(path);
    }

    /// The storage behind the repository (a remote one's requests counted).
    pub fn backend(&self) -> Result<Arc<dyn Backend>> {
        Ok(open_backend(
            self.target()?,
            self.connections,
            &self.counter,
        ))
    }

    /// Where it is, for messages (never a secret).
    pub fn location(&self) -> String {
        self.target()
            .map(|l| l.to_string())
            .unwrap_or_else(|_| "the default repository".into())
    }

    /// Packs a writer stores at once: `--connections`, else 4 for a local
    /// repository and 8 for a remote one.
    pub fn connections(&self) -> usize {
        let remote = self
            .target()
            .is_ok_and(|l| !matches!(l, Location::Local(_)));
        connections(self.connections, remote)
    }

    /// The requests made to the repository so far, if it is remote.
    pub fn requests(&self) -> Option<crate::backend::counting::Requests> {
        match self.target() {
            Ok(Location::Local(_)) | Err(_) => None,
            Ok(_) => Some(self.counter.snapshot()),
        }
    }

    /// The repository's password, asked for once (`confirm`: twice, for a
    /// new one).
    pub fn password(&self, confirm: bool) -> Result<crate::repo::Secret> {
        if let Some(s) = self.secret.get() {
            return Ok(crate::repo::Secret::new(s.clone()));
        }
        let p = password::read(
            self.password.password_file.as_deref(),
            self.password.password_command.as_deref(),
            "REWIND_PASSWORD",
            &format!("password for repository {}: ", self.location()),
            confirm,
        )?;
        let _ = self.secret.set(p.bytes().to_vec());
        Ok(p)
    }

    /// The local cache's root, unless `--no-cache`.
    pub fn cache_root(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir
            .clone()
            .or_else(crate::repo::default_cache_root)
    }

    /// Take a shared lock (or an exclusive one) for `command`, waiting up to
    /// `--lock-wait` for conflicting holders. The caller must call
    /// [`Repository::reload_index`] afterwards, before it looks anything up:
    /// what was read before may predate a prune it waited for.
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
                    repo.location()
                );
                None
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("locking repository {}", repo.location())))
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

    /// Open the repository without reading its index.
    pub fn open_unindexed(&self) -> Result<Arc<Repository>> {
        self.open_plain().map(Arc::new)
    }

    /// [`RepoArg::open_unindexed`], not yet shared.
    pub fn open_plain(&self) -> Result<Repository> {
        let location = self.location();
        let backend = self.backend()?;
        let password = || -> crate::error::Result<crate::repo::Secret> {
            self.password(false)
                .map_err(|e| crate::error::Error::InvalidInput(format!("{e:#}")))
        };
        let opts = crate::repo::OpenOptions {
            password: &password,
            cache_root: self.cache_root(),
        };
        let repo = Repository::open(backend, &opts)
            .with_context(|| format!("opening repository {location}"))?;
        if let Some(e) = repo.cache_error() {
            eprintln!("warning: not using the cache ({e}); index files are read into memory");
        }
        Ok(repo)
    }
}

/// Packs stored at once: `given`, else 4 for a local repository and 8 for
/// a remote one.
fn connections(given: Option<usize>, remote: bool) -> usize {
    given.unwrap_or(if remote {
        8
    } else {
        crate::repo::writer::DEFAULT_CONNECTIONS
    })
}

/// The backend for `location`; a remote one's requests are counted in
/// `counter` (and reported under its location with `REWIND_REQUEST_STATS`).
fn open_backend(
    location: Location,
    connections: Option<usize>,
    counter: &Counter,
) -> Arc<dyn Backend> {
    let n = self::connections(connections, !matches!(location, Location::Local(_)));
    let retry = crate::backend::retry::Policy::from_env();
    let remote: Arc<dyn Backend> = match location {
        Location::Local(p) => return Arc::new(crate::backend::local::LocalBackend::new(p)),
        Location::S3(l) => Arc::new(crate::backend::s3::S3Backend::new(
            l,
            &crate::backend::s3::S3Options {
                connections: n,
                retry,
                credentials: None,
            },
        )),
        Location::Sftp(l) => Arc::new(crate::backend::sftp::SftpBackend::new(
            l,
            &crate::backend::sftp::SftpOptionsArg {
                connections: n,
                retry,
                command: std::env::var("REWIND_SFTP_COMMAND")
                    .ok()
                    .map(|c| c.split_whitespace().map(str::to_string).collect()),
            },
        )),
    };
    COUNTERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((remote.location(), counter.clone()));
    Arc::new(Counting::new(remote, counter.clone()))
}

/// Another repository (`--copy-chunker-params-from`, `copy --from-repo`):
/// a directory or a remote location, opened with its own password flags,
/// and its index read.
pub fn open_other(
    path: &std::path::Path,
    from: &password::FromPasswordArgs,
) -> Result<Arc<Repository>> {
    let location = Location::parse(path.as_os_str())?;
    let shown = location.to_string();
    let backend = open_backend(location, None, &Counter::default());
    let password = || -> crate::error::Result<crate::repo::Secret> {
        password::read(
            from.from_password_file.as_deref(),
            from.from_password_command.as_deref(),
            "REWIND_FROM_PASSWORD",
            &format!("password for repository {shown}: "),
            false,
        )
        .map_err(|e| crate::error::Error::InvalidInput(format!("{e:#}")))
    };
    let opts = crate::repo::OpenOptions {
        password: &password,
        cache_root: None,
    };
    let repo =
        Repository::open(backend, &opts).with_context(|| format!("opening repository {shown}"))?;
    repo.reload_index()?;
    Ok(Arc::new(repo))
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

/// Whether stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    unsafe { libc::isatty(0) == 1 }
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

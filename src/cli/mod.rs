//! The command line. Raw clap arguments become checked options here, and only
//! then call the library. The only module that uses clap, and with `main.rs`
//! the only one that uses anyhow.
//!
//! Exit codes: 0 success; 1 failure; 2 usage error (and, for `diff` and
//! `verify`, any trouble: 1 means "different" there, as in diff(1)); 3
//! finished, but some files could not be read or restored (each named on
//! stderr); 130 stopped by SIGINT or SIGTERM.
//!
//! Output goes through writers that return errors: a closed stdout (`rewind
//! ls … | head`) ends a listing quietly with 0, and a command whose outcome
//! is known before it prints (`diff`, `verify`, `check`, `backup`, `forget`)
//! keeps that outcome's exit code. Nothing here panics on a write.

/// A line on stderr; a closed stderr is ignored (there is nowhere left to say it).
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// A line of a report on stdout ([`output::report`]): `outln!(…)?`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::report(format_args!($($arg)*))
    };
}

/// Return a usage error (exit 2) from the enclosing function.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::cli::Usage(format!($($arg)*))))
    };
}

mod backup;
mod cat;
mod check;
mod copy;
mod diff;
mod dump;
mod find;
mod forget;
mod init;
mod json;
mod key;
mod ls;
mod manual;
mod mount;
mod output;
mod parse;
mod password;
mod prune;
mod repair;
mod restore;
mod select;
mod snapshots;
mod stats;
mod tag;
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
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_PARTIAL: u8 = 3;
pub const EXIT_INTERRUPTED: u8 = 130;

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

    /// Requests to a remote repository in flight at once, and packs stored at once by backup, prune and copy [default: 4 packs for a local repository; 8 packs for a remote one, and 16 requests on S3, 8 over SFTP]
    #[arg(long, global = true, env = "REWIND_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub connections: Option<u16>,

    /// Wait this long for a conflicting lock to go away (e.g. 30s, 10m, 2h, 1h30m) [default: 0, fail at once]
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse::wait)]
    pub lock_wait: Option<std::time::Duration>,

    /// Print only warnings and errors (and what a listing or --json asks for)
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Say more: `backup` and `restore` name each file they read or write
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,

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
    /// Write a file's bytes, or a directory as a tar archive, to standard output
    Dump(dump::Args),
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
    /// Remove snapshots: by id, or by a retention policy
    Forget(forget::Args),
    /// Add, remove or replace the tags of snapshots
    Tag(tag::Args),
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
    /// Copy snapshots from another repository into this one
    Copy(copy::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion(manual::CompletionArgs),
    /// Print the man page (roff), or write one page per command into a directory
    Man(manual::ManArgs),
}

/// Commands that never open a repository: their help leaves out the
/// repository options.
const NO_REPOSITORY: [&str; 3] = ["umount", "completion", "man"];

/// The clap command, with the global repository options hidden from the help
/// of commands that do not use them.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    cmd.build();
    for name in NO_REPOSITORY {
        cmd = cmd.mut_subcommand(name, |sub| {
            // In place: the built command's keys point at argument positions.
            sub.mut_args(|a| {
                let repository =
                    a.is_global_set() && !matches!(a.get_id().as_str(), "quiet" | "verbose");
                let hidden = repository || a.is_hide_set();
                a.hide(hidden)
            })
        });
    }
    cmd
}

/// An error and the exit code it ends the process with.
#[derive(Debug)]
pub struct Failure {
    pub error: anyhow::Error,
    code: u8,
}

impl Failure {
    /// The exit code; a closed stdout is a quiet success (the reader left).
    pub fn exit_code(&self) -> u8 {
        if self.is_broken_pipe() {
            EXIT_OK
        } else if self.interrupted() {
            EXIT_INTERRUPTED
        } else if self.error.chain().any(|e| e.is::<Usage>()) {
            EXIT_USAGE
        } else {
            self.code
        }
    }

    /// What to print on stderr: nothing for a closed stdout.
    pub fn message(&self) -> Option<String> {
        if self.is_broken_pipe() {
            None
        } else if self.interrupted() {
            Some("rewind: interrupted".into())
        } else {
            Some(format!("rewind: error: {:#}", self.error))
        }
    }

    fn is_broken_pipe(&self) -> bool {
        output::is_broken_pipe(&self.error)
    }

    fn interrupted(&self) -> bool {
        self.error.chain().any(|e| {
            matches!(
                e.downcast_ref::<crate::error::Error>(),
                Some(crate::error::Error::Interrupted(_))
            )
        })
    }
}

/// A usage error found after parsing: exit 2, as clap's own.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Parse the command line and run it. Returns the exit code.
pub fn run() -> Result<u8, Failure> {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    output::set_level(if cli.quiet {
        output::Level::Quiet
    } else if cli.verbose {
        output::Level::Verbose
    } else {
        output::Level::Normal
    });
    raise_fd_limit();
    let kdf = match &cli.kdf_params {
        None => crate::format::key::KdfParams::default(),
        Some(s) => crate::format::key::KdfParams::parse(s).map_err(|e| Failure {
            error: anyhow::anyhow!("--kdf-params {s:?}: {e}"),
            code: EXIT_USAGE,
        })?,
    };
    let repo = RepoArg {
        explicit: cli.repo.clone(),
        lock_wait: cli.lock_wait.unwrap_or_default(),
        password: cli.password.clone(),
        cache_dir: cli.cache_dir.clone(),
        no_cache: cli.no_cache,
        kdf,
        secret: std::sync::OnceLock::new(),
        connections: cli.connections.map(usize::from),
        counter: Counter::default(),
    };
    // These stop cleanly on SIGINT and SIGTERM (also while waiting for a
    // lock): they look at the stop request where stopping is safe.
    if matches!(
        cli.command,
        Command::Backup(_)
            | Command::Check(_)
            | Command::Prune(_)
            | Command::Forget(_)
            | Command::Tag(_)
    ) {
        crate::interrupt::install();
    }
    // `diff` and `verify` say "different" with 1, so trouble is 2 (diff(1)).
    let trouble = match cli.command {
        Command::Diff(_) | Command::Verify(_) => EXIT_USAGE,
        _ => EXIT_FAILURE,
    };
    let res = match cli.command {
        Command::Init(a) => init::run(&repo, a),
        Command::Backup(a) => backup::run(&repo, a),
        Command::Snapshots(a) => snapshots::run(&repo, a),
        Command::Ls(a) => ls::run(&repo, a),
        Command::Cat(a) => cat::run(&repo, a),
        Command::Dump(a) => dump::run(&repo, a),
        Command::Restore(a) => restore::run(&repo, a),
        Command::Check(a) => check::run(&repo, a),
        Command::Diff(a) => diff::run(&repo, a),
        Command::Verify(a) => verify::run(&repo, a),
        Command::Stats(a) => stats::run(&repo, a),
        Command::Find(a) => find::run(&repo, a),
        Command::Mount(a) => mount::run(&repo, a),
        Command::Umount(a) => mount::umount(a),
        Command::Forget(a) => forget::run(&repo, a),
        Command::Tag(a) => tag::run(&repo, a),
        Command::Prune(a) => prune::run(&repo, a),
        Command::Unlock(a) => unlock::run(&repo, a),
        Command::Repair(c) => repair::run(&repo, c),
        Command::Key(c) => key::run(&repo, c),
        Command::Copy(a) => copy::run(&repo, a),
        Command::Completion(a) => manual::completion(a),
        Command::Man(a) => manual::man(a),
    };
    if std::env::var_os("REWIND_REQUEST_STATS").is_some_and(|v| !v.is_empty() && v != "0") {
        report_requests();
    }
    res.map_err(|error| Failure {
        error: hint(error, &repo),
        code: trouble,
    })
}

/// Print the request counts of every remote repository this process used
/// (`REWIND_REQUEST_STATS`).
fn report_requests() {
    for (location, counter) in COUNTERS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        errln!("{location}: {}", counter.snapshot().summary());
    }
}

/// The counters of the remote repositories opened, by location.
static COUNTERS: std::sync::Mutex<Vec<(String, Counter)>> = std::sync::Mutex::new(Vec::new());

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

/// Requests in flight at once to an S3 bucket, unless `--connections`
/// says (over SFTP, each connection is an `ssh` session: as many as packs).
const S3_REQUESTS: usize = 16;

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
    // A request to a bucket costs little memory beyond the read-ahead's
    // fixed budget, and a slow server answers more of them at once: reads
    // (a restore, the mount, check) go wider than the packs a backup holds.
    let in_flight = match location {
        Location::S3(_) => connections.unwrap_or(S3_REQUESTS),
        _ => n,
    };
    let retry = crate::backend::retry::Policy::from_env();
    let remote: Arc<dyn Backend> = match location {
        Location::Local(p) => return Arc::new(crate::backend::local::LocalBackend::new(p)),
        Location::S3(l) => Arc::new(crate::backend::s3::S3Backend::new(
            l,
            &crate::backend::s3::S3Options {
                connections: in_flight,
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
    // Counted inside the read-ahead: the counts are the requests made.
    let counted = Arc::new(Counting::new(remote, counter.clone()));
    Arc::new(crate::backend::readahead::ReadAhead::new(
        counted, in_flight,
    ))
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
    /// Only snapshots with this tag (`a,b` or repeated: every one given)
    #[arg(long = "tag", value_delimiter = ',', value_parser = parse::tag)]
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

/// The error, with a hint when the repository does not exist.
fn hint(error: anyhow::Error, repo: &RepoArg) -> anyhow::Error {
    let missing = error.chain().any(|e| {
        matches!(e.downcast_ref::<crate::error::Error>(),
            Some(crate::error::Error::NotFound(what)) if what.starts_with("repository "))
            || matches!(e.downcast_ref::<crate::error::Error>(),
            Some(crate::error::Error::InvalidInput(what)) if what.contains("it has no config file"))
    });
    match repo.path() {
        Ok(path) if missing && !path.exists() => anyhow::anyhow!(
            "there is no repository at {} (create one with `rewind --repo {} init`, or name another with --repo or REWIND_REPO)",
            path.display(),
            path.display()
        ),
        _ => error,
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

//! `rewind mount` and `rewind umount`.
//!
//! The mount runs in the foreground until it is unmounted (`rewind umount`,
//! `umount`, `fusermount3 -u`, Ctrl-C, SIGTERM or SIGHUP), then exits 0. A
//! first signal detaches the mount, which ends once no process uses it; a
//! second signal exits at once. `--daemon` forks before the serving threads
//! start (the one that opened the repository has ended), and the parent
//! returns only when the child's mount is ready (or with the child's error).

use super::{FilterArgs, RepoArg};
use crate::fuse::{self, MountOptions};
use crate::repo::Repository;
use crate::vfs::{mountpoint, Options, Root, Vfs};
use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Empty directory to mount on
    pub mountpoint: PathBuf,
    /// Show only this snapshot (id, id prefix or `latest`) at the mount's root
    #[arg(long)]
    pub snapshot: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Let other users in (the kernel still enforces the stored modes, owners and ACLs)
    #[arg(long)]
    pub allow_other: bool,
    /// Memory for decompressed chunks, in bytes (suffixes K, M, G)
    #[arg(long, default_value = "256M", value_parser = super::parse::size)]
    pub cache_size: u64,
    /// Return once the mount is ready, leaving it served in the background
    #[arg(long)]
    pub daemon: bool,
    /// Append read errors to this file (with --daemon they are discarded otherwise)
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Threads serving requests
    #[arg(long, default_value_t = 4, value_parser = super::parse::threads)]
    pub threads: usize,
    /// Take no shared lock, so `prune` is not held up by a long-lived mount
    /// (and may delete data the mount shows)
    #[arg(long)]
    pub no_lock: bool,
}

#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    /// Where a rewind mount (alive or dead) is mounted
    pub mountpoint: PathBuf,
}

/// Where to mount what, checked before anything is mounted.
struct Plan {
    repo: Arc<Repository>,
    repo_path: PathBuf,
    mountpoint: PathBuf,
    log: Option<File>,
}

pub fn run(repo: &RepoArg, args: Args) -> Result<u8> {
    if args.snapshot.is_none() && !args.filter.filter().is_empty() {
        bail!(
            "--host, --path and --tag choose the snapshot of --snapshot (as in `--snapshot latest --host web1`); \
             without --snapshot the mount shows every snapshot, by host under hosts/ and by tag under tags/"
        );
    }
    let plan = plan(repo, &args)?;
    if args.daemon {
        return daemon(repo, plan, &args);
    }
    if let Some(log) = &plan.log {
        redirect(log, 2)?;
    }
    serve(repo, plan, &args, |mnt, what| {
        errln!(
            "rewind: mounted {what} on {}; unmount with `rewind umount {}` or Ctrl-C",
            mnt.display(),
            mnt.display()
        );
    })
}

pub fn umount(args: UmountArgs) -> Result<u8> {
    mountpoint::detach(&args.mountpoint)
        .with_context(|| format!("unmounting {}", args.mountpoint.display()))?;
    Ok(super::EXIT_OK)
}

fn plan(repo: &RepoArg, args: &Args) -> Result<Plan> {
    // The repository is opened while the mountpoint is checked: on a cold
    // cache each is a few reads of directory blocks, and the mount is in
    // place that much sooner. A failed check returns at once, leaving the
    // thread to end on its own (a repository on a stalled network file
    // system does not hold up the error).
    let opening = open_in_background(repo.clone());
    let mnt = mountpoint::check(&args.mountpoint).context("cannot mount")?;
    mountpoint::check_fuse_device().context("cannot mount")?;
    let (repo_path, repo) = opening?
        .join()
        .map_err(|_| anyhow!("opening the repository failed"))?;
    let repo = Arc::new(repo?);
    let log = match &args.log_file {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening log file {}", p.display()))?,
        ),
        None => None,
    };
    Ok(Plan {
        repo,
        repo_path,
        mountpoint: mnt,
        log,
    })
}

/// The repository, opened in a thread (asking for its password there, on
/// the terminal if need be, before any daemon detaches), with its location
/// (a local repository's absolute path, so the daemon can leave the working
/// directory). Its index is read once the mount holds its lock (see `serve`).
fn open_in_background(
    mut repo: RepoArg,
) -> Result<std::thread::JoinHandle<(PathBuf, Result<Repository>)>> {
    std::thread::Builder::new()
        .spawn(move || {
            let repo_path = repo.path().map(|p| std::fs::canonicalize(&p).unwrap_or(p));
            let repo_path = repo_path.unwrap_or_else(|_| PathBuf::from(repo.location()));
            repo.set_path(repo_path.clone());
            let opened = repo.open_plain();
            (repo_path, opened)
        })
        .context("starting a thread")
}

/// What the mount shows at its root, and how to name it.
fn root(repo: &Repository, repo_path: &Path, args: &Args) -> Result<(Root, String)> {
    Ok(match &args.snapshot {
        Some(spec) => {
            let (id, snap) = super::select::find(repo, spec, &args.filter.filter(), None)
                .with_context(|| format!("finding snapshot {spec}"))?;
            (
                Root::Snapshot {
                    tree: snap.tree,
                    time: snap.time,
                },
                format!("snapshot {}", id.short()),
            )
        }
        None => (
            Root::Repository,
            format!("repository {}", repo_path.display()),
        ),
    })
}

/// Mount and serve until unmounted; `ready` runs once the mount is usable,
/// with what it shows. A shared lock is held meanwhile, so `prune` cannot
/// delete data under the mount.
///
/// The mount comes first; the lock, the index and the snapshots are read
/// after it, before any request is served. A process waiting for the mount
/// to appear (`mountpoint -q` in a loop) finds it as soon as it exists, and
/// its first requests wait in the kernel for the rest of the start-up (for
/// all of `--lock-wait`, if prune holds the lock). Anything that fails then
/// undoes the mount.
fn serve(
    repo_arg: &RepoArg,
    plan: Plan,
    args: &Args,
    ready: impl FnOnce(&Path, &str),
) -> Result<u8> {
    // Signals go to the watcher thread only: block them before the serving
    // threads start (the one that opened the repository has ended).
    let signals = shutdown_signals();
    signals.thread_block().context("blocking signals")?;
    // Buffers of a MiB and more (whole chunks) come from mmap and go back on
    // free, and two arenas serve all threads, so memory held follows the
    // caches rather than the allocator's high-water marks.
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let opts = Options {
        cache_bytes: args.cache_size,
        read_ahead_threads: 2,
        owner: (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        ),
    };
    let repo = plan.repo.clone();
    let vfs = Arc::new(Vfs::unrooted(plan.repo, &opts));
    watch_signals(signals, plan.mountpoint.clone());
    let mount_opts = MountOptions {
        allow_other: args.allow_other,
        threads: args.threads.max(1),
        fsname: format!("{}{}", mountpoint::SOURCE_PREFIX, plan.repo_path.display())
            .replace(',', "_"),
    };
    let mnt = plan.mountpoint;
    let prepare = || -> Result<_> {
        // A repository this user cannot write is mounted without a lock
        // (with a warning from `lock_unindexed`). The index is read once,
        // under the lock, so it cannot predate a prune we waited for.
        let lock = match args.no_lock {
            true => None,
            false => repo_arg.lock_unindexed(&repo, false, "mount")?,
        };
        let (root, what) = root(&repo, &plan.repo_path, args)?;
        repo.reload_index()
            .with_context(|| format!("reading the index of {}", plan.repo_path.display()))?;
        vfs.set_root(root).context("preparing the mount")?;
        Ok((lock, what))
    };
    fuse::serve(vfs.clone(), &mnt, &mount_opts, prepare, |(_, what)| {
        ready(&mnt, what)
    })
    .with_context(|| format!("mounting on {}", mnt.display()))?;
    Ok(super::EXIT_OK)
}

fn shutdown_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

/// On the first signal detach the mount (the session then ends and the
/// process exits 0); on a second, exit at once.
fn watch_signals(set: SigSet, mnt: PathBuf) {
    std::thread::spawn(move || {
        let mut detached = false;
        while set.wait().is_ok() {
            if detached || mountpoint::detach(&mnt).is_err() {
                std::process::exit(super::EXIT_OK as i32);
            }
            errln!(
                "rewind: unmounting {}; the mount ends when no process uses it (signal again to stop now)",
                mnt.display()
            );
            detached = true;
        }
    });
}

/// Fork; the child mounts and serves, the parent waits until the mount is
/// ready and returns, or fails with the child's error.
fn daemon(repo_arg: &RepoArg, plan: Plan, args: &Args) -> Result<u8> {
    let (rx, tx) = nix::unistd::pipe().context("creating a pipe")?;
    // SAFETY: no thread of ours is at work (`plan`'s has ended). A remote
    // repository's I/O runtime has idle threads, which the child does not
    // get: it starts its own runtime and leaves the parent's, and the
    // clients made on it, untouched (`backend::runtime::generation`).
    match unsafe { nix::unistd::fork() }.context("forking")? {
        nix::unistd::ForkResult::Parent { child } => {
            drop(tx);
            let mut msg = String::new();
            File::from(rx)
                .read_to_string(&mut msg)
                .context("waiting for the mount")?;
            match msg.strip_prefix("ok\n") {
                Some(what) => {
                    errln!(
                        "rewind: mounted {what} on {} (process {child})",
                        plan.mountpoint.display()
                    );
                    Ok(super::EXIT_OK)
                }
                None if msg.is_empty() => {
                    bail!("the mount process ended before the mount was ready")
                }
                None => Err(anyhow!("{}", msg.trim_end())),
            }
        }
        nix::unistd::ForkResult::Child => {
            drop(rx);
            std::process::exit(daemon_child(repo_arg, plan, args, tx))
        }
    }
}

fn daemon_child(repo_arg: &RepoArg, plan: Plan, args: &Args, tx: OwnedFd) -> i32 {
    let pipe = Arc::new(Mutex::new(Some(File::from(tx))));
    let detach = (|| -> Result<()> {
        nix::unistd::setsid()?;
        std::env::set_current_dir("/")?;
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        redirect(&null, 0)?;
        redirect(&null, 1)?;
        redirect(plan.log.as_ref().unwrap_or(&null), 2)
    })();
    let ready_pipe = pipe.clone();
    let res = detach.and_then(|_| {
        serve(repo_arg, plan, args, move |_, what| {
            if let Some(mut p) = ready_pipe.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = write!(p, "ok\n{what}");
            }
        })
    });
    match res {
        Ok(code) => code as i32,
        Err(e) => {
            if let Some(mut p) = pipe.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = write!(p, "{e:#}");
            }
            errln!("rewind: error: {e:#}");
            super::EXIT_FAILURE as i32
        }
    }
}

/// Point file descriptor `fd` at `file`.
fn redirect(file: &File, fd: i32) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 on two valid descriptors.
    if unsafe { libc::dup2(file.as_raw_fd(), fd) } < 0 {
        return Err(std::io::Error::last_os_error()).context("redirecting output");
    }
    Ok(())
}

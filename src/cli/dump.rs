//! `rewind dump`.

use super::output::Reporter;
use super::{FilterArgs, RepoArg};
use crate::dump;
use crate::format::tree::Kind;
use crate::repo::content::ReadAhead;
use anyhow::{bail, Context, Result};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::BufWriter;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SNAP[:PATH]: a snapshot (id, id prefix or `latest`) and a path in it [default: the whole snapshot]
    pub snapshot: OsString,
    /// Write a tar archive even of a single file (a directory is always one)
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub archive: Option<Archive>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Archive formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Archive {
    /// POSIX pax, with GNU sparse members, xattrs and ACLs (GNU tar, bsdtar)
    Tar,
}

pub fn run(repo: &RepoArg, args: Args) -> Result<u8> {
    // Ctrl-C ends the archive unfinished (no end-of-archive marker) and
    // releases the repository lock, rather than killing us with it held.
    crate::interrupt::install();
    let (spec, sub) = split(&args.snapshot)?;
    let (repo, _lock) = repo.open_locked(false, "dump")?;
    // `latest:PATH` is the newest snapshot holding PATH (as for cat and
    // restore); a path that is not UTF-8 narrows nothing.
    let holding = std::str::from_utf8(sub.as_bytes())
        .ok()
        .map(super::select::absolute)
        .filter(|p| p != "/");
    let (id, snap) = super::select::find(&repo, spec, &args.filter.filter(), holding.as_deref())
        .with_context(|| format!("finding snapshot {spec}"))?;
    let entry = repo
        .entry_at(&snap.tree, sub.as_bytes())
        .with_context(|| format!("snapshot {}", id.short()))?;
    let relative = OsStr::from_bytes(trim_slashes(sub.as_bytes()));
    let snap_path = PathBuf::from("/").join(relative);
    let what = || format!("{}:{}", id.short(), snap_path.display());
    let tar = args.archive == Some(Archive::Tar) || entry.kind == Kind::Dir;
    if !tar && entry.kind != Kind::File {
        bail!(
            "{} is a {}: only a regular file dumps as its bytes (add --archive tar for a tar archive)",
            what(),
            kind_name(entry.kind)
        );
    }
    if tar && unsafe { libc::isatty(1) } == 1 {
        bail!("refusing to write a tar archive to a terminal: redirect standard output to a file or a pipe");
    }
    let stdout = raw_stdout()?;
    widen_pipe(&stdout);
    let out = BufWriter::with_capacity(1 << 20, &*stdout);
    if !tar {
        dump::write_content(&repo, &entry, &snap_path, out, ReadAhead::default())
            .with_context(|| format!("dumping {}", what()))?;
        return Ok(super::EXIT_OK);
    }
    let reporter = Reporter::new("dumped", super::stderr_is_tty());
    let res = dump::write_tar(
        &repo,
        &entry,
        &snap_path,
        out,
        ReadAhead::default(),
        &reporter,
    );
    reporter.finish();
    if let Err(crate::error::Error::Interrupted(_)) = &res {
        // The CLI then says only "interrupted".
        eprintln!(
            "rewind: dump of {} stopped: the archive written is incomplete and must not be used",
            what()
        );
    }
    let outcome = res.with_context(|| {
        format!(
            "dumping {} (the archive written is incomplete and must not be used)",
            what()
        )
    })?;
    if outcome.lost_xattrs > 0 {
        eprintln!(
            "error: {} extended attributes could not be written to the archive (named above)",
            outcome.lost_xattrs
        );
        return Ok(super::EXIT_PARTIAL);
    }
    Ok(super::EXIT_OK)
}

/// `SNAP[:PATH]`: the snapshot spec (UTF-8) and the path (any bytes; `/`
/// when absent).
fn split(arg: &OsStr) -> Result<(&str, &OsStr)> {
    let bytes = arg.as_bytes();
    let (spec, path) = match bytes.iter().position(|&b| b == b':') {
        Some(i) => (&bytes[..i], OsStr::from_bytes(&bytes[i + 1..])),
        None => (bytes, OsStr::new("/")),
    };
    let spec = std::str::from_utf8(spec)
        .with_context(|| format!("{arg:?}: the snapshot before ':' is not UTF-8"))?;
    let path = if path.is_empty() {
        OsStr::new("/")
    } else {
        path
    };
    Ok((spec, path))
}

fn trim_slashes(mut p: &[u8]) -> &[u8] {
    while let Some(rest) = p.strip_prefix(b"/") {
        p = rest;
    }
    p
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "regular file",
        Kind::Dir => "directory",
        Kind::Symlink => "symbolic link",
        Kind::Fifo => "FIFO",
        Kind::Socket => "socket",
        Kind::CharDev => "character device",
        Kind::BlockDev => "block device",
    }
}

/// When standard output is a pipe, make it hold a whole write buffer (1 MiB,
/// the most Linux lets any user ask for by default) instead of 64 KiB, so a
/// reader such as `tar -x` is woken once a MiB, not 16 times. Failing
/// leaves the pipe as it was.
fn widen_pipe(out: &File) {
    let is_pipe = out.metadata().is_ok_and(|m| m.file_type().is_fifo());
    if is_pipe {
        // SAFETY: fcntl on an open descriptor; no memory is passed.
        unsafe { libc::fcntl(out.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    }
}

/// Standard output as a file, without Rust's line buffering (dumps write
/// blocks of a MiB, which `Stdout` would search for newlines). It is never
/// closed.
pub(super) fn raw_stdout() -> Result<ManuallyDrop<File>> {
    if unsafe { libc::fcntl(1, libc::F_GETFD) } < 0 {
        bail!("standard output is closed");
    }
    // SAFETY: descriptor 1 is open (checked above) and stays open for the
    // life of the process; ManuallyDrop keeps the File from closing it.
    Ok(ManuallyDrop::new(unsafe { File::from_raw_fd(1) }))
}

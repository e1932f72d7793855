//! A file that comes from standard input or from a command's output (a
//! database dump), chunked as it streams in.
//!
//! Reads wait in `poll` with a short timeout, so a stop request
//! ([`crate::interrupt`]) is seen even while the dump is silent (a large
//! query before its first row), whichever thread the signal landed on. On a
//! stop request the command gets SIGTERM, then SIGKILL if it has not ended
//! within [`GRACE`], and no snapshot is written.
//!
//! Without a controlling terminal (cron, systemd) the command runs in a
//! process group of its own, and the stop goes to the whole group: `sh`,
//! and a pipeline such as `mysqldump | gzip` under it. At a terminal it
//! stays in rewind's group, so that it can prompt (a password read from
//! `/dev/tty`) and Ctrl-C reaches all of it directly; the stop then goes to
//! `sh` alone.

use super::{file, now, Counters};
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::format::tree::{Entry, Extent, Kind};
use crate::meta::Names;
use crate::progress::Progress;
use crate::repo::writer::RepoWriter;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// How long a command may take to end after SIGTERM before it gets SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// How often a silent stream looks for a stop request.
const POLL_MS: i32 = 200;

/// Read standard input or a command's output into a file entry. A command
/// that exits non-zero fails the backup: a failed dump must never look like a
/// good backup.
pub(super) fn read_stdin(
    src: &super::StdinSource,
    writer: &RepoWriter,
    chunker: &Chunker,
    counters: &Counters,
    progress: &dyn Progress,
) -> Result<Entry> {
    let name = src
        .path
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    let mut entry = Entry::new(name, Kind::File);
    let t = now();
    (entry.mtime, entry.atime, entry.ctime) = (t, t, t);
    entry.mode = 0o600;
    // SAFETY: getuid and getgid cannot fail.
    entry.uid = unsafe { libc::getuid() };
    entry.gid = unsafe { libc::getgid() };
    let names = Names::default();
    entry.user = names.user(entry.uid);
    entry.group = names.group(entry.gid);
    let label = src.path.display().to_string();
    let (extents, size) = match &src.command {
        None => {
            let stdin = io::stdin();
            chunk_stream(stdin.as_raw_fd(), chunker, writer, &label, progress)?
        }
        Some(cmd) => run_command(cmd, chunker, writer, &label, progress)?,
    };
    entry.size = size;
    entry.extents = extents;
    counters.files_new.fetch_add(1, Relaxed);
    counters.bytes_read.fetch_add(size, Relaxed);
    counters.total_bytes.fetch_add(size, Relaxed);
    Ok(entry)
}

/// Run `cmd` with `sh -c` and chunk its standard output.
fn run_command(
    cmd: &str,
    chunker: &Chunker,
    writer: &RepoWriter,
    label: &str,
    progress: &dyn Progress,
) -> Result<(Vec<Extent>, u64)> {
    let what = || format!("command {cmd:?}");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let own_group = !has_terminal();
    if own_group {
        command.process_group(0);
    }
    let mut child = command.spawn().map_err(|e| Error::io(what(), e))?;
    let mut child = Dump {
        child: &mut child,
        own_group,
    };
    let out = child.child.stdout.take().expect("piped");
    let res = chunk_stream(out.as_raw_fd(), chunker, writer, label, progress);
    drop(out);
    if let Err(e @ Error::Interrupted(_)) = res {
        child.stop();
        return Err(e);
    }
    let status = child.wait().map_err(|e| Error::io(what(), e))?;
    crate::interrupt::check()?;
    if !status.success() {
        writer.flush()?;
        return Err(Error::InvalidInput(format!(
            "command {cmd:?} failed ({status}); no snapshot was written"
        )));
    }
    res
}

/// Whether this process has a controlling terminal.
fn has_terminal() -> bool {
    // SAFETY: open and close of a path; the descriptor is closed at once.
    unsafe {
        let fd = libc::open(c"/dev/tty".as_ptr(), libc::O_RDONLY | libc::O_NOCTTY);
        if fd >= 0 {
            libc::close(fd);
        }
        fd >= 0
    }
}

/// The running dump command.
struct Dump<'a> {
    child: &'a mut Child,
    /// Whether it leads a process group of its own (see the module doc).
    own_group: bool,
}

impl Dump<'_> {
    /// Wait for the command, stopping it if a stop is requested meanwhile.
    fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if crate::interrupt::requested() {
                self.stop();
                return self.child.wait();
            }
            std::thread::sleep(Duration::from_millis(POLL_MS as u64));
        }
    }

    /// SIGTERM, then SIGKILL after [`GRACE`]; reaps the command.
    fn stop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        let target = if self.own_group { -pid } else { pid };
        // SAFETY: kill has no memory effects; the target is the child or its
        // own group, and the child is not reaped yet, so its id cannot have
        // been reused.
        unsafe { libc::kill(target, libc::SIGTERM) };
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(target, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Chunk the stream on `fd` into data blobs.
fn chunk_stream(
    fd: RawFd,
    chunker: &Chunker,
    writer: &RepoWriter,
    label: &str,
    progress: &dyn Progress,
) -> Result<(Vec<Extent>, u64)> {
    let mut buf = [Vec::new(), Vec::new()];
    let mut extents = Vec::new();
    let on_read = |n| progress.bytes_read(n);
    let total = file::chunk_source(
        |dst| read_polled(fd, dst),
        &mut buf,
        chunker,
        writer,
        &mut extents,
        &on_read,
    )
    .map_err(|e| match e {
        file::ChunkError::Read(e) => Error::io(label, e),
        file::ChunkError::Store(e) => e,
    })?;
    Ok((extents, total))
}

/// Read from `fd` once it has data, returning `Interrupted` (which
/// [`file::chunk_source`] turns into the stop request) when a stop is
/// requested first.
fn read_polled(fd: RawFd, dst: &mut [u8]) -> io::Result<usize> {
    loop {
        if crate::interrupt::requested() {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, POLL_MS) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            continue;
        }
        // SAFETY: dst is a valid buffer of dst.len() bytes.
        let r = unsafe { libc::read(fd, dst.as_mut_ptr().cast(), dst.len()) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

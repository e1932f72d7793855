//! The async runtime behind the remote backends' blocking calls.
//!
//! The S3 and SFTP clients are async (tokio); the [`Backend`](super::Backend)
//! trait is blocking, called from plain threads (the writer's upload pool,
//! restore workers, FUSE request threads). Each call runs its future to
//! completion with [`block_on`] on one process-wide runtime, started at the
//! first remote request, so a local repository starts no thread.
//!
//! A runtime does not survive `fork` (`rewind mount --daemon` forks after
//! opening the repository): the child has none of its threads. So the
//! runtime, and every connection made on it, belongs to the process that
//! made it; a backend asks [`generation`] before each request and reconnects
//! in a new process. The parent's runtime is left alone in the child (never
//! dropped: dropping would wait for threads that do not exist there).

use crate::error::{Error, Result};
use std::future::Future;
use std::sync::Mutex;

/// The runtime of this process, with the pid that made it.
static RUNTIME: Mutex<Option<(u32, &'static tokio::runtime::Runtime)>> = Mutex::new(None);

/// The runtime this process runs requests on, started if need be.
pub(crate) fn get() -> Result<&'static tokio::runtime::Runtime> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((owner, rt)) = *slot {
        if owner == pid {
            return Ok(rt);
        }
    }
    // TLS for https endpoints: ring's primitives (a second install, by
    // another caller first, is refused harmlessly).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get().clamp(2, 4))
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("rewind-io")
        .enable_all()
        .build()
        .map_err(|e| Error::io("the I/O runtime", e))?;
    let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(rt));
    *slot = Some((pid, rt));
    Ok(rt)
}

/// Run `f` to completion on the runtime, blocking the calling thread (which
/// must not be one of the runtime's own).
pub(crate) fn block_on<F: Future>(f: F) -> Result<F::Output> {
    Ok(get()?.block_on(f))
}

/// Run `f` as a task on the runtime's own threads and wait for its result.
/// A request's answer arrives in many pieces: polled by [`block_on`] on the
/// calling thread, every piece wakes that thread from its futex; as a task,
/// the piece is handed over on the worker that read it, and the caller wakes
/// once, with the whole answer.
pub(crate) fn run<F>(f: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = get()?;
    rt.block_on(rt.spawn(f))
        .map_err(|e| Error::io("the I/O runtime", std::io::Error::other(e.to_string())))
}

/// What identifies the process a connection was made in: connections made
/// by another (a parent before `fork`) are dead here.
pub(crate) fn generation() -> u32 {
    std::process::id()
}

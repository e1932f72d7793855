//! Ctrl-C and SIGTERM as a request to stop, not a kill.
//!
//! [`install`] makes SIGINT and SIGTERM set a flag instead of ending the
//! process. Long operations (backup, restore, check, prune) call [`check`] at
//! points where stopping is safe; it returns [`Error::Interrupted`], which
//! unwinds through the normal error paths: temporary files are removed, locks
//! dropped, work that is safe to keep (durable packs, restored files) kept.
//! The CLI prints "interrupted" and exits 130, as a shell does for a process
//! ended by SIGINT.
//!
//! A second signal while the first is being handled ends the process at once
//! (the default action is restored when the first arrives).

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicI32, Ordering};

/// The signal that asked us to stop, or 0.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: a store and a sigaction.
    SIGNAL.store(sig, Ordering::SeqCst);
    // SAFETY: restoring the default action is async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}

/// Turn SIGINT and SIGTERM into a stop request for this process.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a handler that only stores an atomic and resets its own
        // disposition; SA_RESTART is not set, so a blocking read or wait
        // returns EINTR and the caller gets to look at the flag.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut act.sa_mask);
            act.sa_flags = 0;
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    SIGNAL.load(Ordering::Relaxed) != 0
}

/// `Err(Error::Interrupted)` once a stop was requested.
pub fn check() -> Result<()> {
    match SIGNAL.load(Ordering::Relaxed) {
        0 => Ok(()),
        sig => Err(Error::Interrupted(sig)),
    }
}

/// Ask for a stop as a signal would (tests, and callers that must stop their
/// own workers).
pub fn request(sig: i32) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

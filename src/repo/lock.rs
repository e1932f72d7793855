//! Repository locks: many shared holders (backup, restore, mount, check) or
//! one exclusive holder (forget, prune, repair).
//!
//! A lock is a small JSON file `locks/<random id>` naming its host, pid,
//! command, kind and the time of its last heartbeat; the holder rewrites it
//! every [`HEARTBEAT`]. A lock is *stale* when its process is gone (same host,
//! dead pid) or its heartbeat is older than [`STALE_AFTER`]; stale locks never
//! block anyone, and `rewind unlock` removes them.
//!
//! Taking a lock: write ours, then look at the others. If one conflicts (an
//! exclusive lock for us, or any lock when we want exclusive), remove ours,
//! wait and try again, until the wait runs out. Two processes racing both see
//! each other and both back off, so neither proceeds on a conflict.

use super::Repository;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::format::id::to_hex;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a holder refreshes its lock.
pub const HEARTBEAT: Duration = Duration::from_secs(60);
/// A lock without a heartbeat for this long is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// What a lock file says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub exclusive: bool,
    pub host: String,
    pub pid: u32,
    pub command: String,
    /// Unix seconds when the lock was taken.
    pub created: u64,
    /// Unix seconds of the last heartbeat.
    pub heartbeat: u64,
}

impl LockInfo {
    /// Whether this lock no longer holds anything.
    pub fn is_stale(&self, now: u64, this_host: &str) -> bool {
        if now.saturating_sub(self.heartbeat) > STALE_AFTER.as_secs() {
            return true;
        }
        self.host == this_host && !process_alive(self.pid)
    }

    pub fn describe(&self) -> String {
        format!(
            "{} lock held by `{}` (pid {} on {}, taken {} s ago)",
            if self.exclusive {
                "an exclusive"
            } else {
                "a shared"
            },
            self.command,
            self.pid,
            self.host,
            unix_now().saturating_sub(self.created)
        )
    }
}

fn process_alive(pid: u32) -> bool {
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Locks this process holds, for [`release_held`].
static HELD: std::sync::Mutex<Vec<(Arc<dyn Backend>, String)>> = std::sync::Mutex::new(Vec::new());

/// Remove every lock this process holds, without waiting for anything: for a
/// panic, after which a release build aborts and no destructor runs. (A lock
/// left behind would be stale at once on this host, but block other hosts
/// for [`STALE_AFTER`].)
pub fn release_held() {
    release_where(|_| true);
}

/// Remove the held locks whose repository's backend passes `which`.
fn release_where(which: impl Fn(&Arc<dyn Backend>) -> bool) {
    if let Ok(held) = HELD.try_lock() {
        for (backend, name) in held.iter().filter(|(b, _)| which(b)) {
            let _ = backend.delete(name);
        }
    }
}

/// A held lock: refreshed in the background, removed on drop.
pub struct Lock {
    repo: Arc<Repository>,
    name: String,
    stop: Arc<AtomicBool>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        let _ = self.repo.backend().delete(&self.name);
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|(_, name)| name != &self.name);
    }
}

impl Repository {
    /// Every lock file with its contents; unreadable ones are skipped (a lock
    /// being rewritten, or removed meanwhile).
    pub fn locks(&self) -> Result<Vec<(String, LockInfo)>> {
        let mut out = Vec::new();
        for name in self.backend().list("locks")? {
            if let Ok(bytes) = self.backend().get(&name) {
                if let Ok(info) = serde_json::from_slice::<LockInfo>(&bytes) {
                    out.push((name, info));
                }
            }
        }
        Ok(out)
    }

    /// Remove stale locks (or all locks with `all`). Returns what was removed.
    pub fn unlock(&self, all: bool) -> Result<Vec<LockInfo>> {
        let host = crate::backup::hostname();
        let now = unix_now();
        let mut removed = Vec::new();
        for (name, info) in self.locks()? {
            if all || info.is_stale(now, &host) {
                self.backend().delete(&name)?;
                removed.push(info);
            }
        }
        Ok(removed)
    }
}

/// Take a lock on `repo` for `command`, waiting up to `wait` for conflicting
/// holders to go away.
pub fn acquire(
    repo: &Arc<Repository>,
    exclusive: bool,
    command: &str,
    wait: Duration,
) -> Result<Lock> {
    let host = crate::backup::hostname();
    let mut rnd = [0u8; 16];
    crate::format::config::getrandom(&mut rnd)?;
    let name = format!("locks/{}", to_hex(&rnd));
    let now = unix_now();
    let info = LockInfo {
        exclusive,
        host: host.clone(),
        pid: std::process::id(),
        command: command.to_string(),
        created: now,
        heartbeat: now,
    };
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(100);
    loop {
        crate::interrupt::check()?;
        repo.backend()
            .put_volatile(&name, &serde_json::to_vec(&info).expect("serializes"))?;
        let conflict = repo.locks()?.into_iter().find(|(other, o)| {
            other != &name && !o.is_stale(unix_now(), &host) && (exclusive || o.exclusive)
        });
        let Some((_, holder)) = conflict else { break };
        repo.backend().delete(&name)?;
        if Instant::now() >= deadline {
            return Err(Error::Locked(format!(
                "{} (wait longer with --lock-wait, or remove stale locks with `rewind unlock`)",
                holder.describe()
            )));
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_secs(5));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let (repo, name, stop) = (repo.clone(), name.clone(), stop.clone());
        std::thread::Builder::new()
            .name("lock-heartbeat".into())
            .spawn(move || {
                let mut info = info;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::park_timeout(HEARTBEAT);
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    info.heartbeat = unix_now();
                    let _ = repo
                        .backend()
                        .put_volatile(&name, &serde_json::to_vec(&info).expect("serializes"));
                }
            })
            .map_err(|e| Error::io("lock heartbeat thread", e))?
    };
    HELD.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((repo.backend().clone(), name.clone()));
    Ok(Lock {
        repo: repo.clone(),
        name,
        stop,
        heartbeat: Some(heartbeat),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    fn repo() -> Arc<Repository> {
        Arc::new(Repository::init(Arc::new(MemoryBackend::new())).unwrap())
    }

    #[test]
    fn shared_locks_coexist_and_exclusive_waits_for_them() {
        let r = repo();
        let a = acquire(&r, false, "backup", Duration::ZERO).unwrap();
        let _b = acquire(&r, false, "backup", Duration::ZERO).unwrap();
        let err = acquire(&r, true, "prune", Duration::from_millis(300))
            .err()
            .unwrap();
        assert!(matches!(err, Error::Locked(_)), "{err}");
        assert!(err.to_string().contains("backup"), "{err}");
        drop(a);
        drop(_b);
        assert!(r.locks().unwrap().is_empty());
        let x = acquire(&r, true, "prune", Duration::ZERO).unwrap();
        let err = acquire(&r, false, "backup", Duration::ZERO).err().unwrap();
        assert!(
            err.to_string().contains("exclusive lock held by `prune`"),
            "{err}"
        );
        drop(x);
        acquire(&r, false, "backup", Duration::ZERO).unwrap();
    }

    /// What the panic hook calls removes the locks this process holds (here
    /// only this test's repository's: tests run side by side).
    #[test]
    fn held_locks_are_released_for_a_panic() {
        let r = repo();
        let a = acquire(&r, false, "backup", Duration::ZERO).unwrap();
        let _b = acquire(&r, true, "prune", Duration::ZERO).err();
        assert_eq!(r.locks().unwrap().len(), 1);
        release_where(|b| Arc::ptr_eq(b, r.backend()));
        assert!(r.locks().unwrap().is_empty());
        let name = a.name.clone();
        drop(a);
        let held = HELD.lock().unwrap();
        assert!(
            !held.iter().any(|(_, n)| n == &name),
            "a dropped lock is forgotten"
        );
    }

    #[test]
    fn stale_locks_do_not_block_and_unlock_removes_them() {
        let r = repo();
        let dead = LockInfo {
            exclusive: true,
            host: crate::backup::hostname(),
            pid: 999_999_999,
            command: "prune".into(),
            created: 0,
            heartbeat: unix_now(),
        };
        r.backend()
            .put("locks/dead", &serde_json::to_vec(&dead).unwrap())
            .unwrap();
        let old = LockInfo {
            pid: std::process::id(),
            heartbeat: 1,
            host: "elsewhere".into(),
            ..dead.clone()
        };
        r.backend()
            .put("locks/old", &serde_json::to_vec(&old).unwrap())
            .unwrap();
        let live = acquire(&r, false, "backup", Duration::ZERO).unwrap();
        let removed = r.unlock(false).unwrap();
        assert_eq!(removed.len(), 2);
        assert_eq!(r.locks().unwrap().len(), 1, "the live lock stays");
        drop(live);
    }
}

//! Repository locks: many shared holders (backup, restore, mount, check) or
//! one exclusive holder (forget, prune, repair).
//!
//! A lock is a small object `locks/<random id>` naming its holder: host, pid,
//! command, and what identifies the process beyond doubt (machine id, boot id,
//! pid namespace and the process's start time). Its holder rewrites it every
//! heartbeat (a thirtieth of the stale age). Format 1 stores it as bare JSON;
//! format 2 as a `L` object, one encrypted frame of the JSON. Either way the
//! JSON is at most [`MAX_JSON`] bytes.
//!
//! # Stale locks
//!
//! A lock is *stale*, and blocks nobody, when its holder is provably gone
//! (same machine, same boot, same pid namespace, and no process with its pid
//! and start time; or the same machine booted since), or when it has not been
//! rewritten for the stale age (30 minutes; `REWIND_LOCK_STALE_AFTER`
//! seconds). That age is measured by the storage's own clock (a file's mtime,
//! an object's Last-Modified) against the time of the lock the observer has
//! just written, so neither the holder's nor the observer's clock matters.
//! A host name and a pid say nothing on their own: a process in a container
//! shares the host name and its pid means nothing outside its namespace.
//!
//! Taking a lock: write ours, then look at the others. If one conflicts (an
//! exclusive lock for us, or any lock when we want exclusive), remove ours,
//! wait and try again, until the wait runs out. Two processes racing both see
//! each other and both back off, so neither proceeds on a conflict. An
//! exclusive holder removes the stale locks it overrides, so that their
//! holders, if alive after all (suspended, on a storage that failed them),
//! find their lock gone.
//!
//! # Holders check their own lock
//!
//! Locks alone cannot make a prune racing a backup harmless (a holder can be
//! suspended past the stale age, its heartbeats can fail, `rewind unlock
//! --all` can remove it). So a holder keeps track of its lock: if a
//! heartbeat finds it removed, or no heartbeat succeeded for longer than the
//! stale age less two heartbeats, [`Repository::check_locks_held`] fails, and
//! a backup stops before it writes its snapshot, a prune before it deletes.
//! What makes the race harmless by construction is in
//! [`super::writer::RepoWriter::commit`]: a backup confirms, after writing
//! its snapshot, that the data it references still exists.

use super::Repository;
use crate::backend::{Backend, FileType};
use crate::error::{Error, Result};
use crate::format::codec::{Aad, Codec, FileKind};
use crate::format::id::to_hex;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest lock JSON a reader accepts.
pub const MAX_JSON: usize = 16 << 10;

/// The default stale age.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// The stale age in force: [`STALE_AFTER`], or `REWIND_LOCK_STALE_AFTER`
/// seconds (at least 3).
pub fn stale_after() -> Duration {
    static AGE: OnceLock<Duration> = OnceLock::new();
    *AGE.get_or_init(|| {
        std::env::var("REWIND_LOCK_STALE_AFTER")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.max(3)))
            .unwrap_or(STALE_AFTER)
    })
}

/// How often a holder refreshes its lock.
pub fn heartbeat() -> Duration {
    stale_after() / 30
}

/// What a lock file says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub exclusive: bool,
    pub host: String,
    pub pid: u32,
    pub command: String,
    /// Unix seconds when the lock was taken (the holder's clock; shown only).
    pub created: u64,
    /// Unix seconds of the last heartbeat (the holder's clock; shown only).
    pub heartbeat: u64,
    /// `/etc/machine-id` of the holder's machine.
    #[serde(default)]
    pub machine_id: String,
    /// The holder's boot (`/proc/sys/kernel/random/boot_id`).
    #[serde(default)]
    pub boot_id: String,
    /// Inode of the holder's pid namespace (`/proc/self/ns/pid`).
    #[serde(default)]
    pub pid_ns: u64,
    /// The holder's start time, in clock ticks since boot (`/proc/self/stat`).
    #[serde(default)]
    pub start_time: u64,
    /// Heartbeats so far.
    #[serde(default)]
    pub seq: u64,
}

/// What identifies this process among every process of every machine.
#[derive(Clone, Debug)]
struct Identity {
    machine_id: String,
    boot_id: String,
    pid_ns: u64,
    start_time: u64,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn pid_ns(pid: &str) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap_or(0)
}

/// Field 22 of `/proc/<pid>/stat`: the start time in ticks since boot.
fn start_time(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // fields from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn me() -> &'static Identity {
    static ME: OnceLock<Identity> = OnceLock::new();
    ME.get_or_init(|| Identity {
        machine_id: read_trim("/etc/machine-id"),
        boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
        pid_ns: pid_ns("self"),
        start_time: start_time("self").unwrap_or(0),
    })
}

/// Whether a lock's holder is alive, as far as this process can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    Alive,
    Dead,
    /// Another machine, another pid namespace, or an old lock without an
    /// identity: only its heartbeats can tell.
    Unknown,
}

impl LockInfo {
    fn holder(&self) -> Holder {
        let me = me();
        if self.machine_id.is_empty()
            || self.machine_id != me.machine_id
            || me.machine_id.is_empty()
        {
            return Holder::Unknown;
        }
        if self.boot_id != me.boot_id {
            return if self.boot_id.is_empty() {
                Holder::Unknown
            } else {
                Holder::Dead // the machine booted since
            };
        }
        if self.pid_ns == 0 || self.pid_ns != me.pid_ns {
            return Holder::Unknown;
        }
        match start_time(&self.pid.to_string()) {
            Some(t) if t == self.start_time => Holder::Alive,
            _ => Holder::Dead,
        }
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

/// A lock as listed: its name, what it says, and when it was last written
/// (by the storage's clock).
#[derive(Clone, Debug)]
pub struct LockEntry {
    pub name: String,
    pub info: LockInfo,
    pub modified: Option<SystemTime>,
}

impl LockEntry {
    /// Whether the lock no longer holds anything, judged at `reference` (the
    /// storage's time now: the time of a lock just written).
    pub fn is_stale(&self, reference: SystemTime) -> bool {
        match self.info.holder() {
            Holder::Alive => false,
            Holder::Dead => true,
            Holder::Unknown => {
                let written = self
                    .modified
                    .unwrap_or(UNIX_EPOCH + Duration::from_secs(self.info.heartbeat));
                reference
                    .duration_since(written)
                    .is_ok_and(|age| age > stale_after())
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Time since boot, counting suspends: a holder that slept past the stale
/// age knows it.
fn boottime() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Locks this process holds, for [`release_held`].
static HELD: Mutex<Vec<(Arc<dyn Backend>, String)>> = Mutex::new(Vec::new());

/// Remove every lock this process holds, without waiting for anything: for a
/// panic, after which a release build aborts and no destructor runs. (A lock
/// left behind would be stale at once on this machine, but block other
/// machines for the stale age.)
pub fn release_held() {
    release_where(|_| true);
}

/// Remove the held locks whose repository's backend passes `which`.
fn release_where(which: impl Fn(&Arc<dyn Backend>) -> bool) {
    if let Ok(held) = HELD.try_lock() {
        for (backend, name) in held.iter().filter(|(b, _)| which(b)) {
            let _ = backend.delete(FileType::Lock, name);
        }
    }
}

/// What a holder knows of its own lock.
pub(crate) struct Held {
    name: String,
    /// A heartbeat found the lock removed.
    lost: AtomicBool,
    /// Boot time (ms) of the last successful heartbeat.
    last_ok_ms: AtomicU64,
    stop: AtomicBool,
}

impl Held {
    fn check(&self) -> Result<()> {
        self.check_at(boottime())
    }

    /// [`Held::check`] at boot time `now`.
    fn check_at(&self, now: Duration) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::Locked(format!(
                "this process's lock {} was removed meanwhile (by `rewind unlock`, or by a process that took it for stale); stopping before writing anything that relies on it",
                short(&self.name)
            )));
        }
        let since = now.saturating_sub(Duration::from_millis(
            self.last_ok_ms.load(Ordering::SeqCst),
        ));
        let limit = stale_after().saturating_sub(heartbeat() * 2);
        if since > limit {
            return Err(Error::Locked(format!(
                "this process's lock {} was not refreshed for {} s (suspended, or the repository refused the heartbeats), so others may have taken it for stale; stopping before writing anything that relies on it",
                short(&self.name),
                since.as_secs()
            )));
        }
        Ok(())
    }
}

fn short(name: &str) -> &str {
    &name[..name.len().min(8)]
}

/// A held lock: refreshed in the background, removed on drop.
pub struct Lock {
    repo: Arc<Repository>,
    held: Arc<Held>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

impl Lock {
    /// Whether the lock still holds (see the module docs).
    pub fn check(&self) -> Result<()> {
        self.held.check()
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.held.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.heartbeat.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        let _ = self.repo.backend().delete(FileType::Lock, &self.held.name);
        self.repo
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|h| !Arc::ptr_eq(h, &self.held));
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|(_, name)| name != &self.held.name);
    }
}

impl Repository {
    fn encode_lock(&self, name: &str, info: &LockInfo) -> Result<Vec<u8>> {
        encode_lock(&self.codec, name, info)
    }

    fn decode_lock(&self, name: &str, bytes: &[u8]) -> Result<LockInfo> {
        decode_lock(&self.codec, name, bytes)
    }

    /// Every lock with what it says; unreadable ones are skipped (removed
    /// meanwhile, or not written by a holder of this repository's keys).
    pub fn locks(&self) -> Result<Vec<LockEntry>> {
        self.locks_except(&[])
    }

    /// [`Repository::locks`] but those named in `ours`, which this process
    /// wrote and need not download (one request less each, on storage where
    /// a small `GET` may wait tens of milliseconds).
    fn locks_except(&self, ours: &[String]) -> Result<Vec<LockEntry>> {
        let mut out = Vec::new();
        for o in self.backend.list(FileType::Lock)? {
            if ours.contains(&o.name) {
                continue;
            }
            if let Ok(info) = self
                .backend
                .get(FileType::Lock, &o.name)
                .and_then(|b| self.decode_lock(&o.name, &b))
            {
                out.push(LockEntry {
                    name: o.name,
                    info,
                    modified: o.modified,
                });
            }
        }
        Ok(out)
    }

    /// The storage's time now: the time of lock `ours` (just written), else
    /// this machine's clock.
    fn storage_now(&self, ours: Option<&str>) -> SystemTime {
        ours.and_then(|n| self.backend.stat(FileType::Lock, n).ok())
            .and_then(|o| o.modified)
            .unwrap_or_else(SystemTime::now)
    }

    /// Remove stale locks (or all locks with `all`). Returns what was removed.
    pub fn unlock(&self, all: bool) -> Result<Vec<LockInfo>> {
        // Write a probe lock to learn the storage's time.
        let probe = new_lock_name()?;
        let info = self.lock_info(false, "unlock");
        let wrote = self
            .backend
            .put(FileType::Lock, &probe, &self.encode_lock(&probe, &info)?)
            .is_ok();
        let reference = self.storage_now(wrote.then_some(probe.as_str()));
        let _ = self.backend.delete(FileType::Lock, &probe);
        let mut removed = Vec::new();
        for entry in self.locks()? {
            if entry.name == probe {
                continue;
            }
            if all || entry.is_stale(reference) {
                self.backend.delete(FileType::Lock, &entry.name)?;
                removed.push(entry.info);
            }
        }
        Ok(removed)
    }

    /// What a lock of this process for `command` says.
    pub fn lock_info(&self, exclusive: bool, command: &str) -> LockInfo {
        let me = me();
        let now = unix_now();
        LockInfo {
            exclusive,
            host: crate::clock::hostname(),
            pid: std::process::id(),
            command: command.to_string(),
            created: now,
            heartbeat: now,
            machine_id: me.machine_id.clone(),
            boot_id: me.boot_id.clone(),
            pid_ns: me.pid_ns,
            start_time: me.start_time,
            seq: 0,
        }
    }

    /// Store a lock object saying `info` under a new name, without holding
    /// it (no heartbeat): for tools and tests that need a lock of another
    /// process. Returns its name.
    pub fn write_lock(&self, info: &LockInfo) -> Result<String> {
        let name = new_lock_name()?;
        self.backend
            .put(FileType::Lock, &name, &self.encode_lock(&name, info)?)?;
        Ok(name)
    }

    /// Fail when a lock this process holds on the repository was removed
    /// (looked up now, not at the last heartbeat) or went unrefreshed (see
    /// the module docs).
    pub fn check_locks_held(&self) -> Result<()> {
        let held: Vec<Arc<Held>> = self.held.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for h in held {
            if let Err(Error::NotFound(_)) = self.backend.stat(FileType::Lock, &h.name) {
                h.lost.store(true, Ordering::SeqCst);
            }
            h.check()?;
        }
        Ok(())
    }

    /// Wait while another process holds a live exclusive lock: a prune that
    /// may delete what this process relies on runs to its end (or goes
    /// stale) before this returns.
    pub fn wait_for_exclusive_holders(&self) -> Result<()> {
        let ours: Vec<String> = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|h| h.name.clone())
            .collect();
        let mut pause = Duration::from_millis(100);
        loop {
            let reference = self.storage_now(ours.first().map(String::as_str));
            let busy = self
                .locks_except(&ours)?
                .into_iter()
                .any(|l| l.info.exclusive && !ours.contains(&l.name) && !l.is_stale(reference));
            if !busy {
                return Ok(());
            }
            crate::interrupt::check()?;
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

fn new_lock_name() -> Result<String> {
    let mut rnd = [0u8; 32];
    crate::format::config::getrandom(&mut rnd)?;
    Ok(to_hex(&rnd))
}

/// Decode lock object `name` of a repository whose codec is `codec`.
pub fn decode_lock(codec: &Codec, name: &str, bytes: &[u8]) -> Result<LockInfo> {
    let object = format!("lock {}", short(name));
    let json = if codec.is_encrypted() {
        let frame = codec.open(bytes, FileKind::Lock, &object)?;
        let aad = Aad::whole(FileKind::Lock, lock_id(name)?);
        codec.decode_at_most(frame, MAX_JSON, &aad, &object)?
    } else if bytes.len() > MAX_JSON {
        return Err(Error::corrupt(&object, "longer than any lock"));
    } else {
        bytes.to_vec()
    };
    serde_json::from_slice(&json).map_err(|e| Error::corrupt(&object, e))
}

/// Encode `info` as lock object `name` of a repository whose codec is
/// `codec` (what [`decode_lock`] reads).
pub fn encode_lock(codec: &Codec, name: &str, info: &LockInfo) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(info).expect("locks serialize");
    if !codec.is_encrypted() {
        return Ok(json);
    }
    let mut out = codec.envelope(FileKind::Lock).to_vec();
    codec.encode_into(&json, &Aad::whole(FileKind::Lock, lock_id(name)?), &mut out);
    Ok(out)
}

/// The 32 bytes a lock's frame binds: its name's, zero-padded (format-1
/// names are 32 digits).
fn lock_id(name: &str) -> Result<[u8; 32]> {
    let mut id = [0u8; 32];
    let bytes: Option<Vec<u8>> = (0..name.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(name.get(i..i + 2)?, 16).ok())
        .collect();
    let bytes = bytes
        .filter(|b| b.len() <= 32)
        .ok_or_else(|| Error::corrupt(format!("lock {}", short(name)), "name is not hex"))?;
    id[..bytes.len()].copy_from_slice(&bytes);
    Ok(id)
}

/// Take a lock on `repo` for `command`, waiting up to `wait` for conflicting
/// holders to go away.
pub fn acquire(
    repo: &Arc<Repository>,
    exclusive: bool,
    command: &str,
    wait: Duration,
) -> Result<Lock> {
    let name = new_lock_name()?;
    let mut info = repo.lock_info(exclusive, command);
    let deadline = Instant::now().checked_add(wait);
    let mut pause = Duration::from_millis(100);
    loop {
        crate::interrupt::check()?;
        repo.backend
            .put(FileType::Lock, &name, &repo.encode_lock(&name, &info)?)?;
        // Storage whose listings lag shows ours to others only after this.
        std::thread::sleep(repo.backend.settle());
        let reference = repo.storage_now(Some(&name));
        let others: Vec<LockEntry> = repo.locks_except(std::slice::from_ref(&name))?;
        let conflict = others
            .iter()
            .find(|l| !l.is_stale(reference) && (exclusive || l.info.exclusive));
        let Some(holder) = conflict else {
            if exclusive {
                // Stale locks this one overrides go, so that a holder that
                // was only suspended finds its lock gone and stops.
                for l in others.iter().filter(|l| l.is_stale(reference)) {
                    let _ = repo.backend.delete(FileType::Lock, &l.name);
                }
            }
            break;
        };
        let text = holder.info.describe();
        repo.backend.delete(FileType::Lock, &name)?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::Locked(format!(
                "{text} (wait longer with --lock-wait, or remove stale locks with `rewind unlock`)"
            )));
        }
        crate::interrupt::check()?;
        let left = deadline.map_or(pause, |d| d.saturating_duration_since(Instant::now()));
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_secs(5));
    }
    let held = Arc::new(Held {
        name: name.clone(),
        lost: AtomicBool::new(false),
        last_ok_ms: AtomicU64::new(boottime().as_millis() as u64),
        stop: AtomicBool::new(false),
    });
    let heartbeat = {
        let (repo, held) = (repo.clone(), held.clone());
        std::thread::Builder::new()
            .name("lock-heartbeat".into())
            .spawn(move || {
                while !held.stop.load(Ordering::SeqCst) {
                    std::thread::park_timeout(heartbeat());
                    if held.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match repo.backend.stat(FileType::Lock, &held.name) {
                        Err(Error::NotFound(_)) => {
                            held.lost.store(true, Ordering::SeqCst);
                            continue;
                        }
                        Err(_) => continue,
                        Ok(_) if held.lost.load(Ordering::SeqCst) => continue,
                        Ok(_) => {}
                    }
                    info.heartbeat = unix_now();
                    info.seq += 1;
                    let wrote = repo
                        .encode_lock(&held.name, &info)
                        .and_then(|b| repo.backend.put(FileType::Lock, &held.name, &b));
                    if wrote.is_ok() {
                        held.last_ok_ms
                            .store(boottime().as_millis() as u64, Ordering::SeqCst);
                    }
                }
            })
            .map_err(|e| Error::io("lock heartbeat thread", e))?
    };
    repo.held
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(held.clone());
    HELD.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((repo.backend.clone(), name));
    Ok(Lock {
        repo: repo.clone(),
        held,
        heartbeat: Some(heartbeat),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::repo::InitOptions;

    fn repo() -> Arc<Repository> {
        Arc::new(Repository::init(Arc::new(MemoryBackend::new()), &InitOptions::test()).unwrap())
    }

    fn put(r: &Repository, name: &str, info: &LockInfo) {
        r.backend
            .put(FileType::Lock, name, &r.encode_lock(name, info).unwrap())
            .unwrap();
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
        let name = a.held.name.clone();
        drop(a);
        let held = HELD.lock().unwrap();
        assert!(
            !held.iter().any(|(_, n)| n == &name),
            "a dropped lock is forgotten"
        );
    }

    /// A holder is judged by who it is, not by its host name: a lock of this
    /// very process is alive; one with this machine's identity and a dead
    /// pid, or an older boot, is stale; one from another pid namespace (a
    /// container on this host, same host name) is alive until its heartbeats
    /// stop, however its pid looks here.
    #[test]
    fn holders_are_judged_by_identity_not_host_name() {
        let r = repo();
        let mine = r.lock_info(true, "prune");
        let now = SystemTime::now();
        let entry = |info: LockInfo| LockEntry {
            name: "aa".into(),
            info,
            modified: Some(now),
        };
        assert!(!entry(mine.clone()).is_stale(now));
        let dead_pid = LockInfo {
            pid: 999_999_999,
            ..mine.clone()
        };
        assert!(entry(dead_pid.clone()).is_stale(now));
        let reused_pid = LockInfo {
            start_time: mine.start_time + 1,
            ..mine.clone()
        };
        assert!(entry(reused_pid).is_stale(now));
        let rebooted = LockInfo {
            boot_id: "another boot".into(),
            ..mine.clone()
        };
        assert!(entry(rebooted).is_stale(now));
        let container = LockInfo {
            pid_ns: mine.pid_ns + 1,
            ..dead_pid.clone()
        };
        assert!(!entry(container.clone()).is_stale(now));
        let silent = LockEntry {
            modified: Some(now - stale_after() - Duration::from_secs(1)),
            ..entry(container)
        };
        assert!(silent.is_stale(now));
        // The holder's own clock says nothing: a heartbeat time far in the
        // past, written just now, is a live lock.
        let slow_clock = LockInfo {
            heartbeat: 1,
            created: 1,
            machine_id: "elsewhere".into(),
            ..mine
        };
        assert!(!entry(slow_clock).is_stale(now));
    }

    #[test]
    fn stale_locks_do_not_block_and_unlock_removes_them() {
        let r = repo();
        let mut dead = r.lock_info(true, "prune");
        dead.pid = 999_999_999;
        put(&r, "dead", &dead);
        let live = acquire(&r, false, "backup", Duration::ZERO).unwrap();
        let removed = r.unlock(false).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(r.locks().unwrap().len(), 1, "the live lock stays");
        drop(live);
    }

    /// A holder whose lock was removed, or whose heartbeats stopped, is told
    /// so before it relies on the lock.
    #[test]
    fn a_holder_learns_that_its_lock_is_gone() {
        let r = repo();
        let lock = acquire(&r, false, "backup", Duration::ZERO).unwrap();
        lock.check().unwrap();
        r.check_locks_held().unwrap();
        r.unlock(true).unwrap();
        // Found at once, not at the next heartbeat.
        let e = r.check_locks_held().unwrap_err().to_string();
        assert!(e.contains("was removed"), "{e}");
        drop(lock);
        let lock2 = acquire(&r, false, "backup", Duration::ZERO).unwrap();
        lock2.check().unwrap();
        // A machine up for less than the stale age has no boot time that
        // far back: judge the lock later instead.
        let last = Duration::from_millis(lock2.held.last_ok_ms.load(Ordering::SeqCst));
        let e = lock2
            .held
            .check_at(last + stale_after())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not refreshed"), "{e}");
    }
}

//! Retention, prune, locks and index repair: never lose a kept byte.

// Prune killed in each of its phases.
mod crash;
// A prune cut short after its index, run again.
mod rerun;

use crate::common::{compare, json, restored, stderr, tree, TempRepo};
use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One "day": rewrite a few files and add a new one, as a changing site would.
fn mutate(src: &Path, day: u64) {
    fs::write(
        src.join(format!("daily-{day}.bin")),
        tree::noise(400_000, 2 * day + 101),
    )
    .unwrap();
    fs::write(
        src.join("log.txt"),
        format!("day {day}\n").repeat(1000 + day as usize),
    )
    .unwrap();
    if day >= 2 {
        let _ = fs::remove_file(src.join(format!("daily-{}.bin", day - 2)));
    }
}

fn backup_days(t: &TempRepo, src: &Path, days: std::ops::Range<u64>) -> Vec<String> {
    days.map(|d| {
        mutate(src, d);
        let out = t.ok([
            OsStr::new("backup"),
            OsStr::new("--json"),
            OsStr::new("--tag"),
            OsStr::new(&format!("day{d}")),
            src.as_os_str(),
        ]);
        json(&out)["id"].as_str().unwrap().to_string()
    })
    .collect()
}

fn repo_bytes(t: &TempRepo) -> u64 {
    fn walk(p: &Path) -> u64 {
        fs::read_dir(p)
            .map(|rd| {
                rd.map(|e| {
                    let e = e.unwrap();
                    if e.file_type().unwrap().is_dir() {
                        walk(&e.path())
                    } else {
                        e.metadata().unwrap().len()
                    }
                })
                .sum()
            })
            .unwrap_or(0)
    }
    walk(&t.repo().join("data"))
}

/// The latest snapshot restores to exactly `src` (atimes aside: the tests
/// read the source between backups).
fn latest_restores_to(t: &TempRepo, src: &Path) {
    let target = t.join("out");
    t.restore("latest", &target);
    let opts = compare::Options {
        atime: false,
        ..Default::default()
    };
    compare::assert_same(src, &restored(&target, src), opts);
}

#[test]
fn forget_and_prune_free_what_only_forgotten_snapshots_used() {
    let t = TempRepo::new();
    let src = t.full_src();
    let ids = backup_days(&t, &src, 0..6);
    let before = repo_bytes(&t);
    let out = json(&t.ok(["forget", "--keep-last", "2", "--json"]));
    let removed: Vec<&str> = out["groups"][0]["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(removed.len(), 4);
    assert!(removed.iter().all(|r| ids[..4].contains(&r.to_string())));
    let report = json(&t.ok(["prune", "--json"]));
    assert!(
        report["packs_deleted"].as_u64().unwrap() + report["packs_repacked"].as_u64().unwrap() > 0,
        "{report}"
    );
    let after = repo_bytes(&t);
    // Days 0-2 each added 400 kB of noise only they used (day 3's is still in day 4).
    assert!(
        before - after >= 3 * 400_000,
        "freed only {} bytes",
        before - after
    );
    t.ok(["check", "--read-data"]);
    latest_restores_to(&t, &src);
}

#[test]
fn backup_waits_for_prune_and_loses_nothing() {
    let t = TempRepo::new();
    let src = t.full_src();
    backup_days(&t, &src, 0..4);
    t.ok(["forget", "--keep-last", "1"]);
    // Hold the exclusive lock as prune would, then start a backup that waits.
    let repo = std::sync::Arc::new(crate::common::open_repo(&t.repo()));
    let lock = rewind::repo::lock::acquire(&repo, true, "prune (test)", Duration::ZERO).unwrap();
    let refused = t.rewind([OsStr::new("backup"), src.as_os_str()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("prune (test)"),
        "{}",
        stderr(&refused)
    );
    mutate(&src, 10);
    let locks = LockWrites::watch(&t.repo().join("locks"));
    let mut waiting = t.spawn([
        OsStr::new("backup"),
        OsStr::new("--lock-wait"),
        OsStr::new("60s"),
        src.as_os_str(),
    ]);
    // It is waiting once it has tried for the lock twice, still running.
    let deadline = Instant::now() + Duration::from_secs(30);
    while locks.by(waiting.id()) < 2 {
        assert!(
            waiting.try_wait().unwrap().is_none(),
            "the backup did not wait for the lock"
        );
        assert!(
            Instant::now() < deadline,
            "the backup never tried for the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(waiting.try_wait().unwrap().is_none());
    assert_eq!(
        json(&t.ok(["snapshots", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        1,
        "a snapshot written while prune held the lock"
    );
    drop(lock);
    // A real prune and the waiting backup now race for the lock.
    let prune = t.rewind(["prune", "--lock-wait", "60s", "--max-unused", "0%"]);
    assert!(prune.status.success(), "{}", stderr(&prune));
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    t.ok(["prune", "--max-unused", "0%"]);
    t.ok(["check", "--read-data"]);
    latest_restores_to(&t, &src);
}

#[test]
fn two_backups_at_once_both_succeed() {
    let t = TempRepo::new();
    let (a, b) = (t.join("a"), t.join("b"));
    tree::full(&a);
    fs::create_dir_all(&b).unwrap();
    tree::file(&b.join("big"), &tree::noise(20 << 20, 4));
    let ca = t
        .cmd([OsStr::new("backup"), a.as_os_str()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let cb = t
        .cmd([OsStr::new("backup"), b.as_os_str()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(ca.wait_with_output().unwrap().status.success());
    assert!(cb.wait_with_output().unwrap().status.success());
    t.ok(["check", "--read-data"]);
    let target = t.join("out");
    t.restore("latest", &target);
    assert_eq!(
        json(&t.ok(["snapshots", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn stale_locks_are_ignored_and_unlock_removes_them() {
    let t = TempRepo::new();
    // An exclusive lock of a process of this machine that is gone.
    let repo = crate::common::open_repo(&t.repo());
    let mut info = repo.lock_info(true, "prune");
    info.pid = 999_999_999;
    let name = repo.write_lock(&info).unwrap();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("f"), b"x");
    t.ok([OsStr::new("backup"), src.as_os_str()]);
    let out = t.ok(["unlock"]);
    assert!(out.contains("1 lock removed"), "{out}");
    assert!(!t.repo().join("locks").join(&name).exists());
}

#[test]
fn deleted_index_is_rebuilt_from_pack_headers() {
    let t = TempRepo::new();
    let src = t.full_src();
    backup_days(&t, &src, 0..2);
    for e in fs::read_dir(t.repo().join("index")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let broken = t.rewind(["check"]);
    assert_eq!(broken.status.code(), Some(1));
    t.ok(["repair", "index"]);
    t.ok(["check", "--read-data"]);
    latest_restores_to(&t, &src);
}

#[test]
fn forget_refuses_an_empty_policy_and_dry_run_keeps_everything() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    backup_days(&t, &src, 0..3);
    let out = t.rewind(["forget"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(stderr(&out).contains("give a policy"), "{}", stderr(&out));
    let dry = t.ok(["forget", "--keep-last", "1", "--dry-run"]);
    assert!(dry.contains("2 snapshots would be removed"), "{dry}");
    assert_eq!(
        json(&t.ok(["snapshots", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let tagged = t.ok(["forget", "--keep-last", "1", "--keep-tag", "day0"]);
    assert!(tagged.contains("tag day0"), "{tagged}");
    assert_eq!(
        json(&t.ok(["snapshots", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // prune --dry-run tells what it would free and changes nothing.
    let before = repo_listing(&t);
    let dry = json(&t.ok(["prune", "--dry-run", "--max-unused", "0%", "--json"]));
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert!(dry["bytes_freed"].as_u64().unwrap() > 0, "{dry}");
    assert!(dry["packs_deleted"].as_u64().unwrap() > 0, "{dry}");
    assert_eq!(
        repo_listing(&t),
        before,
        "prune --dry-run changed the repository"
    );
    // The same prune for real frees what the dry run said it would.
    let done = json(&t.ok(["prune", "--max-unused", "0%", "--json"]));
    assert_eq!(done["packs_deleted"], dry["packs_deleted"], "{dry}\n{done}");
    assert_ne!(repo_listing(&t), before);
}

/// Every file of the repository (locks and the cache apart) with its size
/// and modification time.
fn repo_listing(t: &TempRepo) -> Vec<(std::path::PathBuf, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    crate::common::fault::files_below(&t.repo())
        .into_iter()
        .filter(|p| !p.starts_with("locks"))
        .map(|p| {
            let md = fs::metadata(t.repo().join(&p)).unwrap();
            (p, md.len(), md.mtime(), md.mtime_nsec())
        })
        .collect()
}

#[test]
fn prune_refuses_a_damaged_index_until_it_is_repaired() {
    let t = TempRepo::new();
    let src = t.full_src();
    backup_days(&t, &src, 0..3);
    t.ok(["forget", "--keep-last", "1"]);
    let index = fs::read_dir(t.repo().join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = fs::read(&index).unwrap();
    bytes.truncate(bytes.len() - 7);
    fs::write(&index, bytes).unwrap();
    let refused = t.rewind(["prune"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("repair index"),
        "{}",
        stderr(&refused)
    );
    t.ok(["repair", "index"]);
    t.ok(["prune", "--max-unused", "0%"]);
    t.ok(["check", "--read-data"]);
    latest_restores_to(&t, &src);
}

/// Lock files written into a repository's `locks/`, counted by the process
/// that wrote them (temporary files are named `.tmp-<pid>-<n>`).
struct LockWrites {
    fd: std::os::fd::OwnedFd,
    /// The names created so far.
    names: std::cell::RefCell<Vec<Vec<u8>>>,
}

impl LockWrites {
    fn watch(dir: &Path) -> Self {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain syscalls; the descriptor is owned from here on.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        let wd = unsafe {
            libc::inotify_add_watch(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                path.as_ptr(),
                libc::IN_CREATE,
            )
        };
        assert!(wd >= 0, "inotify_add_watch {}", dir.display());
        LockWrites {
            fd,
            names: Default::default(),
        }
    }

    /// How many lock files process `pid` has begun to write so far.
    fn by(&self, pid: u32) -> usize {
        use std::os::fd::AsRawFd;
        let mut names = self.names.borrow_mut();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            // SAFETY: reads into a buffer of the given length.
            let r = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                let prefix = format!(".tmp-{pid}-");
                return names
                    .iter()
                    .filter(|n| n.starts_with(prefix.as_bytes()))
                    .count();
            }
            let mut at = 0;
            let head = std::mem::size_of::<libc::inotify_event>();
            while at + head <= r as usize {
                let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().unwrap()) as usize;
                names.push(buf[at + head..at + head + len].to_vec());
                at += head + len;
            }
        }
    }
}

//! A prune racing a backup whose lock it cannot see or trust: a backup in
//! another pid namespace (a container on the same host, same host name), a
//! backup suspended past the stale age, `rewind unlock --all` mid-backup.
//! Whatever the locks say, no snapshot may point at deleted data.

use crate::common::{bin, snapshot_ids, stderr, test_env, tree, TempRepo};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The stale age these tests run with (the default is 30 minutes).
const STALE: &str = "3";

/// A repository with one snapshot of `a/data` (3 MiB of noise), and the path
/// of that file.
fn repo_with_data() -> (TempRepo, PathBuf, String) {
    let t = TempRepo::new();
    let a = t.join("a");
    fs::create_dir_all(&a).unwrap();
    let data = a.join("data");
    tree::file(&data, &tree::noise(3 << 20, 41));
    let first = t.backup(&a);
    (t, data, first)
}

/// `rewind --repo R ARGS` in the test environment, with the short stale
/// age, optionally in a pid namespace of its own (`unshare -pf`).
fn command(t: &TempRepo, own_pid_namespace: bool, args: &[&OsStr]) -> Command {
    let mut c = if own_pid_namespace {
        let mut c = crate::common::tool("unshare");
        c.args(["--pid", "--fork", "--mount-proc"]).arg(bin());
        c
    } else {
        Command::new(bin())
    };
    c.arg("--repo").arg(t.repo()).args(args);
    test_env(&mut c)
        .env("REWIND_CACHE_DIR", t.join("cache"))
        .env("REWIND_LOCK_STALE_AFTER", STALE);
    c
}

/// A backup of `data` through a command that first creates `started` and
/// then waits for `go` to exist: it holds its lock, has read the index and
/// deduplicates against the first snapshot's packs.
fn slow_backup(t: &TempRepo, data: &Path, own_pid_namespace: bool) -> (Child, PathBuf, PathBuf) {
    let started = t.join("started");
    let go = t.join("go");
    let script = format!(
        "touch '{}'; while [ ! -e '{}' ]; do sleep 0.05; done; cat '{}'",
        started.display(),
        go.display(),
        data.display()
    );
    let args = [
        OsStr::new("backup"),
        OsStr::new("--json"),
        OsStr::new("--stdin-name"),
        OsStr::new("/copy/data"),
        OsStr::new("--stdin-from-command"),
        OsStr::new(&script),
    ];
    let child = command(t, own_pid_namespace, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&started, "the backup's command to start");
    (child, started, go)
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After the race: every snapshot restores exactly, and the repository is
/// whole.
fn everything_whole(t: &TempRepo, data: &Path) {
    t.ok(["check", "--read-data"]);
    for id in snapshot_ids(t) {
        let target = t.join(format!("out-{id}"));
        t.restore(&id, &target);
        for f in [
            crate::common::restored(&target, data),
            target.join("copy/data"),
        ] {
            if f.exists() {
                assert_eq!(
                    fs::read(&f).unwrap(),
                    fs::read(data).unwrap(),
                    "{}",
                    f.display()
                );
            }
        }
    }
}

/// Forget the first snapshot (the only untagged one) and prune.
fn forget_first() -> [&'static OsStr; 4] {
    ["forget", "--keep-tag", "keep", "--prune"].map(OsStr::new)
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

/// A backup in another pid namespace (a container: same host name, a pid
/// that means nothing here) holds its lock: prune on the host waits for it
/// instead of taking it for stale, and deletes nothing it uses.
#[test]
fn a_backup_in_another_pid_namespace_holds_off_prune() {
    let (t, data, _first) = repo_with_data();
    let (child, _, go) = slow_backup(&t, &data, true);
    // Longer than the stale age: only its heartbeats keep it.
    std::thread::sleep(Duration::from_secs(4));
    let out = command(&t, false, &forget_first()).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "prune went ahead: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("locked"), "{}", stderr(&out));
    fs::write(&go, b"").unwrap();
    let out = finish(child);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(snapshot_ids(&t).len(), 2);
    everything_whole(&t, &data);
}

/// A backup suspended past the stale age is taken for stale by a prune
/// that cannot tell (another pid namespace), which deletes the data it
/// deduplicated against. When it wakes it finds its lock gone and writes no
/// snapshot; nothing points at deleted data.
#[test]
fn a_suspended_backup_keeps_no_snapshot_of_data_pruned_meanwhile() {
    let (t, data, _first) = repo_with_data();
    let (child, _, go) = slow_backup(&t, &data, false);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let out = command(&t, true, &forget_first()).output().unwrap();
    assert!(
        out.status.success(),
        "the prune did not go ahead: {}",
        stderr(&out)
    );
    fs::write(&go, b"").unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let out = finish(child);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the backup kept going: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("lock"), "{}", stderr(&out));
    assert!(snapshot_ids(&t).is_empty(), "a snapshot was kept");
    everything_whole(&t, &data);
    // The next backup stores the data again.
    t.backup(data.parent().unwrap());
    everything_whole(&t, &data);
}

/// `rewind unlock --all` during a backup, then a prune: the backup stops
/// before writing its snapshot.
#[test]
fn unlock_during_a_backup_stops_it_before_its_snapshot() {
    let (t, data, _first) = repo_with_data();
    let (child, _, go) = slow_backup(&t, &data, false);
    t.ok(["unlock", "--all"]);
    t.ok(forget_first());
    fs::write(&go, b"").unwrap();
    let out = finish(child);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the backup kept going: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("was removed"), "{}", stderr(&out));
    assert!(snapshot_ids(&t).is_empty());
    everything_whole(&t, &data);
}

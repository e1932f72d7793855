//! "Mounting snapshots", as the README states it: a first Ctrl-C on a busy
//! mount detaches it and a second stops the process at once; the first
//! requests wait for a running prune's lock for up to `--lock-wait`.

use crate::common::{open_repo, restored, stderr, tree, TempRepo};
use crate::mount::guard::{is_mounted, MountGuard};
use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn small_repo() -> (TempRepo, PathBuf) {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::file(&src.join("f"), b"content\n");
    t.backup(&src);
    (t, src)
}

fn sigint(pid: u32) {
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGINT) }, 0);
}

/// "A signal while files are still open inside detaches the mount at once:
/// the processes using it keep their files, and the mount process exits 0
/// when the last one is closed; a second Ctrl-C stops it at once."
#[test]
fn a_second_ctrl_c_stops_a_busy_mount_at_once() {
    let (t, src) = small_repo();
    let mut m = MountGuard::start(&t, "mnt", &["--snapshot", "latest"]);
    let mut open = fs::File::open(restored(&m.mnt, &src).join("f")).unwrap();
    sigint(m.pid());
    let start = Instant::now();
    while is_mounted(&m.mnt) {
        assert!(start.elapsed() < Duration::from_secs(10), "not detached");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first Ctrl-C leaves the process serving the open file.
    assert!(
        m.wait_exit(1).is_none(),
        "the first Ctrl-C ended a busy mount:\n{}",
        m.log_text()
    );
    let mut first = [0u8; 4];
    open.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"cont");
    assert!(
        m.log_text().contains("signal again to stop now"),
        "{}",
        m.log_text()
    );
    // The second ends it, exit 0, while the file is still open.
    sigint(m.pid());
    let status = m
        .wait_exit(10)
        .unwrap_or_else(|| panic!("a second Ctrl-C did not stop the mount:\n{}", m.log_text()));
    assert!(status.success(), "{status}\n{}", m.log_text());
    // The open file no longer hangs on the ended mount (the kernel may still
    // answer from its page cache).
    let _ = open.read_to_end(&mut Vec::new());
    drop(open);
    assert!(!is_mounted(&m.mnt));
}

/// "the first requests wait there until the lock is held and the snapshot
/// found (for up to `--lock-wait` if a prune is running)": a read inside
/// waits while prune holds the exclusive lock, and is served once it is
/// released; the mount then holds its shared lock, which keeps prune off.
#[test]
fn the_first_reads_wait_up_to_lock_wait_for_a_running_prune() {
    let (t, src) = small_repo();
    let repo = Arc::new(open_repo(&t.repo()));
    let lock = rewind::repo::lock::acquire(&repo, true, "prune (test)", Duration::ZERO).unwrap();
    let m = MountGuard::start(&t, "mnt", &["--snapshot", "latest", "--lock-wait", "1m"]);
    let f = restored(&m.mnt, &src).join("f");
    let reader = std::thread::spawn(move || fs::read(f));
    // While prune holds the lock the read cannot be answered.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !reader.is_finished(),
        "a read was answered under prune's lock: {:?}\n{}",
        reader.join(),
        m.log_text()
    );
    drop(lock);
    let content = reader.join().unwrap();
    assert_eq!(content.unwrap(), b"content\n", "{}", m.log_text());
    assert!(is_mounted(&m.mnt));
    let out = t.rewind(["prune"]);
    assert_eq!(out.status.code(), Some(1), "prune ran under the mount");
    assert!(stderr(&out).contains("mount"), "{}", stderr(&out));
    drop(m);
    // Without the wait, the mount gives up at once (and is undone).
    let lock = rewind::repo::lock::acquire(&repo, true, "prune (test)", Duration::ZERO).unwrap();
    let mnt = t.join("mnt");
    let out = t
        .cmd(["mount".as_ref(), mnt.as_os_str()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("prune (test)"), "{}", stderr(&out));
    assert!(!is_mounted(&fs::canonicalize(&mnt).unwrap()));
    drop(lock);
}

//! Mounting and unmounting: clear errors, every way to unmount ending the
//! process with 0, `--daemon`, dead mounts, and backups while mounted.

use super::guard::{bare, is_mounted, DaemonMount, MountGuard};
use crate::common::{restored, stderr, TempRepo};
use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn small_repo() -> (TempRepo, std::path::PathBuf) {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"content").unwrap();
    t.backup(&src);
    (t, src)
}

fn mount_fails(t: &TempRepo, mnt: &std::path::Path, cmd: Option<&mut Command>) -> String {
    let mut own = t.cmd(["mount".as_ref(), mnt.as_os_str()]);
    let out = cmd
        .unwrap_or(&mut own)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "mounted on {}", mnt.display());
    stderr(&out)
}

#[test]
fn mounting_where_it_cannot_work_says_why() {
    let (t, _) = small_repo();
    let e = mount_fails(&t, &t.join("nope"), None);
    assert!(!t.join("nope").exists());
    assert!(e.contains("does not exist"), "{e}");
    let e = mount_fails(&t, &t.join("src"), None);
    assert!(e.contains("not empty"), "{e}");
    fs::write(t.join("file"), b"").unwrap();
    let e = mount_fails(&t, &t.join("file"), None);
    assert!(e.contains("not a directory"), "{e}");
    let m = MountGuard::start(&t, "mnt", &[]);
    let e = mount_fails(&t, &m.mnt, None);
    assert!(e.contains("already a mount point"), "{e}");
    // Snapshot filters without --snapshot would be ignored: refused.
    let free = t.join("free");
    fs::create_dir(&free).unwrap();
    for flag in ["--host", "--tag", "--path"] {
        let mut cmd = t.cmd(["mount".as_ref(), free.as_os_str()]);
        cmd.args([flag, "x"]);
        let e = mount_fails(&t, &free, Some(&mut cmd));
        assert!(e.contains("without --snapshot"), "{flag}: {e}");
        assert!(!is_mounted(&free), "{flag}");
    }
    // Without /dev/fuse: in a mount namespace where /dev is an empty tmpfs.
    let empty = t.join("empty");
    fs::create_dir(&empty).unwrap();
    let mut cmd = t.cmd(["mount".as_ref(), empty.as_os_str()]);
    unsafe {
        cmd.pre_exec(|| {
            let ok = libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
                && libc::mount(
                    c"tmpfs".as_ptr(),
                    c"/dev".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                ) == 0;
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let e = mount_fails(&t, &empty, Some(&mut cmd));
    assert!(!is_mounted(&empty));
    assert!(
        e.contains("/dev/fuse") && e.contains("modprobe fuse"),
        "{e}"
    );
}

#[test]
fn every_way_of_unmounting_ends_the_mount_with_exit_0() {
    let (t, src) = small_repo();
    type Unmount = fn(&std::path::Path, u32);
    let ways: [(&str, Unmount); 6] = [
        ("rewind umount", |mnt, _| {
            let out = bare(&["umount", mnt.to_str().unwrap()]).output().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }),
        ("fusermount3 -u", |mnt, _| {
            let out = crate::common::tool("fusermount3")
                .arg("-u")
                .arg(mnt)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }),
        ("umount", |mnt, _| {
            assert!(crate::common::tool("umount")
                .arg(mnt)
                .status()
                .unwrap()
                .success())
        }),
        ("SIGTERM", |_, pid| {
            assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0)
        }),
        ("SIGINT (Ctrl-C)", |_, pid| {
            assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGINT) }, 0)
        }),
        ("SIGHUP", |_, pid| {
            assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0)
        }),
    ];
    for (i, (how, unmount)) in ways.iter().enumerate() {
        let mut m = MountGuard::start(&t, &format!("mnt{i}"), &["--snapshot", "latest"]);
        assert_eq!(
            fs::read(restored(&m.mnt, &src).join("f")).unwrap(),
            b"content"
        );
        unmount(&m.mnt, m.pid());
        let status = m
            .wait_exit(10)
            .unwrap_or_else(|| panic!("{how}: still running"));
        assert!(status.success(), "{how}: {status}\n{}", m.log_text());
        assert!(!is_mounted(&m.mnt), "{how}");
    }
}

/// A signal while a process still uses the mount detaches it at once; the
/// process keeps its open file and can read it to the end, and the mount
/// process exits 0 once the file is closed.
#[test]
fn a_signal_on_a_busy_mount_detaches_it_and_the_mount_ends_when_left() {
    let (t, src) = small_repo();
    let mut m = MountGuard::start(&t, "mnt", &["--snapshot", "latest"]);
    let path = restored(&m.mnt, &src).join("f");
    let mut open = fs::File::open(&path).unwrap();
    assert_eq!(unsafe { libc::kill(m.pid() as i32, libc::SIGTERM) }, 0);
    let start = Instant::now();
    while is_mounted(&m.mnt) {
        assert!(start.elapsed() < Duration::from_secs(10), "not detached");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        m.wait_exit(1).is_none(),
        "the mount ended while a file was open:\n{}",
        m.log_text()
    );
    let mut content = Vec::new();
    std::io::Read::read_to_end(&mut open, &mut content).unwrap();
    assert_eq!(content, b"content");
    drop(open);
    let status = m
        .wait_exit(10)
        .expect("still running after the file closed");
    assert!(status.success(), "{status}\n{}", m.log_text());
    assert!(m.log_text().contains("unmounting"), "{}", m.log_text());
}

/// A mount point given as a symlink to an empty directory is followed, as
/// `mount` follows it, and `rewind umount` takes the link too.
#[test]
fn a_symlinked_mount_point_is_followed() {
    let (t, src) = small_repo();
    let real = t.join("real");
    fs::create_dir(&real).unwrap();
    let link = t.join("link");
    std::os::unix::fs::symlink("real", &link).unwrap();
    let mut m = MountGuard::start_via(&t, &link, &["--snapshot", "latest"]);
    // The link stays a link, and the mount is on the directory it names.
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    assert!(!is_mounted(&link), "mounted on the link itself");
    let dev = |p: &std::path::Path| std::os::unix::fs::MetadataExt::dev(&fs::metadata(p).unwrap());
    assert_ne!(
        dev(&real),
        dev(t.path()),
        "nothing mounted on {}",
        real.display()
    );
    assert_eq!(
        fs::read(restored(&real, &src).join("f")).unwrap(),
        b"content"
    );
    assert_eq!(
        fs::read(restored(&link, &src).join("f")).unwrap(),
        b"content"
    );
    let out = bare(&["umount", link.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status = m.wait_exit(10).expect("still running after umount");
    assert!(status.success(), "{status}\n{}", m.log_text());
    assert!(!is_mounted(&m.mnt));
}

/// The binary defines the two math functions it uses (`rewind::math`), so a
/// cold start maps no libm.
#[test]
fn the_mount_process_loads_no_libm() {
    let (t, _) = small_repo();
    let m = MountGuard::start(&t, "mnt", &[]);
    let maps = fs::read_to_string(format!("/proc/{}/maps", m.pid())).unwrap();
    assert!(maps.contains("libc.so"), "{maps}");
    assert!(!maps.contains("libm.so"), "{maps}");
}

#[test]
fn daemon_returns_once_mounted_and_ends_on_umount() {
    let (t, src) = small_repo();
    type Unmount = fn(&std::path::Path) -> std::io::Result<std::process::ExitStatus>;
    let ways: [(&str, Unmount); 2] = [
        ("rewind umount", |mnt| {
            bare(&["umount", mnt.to_str().unwrap()]).status()
        }),
        ("fusermount3 -u", |mnt| {
            crate::common::tool("fusermount3")
                .arg("-u")
                .arg(mnt)
                .status()
        }),
    ];
    for (i, (how, unmount)) in ways.iter().enumerate() {
        let m = DaemonMount::start(&t, &format!("mnt{i}"));
        let f = restored(&m.mnt.join("snapshots/latest"), &src).join("f");
        assert_eq!(fs::read(f).unwrap(), b"content");
        assert!(unmount(&m.mnt).unwrap().success(), "{how}");
        m.wait_gone(how);
    }
}

#[test]
fn a_killed_mount_leaves_a_dead_mount_that_rewind_umount_clears() {
    let (t, _) = small_repo();
    let mut m = MountGuard::start(&t, "mnt", &[]);
    m.kill();
    let e = fs::read_dir(&m.mnt).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "{e}");
    let again = t.rewind(["mount".as_ref(), m.mnt.as_os_str()]);
    assert!(stderr(&again).contains("dead mount"), "{}", stderr(&again));
    let out = bare(&["umount", m.mnt.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!is_mounted(&m.mnt));
    assert_eq!(fs::read_dir(&m.mnt).unwrap().count(), 0);
    let out = bare(&["umount", m.mnt.to_str().unwrap()]).output().unwrap();
    assert!(stderr(&out).contains("not mounted"), "{}", stderr(&out));
}

#[test]
fn backups_while_mounted_never_break_the_mount() {
    let (t, src) = small_repo();
    let mut m = MountGuard::start(&t, "mnt", &[]);
    let backups: Vec<Command> = (0..4)
        .map(|_| t.cmd(["backup".as_ref(), src.as_os_str()]))
        .collect();
    let src2 = src.clone();
    let writer = std::thread::spawn(move || {
        for (i, mut backup) in backups.into_iter().enumerate() {
            fs::write(src2.join("f"), format!("version {i}")).unwrap();
            fs::write(src2.join(format!("new{i}")), vec![i as u8; 300_000]).unwrap();
            let out = backup.output().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
    });
    while !writer.is_finished() {
        for e in fs::read_dir(m.join("snapshots")).unwrap() {
            let dir = restored(&e.unwrap().path(), &src);
            let f = fs::read(dir.join("f")).unwrap();
            assert!(f == b"content" || f.starts_with(b"version "), "{f:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    writer.join().unwrap();
    // The mount notices new snapshots by itself, within a few seconds.
    let start = Instant::now();
    let listed = || fs::read_dir(m.join("snapshots")).unwrap().count();
    while listed() != 6 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} entries in snapshots/, not 5 snapshots and latest",
            listed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let latest = restored(&m.join("snapshots/latest"), &src);
    assert_eq!(fs::read(latest.join("new3")).unwrap(), vec![3u8; 300_000]);
    assert!(m.running(), "the mount ended:\n{}", m.log_text());
}

/// Prune while mounted: the mount's shared lock holds it off, naming the
/// mount; with `--no-lock` it deletes data under the mount, and the mount
/// goes on (a read of deleted data fails with EIO or still succeeds, the
/// rest reads).
#[test]
fn prune_while_mounted_waits_for_the_mount_or_never_breaks_it() {
    let (t, src) = small_repo();
    fs::write(src.join("old"), crate::common::tree::noise(2 << 20, 77)).unwrap();
    let old_id = {
        let out = t.ok(["backup", "--json", src.to_str().unwrap()]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["id"].as_str().unwrap()[..8].to_string()
    };
    fs::remove_file(src.join("old")).unwrap();
    fs::write(src.join("f"), b"newer").unwrap();
    t.backup(&src);
    let snapshots = || {
        let v: serde_json::Value =
            serde_json::from_str(t.ok(["snapshots", "--json"]).trim()).unwrap();
        v.as_array().unwrap().len()
    };
    let prune = || t.rewind(["forget", "--keep-last", "1", "--prune"]);
    {
        let _m = MountGuard::start(&t, "mnt", &[]);
        let out = prune();
        assert!(!out.status.success(), "pruned under a mount");
        assert!(stderr(&out).contains("mount"), "{}", stderr(&out));
        assert_eq!(snapshots(), 3);
    }
    let mut m = MountGuard::start(&t, "mnt", &["--no-lock"]);
    let old = restored(&m.join(format!("ids/{old_id}")), &src).join("old");
    let open = fs::File::open(&old).unwrap();
    let packs = || crate::common::fault::files_below(&t.repo().join("data")).len();
    let before = packs();
    let out = prune();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(snapshots(), 1);
    assert!(packs() < before, "prune deleted no pack");
    let mut buf = Vec::new();
    match std::io::Read::read_to_end(&mut &open, &mut buf) {
        Ok(n) => assert_eq!(n, 2 << 20),
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
            assert!(m.log_text().contains("old"), "{}", m.log_text());
        }
    }
    let latest = restored(&m.join("snapshots/latest"), &src);
    assert_eq!(fs::read(latest.join("f")).unwrap(), b"newer");
    let start = Instant::now();
    while fs::read_dir(m.join("ids")).unwrap().count() != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "forgotten still shown"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(m.running(), "the mount ended:\n{}", m.log_text());
}

/// The mount is in place before the snapshot is found and the lock taken
/// (so a waiting script sees it at once); what fails then undoes it, says
/// why and exits non-zero, in the foreground and with `--daemon`.
#[test]
fn a_failure_after_mounting_undoes_the_mount_and_says_why() {
    let (t, _) = small_repo();
    let mnt = t.join("mnt");
    fs::create_dir(&mnt).unwrap();
    for daemon in [false, true] {
        let mut cmd = t.cmd(["mount".as_ref(), mnt.as_os_str()]);
        cmd.args(["--snapshot", "deadbeef"]);
        if daemon {
            cmd.arg("--daemon");
        }
        let e = mount_fails(&t, &mnt, Some(&mut cmd));
        assert!(e.contains("finding snapshot deadbeef"), "{e}");
        assert!(!is_mounted(&mnt), "left mounted (daemon: {daemon})");
    }
    // Prune (an exclusive lock) is running: the mount refuses to wait.
    let repo = std::sync::Arc::new(crate::common::open_repo(&t.repo()));
    let lock = rewind::repo::lock::acquire(&repo, true, "prune (test)", Duration::ZERO).unwrap();
    let e = mount_fails(&t, &mnt, None);
    assert!(e.contains("prune (test)"), "{e}");
    assert!(!is_mounted(&mnt));

    // The same while a process waits inside the mount (its `stat` of the
    // root waits for the start-up): no dead mount is left behind.
    let mut waiting = t.cmd(["mount".as_ref(), mnt.as_os_str()]);
    waiting
        .args(["--lock-wait", "2s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = waiting.spawn().unwrap();
    let start = Instant::now();
    while !is_mounted(&mnt) {
        assert!(start.elapsed() < Duration::from_secs(10), "never mounted");
        std::thread::sleep(Duration::from_millis(5));
    }
    let inside = {
        let mnt = mnt.clone();
        std::thread::spawn(move || fs::metadata(&mnt).map(|m| m.is_dir()))
    };
    // The stat waits as long as the start-up does…
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        assert!(
            !inside.is_finished(),
            "a stat inside the mount returned before the start-up ended: {:?}",
            inside.join()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("prune (test)"), "{}", stderr(&out));
    // …then fails as on a connection that is gone, or (had it come after
    // the mount was undone) finds the plain directory.
    match inside.join().unwrap() {
        Ok(is_dir) => assert!(is_dir, "the mount point is not a directory"),
        Err(e) => assert!(
            matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)),
            "the stat inside the mount failed with {e}"
        ),
    }
    assert!(!is_mounted(&mnt), "a dead mount was left behind");
    assert!(fs::metadata(&mnt).unwrap().is_dir());
    drop(lock);
    let m = MountGuard::start(&t, "mnt", &["--snapshot", "latest"]);
    assert!(fs::read_dir(&m.mnt).unwrap().count() > 0);
}

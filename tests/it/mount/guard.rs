//! A running `rewind mount`, unmounted and stopped when dropped, also when
//! the test panics.

use crate::common::{bin, TempRepo};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct MountGuard {
    /// The mount point (absolute, as /proc/self/mountinfo shows it).
    pub mnt: PathBuf,
    /// Where the mount process's stderr goes.
    pub log: PathBuf,
    child: Option<Child>,
}

impl MountGuard {
    /// Mount `t`'s repository on `t/<name>` (created) with extra `args`, in
    /// the foreground, and wait until the mount is up.
    pub fn start(t: &TempRepo, name: &str, args: &[&str]) -> MountGuard {
        let mnt = t.join(name);
        fs::create_dir_all(&mnt).unwrap();
        Self::start_via(t, &mnt, args)
    }

    /// Mount on `given` (an existing directory, or a symlink to one) and
    /// wait until the mount is up where it leads.
    pub fn start_via(t: &TempRepo, given: &Path, args: &[&str]) -> MountGuard {
        Self::start_full(t, given, args, &[])
    }

    /// [`MountGuard::start`] with extra environment variables.
    pub fn start_env(t: &TempRepo, name: &str, args: &[&str], env: &[(&str, &str)]) -> MountGuard {
        let mnt = t.join(name);
        fs::create_dir_all(&mnt).unwrap();
        Self::start_full(t, &mnt, args, env)
    }

    fn start_full(t: &TempRepo, given: &Path, args: &[&str], env: &[(&str, &str)]) -> MountGuard {
        let mnt = fs::canonicalize(given).unwrap();
        let name = mnt.file_name().unwrap().to_string_lossy().into_owned();
        let log = t.join(format!("{name}.log"));
        let child = t
            .cmd(["mount".as_ref(), given.as_os_str()])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn rewind mount");
        let mut g = MountGuard {
            mnt,
            log,
            child: Some(child),
        };
        g.wait_mounted();
        g
    }

    fn wait_mounted(&mut self) {
        let start = Instant::now();
        while !is_mounted(&self.mnt) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "rewind mount exited {status} before mounting:\n{}",
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "not mounted after 20 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `rel` inside the mount.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// What the mount process wrote to stderr so far.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Wait up to `secs` for the mount process to end; it is asked at least
    /// once, so `wait_exit(0)` tells whether it has ended already.
    pub fn wait_exit(&mut self, secs: u64) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("a mount process");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the mount process is still running.
    pub fn running(&mut self) -> bool {
        self.wait_exit(0).is_none()
    }

    /// Kill the mount process outright (leaving a dead mount behind).
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            detach(&self.mnt);
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A `rewind mount --daemon` on `mnt` of `t`'s repository, started and
/// checked mounted; unmounted (lazily) when dropped, also on a panic.
pub struct DaemonMount {
    pub mnt: PathBuf,
    /// The daemon's process id, as `mount --daemon` printed it.
    pub pid: i32,
}

impl DaemonMount {
    /// Mount on `t/<name>` (created).
    pub fn start(t: &TempRepo, name: &str) -> DaemonMount {
        let mnt = t.join(name);
        fs::create_dir(&mnt).unwrap();
        let mnt = fs::canonicalize(&mnt).unwrap();
        let out = t.rewind(["mount".as_ref(), "--daemon".as_ref(), mnt.as_os_str()]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        // Unmounted on a failed assertion below too.
        let m = DaemonMount {
            mnt,
            pid: err
                .rsplit("process ")
                .next()
                .and_then(|s| s.trim().trim_end_matches(')').parse().ok())
                .unwrap_or(0),
        };
        assert!(out.status.success(), "{err}");
        assert!(is_mounted(&m.mnt), "mounted when --daemon returns");
        assert!(m.pid > 0, "no daemon process named: {err}");
        m
    }

    /// Wait (10 s at most) for the daemon to end, after `how` unmounted it.
    pub fn wait_gone(&self, how: &str) {
        let start = Instant::now();
        while unsafe { libc::kill(self.pid, 0) } == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "daemon {} still running after {how}",
                self.pid
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!is_mounted(&self.mnt), "{how}");
    }
}

impl Drop for DaemonMount {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            detach(&self.mnt)
        }
    }
}

/// Lazily unmount `mnt` (works on dead mounts too).
pub fn detach(mnt: &Path) {
    let c = std::ffi::CString::new(mnt.as_os_str().as_bytes()).unwrap();
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

/// Whether something is mounted exactly at `mnt`.
pub fn is_mounted(mnt: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = mnt.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// `rewind` without a repository argument.
pub fn bare(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args);
    crate::common::test_env(&mut c);
    c
}

//! A repository over SFTP, on a real sshd on loopback.

use super::{expect_code, json, snapshot_ids};
use crate::common::servers::Sshd;
use crate::common::{compare, restored, stderr, tree, Remote, TempRepo};
use crate::mount::guard::MountGuard;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

/// A repository in `dir` on `sshd`'s machine (which is this one).
fn sftp_repo(sshd: &Sshd, dir: &std::path::Path) -> TempRepo {
    TempRepo::at(Remote {
        location: format!("sftp:root@127.0.0.1:{}", dir.display()),
        env: vec![("REWIND_SFTP_COMMAND".into(), sshd.command())],
    })
}

/// Init, backup, restore, check and the mount over SFTP; objects land
/// where the format says, 0600, with no temporary file left.
#[test]
fn a_repository_over_sftp_round_trips() {
    let sshd = Sshd::start();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("backups/rewind");
    let t = sftp_repo(&sshd, &dir);
    t.ok(["init"]);
    assert!(dir.join("config").is_file(), "{}", sshd.log_text());
    let src = t.full_src();
    t.backup(&src);
    let files: Vec<_> = crate::common::fault::files_below(&dir)
        .into_iter()
        .map(|p| dir.join(p))
        .collect();
    assert!(files.iter().any(|p| p.starts_with(dir.join("data"))));
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(!name.starts_with(".tmp"), "left behind: {}", f.display());
        let mode = fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    let out = t.join("out");
    t.restore("latest", &out);
    compare::assert_same(&src, &restored(&out, &src), compare::Options::default());
    let report = json(&t.ok(["check", "--read-data", "--json"]));
    assert_eq!(report["ok"], true, "{report}");

    // A second backup from a cold cache, and the mount.
    fs::remove_dir_all(t.join("cache")).unwrap();
    tree::file(&src.join("later"), b"written later");
    t.backup(&src);
    assert_eq!(snapshot_ids(&t).len(), 2);
    let m = MountGuard::start(&t, "mnt", &["--snapshot", "latest"]);
    let inside = m.join(src.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inside.join("later")).unwrap(), b"written later");
    drop(m);
}

/// A backup killed in the middle leaves only temporary files, which
/// listings skip: check is clean and the next backup succeeds. A host
/// that refuses the key fails at once, saying so; a server that is gone is
/// tried again, then named.
#[test]
fn sftp_failures_are_clean_and_named() {
    let mut sshd = Sshd::start();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("repo");
    let t = sftp_repo(&sshd, &dir);
    t.ok(["init"]);
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..40 {
        tree::file(&src.join(format!("f{i}")), &tree::noise(1 << 20, 700 + i));
    }
    let mut child = t
        .cmd([OsStr::new("backup"), src.as_os_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the first pack is on its way.
    let start = std::time::Instant::now();
    while !crate::common::fault::files_below(&dir.join("data"))
        .iter()
        .any(|p| p.file_name().unwrap().to_string_lossy().starts_with(".tmp"))
    {
        assert!(start.elapsed().as_secs() < 60, "no upload started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before an upload was seen under a temporary name"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let report = json(&t.ok(["check", "--read-data", "--json"]));
    assert_eq!(report["ok"], true, "{report}");
    t.backup(&src);
    assert_eq!(snapshot_ids(&t).len(), 1);

    // A key the server does not accept: no retries, a clear message.
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("id");
    assert!(std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let config = other.path().join("ssh_config");
    let ours = fs::read_to_string(sshd.dir.path().join("ssh_config")).unwrap();
    let id = sshd.dir.path().join("id");
    fs::write(
        &config,
        ours.replace(&id.display().to_string(), &key.display().to_string()),
    )
    .unwrap();
    let mut c = t.cmd(["snapshots"]);
    c.env(
        "REWIND_SFTP_COMMAND",
        format!("ssh -F {} rewind-test -s sftp", config.display()),
    );
    let out = c.output().unwrap();
    expect_code(&out, 1, "a refused key");
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("gave up"),
        "not retried: {}",
        stderr(&out)
    );

    sshd.kill();
    let out = t
        .cmd(["snapshots"])
        .env("REWIND_RETRIES", "1")
        .output()
        .unwrap();
    expect_code(&out, 1, "no server");
    let err = stderr(&out);
    assert!(
        err.contains("Connection refused") && err.contains("gave up after 2 tries"),
        "{err}"
    );
    assert!(err.contains("sftp:root@127.0.0.1:"), "{err}");
}

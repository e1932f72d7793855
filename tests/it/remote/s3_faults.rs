//! Faults of object storage: the backup tries again, or fails naming the
//! object, and leaves no snapshot and nothing `check` complains about.

use super::{expect_code, json, s3_repo, s3_repo_on, snapshot_ids};
use crate::common::proxy::Fault;
use crate::common::servers::{self, S3Server};
use crate::common::{stderr, stdout, tree, Remote, TempRepo};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// A source tree of `mib` MiB in 1 MiB files (several packs at 16 MiB).
fn source(t: &TempRepo, name: &str, mib: usize, seed: u64) -> PathBuf {
    let src = t.join(name);
    fs::create_dir_all(&src).unwrap();
    for i in 0..mib {
        tree::file(
            &src.join(format!("f{i}")),
            &tree::noise(1 << 20, seed * 1000 + i as u64),
        );
    }
    src
}

/// `check --read-data` passes (unreferenced packs are allowed: prune's).
fn check_clean(t: &TempRepo) {
    let out = t.rewind(["check", "--read-data", "--json"]);
    let report = json(&stdout(&out));
    expect_code(&out, 0, "check --read-data");
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        report["damaged_packs"].as_array().unwrap().is_empty(),
        "{report}"
    );
}

fn backup(t: &TempRepo, src: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut c = t.cmd([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// SlowDown answers, server errors and connection resets are tried again:
/// the backup succeeds, every byte checks out, and the retries are counted.
#[test]
fn slowdown_errors_and_resets_are_tried_again() {
    let (t, proxy) = s3_repo("flaky");
    let src = source(&t, "src", 20, 1);
    proxy.inject("PUT", "/data/", Fault::SlowDown, 3);
    proxy.inject("PUT", "/data/", Fault::Reset, 2);
    proxy.inject("PUT", "/index/", Fault::InternalError, 1);
    proxy.inject("", "/locks/", Fault::SlowDown, 2);
    let out = backup(&t, &src, &[]);
    expect_code(&out, 0, "backup through faults");
    let v = json(&stdout(&out));
    let injected = proxy.seen().iter().filter(|s| s.fault.is_some()).count();
    assert_eq!(injected, 8, "{:#?}", proxy.seen());
    assert!(v["requests"]["retried"].as_u64().unwrap() >= 8, "{v}");
    proxy.clear();
    check_clean(&t);
    // Reads are tried again too: restore reads the snapshot through a reset
    // (with a cold cache: the backup cached the manifest it wrote).
    fs::remove_dir_all(t.join("cache")).unwrap();
    proxy.forget();
    proxy.inject("GET", "/snapshots/", Fault::Reset, 1);
    let out = t.join("out");
    t.restore("latest", &out);
    let injected = proxy.seen().iter().filter(|s| s.fault.is_some()).count();
    assert_eq!(injected, 1, "{:#?}", proxy.seen());
    assert_eq!(
        fs::read(crate::common::restored(&out, &src).join("f7")).unwrap(),
        tree::noise(1 << 20, 1007)
    );
}

/// A server that keeps failing: the backup gives up after its tries, names
/// the object and the error, writes no snapshot, and the repository stays
/// whole; the next backup succeeds.
#[test]
fn persistent_failures_fail_the_backup_naming_the_object() {
    let (t, proxy) = s3_repo("failing");
    let src = source(&t, "src", 3, 2);
    t.backup(&src);
    tree::file(&src.join("new"), &tree::noise(1 << 20, 99));
    proxy.inject("PUT", "/data/", Fault::SlowDown, usize::MAX);
    let out = backup(&t, &src, &[("REWIND_RETRIES", "2")]);
    expect_code(&out, 1, "backup against a failing server");
    let err = stderr(&out);
    assert!(err.contains("/data/"), "names the pack: {err}");
    assert!(err.contains("SlowDown"), "says why: {err}");
    assert!(err.contains("gave up after 3 tries"), "{err}");
    assert!(
        !err.contains(servers::SECRET_KEY) && !err.contains(servers::ACCESS_KEY),
        "{err}"
    );
    let puts = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "PUT" && s.path.contains("/data/"))
        .count();
    assert!((3..=3 * 8).contains(&puts), "3 tries per pack, {puts} PUTs");
    proxy.clear();
    assert_eq!(snapshot_ids(&t).len(), 1, "no snapshot written");
    check_clean(&t);
    t.backup(&src);
    assert_eq!(snapshot_ids(&t).len(), 2);
}

/// The server dies while a pack is being uploaded. Back within the retry
/// window, the backup completes; gone for good, it fails naming the pack,
/// and once the server is back the repository checks out and the next
/// backup succeeds.
#[test]
fn the_server_killed_during_an_upload() {
    let mut server = S3Server::start();
    let (t, proxy) = s3_repo_on(&server, "killed");
    let src = source(&t, "src", 20, 3);

    // Killed and back within the retries.
    proxy.inject("PUT", "/data/", Fault::Hold, 1);
    let child = t.spawn([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]);
    proxy.wait_held(1);
    server.kill();
    proxy.release();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    server.restart();
    let out = child.wait_with_output().unwrap();
    expect_code(&out, 0, "backup across a server restart");
    assert!(json(&stdout(&out))["requests"]["retried"].as_u64().unwrap() >= 1);
    assert!(
        proxy
            .seen()
            .iter()
            .any(|s| s.method == "PUT" && s.status == 0),
        "an upload failed: {:#?}",
        proxy.seen()
    );

    // Killed for good.
    tree::file(&src.join("more"), &tree::noise(3 << 20, 33));
    proxy.inject("PUT", "/data/", Fault::Hold, 1);
    let child = t
        .cmd([OsStr::new("backup"), src.as_os_str()])
        .env("REWIND_RETRIES", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy.wait_held(1);
    server.kill();
    proxy.release();
    let out = child.wait_with_output().unwrap();
    expect_code(&out, 1, "backup with the server gone");
    let err = stderr(&out);
    assert!(
        err.contains("/data/") || err.contains("/locks/"),
        "names the object: {err}"
    );
    server.restart();
    assert_eq!(snapshot_ids(&t).len(), 1);
    check_clean(&t);
    t.backup(&src);
    check_clean(&t);
}

/// A backup killed (SIGKILL) in the middle of an upload leaves no partial
/// object and no snapshot: check reads everything clean, and the next
/// backup (its lock left behind is stale: same machine, dead process) runs.
#[test]
fn a_backup_killed_mid_upload() {
    let (t, proxy) = s3_repo("sigkill");
    let src = source(&t, "src", 20, 4);
    proxy.inject("PUT", "/data/", Fault::Hold, 1);
    let mut child = t
        .cmd([OsStr::new("backup"), src.as_os_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    proxy.wait_held(1);
    child.kill().unwrap();
    child.wait().unwrap();
    proxy.release();
    assert!(snapshot_ids(&t).is_empty());
    check_clean(&t);
    t.backup(&src);
    check_clean(&t);
    assert_eq!(snapshot_ids(&t).len(), 1);
}

/// Wrong or missing credentials, a missing bucket, a server that is not
/// there, and a secret in the location: each a clear error, exit code 1,
/// and no secret in the output.
#[test]
fn bad_credentials_missing_buckets_and_dead_servers_are_named() {
    let (t, _proxy) = s3_repo("creds");
    let remote = t.remote.clone().unwrap();
    let with = |env: Vec<(String, String)>, location: &str| {
        TempRepo::at(Remote {
            location: location.to_string(),
            env,
        })
    };
    let mut wrong = remote.env.clone();
    wrong.retain(|(k, _)| k != "AWS_SECRET_ACCESS_KEY");
    wrong.push((
        "AWS_SECRET_ACCESS_KEY".into(),
        "not-the-secret-at-all".into(),
    ));
    let out = with(wrong, &remote.location).rewind(["snapshots"]);
    expect_code(&out, 1, "wrong secret");
    let err = stderr(&out);
    assert!(
        err.contains("access denied") && err.contains("config"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret-at-all"), "{err}");

    let none: Vec<(String, String)> = Vec::new();
    let out = with(none, &remote.location).rewind(["snapshots"]);
    expect_code(&out, 1, "no credentials");
    assert!(
        stderr(&out).contains("no S3 credentials"),
        "{}",
        stderr(&out)
    );

    let missing = format!(
        "{}/{}",
        remote.location.rsplit_once('/').unwrap().0,
        servers::unique_bucket("missing")
    );
    let out = with(remote.env.clone(), &missing).rewind(["snapshots"]);
    expect_code(&out, 1, "missing bucket");
    assert!(
        stderr(&out).contains("does not exist") && stderr(&out).contains("rewind init"),
        "{}",
        stderr(&out)
    );

    let dead = format!("s3:http://127.0.0.1:{}/bucket", servers::free_port());
    let out = with(remote.env.clone(), &dead)
        .cmd(["snapshots"])
        .env("REWIND_RETRIES", "1")
        .output()
        .unwrap();
    expect_code(&out, 1, "no server");
    let err = stderr(&out);
    assert!(
        err.contains(&dead) && err.contains("gave up after 2 tries"),
        "{err}"
    );

    let out = with(
        remote.env.clone(),
        "s3:http://KEY:s3cr3t@127.0.0.1:1/bucket",
    )
    .rewind(["snapshots"]);
    expect_code(&out, 1, "a secret in the location");
    assert!(
        !stderr(&out).contains("s3cr3t") && stderr(&out).contains("AWS_ACCESS_KEY_ID"),
        "{}",
        stderr(&out)
    );
    let out = with(remote.env, "s3:http://192.0.2.1/bucket").rewind(["snapshots"]);
    expect_code(&out, 1, "plain http off loopback");
    assert!(stderr(&out).contains("loopback"), "{}", stderr(&out));
}

//! Many hosts, one bucket: concurrent backups from hosts with caches of
//! their own, deduplication across them, and locks that hold prune off.

use super::{expect_code, json, s3_repo, snapshot_ids};
use crate::common::proxy::Fault;
use crate::common::{compare, restored, stderr, stdout, tree, TempRepo};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A command of `host` on the repository: its own cache and `--host`.
fn on_host(t: &TempRepo, host: &str, args: &[&OsStr]) -> Command {
    let mut c = t.cmd(args);
    c.env("REWIND_CACHE_DIR", t.join(format!("cache-{host}")));
    c
}

fn backup_on(t: &TempRepo, host: &str, src: &Path) -> Command {
    on_host(
        t,
        host,
        &[
            OsStr::new("backup"),
            OsStr::new("--json"),
            OsStr::new("--host"),
            OsStr::new(host),
            src.as_os_str(),
        ],
    )
}

/// A site: files every host has (the same release of an application) and
/// files of its own.
fn site(t: &TempRepo, host: &str, n: u64) -> PathBuf {
    let src = t.join(format!("site-{host}"));
    fs::create_dir_all(src.join("shared")).unwrap();
    fs::create_dir_all(src.join("own")).unwrap();
    for i in 0..6 {
        tree::file(
            &src.join(format!("shared/lib{i}")),
            &tree::noise(512 << 10, 500 + i),
        );
    }
    for i in 0..3 {
        tree::file(
            &src.join(format!("own/data{i}")),
            &tree::noise(256 << 10, n * 100 + i),
        );
    }
    src
}

/// Three hosts back up at the same time into one bucket, twice: every
/// snapshot restores exactly, check reads everything clean, and data the
/// first host stored is not stored again by the others once its index is
/// written.
#[test]
fn many_hosts_back_up_into_one_bucket_at_once() {
    let (t, _proxy) = s3_repo("hosts");
    let hosts = ["web1", "web2", "db1"];
    let sites: Vec<PathBuf> = hosts.iter().zip(1..).map(|(h, n)| site(&t, h, n)).collect();

    // web1 first: the shared files are then in the index for the others.
    let out = backup_on(&t, "web1", &sites[0]).output().unwrap();
    expect_code(&out, 0, "first host");
    let first = json(&stdout(&out));
    let children: Vec<_> = hosts[1..]
        .iter()
        .zip(&sites[1..])
        .map(|(h, s)| {
            backup_on(&t, h, s)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        expect_code(&out, 0, "concurrent host");
        let v = json(&stdout(&out));
        let added = v["summary"]["bytes_added_raw"].as_u64().unwrap();
        assert!(
            added < (1 << 20),
            "the shared 3 MiB deduplicated, {added} bytes added; first host added {}",
            first["summary"]["bytes_added_raw"]
        );
    }

    // All three at once, with changes.
    for (s, n) in sites.iter().zip(10..) {
        tree::file(&s.join("own/today"), &tree::noise(300 << 10, n));
        tree::file(&s.join("shared/release"), &tree::noise(400 << 10, 77));
    }
    let children: Vec<_> = hosts
        .iter()
        .zip(&sites)
        .map(|(h, s)| {
            backup_on(&t, h, s)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        expect_code(&out, 0, "simultaneous host");
    }

    let ids = snapshot_ids(&t);
    assert_eq!(ids.len(), 6);
    let report = json(&t.ok(["check", "--read-data", "--json"]));
    assert_eq!(report["ok"], true, "{report}");
    for (h, s) in hosts.iter().zip(&sites) {
        let out = t.join(format!("restore-{h}"));
        let spec_out = t.ok(["snapshots", "--json", "--host", h]);
        let latest = json(&spec_out).as_array().unwrap().last().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        t.restore(&latest, &out);
        compare::assert_same(s, &restored(&out, s), compare::Options::default());
    }
}

/// Prune takes the exclusive lock across hosts: while a backup of another
/// host is uploading, prune is refused naming it; once the backup is done,
/// prune runs. A lock whose holder on another machine stopped refreshing
/// it is stale by the storage's clock, and prune removes it.
#[test]
fn prune_waits_for_backups_of_other_hosts() {
    let (t, proxy) = s3_repo("locks");
    let src = site(&t, "web1", 1);
    proxy.inject("PUT", "/data/", Fault::Hold, 1);
    let backup = backup_on(&t, "web1", &src)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy.wait_held(1);
    let out = on_host(&t, "admin", &[OsStr::new("prune")])
        .output()
        .unwrap();
    expect_code(&out, 1, "prune during another host's backup");
    assert!(
        stderr(&out).contains("locked") && stderr(&out).contains("backup"),
        "{}",
        stderr(&out)
    );
    proxy.release();
    let out = backup.wait_with_output().unwrap();
    expect_code(&out, 0, "the backup prune waited for");
    let out = on_host(&t, "admin", &[OsStr::new("prune")])
        .output()
        .unwrap();
    expect_code(&out, 0, "prune after the backup");

    // A lock of a host far away that stopped refreshing it.
    let repo = crate::common::open_at(&t);
    let mut info = repo.lock_info(false, "backup");
    info.machine_id = "another machine".into();
    info.host = "web9".into();
    repo.write_lock(&info).unwrap();
    let out = on_host(&t, "admin", &[OsStr::new("prune")])
        .env("REWIND_LOCK_STALE_AFTER", "3")
        .output()
        .unwrap();
    expect_code(&out, 1, "prune beside a fresh lock of another machine");
    assert!(stderr(&out).contains("web9"), "{}", stderr(&out));
    std::thread::sleep(std::time::Duration::from_secs(5));
    let out = on_host(&t, "admin", &[OsStr::new("prune")])
        .env("REWIND_LOCK_STALE_AFTER", "3")
        .output()
        .unwrap();
    expect_code(&out, 0, "prune beside a stale lock");
    assert!(
        repo.locks().unwrap().is_empty(),
        "prune removed the stale lock"
    );
}

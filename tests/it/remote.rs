//! Off-site repositories on real servers on loopback: an S3 server
//! (s3s-fs) behind a fault-injecting proxy, and OpenSSH's sshd for SFTP.

// A repository in a bucket: layout, round trip, cache, requests, mount, check.
mod s3;
// Faults: SlowDown, resets, a killed server, a killed backup, bad credentials.
mod s3_faults;
// Restore: planned downloads, exact trees, a file that cannot be read.
mod s3_restore;
// Many hosts and their locks in one bucket.
mod s3_hosts;
// A repository over SFTP.
mod sftp;

use crate::common::proxy::Proxy;
use crate::common::servers::{self, S3Server};
use crate::common::{expect_code, json, snapshot_ids, stdout, Remote, TempRepo};
use std::ffi::OsStr;

/// A repository in a new bucket of the shared S3 server, reached through a
/// proxy of its own (for counting and faults), initialised.
fn s3_repo(name: &str) -> (TempRepo, Proxy) {
    let server = servers::shared_s3();
    let proxy = Proxy::start(server.port);
    let t = TempRepo::at(Remote::s3(&proxy.endpoint(), &servers::unique_bucket(name)));
    t.ok(["init"]);
    (t, proxy)
}

/// A repository in a new bucket of `server`, through a new proxy, initialised.
fn s3_repo_on(server: &S3Server, name: &str) -> (TempRepo, Proxy) {
    let proxy = Proxy::start(server.port);
    let t = TempRepo::at(Remote::s3(&proxy.endpoint(), &servers::unique_bucket(name)));
    t.ok(["init"]);
    (t, proxy)
}

/// `backup --json PATH` with extra environment, returning its JSON.
fn backup_json(t: &TempRepo, env: &[(&str, &str)], args: &[&OsStr]) -> serde_json::Value {
    let mut c = t.cmd([OsStr::new("backup"), OsStr::new("--json")]);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    expect_code(&out, 0, "backup");
    json(&stdout(&out))
}

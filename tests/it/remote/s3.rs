//! A repository in a bucket: what lands in the bucket, the round trip, the
//! local cache and the requests a backup makes, the mount, check's subset.

use super::{backup_json, expect_code, json, s3_repo, snapshot_ids};
use crate::common::servers;
use crate::common::{compare, restored, stderr, tree, Remote, TempRepo};
use crate::mount::guard::{bare, DaemonMount, MountGuard};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

/// Every file below `dir`, relative to it.
fn files(dir: &Path) -> BTreeSet<String> {
    crate::common::fault::files_below(dir)
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// `init` makes the bucket; a backup stores packs, an index and a snapshot
/// where the format says, and nothing else; restore gives back every kind
/// of entry and its metadata; check reads every byte; a second init is
/// refused.
#[test]
fn a_repository_in_a_bucket_round_trips() {
    let (t, _proxy) = s3_repo("roundtrip");
    let bucket = t
        .remote
        .as_ref()
        .unwrap()
        .location
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let stored = servers::shared_s3().bucket_dir(&bucket);
    assert!(stored.is_dir(), "init created the bucket");
    let src = t.full_src();
    let id = t.backup(&src);
    let names = files(&stored);
    let kinds: BTreeSet<&str> = names.iter().map(|n| n.split('/').next().unwrap()).collect();
    assert_eq!(
        kinds,
        ["config", "data", "index", "keys", "snapshots"]
            .into_iter()
            .collect(),
        "{names:?}"
    );
    assert!(names.contains(&format!("snapshots/{id}")), "{names:?}");
    for n in names.iter().filter(|n| n.starts_with("data/")) {
        let parts: Vec<&str> = n.split('/').collect();
        assert!(
            parts[2].starts_with(parts[1]),
            "pack {n} under its first two digits"
        );
    }
    assert!(
        !names.iter().any(|n| n.starts_with("locks/")),
        "locks removed: {names:?}"
    );

    let out = t.join("out");
    t.restore("latest", &out);
    compare::assert_same(&src, &restored(&out, &src), compare::Options::default());
    let report = json(&t.ok(["check", "--read-data", "--json"]));
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["packs_read"].as_u64().unwrap() >= 2, "{report}");

    let again = t.rewind(["init"]);
    expect_code(&again, 1, "init over a repository");
    assert!(
        stderr(&again).contains("already holds a repository"),
        "{}",
        stderr(&again)
    );
}

/// A prefix holding anything else is refused by init; a prefix of its own
/// in a shared bucket is a repository of its own.
#[test]
fn init_needs_an_empty_prefix_and_prefixes_are_separate_repositories() {
    let (t, proxy) = s3_repo("prefixes");
    let location = &t.remote.as_ref().unwrap().location;
    let inner = TempRepo::at(Remote {
        location: format!("{location}/inner/repo"),
        ..t.remote.clone().unwrap()
    });
    let out = inner.rewind(["init"]);
    expect_code(&out, 0, "init in a prefix of its own");
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("a"), b"in the prefix");
    inner.backup(&src);
    assert_eq!(snapshot_ids(&inner).len(), 1);
    assert_eq!(
        snapshot_ids(&t).len(),
        0,
        "the outer repository sees none of it"
    );
    // A prefix with an object in it is not empty.
    let stray = TempRepo::at(Remote {
        location: format!("{location}/inner"),
        ..t.remote.clone().unwrap()
    });
    let out = stray.rewind(["init"]);
    expect_code(&out, 1, "init over a non-empty prefix");
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    drop(proxy);
}

/// The second backup from the same host reads its parent from the local
/// cache: no index or pack downloads, a few dozen requests in all, and the
/// counts `--json` reports are the requests the server saw. A cold cache
/// is rebuilt from the repository.
#[test]
fn a_second_backup_downloads_nothing_and_makes_a_few_dozen_requests() {
    let (t, proxy) = s3_repo("cache");
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..30 {
        let d = src.join(format!("dir{}", i % 6));
        fs::create_dir_all(&d).unwrap();
        tree::file(
            &d.join(format!("f{i}")),
            &tree::noise(20_000 + i * 1000, i as u64),
        );
    }
    backup_json(&t, &[], &[src.as_os_str()]);
    tree::file(&src.join("dir0/new"), b"one new file");
    backup_json(&t, &[], &[src.as_os_str()]);

    proxy.forget();
    let v = backup_json(&t, &[], &[src.as_os_str()]);
    assert_eq!(v["summary"]["files_unchanged"], 31, "{v}");
    let seen = proxy.seen();
    let gets = |dir: &str| {
        seen.iter()
            .filter(|s| s.method == "GET" && s.path.contains(&format!("/{dir}/")))
            .count()
    };
    assert_eq!(
        gets("index"),
        0,
        "index files come from the cache: {seen:#?}"
    );
    assert_eq!(gets("data"), 0, "tree packs come from the cache: {seen:#?}");
    assert_eq!(
        gets("snapshots"),
        0,
        "snapshot manifests come from the cache: {seen:#?}"
    );
    assert!(seen.len() <= 36, "{} requests: {seen:#?}", seen.len());
    let requests = &v["requests"];
    // The lock is removed after the JSON is printed: the one request it
    // does not count.
    let deletes: Vec<_> = seen.iter().filter(|s| s.method == "DELETE").collect();
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert!(deletes[0].path.contains("/locks/"), "{deletes:#?}");
    assert_eq!(
        requests["requests"].as_u64().unwrap() + requests["retried"].as_u64().unwrap() + 1,
        seen.len() as u64,
        "--json counts what the server saw: {requests} vs {seen:#?}"
    );
    assert_eq!(
        requests["put"]["requests"],
        seen.iter().filter(|s| s.method == "PUT").count()
    );

    // A damaged cached manifest is fetched again (and cached again); a
    // forgotten one leaves the cache.
    let cached = cached_snapshots(&t.join("cache"));
    assert_eq!(cached.len(), 3, "{cached:?}");
    let stored = fs::read(&cached[0]).unwrap();
    let mut bad = stored.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    fs::write(&cached[0], &bad).unwrap();
    proxy.forget();
    let listed = json(&t.ok(["snapshots", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    let seen = proxy.seen();
    let snapshot_gets = seen
        .iter()
        .filter(|s| s.method == "GET" && s.path.contains("/snapshots/"))
        .count();
    assert_eq!(snapshot_gets, 1, "{seen:#?}");
    assert_eq!(fs::read(&cached[0]).unwrap(), stored);
    let first = listed[0]["id"].as_str().unwrap().to_string();
    t.ok(["forget", &first]);
    t.ok(["snapshots"]);
    assert_eq!(cached_snapshots(&t.join("cache")).len(), 2);

    // A cold cache: everything needed is downloaded again, and the backup
    // still finds its parent.
    fs::remove_dir_all(t.join("cache")).unwrap();
    proxy.forget();
    let v = backup_json(&t, &[], &[src.as_os_str()]);
    assert_eq!(v["summary"]["files_unchanged"], 31, "{v}");
    let seen = proxy.seen();
    assert!(seen
        .iter()
        .any(|s| s.method == "GET" && s.path.contains("/index/")));
    assert!(seen
        .iter()
        .any(|s| s.method == "GET" && s.path.contains("/data/")));
}

/// The snapshot manifests in the local cache under `root`.
fn cached_snapshots(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if d.file_name().is_some_and(|n| n == "snapshots") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `src/big` (`size` bytes of noise from `seed`) and `src/small` ("a small
/// file"), backed up: the source and the big file's bytes.
fn big_and_small(t: &TempRepo, size: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    let big = tree::noise(size, seed);
    tree::file(&src.join("big"), &big);
    tree::file(&src.join("small"), b"a small file");
    t.backup(&src);
    (src, big)
}

/// The mount reads a remote repository lazily: a file's bytes by range
/// requests, never a whole data pack.
#[test]
fn the_mount_reads_by_range() {
    let (t, proxy) = s3_repo("mount");
    let (src, big) = big_and_small(&t, 6 << 20, 7);
    proxy.forget();
    let m = MountGuard::start(&t, "mnt", &["--snapshot", "latest"]);
    let inside = m.join(src.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inside.join("small")).unwrap(), b"a small file");
    let seen = proxy.seen();
    let data: Vec<_> = seen
        .iter()
        .filter(|s| s.method == "GET" && s.path.contains("/data/"))
        .collect();
    assert!(!data.is_empty(), "the file came from the bucket");
    let downloaded: usize = data.iter().map(|s| s.bytes).sum();
    assert!(
        downloaded < (big.len() / 2),
        "reading a small file downloaded {downloaded} bytes: {data:#?}"
    );
    assert!(data.iter().all(|s| s.range.is_some()), "{data:#?}");
    assert_eq!(fs::read(inside.join("big")).unwrap(), big);
    drop(m);
}

/// `mount --daemon` forks after opening the repository (config, key, with
/// requests on the parent's I/O runtime, whose threads are not in the
/// child): the child still serves files from the bucket, and ends on
/// unmount. (It does so even when handed the parent's client, checked: the
/// HTTP pool drops connections whose tasks are gone; what the child's own
/// client and runtime avoid is touching the parent's runtime at all.)
#[test]
fn a_daemon_mount_reads_from_the_bucket() {
    let (t, proxy) = s3_repo("daemon");
    let (src, big) = big_and_small(&t, 5 << 20, 11);
    let m = DaemonMount::start(&t, "mnt");
    proxy.forget();
    let inside = restored(&m.mnt.join("snapshots/latest"), &src);
    assert_eq!(fs::read(inside.join("small")).unwrap(), b"a small file");
    assert_eq!(fs::read(inside.join("big")).unwrap(), big);
    assert!(
        proxy
            .seen()
            .iter()
            .any(|s| s.method == "GET" && s.path.contains("/data/")),
        "the daemon read the file from the bucket"
    );
    let umount = bare(&["umount", m.mnt.to_str().unwrap()]).status().unwrap();
    assert!(umount.success());
    m.wait_gone("rewind umount");
}

/// `check --read-data-subset` downloads only the packs of its subset
/// (without a cache, so that tree packs are not fetched whole either): a
/// pack read from its first byte is a pack `check` chose.
#[test]
fn check_reads_only_its_subset() {
    let (t, proxy) = s3_repo("subset");
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..8u64 {
        tree::file(&src.join(format!("f{i}")), &tree::noise(100_000, 100 + i));
        t.backup(&src);
    }
    proxy.forget();
    let out = t.ok(["--no-cache", "check", "--read-data-subset", "25%", "--json"]);
    let report = json(&out);
    assert_eq!(report["ok"], true, "{report}");
    let packs = report["packs"].as_u64().unwrap();
    let read = report["packs_read"].as_u64().unwrap();
    assert!(packs >= 16 && read == packs.div_ceil(4), "{report}");
    // Data packs read whole: a GET of all their bytes (trees are read
    // from their packs too, a window at a time: a small tree pack's first
    // window is all of it).
    let repo = crate::common::open_at(&t);
    let data_packs: std::collections::HashMap<String, u64> = repo
        .list_packs()
        .unwrap()
        .into_iter()
        .filter(|(id, _)| {
            repo.pack_header(id)
                .unwrap()
                .iter()
                .any(|e| e.kind == rewind::format::pack::BlobKind::Data)
        })
        .map(|(id, o)| (id.to_hex(), o.size))
        .collect();
    let whole: BTreeSet<String> = proxy
        .seen()
        .iter()
        .filter(|s| {
            let name = s.path.rsplit('/').next().unwrap_or_default();
            s.method == "GET"
                && s.range_start() == Some(0)
                && s.range_end().map(|e| e + 1) == data_packs.get(name).copied()
        })
        .map(|s| s.path.clone())
        .collect();
    // The subset is random: some of the packs it read may be tree packs.
    assert!(
        whole.len() as u64 <= read && read < data_packs.len() as u64,
        "{read} packs read, {} data packs: {whole:#?}",
        data_packs.len()
    );
}

/// What the request counts say on stderr with `REWIND_REQUEST_STATS`.
#[test]
fn request_counts_are_printed_on_request() {
    let (t, _proxy) = s3_repo("stats");
    let out = t
        .cmd(["snapshots"])
        .env("REWIND_REQUEST_STATS", "1")
        .output()
        .unwrap();
    expect_code(&out, 0, "snapshots");
    let err = stderr(&out);
    assert!(err.contains("requests: ") && err.contains("LIST"), "{err}");
    assert!(err.contains("snapshot: LIST 1"), "{err}");
    assert!(!err.contains(servers::SECRET_KEY), "{err}");
    let local = TempRepo::new();
    let out = local
        .cmd(["snapshots"])
        .env("REWIND_REQUEST_STATS", "1")
        .output()
        .unwrap();
    assert!(
        !stderr(&out).contains("requests:"),
        "a local repository makes no requests"
    );
}

/// `copy --from-repo` between a local repository and a bucket, both ways:
/// each snapshot once, restored exactly from either side.
#[test]
fn copy_between_a_directory_and_a_bucket() {
    let local = TempRepo::new();
    let src = local.full_src();
    local.backup(&src);
    let (t, _proxy) = s3_repo("copy");
    let copy_into = |dst: &TempRepo, from: &std::ffi::OsStr, env: &[(String, String)]| {
        let mut c = dst.cmd([
            std::ffi::OsStr::new("copy"),
            std::ffi::OsStr::new("--json"),
            std::ffi::OsStr::new("--from-repo"),
            from,
        ]);
        c.env("REWIND_FROM_PASSWORD", crate::common::PASSWORD);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        expect_code(&out, 0, "copy");
        json(&crate::common::stdout(&out))
    };
    let report = copy_into(&t, local.repo().as_os_str(), &[]);
    assert_eq!(report["copied"].as_array().unwrap().len(), 1, "{report}");
    let again = copy_into(&t, local.repo().as_os_str(), &[]);
    assert_eq!(again["copied"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(snapshot_ids(&t).len(), 1);
    let out = t.join("from-bucket");
    t.restore("latest", &out);
    compare::assert_same(&src, &restored(&out, &src), compare::Options::default());

    let back = TempRepo::new();
    let remote = t.remote.clone().unwrap();
    let report = copy_into(&back, OsStr::new(&remote.location), &remote.env);
    assert_eq!(report["copied"].as_array().unwrap().len(), 1, "{report}");
    let out = back.join("back");
    back.restore("latest", &out);
    // The first comparison read the source: its atimes are not the
    // snapshot's any more.
    let options = compare::Options {
        atime: false,
        ..compare::Options::default()
    };
    compare::assert_same(&src, &restored(&out, &src), options);
}

/// With a cold cache, snapshot manifests and index files are downloaded
/// several at a time (each is a round trip: a repository of many hosts has
/// hundreds): four requests of each are held by the proxy at once, and
/// what comes back is the same as with the cache, in order.
#[test]
fn a_cold_cache_downloads_manifests_and_index_files_side_by_side() {
    use crate::common::proxy::Fault;
    let (t, proxy) = s3_repo("side-by-side");
    let src = t.join("src");
    for i in 0..6u64 {
        tree::file(&src.join(format!("f{i}")), &tree::noise(30_000, i));
        backup_json(&t, &[], &[src.as_os_str()]);
    }
    let warm = json(&t.ok(["snapshots", "--json"]));
    assert_eq!(warm.as_array().unwrap().len(), 6, "{warm}");
    for (what, path, args) in [
        ("manifests", "/snapshots/", vec!["snapshots", "--json"]),
        ("index files", "/index/", vec!["check"]),
    ] {
        fs::remove_dir_all(t.join("cache")).unwrap();
        proxy.inject("GET", path, Fault::Hold, 4);
        let child = t.spawn(&args);
        // Sequential downloads would hold one at a time, and this fails
        // after 60 s.
        proxy.wait_held(4);
        proxy.release();
        let out = child.wait_with_output().unwrap();
        expect_code(&out, 0, what);
        if what == "manifests" {
            assert_eq!(json(&crate::common::stdout(&out)), warm, "{what}");
        }
    }
    let target = t.join("out");
    fs::remove_dir_all(t.join("cache")).unwrap();
    t.restore("latest", &target);
    compare::assert_same(&src, &restored(&target, &src), compare::Options::default());
}

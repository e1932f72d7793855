//! Restore from a bucket: files are planned as they are queued, their
//! windows downloaded ahead on several connections; every file comes back
//! exactly, and a file whose data cannot be downloaded is named and
//! removed while the rest is restored.

use super::{expect_code, s3_repo};
use crate::common::proxy::{Fault, Proxy};
use crate::common::servers;
use crate::common::{compare, restored, stderr, tree, TempRepo};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

/// Many small files in several directories (a hard link among them), big
/// files of several planned windows and more, sparse files with holes, and
/// every other kind of entry.
fn mixed_tree(t: &TempRepo) -> PathBuf {
    let src = t.join("src");
    for i in 0..600u64 {
        let size = (i * 7919 % 40_000) as usize;
        let p = src.join(format!("small/d{}/f{i}", i % 12));
        tree::file(&p, &tree::noise(size, 10_000 + i));
    }
    fs::hard_link(src.join("small/d3/f3"), src.join("small/d4/linked")).unwrap();
    tree::file(&src.join("big/a"), &tree::noise(21 << 20, 1));
    tree::file(&src.join("big/b"), &tree::noise(9 << 20 | 12345, 2));
    fs::create_dir_all(src.join("holes")).unwrap();
    let island = tree::noise(300_000, 3);
    tree::sparse(
        &src.join("holes/s"),
        64 << 20,
        &[
            (0, &island[..1000]),
            (5 << 20, &island),
            (63 << 20, &island),
        ],
    );
    tree::sparse(&src.join("holes/empty"), 8 << 20, &[]);
    tree::full(&src.join("kinds"));
    src
}

/// The pack names in the repository's bucket.
fn packs(t: &TempRepo) -> BTreeSet<String> {
    let location = &t.remote.as_ref().unwrap().location;
    let bucket = location.rsplit('/').next().unwrap();
    let data = servers::shared_s3().bucket_dir(bucket).join("data");
    crate::common::fault::files_below(&data)
        .into_iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// `restore latest --target OUT` with a cold cache and extra environment.
fn restore(t: &TempRepo, out: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let _ = fs::remove_dir_all(t.join("cache"));
    let mut c = t.cmd([
        OsStr::new("restore"),
        OsStr::new("latest"),
        OsStr::new("--target"),
        out.as_os_str(),
    ]);
    c.envs(env.iter().copied());
    c.output().unwrap()
}

/// GET requests of packs the proxy saw, and the bytes they brought.
fn pack_gets(proxy: &Proxy) -> (usize, usize) {
    let seen = proxy.seen();
    let gets = seen
        .iter()
        .filter(|s| s.method == "GET" && s.path.contains("/data/"));
    gets.fold((0, 0), |(n, b), s| (n + 1, b + s.bytes))
}

/// Small files, big files, holes and every kind of entry come back entry by
/// entry as they were, from a cold cache, with each byte of the packs
/// downloaded about once.
#[test]
fn a_restore_from_a_bucket_is_exact() {
    let (t, proxy) = s3_repo("restore-mixed");
    let src = mixed_tree(&t);
    t.backup(&src);
    proxy.forget();
    let out = t.join("out");
    let o = restore(&t, &out, &[]);
    expect_code(&o, 0, "restore from the bucket");
    compare::assert_same(&src, &restored(&out, &src), compare::Options::default());
    let (gets, bytes) = pack_gets(&proxy);
    let stored: u64 = packs(&t)
        .iter()
        .map(|p| {
            let dir = servers::shared_s3().bucket_dir(
                t.remote
                    .as_ref()
                    .unwrap()
                    .location
                    .rsplit('/')
                    .next()
                    .unwrap(),
            );
            fs::metadata(dir.join("data").join(&p[..2]).join(p))
                .unwrap()
                .len()
        })
        .sum();
    assert!(gets > 0);
    assert!(
        (bytes as u64) < stored + (stored >> 3),
        "{bytes} bytes downloaded in {gets} GETs for {stored} bytes of packs"
    );
}

/// Data that cannot be downloaded: the files it belongs to are named with
/// the reason and removed, everything else is restored exactly (exit 3).
#[test]
fn a_failed_download_names_the_file_and_restores_the_rest() {
    let (t, proxy) = s3_repo("restore-fail");
    let src = t.join("src");
    tree::file(&src.join("lost"), &tree::noise(3 << 20, 7));
    t.backup(&src);
    let lost_packs = packs(&t);
    for i in 0..200u64 {
        let p = src.join(format!("kept/d{}/f{i}", i % 5));
        tree::file(&p, &tree::noise((i * 4099 % 30_000) as usize, 500 + i));
    }
    tree::file(&src.join("kept/big"), &tree::noise(11 << 20, 8));
    t.backup(&src);
    for p in &lost_packs {
        proxy.inject("GET", p, Fault::Reset, usize::MAX);
    }
    let out = t.join("out");
    let o = restore(&t, &out, &[("REWIND_RETRIES", "1")]);
    proxy.clear();
    expect_code(&o, 3, "restore with a pack that cannot be downloaded");
    let err = stderr(&o);
    let lost = restored(&out, &src).join("lost");
    assert!(err.contains(&lost.display().to_string()), "{err}");
    assert!(err.contains("gave up after 2 tries"), "says why: {err}");
    assert_eq!(err.matches("warning:").count(), 1, "one file failed: {err}");
    assert!(!lost.exists(), "the failed file is removed");
    let diffs = compare::differences(&src, &restored(&out, &src), compare::Options::default());
    assert!(
        diffs.len() == 1 && diffs[0].contains("lost"),
        "only the failed file differs: {diffs:#?}"
    );
}

/// A file stays private (no group or other bits, the restorer's owner) until
/// its content and metadata are in place, though the directory it is in
/// already has its own, open mode: here every data download is held while
/// the walk has made the files and left their directories, and a hard link
/// shows one of them at the top of the target too.
#[test]
fn files_are_private_until_restored() {
    use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
    let (t, proxy) = s3_repo("private");
    let src = t.join("src");
    let secret = src.join("open/secret");
    tree::file(&secret, &tree::noise(200_000, 7));
    chown(&secret, Some(1234), Some(5678)).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o664)).unwrap();
    fs::hard_link(&secret, src.join("zlink")).unwrap();
    fs::set_permissions(src.join("open"), fs::Permissions::from_mode(0o755)).unwrap();
    tree::file(&src.join("zz/after"), b"a directory after it");
    t.backup(&src);
    // Trees into the cache first, so that only data is read below.
    t.ok(["ls", "latest"]);
    proxy.inject("GET", "/data/", Fault::Hold, 1000);
    let target = t.join("out");
    let child = t
        .cmd([
            OsStr::new("restore"),
            OsStr::new("latest"),
            OsStr::new("--target"),
            target.as_os_str(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    proxy.wait_held(1);
    let dir = restored(&target, &src);
    for p in [dir.join("open/secret"), dir.join("zlink")] {
        let m = fs::symlink_metadata(&p).unwrap();
        assert_eq!(
            m.mode() & 0o077,
            0,
            "{} while its data is held",
            p.display()
        );
        assert_eq!((m.uid(), m.gid()), (0, 0), "{}", p.display());
    }
    proxy.release();
    let out = child.wait_with_output().unwrap();
    expect_code(&out, 0, "restore");
    compare::assert_same(&src, &dir, compare::Options::default());
    let m = fs::symlink_metadata(dir.join("zlink")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o664, 1234, 5678));
}

/// Requests in flight to a bucket: up to 16 at once without
/// `--connections`, up to N with `--connections N`. Every data download is
/// held by the proxy: a restore of files in many windows has its planned
/// windows' fetchers (all but two of the requests) waiting there, and its
/// writers may add theirs, never past the limit.
#[test]
fn requests_in_flight_are_16_by_default_and_as_many_as_connections_say() {
    let (t, proxy) = s3_repo("in-flight");
    let src = t.join("src");
    for i in 0..40u64 {
        tree::file(
            &src.join(format!("f{i:02}")),
            &tree::noise(3 << 19, 900 + i),
        );
    }
    t.backup(&src);
    // Trees into the cache first, so that only data is read below.
    t.ok(["ls", "latest"]);
    for (connections, limit) in [(None, 16), (Some("3"), 3)] {
        proxy.inject("GET", "/data/", Fault::Hold, usize::MAX);
        let target = t.join(format!("out-{limit}"));
        let mut args = vec![
            OsStr::new("restore"),
            OsStr::new("latest"),
            OsStr::new("--target"),
            target.as_os_str(),
        ];
        if let Some(n) = connections {
            args.extend([OsStr::new("--connections"), OsStr::new(n)]);
        }
        let child = t.spawn(args);
        proxy.wait_held(limit - 2);
        std::thread::sleep(std::time::Duration::from_millis(500));
        let held = proxy.held();
        proxy.release();
        let out = child.wait_with_output().unwrap();
        assert!(
            (limit - 2..=limit).contains(&held),
            "{held} requests in flight with --connections {connections:?}"
        );
        expect_code(&out, 0, "restore");
        // The first comparison reads the source, and so moves its atimes.
        let opts = compare::Options {
            atime: false,
            ..Default::default()
        };
        compare::assert_same(&src, &restored(&target, &src), opts);
    }
}

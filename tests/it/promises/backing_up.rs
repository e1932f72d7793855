//! Backing up, as the README's "Repositories" and "Backing up" sections
//! state it: where the repository is found, `--parent`, `--compression`,
//! `--threads`, `**` in excludes, `CACHEDIR.TAG`'s signature, and the inode
//! in the unchanged-file test.

use crate::common::{bin, json, stderr, test_env, tree, TempRepo};
use rewind::format::id::TreeId;
use rewind::format::tree::Tree;
use rewind::repo::writer::RepoWriter;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

/// `backup --json ARGS…`, its report.
fn backup(t: &TempRepo, args: &[&OsStr]) -> serde_json::Value {
    let mut all = vec![OsStr::new("backup"), OsStr::new("--json")];
    all.extend(args);
    json(&t.ok(all))
}

/// "rewind finds it from `--repo DIR`, else the `REWIND_REPO` environment
/// variable, else `$XDG_DATA_HOME/rewind`, else `~/.local/share/rewind`."
#[test]
fn the_repository_is_found_from_repo_then_rewind_repo_then_xdg_data_home() {
    let t = TempRepo::uninit();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("f"), b"x");
    let (home, xdg, env_repo, flag_repo) = (
        t.join("home"),
        t.join("xdg"),
        t.join("env-repo"),
        t.join("flag-repo"),
    );
    // Without --repo (TempRepo::cmd always gives one); the environment the
    // tests share, then this test's HOME, XDG_DATA_HOME and REWIND_REPO.
    let run = |args: &[&OsStr], rewind_repo: Option<&Path>, xdg_home: Option<&Path>| -> Output {
        let mut c = Command::new(bin());
        test_env(&mut c)
            .args(args)
            .env("HOME", &home)
            .env("REWIND_CACHE_DIR", t.join("cache"))
            .env_remove("XDG_DATA_HOME");
        if let Some(r) = rewind_repo {
            c.env("REWIND_REPO", r);
        }
        if let Some(x) = xdg_home {
            c.env("XDG_DATA_HOME", x);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    let b = [OsStr::new("backup"), src.as_os_str()];
    // A repository named by REWIND_REPO is made by `init` (only the default
    // one by a first backup).
    run(&[OsStr::new("init")], Some(&env_repo), Some(&xdg));
    run(&b, Some(&env_repo), Some(&xdg));
    assert!(env_repo.join("config").is_file(), "REWIND_REPO first");
    assert!(!xdg.exists() && !home.exists());
    run(&b, None, Some(&xdg));
    assert!(
        xdg.join("rewind/config").is_file(),
        "then $XDG_DATA_HOME/rewind"
    );
    assert!(!home.exists());
    // --repo wins over both.
    let with_flag = [
        OsStr::new("--repo"),
        flag_repo.as_os_str(),
        OsStr::new("init"),
    ];
    run(&with_flag, Some(&env_repo), Some(&xdg));
    assert!(flag_repo.join("config").is_file());
    // Each holds what went into it: one backup each, none in --repo's.
    let count = |r: Option<&Path>, x: Option<&Path>| {
        let out = run(&[OsStr::new("snapshots"), OsStr::new("--json")], r, x);
        json(&String::from_utf8_lossy(&out.stdout))
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count(Some(&env_repo), Some(&xdg)), 1);
    assert_eq!(count(None, Some(&xdg)), 1);
    let out = run(
        &[
            OsStr::new("--repo"),
            flag_repo.as_os_str(),
            OsStr::new("snapshots"),
            OsStr::new("--json"),
        ],
        Some(&env_repo),
        None,
    );
    assert_eq!(
        json(&String::from_utf8_lossy(&out.stdout)),
        serde_json::json!([])
    );
    assert!(!home.exists(), "nothing went to ~/.local/share");
}

/// "A backup compares each file with the latest snapshot of the same host
/// and paths (or `--parent SNAP`)."
#[test]
fn the_parent_is_the_latest_of_the_same_host_and_paths_or_parent() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("big"), &tree::noise(300_000, 1));
    tree::file(&src.join("small"), b"version 1\n");
    let s = src.as_os_str();
    let first = backup(&t, &[s]);
    tree::file(&src.join("small"), b"version 2\n");
    let second = backup(&t, &[s]);
    assert_eq!(second["parent"], first["id"]);
    assert_eq!(second["summary"]["bytes_read"], 10, "{second}");
    // Another host's backup of the same paths has no parent: all is read.
    let other_host = backup(&t, &[OsStr::new("--host"), OsStr::new("elsewhere"), s]);
    assert_eq!(
        other_host["parent"],
        serde_json::Value::Null,
        "{other_host}"
    );
    assert_eq!(other_host["summary"]["bytes_read"], 300_010);
    // Other paths: no parent either.
    let other = t.join("other");
    fs::create_dir_all(&other).unwrap();
    let other_paths = backup(&t, &[s, other.as_os_str()]);
    assert_eq!(
        other_paths["parent"],
        serde_json::Value::Null,
        "{other_paths}"
    );
    assert_eq!(other_paths["summary"]["bytes_read"], 300_010);
    // The latest of this host and paths is `second`, where nothing changed
    // since; against `first`, `small` changed.
    let latest = backup(&t, &[s]);
    assert_eq!(latest["parent"], second["id"]);
    assert_eq!(latest["summary"]["bytes_read"], 0);
    let pinned = backup(
        &t,
        &[
            OsStr::new("--parent"),
            OsStr::new(first["short_id"].as_str().unwrap()),
            s,
        ],
    );
    assert_eq!(pinned["parent"], first["id"], "{pinned}");
    assert_eq!(pinned["summary"]["bytes_read"], 10, "{pinned}");
    assert_eq!(pinned["summary"]["files_changed"], 1, "{pinned}");
    let out = t.rewind([
        OsStr::new("backup"),
        OsStr::new("--parent"),
        OsStr::new("deadbeef"),
        s,
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("deadbeef"), "{}", stderr(&out));
}

/// "`--compression LEVEL` (zstd 1-19, 0 = none)".
#[test]
fn compression_zero_stores_raw_and_a_level_compresses() {
    // Lines drawn at random from 97: compresses tenfold and more, yet no
    // stretch of it repeats (a periodic text would be cut into equal
    // chunks, which deduplicate).
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let text: Vec<u8> = (0..40_000u32)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("line {} of a very compressible log\n", x % 97).into_bytes()
        })
        .collect();
    let stored = |level: &str| {
        let t = TempRepo::new();
        let src = t.join("src");
        fs::create_dir_all(&src).unwrap();
        tree::file(&src.join("log"), &text);
        let v = backup(
            &t,
            &[
                OsStr::new("--compression"),
                OsStr::new(level),
                src.as_os_str(),
            ],
        );
        assert_eq!(
            t.ok([
                OsStr::new("cat"),
                OsStr::new("latest"),
                src.join("log").as_os_str()
            ])
            .into_bytes(),
            text
        );
        t.ok(["check", "--read-data"]);
        let raw = v["summary"]["bytes_added_raw"].as_u64().unwrap();
        let stored = v["summary"]["bytes_added_stored"].as_u64().unwrap();
        (raw, stored)
    };
    let (raw, none) = stored("0");
    assert!(raw >= text.len() as u64, "{raw}: part of it deduplicated");
    assert!(none >= text.len() as u64, "level 0 stored {none} of {raw}");
    let (_, fast) = stored("1");
    let (_, best) = stored("19");
    assert!(fast * 10 < none, "level 1: {fast} of {none}");
    assert!(best <= fast, "level 19 {best} > level 1 {fast}");
}

/// The most threads `pid` had while it ran.
fn peak_threads(mut child: std::process::Child) -> usize {
    let task = format!("/proc/{}/task", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(d) = fs::read_dir(&task) {
            peak = peak.max(d.count());
        }
    }
    assert!(child.wait().unwrap().success());
    peak
}

/// "Files are read in parallel (`--threads`, default 8)": the reader pool
/// has as many threads as asked for (seen in /proc while it runs).
#[test]
fn threads_sets_the_number_of_readers() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..40 {
        tree::file(&src.join(format!("f{i}")), &tree::noise(500_000, i));
    }
    let run = |threads: &str| {
        let child = t
            .cmd([
                OsStr::new("backup"),
                OsStr::new("--force"),
                OsStr::new("--threads"),
                OsStr::new(threads),
                src.as_os_str(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        peak_threads(child)
    };
    let one = run("1");
    let many = run("41");
    // Readers that finish early are not all seen by the polling: ask for a
    // clear difference, not all 40 (an ignored --threads gives none).
    assert!(
        many >= one + 10,
        "--threads 1: {one} threads, --threads 41: {many}"
    );
}

/// "`*` does not cross `/`, `**` does."
#[test]
fn double_star_crosses_directories_and_star_does_not() {
    let t = TempRepo::new();
    let src = t.join("src");
    for f in ["tmp/a", "x/tmp/b", "x/y/tmp/c", "x/y/keep"] {
        fs::create_dir_all(src.join(f).parent().unwrap()).unwrap();
        tree::file(&src.join(f), b"x");
    }
    let s = src.to_str().unwrap();
    let listed = |pattern: String| {
        t.ok(["backup", "--exclude", &pattern, s]);
        let ls = t.ok(["ls", "latest", s]);
        ls.lines()
            .filter_map(|l| l.strip_prefix(s))
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed(format!("{s}/**/tmp")),
        ["/x", "/x/y", "/x/y/keep"],
        "** crosses any number of directories, none too"
    );
    assert_eq!(
        listed(format!("{s}/*/tmp")),
        [
            "/tmp",
            "/tmp/a",
            "/x",
            "/x/y",
            "/x/y/keep",
            "/x/y/tmp",
            "/x/y/tmp/c"
        ],
        "* is one name"
    );
    assert_eq!(
        listed("x/**/c".into()),
        [
            "/tmp",
            "/tmp/a",
            "/x",
            "/x/tmp",
            "/x/tmp/b",
            "/x/y",
            "/x/y/keep",
            "/x/y/tmp"
        ]
    );
}

/// "`--exclude-caches`: skip the contents of directories with a valid
/// `CACHEDIR.TAG`": a tag without the signature leaves its directory in.
#[test]
fn cachedir_tag_counts_only_with_its_signature() {
    let t = TempRepo::new();
    let src = t.join("src");
    let tags: [(&str, &[u8]); 4] = [
        (
            "valid",
            b"Signature: 8a477f597d28d172789f06886806bc55\n# made by a cache\n",
        ),
        ("bare", b"Signature: 8a477f597d28d172789f06886806bc55"),
        ("wrong", b"Signature: 8a477f597d28d172789f06886806bc56\n"),
        ("empty", b""),
    ];
    for (dir, tag) in tags {
        fs::create_dir_all(src.join(dir)).unwrap();
        tree::file(&src.join(dir).join("CACHEDIR.TAG"), tag);
        tree::file(&src.join(dir).join("data"), b"data");
    }
    let s = src.to_str().unwrap();
    t.ok(["backup", "--exclude-caches", s]);
    let ls = t.ok(["ls", "latest", s]);
    let mut data: Vec<&str> = ls
        .lines()
        .filter_map(|l| l.strip_prefix(s)?.strip_suffix("/data"))
        .collect();
    data.sort();
    assert_eq!(data, ["/empty", "/wrong"], "{ls}");
    assert!(
        ls.contains("/valid/CACHEDIR.TAG"),
        "the tag itself is kept: {ls}"
    );
}

/// `tree` with the entry at `path` (names below it) changed by `f`, stored
/// through `w`; the new tree's id.
fn rewrite(
    repo: &rewind::repo::Repository,
    w: &RepoWriter,
    tree: &TreeId,
    path: &[&[u8]],
    f: &dyn Fn(&mut rewind::format::tree::Entry),
) -> TreeId {
    let mut t: Tree = repo.load_tree(tree).unwrap();
    let e = t.entries.iter_mut().find(|e| e.name == path[0]).unwrap();
    if path.len() == 1 {
        f(e);
    } else {
        let sub = e.subtree.unwrap();
        e.subtree = Some(rewrite(repo, w, &sub, &path[1..], f));
    }
    w.add_tree(&t.encode()).unwrap()
}

/// "a file whose size, mtime, ctime and inode are unchanged is not read
/// again": a parent whose entry names another inode (all else equal) makes
/// the file read again. (No file system lets a test change a file's inode
/// and keep its ctime, so the parent snapshot is the one changed.)
#[test]
fn another_inode_makes_a_file_read_again() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("same"), &tree::noise(2000, 5));
    tree::file(&src.join("moved"), &tree::noise(3000, 6));
    let first = backup(&t, &[src.as_os_str()]);
    let repo = Arc::new(crate::common::open_repo(&t.repo()));
    let (_, mut snap) = repo
        .find_snapshot(first["id"].as_str().unwrap(), &Default::default())
        .unwrap();
    let w = RepoWriter::new(repo.clone(), 3, false).unwrap();
    let mut path: Vec<&[u8]> = src
        .strip_prefix("/")
        .unwrap()
        .iter()
        .map(|c| c.as_encoded_bytes())
        .collect();
    path.push(b"moved");
    snap.tree = rewrite(&repo, &w, &snap.tree, &path, &|e| e.ino += 1);
    w.flush().unwrap();
    snap.time.sec += 1;
    let changed = repo.save_snapshot(&snap).unwrap().to_hex();
    drop((w, repo));
    let again = backup(&t, &[src.as_os_str()]);
    assert_eq!(again["parent"], changed.as_str(), "{again}");
    assert_eq!(again["summary"]["bytes_read"], 3000, "{again}");
    assert_eq!(again["summary"]["files_unchanged"], 1, "{again}");
}

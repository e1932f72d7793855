//! Backup options for cron: lists of paths, marker files, a size limit,
//! restic's exclude rules, tags, missing paths, the stdin file's directories.

use crate::common::{stderr, tree, TempRepo};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;

/// Every path in the latest snapshot, from `ls --json`.
fn listed(t: &TempRepo) -> BTreeSet<Vec<u8>> {
    let out = t.ok(["ls", "latest", "--json"]);
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            match v["path_hex"].as_str() {
                Some(hex) => (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect(),
                None => v["path"].as_str().unwrap().as_bytes().to_vec(),
            }
        })
        .collect()
}

fn has(set: &BTreeSet<Vec<u8>>, p: &Path) -> bool {
    set.contains(p.as_os_str().as_bytes())
}

#[test]
fn files_from_lists_and_nul_separated_lists() {
    let t = TempRepo::new();
    let src = t.join("src");
    let weird = src.join(OsStr::from_bytes(b"new\nline caf\xe9"));
    for p in ["a/1", "b/2", "c/3"] {
        tree::file(&src.join(p), p.as_bytes());
    }
    tree::file(&weird, b"w");
    let list = t.join("list");
    fs::write(
        &list,
        format!(
            "# web\n{}\n\n{}\r\n",
            src.join("a").display(),
            src.join("b").display()
        ),
    )
    .unwrap();
    t.ok([
        OsStr::new("backup"),
        OsStr::new("--files-from"),
        list.as_os_str(),
    ]);
    let got = listed(&t);
    assert!(has(&got, &src.join("a/1")) && has(&got, &src.join("b/2")));
    assert!(!has(&got, &src.join("c/3")));
    let raw = t.join("raw");
    let mut bytes = weird.as_os_str().as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(src.join("c").as_os_str().as_bytes());
    fs::write(&raw, bytes).unwrap();
    t.ok([
        OsStr::new("backup"),
        OsStr::new("--files-from-raw"),
        raw.as_os_str(),
    ]);
    let got = listed(&t);
    assert!(has(&got, &weird), "{got:?}");
    assert!(has(&got, &src.join("c/3")));
    assert!(!has(&got, &src.join("a/1")));
    // A list that cannot be read is an error naming it, and no snapshot.
    let out = t.rewind([
        OsStr::new("backup"),
        OsStr::new("--files-from"),
        t.join("nope").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

#[test]
fn marker_files_size_limits_and_restic_exclude_rules() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::file(&src.join("keep/small"), b"small");
    tree::file(&src.join("keep/big"), &vec![7u8; 3 << 20]);
    tree::file(&src.join("scratch/.nobackup"), b"");
    tree::file(&src.join("scratch/junk"), b"junk");
    tree::file(&src.join("scratch/sub/more"), b"more");
    tree::file(&src.join("deep/x/cache/a.tmp"), b"t");
    tree::file(&src.join("deep/x/cache/a.txt"), b"t");
    tree::file(&src.join("cache/b.tmp"), b"t");
    tree::file(&src.join("mycache/c.tmp"), b"t");
    t.ok([
        OsStr::new("backup"),
        src.as_os_str(),
        OsStr::new("--exclude-if-present"),
        OsStr::new(".nobackup"),
        OsStr::new("--exclude-larger-than"),
        OsStr::new("1M"),
        OsStr::new("--exclude"),
        OsStr::new("cache/*.tmp"),
    ]);
    let got = listed(&t);
    assert!(has(&got, &src.join("keep/small")));
    assert!(!has(&got, &src.join("keep/big")), "larger than 1M");
    // The marked directory and its marker are kept, nothing else in it.
    assert!(has(&got, &src.join("scratch")) && has(&got, &src.join("scratch/.nobackup")));
    assert!(!has(&got, &src.join("scratch/junk")) && !has(&got, &src.join("scratch/sub")));
    // A pattern with `/` that does not start with `/` matches at any depth.
    assert!(!has(&got, &src.join("deep/x/cache/a.tmp")));
    assert!(!has(&got, &src.join("cache/b.tmp")));
    assert!(has(&got, &src.join("deep/x/cache/a.txt")));
    assert!(has(&got, &src.join("mycache/c.tmp")));
    // Bad sizes are usage errors naming the option.
    for bad in ["1Q", "-1", "99999999999999999999", "20000P"] {
        let out = t.rewind([
            OsStr::new("backup"),
            src.as_os_str(),
            OsStr::new(&format!("--exclude-larger-than={bad}")),
        ]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&out).contains("--exclude-larger-than"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn tags_split_on_commas_and_an_empty_tag_is_refused() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::file(&src.join("f"), b"x");
    let out = t.ok([
        OsStr::new("backup"),
        src.as_os_str(),
        OsStr::new("--tag"),
        OsStr::new("nightly,web"),
        OsStr::new("--tag"),
        OsStr::new("extra"),
        OsStr::new("--json"),
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["nightly", "web", "extra"]));
    for bad in ["", "a,,b", ","] {
        let out = t.rewind([
            OsStr::new("backup"),
            src.as_os_str(),
            OsStr::new("--tag"),
            OsStr::new(bad),
        ]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("empty"), "{}", stderr(&out));
    }
}

/// As restic: a path that does not exist is named, the rest is backed up,
/// exit 3; when none exists, exit 1 and no snapshot.
#[test]
fn missing_paths_warn_and_the_rest_is_backed_up() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::file(&src.join("f"), b"x");
    let gone = t.join("gone");
    let out = t.rewind([OsStr::new("backup"), src.as_os_str(), gone.as_os_str()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&gone.display().to_string()),
        "{}",
        stderr(&out)
    );
    let got = listed(&t);
    assert!(has(&got, &src.join("f")));
    let v: serde_json::Value = serde_json::from_str(&t.ok(["snapshots", "--json"])).unwrap();
    assert_eq!(
        v[0]["paths"],
        serde_json::json!([src.display().to_string()])
    );
    assert_eq!(v[0]["summary"]["errors"], 1);
    let out = t.rewind([
        OsStr::new("backup"),
        gone.as_os_str(),
        t.join("gone2").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("none of the paths"),
        "{}",
        stderr(&out)
    );
    assert_eq!(v.as_array().unwrap().len(), 1);
    let again: serde_json::Value = serde_json::from_str(&t.ok(["snapshots", "--json"])).unwrap();
    assert_eq!(again.as_array().unwrap().len(), 1, "no snapshot written");
}

/// The directories made up to hold a stdin file belong to whoever ran the
/// backup, with their names, as the file does.
#[test]
fn the_stdin_files_directories_belong_to_the_invoking_user() {
    let t = TempRepo::new();
    let (uid, gid) = (65534u32, 65534u32); // nobody, who may write the repository
    for (p, dir) in walk(&t.repo()) {
        let mode = if dir { 0o777 } else { 0o666 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = t
        .cmd([
            "backup",
            "--stdin-name",
            "dumps/db/site.sql",
            "--stdin-from-command",
            "echo x",
        ])
        .env("XDG_CACHE_HOME", "/tmp")
        .env("HOME", "/tmp")
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let ls = t.ok(["ls", "latest", "--json"]);
    for line in ls.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            (v["uid"].as_u64(), v["gid"].as_u64()),
            (Some(uid as u64), Some(gid as u64)),
            "{v}"
        );
        assert_eq!(v["user"], "nobody", "{v}");
    }
    assert_eq!(ls.lines().count(), 3, "{ls}");
    let target = t.join("out");
    t.restore("latest", &target);
    assert_eq!(fs::metadata(target.join("dumps/db")).unwrap().uid(), uid);
}

/// `p` and everything below it, with whether each is a directory.
fn walk(p: &Path) -> Vec<(std::path::PathBuf, bool)> {
    let mut out = vec![(p.to_path_buf(), true)];
    for e in fs::read_dir(p).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push((e.path(), false));
        }
    }
    out
}

//! Which snapshot a command line names: `latest:PATH` is the newest snapshot
//! holding PATH (the README's recipe backs up files and the database dump as
//! two snapshots), `--host`, `--path` and `--tag` narrow `latest` on every
//! command, and an ambiguous prefix lists its candidates.

use crate::common::{restored, stderr, stdout, tree, TempRepo};
use std::fs;
use std::path::Path;

/// Files, then the dump (as the order), each its own snapshot.
fn files_then_dump(t: &TempRepo) -> (std::path::PathBuf, String) {
    let www = t.join("srv/www");
    tree::file(&www.join("index.php"), b"<?php echo 1;\n");
    tree::file(&www.join("img/logo.png"), &tree::noise(5000, 3));
    let files = t.backup(&www);
    t.ok([
        "backup",
        "--stdin-name",
        "db/site.sql",
        "--stdin-from-command",
        "echo 'CREATE TABLE t (x int);'",
        "--tag",
        "db",
    ]);
    (www, files)
}

#[test]
fn latest_path_is_the_newest_snapshot_holding_path() {
    let t = TempRepo::new();
    let (www, files) = files_then_dump(&t);
    let w = www.to_str().unwrap();
    let spec = format!("latest:{w}");
    // restore, ls, cat, diff, verify, stats and snapshots all find the files.
    let target = t.join("restored");
    t.restore(&spec, &target);
    assert_eq!(
        fs::read(target.join("index.php")).unwrap(),
        b"<?php echo 1;\n"
    );
    let ls = t.ok(["ls", &spec]);
    assert!(ls.contains("/img/logo.png"), "{ls}");
    let ls_two_args = t.ok(["ls", "latest", w]);
    assert_eq!(ls, ls_two_args);
    assert_eq!(
        t.ok(["cat", &format!("{spec}/index.php")]),
        "<?php echo 1;\n"
    );
    assert_eq!(t.ok(["diff", &spec, w]), "no differences\n");
    assert_eq!(t.ok(["diff", "latest", w]), "no differences\n");
    t.ok(["verify", &spec, target.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&t.ok(["snapshots", "--json", &spec])).unwrap();
    assert_eq!(v[0]["id"], files.as_str(), "{v}");
    assert_eq!(v.as_array().unwrap().len(), 1);
    // `latest` alone is still the newest: the dump.
    assert_eq!(
        t.ok(["cat", "latest:/db/site.sql"]),
        "CREATE TABLE t (x int);\n"
    );
    let out = t.rewind(["ls", "latest", w]);
    assert!(out.status.success());
    // A path no snapshot holds is an error naming it.
    let out = t.rewind([
        "restore",
        "latest:/nowhere",
        "--target",
        t.join("x").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no snapshot holds /nowhere"),
        "{}",
        stderr(&out)
    );
    // The restore-test script of the README passes for the files.
    let out = crate::restore_script::restore_test(&t, &["--path", w, "-q"], &[]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
}

/// `--host`, `--path` and `--tag` narrow `latest` for every command that
/// takes a snapshot; `--tag a,b` needs both.
#[test]
fn filters_narrow_latest_on_every_command() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::file(&src.join("f"), b"web1\n");
    let s = src.to_str().unwrap();
    t.ok(["backup", s, "--host", "web1", "--tag", "nightly,web"]);
    tree::file(&src.join("f"), b"web2\n");
    t.ok(["backup", s, "--host", "web2", "--tag", "nightly"]);
    let f = format!("{s}/f");
    for filter in [
        ["--host", "web1"],
        ["--tag", "web"],
        ["--tag", "nightly,web"],
    ] {
        let with = |args: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            v.extend(filter.iter().map(|a| a.to_string()));
            v
        };
        assert_eq!(t.ok(with(&["cat", "latest", &f])), "web1\n", "{filter:?}");
        assert!(
            t.ok(with(&["ls", "-l", "latest"])).contains(&f),
            "{filter:?}"
        );
        let target = t.join(format!("r-{}", filter[1].replace(',', "-")));
        t.ok(with(&[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
        ]));
        assert_eq!(
            fs::read(restored(&target, &src).join("f")).unwrap(),
            b"web1\n"
        );
        // The live tree holds web2's file: web1's snapshot differs.
        let out = t.rewind(with(&["diff", "latest", s]));
        assert_eq!(out.status.code(), Some(1), "{filter:?}: {}", stderr(&out));
        let out = t.rewind(with(&["verify", &format!("latest:{s}"), s]));
        assert_eq!(out.status.code(), Some(1), "{filter:?}: {}", stderr(&out));
        let stats: serde_json::Value =
            serde_json::from_str(&t.ok(with(&["stats", "latest", "--json"]))).unwrap();
        assert_eq!(stats["snapshots"], 1);
        let list: serde_json::Value =
            serde_json::from_str(&t.ok(with(&["snapshots", "--json"]))).unwrap();
        assert_eq!(list.as_array().unwrap().len(), 1, "{filter:?}");
        assert_eq!(list[0]["host"], "web1");
    }
    // Without a filter `latest` is web2's; a filter nothing matches says so.
    assert_eq!(t.ok(["cat", "latest", &f]), "web2\n");
    let out = t.rewind(["cat", "latest", &f, "--host", "web3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("host web3"), "{}", stderr(&out));
    // An empty tag is refused, as a usage error.
    let out = t.rewind(["snapshots", "--tag", ""]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn an_ambiguous_prefix_lists_the_candidates() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::file(&src.join("f"), b"x");
    let id = t.backup(&src);
    // Copies of the manifest at other times, until two ids share their
    // first four digits (a few hundred, at most: the birthday bound).
    let repo = crate::common::open_repo(&t.repo());
    let (_, mut snap) = repo.find_snapshot(&id, &Default::default()).unwrap();
    let mut seen = std::collections::HashMap::new();
    seen.insert(id[..4].to_string(), id.clone());
    let (first, second) = loop {
        snap.time.sec += 1;
        let new = repo.save_snapshot(&snap).unwrap().to_hex();
        if let Some(old) = seen.insert(new[..4].to_string(), new.clone()) {
            break (old, new);
        }
        assert!(seen.len() < 20_000, "no two ids share 4 digits");
    };
    drop(repo);
    let out = t.rewind(["ls", &first[..4]]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("ambiguous: 2 snapshots match"), "{err}");
    assert!(err.contains(&first), "{err}");
    assert!(err.contains(&second), "{err}");
    let (id, twin) = (first, second);
    t.ok(["ls", &twin]);
    // The full id is not ambiguous.
    t.ok(["ls", &id]);
}

#[test]
fn a_missing_repository_suggests_init() {
    let t = TempRepo::uninit();
    let out = t.rewind(["snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("rewind --repo"), "{err}");
    assert!(err.contains("init"), "{err}");
    assert!(!Path::new(&t.repo()).exists());
}

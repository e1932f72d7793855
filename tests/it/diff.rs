//! `rewind diff`: two snapshots, and a snapshot against the live tree. Each
//! kind of change is found alone; unchanged trees have none; identical
//! subtrees are skipped; the output format and the argument rule.

use crate::common::{stderr, stdout, tree, TempRepo};
use crate::one_change::{self, CASES};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// `diff ARGS --json`: exit code and the whole JSON.
fn diff_json(t: &TempRepo, args: &[&OsStr]) -> (i32, serde_json::Value) {
    let out = t
        .cmd([os("diff"), os("--json")])
        .args(args)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("diff {args:?}: {e}\n{}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(v["identical"], out.status.success(), "{v}");
    (out.status.code().unwrap(), v)
}

/// Each change as (status, path, categories joined by `,`).
fn changes(v: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let cats: Vec<&str> = c["categories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            (
                c["status"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
                cats.join(","),
            )
        })
        .collect()
}

fn expected(src: &Path, case: &one_change::Case) -> BTreeSet<(String, String, String)> {
    case.paths
        .iter()
        .map(|p| {
            (
                case.status.to_string(),
                src.join(p).display().to_string(),
                case.category.to_string(),
            )
        })
        .collect()
}

#[test]
fn each_category_is_found_alone_live_and_between_snapshots() {
    let t = TempRepo::new();
    for case in CASES {
        let src = t.join(format!("src-{}", case.name));
        one_change::small(&src);
        let before = t.backup(&src);
        let (code, v) = diff_json(&t, &[os(&before), src.as_os_str()]);
        assert_eq!(
            (code, changes(&v)),
            (0, BTreeSet::new()),
            "case {} unchanged",
            case.name
        );
        assert_eq!(
            v["stats"]["files_hashed"], 0,
            "an unchanged tree is not read"
        );
        (case.mutate)(&src);
        let mut want = expected(&src, case);
        if case.category == "atime" {
            // Reading changes atimes on live systems: diff leaves them out unless asked.
            let (code, v) = diff_json(&t, &[os(&before), src.as_os_str()]);
            assert_eq!((code, changes(&v)), (0, BTreeSet::new()), "atime left out");
            // The backup read the symlinks, which set their atimes (no O_NOATIME for readlink).
            for l in ["link", "dangling"] {
                want.insert((
                    "m".into(),
                    src.join(l).display().to_string(),
                    "atime".into(),
                ));
            }
            let (code, v) = diff_json(&t, &[os(&before), src.as_os_str(), os("--atime")]);
            assert_eq!((code, changes(&v)), (1, want), "--atime");
            continue;
        }
        let (code, v) = diff_json(&t, &[os(&before), src.as_os_str()]);
        assert_eq!(
            (code, changes(&v)),
            (1, want.clone()),
            "case {} live",
            case.name
        );
        let after = t.backup(&src);
        // (Restricted to src: /tmp above it changes as other tests run. Links
        // between snapshots are link counts: both members went from 2 to 1.)
        let (code, v) = diff_json(&t, &[os(&before), os(&after), src.as_os_str()]);
        assert_eq!(
            (code, changes(&v)),
            (1, want),
            "case {} snapshots",
            case.name
        );
    }
}

#[test]
fn an_unchanged_full_tree_has_no_changes_and_content_reads_every_file() {
    let t = TempRepo::new();
    let src = t.full_src();
    let a = t.backup(&src);
    assert_eq!(
        t.ok([os("diff"), os(&a), src.as_os_str()]),
        "no differences\n"
    );
    let (code, v) = diff_json(&t, &[os(&a), src.as_os_str(), os("--content")]);
    assert_eq!((code, changes(&v)), (0, BTreeSet::new()));
    assert!(v["stats"]["files_hashed"].as_u64().unwrap() >= 20, "{v}");
    let b = t.backup(&src);
    let (code, v) = diff_json(&t, &[os(&a), os(&b), src.as_os_str()]);
    assert_eq!(
        (code, changes(&v)),
        (0, BTreeSet::new()),
        "symlink atimes differ, and are left out"
    );
    // A touched file (same bytes, new mtime) is read and found unchanged in content.
    let hello = src.join("hello.txt");
    tree::set_times(&hello, (1_600_000_000, 123_456_789), (1_700_000_000, 0));
    let (_, v) = diff_json(&t, &[os(&b), src.as_os_str()]);
    let want = BTreeSet::from([(
        "m".to_string(),
        hello.display().to_string(),
        "mtime".to_string(),
    )]);
    assert_eq!(changes(&v), want);
    assert_eq!(v["stats"]["files_hashed"], 1, "{v}");
}

#[test]
fn identical_subtrees_are_skipped_by_tree_id() {
    let t = TempRepo::new();
    let src = t.join("src");
    for d in 0..40 {
        tree::wide(&src.join(format!("d{d:02}")), 25);
    }
    let a = t.backup(&src);
    let f = src.join("d17/f000003");
    fs::write(&f, b"changed").unwrap();
    let b = t.backup(&src);
    let (code, v) = diff_json(&t, &[os(&a), os(&b)]);
    assert_eq!(code, 1);
    let got = changes(&v);
    assert!(
        got.contains(&("M".into(), f.display().to_string(), "mtime,content".into())),
        "{got:?}"
    );
    // The changed file's directories only (/ down to src/d17), each side.
    let depth = f.parent().unwrap().ancestors().count() as u64;
    let trees = v["stats"]["trees_read"].as_u64().unwrap();
    assert!(
        trees <= 2 * depth,
        "read {trees} trees of {}: {v}",
        2 * (depth + 39)
    );
    assert!(v["stats"]["entries"].as_u64().unwrap() < 100, "{v}");
    // Restricted to a path, and to a path that did not change.
    let (code, v) = diff_json(&t, &[os(&a), os(&b), src.join("d17").as_os_str()]);
    assert_eq!((code, changes(&v).len()), (1, 1), "{v}");
    assert_eq!(
        diff_json(&t, &[os(&a), os(&b), src.join("d03").as_os_str()]).0,
        0
    );
}

#[test]
fn name_status_lines_and_summary() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    tree::file(&src.join("gone"), b"x");
    tree::file(&src.join("edit"), b"one");
    tree::file(&src.join("perm"), b"p");
    tree::file(&src.join("kind"), b"k");
    let a = t.backup(&src);
    fs::remove_file(src.join("gone")).unwrap();
    tree::file(&src.join("new\nline"), b"n");
    tree::file(&src.join("edit"), b"two!");
    tree::chmod(&src.join("perm"), 0o600);
    fs::remove_file(src.join("kind")).unwrap();
    fs::create_dir(src.join("kind")).unwrap();
    tree::file(&src.join("kind/inside"), b"i");
    let s = src.display();
    let want = format!(
        "m\t{s}\tmtime\nM\t{s}/edit\tmtime,content\nD\t{s}/gone\nT\t{s}/kind\tfile->dir\nA\t{s}/kind/inside\n\
         A\t\"{s}/new\\nline\"\nm\t{s}/perm\tmode\n7 changes: 2 added, 1 removed, 1 modified, 1 type changed, 2 metadata only\n"
    );
    let live = [os(&a), src.as_os_str()];
    let b = t.backup(&src);
    let snapshots = [os(&a), os(&b), src.as_os_str()];
    for args in [&live[..], &snapshots[..]] {
        let out = t.cmd([os("diff")]).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert_eq!(stdout(&out), want, "{args:?}");
    }
    // --long shows old and new values under each entry.
    let long = t.rewind([
        os("diff"),
        os(&a),
        os("latest"),
        src.as_os_str(),
        os("--long"),
        os("--ignore"),
        os("mtime"),
    ]);
    let long = stdout(&long);
    assert!(
        long.contains(&format!("m\t{s}/perm\tmode\n\tmode: 0644 -> 0600\n")),
        "{long}"
    );
    assert!(!long.contains("mtime"), "{long}");
}

#[test]
fn the_second_argument_is_a_path_when_it_looks_like_one() {
    let t = TempRepo::new();
    let src = t.join("src");
    one_change::small(&src);
    let id = t.backup(&src);
    // Relative, no `/`: it exists and is no snapshot, so it is the live tree.
    let out = t
        .cmd([os("diff"), os("latest"), os("src")])
        .current_dir(t.path())
        .output()
        .unwrap();
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (Some(0), "no differences\n".into()),
        "{}",
        stderr(&out)
    );
    // A directory named like a snapshot prefix is the snapshot; `./` makes it the path.
    let prefix = &id[..8];
    fs::create_dir(t.join(prefix)).unwrap();
    let out = t
        .cmd([os("diff"), os("latest"), os(prefix)])
        .current_dir(t.path())
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        "no differences\n",
        "snapshot against itself: {}",
        stderr(&out)
    );
    let dot = format!("./{prefix}");
    let out = t
        .cmd([os("diff"), os("latest"), os(&dot)])
        .current_dir(t.path())
        .output()
        .unwrap();
    // `latest` is the newest snapshot holding the compared path: none here.
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no snapshot holds"),
        "{}",
        stderr(&out)
    );
    // SNAP:PATH compares the live tree with another path of the snapshot.
    let copy = t.join("copy");
    t.restore(&format!("latest:{}", src.display()), &copy);
    let spec = format!("latest:{}", src.display());
    let (_, v) = diff_json(
        &t,
        &[os(&spec), copy.as_os_str(), os("--ignore"), os("mtime")],
    );
    assert!(changes(&v).is_empty(), "{v}");
    // Neither a path nor a snapshot; PATH with a live tree.
    let out = t.rewind([os("diff"), os("latest"), os("nosuchthing")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("finding snapshot nosuchthing"),
        "{}",
        stderr(&out)
    );
    let out = t.rewind([os("diff"), os("latest"), src.as_os_str(), os("/x")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("only goes with two snapshots"),
        "{}",
        stderr(&out)
    );
}

/// A directory that became a file and a file that became a directory:
/// the change of type, then everything below the old directory as missing
/// and below the new one as extra; the same between snapshots and live.
#[test]
fn a_type_change_reports_what_was_below_each_side() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(src.join("was-dir/sub")).unwrap();
    fs::write(src.join("was-dir/x"), b"x").unwrap();
    fs::write(src.join("was-dir/sub/y"), b"y").unwrap();
    fs::write(src.join("was-file"), b"f").unwrap();
    fs::write(src.join("same"), b"s").unwrap();
    let before = t.backup(&src);
    fs::remove_dir_all(src.join("was-dir")).unwrap();
    fs::write(src.join("was-dir"), b"now a file").unwrap();
    fs::remove_file(src.join("was-file")).unwrap();
    fs::create_dir_all(src.join("was-file/new")).unwrap();
    fs::write(src.join("was-file/new/z"), b"z").unwrap();
    let p = |s: &str| src.join(s).display().to_string();
    let got = |v: &serde_json::Value| -> BTreeSet<(String, String)> {
        changes(v)
            .into_iter()
            .filter(|(_, path, _)| path != &src.display().to_string())
            .map(|(status, path, _)| (status, path))
            .collect()
    };
    let want: BTreeSet<(String, String)> = [
        ("T", "was-dir"),
        ("D", "was-dir/x"),
        ("D", "was-dir/sub"),
        ("D", "was-dir/sub/y"),
        ("T", "was-file"),
        ("A", "was-file/new"),
        ("A", "was-file/new/z"),
    ]
    .iter()
    .map(|(s, x)| (s.to_string(), p(x)))
    .collect();
    let (code, v) = diff_json(&t, &[os(&before), src.as_os_str()]);
    assert_eq!((code, got(&v)), (1, want.clone()), "live: {v}");
    let after = t.backup(&src);
    let (code, v) = diff_json(&t, &[os(&before), os(&after), src.as_os_str()]);
    assert_eq!((code, got(&v)), (1, want), "snapshots: {v}");
}

/// Two snapshots of a file of one size whose holes moved: the bytes are
/// read from the repository and compared. Zeros written where a hole was
/// are a change of holes only; other bytes there are a change of content.
#[test]
fn moved_holes_are_compared_by_their_bytes() {
    use std::os::unix::fs::FileExt;
    const MIB: u64 = 1 << 20;
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir(&src).unwrap();
    // [1 MiB of a][1 MiB hole][1 MiB of b]
    let sparse = |p: &Path| {
        let f = fs::File::create(p).unwrap();
        f.set_len(3 * MIB).unwrap();
        f.write_all_at(&vec![b'a'; MIB as usize], 0).unwrap();
        f.write_all_at(&vec![b'b'; MIB as usize], 2 * MIB).unwrap();
    };
    let filled = |p: &Path, middle: u8| {
        let f = fs::File::create(p).unwrap();
        f.write_all_at(&vec![b'a'; MIB as usize], 0).unwrap();
        f.write_all_at(&vec![middle; MIB as usize], MIB).unwrap();
        f.write_all_at(&vec![b'b'; MIB as usize], 2 * MIB).unwrap();
    };
    sparse(&src.join("zeros"));
    sparse(&src.join("other"));
    let before = t.backup(&src);
    filled(&src.join("zeros"), 0);
    filled(&src.join("other"), b'x');
    let after = t.backup(&src);
    let (code, v) = diff_json(&t, &[os(&before), os(&after), src.as_os_str()]);
    assert_eq!(code, 1);
    let cats = |name: &str| -> Vec<String> {
        let path = src.join(name).display().to_string();
        let c = changes(&v).into_iter().find(|c| c.1 == path);
        let c = c.unwrap_or_else(|| panic!("{name} not reported: {v}"));
        c.2.split(',').map(str::to_string).collect()
    };
    let zeros = cats("zeros");
    assert!(zeros.contains(&"holes".to_string()), "{zeros:?}");
    assert!(!zeros.contains(&"content".to_string()), "{zeros:?}");
    let other = cats("other");
    assert!(other.contains(&"holes".to_string()), "{other:?}");
    assert!(other.contains(&"content".to_string()), "{other:?}");
    assert!(
        v["stats"]["bytes_hashed"].as_u64().unwrap() >= 3 * MIB,
        "bytes read and compared: {v}"
    );
}

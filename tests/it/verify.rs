//! `rewind verify`: a restore is proven exact; each kind of difference is
//! found alone, with its category and path; nothing is reported that is not
//! there.

use crate::common::{stderr, stdout, tree, TempRepo};
use crate::one_change::{self, CASES};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::Path;

/// `verify ARGS --json`: the exit code and the (category, path) of every difference.
pub fn verify(t: &TempRepo, args: &[&OsStr]) -> (i32, BTreeSet<(String, String)>) {
    let out = t
        .cmd([OsStr::new("verify"), OsStr::new("--json")])
        .args(args)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("verify {args:?}: {e}\n{}\n{}", stdout(&out), stderr(&out)));
    let diffs = v["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["category"].as_str().unwrap().to_string(),
                d["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(v["ok"], out.status.success(), "{v}");
    (out.status.code().unwrap(), diffs)
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn spec(src: &Path) -> String {
    format!("latest:{}", src.display())
}

#[test]
fn each_category_is_found_alone_and_a_clean_restore_has_none() {
    let t = TempRepo::new();
    let src = t.join("src");
    one_change::small(&src);
    t.backup(&src);
    let clean = t.join("clean");
    t.restore(&spec(&src), &clean);
    assert_eq!(
        verify(&t, &[os(&spec(&src)), clean.as_os_str()]),
        (0, BTreeSet::new())
    );
    for case in CASES {
        let out = t.join(format!("out-{}", case.name));
        t.restore(&spec(&src), &out);
        (case.mutate)(&out);
        let expected: BTreeSet<_> = case
            .paths
            .iter()
            .map(|p| (case.category.to_string(), src.join(p).display().to_string()))
            .collect();
        let s = spec(&src);
        let got = verify(&t, &[os(&s), out.as_os_str(), os("--atime")]);
        assert_eq!(got, (1, expected), "case {}", case.name);
        if case.category == "atime" {
            // Reading a tree changes atimes: without --atime they are left out.
            let got = verify(&t, &[os(&s), out.as_os_str()]);
            assert_eq!(got, (0, BTreeSet::new()), "atime without --atime");
        }
        // What a setup cannot keep can be left out. (The first verify read the
        // symlinks, which set their atimes: this second look ignores atime too.)
        if !matches!(
            case.category,
            "type" | "missing" | "extra" | "target" | "rdev"
        ) {
            let args = [os(&s), out.as_os_str(), os("--ignore"), os(case.category)];
            let ignored = verify(&t, &[&args[..], &[os("--ignore"), os("atime")]].concat());
            assert_eq!(ignored, (0, BTreeSet::new()), "case {} ignored", case.name);
        }
    }
}

#[test]
fn a_full_restore_is_exact_and_only_readlink_changes_it() {
    let t = TempRepo::new();
    let src = t.full_src();
    t.backup(&src);
    let out = t.join("out");
    t.restore("latest", &out);
    let text = t.ok([os("verify"), os("latest"), out.as_os_str()]);
    assert!(text.contains("OK: "), "{text}");
    assert!(text.contains("hashed"), "{text}");
    // verify read every symlink's target, which set its atime (Linux has no
    // O_NOATIME for readlink): a second look leaves atimes out, so a restore
    // test that reads its tree still passes; with --atime it sees that, and
    // only that.
    assert_eq!(
        verify(&t, &[os("latest"), out.as_os_str()]),
        (0, BTreeSet::new())
    );
    let (code, diffs) = verify(&t, &[os("latest"), out.as_os_str(), os("--atime")]);
    assert_eq!(code, 1);
    let links: BTreeSet<_> = ["link", "abslink", "dangling", "weirdlink"]
        .iter()
        .map(|l| {
            (
                "atime".to_string(),
                String::from_utf8_lossy(src.join(l).as_os_str().as_encoded_bytes()).into_owned(),
            )
        })
        .collect();
    assert_eq!(diffs, links);
    assert_eq!(
        verify(
            &t,
            &[os("latest"), out.as_os_str(), os("--ignore"), os("atime")]
        )
        .0,
        0
    );
    // The live source is the snapshot too, but for the atimes the backup's
    // readlink set.
    let (code, diffs) = verify(&t, &[os(&spec(&src)), src.as_os_str(), os("--atime")]);
    assert_eq!((code, diffs), (1, links));
    // The text output names the category and the path, and says why.
    let out2 = t.rewind([os("verify"), os("latest"), out.as_os_str(), os("--atime")]);
    let text = stdout(&out2);
    let line = text
        .lines()
        .find(|l| l.contains("/link\t"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("atime\t"), "{line}");
    assert!(line.contains("reading a symlink sets its atime"), "{line}");
    assert!(
        text.contains("DIFFERENT: 4 differences (atime 4)"),
        "{text}"
    );
}

#[test]
fn a_single_file_owners_by_name_and_an_empty_directory() {
    let t = TempRepo::new();
    let src = t.join("src");
    one_change::small(&src);
    t.backup(&src);
    // SNAP:FILE against DIR is DIR/<name>, as restore lays it out.
    let one = t.join("one");
    let file = format!("latest:{}", src.join("hello.txt").display());
    t.restore(&file, &one);
    assert_eq!(
        verify(&t, &[os(&file), one.as_os_str()]),
        (0, BTreeSet::new())
    );
    tree::chown(&one.join("hello.txt"), 4242, 4242);
    let owner = BTreeSet::from([(
        "owner".to_string(),
        src.join("hello.txt").display().to_string(),
    )]);
    assert_eq!(verify(&t, &[os(&file), one.as_os_str()]), (1, owner));
    assert_eq!(
        verify(
            &t,
            &[os(&file), one.as_os_str(), os("--ignore"), os("owner")]
        )
        .0,
        0
    );
    // (Owners matching by recorded name are unit-tested: one machine has one uid per name.)
    let two = t.join("two");
    t.restore(&spec(&src), &two);
    assert_eq!(
        verify(
            &t,
            &[os(&spec(&src)), two.as_os_str(), os("--numeric-owner")]
        )
        .0,
        0
    );
    // An empty directory lacks everything, each entry named once.
    let empty = t.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, diffs) = verify(&t, &[os(&spec(&src)), empty.as_os_str()]);
    assert_eq!(code, 1);
    // The directory itself differs in its times (a restore would have set
    // them); everything in it is missing.
    let root = src.display().to_string();
    assert!(
        diffs
            .iter()
            .all(|(c, p)| c == "missing" || (p == &root && (c == "mtime" || c == "atime"))),
        "{diffs:?}"
    );
    assert!(diffs.contains(&("mtime".into(), root.clone())), "{diffs:?}");
    assert!(diffs.contains(&(
        "missing".into(),
        src.join("dir/sub/deep").display().to_string()
    )));
    // (Its atime is left out without --atime.)
    assert_eq!(diffs.len(), 17 + 1, "{diffs:?}");
}

#[test]
fn a_missing_snapshot_or_directory_is_an_error_not_a_pass() {
    let t = TempRepo::new();
    let src = t.join("src");
    one_change::small(&src);
    t.backup(&src);
    // Trouble is 2, as in diff(1): 1 means "different".
    let out = t.rewind([os("verify"), os("latest"), t.join("nowhere").as_os_str()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = t.rewind([os("verify"), os("abcdef12"), src.as_os_str()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = t.rewind([
        os("verify"),
        os("latest"),
        src.as_os_str(),
        os("--ignore"),
        os("missing"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "not ignorable: {}",
        stderr(&out)
    );
}

//! `rewind find`: what it finds, how each snapshot's entry compares with the
//! one before, --newest, --host, JSON, long and non-UTF-8 paths, exit codes.

use crate::common::fault;
use crate::common::tree::{chmod, deep_chain, fd_path, file, set_times};
use crate::common::{stderr, stdout, TempRepo};
use serde_json::Value;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

/// `rewind find ARGS… --json`: the exit code and one object per path.
fn find_json(t: &TempRepo, args: &[&OsStr]) -> (i32, Vec<Value>) {
    let out = t.rewind(
        [OsStr::new("find"), OsStr::new("--json")]
            .iter()
            .chain(args),
    );
    let lines = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (out.status.code().unwrap(), lines)
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// (short id, status) of each snapshot listed for one path.
fn statuses(v: &Value) -> Vec<(String, String)> {
    v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["short_id"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `www/` with two PHP files and a lib/ directory.
fn site(src: &Path) {
    fs::create_dir_all(src.join("www/lib")).unwrap();
    file(&src.join("www/config.php"), b"$db = 'one';\n");
    chmod(&src.join("www/config.php"), 0o640);
    set_times(
        &src.join("www/config.php"),
        (1, 0),
        (1_500_000_000, 987_654_321),
    );
    file(&src.join("www/index.php"), b"index");
    file(&src.join("www/lib/util.php"), b"util");
    file(&src.join("www/notes.txt"), b"notes");
}

fn short(id: &str) -> String {
    id[..8].to_string()
}

#[test]
fn each_snapshot_holding_a_path_and_what_changed_since_the_one_before() {
    let t = TempRepo::new();
    let src = t.join("src");
    site(&src);
    let config = src.join("www/config.php");
    let mut ids = vec![t.backup(&src), t.backup(&src)];
    file(&config, b"$db = 'two';\n");
    ids.push(t.backup(&src));
    chmod(&config, 0o600);
    set_times(&config, (1, 0), (1_600_000_000, 5));
    ids.push(t.backup(&src));
    fs::remove_file(&config).unwrap();
    t.backup(&src);
    // Back as it was: the same as the last snapshot that held it.
    file(&config, b"$db = 'two';\n");
    chmod(&config, 0o600);
    set_times(&config, (1, 0), (1_600_000_000, 5));
    ids.push(t.backup(&src));

    let (code, found) = find_json(&t, &[os("config.php")]);
    assert_eq!(code, 0);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["path"], config.to_str().unwrap());
    assert!(
        found[0].get("path_hex").is_none(),
        "a UTF-8 path has no hex"
    );
    let want: Vec<(String, String)> = ids
        .iter()
        .zip(["new", "same", "changed", "metadata", "same"])
        .map(|(id, s)| (short(id), s.to_string()))
        .collect();
    assert_eq!(statuses(&found[0]), want);
    let hits = found[0]["snapshots"].as_array().unwrap();
    let changed: Vec<&Value> = hits.iter().map(|h| &h["content_changed"]).collect();
    assert_eq!(
        changed,
        [
            &Value::Null,
            &false.into(),
            &true.into(),
            &false.into(),
            &false.into()
        ]
    );
    assert_eq!(hits[0]["id"], ids[0].as_str());
    assert_eq!(
        (&hits[0]["mode"], &hits[0]["size"]),
        (&"0640".into(), &13.into())
    );
    assert_eq!(hits[3]["mode"], "0600");
    assert_eq!(hits[0]["type"], "file");
    // Times are RFC 3339 with the offset: `date` reads them back exactly.
    let epoch = |s: &Value| {
        let out = Command::new("date")
            .args(["+%s.%N", "-d", s.as_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{s}: {}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    let mtime = hits[0]["mtime"].as_str().unwrap();
    assert!(mtime.contains(".987654321"), "{mtime}");
    assert_eq!(epoch(&hits[0]["mtime"]), "1500000000.987654321");
    assert_eq!(epoch(&hits[3]["mtime"]), "1600000000.000000005");
    // West and east of UTC, and half an hour off: the same instant.
    for (tz, offset) in [("EST5", "-05:00"), ("IST-5:30", "+05:30")] {
        let out = t
            .cmd(["find", "--json", "config.php"])
            .env("TZ", tz)
            .output()
            .unwrap();
        let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        let there = &v["snapshots"][0]["mtime"];
        assert!(there.as_str().unwrap().ends_with(offset), "{tz}: {there}");
        assert_eq!(epoch(there), "1500000000.987654321", "{tz}");
    }
    let list = t.ok(["snapshots", "--json"]);
    let snaps: Value = serde_json::from_str(&list).unwrap();
    // `snapshots --json` writes the same RFC 3339 time (cli/json.rs).
    let first = &snaps.as_array().unwrap()[0]["time"];
    assert_eq!(epoch(&hits[0]["time"]), epoch(first));

    // The same, for people: the path, then a line per snapshot.
    let human = t.ok(["find", "config.php"]);
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(lines[0], config.to_str().unwrap());
    for (line, (id, status)) in lines[1..6].iter().zip(&want) {
        assert!(line.starts_with(&format!("  {id}  ")), "{line}");
        assert!(line.ends_with(&format!("  {status}")), "{line}");
    }
    assert!(lines[1].contains("-rw-r-----"), "{}", lines[1]);
    assert!(lines[1].contains(" 13  2017-07-1"), "{}", lines[1]);
    assert!(
        lines[6].starts_with("1 path (5 lines) in 6 snapshots;"),
        "{human}"
    );
}

#[test]
fn patterns_are_those_of_exclude_and_the_exit_code_says_whether_any_matched() {
    let t = TempRepo::new();
    let src = t.join("src");
    site(&src);
    t.backup(&src);
    let paths = |args: &[&str]| -> Vec<String> {
        let args: Vec<&OsStr> = args.iter().map(|a| os(a)).collect();
        let (code, found) = find_json(&t, &args);
        assert_eq!(code, if found.is_empty() { 1 } else { 0 }, "{args:?}");
        found
            .iter()
            .map(|f| {
                let p = f["path"].as_str().unwrap();
                p.strip_prefix(src.to_str().unwrap()).unwrap().to_string()
            })
            .collect()
    };
    assert_eq!(
        paths(&["*.php"]),
        ["/www/config.php", "/www/index.php", "/www/lib/util.php"]
    );
    let under = format!("{}/www/*.php", src.display());
    assert_eq!(paths(&[&under]), ["/www/config.php", "/www/index.php"]);
    let deep = format!("{}/**/util.php", src.display());
    assert_eq!(
        paths(&[&deep, "notes.txt"]),
        ["/www/lib/util.php", "/www/notes.txt"]
    );
    assert_eq!(paths(&["lib"]), ["/www/lib"]);
    assert!(paths(&["*.py"]).is_empty());
    let none = t.rewind(["find", "*.py"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(stdout(&none).starts_with("0 paths"), "{}", stdout(&none));
    let bad = t.rewind(["find", "["]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("\"[\""), "{}", stderr(&bad));
    assert_eq!(t.rewind(["find"]).status.code(), Some(2));
    assert_eq!(
        t.rewind(["find", "x", "--newest", "0"]).status.code(),
        Some(2)
    );
}

#[test]
fn newest_and_host_narrow_the_snapshots_and_changes_stay_per_host() {
    let t = TempRepo::new();
    let src = t.join("src");
    site(&src);
    let config = src.join("www/config.php");
    let backup = |host: &str| -> String {
        let out = t.ok(["backup", "--json", "--host", host, src.to_str().unwrap()]);
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        short(v["id"].as_str().unwrap())
    };
    let a = backup("web1");
    file(&config, b"$db = 'two';\n");
    let b = backup("web1");
    let c = backup("web2");
    let d = backup("web1");
    let (_, all) = find_json(&t, &[os("config.php")]);
    let s = |id: &String, st: &str| (id.clone(), st.to_string());
    assert_eq!(
        statuses(&all[0]),
        [s(&a, "new"), s(&b, "changed"), s(&c, "new"), s(&d, "same")]
    );
    let (_, newest) = find_json(&t, &[os("config.php"), os("--newest"), os("2")]);
    assert_eq!(statuses(&newest[0]), [s(&c, "new"), s(&d, "same")]);
    let (_, web2) = find_json(&t, &[os("config.php"), os("--host"), os("web2")]);
    assert_eq!(statuses(&web2[0]), [s(&c, "new")]);
    let (code, none) = find_json(&t, &[os("config.php"), os("--host"), os("nobody")]);
    assert_eq!((code, none.len()), (1, 0));
    // With several hosts, each line names its host.
    let human = t.ok(["find", "config.php"]);
    let line = human.lines().find(|l| l.contains(&c)).unwrap();
    assert!(line.contains("  web2  "), "{line}");
    let one = t.ok(["find", "config.php", "--host", "web1"]);
    assert!(!one.contains("web1"), "one host, no host column:\n{one}");
}

#[test]
fn non_utf8_names_and_paths_beyond_path_max_come_out_exact() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    let name = OsStr::from_bytes(b"caf\xe9 \n.php");
    file(&src.join(name), b"latin-1");
    let bottom = deep_chain(&src, 30, true);
    file(&fd_path(&bottom).join("deep.php"), b"deep");
    t.backup(&src);

    let (_, found) = find_json(&t, &[os("*.php")]);
    assert_eq!(found.len(), 2, "{found:?}");
    let exact = [src.as_os_str().as_bytes(), b"/caf\xe9 \n.php"].concat();
    let weird = found
        .iter()
        .find(|f| f.get("path_hex").is_some())
        .expect("path_hex for the non-UTF-8 path");
    let hex: String = exact.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(weird["path_hex"], hex.as_str());
    // As every command's JSON writes a name that is not UTF-8 (cli/json.rs).
    let escaped = [src.to_str().unwrap(), "/caf\\xe9 \n.php"].concat();
    assert_eq!(weird["path"], escaped.as_str());
    assert_eq!(weird["path_escaped"], true);
    let deep = found.iter().find(|f| f.get("path_hex").is_none()).unwrap();
    let deep = deep["path"].as_str().unwrap();
    assert!(deep.len() > libc::PATH_MAX as usize, "{}", deep.len());
    assert!(deep.ends_with("d/deep.php") && deep.starts_with(src.to_str().unwrap()));
    // People get the name quoted, as git and diff do.
    let human = t.ok(["find", "caf*"]);
    assert!(human.contains("/caf\\351 \\n.php\"\n"), "{human}");
}

#[test]
fn a_tree_that_cannot_be_read_is_named_and_the_rest_is_still_found() {
    let t = TempRepo::new();
    let src = t.join("src");
    site(&src);
    let first = short(&t.backup(&src));
    file(&src.join("www/lib/util.php"), b"util, changed");
    let second = short(&t.backup(&src));
    let repo = fault::open(&t);
    let lib = fault::entry(&repo, "latest", &src.join("www/lib"));
    let loc = fault::tree_location(&repo, &lib);
    fault::flip_byte(
        &fault::pack_file(&t, &loc),
        (loc.frame.offset + loc.frame.stored_len / 2) as u64,
    );
    let out = t.rewind(["find", "--json", "*.php"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("in snapshot {second}")) && err.contains("damaged"),
        "{err}"
    );
    let found: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let util = found
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("/www/lib/util.php"))
        .expect("util.php of the first snapshot");
    assert_eq!(statuses(util)[0], (first, "new".to_string()));
}

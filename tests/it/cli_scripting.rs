//! Scripting: JSON times and names, `tag`, `forget SNAP…`, dry runs beside
//! a mount, usage errors for bad numbers, `-q`, help, completion, man page.

use crate::common::{json, stderr, stdout, tree, TempRepo};
use crate::mount::guard::MountGuard;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// An RFC 3339 time with an offset: `2026-11-23T02:15:04[.nnnnnnnnn]+01:00`.
fn assert_rfc3339(v: &serde_json::Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    let b = s.as_bytes();
    let (date, rest) = s.split_at(10);
    assert!(
        date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
        "{s}"
    );
    assert!(
        rest.starts_with('T') && b[13] == b':' && b[16] == b':',
        "{s}"
    );
    let zone = &s[s.len() - 6..];
    assert!(
        matches!(&zone[..1], "+" | "-") && &zone[3..4] == ":",
        "no offset: {s}"
    );
    let frac = &s[19..s.len() - 6];
    assert!(
        frac.is_empty() || (frac.len() == 10 && frac.starts_with('.')),
        "{s}"
    );
}

#[test]
fn json_has_rfc3339_times_short_ids_and_lossless_names() {
    let t = TempRepo::new();
    let src = t.join("src");
    let weird = src.join(OsStr::from_bytes(b"caf\xe9\\x"));
    tree::file(&weird, b"w");
    let backup = json(&t.ok([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]));
    assert_rfc3339(&backup["time"]);
    let id = backup["id"].as_str().unwrap().to_string();
    assert_eq!(backup["short_id"], &id[..8]);
    let list = json(&t.ok(["snapshots", "--json"]));
    assert_rfc3339(&list[0]["time"]);
    assert_eq!(list[0]["short_id"], &id[..8]);
    let forget = json(&t.ok(["forget", "--keep-last", "1", "--dry-run", "--json"]));
    let kept = &forget["groups"][0]["keep"][0];
    assert_rfc3339(&kept["time"]);
    assert_eq!(kept["short_id"], &id[..8]);
    // The name that is not UTF-8: escaped, flagged, and exact in hex.
    let ls = t.ok(["ls", "latest", "--json"]);
    let entry = ls
        .lines()
        .map(json)
        .find(|v| v["path_escaped"] == true)
        .unwrap_or_else(|| panic!("{ls}"));
    let want = format!("{}/caf\\xe9\\\\x", src.display());
    assert_eq!(entry["path"], want.as_str());
    let hex: String = weird
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(entry["path_hex"], hex.as_str());
    for key in ["mtime", "atime", "ctime"] {
        assert_rfc3339(&entry[key]);
    }
    // A UTF-8 name is plain, with no flag.
    let plain = ls
        .lines()
        .map(json)
        .find(|v| v["path"] == src.display().to_string())
        .unwrap();
    assert!(plain.get("path_escaped").is_none(), "{plain}");
    // The offset is the local one: TZ decides it.
    let utc = t
        .cmd(["snapshots", "--json"])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let time = json(&stdout(&utc))[0]["time"].as_str().unwrap().to_string();
    assert!(time.ends_with("+00:00"), "{time}");
    let east = t
        .cmd(["snapshots", "--json"])
        .env("TZ", "XYZ-5:30")
        .output()
        .unwrap();
    let time = json(&stdout(&east))[0]["time"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(time.ends_with("+05:30"), "{time}");
}

/// On a terminal, `ls` never prints a raw control character; to a pipe it
/// gives the bytes.
#[test]
fn ls_quotes_control_characters_on_a_terminal() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::file(&src.join("evil\n\x1b[31mred"), b"x");
    t.backup(&src);
    let piped = t.rewind(["ls", "latest"]);
    assert!(
        piped.stdout.windows(4).any(|w| w == b"\n\x1b[3"),
        "raw to a pipe"
    );
    // A pseudo-terminal as stdout (script(1) from util-linux).
    let cmd = t.cmd(["ls", "latest"]);
    // The command's environment (the test password among it) goes on the
    // line: script(1) runs it through a shell of its own.
    let envs = cmd.get_envs().filter_map(|(k, v)| {
        v.map(|v| format!("'{}={}'", k.to_string_lossy(), v.to_string_lossy()))
    });
    let line = std::iter::once("env".to_string())
        .chain(envs)
        .chain(
            std::iter::once(cmd.get_program())
                .chain(cmd.get_args())
                .map(|a| format!("'{}'", a.to_string_lossy())),
        )
        .collect::<Vec<_>>()
        .join(" ");
    let out = crate::common::tool("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("REWIND_REPO")
        .output()
        .expect("script(1)");
    let text = stdout(&out);
    assert!(text.contains("\"/"), "quoted: {text:?}");
    assert!(text.contains("evil\\n\\033[31mred\""), "{text:?}");
    assert!(!text.contains('\x1b'), "{text:?}");
}

#[test]
fn tag_rewrites_snapshots_and_forget_takes_ids() {
    let t = TempRepo::new();
    let src = t.join("src");
    let mut ids = Vec::new();
    for i in 0..3 {
        tree::file(&src.join("f"), format!("{i}").as_bytes());
        ids.push(t.backup(&src));
    }
    // --add and --remove: a new id, the old manifest gone.
    let out = t.ok(["tag", &ids[0][..8], "--add", "release,keep"]);
    assert!(out.contains(&format!("{} -> ", &ids[0][..8])), "{out}");
    assert!(out.contains("1 snapshot changed"), "{out}");
    let tagged = json(&t.ok(["snapshots", "--tag", "release", "--json"]));
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    let new0 = tagged[0]["id"].as_str().unwrap().to_string();
    assert_ne!(new0, ids[0]);
    assert_eq!(tagged[0]["tags"], serde_json::json!(["release", "keep"]));
    assert!(!t.repo().join("snapshots").join(&ids[0]).exists());
    let v = json(&t.ok(["tag", &new0[..8], "--remove", "keep", "--json"]));
    assert_eq!(v[0]["old_id"], new0.as_str());
    assert_eq!(v[0]["tags"], serde_json::json!(["release"]));
    let new0 = v[0]["id"].as_str().unwrap().to_string();
    // --set on every snapshot a filter selects; nothing changes twice.
    let out = t.ok(["tag", "--tag", "release", "--set", "gold"]);
    assert!(out.contains("1 snapshot changed"), "{out}");
    let out = t.ok(["tag", "--tag", "gold", "--set", "gold"]);
    assert!(out.contains("0 snapshots changed"), "{out}");
    assert!(t.rewind(["tag", &ids[1][..8]]).status.code() == Some(2));
    assert!(t.rewind(["tag", &ids[1][..8], "--add", ""]).status.code() == Some(2));
    let _ = new0;
    // forget by id: exactly those go.
    let out = t.ok(["forget", &ids[1][..8], &ids[2]]);
    assert!(out.contains("2 snapshots removed"), "{out}");
    let left = json(&t.ok(["snapshots", "--json"]));
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["tags"], serde_json::json!(["gold"]));
    let out = t.rewind(["forget", "latest", "--keep-last", "1"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "ids and a policy: {}",
        stderr(&out)
    );
    let out = t.rewind(["forget", "abcd1234"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("abcd1234"), "{}", stderr(&out));
}

/// A mount holds a shared lock: dry runs of forget and prune take only a
/// shared one, so they work beside it; the real ones wait for it.
#[test]
fn dry_runs_work_while_a_snapshot_is_mounted() {
    let t = TempRepo::new();
    let src = t.join("src");
    for i in 0..2 {
        tree::file(&src.join("f"), format!("{i}").as_bytes());
        t.backup(&src);
    }
    let _m = MountGuard::start(&t, "mnt", &[]);
    let out = t.ok(["forget", "--keep-last", "1", "--dry-run"]);
    assert!(out.contains("1 snapshot would be removed"), "{out}");
    let out = t.ok(["prune", "--dry-run"]);
    assert!(out.contains("dry run"), "{out}");
    let out = t.rewind(["forget", "--keep-last", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("mount"), "{}", stderr(&out));
    assert_eq!(
        json(&t.ok(["snapshots", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// Every parsed number is checked: a huge or malformed value is a usage
/// error (exit 2) naming the option, never an abort or a wrap.
#[test]
fn bad_numbers_are_usage_errors_naming_the_option() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::file(&src.join("f"), b"x");
    t.backup(&src);
    let s = src.to_str().unwrap();
    let huge = "99999999999999999999999";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--lock-wait", huge, "snapshots"], "--lock-wait"),
        (
            vec!["--lock-wait", "99999999999d", "snapshots"],
            "--lock-wait",
        ),
        (vec!["--lock-wait", "2x", "snapshots"], "--lock-wait"),
        (vec!["backup", s, "--threads", huge], "--threads"),
        (vec!["backup", s, "--threads", "0"], "--threads"),
        (vec!["backup", s, "--compression", huge], "--compression"),
        (
            vec!["backup", s, "--exclude-larger-than", huge],
            "--exclude-larger-than",
        ),
        (
            vec![
                "restore",
                "latest",
                "--target",
                "/tmp/x",
                "--threads",
                "99999",
            ],
            "--threads",
        ),
        (vec!["verify", "latest", s, "--threads", huge], "--threads"),
        (vec!["diff", "latest", s, "--threads=-1"], "--threads"),
        (
            vec!["mount", "/tmp/x", "--cache-size", "99999999999T"],
            "--cache-size",
        ),
        (vec!["mount", "/tmp/x", "--threads", huge], "--threads"),
        (vec!["forget", "--keep-last", huge], "--keep-last"),
        (vec!["forget", "--keep-daily=-1"], "--keep-daily"),
        (
            vec!["forget", "--keep-within", "999999999999999999y"],
            "--keep-within",
        ),
        (vec!["forget", "--keep-within", "14"], "--keep-within"),
        (
            vec!["forget", "--keep-last", "1", "--max-unused", "nan"],
            "--max-unused",
        ),
        (vec!["prune", "--max-unused", "101%"], "--max-unused"),
        (vec!["prune", "--max-unused", "1e3"], "--max-unused"),
        (
            vec!["check", "--read-data-subset", "inf"],
            "--read-data-subset",
        ),
        (
            vec!["check", "--read-data-subset", "200%"],
            "--read-data-subset",
        ),
    ];
    for (args, option) in cases {
        let out = t.rewind(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(option), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // Large but meaningful values are taken.
    t.ok([
        "forget",
        "--keep-last",
        "4294967295",
        "--keep-within",
        "1000y",
        "--dry-run",
    ]);
    t.ok(["--lock-wait", "3650d", "snapshots"]);
}

#[test]
fn quiet_help_completion_and_man_page() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::file(&src.join("f"), b"x");
    // -q: a good backup prints nothing at all; check only its errors.
    let out = t.rewind(["-q".as_ref(), "backup".as_ref(), src.as_os_str()]);
    assert!(out.status.success());
    assert_eq!((stdout(&out), stderr(&out)), (String::new(), String::new()));
    assert_eq!(t.ok(["check", "-q"]), "");
    // -v names each file read, on stderr.
    tree::file(&src.join("g"), b"y");
    let out = t.rewind(["-v".as_ref(), "backup".as_ref(), src.as_os_str()]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("read {}", src.join("g").display())),
        "{err}"
    );
    assert!(
        !err.contains(&format!("read {}\n", src.join("f").display())),
        "unchanged: {err}"
    );
    assert_eq!(t.ok(["forget", "-q", "--keep-last", "1"]), "");
    // Singular and plural.
    assert!(t.ok(["snapshots"]).ends_with("\n1 snapshot\n"));
    // umount and completion have no repository options in their help.
    for cmd in ["umount", "completion", "man"] {
        let help = t.ok([cmd, "--help"]);
        assert!(!help.contains("--repo"), "{cmd}: {help}");
        assert!(!help.contains("--lock-wait"), "{cmd}: {help}");
    }
    assert!(t.ok(["backup", "--help"]).contains("--repo"));
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef rewind"),
        ("fish", "complete -c rewind"),
    ] {
        let script = t.ok(["completion", shell]);
        assert!(script.contains(marker), "{shell}");
        assert!(script.contains("exclude-larger-than"), "{shell}");
    }
    let man = t.ok(["man"]);
    assert!(man.contains(".TH rewind 1"), "{man}");
    let dir = t.join("man");
    t.ok([OsStr::new("man"), OsStr::new("--dir"), dir.as_os_str()]);
    assert!(dir.join("rewind-backup.1").is_file());
    assert_eq!(t.rewind(["completion", "tcsh"]).status.code(), Some(2));
}

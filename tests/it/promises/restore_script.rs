//! "Scripted restore tests", as the README and `restore-test.sh --help`
//! state them: `--host` and `--tag` narrow `latest`, the snapshot is pinned
//! to its id (a backup finishing meanwhile changes nothing, `--snapshot`
//! picks an older one), `--verify-ignore` passes categories through to
//! `rewind verify`, and `--no-verify` skips it.

use crate::common::{bin, stderr, stdout, tree, TempRepo};
use crate::restore_script::restore_test;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

fn verdict(out: &Output) -> String {
    stdout(out).lines().last().unwrap_or_default().to_string()
}

fn passes(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(out),
        stderr(out)
    );
    verdict(out)
}

/// A `REWIND_BIN` for the script: a bash wrapper around the real binary
/// that runs `before` ahead of and `after` behind the command `when`
/// (`$REAL` is the binary; the command's arguments are `$@`).
fn wrapper(t: &TempRepo, when: &str, before: &str, after: &str) -> PathBuf {
    let path = t.join(format!("rewind-{when}"));
    let real = bin();
    let script = format!(
        "#!/bin/bash\nREAL={real}\nif [ \"$1\" != {when} ]; then exec \"$REAL\" \"$@\"; fi\n\
         {before}\n\"$REAL\" \"$@\" || exit\n{after}\n",
        real = real.display()
    );
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Two hosts' backups of `src/f` ("web1", tagged nightly, then "web2"):
/// their ids.
fn two_hosts(t: &TempRepo) -> (PathBuf, String, String) {
    let src = t.join("src");
    tree::file(&src.join("f"), b"web1\n");
    let backup = |args: &[&str]| {
        let mut all = vec!["backup", "--json", src.to_str().unwrap()];
        all.extend(args);
        let v: serde_json::Value = serde_json::from_str(t.ok(all).trim()).unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let web1 = backup(&["--host", "web1", "--tag", "nightly"]);
    tree::file(&src.join("f"), b"web2\n");
    let web2 = backup(&["--host", "web2"]);
    (src, web1, web2)
}

/// A smoke command that holds the run to snapshot `id` holding `content`.
fn smoke(src: &Path, id: &str, content: &str) -> String {
    format!(
        "test \"$RESTORE_SNAPSHOT\" = {id} && test \"$(cat \"$RESTORE_DIR{}/f\")\" = {content}",
        src.display()
    )
}

/// `--host` and `--tag` narrow `latest` as rewind's do; `--snapshot` names
/// another; a filter nothing matches fails the run at its first step.
#[test]
fn host_and_tag_narrow_latest_and_snapshot_picks_one() {
    let t = TempRepo::new();
    let (src, web1, web2) = two_hosts(&t);
    for (args, id, content) in [
        (&["--host", "web1"][..], &web1, "web1"),
        (&["--tag", "nightly"], &web1, "web1"),
        (&["--snapshot", &web1[..6]], &web1, "web1"),
        (&[], &web2, "web2"),
        (&["--host", "web2"], &web2, "web2"),
    ] {
        let smoke = smoke(&src, id, content);
        let mut all = args.to_vec();
        all.extend(["--smoke", &smoke]);
        let v = passes(&restore_test(&t, &all, &[]));
        assert!(
            v.starts_with(&format!("restore-test: PASS snapshot {}:/ ", &id[..8])),
            "{args:?}: {v}"
        );
    }
    for args in [
        &["--host", "web3"][..],
        &["--tag", "nightly", "--host", "web2"],
    ] {
        let out = restore_test(&t, args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        assert!(
            verdict(&out).contains(": snapshot failed"),
            "{}",
            verdict(&out)
        );
    }
}

/// "The snapshot … is pinned to its id, so a backup that finishes meanwhile
/// changes nothing": a backup lands between resolving `latest` and the
/// restore, and every later step still tests the snapshot first found.
#[test]
fn a_backup_finishing_meanwhile_changes_nothing() {
    let t = TempRepo::new();
    let (src, _, _) = two_hosts(&t);
    for mode in ["restore", "mount"] {
        for (i, args) in [&[][..], &["--host", "web1"]].into_iter().enumerate() {
            // A backup (of web1, so the newest for both runs) of content of
            // its own lands as the script starts `rewind restore` or `mount`.
            let landed = format!("{mode}{i}");
            let backup = format!(
                "echo {landed} >{src}/f && \"$REAL\" backup -q --host web1 {src} || exit",
                src = src.display()
            );
            let bin = wrapper(&t, mode, &backup, "");
            // What `latest` is when the run starts, and what it holds.
            let mut list = vec!["snapshots", "--json", "latest"];
            list.extend(args);
            let v: serde_json::Value = serde_json::from_str(&t.ok(&list)).unwrap();
            let id = v[0]["id"].as_str().unwrap().to_string();
            let content = t.ok(["cat", &format!("{id}:{}/f", src.display())]);
            let smoke = smoke(&src, &id, content.trim_end());
            let mut all = vec!["--mode", mode, "--smoke", &smoke];
            all.extend(args);
            let v = passes(&restore_test(&t, &all, &[("REWIND_BIN", &bin)]));
            assert!(v.contains(&format!("PASS snapshot {}:/ ", &id[..8])), "{v}");
            assert!(v.contains("verify smoke"), "{v}");
            // The backup did land: `latest` is now another snapshot.
            let v: serde_json::Value = serde_json::from_str(&t.ok(&list)).unwrap();
            assert_ne!(v[0]["id"], id.as_str(), "no backup landed");
            assert_eq!(
                t.ok(["cat", &format!("latest:{}/f", src.display())]),
                format!("{landed}\n")
            );
        }
    }
    // A later run tests the newest snapshot: the last that landed.
    let smoke = format!("grep -qx mount1 \"$RESTORE_DIR{}/f\"", src.display());
    passes(&restore_test(
        &t,
        &["--host", "web1", "--smoke", &smoke],
        &[],
    ));
}

/// "`rewind verify` (extra `--verify-ignore CATEGORY`s pass through; a
/// restore as another user than root needs `--verify-ignore owner`)", and
/// `--no-verify` skips it: a restore whose owners came out otherwise (as
/// another user's would) fails verify, passes with `--verify-ignore owner`
/// (not with another category), and passes without verify.
#[test]
fn verify_ignore_passes_through_and_no_verify_skips_verify() {
    let t = TempRepo::new();
    let (_, web1, _) = two_hosts(&t);
    // restore SNAP --target DIR: the owners of DIR's tree change afterwards.
    let bin = wrapper(&t, "restore", "", "chown -hR 4321:4321 \"$4\" || exit");
    let env = [("REWIND_BIN", bin.as_path())];
    let run = |args: &[&str]| {
        let mut all = vec!["--host", "web1"];
        all.extend(args);
        restore_test(&t, &all, &env)
    };
    for args in [&[][..], &["--verify-ignore", "mtime"]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        let v = verdict(&out);
        assert!(
            v.contains(": verify failed (snapshot restore passed)"),
            "{args:?}: {v}"
        );
        assert!(stderr(&out).contains("owner"), "{}", stderr(&out));
    }
    for args in [
        &["--verify-ignore", "owner"][..],
        &["--verify-ignore", "mtime", "--verify-ignore", "owner"],
    ] {
        let v = passes(&run(args));
        assert!(
            v.contains(&format!(
                "PASS snapshot {}:/ (restore; snapshot restore verify)",
                &web1[..8]
            )),
            "{args:?}: {v}"
        );
    }
    let v = passes(&run(&["--no-verify"]));
    assert!(v.contains("(restore; snapshot restore)"), "{v}");
    // An unknown category is verify's usage error: the run fails.
    let out = run(&["--verify-ignore", "colour"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

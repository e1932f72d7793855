//! Backup options and the read-only commands around them.

use crate::common::{compare, json, restored, stderr, tree, TempRepo};
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

fn snapshot_count(t: &TempRepo) -> usize {
    json(&t.ok(["snapshots", "--json"]))
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn stdin_is_stored_at_the_given_path() {
    let t = TempRepo::new();
    let dump = tree::noise(3 << 20, 11);
    let mut child = t
        .cmd(["backup", "--stdin-name", "db/site.sql", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&dump).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let cat = t.cmd(["cat", "latest", "/db/site.sql"]).output().unwrap();
    assert!(cat.status.success());
    assert_eq!(cat.stdout, dump);
}

/// A name no file system takes could be stored but never restored or
/// copied out of the mount: it is refused, and nothing is written.
#[test]
fn a_stdin_name_longer_than_a_file_system_allows_is_refused() {
    let t = TempRepo::new();
    let long = format!("db/{}.sql", "a".repeat(252));
    let out = t.rewind([
        "backup",
        "--stdin-name",
        long.as_str(),
        "--stdin-from-command",
        "echo row",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("longer than the 255"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot_count(&t), 0);
    let fits = format!("db/{}.sql", "a".repeat(251));
    t.ok([
        "backup",
        "--stdin-name",
        fits.as_str(),
        "--stdin-from-command",
        "echo row",
    ]);
    assert_eq!(t.ok(["cat", "latest", fits.as_str()]), "row\n");
}

#[test]
fn failing_dump_command_writes_no_snapshot() {
    let t = TempRepo::new();
    let out = t.rewind([
        "backup",
        "--stdin-name",
        "db.sql",
        "--stdin-from-command",
        "echo partial; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no snapshot"), "{}", stderr(&out));
    assert_eq!(snapshot_count(&t), 0);
    t.ok([
        "backup",
        "--stdin-name",
        "db.sql",
        "--stdin-from-command",
        "printf 'row 1\\nrow 2\\n'",
    ]);
    assert_eq!(t.ok(["cat", "latest", "db.sql"]), "row 1\nrow 2\n");
    t.ok(["check", "--read-data"]);
}

#[test]
fn unchanged_files_are_not_read_again_and_changes_are_found() {
    let t = TempRepo::new();
    let src = t.full_src();
    let first = json(&t.ok([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]));
    assert!(first["summary"]["bytes_read"].as_u64().unwrap() > 5 << 20);
    let second = json(&t.ok([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]));
    assert_eq!(second["summary"]["bytes_read"], 0, "{second}");
    assert_eq!(second["summary"]["files_new"], 0);
    assert_eq!(second["parent"], first["id"]);
    // Change one file: only it is read, and the snapshot holds the new bytes.
    fs::write(src.join("hello.txt"), b"changed\n").unwrap();
    let third = json(&t.ok([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]));
    assert_eq!(third["summary"]["files_changed"], 1, "{third}");
    assert_eq!(third["summary"]["bytes_read"], 8);
    let cat = t.ok([
        OsStr::new("cat"),
        OsStr::new("latest"),
        src.join("hello.txt").as_os_str(),
    ]);
    assert_eq!(cat, "changed\n");
    // --force reads everything again, and adds nothing new.
    let forced = json(&t.ok([
        OsStr::new("backup"),
        OsStr::new("--json"),
        OsStr::new("--force"),
        src.as_os_str(),
    ]));
    assert!(forced["summary"]["bytes_read"].as_u64().unwrap() > 5 << 20);
    assert_eq!(forced["summary"]["data_blobs_added"], 0);
    let out = t.join("out");
    t.restore("latest", &out);
    compare::assert_same(&src, &restored(&out, &src), compare::Options::default());
}

#[test]
fn excludes_and_cache_dirs_are_skipped() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(src.join("logs")).unwrap();
    fs::create_dir_all(src.join("cache/sub")).unwrap();
    fs::create_dir_all(src.join("keep")).unwrap();
    tree::file(&src.join("logs/app.log"), b"log");
    tree::file(&src.join("keep/app.log"), b"log");
    tree::file(&src.join("keep/data"), b"data");
    tree::file(
        &src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    );
    tree::file(&src.join("cache/sub/blob"), b"cached");
    let exclude_file = t.join("excludes");
    fs::write(
        &exclude_file,
        format!("# comment\n\n{}/logs\n", src.display()),
    )
    .unwrap();
    t.ok([
        OsStr::new("backup"),
        OsStr::new("--exclude"),
        OsStr::new("*.log"),
        OsStr::new("--exclude-file"),
        exclude_file.as_os_str(),
        OsStr::new("--exclude-caches"),
        src.as_os_str(),
    ]);
    let ls = t.ok([OsStr::new("ls"), OsStr::new("latest"), src.as_os_str()]);
    let names: Vec<&str> = ls
        .lines()
        .map(|l| l.strip_prefix(src.to_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        names,
        ["/cache", "/cache/CACHEDIR.TAG", "/keep", "/keep/data"],
        "{ls}"
    );
}

#[test]
fn dry_run_writes_nothing() {
    let t = TempRepo::new();
    let src = t.full_src();
    let before = dir_size(&t.repo());
    let out = json(&t.ok([
        OsStr::new("backup"),
        OsStr::new("--dry-run"),
        OsStr::new("--json"),
        src.as_os_str(),
    ]));
    assert_eq!(out["dry_run"], true);
    assert!(out["summary"]["bytes_added_raw"].as_u64().unwrap() > 5 << 20);
    assert_eq!(snapshot_count(&t), 0);
    assert_eq!(dir_size(&t.repo()), before);
}

fn dir_size(p: &std::path::Path) -> u64 {
    walk_files(p)
        .iter()
        .map(|f| f.metadata().unwrap().len())
        .sum()
}

fn walk_files(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn default_repository_is_created_by_the_first_backup() {
    let t = TempRepo::uninit();
    let src = t.join("src");
    tree::file(
        &{
            fs::create_dir_all(&src).unwrap();
            src.join("f")
        },
        b"x",
    );
    let home = t.join("home");
    let run = |args: &[&OsStr]| {
        crate::common::test_env(&mut std::process::Command::new(crate::common::bin()))
            .args(args)
            .env_remove("REWIND_REPO")
            .env_remove("XDG_DATA_HOME")
            .env("HOME", &home)
            .output()
            .unwrap()
    };
    let out = run(&[OsStr::new("backup"), src.as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(home.join(".local/share/rewind/config").is_file());
    let out = run(&[OsStr::new("snapshots")]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\n1 snapshot\n"));
}

#[test]
fn ls_long_and_json_and_stats() {
    let t = TempRepo::new();
    let src = t.full_src();
    let id = t.backup(&src);
    let long = t.ok([
        OsStr::new("ls"),
        OsStr::new(&id[..8]),
        src.as_os_str(),
        OsStr::new("-l"),
    ]);
    let setuid = long.lines().find(|l| l.ends_with("/setuid")).unwrap();
    assert!(setuid.starts_with("-rwsr-xr-x"), "{setuid}");
    let link = long.lines().find(|l| l.contains("/link ->")).unwrap();
    assert!(
        link.ends_with("-> hello.txt") && link.contains(&format!(" {} ", tree::unnamed_ids().0)),
        "{link}"
    );
    let sticky = long.lines().find(|l| l.ends_with("/dirs/sticky")).unwrap();
    assert!(sticky.starts_with("drwxrwxrwt"), "{sticky}");
    let j = t.ok([
        OsStr::new("ls"),
        OsStr::new("latest"),
        src.as_os_str(),
        OsStr::new("--json"),
    ]);
    let hello = json(j.lines().find(|l| l.contains("/hello.txt\"")).unwrap());
    assert_eq!(hello["mode"], "0664"); // its ACL's mask sets the group bits
                                       // RFC 3339 in local time with its offset; the nanoseconds kept.
    let mtime = hello["mtime"].as_str().unwrap();
    assert_eq!(mtime.len(), 35, "{mtime}");
    assert_eq!(&mtime[16..29], ":00.987654321", "{mtime}");
    assert!(matches!(&mtime[29..30], "+" | "-"), "{mtime}");
    let setuid = json(j.lines().find(|l| l.contains("/setuid\"")).unwrap());
    assert_eq!(setuid["mode"], "4755");
    let stats = json(&t.ok(["stats", "--json"]));
    assert_eq!(stats["snapshots"], 1);
    assert!(
        stats["compression_ratio"].as_f64().unwrap() > 1.5,
        "{stats}"
    );
    assert!(stats["logical_bytes"].as_u64().unwrap() > 100 << 20); // sparse files count whole
    let bad = t.rewind(["ls", "zz"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("zz"), "{}", stderr(&bad));
}

#[test]
fn huge_sparse_file_keeps_its_holes() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    let island = tree::noise(4096, 5);
    let size = 8u64 << 30;
    tree::sparse(
        &src.join("disk.img"),
        size,
        &[(0, &island), (3 << 30, &island), (size - 4096, &island)],
    );
    let out = json(&t.ok([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]));
    assert_eq!(out["summary"]["bytes_read"], 3 * 4096, "{out}");
    let target = t.join("out");
    t.restore("latest", &target);
    let r = restored(&target, &src).join("disk.img");
    let md = fs::metadata(&r).unwrap();
    assert_eq!(md.len(), size);
    assert!(
        md.blocks() * 512 <= 1 << 20,
        "restored file uses {} blocks",
        md.blocks()
    );
    compare::assert_same(&src, &restored(&target, &src), compare::Options::default());
}

#[test]
fn directory_with_100k_entries() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::wide(&src.join("wide"), 100_000);
    t.backup(&src);
    let target = t.join("out");
    t.restore("latest", &target);
    let n = fs::read_dir(restored(&target, &src).join("wide"))
        .unwrap()
        .count();
    assert_eq!(n, 100_000);
    assert_eq!(
        fs::read_to_string(restored(&target, &src).join("wide/f099999")).unwrap(),
        "99999"
    );
}

/// Unmounts a tmpfs on drop, also when the test fails.
struct TmpfsGuard(std::path::PathBuf);

impl Drop for TmpfsGuard {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn mount_tmpfs(dir: &std::path::Path) -> TmpfsGuard {
    fs::create_dir_all(dir).unwrap();
    let ok = crate::common::tool("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mounting a tmpfs needs root");
    TmpfsGuard(dir.to_path_buf())
}

#[test]
fn one_file_system_stops_at_mount_points() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::file(&src.join("here"), b"on the same fs");
    let mnt = src.join("mnt");
    let _guard = mount_tmpfs(&mnt);
    tree::file(&mnt.join("elsewhere"), b"on a tmpfs");
    let ls = |extra: &[&str]| {
        let mut args: Vec<&OsStr> = vec![OsStr::new("backup")];
        args.extend(extra.iter().map(OsStr::new));
        args.push(src.as_os_str());
        t.ok(&args);
        t.ok([OsStr::new("ls"), OsStr::new("latest"), src.as_os_str()])
    };
    let all = ls(&[]);
    assert!(all.contains("/mnt/elsewhere"), "{all}");
    let one = ls(&["--one-file-system"]);
    assert!(
        one.contains("/mnt\n") && !one.contains("/mnt/elsewhere"),
        "{one}"
    );
    assert!(one.contains("/here"), "{one}");
}

/// Listers open and list directories ahead of the walker: up to 16
/// subdirectories of each directory it is in, 256 in all. A directory of
/// 5,000 subdirectories, and a comb 40 levels deep with 20 subdirectories
/// on each (more waiting than the 256 at the bottom), come back whole, and
/// a second backup finds every file unchanged and stores the same root tree.
#[test]
fn wide_and_deep_trees_listed_ahead_are_stored_whole() {
    let t = TempRepo::new();
    let src = t.join("src");
    for i in 0..5000u32 {
        let d = src.join(format!("wide/d{i:04}"));
        tree::file(&d.join("f"), format!("file {i}\n").as_bytes());
        if i % 97 == 0 {
            tree::file(&d.join("sub/deeper/g"), format!("nested {i}\n").as_bytes());
        }
    }
    let mut files = 5000 + 5000usize.div_ceil(97);
    let mut level = src.join("comb");
    for depth in 0..40 {
        for j in 0..20 {
            tree::file(
                &level.join(format!("s{j:02}/f")),
                format!("{depth} {j}\n").as_bytes(),
            );
            files += 1;
        }
        level = level.join("s00");
    }
    let first = json(&t.ok([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]));
    assert_eq!(first["summary"]["files_new"], files, "{first}");
    let second = json(&t.ok([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()]));
    assert_eq!(second["summary"]["files_unchanged"], files, "{second}");
    assert_eq!(second["tree"], first["tree"], "the same tree, listed again");
    let out = t.join("out");
    t.restore("latest", &out);
    compare::assert_same(&src, &restored(&out, &src), compare::Options::default());
}

//! Tampering with an encrypted repository: one flipped bit in each kind of
//! object, an object swapped for another of its kind, a truncated object, a
//! key file from another repository. Each is an authentication error naming
//! the object; nothing wrong is ever restored or shown.

use crate::common::{restored, stderr, stdout, tree, TempRepo};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

/// A repository with two snapshots of different trees, and those trees.
struct Fixture {
    t: TempRepo,
    a: PathBuf,
    b: PathBuf,
}

fn fixture() -> Fixture {
    let t = TempRepo::new();
    let a = t.join("a");
    let b = t.join("b");
    for (dir, seed) in [(&a, 1u64), (&b, 2)] {
        fs::create_dir_all(dir.join("sub")).unwrap();
        tree::file(&dir.join("big.bin"), &tree::noise(600_000, seed));
        tree::file(
            &dir.join("sub/small.txt"),
            format!("small {seed}\n").as_bytes(),
        );
    }
    t.backup(&a);
    t.backup(&b);
    Fixture { t, a, b }
}

/// The objects of one kind (`data` lists packs below their subdirectories).
fn objects(t: &TempRepo, dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![t.repo().join(dir)];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_string()
}

/// Every file restored from `spec` either equals its source or is missing
/// and its path is named; returns how many were missing.
fn nothing_wrong_restored(f: &Fixture, spec: &str, src: &Path, label: &str) -> usize {
    let target = f.t.join(format!("out-{label}"));
    let out = f.t.rewind([
        OsStr::new("restore"),
        OsStr::new(spec),
        OsStr::new("--target"),
        target.as_os_str(),
        OsStr::new("--no-cache"),
    ]);
    let err = stderr(&out);
    let mut missing = 0;
    for rel in ["big.bin", "sub/small.txt"] {
        let got = restored(&target, src).join(rel);
        match fs::read(&got) {
            Ok(bytes) => assert_eq!(
                bytes,
                fs::read(src.join(rel)).unwrap(),
                "{label}: {rel} restored wrong"
            ),
            Err(_) => {
                missing += 1;
                assert!(
                    out.status.code() != Some(0),
                    "{label}: {rel} missing, exit 0: {err}"
                );
            }
        }
    }
    let _ = fs::remove_dir_all(&target);
    missing
}

fn check_names(f: &Fixture, object: &str, label: &str) {
    let out = f.t.rewind(["check", "--read-data", "--no-cache"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{label}: check passed:\n{all}");
    assert!(
        all.contains(object),
        "{label}: check does not name {object}:\n{all}"
    );
    // A cut object is found before any decryption when its trailer goes.
    assert!(
        [
            "authentication failed",
            "does not match its name",
            "truncated"
        ]
        .iter()
        .any(|w| all.contains(w)),
        "{label}: not an authentication error:\n{all}"
    );
}

/// The three ways to break an object: a flipped bit, a cut, a swap.
fn damage(path: &Path, other: &Path, how: &str) {
    let mut bytes = fs::read(path).unwrap();
    match how {
        "flip" => {
            let at = bytes.len() / 2;
            bytes[at] ^= 0x10;
        }
        "cut" => bytes.truncate(bytes.len() - 20),
        "swap" => bytes = fs::read(other).unwrap(),
        _ => unreachable!(),
    }
    fs::write(path, bytes).unwrap();
}

#[test]
fn every_damaged_pack_index_and_snapshot_is_named_and_nothing_wrong_is_restored() {
    for how in ["flip", "cut", "swap"] {
        // Packs: a data pack of the first snapshot.
        let f = fixture();
        let packs = objects(&f.t, "data");
        assert!(packs.len() >= 2, "{packs:?}");
        let big = packs
            .iter()
            .max_by_key(|p| fs::metadata(p).unwrap().len())
            .unwrap();
        let other = packs.iter().find(|p| *p != big).unwrap();
        damage(big, other, how);
        check_names(&f, &name(big)[..8], &format!("pack {how}"));
        let lost = nothing_wrong_restored(&f, "latest", &f.b, &format!("pack-{how}-b"))
            + nothing_wrong_restored(&f, &first_snapshot(&f), &f.a, &format!("pack-{how}-a"));
        // A cut takes the header, not the frames the index finds.
        assert_eq!(lost > 0, how != "cut", "pack {how}: {lost} files lost");

        // Index files.
        let f = fixture();
        let index = objects(&f.t, "index");
        assert_eq!(index.len(), 2);
        damage(&index[0], &index[1], how);
        check_names(&f, &name(&index[0]), &format!("index {how}"));
        nothing_wrong_restored(&f, "latest", &f.b, &format!("index-{how}-b"));
        nothing_wrong_restored(&f, &first_snapshot_any(&f), &f.a, &format!("index-{how}-a"));

        // Snapshots: the manifest is refused, never read as another one.
        let f = fixture();
        let snaps = objects(&f.t, "snapshots");
        assert_eq!(snaps.len(), 2);
        damage(&snaps[0], &snaps[1], how);
        check_names(&f, &name(&snaps[0])[..8], &format!("snapshot {how}"));
        let out = f.t.rewind(["snapshots", "--json"]);
        let listed = stdout(&out);
        assert!(
            !listed.contains(&name(&snaps[0])),
            "snapshot {how}: a damaged manifest is listed: {listed}"
        );
        assert!(
            listed.contains(&name(&snaps[1])),
            "snapshot {how}: {listed}"
        );
    }
}

/// The older of the two snapshots (by id prefix, from the listing).
fn first_snapshot(f: &Fixture) -> String {
    let out = f.t.ok(["snapshots", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v.as_array().unwrap()[0]["id"].as_str().unwrap().to_string()
}

/// The first backup's snapshot, found by its path even when its index is
/// damaged (listing snapshots reads no index).
fn first_snapshot_any(f: &Fixture) -> String {
    let out = f.t.ok([
        OsStr::new("snapshots"),
        OsStr::new("--json"),
        OsStr::new("--path"),
        f.a.as_os_str(),
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v.as_array().unwrap()[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn a_damaged_config_or_key_opens_nothing_and_says_which() {
    for how in ["flip", "cut"] {
        let f = fixture();
        let config = f.t.repo().join("config");
        damage(&config, &config, how);
        let out = f.t.rewind(["snapshots"]);
        assert_eq!(out.status.code(), Some(1), "config {how}");
        let err = stderr(&out);
        assert!(err.contains("config"), "config {how}: {err}");
        assert!(
            stdout(&out).is_empty(),
            "config {how}: showed {}",
            stdout(&out)
        );

        let f = fixture();
        let key = objects(&f.t, "keys").remove(0);
        damage(&key, &key, how);
        let out = f.t.rewind(["snapshots"]);
        assert_eq!(out.status.code(), Some(1), "key {how}");
        let err = stderr(&out);
        assert!(err.contains("wrong password or no key"), "key {how}: {err}");
        assert!(
            stdout(&out).is_empty(),
            "key {how}: showed {}",
            stdout(&out)
        );
    }
}

/// A key file of another repository with the same password opens nothing:
/// its wrap is bound to its repository's id, and the config to this one's.
#[test]
fn a_key_file_from_another_repository_opens_nothing() {
    let f = fixture();
    let other = TempRepo::new();
    for k in objects(&f.t, "keys") {
        fs::remove_file(k).unwrap();
    }
    let stranger = objects(&other, "keys").remove(0);
    fs::copy(&stranger, f.t.repo().join("keys").join(name(&stranger))).unwrap();
    let out = f.t.rewind(["snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("another repository") && err.contains("config"),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

/// A wrong password: exit 1, the one message, nothing from the repository.
#[test]
fn a_wrong_password_shows_nothing() {
    let f = fixture();
    let out =
        f.t.cmd(["snapshots"])
            .env("REWIND_PASSWORD", "not it")
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("wrong password or no key"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
    // Nothing readable in the repository either: no file name, no content,
    // no backed-up path. Needles of 7 bytes or more: a shorter one turns up
    // in a megabyte of ciphertext by chance ("sub" did, once in ~30 runs).
    let path = f.a.to_string_lossy().into_owned();
    for p in objects(&f.t, "") {
        let bytes = fs::read(&p).unwrap();
        for needle in [&b"big.bin"[..], b"small 1", b"small.txt", path.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds {:?} in plaintext",
                p.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

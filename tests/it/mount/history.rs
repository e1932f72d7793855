//! `history/` through a real mount: a site backed up night after night with
//! changes of every kind, each path's versions listed, read, stat'ed and
//! compared with the snapshot that stored them, and `diff -u` between two.

use super::guard::MountGuard;
use super::{data_bytes, seeks};
use crate::common::tree::{
    self, acl_bytes, chmod, chown, fd_path, file, mknod, set_times, set_xattr,
};
use crate::common::{restored, stderr, TempRepo};
use std::ffi::OsStr;
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const DEEP: usize = 30;

fn deep_dir(top: &Path, make: bool) -> OwnedFd {
    tree::deep_chain(top, DEEP, make)
}

/// The site on the first night: a file of every kind, every metadata.
fn first_night(src: &Path) {
    let www = src.join("www");
    fs::create_dir_all(&www).unwrap();
    let p = |s: &str| www.join(s);
    file(&p("config.php"), b"<?php\n$db = 'old';\n$user = 'site';\n");
    chmod(&p("config.php"), 0o640);
    chown(&p("config.php"), 33, 33);
    set_xattr(&p("config.php"), "user.note", b"deployed");
    set_xattr(&p("config.php"), "trusted.secret", &[0, 1, 255]);
    file(&p("index.php"), b"<?php echo 'hello';\n");
    chmod(&p("index.php"), 0o4755);
    set_times(
        &p("index.php"),
        (1_600_000_000, 123_456_789),
        (1_500_000_000, 987_654_321),
    );
    file(&p("cache"), b"a file, for now");
    file(&p("robots.txt"), b"User-agent: *\n");
    file(&p("again.txt"), b"back as it was");
    set_times(&p("again.txt"), (1_000, 1), (2_000, 2));
    file(
        &www.join(OsStr::from_bytes(b"caf\xe9.txt")),
        b"latin-1 name",
    );
    let island = tree::noise(4096, 3);
    tree::sparse(&p("sparse"), 4 << 20, &[(0, &island), (2 << 20, &island)]);
    symlink(OsStr::from_bytes(b"caf\xe9\xff"), p("link")).unwrap();
    mknod(&p("null"), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    mknod(&p("fifo"), libc::S_IFIFO | 0o640, 0);
    file(&p("pair1"), b"two links");
    fs::hard_link(p("pair1"), p("pair2")).unwrap();
    file(&p("acl.txt"), b"acl");
    let acl = acl_bytes(&[
        (1, 6, u32::MAX),
        (2, 4, 1234),
        (4, 4, u32::MAX),
        (16, 6, u32::MAX),
        (32, 4, u32::MAX),
    ]);
    set_xattr(&p("acl.txt"), "system.posix_acl_access", &acl);
    let leaf = deep_dir(src, true);
    write_leaf(&leaf, b"deep, first");
}

fn write_leaf(dir: &OwnedFd, content: &[u8]) {
    fs::write(fd_path(dir).join("leaf"), content).unwrap();
}

/// Backed up four nights: content, mode, type, deletion and re-creation
/// change between them, and the last night nothing does. Returns the source
/// and the short ids, oldest first.
fn four_nights(t: &TempRepo) -> (PathBuf, Vec<String>) {
    let src = t.join("src");
    first_night(&src);
    let www = src.join("www");
    let p = |s: &str| www.join(s);
    let mut ids = vec![t.backup(&src)];
    // Night 2: new content, a deleted file, a deep change.
    file(&p("config.php"), b"<?php\n$db = 'new';\n$user = 'site';\n");
    fs::remove_file(p("robots.txt")).unwrap();
    fs::remove_file(p("again.txt")).unwrap();
    write_leaf(&deep_dir(&src, false), b"deep, second");
    ids.push(t.backup(&src));
    // Night 3: only the mode; a file becomes a directory; one file comes
    // back changed, the other as it was.
    chmod(&p("config.php"), 0o600);
    fs::remove_file(p("cache")).unwrap();
    fs::create_dir(p("cache")).unwrap();
    file(&p("cache/inner"), b"inside");
    file(&p("robots.txt"), b"User-agent: bots\n");
    file(&p("again.txt"), b"back as it was");
    set_times(&p("again.txt"), (1_000, 1), (2_000, 2));
    ids.push(t.backup(&src));
    // Night 4: nothing changed.
    ids.push(t.backup(&src));
    let short = ids.iter().map(|id| id[..8].to_string()).collect();
    (src, short)
}

/// The names in `dir`, sorted, as bytes.
fn listing(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    v.sort();
    v
}

/// The short ids of the snapshots that first held each version in `dir`,
/// sorted (backups in one second list in id order, not time order).
fn version_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = listing(dir)
        .iter()
        .filter(|n| n.first().is_some_and(u8::is_ascii_digit))
        .map(|n| {
            let n = String::from_utf8(n.clone()).unwrap();
            assert_eq!(n.len(), "2026-12-01T02:15:01-ab12cd34".len(), "{n}");
            n[20..].to_string()
        })
        .collect();
    ids.sort();
    ids
}

/// `ids`, sorted, to compare with [`version_ids`].
fn sorted(ids: &[String]) -> Vec<String> {
    let mut v = ids.to_vec();
    v.sort();
    v
}

/// The one version in `dir` first held by snapshot `id`.
fn version(dir: &Path, id: &str) -> PathBuf {
    let names = listing(dir);
    let n = names
        .iter()
        .find(|n| n.ends_with(id.as_bytes()))
        .unwrap_or_else(|| panic!("no version of {id} in {}", dir.display()));
    dir.join(OsStr::from_bytes(n))
}

/// `getfattr` of `p`: every xattr by name and value (trusted.* too, as root).
fn xattrs(p: &Path) -> String {
    let out = Command::new("getfattr")
        .args(["-h", "-d", "-m", "-", "-e", "hex"])
        .arg(p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().skip(1).collect::<Vec<_>>().join("\n")
}

fn getfacl(p: &Path) -> String {
    let out = Command::new("getfacl")
        .args(["-n", "--omit-header"])
        .arg(p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "getfacl {}: {}",
        p.display(),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A version is its snapshot's entry: every category `stat`, `getfattr`,
/// `getfacl`, `readlink`, `read` and `lseek` can see, nlink aside (1).
fn same_entry(version: &Path, stored: &Path) {
    let (a, b) = (
        fs::symlink_metadata(version).unwrap(),
        fs::symlink_metadata(stored).unwrap(),
    );
    let what = version.display();
    assert_eq!(a.mode(), b.mode(), "mode of {what}");
    assert_eq!((a.uid(), a.gid()), (b.uid(), b.gid()), "owner of {what}");
    assert_eq!(a.size(), b.size(), "size of {what}");
    assert_eq!(
        (a.mtime(), a.mtime_nsec()),
        (b.mtime(), b.mtime_nsec()),
        "mtime of {what}"
    );
    assert_eq!(
        (a.atime(), a.atime_nsec()),
        (b.atime(), b.atime_nsec()),
        "atime of {what}"
    );
    assert_eq!(
        (a.ctime(), a.ctime_nsec()),
        (b.ctime(), b.ctime_nsec()),
        "ctime of {what}"
    );
    assert_eq!(a.rdev(), b.rdev(), "rdev of {what}");
    assert_eq!(a.blocks(), b.blocks(), "blocks of {what}");
    assert_eq!(a.nlink(), 1, "nlink of {what}");
    assert!(b.nlink() >= 1);
    assert_eq!(xattrs(version), xattrs(stored), "xattrs of {what}");
    let ft = a.file_type();
    if ft.is_symlink() {
        assert_eq!(
            fs::read_link(version).unwrap(),
            fs::read_link(stored).unwrap()
        );
    } else if ft.is_file() {
        assert_eq!(
            fs::read(version).unwrap(),
            fs::read(stored).unwrap(),
            "{what}"
        );
        let (fa, fb) = (
            fs::File::open(version).unwrap(),
            fs::File::open(stored).unwrap(),
        );
        let size = a.size();
        let probes: Vec<u64> = [0, 1, 4096, size / 2, size.saturating_sub(1), size]
            .into_iter()
            .filter(|&p| p <= size)
            .collect();
        assert_eq!(seeks(&fa, &probes), seeks(&fb, &probes), "holes of {what}");
        assert_eq!(data_bytes(&fa), data_bytes(&fb), "data of {what}");
    }
}

#[test]
fn a_site_s_history_shows_each_change_once_as_its_snapshot_stored_it() {
    let t = TempRepo::new();
    let (src, ids) = four_nights(&t);
    let m = MountGuard::start(&t, "mnt", &[]);
    let hist = restored(&m.join("history"), &src).join("www");
    let stored = |id: &str, rel: &str| {
        restored(&m.join(format!("ids/{id}")), &src)
            .join("www")
            .join(rel)
    };
    let names: Vec<Vec<u8>> = listing(&hist);
    let want: Vec<&[u8]> = vec![
        b"acl.txt",
        b"again.txt",
        b"cache",
        b"caf\xe9.txt",
        b"config.php",
        b"fifo",
        b"index.php",
        b"link",
        b"null",
        b"pair1",
        b"pair2",
        b"robots.txt",
        b"sparse",
    ];
    assert_eq!(names, want, "every name any night held");

    // One version per change, named after the first snapshot that held it.
    let versions = |rel: &str| version_ids(&hist.join(rel));
    assert_eq!(
        versions("config.php"),
        sorted(&ids[..3]),
        "content, then mode"
    );
    assert_eq!(
        versions("index.php"),
        ids[..1],
        "unchanged nights do not repeat"
    );
    assert_eq!(
        versions("robots.txt"),
        sorted(&[ids[0].clone(), ids[2].clone()]),
        "deleted, back changed"
    );
    assert_eq!(versions("again.txt"), ids[..1], "deleted, back as it was");
    assert_eq!(
        fs::read(version(&hist.join("config.php"), &ids[1])).unwrap(),
        b"<?php\n$db = 'new';\n$user = 'site';\n"
    );
    // A file that became a directory: its version, and what it holds now.
    let cache = listing(&hist.join("cache"));
    assert_eq!(cache.len(), 2, "{cache:?}");
    assert!(cache[0].ends_with(ids[0].as_bytes()));
    assert_eq!(cache[1], b"inner");
    assert_eq!(versions("cache/inner"), ids[2..3]);
    let name = OsStr::from_bytes(b"caf\xe9.txt");
    let latin = version(&hist.join(name), &ids[0]);
    assert_eq!(fs::read(latin).unwrap(), b"latin-1 name");

    // Every category, as the snapshot stored it.
    for rel in [
        "config.php",
        "index.php",
        "sparse",
        "link",
        "null",
        "fifo",
        "acl.txt",
        "again.txt",
        "pair1",
    ] {
        for id in versions(rel) {
            same_entry(&version(&hist.join(rel), &id), &stored(&id, rel));
        }
    }
    let pair = [1, 2].map(|i| version(&hist.join(format!("pair{i}")), &ids[0]));
    let stored_pair = stored(&ids[0], "pair1");
    assert_eq!(fs::metadata(&stored_pair).unwrap().nlink(), 2);
    assert_ne!(
        fs::metadata(&pair[0]).unwrap().ino(),
        fs::metadata(&pair[1]).unwrap().ino(),
        "versions are not hard links of each other"
    );
    let acl = version(&hist.join("acl.txt"), &ids[0]);
    assert_eq!(getfacl(&acl), getfacl(&src.join("www/acl.txt")));
    assert!(getfacl(&acl).contains("user:1234:r--"));
    let sparse = fs::metadata(version(&hist.join("sparse"), &ids[0])).unwrap();
    assert_eq!(sparse.blocks(), 16, "two 4 KiB islands, the rest holes");
    // The directory of versions: the newest mode (with search bits) and owner.
    let dir = fs::metadata(hist.join("config.php")).unwrap();
    assert_eq!(
        (dir.mode() & 0o7777, dir.uid(), dir.is_dir()),
        (0o700, 33, true)
    );

    // Beyond PATH_MAX: walked with openat, listed through /proc/self/fd.
    let bottom = deep_dir(&restored(&m.join("history"), &src), false);
    let leaf = fd_path(&bottom).join("leaf");
    assert_eq!(version_ids(&leaf), sorted(&ids[..2]));
    assert_eq!(fs::read(version(&leaf, &ids[1])).unwrap(), b"deep, second");
}

#[test]
fn diff_u_between_two_versions_shows_the_change() {
    let t = TempRepo::new();
    let (src, ids) = four_nights(&t);
    let m = MountGuard::start(&t, "mnt", &[]);
    let config = restored(&m.join("history"), &src).join("www/config.php");
    let (old, new) = (version(&config, &ids[0]), version(&config, &ids[1]));
    let out = Command::new("diff")
        .arg("-u")
        .arg(&old)
        .arg(&new)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\n-$db = 'old';\n+$db = 'new';\n"), "{text}");
    assert!(text.contains(&format!("--- {}", old.display())), "{text}");
    // The mode-only change is the same bytes.
    let same = Command::new("diff")
        .arg(&new)
        .arg(version(&config, &ids[2]))
        .output()
        .unwrap();
    assert_eq!(same.status.code(), Some(0), "{}", stderr(&same));
}

#[test]
fn several_hosts_each_have_a_history_and_new_snapshots_add_versions() {
    let t = TempRepo::new();
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"one").unwrap();
    let backup = |host: &str| {
        let out = t.ok(["backup", "--json", "--host", host, src.to_str().unwrap()]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["id"].as_str().unwrap()[..8].to_string()
    };
    let web = backup("web1");
    fs::write(src.join("f"), b"two").unwrap();
    let db = backup("db1");
    let m = MountGuard::start(&t, "mnt", &[]);
    assert_eq!(
        listing(&m.join("history")),
        [b"db1".to_vec(), b"web1".to_vec()]
    );
    let f = |host: &str| restored(&m.join("history").join(host), &src).join("f");
    assert_eq!(version_ids(&f("web1")), std::slice::from_ref(&web));
    assert_eq!(version_ids(&f("db1")), [db]);
    // Written while mounted: a new version within a second or so.
    fs::write(src.join("f"), b"three").unwrap();
    let later = backup("web1");
    let start = std::time::Instant::now();
    while version_ids(&f("web1")).len() < 2 {
        assert!(start.elapsed().as_secs() < 5, "no new version");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(version_ids(&f("web1")), sorted(&[web, later.clone()]));
    assert_eq!(fs::read(version(&f("web1"), &later)).unwrap(), b"three");
}

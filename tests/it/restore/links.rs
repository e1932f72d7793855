//! Hard links of every type: backup and the mount keep each group one inode,
//! and so must restore, or `verify` reports the group split.

use super::{restore, spec};
use crate::common::{compare, restored, stderr, tree, TempRepo};
use crate::mount::guard::MountGuard;
use crate::verify::verify;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const NAMES: [&str; 6] = ["file", "symlink", "fifo", "socket", "chardev", "blockdev"];

/// Each pair of [`tree::linked`] under `dir` is one inode with two links.
fn assert_linked(dir: &Path, what: &str) {
    for name in NAMES {
        let a = fs::symlink_metadata(dir.join(name)).unwrap();
        let b = fs::symlink_metadata(dir.join(format!("sub/{name}2"))).unwrap();
        assert_eq!(
            (a.ino(), a.nlink()),
            (b.ino(), 2),
            "{what}: {name} and sub/{name}2 are not one inode with two links"
        );
        assert_eq!(a.file_type(), b.file_type(), "{what}: {name}");
    }
}

#[test]
fn hard_links_of_every_type_come_back_linked_and_verify_passes() {
    let t = TempRepo::new();
    let src = t.join("src");
    tree::linked(&src);
    assert_linked(&src, "source");
    t.backup(&src);
    {
        let m = MountGuard::start(&t, "mnt", &["--snapshot", "latest"]);
        assert_linked(&restored(&m.mnt, &src), "mount");
    }

    let out = t.join("out");
    let o = restore(&t, &spec(&src), &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_linked(&out, "restore");
    // verify reads a symlink's target after its stat, which sets its atime:
    // through the second name of a linked symlink it sees the first name's
    // read, so atimes are left to the comparer below.
    let snap = spec(&src);
    let args = [
        OsStr::new(&snap),
        out.as_os_str(),
        OsStr::new("--ignore"),
        OsStr::new("atime"),
    ];
    let (code, diffs) = verify(&t, &args);
    assert_eq!((code, diffs), (0, Default::default()), "verify");
    let opts = compare::Options {
        root_meta: true,
        ..Default::default()
    };
    compare::assert_same(&src, &out, opts);

    // Again over the restored tree, each name replaced.
    let o = restore(&t, &spec(&src), &out, &["--overwrite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_linked(&out, "restore --overwrite");
    // The first comparison read the source's content, setting its atimes.
    let opts = compare::Options {
        atime: false,
        ..opts
    };
    compare::assert_same(&src, &out, opts);
}

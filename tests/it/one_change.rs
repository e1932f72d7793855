//! A small tree with every kind of entry and metadata, and mutations that
//! each change exactly one category of one entry: what `diff` and `verify`
//! must find, alone, and nothing else.

use crate::common::tree::{self, acl_bytes, chmod, chown, file, mknod, set_times, set_xattr};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

const NO_ID: u32 = u32::MAX;

fn acl(named_user_perm: u16) -> Vec<u8> {
    acl_bytes(&[
        (1, 6, NO_ID),
        (2, named_user_perm, 1234),
        (4, 4, NO_ID),
        (16, 6, NO_ID),
        (32, 4, NO_ID),
    ])
}

/// Build the tree under `root` (which must not exist). Needs root.
pub fn small(root: &Path) {
    let p = |s: &str| root.join(s);
    fs::create_dir_all(p("dir/sub")).unwrap();
    file(&p("hello.txt"), b"hello, world\n");
    set_xattr(&p("hello.txt"), "user.comment", b"a comment");
    set_xattr(&p("hello.txt"), "trusted.secret", b"root only");
    set_xattr(&p("hello.txt"), "system.posix_acl_access", &acl(4));
    file(&p("data.bin"), &tree::noise(1 << 20, 5));
    chmod(&p("data.bin"), 0o644);
    file(&p("setuid"), b"#!/bin/sh\n");
    chmod(&p("setuid"), 0o4755);
    file(&p("owned"), b"someone else's");
    chown(&p("owned"), 1234, 5678);
    file(&p("dir/sub/deep"), b"deep");
    let island = tree::noise(4096, 3);
    tree::sparse(&p("sparse"), 4 << 20, &[(0, &island), (2 << 20, &island)]);
    file(&p("pair1"), b"pair");
    fs::hard_link(p("pair1"), p("pair2")).unwrap();
    file(&p("hl1"), b"linked across directories");
    fs::hard_link(p("hl1"), p("dir/hl2")).unwrap();
    fs::hard_link(p("hl1"), p("dir/sub/hl3")).unwrap();
    symlink("hello.txt", p("link")).unwrap();
    chown(&p("link"), 1001, 1002);
    symlink("does/not/exist", p("dangling")).unwrap();
    mknod(&p("fifo"), libc::S_IFIFO | 0o640, 0);
    chmod(&p("fifo"), 0o640);
    mknod(&p("chardev"), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    chmod(&p("chardev"), 0o666);
    set_xattr(&p("dir"), "user.dir", b"on a dir");
    set_xattr(&p("dir/sub"), "system.posix_acl_default", &acl(5));
    set_times(
        &p("hello.txt"),
        (1_600_000_000, 123_456_789),
        (1_500_000_000, 987_654_321),
    );
    set_times(&p("data.bin"), (1_600_000_001, 1), (1_500_000_001, 2));
    set_times(&p("link"), (1_000_000_000, 0), (1_111_111_111, 111));
    set_times(&p("fifo"), (1_200_000_000, 0), (1_200_000_001, 1));
    set_times(&p("dir/sub"), (1_300_000_000, 0), (1_300_000_000, 300));
    set_times(&p("dir"), (1_400_000_001, 0), (1_400_000_001, 401));
}

/// One mutation and what it must be reported as.
pub struct Case {
    pub name: &'static str,
    /// The one category `verify` reports.
    pub category: &'static str,
    /// The `diff` status letter.
    pub status: char,
    /// The entries that differ, relative to the tree's root.
    pub paths: &'static [&'static str],
    pub mutate: fn(&Path),
}

/// atime and mtime of `p` (not following symlinks).
fn times(p: &Path) -> ((i64, i64), (i64, i64)) {
    let m = fs::symlink_metadata(p).unwrap();
    ((m.atime(), m.atime_nsec()), (m.mtime(), m.mtime_nsec()))
}

/// Run `f` and put back the times of `p` and of its directory, so that only
/// what `f` means to change changes (ctime aside, which is never compared).
fn keeping_times(p: &Path, f: impl FnOnce()) {
    let parent = p.parent().unwrap();
    let (pa, pm) = times(parent);
    let own = fs::symlink_metadata(p).ok().map(|_| times(p));
    f();
    if let (Some((a, m)), Ok(_)) = (own, fs::symlink_metadata(p)) {
        set_times(p, a, m);
    }
    set_times(parent, pa, pm);
}

/// Replace `p` by what `make` creates, with the old mode, owner and times.
fn replace(p: &Path, make: impl FnOnce(&Path)) {
    let m = fs::symlink_metadata(p).unwrap();
    keeping_times(p, || {
        fs::remove_file(p).unwrap();
        make(p);
        chown(p, m.uid(), m.gid());
        if !fs::symlink_metadata(p).unwrap().file_type().is_symlink() {
            chmod(p, m.mode() & 0o7777);
        }
    });
}

fn write_at(p: &Path, off: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(p).unwrap();
    f.write_all_at(data, off).unwrap();
}

pub const CASES: &[Case] = &[
    Case {
        name: "mode",
        category: "mode",
        status: 'm',
        paths: &["data.bin"],
        mutate: |r| chmod(&r.join("data.bin"), 0o600),
    },
    Case {
        name: "owner",
        category: "owner",
        status: 'm',
        paths: &["data.bin"],
        mutate: |r| chown(&r.join("data.bin"), 4321, 8765),
    },
    Case {
        name: "mtime",
        category: "mtime",
        status: 'm',
        paths: &["data.bin"],
        mutate: |r| {
            let p = r.join("data.bin");
            set_times(&p, times(&p).0, (1_234_567_890, 5));
        },
    },
    Case {
        name: "atime",
        category: "atime",
        status: 'm',
        paths: &["data.bin"],
        mutate: |r| {
            let p = r.join("data.bin");
            set_times(&p, (1_234_567_890, 6), times(&p).1);
        },
    },
    Case {
        name: "xattr",
        category: "xattr",
        status: 'm',
        paths: &["hello.txt"],
        mutate: |r| set_xattr(&r.join("hello.txt"), "user.comment", b"another comment"),
    },
    Case {
        name: "acl",
        category: "acl",
        status: 'm',
        paths: &["hello.txt"],
        mutate: |r| set_xattr(&r.join("hello.txt"), "system.posix_acl_access", &acl(6)),
    },
    Case {
        name: "target",
        category: "target",
        status: 'M',
        paths: &["link"],
        mutate: |r| replace(&r.join("link"), |p| symlink("data.bin", p).unwrap()),
    },
    Case {
        name: "rdev",
        category: "rdev",
        status: 'M',
        paths: &["chardev"],
        mutate: |r| {
            replace(&r.join("chardev"), |p| {
                mknod(p, libc::S_IFCHR | 0o600, libc::makedev(1, 5))
            })
        },
    },
    Case {
        name: "content",
        category: "content",
        status: 'M',
        paths: &["data.bin"],
        mutate: |r| {
            let p = r.join("data.bin");
            keeping_times(&p, || write_at(&p, 700_000, b"same size, other bytes"));
        },
    },
    Case {
        name: "size",
        category: "content",
        status: 'M',
        paths: &["data.bin"],
        mutate: |r| {
            let p = r.join("data.bin");
            keeping_times(&p, || write_at(&p, 1 << 20, b"appended"));
        },
    },
    Case {
        name: "holes",
        category: "holes",
        status: 'm',
        paths: &["sparse"],
        mutate: |r| {
            // The same bytes, but the holes written as zeros.
            let p = r.join("sparse");
            keeping_times(&p, || {
                let zeros = vec![0u8; (2 << 20) - 4096];
                write_at(&p, 4096, &zeros);
                write_at(&p, (2 << 20) + 4096, &zeros);
            });
        },
    },
    Case {
        name: "links",
        category: "links",
        status: 'm',
        paths: &["pair1", "pair2"],
        mutate: |r| {
            // pair2 becomes a copy of pair1 with all its metadata, not a link.
            let p = r.join("pair2");
            let ((a, m), meta) = (times(&p), fs::metadata(&p).unwrap());
            let content = fs::read(&p).unwrap();
            keeping_times(&p, || {
                let tmp = r.join("pair2.tmp");
                file(&tmp, &content);
                chmod(&tmp, meta.mode() & 0o7777);
                chown(&tmp, meta.uid(), meta.gid());
                set_times(&tmp, a, m);
                fs::rename(&tmp, &p).unwrap();
            });
            // Reading it set the atime of the old inode, pair1's now.
            set_times(&r.join("pair1"), a, m);
            set_times(&p, a, m);
        },
    },
    Case {
        name: "type",
        category: "type",
        status: 'T',
        paths: &["fifo"],
        mutate: |r| replace(&r.join("fifo"), |p| drop(file(p, b""))),
    },
    Case {
        name: "missing",
        category: "missing",
        status: 'D',
        paths: &["dir/sub/deep"],
        mutate: |r| {
            let p = r.join("dir/sub/deep");
            keeping_times(&p, || fs::remove_file(&p).unwrap());
        },
    },
    Case {
        name: "extra",
        category: "extra",
        status: 'A',
        paths: &["dir/extra.txt"],
        mutate: |r| {
            let p = r.join("dir/extra.txt");
            keeping_times(&p, || drop(file(&p, b"new")));
        },
    },
];

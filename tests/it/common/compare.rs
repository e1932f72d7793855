//! The comparer: two trees, entry by entry, every metadata category.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What to compare besides type, mode, owner, size, mtime, content, symlink
/// targets, device numbers, xattrs and hard-link groups (always compared).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Compare atimes (to the nanosecond).
    pub atime: bool,
    /// Compare owners.
    pub owner: bool,
    /// Require a restored sparse file to use no more blocks than the source (+slack).
    pub blocks: bool,
    /// Compare the metadata of the two roots themselves.
    pub root_meta: bool,
    /// Compare xattrs.
    pub xattrs: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            atime: true,
            owner: true,
            blocks: true,
            root_meta: false,
            xattrs: true,
        }
    }
}

/// Every entry below `root`, relative path -> metadata.
fn scan(root: &Path) -> BTreeMap<PathBuf, fs::Metadata> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = root.join(&rel);
        let md =
            fs::symlink_metadata(&abs).unwrap_or_else(|e| panic!("lstat {}: {e}", abs.display()));
        if md.is_dir() {
            for ent in
                fs::read_dir(&abs).unwrap_or_else(|e| panic!("readdir {}: {e}", abs.display()))
            {
                stack.push(rel.join(ent.unwrap().file_name()));
            }
        }
        out.insert(rel, md);
    }
    out
}

fn xattrs(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut list = vec![0u8; 65536];
    let n = unsafe { libc::llistxattr(c.as_ptr(), list.as_mut_ptr().cast(), list.len()) };
    assert!(
        n >= 0,
        "llistxattr {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    let mut out = BTreeMap::new();
    for name in list[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let cn = CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(
            m >= 0,
            "lgetxattr {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
        v.truncate(m as usize);
        out.insert(name.to_vec(), v);
    }
    out
}

fn kind(md: &fs::Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_file() {
        "file"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "chardev"
    } else {
        "blockdev"
    }
}

/// Hard-link groups: sets of relative paths sharing an inode.
fn link_groups(entries: &BTreeMap<PathBuf, fs::Metadata>) -> BTreeSet<Vec<PathBuf>> {
    let mut by_ino: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    for (p, md) in entries {
        if !md.is_dir() && md.nlink() > 1 {
            by_ino
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(p.clone());
        }
    }
    by_ino.into_values().filter(|g| g.len() > 1).collect()
}

/// Every difference between trees `a` and `b`, one line each.
pub fn differences(a: &Path, b: &Path, opts: Options) -> Vec<String> {
    let (ea, eb) = (scan(a), scan(b));
    let mut diffs = Vec::new();
    for p in ea.keys().filter(|p| !eb.contains_key(*p)) {
        diffs.push(format!("{}: only in {}", p.display(), a.display()));
    }
    for p in eb.keys().filter(|p| !ea.contains_key(*p)) {
        diffs.push(format!("{}: only in {}", p.display(), b.display()));
    }
    for (p, ma) in &ea {
        let Some(mb) = eb.get(p) else { continue };
        let mut d = |what: &str, x: String, y: String| {
            if x != y {
                diffs.push(format!("{}: {what} differs: {x} vs {y}", p.display()));
            }
        };
        d("type", kind(ma).into(), kind(mb).into());
        if kind(ma) != kind(mb) {
            continue;
        }
        let is_root = p.as_os_str().is_empty();
        if !is_root || opts.root_meta {
            if !ma.file_type().is_symlink() {
                d(
                    "mode",
                    format!("{:o}", ma.mode() & 0o7777),
                    format!("{:o}", mb.mode() & 0o7777),
                );
            }
            if opts.owner {
                d(
                    "owner",
                    format!("{}:{}", ma.uid(), ma.gid()),
                    format!("{}:{}", mb.uid(), mb.gid()),
                );
            }
            d(
                "mtime",
                format!("{}.{:09}", ma.mtime(), ma.mtime_nsec()),
                format!("{}.{:09}", mb.mtime(), mb.mtime_nsec()),
            );
            // Listing a directory or reading a symlink sets its atime (there is
            // no O_NOATIME for readlink), so only other entries' atimes are stable.
            if opts.atime && !ma.is_dir() && !ma.file_type().is_symlink() {
                d(
                    "atime",
                    format!("{}.{:09}", ma.atime(), ma.atime_nsec()),
                    format!("{}.{:09}", mb.atime(), mb.atime_nsec()),
                );
            }
            if opts.xattrs {
                d(
                    "xattrs",
                    format!("{:?}", xattrs(&a.join(p))),
                    format!("{:?}", xattrs(&b.join(p))),
                );
            }
        }
        if ma.file_type().is_char_device() || ma.file_type().is_block_device() {
            d("rdev", ma.rdev().to_string(), mb.rdev().to_string());
        }
        if ma.file_type().is_symlink() {
            let ta = fs::read_link(a.join(p)).unwrap();
            let tb = fs::read_link(b.join(p)).unwrap();
            d("target", format!("{ta:?}"), format!("{tb:?}"));
        }
        if ma.is_file() {
            d("size", ma.len().to_string(), mb.len().to_string());
            if ma.len() == mb.len() && !same_content(&a.join(p), &b.join(p)) {
                diffs.push(format!("{}: content differs", p.display()));
            }
            if opts.blocks && mb.blocks() > ma.blocks() + 64 {
                diffs.push(format!(
                    "{}: uses {} blocks, source {} (holes lost?)",
                    p.display(),
                    mb.blocks(),
                    ma.blocks()
                ));
            }
        }
    }
    let (ga, gb) = (link_groups(&ea), link_groups(&eb));
    if ga != gb {
        diffs.push(format!("hard-link groups differ: {ga:?} vs {gb:?}"));
    }
    diffs
}

fn same_content(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
    fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]).unwrap() {
                0 => break,
                k => n += k,
            }
        }
        n
    }
}

/// Panic with every difference if the trees differ.
pub fn assert_same(a: &Path, b: &Path, opts: Options) {
    let diffs = differences(a, b, opts);
    assert!(
        diffs.is_empty(),
        "trees {} and {} differ:\n{}",
        a.display(),
        b.display(),
        diffs.join("\n")
    );
}

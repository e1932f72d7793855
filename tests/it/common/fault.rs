//! Fault injection: an unprivileged user, a small file system, damage to
//! repository files, and where in a repository a file's bytes live.

use super::TempRepo;
use rewind::backend::FileType;
use rewind::format::index::Location;
use rewind::format::tree::{Entry, Extent};
use rewind::repo::{Repository, SnapshotFilter};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The unprivileged user (and group) tests drop to.
pub const NOBODY: u32 = 65534;

/// Run `cmd` as `nobody:nogroup`, with no supplementary groups.
pub fn as_nobody(cmd: &mut Command) -> &mut Command {
    cmd.uid(NOBODY).gid(NOBODY)
}

/// Let other users into the scratch directory (temporary directories are 0700).
pub fn open_up(dir: &Path) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Give `path` and everything below it to `uid:gid`, symlinks themselves.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) {
    super::tree::chown(path, uid, gid);
    let md = fs::symlink_metadata(path).unwrap();
    if md.is_dir() {
        for ent in fs::read_dir(path).unwrap() {
            chown_tree(&ent.unwrap().path(), uid, gid);
        }
    }
}

/// A tmpfs of a fixed size, unmounted when dropped (even on a panic).
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (`8m`) on `path`, creating the directory.
    pub fn mount(path: &Path, size: &str) -> Self {
        fs::create_dir_all(path).unwrap();
        let target = CString::new(path.as_os_str().as_bytes()).unwrap();
        let opts = CString::new(format!("size={size},mode=0755")).unwrap();
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(
            r,
            0,
            "mount tmpfs on {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = CString::new(self.path.as_os_str().as_bytes()).unwrap();
        // Detach: a process still holding a file there must not keep it mounted.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Invert every bit of the byte at `offset` in `path`.
pub fn flip_byte(path: &Path, offset: u64) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0xff;
    f.write_all_at(&b, offset).unwrap();
}

/// Cut `path` to `len` bytes.
pub fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// The repository of `t`, opened through the library.
pub fn open(t: &TempRepo) -> Repository {
    super::open_repo(&t.repo())
}

/// The entry at absolute `path` in snapshot `spec` (an id, a prefix or `latest`).
pub fn entry(repo: &Repository, spec: &str, path: &Path) -> Entry {
    let (_, snap) = repo
        .find_snapshot(spec, &SnapshotFilter::default())
        .unwrap();
    repo.entry_at(&snap.tree, path.as_os_str().as_bytes())
        .unwrap()
}

/// Where each data blob of file entry `e` is stored, in file order.
pub fn data_locations(repo: &Repository, e: &Entry) -> Vec<Location> {
    e.extents
        .iter()
        .filter_map(|x| match x {
            Extent::Data { id, .. } => Some(repo.lookup(id).unwrap().expect("indexed")),
            Extent::Hole { .. } => None,
        })
        .collect()
}

/// Where the tree of directory entry `e` is stored.
pub fn tree_location(repo: &Repository, e: &Entry) -> Location {
    let sub = e.subtree.expect("a directory with a tree");
    repo.lookup(&sub.blob()).unwrap().expect("indexed")
}

/// The pack file that holds `loc`.
pub fn pack_file(t: &TempRepo, loc: &Location) -> PathBuf {
    rewind::backend::local::path_of(&t.repo(), FileType::Pack, &loc.pack.to_hex())
}

/// The files in `dir` of the repository (`index`, `snapshots`), sorted.
pub fn repo_files(t: &TempRepo, dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(t.repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().as_bytes().starts_with(b"."))
        .collect();
    v.sort();
    v
}

/// Every regular file below `dir`, as paths relative to it, sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let md = fs::symlink_metadata(&abs).unwrap();
        if md.is_dir() {
            for ent in fs::read_dir(&abs).unwrap() {
                stack.push(rel.join(ent.unwrap().file_name()));
            }
        } else if md.is_file() {
            out.push(rel);
        }
    }
    out.sort();
    out
}

/// A small xorshift generator. Seeded from the clock unless `REWIND_TEST_SEED`
/// is set; the seed is printed so a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn from_env_or_clock() -> Self {
        let seed = std::env::var("REWIND_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("random seed: REWIND_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

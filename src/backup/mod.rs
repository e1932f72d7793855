//! The snapshot writer.
//!
//! ```text
//! paths ─ walk (depth first; three threads list directories ahead of it)
//!           └─ pool (regular files): stat ─ same as parent? reuse extents
//!                                        └─ read (skip holes) ─ chunk ─ hash ─ dedup ─ compress ─ pack
//!         directory trees are written as their last child finishes
//! stdin / command ─ read ─ chunk ─ … (same path, before the walk)
//! RepoWriter: packs, then index, then the snapshot
//! ```
//!
//! A backup reads each changed file once and never reads an unchanged one
//! (same type, size, mtime, ctime and inode as in the parent snapshot). Memory
//! is bounded by the pipeline: the pool's queue, one read buffer per worker,
//! the directories listed ahead of the walk (256 at most, holding 262,144
//! names and previous entries in all) and the open packs, not by the size
//! of the data.

mod exclude;
mod file;
mod lists;
mod stream;
mod walk;

pub use exclude::Excludes;
pub use lists::read_files_from;

use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::tree::{Time, Tree};
use crate::meta::Names;
use crate::progress::Progress;
use crate::repo::writer::RepoWriter;
use crate::repo::{Repository, SnapshotFilter};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use walk::{Selection, Walk};

/// Where the parent snapshot comes from.
#[derive(Clone, Debug, Default)]
pub enum ParentChoice {
    /// The latest snapshot with the same host and paths.
    #[default]
    Auto,
    /// Read every file.
    None,
    /// This one.
    Snapshot(SnapshotId),
}

/// A file that comes from standard input or a command's output.
#[derive(Clone, Debug)]
pub struct StdinSource {
    /// Its path in the snapshot.
    pub path: PathBuf,
    /// Run this with `sh -c` and store its standard output; `None` reads stdin.
    pub command: Option<String>,
}

/// Everything a backup needs to know.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub host: String,
    pub tags: Vec<String>,
    pub excludes: Vec<String>,
    pub exclude_caches: bool,
    /// Skip the contents of a directory holding a file of one of these
    /// names (the directory and the file itself are kept, as with
    /// CACHEDIR.TAG).
    pub exclude_if_present: Vec<Vec<u8>>,
    /// Skip regular files larger than this many bytes.
    pub exclude_larger_than: Option<u64>,
    pub one_file_system: bool,
    pub parent: ParentChoice,
    /// zstd level; `None` takes the repository's default.
    pub compression: Option<i32>,
    pub dry_run: bool,
    pub stdin: Option<StdinSource>,
    /// Reader threads (more than cores: reads wait on the disk).
    pub threads: usize,
    /// Packs stored at once.
    pub connections: usize,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            paths: Vec::new(),
            host: hostname(),
            tags: Vec::new(),
            excludes: Vec::new(),
            exclude_caches: false,
            exclude_if_present: Vec::new(),
            exclude_larger_than: None,
            one_file_system: false,
            parent: ParentChoice::Auto,
            compression: None,
            dry_run: false,
            stdin: None,
            threads: 8,
            connections: crate::repo::writer::DEFAULT_CONNECTIONS,
        }
    }
}

/// What a backup produced.
#[derive(Clone, Debug)]
pub struct BackupOutcome {
    /// The snapshot's id (what it would be, in a dry run).
    pub id: SnapshotId,
    pub snapshot: Snapshot,
    pub dry_run: bool,
}

#[derive(Default)]
pub(crate) struct Counters {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unchanged: AtomicU64,
    dirs: AtomicU64,
    other: AtomicU64,
    bytes_read: AtomicU64,
    total_bytes: AtomicU64,
    errors: AtomicU64,
}

/// Back up `opts.paths` (and a stdin file) into `repo` as one new snapshot.
///
/// A path that cannot be found is warned about and counted as an error, and
/// the rest is backed up; if none can be, the backup fails. A stop request
/// ([`crate::interrupt`]) ends it with [`Error::Interrupted`] and no
/// snapshot; the blobs stored so far are made durable and indexed first, so
/// the next backup need not store them again.
pub fn backup(
    repo: Arc<Repository>,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupOutcome> {
    let started = std::time::Instant::now();
    let time = now();
    let (paths, missing) = absolute_paths(&opts.paths)?;
    if paths.is_empty() && opts.stdin.is_none() {
        return Err(match missing.len() {
            0 => Error::InvalidInput("nothing to back up: give a path or --stdin-name".into()),
            1 => missing.into_iter().next().expect("one"),
            _ => Error::InvalidInput(format!(
                "none of the paths to back up can be found: {}",
                missing
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        });
    }
    let mut names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if let Some(s) = &opts.stdin {
        let at = snapshot_path(&s.path)?;
        if let Some(p) = paths
            .iter()
            .find(|p| at.starts_with(p) || p.starts_with(&at))
        {
            return Err(Error::InvalidInput(format!(
                "--stdin-name {} overlaps the backed-up path {}; give the stream a path of its own",
                at.display(),
                p.display()
            )));
        }
        names.push(at.display().to_string());
    }
    let excludes = Excludes::new(&opts.excludes)?;
    let (parent_id, parent_root) = find_parent(&repo, opts, &names)?;
    let level = opts.compression.unwrap_or(repo.config().compression);
    let writer = RepoWriter::with_connections(repo.clone(), level, opts.dry_run, opts.connections)?;
    let chunker = repo.chunker();
    let counters = Counters::default();
    for e in missing {
        counters.errors.fetch_add(1, Relaxed);
        progress.warn(&e);
    }

    let mut root = Selection::Partial(Default::default());
    for p in &paths {
        root.insert(&components(p), Selection::Whole);
    }
    if let Some(s) = &opts.stdin {
        let entry = keep_on_interrupt(
            &writer,
            stream::read_stdin(s, &writer, &chunker, &counters, progress),
        )?;
        root.insert(
            &components(&snapshot_path(&s.path)?),
            Selection::Synthetic(Box::new(entry)),
        );
    }
    let walk = Walk {
        writer: &writer,
        chunker,
        opts,
        excludes,
        progress,
        names: Names::default(),
        counters,
        fatal: Mutex::new(None),
        ahead: Default::default(),
    };
    let tree = keep_on_interrupt(&writer, walk.run(root, parent_root, opts.threads.max(1)))?;
    // Everything but the snapshot is written now, so the summary counts
    // what the repository grew by.
    writer.flush()?;
    let stats = writer.stats();
    let c = &walk.counters;
    let mut snapshot = Snapshot {
        time,
        host: opts.host.clone(),
        username: Names::default().user(unsafe { libc::getuid() }),
        paths: names,
        tags: opts.tags.clone(),
        tree,
        parent: parent_id,
        program: format!("rewind {}", env!("CARGO_PKG_VERSION")),
        summary: Summary {
            files_new: c.files_new.load(Relaxed),
            files_changed: c.files_changed.load(Relaxed),
            files_unchanged: c.files_unchanged.load(Relaxed),
            dirs: c.dirs.load(Relaxed),
            other_entries: c.other.load(Relaxed),
            bytes_read: c.bytes_read.load(Relaxed),
            total_bytes: c.total_bytes.load(Relaxed),
            data_blobs_added: stats.data_blobs,
            tree_blobs_added: stats.tree_blobs,
            bytes_added_raw: stats.raw_bytes,
            bytes_added_stored: stats.added_bytes(),
            bytes_added_data: stats.stored_bytes,
            bytes_added_index: stats.index_bytes,
            packs_added: stats.packs,
            duration_ms: 0,
            errors: c.errors.load(Relaxed),
        },
        original: None,
    };
    snapshot.summary.duration_ms = started.elapsed().as_millis() as u64;
    let id = writer.commit(&snapshot)?;
    Ok(BackupOutcome {
        id,
        snapshot,
        dry_run: opts.dry_run,
    })
}

/// On a stop request, make what was stored durable and indexed (a snapshot
/// is never written), then pass the error on.
fn keep_on_interrupt<T>(writer: &RepoWriter, res: Result<T>) -> Result<T> {
    if let Err(Error::Interrupted(_)) = &res {
        // A failed flush leaves unindexed packs, which prune removes; the
        // stop request is what the caller must hear about.
        let _ = writer.flush();
    }
    res
}

/// The parent snapshot and its root tree.
fn find_parent(
    repo: &Repository,
    opts: &BackupOptions,
    paths: &[String],
) -> Result<(Option<SnapshotId>, Option<Tree>)> {
    let found = match &opts.parent {
        ParentChoice::None => return Ok((None, None)),
        ParentChoice::Snapshot(id) => {
            Some(repo.find_snapshot(&id.to_hex(), &SnapshotFilter::default())?)
        }
        ParentChoice::Auto => {
            let (all, _) = repo.snapshots()?;
            all.into_iter()
                .rev()
                .find(|(_, s)| s.host == opts.host && same_set(&s.paths, paths))
        }
    };
    match found {
        Some((id, s)) => Ok((Some(id), Some(repo.load_tree(&s.tree)?))),
        None => Ok((None, None)),
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// Absolute, normalized paths that exist, nested ones dropped; and an
/// error for each path that cannot be found.
fn absolute_paths(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<Error>)> {
    let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
    let mut out: Vec<PathBuf> = Vec::new();
    let mut missing = Vec::new();
    for p in paths {
        if let Err(e) = std::fs::symlink_metadata(p) {
            missing.push(Error::io(p, e));
            continue;
        }
        let abs = normalize(&cwd.join(p));
        // Resolve symlinks in the parent so the snapshot holds the real path;
        // the last component stays as it is (a symlink is stored as one).
        let abs = match (abs.parent(), abs.file_name()) {
            (Some(parent), Some(name)) => match parent.canonicalize() {
                Ok(parent) => parent.join(name),
                Err(e) => {
                    missing.push(Error::io(parent, e));
                    continue;
                }
            },
            _ => abs,
        };
        out.push(abs);
    }
    out.sort();
    out.dedup();
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    Ok((out, missing))
}

/// Remove `.` and resolve `..` lexically.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// A stdin file's place in the snapshot, as an absolute path.
fn snapshot_path(p: &Path) -> Result<PathBuf> {
    let n = normalize(&Path::new("/").join(p));
    if n == Path::new("/") {
        return Err(Error::InvalidInput(format!(
            "--stdin-name {:?} names no file",
            p
        )));
    }
    // No Linux file system takes a longer name: it could be stored, but
    // never restored or copied out of the mount.
    if let Some(long) = components(&n).iter().find(|c| c.len() > NAME_MAX) {
        return Err(Error::InvalidInput(format!(
            "--stdin-name {:?}: the name {:?} is {} bytes, longer than the {NAME_MAX} a file system allows",
            p,
            String::from_utf8_lossy(long),
            long.len()
        )));
    }
    Ok(n)
}

/// The longest file name Linux file systems take, in bytes.
const NAME_MAX: usize = 255;

fn components(p: &Path) -> Vec<Vec<u8>> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

/// The current time.
pub(crate) fn now() -> Time {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Time {
        sec: d.as_secs() as i64,
        nsec: d.subsec_nanos(),
    }
}

pub use crate::clock::hostname;

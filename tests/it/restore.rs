//! Restore: hard links of every type, `--delete`, `--exclude` and
//! `--dry-run`, a target that changes while restore runs, very deep trees,
//! and stopping on a signal.

// 30,000 levels with 256 open files and little memory.
mod deep;
// --delete, --dry-run, --exclude and --include.
mod delete;
// SIGINT and SIGTERM: no half-written file left, directories' metadata set.
mod interrupt;
// Every type that can be hard-linked comes back linked.
mod links;
// A directory moved away while restore is below it: the rest of it is lost, once.
mod lost;
// Names in the target swapped for symlinks, before and during a restore.
mod race;
// A directory stored without its tree comes back empty, with its metadata.
mod treeless;

use crate::common::TempRepo;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

/// Run `rewind restore SPEC --target TARGET EXTRA…`.
fn restore(t: &TempRepo, spec: &str, target: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        OsStr::new("restore"),
        OsStr::new(spec),
        OsStr::new("--target"),
        target.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    t.rewind(args)
}

/// `latest:SRC`.
fn spec(src: &Path) -> String {
    format!("latest:{}", src.display())
}

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
// Permission bits and owners under any umask, in new and existing directories.
mod modes;
// Names in the target swapped for symlinks, before and during a restore.
mod race;
// A directory stored without its tree comes back empty, with its metadata.
mod treeless;

use crate::common::TempRepo;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

/// `restore SPEC --target TARGET EXTRA…`.
fn restore_args<'a>(spec: &'a str, target: &'a Path, extra: &[&'a str]) -> Vec<&'a OsStr> {
    let mut args = vec![
        OsStr::new("restore"),
        OsStr::new(spec),
        OsStr::new("--target"),
        target.as_os_str(),
    ];
    args.extend(extra.iter().map(|e| OsStr::new(*e)));
    args
}

/// Run `rewind restore SPEC --target TARGET EXTRA…`.
fn restore(t: &TempRepo, spec: &str, target: &Path, extra: &[&str]) -> Output {
    t.rewind(restore_args(spec, target, extra))
}

/// Start `rewind restore SPEC --target TARGET EXTRA…`, its stderr piped
/// (stdout dropped).
fn spawn_restore(t: &TempRepo, spec: &str, target: &Path, extra: &[&str]) -> std::process::Child {
    t.cmd(restore_args(spec, target, extra))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// `latest:SRC`.
fn spec(src: &Path) -> String {
    format!("latest:{}", src.display())
}

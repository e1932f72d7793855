//! Bad input and faults: every one gets a clear error naming the file or
//! snapshot and a non-zero exit code, and loses nothing: the repository stays
//! valid, and everything else still backs up, restores and reads.

// Unreadable, growing and vanishing source files.
mod reading;
// Missing paths, non-repositories, unknown versions, usage errors.
mod input;
// Damaged packs, trees and indexes: check names them, restore fails only them.
mod damage;
// A full disk, and backups killed at random moments.
mod crash;
// Restore targets: non-empty, symlinked, names that escape, not root.
mod restoring;

use crate::common::{expect_code, json, snapshot_ids, stdout, TempRepo};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

/// `check --json` with extra arguments: exit code and report.
fn check(t: &TempRepo, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = t.rewind(["check", "--json"].iter().chain(extra));
    (code(&out), json(&stdout(&out)))
}

fn strings(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Run `rewind restore SPEC --target TARGET EXTRA…`.
fn restore(t: &TempRepo, spec: &str, target: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        OsStr::new("restore"),
        OsStr::new(spec),
        OsStr::new("--target"),
    ];
    args.push(target.as_os_str());
    args.extend(extra.iter().map(OsStr::new));
    t.rewind(args)
}

//! `rewind backup`.

use super::output::{bytes, Reporter};
use super::RepoArg;
use crate::backup::{self, BackupOptions, Excludes, ParentChoice, StdinSource};
use crate::repo::SnapshotFilter;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files and directories to back up
    #[arg(required_unless_present = "stdin_name")]
    pub paths: Vec<PathBuf>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name recorded in the snapshot [default: this machine's]
    #[arg(long)]
    pub host: Option<String>,
    /// Skip entries matching this glob: without `/` it matches names, with `/` absolute paths (repeatable)
    #[arg(long = "exclude", short = 'e')]
    pub excludes: Vec<String>,
    /// Read exclude patterns from a file, one per line (repeatable)
    #[arg(long = "exclude-file")]
    pub exclude_files: Vec<PathBuf>,
    /// Skip the contents of directories holding a valid CACHEDIR.TAG
    #[arg(long)]
    pub exclude_caches: bool,
    /// Do not cross into other file systems
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Compare with this snapshot instead of the latest with the same host and paths
    #[arg(long)]
    pub parent: Option<String>,
    /// Read every file, comparing with no earlier snapshot
    #[arg(long, conflicts_with = "parent")]
    pub force: bool,
    /// zstd level (1-19, 0 stores raw) [default: the repository's, 3]
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub compression: Option<i32>,
    /// Do everything but write to the repository
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Store standard input as a file at this path in the snapshot
    #[arg(long)]
    pub stdin_name: Option<PathBuf>,
    /// Run this shell command and store its output (needs --stdin-name); a non-zero exit writes no snapshot
    #[arg(long, requires = "stdin_name")]
    pub stdin_from_command: Option<String>,
    /// Reader threads
    #[arg(long, default_value_t = 8)]
    pub threads: usize,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(repo_arg: &RepoArg, args: Args) -> Result<u8> {
    if args.paths.is_empty() && args.stdin_name.is_none() {
        anyhow::bail!("nothing to back up: give one or more paths, or --stdin-name");
    }
    if repo_arg.is_default() {
        let path = repo_arg.path()?;
        if !path.join("config").exists() {
            super::init::create(repo_arg, true, None)?;
            eprintln!("created encrypted repository at {}", path.display());
        }
    }
    let (repo, _lock) = repo_arg.open_locked(false, "backup")?;
    let mut excludes = args.excludes.clone();
    for f in &args.exclude_files {
        excludes.extend(
            Excludes::read_file(f)
                .with_context(|| format!("reading exclude file {}", f.display()))?,
        );
    }
    let parent = match (&args.parent, args.force) {
        (_, true) => ParentChoice::None,
        (Some(spec), _) => {
            let (id, _) = repo
                .find_snapshot(spec, &SnapshotFilter::default())
                .with_context(|| format!("finding parent snapshot {spec}"))?;
            ParentChoice::Snapshot(id)
        }
        (None, false) => ParentChoice::Auto,
    };
    let opts = BackupOptions {
        paths: args.paths.clone(),
        host: args.host.clone().unwrap_or_else(backup::hostname),
        tags: args.tags.clone(),
        excludes,
        exclude_caches: args.exclude_caches,
        one_file_system: args.one_file_system,
        parent,
        compression: args.compression,
        dry_run: args.dry_run,
        stdin: args.stdin_name.clone().map(|p| StdinSource {
            path: p,
            command: args.stdin_from_command.clone(),
        }),
        threads: args.threads.max(1),
        connections: repo_arg.connections(),
    };
    let reporter = Reporter::new("read", super::stderr_is_tty() && !args.json);
    let out = backup::backup(Arc::clone(&repo), &opts, &reporter);
    reporter.finish();
    let out = out.context("backup failed")?;
    let s = &out.snapshot.summary;
    if args.json {
        let mut v = serde_json::to_value(&out.snapshot)?;
        v["id"] = serde_json::Value::String(out.id.to_hex());
        v["dry_run"] = serde_json::Value::Bool(out.dry_run);
        if let Some(r) = repo_arg.requests() {
            v["requests"] = r.to_json();
        }
        println!("{v}");
    } else {
        let verb = if out.dry_run {
            "would be saved (dry run)"
        } else {
            "saved"
        };
        println!("snapshot {} {verb}", out.id.short());
        println!(
            "files: {} new, {} changed, {} unchanged; {} directories, {} other",
            s.files_new, s.files_changed, s.files_unchanged, s.dirs, s.other_entries
        );
        println!(
            "read {} of {}; added {} to the repository ({} before compression)",
            bytes(s.bytes_read),
            bytes(s.total_bytes),
            bytes(s.bytes_added_stored),
            bytes(s.bytes_added_raw)
        );
        println!("took {:.2}s", s.duration_ms as f64 / 1000.0);
    }
    if s.errors > 0 {
        eprintln!(
            "warning: {} entries could not be read (named above); the snapshot holds the rest",
            s.errors
        );
        return Ok(super::EXIT_PARTIAL);
    }
    Ok(super::EXIT_OK)
}

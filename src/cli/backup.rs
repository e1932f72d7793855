//! `rewind backup`.

use super::output::{self, bytes, Reporter};
use super::{json, select, RepoArg};
use crate::backup::{self, BackupOptions, Excludes, ParentChoice, StdinSource};
use crate::repo::SnapshotFilter;
use anyhow::{Context, Result};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files and directories to back up (one that cannot be found is named, the rest backed up: exit 3)
    #[arg(required_unless_present_any = ["stdin_name", "files_from", "files_from_raw"])]
    pub paths: Vec<PathBuf>,
    /// Also back up the paths listed in this file, one per line; `#` comments and blank lines skipped; `-` is stdin (repeatable)
    #[arg(long, value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
    /// Also back up the paths listed in this file, separated by NUL bytes (`find -print0`) (repeatable)
    #[arg(long, value_name = "FILE")]
    pub files_from_raw: Vec<PathBuf>,
    /// Tag the snapshot (`a,b` or repeated for several)
    #[arg(long = "tag", value_delimiter = ',', value_parser = super::parse::tag)]
    pub tags: Vec<String>,
    /// Host name recorded in the snapshot [default: this machine's]
    #[arg(long)]
    pub host: Option<String>,
    /// Skip entries matching this glob (repeatable): without `/` it matches names anywhere, starting with `/` absolute paths, with `/` inside path ends at any depth
    #[arg(long = "exclude", short = 'e')]
    pub excludes: Vec<String>,
    /// Read exclude patterns from a file, one per line (repeatable)
    #[arg(long = "exclude-file")]
    pub exclude_files: Vec<PathBuf>,
    /// Skip the contents of directories holding a valid CACHEDIR.TAG
    #[arg(long)]
    pub exclude_caches: bool,
    /// Skip the contents of directories holding a file of this name (the directory and the file are kept) (repeatable)
    #[arg(long, value_name = "NAME")]
    pub exclude_if_present: Vec<PathBuf>,
    /// Skip regular files larger than this (e.g. 500M, 2G)
    #[arg(long, value_name = "SIZE", value_parser = super::parse::size)]
    pub exclude_larger_than: Option<u64>,
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
    #[arg(long, default_value_t = 8, value_parser = super::parse::threads)]
    pub threads: usize,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(repo_arg: &RepoArg, args: Args) -> Result<u8> {
    let mut paths = args.paths.clone();
    let stdin_lists = args
        .files_from
        .iter()
        .chain(&args.files_from_raw)
        .filter(|f| f.as_os_str() == "-")
        .count();
    if stdin_lists > 0 && (stdin_lists > 1 || args.stdin_name.is_some()) {
        usage!("standard input can be read only once: by one --files-from - or by --stdin-name");
    }
    for (list, raw) in args
        .files_from
        .iter()
        .map(|f| (f, false))
        .chain(args.files_from_raw.iter().map(|f| (f, true)))
    {
        let listed = backup::read_files_from(list, raw)
            .with_context(|| format!("reading the list of paths {}", list.display()))?;
        paths.extend(listed);
    }
    if paths.is_empty() && args.stdin_name.is_none() {
        anyhow::bail!("nothing to back up: the lists of paths are empty, and no --stdin-name");
    }
    if repo_arg.is_default() {
        let path = repo_arg.path()?;
        if !path.join("config").exists() {
            super::init::create(repo_arg, true, None)?;
            errln!("created encrypted repository at {}", path.display());
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
            let (id, _) = select::find(&repo, spec, &SnapshotFilter::default(), None)
                .with_context(|| format!("finding parent snapshot {spec}"))?;
            ParentChoice::Snapshot(id)
        }
        (None, false) => ParentChoice::Auto,
    };
    let opts = BackupOptions {
        paths,
        host: args.host.clone().unwrap_or_else(backup::hostname),
        tags: args.tags.clone(),
        excludes,
        exclude_caches: args.exclude_caches,
        exclude_if_present: args
            .exclude_if_present
            .iter()
            .map(|n| n.as_os_str().as_bytes().to_vec())
            .collect(),
        exclude_larger_than: args.exclude_larger_than,
        one_file_system: args.one_file_system,
        parent,
        compression: args.compression,
        dry_run: args.dry_run,
        stdin: args.stdin_name.clone().map(|p| StdinSource {
            path: p,
            command: args.stdin_from_command.clone(),
        }),
        threads: args.threads,
        connections: repo_arg.connections(),
    };
    let reporter = Reporter::new("read", super::stderr_is_tty() && !args.json);
    let out = backup::backup(Arc::clone(&repo), &opts, &reporter);
    reporter.finish();
    let out = out.context("backup failed")?;
    let s = &out.snapshot.summary;
    if args.json {
        let mut v = json::snapshot(&out.id, &out.snapshot);
        v["dry_run"] = out.dry_run.into();
        if let Some(r) = repo_arg.requests() {
            v["requests"] = r.to_json();
        }
        outln!("{v}")?;
    } else if output::chatty() {
        let verb = if out.dry_run {
            "would be saved (dry run)"
        } else {
            "saved"
        };
        outln!("snapshot {} {verb}", out.id.short())?;
        outln!(
            "files: {} new, {} changed, {} unchanged; {}, {} other",
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            output::count(s.dirs, "directory", "directories"),
            s.other_entries
        )?;
        outln!(
            "read {} of {}; added {} to the repository ({} before compression)",
            bytes(s.bytes_read),
            bytes(s.total_bytes),
            bytes(s.bytes_added_stored),
            bytes(s.bytes_added_raw)
        )?;
        outln!("took {:.2}s", s.duration_ms as f64 / 1000.0)?;
    }
    if s.errors > 0 {
        errln!(
            "warning: {} could not be read (named above); the snapshot holds the rest",
            output::count(s.errors, "entry", "entries")
        );
        return Ok(super::EXIT_PARTIAL);
    }
    Ok(super::EXIT_OK)
}

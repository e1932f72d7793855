//! `rewind cat`.

use super::{FilterArgs, RepoArg};
use crate::format::tree::Kind;
use crate::repo::content::ReadAhead;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::BufWriter;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot: id, id prefix or `latest`
    pub snapshot: String,
    /// Path of a file in the snapshot
    pub path: OsString,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(repo: &RepoArg, args: Args) -> Result<u8> {
    crate::interrupt::install();
    let (repo, _lock) = repo.open_locked(false, "cat")?;
    let (_, snap) = repo
        .find_snapshot(&args.snapshot, &args.filter.filter())
        .with_context(|| format!("finding snapshot {}", args.snapshot))?;
    let path = Path::new(&args.path);
    let entry = repo
        .entry_at(&snap.tree, args.path.as_bytes())
        .with_context(|| format!("snapshot {}", args.snapshot))?;
    if entry.kind != Kind::File {
        bail!(
            "{} is a {:?}, not a regular file",
            path.display(),
            entry.kind
        );
    }
    let stdout = super::dump::raw_stdout()?;
    let out = BufWriter::with_capacity(1 << 20, &*stdout);
    crate::dump::write_content(&repo, &entry, path, out, ReadAhead::default())
        .with_context(|| format!("snapshot {}", args.snapshot))?;
    Ok(super::EXIT_OK)
}

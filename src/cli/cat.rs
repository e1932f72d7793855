//! `rewind cat`.

use super::{select, FilterArgs, RepoArg};
use crate::format::tree::Kind;
use crate::repo::content::ReadAhead;
use anyhow::{bail, Context, Result};
use std::io::BufWriter;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SNAP[:PATH]: a snapshot (id, id prefix or `latest`: the newest holding PATH) and the file in it
    pub snapshot: String,
    /// Path of a file in the snapshot (or give it as SNAP:PATH)
    pub path: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(repo: &RepoArg, args: Args) -> Result<u8> {
    crate::interrupt::install();
    let (repo, _lock) = repo.open_locked(false, "cat")?;
    let (id, snap, path) = select::find_with_path(
        &repo,
        &args.snapshot,
        args.path.as_deref(),
        &args.filter.filter(),
    )?;
    let entry = repo
        .entry_at(&snap.tree, path.as_bytes())
        .with_context(|| format!("snapshot {}", id.short()))?;
    if entry.kind != Kind::File {
        bail!(
            "{path} in snapshot {} is a {}, not a regular file",
            id.short(),
            crate::compare::kind_name(entry.kind)
        );
    }
    let stdout = super::dump::raw_stdout()?;
    let out = BufWriter::with_capacity(1 << 20, &*stdout);
    crate::dump::write_content(&repo, &entry, Path::new(&path), out, ReadAhead::default())
        .with_context(|| format!("snapshot {}", id.short()))?;
    Ok(super::EXIT_OK)
}

//! `rewind init`.

use super::password::FromPasswordArgs;
use super::RepoArg;
use crate::repo::{InitOptions, Repository};
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Make an unencrypted repository (public data, benchmarks): anyone who
    /// can read its files can read the backups
    #[arg(long)]
    pub insecure_no_encryption: bool,
    /// Take the chunker (and blob-id key) of this repository, so that data
    /// copied from it (`rewind copy`) deduplicates with new backups
    #[arg(long, value_name = "REPO")]
    pub copy_chunker_params_from: Option<PathBuf>,
    #[command(flatten)]
    pub from: FromPasswordArgs,
}

pub fn run(repo: &RepoArg, args: Args) -> Result<u8> {
    let source = match &args.copy_chunker_params_from {
        Some(p) => Some(super::open_other(p, &args.from)?),
        None => None,
    };
    let r = create(repo, !args.insecure_no_encryption, source.as_deref())?;
    outln!(
        "created {} repository {} at {}",
        if r.is_encrypted() {
            "encrypted"
        } else {
            "UNENCRYPTED"
        },
        short(&r.config().id),
        repo.location()
    )?;
    if r.is_encrypted() {
        outln!(
            "keep the password safe: without it the backups cannot be read (see `rewind key add`)"
        )?;
    }
    Ok(super::EXIT_OK)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// Create the repository `repo` names (a missing or empty directory), asking
/// for a new password when `encrypted`.
pub fn create(
    repo: &RepoArg,
    encrypted: bool,
    chunker_from: Option<&Repository>,
) -> Result<Repository> {
    let password = if encrypted {
        Some(repo.password(true)?)
    } else {
        None
    };
    let opts = InitOptions {
        password: password.as_ref().map(|p| p.bytes()),
        kdf: repo.kdf,
        chunker_from,
        cache_root: repo.cache_root(),
    };
    Repository::init(repo.backend()?, &opts)
        .with_context(|| format!("creating repository {}", repo.location()))
}

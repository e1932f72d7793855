//! `rewind init`.

use super::RepoArg;
use crate::backend::local::LocalBackend;
use crate::repo::Repository;
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(repo: &RepoArg, _args: Args) -> Result<u8> {
    let path = repo.path()?;
    let r = create(&path)?;
    println!("created repository {} at {}", r.config().id, path.display());
    Ok(super::EXIT_OK)
}

/// Create a repository in `path` (which may not exist, or be an empty directory).
pub fn create(path: &Path) -> Result<Repository> {
    if path.exists() && !path.is_dir() {
        anyhow::bail!("{} exists and is not a directory", path.display());
    }
    if path.join("config").exists() {
        anyhow::bail!("{} already holds a repository", path.display());
    }
    if path.is_dir() && std::fs::read_dir(path)?.next().is_some() {
        anyhow::bail!(
            "{} is not empty; a repository needs an empty directory",
            path.display()
        );
    }
    for dir in ["data", "index", "snapshots", "locks"] {
        std::fs::create_dir_all(path.join(dir))
            .with_context(|| format!("creating {}", path.join(dir).display()))?;
    }
    Repository::init(Arc::new(LocalBackend::new(path)))
        .with_context(|| format!("creating repository {}", path.display()))
}

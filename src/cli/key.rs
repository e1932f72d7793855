//! `rewind key`: the passwords of an encrypted repository.
//!
//! Each password is a key file wrapping the one master secret, so adding,
//! changing or removing a password re-encrypts nothing but that file.

use super::RepoArg;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List the key files (`current` marks the one that opened the repository)
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Add a password
    Add(NewPassword),
    /// Change the password that opens the repository (a new key file
    /// replaces the current one)
    Passwd(NewPassword),
    /// Remove a key file: never the last one, never the one in use
    Remove {
        /// The key's id (a unique prefix of it is enough)
        id: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct NewPassword {
    /// Read the new password from this file [default: ask on the terminal]
    #[arg(long, value_name = "FILE")]
    new_password_file: Option<PathBuf>,
}

impl NewPassword {
    fn read(&self) -> Result<crate::repo::Secret> {
        super::password::read(
            self.new_password_file.as_deref(),
            None,
            "REWIND_NEW_PASSWORD",
            "new password: ",
            true,
        )
    }
}

pub fn run(repo_arg: &RepoArg, cmd: Command) -> Result<u8> {
    let repo = repo_arg.open_unindexed()?;
    if !repo.is_encrypted() {
        bail!(
            "repository {} is not encrypted: it has no keys (to encrypt it, `rewind init` a new one and `rewind copy` into it)",
            repo.location()
        );
    }
    match cmd {
        Command::List { json } => {
            let keys = repo.keys()?;
            if json {
                outln!("{}", serde_json::to_string(&keys)?)?;
            } else {
                outln!("{:<3}{:<34}{:<27}{:<20}user", "", "id", "created", "host")?;
                for k in &keys {
                    outln!(
                        "{:<3}{:<34}{:<27}{:<20}{}",
                        if k.current { "*" } else { "" },
                        k.id,
                        k.created,
                        k.host,
                        k.username
                    )?;
                }
            }
        }
        Command::Add(new) => {
            let password = new.read()?;
            let id = repo.add_key(password.bytes(), repo_arg.kdf)?;
            outln!("added key {id}")?;
        }
        Command::Passwd(new) => {
            let password = new.read()?;
            let old = repo
                .current_key()
                .context("no key opened the repository")?
                .to_string();
            let id = repo.add_key(password.bytes(), repo_arg.kdf)?;
            repo.remove_old_key(&old).with_context(|| {
                format!("the new key {id} was added, but the old key {old} could not be removed")
            })?;
            outln!("changed the password: key {id} replaces key {old}")?;
        }
        Command::Remove { id } => {
            let keys = repo.keys()?;
            let matching: Vec<_> = keys.iter().filter(|k| k.id.starts_with(&id)).collect();
            let key = match matching.as_slice() {
                [] => bail!("no key {id}"),
                [k] => k.id.clone(),
                _ => bail!(
                    "key prefix {id} is ambiguous ({} keys match)",
                    matching.len()
                ),
            };
            repo.remove_key(&key)?;
            outln!("removed key {key}")?;
        }
    }
    Ok(super::EXIT_OK)
}

//! Where passwords come from: never the command line.
//!
//! In order: `--password-file F` (or `REWIND_PASSWORD_FILE`), then
//! `--password-command CMD` (or `REWIND_PASSWORD_COMMAND`: its standard
//! output), then `REWIND_PASSWORD`, then a prompt on the terminal. A file's
//! or command's final newline is not part of the password.

use crate::repo::Secret;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The flags that name a password source.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PasswordArgs {
    /// Read the repository password from this file
    #[arg(long, global = true, env = "REWIND_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Run this command (with sh -c) and use its output as the password
    #[arg(
        long,
        global = true,
        env = "REWIND_PASSWORD_COMMAND",
        value_name = "CMD"
    )]
    pub password_command: Option<String>,
}

/// A password source for another repository (`copy --from-repo`, `init
/// --copy-chunker-params-from`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FromPasswordArgs {
    /// Read the source repository's password from this file
    #[arg(long, env = "REWIND_FROM_PASSWORD_FILE", value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Run this command and use its output as the source repository's password
    #[arg(long, env = "REWIND_FROM_PASSWORD_COMMAND", value_name = "CMD")]
    pub from_password_command: Option<String>,
}

/// A password from the first source given: `file`, `command`, the variable
/// `var`, the terminal.
pub fn read(
    file: Option<&Path>,
    command: Option<&str>,
    var: &str,
    prompt: &str,
    confirm: bool,
) -> Result<Secret> {
    if let Some(f) = file {
        let bytes =
            std::fs::read(f).with_context(|| format!("reading password file {}", f.display()))?;
        return non_empty(
            strip_newline(bytes),
            &format!("password file {}", f.display()),
        );
    }
    if let Some(cmd) = command {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stderr(std::process::Stdio::inherit())
            .stdin(std::process::Stdio::inherit())
            .output()
            .context("running the password command")?;
        if !out.status.success() {
            bail!("the password command failed ({})", out.status);
        }
        return non_empty(strip_newline(out.stdout), "the password command's output");
    }
    if let Some(p) = std::env::var_os(var) {
        return non_empty(p.into_encoded_bytes(), var);
    }
    if !super::stdin_is_tty() && std::fs::File::open("/dev/tty").is_err() {
        bail!(
            "the repository is encrypted and no password was given: use --password-file, \
             --password-command, REWIND_PASSWORD or a terminal"
        );
    }
    let first =
        rpassword::prompt_password(prompt).context("reading the password from the terminal")?;
    if confirm {
        let again = rpassword::prompt_password("enter the password again: ")
            .context("reading the password from the terminal")?;
        if again != first {
            bail!("the passwords do not match");
        }
    }
    non_empty(first.into_bytes(), "the password")
}

fn strip_newline(mut b: Vec<u8>) -> Vec<u8> {
    if b.last() == Some(&b'\n') {
        b.pop();
        if b.last() == Some(&b'\r') {
            b.pop();
        }
    }
    b
}

fn non_empty(b: Vec<u8>, what: &str) -> Result<Secret> {
    let s = Secret::new(b);
    if s.bytes().is_empty() {
        bail!("{what} is empty");
    }
    Ok(s)
}

//! rewind: permission-exact, deduplicated snapshots of directory trees.
//!
//! # Layout
//!
//! - [`error`]: the one error type and its policy.
//! - [`format`](mod@format): bytes to types and back; its docs are the repository format.
//! - [`chunker`]: content-defined chunking over byte slices (FastCDC, or
//!   keyed for encrypted repositories).
//! - [`backend`]: where repository objects live, by kind and name (local
//!   directory, memory).
//! - [`repo`]: an open repository; [`repo::writer`] owns the write order,
//!   [`repo::content`] reads file content (ordered, read ahead),
//!   [`repo::walk`] is the one tree walker (explicit stack, any depth):
//!   restore, check, prune, stats, ls, copy, repair, find, dump and
//!   diff/verify walk through it.
//! - [`meta`]: file metadata through directory fds and `*at` calls.
//! - [`backup`]: the snapshot writer, as a pipeline.
//! - [`restore`]: a snapshot (or part of it) back onto disk.
//! - [`dump`]: a file's bytes, or a snapshot as a tar stream (pax, GNU sparse).
//! - [`check`]: proves the repository is whole.
//! - [`compare`]: a snapshot against another or a live tree (`diff`, `verify`).
//! - [`copy`]: snapshots from one repository into another.
//! - [`forget`]: the retention policy, a pure function over snapshot times.
//! - [`history`]: a path across snapshots: what counts as a change, and `find`.
//! - [`prune`]: removes what no snapshot needs, never a kept byte.
//! - [`repair`]: snapshots whose data is lost, rewritten without it.
//! - [`progress`]: how the library reports without printing.
//! - [`interrupt`]: SIGINT and SIGTERM as a request to stop cleanly.
//! - [`clock`]: local time for names and retention periods, and RFC 3339 for JSON.
//! - [`vfs`]: the mount's logic without fuser: layout, inodes, reads.
//! - [`fuse`]: the thin fuser adapter over [`vfs`].
//! - [`cli`]: the command line (the only user of clap).
//! - [`math`]: `pow` and `log2`, so the binary loads no libm.
//!
//! # Data flow
//!
//! ```text
//! backup:  walk -> parent? -> read (holes skipped) -> chunk -> hash -> dedup -> compress -> pack
//!          RepoWriter: packs, then index, then snapshot
//! restore: snapshot -> trees -> files created by one thread, content written by a pool
//! dump:    snapshot -> trees (walked ahead) -> content decoded ahead by a pool -> tar -> stdout
//! check:   config, index, snapshots, trees, blobs present; --read-data: every byte
//! ```
//!
//! # Example
//!
//! An encrypted repository opens with the password in `REWIND_PASSWORD` or
//! the file `REWIND_PASSWORD_FILE` names ([`repo::Repository::open`] takes
//! [`repo::OpenOptions`] for anything else).
//!
//! ```no_run
//! use std::sync::Arc;
//! let repo = Arc::new(rewind::repo::Repository::open_dir("/var/backups/rewind".as_ref())?);
//! let opts = rewind::backup::BackupOptions { paths: vec!["/srv/www".into()], ..Default::default() };
//! let out = rewind::backup::backup(repo, &opts, &rewind::progress::Silent)?;
//! println!("snapshot {}", out.id);
//! # Ok::<(), rewind::error::Error>(())
//! ```
//!
//! # Choices not made
//!
//! - No workspace: one crate, modules with a dependency rule (`format` and
//!   `chunker` use only `error`; only `cli` uses clap).
//! - Index files are not compressed: they are searched in place through a
//!   memory map, which matters more than their size.
//! - Hard links carry their content in every link (deduplicated, so free in
//!   the repository), so any one link restores on its own.

pub mod backend;
pub mod backup;
pub mod check;
pub mod chunker;
pub mod cli;
pub mod clock;
pub mod compare;
pub mod copy;
pub mod dump;
pub mod error;
pub mod forget;
pub mod format;
pub mod fuse;
pub mod history;
pub mod interrupt;
pub mod math;
pub mod meta;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod repo;
pub mod restore;
mod signal;
#[cfg(test)]
mod testing;
pub mod vfs;

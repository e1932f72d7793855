//! rewind's integration tests: one binary, one module per feature.

mod common;

// Backup options and commands: stdin, excludes, parents, ls, cat, stats.
mod backup_cli;
// diff: two snapshots, or a snapshot and the live tree; each kind of change alone.
mod diff;
// Bad input and faults: unreadable files, damage, full disk, kills.
mod faults;
// Backup then restore gives back every kind of entry and metadata.
mod fidelity;
// The FUSE mount, for real.
mod mount;
// Names and paths: raw bytes, beyond PATH_MAX.
mod names;
// A small tree and mutations that change one category each (for diff and verify).
mod one_change;
// Retention, prune, locks and index repair.
mod prune;
// Off-site repositories: S3 and SFTP on real servers on loopback, faults.
mod remote;
// scripts/restore-test.sh: restore or mount, verify, SQLite, PostgreSQL and MariaDB dumps, smoke.
mod restore_script;
// verify: a restore proven exact; each kind of difference found alone.
mod verify;

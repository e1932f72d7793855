//! rewind's integration tests: one binary, one module per feature.

mod common;

// Backup options and commands: stdin, excludes, parents, ls, cat, stats.
mod backup_cli;
// Bad input and faults: unreadable files, damage, full disk, kills.
mod faults;
// Backup then restore gives back every kind of entry and metadata.
mod fidelity;
// The FUSE mount, for real.
mod mount;
// Names and paths: raw bytes, beyond PATH_MAX.
mod names;

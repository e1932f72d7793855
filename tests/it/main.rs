//! rewind's integration tests: one binary, one module per feature.

mod common;

// Backup options and commands: stdin, excludes, parents, ls, cat, stats.
mod backup_cli;
// copy: snapshots between repositories with their own keys and formats.
mod copy;
// Backup options for cron: path lists, marker files, size limits, tags, missing paths.
mod cli_backup;
// A closed stdout ends every command quietly, keeping its outcome's exit code.
mod cli_pipes;
// Scripting: JSON times and names, tag, forget by id, dry runs beside a mount, usage errors.
mod cli_scripting;
// Which snapshot a command line names: latest:PATH, filters, ambiguous prefixes.
mod cli_select;
// SIGINT and SIGTERM stop backup and check cleanly.
mod cli_signals;
// Snapshots deeper than a thread's stack: stats, check, prune walk them (issue 13).
mod deep_trees;
// diff: two snapshots, or a snapshot and the live tree; each kind of change alone.
mod diff;
// dump: tar streams GNU tar and bsdtar extract to the source; sparse, names, errors, memory.
mod dump;
// find: paths across snapshots, patterns, changed flags, JSON, exit codes.
mod find;
// Bad input and faults: unreadable files, damage, full disk, kills.
mod faults;
// Backup then restore gives back every kind of entry and metadata.
mod fidelity;
// Golden repositories of each format: read, restored, mounted, written.
mod golden;
// The FUSE mount, for real.
mod mount;
// Crafted hostile repositories under tests/data/crafted: check, ls, restore, mount.
mod crafted;
// Names and paths: raw bytes, beyond PATH_MAX.
mod names;
// A small tree and mutations that change one category each (for diff and verify).
mod one_change;
// Retention, prune, locks and index repair.
mod prune;
// One test for each promise of the README's user guide that had none.
mod promises;
// Off-site repositories: S3 and SFTP on real servers on loopback, faults.
mod remote;
// A prune racing a backup it cannot see: other pid namespaces, suspended, unlocked.
mod races;
// repair snapshots: lost and damaged data cut out, the rest kept, prune runs again.
mod repair;
// Prune and bundled frames of small files.
mod prune_bundles;
// Restore: hard links, --delete, --exclude, --dry-run, a changing target, depth, signals.
mod restore;
// An encrypted repository tampered with: every object kind flipped, cut,
// swapped; foreign and damaged keys; wrong passwords.
mod tamper;
// scripts/restore-test.sh: restore or mount, verify, SQLite, PostgreSQL and MariaDB dumps, smoke.
mod restore_script;
// verify: a restore proven exact; each kind of difference found alone.
mod verify;

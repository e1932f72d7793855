//! The README's user guide, promise by promise: each test states the
//! sentence it holds the binary to.

// Owners mapped by name on restore, in a mount namespace with other
// /etc/passwd and /etc/group; --numeric-owner; --include.
mod restoring;
// Backing up: where the repository is, --parent, --compression, --threads,
// ** excludes, CACHEDIR.TAG's signature, a changed inode.
mod backing_up;
// Retention, prune, locks and check: forget's groups and filters, a gap
// week, --max-unused, the index merge, prune's memory, unlock --all,
// --read-data-subset, a killed backup's packs.
mod retention;
// Selecting snapshots: the 4-digit prefix rule on every command; stats SNAP.
mod selecting;
// Mounting: the second Ctrl-C on a busy mount, --lock-wait.
mod mounting;
// Scripted restore tests: --host/--tag, pinning, --verify-ignore, --no-verify.
mod restore_script;

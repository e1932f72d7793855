//! The repository format: bytes to types and back. No file system, no backend.
//!
//! These module docs are the specification. Read them in this order:
//!
//! 1. Terminology, layout, formats and the threat model (below).
//! 2. [`codec`]: the envelope every object starts with, and the frames every
//!    stored byte passes through (plaintext or encrypted).
//! 3. [`crypto`] and [`key`]: the master secret, the keys derived from it, the
//!    key files that wrap it, and padding.
//! 4. [`config`], [`pack`], [`index`], [`tree`], [`snapshot`]: one object kind
//!    each; locks in [`crate::repo::lock`].
//! 5. Write ordering, and what makes a prune racing a backup harmless (below).
//!
//! # Terminology
//!
//! - *Blob*: a unit of stored content, named by the keyed BLAKE3 of its
//!   plaintext. A *data* blob is a chunk of a file; a *tree* blob is one directory.
//! - *Chunk*: a piece of a file cut by content-defined chunking
//!   ([`crate::chunker`]), so an insert inside a file moves only the cut points
//!   around it.
//! - *Pack*: an immutable object of many blobs plus a header listing them.
//! - *Index*: sorted tables from blob id to pack, offset and lengths.
//! - *Snapshot*: a small manifest naming a root tree.
//!
//! # Layout
//!
//! Every object is stored whole and never changed; a backend only puts,
//! gets (whole or a range), lists and deletes them ([`crate::backend`]):
//!
//! ```text
//! config              format, repository id, chunker parameters (encrypted in format 2)
//! keys/<id>           key files: the master secret wrapped by a password (format 2)
//! data/ab/<pack-id>   packs, ~16 MiB each, under the first two hex digits of their id
//! index/<index-id>    index files
//! snapshots/<snap-id> snapshot manifests
//! locks/<id>          locks: holder, identity, heartbeat (crate::repo::lock)
//! ```
//!
//! Objects are only added, and removed by prune (locks excepted: their
//! holders rewrite them with each heartbeat). A local directory writes each
//! under a temporary name (`.tmp-*`), fsyncs, renames it into place and
//! fsyncs the directory; readers ignore temporary names.
//!
//! # Formats
//!
//! - **Format 1** (every repository of the first release, and `init
//!   --insecure-no-encryption`): plaintext frames, the blob-id key in `config`,
//!   FastCDC with its public gear table; objects named by the BLAKE3 of their
//!   bytes.
//! - **Format 2** (the default): every object but the key files is encrypted
//!   and authenticated (XChaCha20-Poly1305), each frame bound to its object's
//!   kind, id and offset; blob and object ids are keyed hashes; the chunker is
//!   keyed; every frame is padded. Format 1 repositories stay readable and
//!   writable (backups, prune) with the format-1 objects they hold.
//!
//! # Threat model (format 2)
//!
//! *Who*: anyone who can read the repository (the storage provider, a thief
//! of the backup disk, another local user, a host that shares the bucket
//! without the password), and anyone who can write it (the same, or bit rot).
//!
//! *What they cannot do*, without a password: read file contents, names,
//! metadata, sizes of files, the directory structure, snapshot times, hosts,
//! paths or tags; tell whether a file they know is in the backup from its
//! chunk boundaries (the chunker is keyed, see [`crate::chunker`]); change,
//! swap, move, truncate or replay any object or frame without an
//! authentication error naming the object (`check` names it; restore names
//! the files that need it and restores everything else; the mount answers
//! EIO for those files only).
//!
//! *What they still learn*: the number and sizes of objects and when they
//! were written (so roughly how much each backup added, and when backups
//! run); at each cut, that the keyed gear hash there passed the candidate
//! filter (a few bits about the chunker's gear table per cut, never about
//! its PRF key: [`crate::chunker`]); each blob's padded size (Padmé plus a keyed jitter: about
//! `log2 log2` of the size's bits); which blobs a snapshot shares with
//! another (deduplication is visible: an attacker who can plant a file on a
//! backed-up machine sees whether its chunks are stored anew); which objects
//! each backup reads. A writer can delete objects (a backup is lost, which
//! `check` reports), and can replay an old snapshot manifest that a prune
//! removed (it authenticates: it was genuine once; `check` then reports its
//! missing data). Anyone with a password (or the master secret) reads and
//! writes everything; key files do not separate hosts.
//!
//! # Write ordering
//!
//! - Packs *must* be durable before an index file that names them is written.
//! - Index files *must* be durable before a snapshot whose tree reaches their
//!   blobs is written.
//! - So a crash at any moment leaves at most packs (and index files) that no
//!   snapshot references, never a snapshot that points at missing data.
//! - [`crate::repo::writer::RepoWriter`] is the one type that owns this order.
//!
//! # Prune and backups running at once
//!
//! Prune deletes packs no snapshot needs, under an exclusive lock. A backup
//! that a prune does not see (its lock removed by `unlock`, judged stale
//! while it was suspended, or on storage that failed its heartbeats) may
//! have deduplicated against those packs. Three rules make that harmless by
//! construction, whatever the locks say:
//!
//! 1. Prune *must* replace the index files that name a pack before it
//!    deletes the pack, and *must* check, before each deletion, that its own
//!    lock is still there and was refreshed within the stale age (so a prune
//!    suspended past the stale age deletes nothing when it wakes).
//! 2. A writer deduplicates only against blobs whose pack it saw listed when
//!    it started, and *must* check, before it writes a snapshot, that its own
//!    lock still holds.
//! 3. After writing its snapshot, a writer *must* wait until no live
//!    exclusive lock is held (a prune that listed the snapshots before this
//!    one existed has ended, or gone stale and so deletes nothing more), then
//!    confirm that every pack it wrote exists and, if any index file it saw
//!    at its start is gone, that every blob the snapshot references is
//!    indexed in a pack that exists. If not, it removes the snapshot and
//!    fails ([`crate::repo::writer::RepoWriter::commit`]).
//!
//! A prune that lists the snapshots after a backup's snapshot is written
//! keeps its data; one that listed them before is waited for (rule 3), and
//! its deletions are found (rules 1 and 3).
//!
//! # Changes per version
//!
//! - Format 1: first version.
//! - Format 2: encryption (frames, keys, padding), keyed ids and chunker,
//!   `L` lock objects with holder identities, snapshots checked against their
//!   ids on every read (also in format 1), random pack ids bound into every
//!   frame, index files at most 2^20 records each when prune writes them.
//!   Later, without a version change: `config`'s `candidate_bits` (the keyed
//!   chunker asks its PRF only at candidate positions; absent, it asks at
//!   every position, as the format-2 repositories made before it do).

pub mod aead;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod id;
pub mod index;
pub mod key;
pub mod pack;
pub mod snapshot;
pub mod tree;

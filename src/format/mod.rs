//! The repository format: bytes to types and back. No file system, no backend.
//!
//! These module docs are the specification. Read them in this order:
//!
//! 1. Terminology and layout (below).
//! 2. [`codec`]: the envelope every file starts with, and the frames every
//!    stored byte passes through.
//! 3. [`config`], [`pack`], [`index`], [`tree`], [`snapshot`]: one file kind each.
//! 4. Write ordering (below).
//!
//! # Terminology
//!
//! - *Blob*: a unit of stored content, named by the keyed BLAKE3 of its
//!   plaintext. A *data* blob is a chunk of a file; a *tree* blob is one directory.
//! - *Chunk*: a piece of a file cut by content-defined chunking (FastCDC), so an
//!   insert inside a file moves only the cut points around it.
//! - *Pack*: an immutable file of many blobs plus a header listing them.
//! - *Index*: sorted tables from blob id to pack, offset and lengths.
//! - *Snapshot*: a small manifest naming a root tree.
//!
//! # Layout
//!
//! ```text
//! config              format version, repository id, hash key, chunker parameters
//! data/ab/<pack-id>   packs, ~16 MiB each, under the first two hex digits of their id
//! index/<index-id>    index files
//! snapshots/<snap-id> snapshot manifests
//! locks/<id>          JSON lock files: host, pid, command, heartbeat (repo::lock)
//! ```
//!
//! Files are never modified once written: only added, and removed by prune
//! (lock files excepted: their holders rewrite them with each heartbeat).
//! Files are written under a temporary name (`.tmp-*`) in the same directory,
//! fsynced, renamed into place, and the directory fsynced. Readers ignore
//! temporary names.
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
//! # Changes per version
//!
//! - Format 1 (this): first version.

pub mod codec;
pub mod config;
pub mod id;
pub mod index;
pub mod pack;
pub mod snapshot;
pub mod tree;

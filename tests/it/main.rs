//! rewind's integration tests: one binary, one module per feature.

mod common;

// Backup then restore gives back every kind of entry and metadata.
mod fidelity;

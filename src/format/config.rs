//! The `config` file: what a reader must know before it reads anything else.
//!
//! | part     | content                                   |
//! |----------|-------------------------------------------|
//! | envelope | `RWND` `C` version 1                      |
//! | body     | UTF-8 JSON of [`Config`], not a codec frame (the codec's settings live here) |
//!
//! `config` is written once by `init` and never changed. A reader *must* refuse
//! a `format` it does not know.

use super::codec::{envelope, open_envelope, FileKind};
use super::id::to_hex;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The repository format this build writes.
pub const FORMAT: u32 = 1;

/// Repository-wide parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Repository format version.
    pub format: u32,
    /// Random id of this repository (hex).
    pub id: String,
    /// Key of the keyed BLAKE3 that names blobs (hex). Unencrypted
    /// repositories keep it here; encrypted ones will keep it wrapped in `keys/`.
    pub hash_key: String,
    /// Content-defined chunking parameters (FastCDC 2020, normalization 1).
    pub chunker: ChunkerParams,
    /// Default zstd level for new blobs.
    pub compression: i32,
    /// Target size of a pack file in bytes.
    pub pack_size: u32,
}

/// FastCDC sizes in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        // Measured on a 100 MB SQL dump with 1% of rows changed: avg 512 KiB
        // re-stored 15.9 MiB, avg 128 KiB 13.1 MiB, for 5% more on the first
        // backup. Small files are one chunk either way.
        ChunkerParams {
            min: 64 * 1024,
            avg: 128 * 1024,
            max: 1024 * 1024,
        }
    }
}

impl Config {
    /// A new configuration with fresh random id and key.
    pub fn generate() -> Result<Self> {
        let mut rnd = [0u8; 48];
        getrandom(&mut rnd)?;
        Ok(Config {
            format: FORMAT,
            id: to_hex(&rnd[..16]),
            hash_key: to_hex(&rnd[16..]),
            chunker: ChunkerParams::default(),
            compression: 3,
            pack_size: 16 << 20,
        })
    }

    /// The hash key as bytes.
    pub fn key(&self) -> Result<[u8; 32]> {
        super::id::BlobId::from_hex(&self.hash_key)
            .map(|id| id.0)
            .map_err(|_| Error::corrupt("config", "hash_key is not 64 hex digits"))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = envelope(FileKind::Config).to_vec();
        out.extend_from_slice(&serde_json::to_vec_pretty(self).expect("config serializes"));
        out.push(b'\n');
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let body = open_envelope(bytes, FileKind::Config, "config")?;
        let cfg: Config = serde_json::from_slice(body).map_err(|e| Error::corrupt("config", e))?;
        if cfg.format != FORMAT {
            return Err(Error::InvalidInput(format!(
                "config: unknown repository format {} (this rewind reads format {FORMAT})",
                cfg.format
            )));
        }
        let c = cfg.chunker;
        if !(64..=c.avg).contains(&c.min)
            || c.avg > c.max
            || c.max > 16 << 20
            || !c.avg.is_power_of_two()
        {
            return Err(Error::corrupt("config", "chunker parameters out of range"));
        }
        cfg.key()?;
        Ok(cfg)
    }
}

/// Fill `buf` from the kernel's random source.
pub fn getrandom(buf: &mut [u8]) -> Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| Error::io("/dev/urandom", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let c = Config::generate().unwrap();
        assert_eq!(Config::decode(&c.encode()).unwrap(), c);
        let mut future = c.clone();
        future.format = 9;
        let err = Config::decode(&future.encode()).unwrap_err().to_string();
        assert!(err.contains("unknown repository format 9"), "{err}");
    }
}

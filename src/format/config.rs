//! The `config` object: what a reader must know before it reads anything else.
//!
//! | format | envelope            | body                                                    |
//! |--------|---------------------|---------------------------------------------------------|
//! | 1      | `RWND` `C` version 1 | UTF-8 JSON of [`Config`], in plaintext, with `hash_key` |
//! | 2      | `RWND` `C` version 2 | one encrypted frame of the JSON, bound to the repository id (from the key file that opened it) |
//!
//! Its JSON is at most [`MAX_JSON`] bytes. `config` is written once by `init`
//! and never changed. A reader *must*
//! refuse a `format` it does not know, and a format-2 config is only read
//! with a key ([`key`](super::key)): its parameters are authenticated like
//! everything else. Format 1 is the unencrypted format (`init
//! --insecure-no-encryption`, and every repository of the first release).

use super::codec::{envelope, open_envelope, Aad, Codec, FileKind};
use super::id::to_hex;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The unencrypted repository format.
pub const FORMAT_PLAIN: u32 = 1;
/// The encrypted repository format.
pub const FORMAT_ENCRYPTED: u32 = 2;

/// The AEAD of a format-2 repository, as `config` names it.
pub const ENCRYPTION: &str = "xchacha20poly1305";

/// `candidate_bits` of a new encrypted repository: one position in 16 is
/// a candidate (the PRF runs on a sixteenth of the positions).
pub const CANDIDATE_BITS: u32 = 4;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The longest config JSON a reader accepts.
pub const MAX_JSON: usize = 64 << 10;

/// Repository-wide parameters. Its `Debug` leaves out the keys it may hold.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Repository format version: [`FORMAT_PLAIN`] or [`FORMAT_ENCRYPTED`].
    pub format: u32,
    /// Random id of this repository (hex; 32 digits in format 1, 64 in format 2).
    pub id: String,
    /// Format 1: key of the keyed BLAKE3 that names blobs (hex). Format 2
    /// derives it from the master secret and has none here.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash_key: String,
    /// Format 2: the AEAD ([`ENCRYPTION`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub encryption: String,
    /// Content-defined chunking parameters.
    pub chunker: ChunkerParams,
    /// Format 2, only in a repository made with `init
    /// --copy-chunker-params-from`: the other repository's chunker key and
    /// blob-id key (hex), so that its chunks and blob ids are this one's and
    /// copies deduplicate. Empty: derived from this repository's master secret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chunker_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub blob_key: String,
    /// Format 2: cut with format 1's unkeyed FastCDC (copied from a format-1
    /// repository, for migrating it: chunk boundaries then say more about
    /// the content, as in format 1).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unkeyed_chunker: bool,
    /// Format 2, keyed chunker: how many top bits of the gear hash must be
    /// zero before the PRF is asked whether to cut ([`crate::chunker`]).
    /// Absent (0) in repositories made before it existed: the PRF decides
    /// at every position, as it always will in them (their chunks keep
    /// deduplicating). [`CANDIDATE_BITS`] in new ones.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub candidate_bits: u32,
    /// Default zstd level for new blobs.
    pub compression: i32,
    /// Target size of a pack file in bytes.
    pub pack_size: u32,
}

/// Chunk sizes in bytes. Format 1 cuts with FastCDC 2020 (normalization 1);
/// format 2 with the keyed chunker of [`crate::chunker`].
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

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = |k: &str| if k.is_empty() { "none" } else { "(secret)" };
        f.debug_struct("Config")
            .field("format", &self.format)
            .field("id", &self.id)
            .field("hash_key", &held(&self.hash_key))
            .field("encryption", &self.encryption)
            .field("chunker", &self.chunker)
            .field("chunker_key", &held(&self.chunker_key))
            .field("blob_key", &held(&self.blob_key))
            .field("unkeyed_chunker", &self.unkeyed_chunker)
            .field("candidate_bits", &self.candidate_bits)
            .field("compression", &self.compression)
            .field("pack_size", &self.pack_size)
            .finish()
    }
}

impl Config {
    /// A new configuration with a fresh random id (and, for format 1, hash key).
    pub fn generate(encrypted: bool) -> Result<Self> {
        let mut rnd = [0u8; 64];
        getrandom(&mut rnd)?;
        Ok(Config {
            format: if encrypted {
                FORMAT_ENCRYPTED
            } else {
                FORMAT_PLAIN
            },
            id: if encrypted {
                to_hex(&rnd[..32])
            } else {
                to_hex(&rnd[..16])
            },
            hash_key: if encrypted {
                String::new()
            } else {
                to_hex(&rnd[32..])
            },
            encryption: if encrypted {
                ENCRYPTION.into()
            } else {
                String::new()
            },
            chunker: ChunkerParams::default(),
            chunker_key: String::new(),
            blob_key: String::new(),
            unkeyed_chunker: false,
            candidate_bits: if encrypted { CANDIDATE_BITS } else { 0 },
            compression: 3,
            pack_size: 16 << 20,
        })
    }

    pub fn is_encrypted(&self) -> bool {
        self.format == FORMAT_ENCRYPTED
    }

    /// The format-1 hash key as bytes.
    pub fn key(&self) -> Result<[u8; 32]> {
        super::id::BlobId::from_hex(&self.hash_key)
            .map(|id| id.0)
            .map_err(|_| Error::corrupt("config", "hash_key is not 64 hex digits"))
    }

    /// The repository id as the 32 bytes format 2's associated data binds.
    pub fn id_bytes(id: &str) -> Result<[u8; 32]> {
        super::id::BlobId::from_hex(id)
            .map(|i| i.0)
            .map_err(|_| Error::corrupt("config", "repository id is not 64 hex digits"))
    }

    /// The stored object: plaintext for format 1, sealed with `codec` (this
    /// repository's) for format 2.
    pub fn encode(&self, codec: &Codec) -> Result<Vec<u8>> {
        let json = serde_json::to_vec_pretty(self).expect("config serializes");
        if !self.is_encrypted() {
            let mut out = envelope(FileKind::Config, 1).to_vec();
            out.extend_from_slice(&json);
            out.push(b'\n');
            return Ok(out);
        }
        let mut out = codec.envelope(FileKind::Config).to_vec();
        let aad = Aad::whole(FileKind::Config, Self::id_bytes(&self.id)?);
        codec.encode_into(&json, &aad, &mut out);
        Ok(out)
    }

    /// The format version of a stored config, without decoding it.
    pub fn stored_version(bytes: &[u8]) -> Result<u8> {
        Ok(open_envelope(bytes, FileKind::Config, "config")?.0)
    }

    /// Decode a format-1 config.
    pub fn decode_plain(bytes: &[u8]) -> Result<Self> {
        let (version, body) = open_envelope(bytes, FileKind::Config, "config")?;
        if version != 1 {
            return Err(Error::corrupt(
                "config",
                "an encrypted config read as plaintext",
            ));
        }
        Self::parse(body, FORMAT_PLAIN)
    }

    /// Decode a format-2 config with the codec of a key that claims
    /// repository `id`.
    pub fn decode_sealed(bytes: &[u8], codec: &Codec, id: &str) -> Result<Self> {
        let body = codec.open(bytes, FileKind::Config, "config")?;
        let aad = Aad::whole(FileKind::Config, Self::id_bytes(id)?);
        let json = codec.decode_at_most(body, MAX_JSON, &aad, "config")?;
        let cfg = Self::parse(&json, FORMAT_ENCRYPTED)?;
        if cfg.id != id {
            return Err(Error::corrupt(
                "config",
                "names another repository than its key",
            ));
        }
        Ok(cfg)
    }

    fn parse(json: &[u8], expect: u32) -> Result<Self> {
        if json.len() > MAX_JSON {
            return Err(Error::corrupt("config", "longer than any config"));
        }
        let cfg: Config = serde_json::from_slice(json).map_err(|e| Error::corrupt("config", e))?;
        if cfg.format != FORMAT_PLAIN && cfg.format != FORMAT_ENCRYPTED {
            return Err(Error::UnsupportedVersion(format!(
                "config: unknown repository format {} (this rewind reads formats 1 and 2)",
                cfg.format
            )));
        }
        if cfg.format != expect {
            return Err(Error::corrupt(
                "config",
                format!("says format {} in a format-{expect} envelope", cfg.format),
            ));
        }
        let c = cfg.chunker;
        if !(64..=c.avg).contains(&c.min)
            || c.avg > c.max
            || c.max > 16 << 20
            || !c.avg.is_power_of_two()
        {
            return Err(Error::corrupt("config", "chunker parameters out of range"));
        }
        if cfg.candidate_bits != 0
            && (!cfg.is_encrypted()
                || cfg.unkeyed_chunker
                || cfg.candidate_bits > 8
                || cfg.candidate_bits + 2 > c.avg.ilog2())
        {
            return Err(Error::corrupt("config", "candidate_bits out of range"));
        }
        if !(-7..=22).contains(&cfg.compression) {
            return Err(Error::corrupt("config", "compression level out of range"));
        }
        if !(1 << 16..=1 << 30).contains(&cfg.pack_size) {
            return Err(Error::corrupt("config", "pack size out of range"));
        }
        let id_len = if cfg.is_encrypted() { 64 } else { 32 };
        if cfg.id.len() != id_len || !cfg.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::corrupt("config", "repository id is malformed"));
        }
        for k in [&cfg.chunker_key, &cfg.blob_key] {
            if !k.is_empty() && super::id::BlobId::from_hex(k).is_err() {
                return Err(Error::corrupt("config", "a copied key is malformed"));
            }
        }
        if !cfg.is_encrypted()
            && (!cfg.chunker_key.is_empty() || !cfg.blob_key.is_empty() || cfg.unkeyed_chunker)
        {
            return Err(Error::corrupt("config", "format 1 has no copied keys"));
        }
        if cfg.is_encrypted() {
            if cfg.encryption != ENCRYPTION {
                return Err(Error::UnsupportedVersion(format!(
                    "config: unknown encryption {:?} (this rewind knows {ENCRYPTION})",
                    cfg.encryption
                )));
            }
        } else {
            cfg.key()?;
        }
        Ok(cfg)
    }
}

/// Fill `buf` from the kernel's random source.
pub fn getrandom(buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the kernel writes at most the given length into the buffer.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("getrandom", e));
        }
        done += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::crypto::{MasterKey, Subkeys, MASTER_LEN};

    #[test]
    fn round_trip_and_version_check() {
        let c = Config::generate(false).unwrap();
        let bytes = c.encode(&Codec::new(3)).unwrap();
        assert_eq!(Config::decode_plain(&bytes).unwrap(), c);
        let mut future = c.clone();
        future.format = 9;
        let bytes = future.encode(&Codec::new(3)).unwrap();
        let err = Config::decode_plain(&bytes).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion(_)), "{err}");
        assert!(
            err.to_string().contains("unknown repository format 9"),
            "{err}"
        );
    }

    #[test]
    fn sealed_config_round_trips_and_is_bound_to_its_id() {
        let codec = Codec::encrypted(3, &Subkeys::derive(&MasterKey([3; MASTER_LEN])));
        let c = Config::generate(true).unwrap();
        let bytes = c.encode(&codec).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("chunker"));
        assert_eq!(Config::decode_sealed(&bytes, &codec, &c.id).unwrap(), c);
        let other = Config::generate(true).unwrap();
        assert!(Config::decode_sealed(&bytes, &codec, &other.id).is_err());
        assert!(Config::decode_plain(&bytes).is_err());
        assert_eq!(Config::stored_version(&bytes).unwrap(), 2);
    }

    /// New encrypted repositories filter candidates; a config without the
    /// field (made before it) reads as 0; out-of-range values are refused.
    #[test]
    fn candidate_bits_default_and_range() {
        let codec = Codec::encrypted(3, &Subkeys::derive(&MasterKey([3; MASTER_LEN])));
        let c = Config::generate(true).unwrap();
        assert_eq!(c.candidate_bits, CANDIDATE_BITS);
        assert_eq!(Config::generate(false).unwrap().candidate_bits, 0);
        let mut old = c.clone();
        old.candidate_bits = 0;
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("candidate_bits"), "{json}");
        let bytes = old.encode(&codec).unwrap();
        assert_eq!(Config::decode_sealed(&bytes, &codec, &c.id).unwrap(), old);
        for bad in [9, 16] {
            let mut b = c.clone();
            b.candidate_bits = bad;
            let bytes = b.encode(&codec).unwrap();
            let err = Config::decode_sealed(&bytes, &codec, &c.id).unwrap_err();
            assert!(err.to_string().contains("candidate_bits"), "{err}");
        }
        let mut plain = Config::generate(false).unwrap();
        plain.candidate_bits = 4;
        let bytes = plain.encode(&Codec::new(3)).unwrap();
        assert!(Config::decode_plain(&bytes).is_err());
    }

    /// `Debug` never shows a key: the copied chunker and blob-id keys of a
    /// format-2 config, nor a format-1 hash key.
    #[test]
    fn debug_hides_the_keys() {
        let mut c = Config::generate(true).unwrap();
        c.chunker_key = "ab".repeat(32);
        c.blob_key = "cd".repeat(32);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("abab") && !shown.contains("cdcd"),
            "{shown}"
        );
        let plain = Config::generate(false).unwrap();
        let shown = format!("{plain:?}");
        assert!(!shown.contains(&plain.hash_key), "{shown}");
        assert!(shown.contains(&plain.id), "{shown}");
    }
}

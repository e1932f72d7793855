//! The codec every stored byte passes through, and the envelope every file starts with.
//!
//! # Envelope
//!
//! Every file in a repository starts with 8 bytes:
//!
//! | offset | size | field    | value                                             |
//! |--------|------|----------|---------------------------------------------------|
//! | 0      | 4    | magic    | `RWND`                                            |
//! | 4      | 1    | kind     | `C` config, `P` pack, `I` index, `S` snapshot, `K` key |
//! | 5      | 1    | version  | format version of this file kind, now `1`         |
//! | 6      | 2    | reserved | zero                                              |
//!
//! A reader *must* refuse a file whose magic or kind does not match, and a
//! version it does not know (naming the file and the version).
//!
//! # Frames
//!
//! Everything after the envelope (except the plaintext `config`) is one or more
//! *frames*: the output of [`Codec::encode`]. A frame is one scheme byte and a
//! payload:
//!
//! | scheme | payload                                                   |
//! |--------|-----------------------------------------------------------|
//! | `0`    | the plaintext, stored raw                                 |
//! | `1`    | one zstd frame of the plaintext                           |
//!
//! The writer stores raw when compression would not save at least 1/64 of the
//! bytes. Readers always know (or cap) the plaintext length before they
//! decompress: the index records it for blobs, and whole files are capped at
//! [`MAX_FILE_PLAIN`]. Encryption, when it comes, is a further scheme wrapping
//! these (AEAD over the frame), chosen per repository at `init`.

use crate::error::{Error, Result};
use std::cell::RefCell;

/// Length of the envelope at the start of every file.
pub const ENVELOPE_LEN: usize = 8;

/// The largest plaintext a whole-file frame (snapshot, pack header) may claim.
pub const MAX_FILE_PLAIN: usize = 1 << 30;

/// What a repository file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Config,
    Pack,
    Index,
    Snapshot,
    Key,
}

impl FileKind {
    fn tag(self) -> u8 {
        match self {
            FileKind::Config => b'C',
            FileKind::Pack => b'P',
            FileKind::Index => b'I',
            FileKind::Snapshot => b'S',
            FileKind::Key => b'K',
        }
    }

    /// The format version this build writes and reads for the kind.
    pub fn version(self) -> u8 {
        1
    }
}

/// The 8 envelope bytes for a file of `kind`.
pub fn envelope(kind: FileKind) -> [u8; ENVELOPE_LEN] {
    [b'R', b'W', b'N', b'D', kind.tag(), kind.version(), 0, 0]
}

/// Check the envelope of `bytes` (named `object` in errors) and return the rest.
pub fn open_envelope<'a>(bytes: &'a [u8], kind: FileKind, object: &str) -> Result<&'a [u8]> {
    if bytes.len() < ENVELOPE_LEN || &bytes[..4] != b"RWND" {
        return Err(Error::corrupt(object, "not a rewind file (bad magic)"));
    }
    if bytes[4] != kind.tag() {
        return Err(Error::corrupt(
            object,
            format!(
                "expected a {kind:?} file, found kind {:?}",
                bytes[4] as char
            ),
        ));
    }
    if bytes[5] != kind.version() {
        return Err(Error::InvalidInput(format!(
            "{object}: unknown format version {} (this rewind reads version {})",
            bytes[5],
            kind.version()
        )));
    }
    Ok(&bytes[ENVELOPE_LEN..])
}

const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// Compression settings. The slot where encryption goes next.
#[derive(Clone, Debug)]
pub struct Codec {
    /// zstd level; 0 stores everything raw.
    pub level: i32,
}

impl Codec {
    pub fn new(level: i32) -> Self {
        Codec { level }
    }

    /// Encode `plain` into a frame appended to `out`; returns the frame length.
    pub fn encode_into(&self, plain: &[u8], out: &mut Vec<u8>) -> usize {
        let start = out.len();
        if self.level != 0 && plain.len() >= 64 {
            let kept = compress_to(self.level, plain, |frame| {
                if frame.len() + frame.len() / 64 + 1 < plain.len() {
                    out.push(ZSTD);
                    out.extend_from_slice(frame);
                    true
                } else {
                    false
                }
            });
            if kept {
                return out.len() - start;
            }
        }
        out.push(RAW);
        out.extend_from_slice(plain);
        out.len() - start
    }

    /// Encode `plain` as one frame.
    pub fn encode(&self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(plain, &mut out);
        out
    }

    /// Encode without compression: used where readers map the plaintext directly
    /// (index files).
    pub fn encode_raw(&self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() + 1);
        out.push(RAW);
        out.extend_from_slice(plain);
        out
    }

    /// Decode one frame. `expect_len` is the exact plaintext length when known
    /// (blobs); otherwise the plaintext is capped at `MAX_FILE_PLAIN`.
    pub fn decode(&self, frame: &[u8], expect_len: Option<usize>, object: &str) -> Result<Vec<u8>> {
        let (&scheme, payload) = frame
            .split_first()
            .ok_or_else(|| Error::corrupt(object, "empty frame"))?;
        let plain = match scheme {
            RAW => payload.to_vec(),
            ZSTD => {
                let cap = match expect_len {
                    Some(n) => n,
                    None => match zstd::zstd_safe::get_frame_content_size(payload) {
                        Ok(Some(n)) if n <= MAX_FILE_PLAIN as u64 => n as usize,
                        _ => return Err(Error::corrupt(object, "zstd frame without a sane size")),
                    },
                };
                decompress(payload, cap)
                    .map_err(|e| Error::corrupt(object, format!("zstd: {e}")))?
            }
            other => {
                return Err(Error::corrupt(
                    object,
                    format!("unknown frame scheme {other}"),
                ))
            }
        };
        if let Some(n) = expect_len {
            if plain.len() != n {
                return Err(Error::corrupt(
                    object,
                    format!("decoded {} bytes, expected {n}", plain.len()),
                ));
            }
        }
        Ok(plain)
    }

    /// The plaintext of a raw frame, without copying (index files).
    pub fn raw_payload<'a>(&self, frame: &'a [u8], object: &str) -> Result<&'a [u8]> {
        match frame.split_first() {
            Some((&RAW, payload)) => Ok(payload),
            _ => Err(Error::corrupt(object, "expected an uncompressed frame")),
        }
    }
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>, Vec<u8>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Compress with a per-thread context and scratch buffer (contexts are costly
/// to create per blob, and a fresh zeroed buffer per blob costs a memset of
/// its size), then hand the frame to `take`. Returns what `take` returned, or
/// false when zstd failed.
fn compress_to(level: i32, plain: &[u8], take: impl FnOnce(&[u8]) -> bool) -> bool {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|(l, _, _)| *l) != Some(level) {
            match zstd::bulk::Compressor::new(level) {
                Ok(c) => *slot = Some((level, c, Vec::new())),
                Err(_) => return false,
            }
        }
        let (_, cctx, scratch) = slot.as_mut().expect("just set");
        scratch.clear();
        scratch.reserve(zstd::zstd_safe::compress_bound(plain.len()));
        // The Vec is written from its start and its length set by zstd.
        match cctx.compress_to_buffer(plain, scratch) {
            Ok(_) => take(scratch),
            Err(_) => false,
        }
    })
}

fn decompress(payload: &[u8], cap: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        slot.as_mut().expect("just set").decompress(payload, cap)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_data_shrinks_and_round_trips() {
        let c = Codec::new(3);
        let plain = b"hello world ".repeat(1000);
        let frame = c.encode(&plain);
        assert_eq!(frame[0], ZSTD);
        assert!(frame.len() < plain.len() / 10);
        assert_eq!(c.decode(&frame, Some(plain.len()), "t").unwrap(), plain);
    }

    #[test]
    fn random_data_is_stored_raw() {
        let c = Codec::new(3);
        let plain: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let frame = c.encode(&plain);
        let decoded = c.decode(&frame, Some(plain.len()), "t").unwrap();
        assert_eq!(decoded, plain);
    }

    #[test]
    fn wrong_length_and_bad_scheme_are_corrupt() {
        let c = Codec::new(3);
        let frame = c.encode(&b"abc".repeat(100));
        assert!(matches!(
            c.decode(&frame, Some(5), "t"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            c.decode(&[9, 1, 2], None, "t"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            c.decode(&[], None, "t"),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn envelope_checks_kind_and_version() {
        let mut f = envelope(FileKind::Pack).to_vec();
        f.push(7);
        assert_eq!(open_envelope(&f, FileKind::Pack, "p").unwrap(), &[7]);
        assert!(open_envelope(&f, FileKind::Index, "p").is_err());
        f[5] = 99;
        let err = open_envelope(&f, FileKind::Pack, "p")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown format version 99"), "{err}");
        assert!(open_envelope(b"nope", FileKind::Pack, "p").is_err());
    }
}

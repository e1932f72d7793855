//! The codec every stored byte passes through, and the envelope every file starts with.
//!
//! # Envelope
//!
//! Every object in a repository starts with 8 bytes:
//!
//! | offset | size | field    | value                                             |
//! |--------|------|----------|---------------------------------------------------|
//! | 0      | 4    | magic    | `RWND`                                            |
//! | 4      | 1    | kind     | `C` config, `P` pack, `I` index, `S` snapshot, `K` key, `L` lock |
//! | 5      | 1    | version  | `1` (plaintext frames) or `2` (encrypted frames)  |
//! | 6      | 2    | reserved | zero                                              |
//!
//! A reader *must* refuse an object whose magic or kind does not match, and a
//! version it does not know (naming the object and the version). A repository's
//! objects all carry its format's version ([`config`](super::config)); key files
//! are version 1 in every repository. Format-1 lock files have no envelope
//! (they are bare JSON).
//!
//! # Frames
//!
//! Everything after the envelope (except a format-1 `config` and key files) is
//! one or more *frames*: the output of [`Codec::encode`].
//!
//! ## Format 1: plaintext
//!
//! A frame is one scheme byte and a payload:
//!
//! | scheme | payload                                                   |
//! |--------|-----------------------------------------------------------|
//! | `0`    | the plaintext, stored raw                                 |
//! | `1`    | one zstd frame of the plaintext                           |
//!
//! ## Format 2: encrypted
//!
//! | offset | size | field                                                       |
//! |--------|------|-------------------------------------------------------------|
//! | 0      | 24   | nonce: random for every frame                               |
//! | 24     | n    | XChaCha20 ciphertext of the padded body (below)             |
//! | 24+n   | 16   | Poly1305 tag                                                |
//!
//! Padded body (what is encrypted):
//!
//! | offset | size | field                                                 |
//! |--------|------|-------------------------------------------------------|
//! | 0      | 1    | scheme: `0` raw, `1` zstd, as in format 1             |
//! | 1      | 4    | `m`, the payload's length, u32 LE                     |
//! | 5      | m    | payload                                               |
//! | 5+m    | rest | zeros, up to the padded length ([`padded_len`])       |
//!
//! The AEAD is XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03; its 192-bit
//! nonces are safe to draw at random however many hosts write into one
//! repository at once, see [`aead`](super::aead)) with the data key
//! ([`crypto`](super::crypto)). Its associated data binds the frame to its
//! place, so that a frame moved, swapped, replayed, truncated or changed in any
//! bit fails to decrypt, with an error naming the object:
//!
//! | offset | size | field                                                         |
//! |--------|------|---------------------------------------------------------------|
//! | 0      | 4    | `RWND`                                                        |
//! | 4      | 1    | format version: `2`                                           |
//! | 5      | 1    | the object's kind byte (as in the envelope)                   |
//! | 6      | 32   | the object's id: a pack's or lock's random id, an index file's or snapshot's keyed id, the repository id for `config` |
//! | 38     | 8    | the frame's offset in the object, u64 LE                      |
//!
//! Blob ids are keyed hashes of the plaintext (checked after every read), so
//! a blob is authenticated twice: by its frame's tag, and by its id.
//!
//! # Compression
//!
//! The writer stores raw when compression would not save at least 1/64 of the
//! bytes. Readers always know (or cap) the plaintext length before they
//! decompress: the index records it for blobs, and whole objects are capped
//! at [`MAX_FILE_PLAIN`].

use super::aead::XChaCha;
use super::crypto::{padded_len, Subkeys};
use crate::error::{Error, Result};
use std::cell::RefCell;
use std::sync::Arc;

/// Length of the envelope at the start of every file.
pub const ENVELOPE_LEN: usize = 8;

/// The largest plaintext a whole-file frame (snapshot, pack header) may claim.
pub const MAX_FILE_PLAIN: usize = 1 << 30;

pub use super::aead::{NONCE_LEN, TAG_LEN};
/// Scheme byte and payload length inside an encrypted frame.
const BODY_HEAD: usize = 5;

/// What a repository file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Config,
    Pack,
    Index,
    Snapshot,
    Key,
    Lock,
}

impl FileKind {
    /// The kind byte of the envelope and the associated data.
    pub fn tag(self) -> u8 {
        match self {
            FileKind::Config => b'C',
            FileKind::Pack => b'P',
            FileKind::Index => b'I',
            FileKind::Snapshot => b'S',
            FileKind::Key => b'K',
            FileKind::Lock => b'L',
        }
    }
}

/// The 8 envelope bytes for a file of `kind` in format `version`.
pub fn envelope(kind: FileKind, version: u8) -> [u8; ENVELOPE_LEN] {
    [b'R', b'W', b'N', b'D', kind.tag(), version, 0, 0]
}

/// Check the envelope of `bytes` (named `object` in errors): its kind, and a
/// version this build reads. Returns the version and the rest.
pub fn open_envelope<'a>(bytes: &'a [u8], kind: FileKind, object: &str) -> Result<(u8, &'a [u8])> {
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
    if bytes[6..8] != [0, 0] {
        return Err(Error::corrupt(
            object,
            "reserved envelope bytes are not zero",
        ));
    }
    match bytes[5] {
        1 | 2 => Ok((bytes[5], &bytes[ENVELOPE_LEN..])),
        v => Err(Error::UnsupportedVersion(format!(
            "{object}: unknown format version {v} (this rewind reads versions 1 and 2)"
        ))),
    }
}

/// Where a frame belongs: what its associated data binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aad {
    pub kind: FileKind,
    pub id: [u8; 32],
    pub offset: u64,
}

impl Aad {
    /// The frame of a single-frame object (after its envelope).
    pub fn whole(kind: FileKind, id: [u8; 32]) -> Self {
        Aad {
            kind,
            id,
            offset: ENVELOPE_LEN as u64,
        }
    }

    fn bytes(&self) -> [u8; 46] {
        let mut b = [0u8; 46];
        b[..4].copy_from_slice(b"RWND");
        b[4] = 2;
        b[5] = self.kind.tag();
        b[6..38].copy_from_slice(&self.id);
        b[38..].copy_from_slice(&self.offset.to_le_bytes());
        b
    }
}

const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// A plaintext after compression, before it is sealed into a frame.
pub struct Compressed<'a> {
    scheme: u8,
    payload: std::borrow::Cow<'a, [u8]>,
    raw_len: usize,
}

impl Compressed<'_> {
    /// The plaintext's length.
    pub fn raw_len(&self) -> usize {
        self.raw_len
    }
}

/// The sealing half of an encrypted repository's codec.
struct Seal {
    aead: XChaCha,
    padding: [u8; 32],
}

/// Compression settings, and for encrypted repositories the keys.
#[derive(Clone)]
pub struct Codec {
    /// zstd level; 0 stores everything raw.
    pub level: i32,
    seal: Option<Arc<Seal>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("level", &self.level)
            .field("encrypted", &self.seal.is_some())
            .finish()
    }
}

impl Codec {
    /// A format-1 (plaintext) codec.
    pub fn new(level: i32) -> Self {
        Codec { level, seal: None }
    }

    /// A format-2 (encrypted) codec with `keys`.
    pub fn encrypted(level: i32, keys: &Subkeys) -> Self {
        Codec {
            level,
            seal: Some(Arc::new(Seal {
                aead: XChaCha::new(&keys.data),
                padding: keys.padding,
            })),
        }
    }

    /// The same keys at another compression level.
    pub fn with_level(&self, level: i32) -> Self {
        Codec {
            level,
            seal: self.seal.clone(),
        }
    }

    /// The format version of the frames this codec writes and reads.
    pub fn version(&self) -> u8 {
        if self.seal.is_some() {
            2
        } else {
            1
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.seal.is_some()
    }

    /// The envelope of an object of `kind` in this codec's format.
    pub fn envelope(&self, kind: FileKind) -> [u8; ENVELOPE_LEN] {
        envelope(kind, self.version())
    }

    /// Check an object's envelope, and that its version is this codec's.
    pub fn open<'a>(&self, bytes: &'a [u8], kind: FileKind, object: &str) -> Result<&'a [u8]> {
        let (version, rest) = open_envelope(bytes, kind, object)?;
        if version != self.version() {
            return Err(Error::corrupt(
                object,
                format!(
                    "a format-{version} object in a format-{} repository",
                    self.version()
                ),
            ));
        }
        Ok(rest)
    }

    /// The longest frame a plaintext of `raw_len` bytes can take: readers
    /// refuse index records that claim more.
    pub fn max_frame_len(&self, raw_len: u64) -> u64 {
        match self.seal {
            None => raw_len + 1,
            Some(_) => raw_len + Self::sealed_overhead(raw_len),
        }
    }

    /// How much longer than its plaintext an encrypted frame can be: head,
    /// Padmé (under 1/8), the jitter (under one more step), nonce and tag.
    pub fn sealed_overhead(raw_len: u64) -> u64 {
        let body = raw_len + BODY_HEAD as u64;
        BODY_HEAD as u64 + body / 4 + 2 + (NONCE_LEN + TAG_LEN) as u64
    }

    /// Encode `plain` into a frame appended to `out`, bound to `aad` (ignored
    /// by a plaintext codec); returns the frame length.
    pub fn encode_into(&self, plain: &[u8], aad: &Aad, out: &mut Vec<u8>) -> usize {
        self.seal_into(&self.compress(plain), aad, out)
    }

    /// The first half of encoding, which needs no place: compression (or
    /// not). Writers do it outside their locks, then seal where the frame
    /// lands.
    pub fn compress<'a>(&self, plain: &'a [u8]) -> Compressed<'a> {
        if self.level != 0 && plain.len() >= 64 {
            let mut out = None;
            compress_to(self.level, plain, |frame| {
                if frame.len() + frame.len() / 64 + 1 < plain.len() {
                    out = Some(frame.to_vec());
                }
                true
            });
            if let Some(z) = out {
                return Compressed {
                    scheme: ZSTD,
                    payload: std::borrow::Cow::Owned(z),
                    raw_len: plain.len(),
                };
            }
        }
        Compressed {
            scheme: RAW,
            payload: std::borrow::Cow::Borrowed(plain),
            raw_len: plain.len(),
        }
    }

    /// The second half: the frame of `c`, bound to `aad`, appended to `out`;
    /// returns its length.
    pub fn seal_into(&self, c: &Compressed, aad: &Aad, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        match &self.seal {
            None => {
                out.reserve(1 + c.payload.len());
                out.push(c.scheme);
                out.extend_from_slice(&c.payload);
            }
            Some(seal) => {
                let mut nonce = [0u8; NONCE_LEN];
                fill_random(&mut nonce);
                let jitter = u64::from_le_bytes(
                    blake3::keyed_hash(&seal.padding, &nonce).as_bytes()[..8]
                        .try_into()
                        .expect("8 bytes"),
                );
                let padded = padded_len(BODY_HEAD + c.payload.len(), jitter);
                out.reserve(NONCE_LEN + padded + TAG_LEN);
                out.extend_from_slice(&nonce);
                let body = out.len();
                out.push(c.scheme);
                out.extend_from_slice(&(c.payload.len() as u32).to_le_bytes());
                out.extend_from_slice(&c.payload);
                out.resize(body + padded, 0);
                let tag = seal.aead.seal(&nonce, &aad.bytes(), &mut out[body..]);
                out.extend_from_slice(&tag);
            }
        }
        out.len() - start
    }

    /// Encode `plain` as one frame.
    pub fn encode(&self, plain: &[u8], aad: &Aad) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(plain, aad, &mut out);
        out
    }

    /// Decode one frame. `expect_len` is the exact plaintext length when known
    /// (blobs: the index and the tree agree on it); otherwise the plaintext is
    /// capped at [`MAX_FILE_PLAIN`] (see [`Codec::decode_at_most`]).
    pub fn decode(
        &self,
        frame: &[u8],
        expect_len: Option<usize>,
        aad: &Aad,
        object: &str,
    ) -> Result<Vec<u8>> {
        self.decode_input(
            Input::Borrowed(frame),
            Len::expected(expect_len),
            aad,
            object,
        )
    }

    /// [`Codec::decode`] of a frame the caller owns: decrypted in place, and
    /// a stored (uncompressed) payload is returned in the same buffer, so a
    /// blob read from a pack is copied once less.
    pub fn decode_vec(
        &self,
        frame: Vec<u8>,
        expect_len: Option<usize>,
        aad: &Aad,
        object: &str,
    ) -> Result<Vec<u8>> {
        let all = 0..frame.len();
        let len = Len::expected(expect_len);
        self.decode_input(Input::Owned(frame, all), len, aad, object)
    }

    /// Decode one frame whose plaintext may be at most `max` bytes (whole
    /// objects of a kind with a smaller bound than [`MAX_FILE_PLAIN`]).
    pub fn decode_at_most(
        &self,
        frame: &[u8],
        max: usize,
        aad: &Aad,
        object: &str,
    ) -> Result<Vec<u8>> {
        let len = Len::AtMost(max.min(MAX_FILE_PLAIN));
        self.decode_input(Input::Borrowed(frame), len, aad, object)
    }

    fn decode_input(&self, input: Input, len: Len, aad: &Aad, object: &str) -> Result<Vec<u8>> {
        let Some(seal) = &self.seal else {
            return decode_plain(input, len, object);
        };
        let frame = input.bytes();
        if frame.len() < NONCE_LEN + BODY_HEAD + TAG_LEN {
            return Err(Error::corrupt(object, "encrypted frame too short"));
        }
        if frame.len() as u64 > self.max_frame_len(len.max() as u64) {
            return Err(Error::corrupt(
                object,
                "encrypted frame longer than its plaintext allows",
            ));
        }
        let nonce: [u8; NONCE_LEN] = frame[..NONCE_LEN].try_into().expect("24 bytes");
        let tag: [u8; TAG_LEN] = frame[frame.len() - TAG_LEN..].try_into().expect("16 bytes");
        // The body, decrypted where it lies when the frame is owned.
        let (mut buf, body, end) = match input {
            Input::Borrowed(f) => {
                let body = f[NONCE_LEN..f.len() - TAG_LEN].to_vec();
                let end = body.len();
                (body, 0, end)
            }
            Input::Owned(v, r) => (v, r.start + NONCE_LEN, r.end - TAG_LEN),
        };
        seal.aead
            .open(&nonce, &aad.bytes(), &mut buf[body..end], &tag)
            .map_err(|_| {
                Error::corrupt(
                    object,
                    "authentication failed (changed, truncated, moved or from another repository)",
                )
            })?;
        let n = u32::from_le_bytes(buf[body + 1..body + 5].try_into().expect("4 bytes")) as usize;
        if n > end - body - BODY_HEAD {
            return Err(Error::corrupt(object, "payload length beyond the frame"));
        }
        // The scheme byte goes right before the payload, as in format 1.
        buf[body + 4] = buf[body];
        decode_plain(
            Input::Owned(buf, body + 4..body + BODY_HEAD + n),
            len,
            object,
        )
    }
}

/// A frame to decode: borrowed, or `buf[range]` of a buffer the decoder
/// may decrypt in place and return a stored payload in.
enum Input<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>, std::ops::Range<usize>),
}

impl Input<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Input::Borrowed(b) => b,
            Input::Owned(v, r) => &v[r.clone()],
        }
    }
}

/// What a reader knows of a frame's plaintext length before it decodes.
#[derive(Clone, Copy, Debug)]
enum Len {
    /// Exactly this many bytes (a blob: the index and the tree agree).
    Exact(usize),
    /// At most this many (a whole object, capped by its kind).
    AtMost(usize),
}

impl Len {
    /// Exactly `n` when known, else at most [`MAX_FILE_PLAIN`].
    fn expected(n: Option<usize>) -> Len {
        n.map_or(Len::AtMost(MAX_FILE_PLAIN), Len::Exact)
    }

    fn max(self) -> usize {
        match self {
            Len::Exact(n) | Len::AtMost(n) => n,
        }
    }
}

/// Decode a format-1 frame (scheme byte and payload).
///
/// Nothing is allocated beyond what the frame holds or `len` allows: a zstd
/// frame must declare its content size, which must be the exact length or
/// within the cap before any output is allocated; with only a cap, output is
/// allocated as it is produced, so a frame that claims more than it holds
/// costs only what it holds.
fn decode_plain(input: Input, len: Len, object: &str) -> Result<Vec<u8>> {
    let frame = input.bytes();
    let (&scheme, payload) = frame
        .split_first()
        .ok_or_else(|| Error::corrupt(object, "empty frame"))?;
    let plain = match scheme {
        RAW => {
            match len {
                Len::Exact(n) if payload.len() != n => {
                    return Err(Error::corrupt(
                        object,
                        format!("stored {} bytes, expected {n}", payload.len()),
                    ))
                }
                Len::AtMost(max) if payload.len() > max => {
                    return Err(Error::corrupt(object, "frame larger than its kind allows"))
                }
                _ => {}
            }
            match input {
                Input::Borrowed(f) => f[1..].to_vec(),
                Input::Owned(mut v, r) => {
                    v.truncate(r.end);
                    v.drain(..r.start + 1);
                    v
                }
            }
        }
        ZSTD => {
            let declared = match zstd::zstd_safe::get_frame_content_size(payload) {
                Ok(Some(n)) => n,
                _ => return Err(Error::corrupt(object, "zstd frame without a sane size")),
            };
            let zstd_err = |e: std::io::Error| Error::corrupt(object, format!("zstd: {e}"));
            match len {
                Len::Exact(n) if declared != n as u64 => {
                    return Err(Error::corrupt(
                        object,
                        format!("zstd frame declares {declared} bytes, expected {n}"),
                    ))
                }
                Len::Exact(n) => decompress(payload, n).map_err(zstd_err)?,
                Len::AtMost(max) if declared > max as u64 => {
                    return Err(Error::corrupt(
                        object,
                        format!("zstd frame declares {declared} bytes, more than its kind allows"),
                    ))
                }
                Len::AtMost(_) => {
                    decompress_growing(payload, declared as usize).map_err(zstd_err)?
                }
            }
        }
        other => {
            return Err(Error::corrupt(
                object,
                format!("unknown frame scheme {other}"),
            ))
        }
    };
    if let Len::Exact(n) = len {
        if plain.len() != n {
            return Err(Error::corrupt(
                object,
                format!("decoded {} bytes, expected {n}", plain.len()),
            ));
        }
    }
    Ok(plain)
}

/// Fill `buf` with random bytes from a per-thread generator seeded from the
/// kernel (nonces: one per frame, so a system call each would cost).
pub fn fill_random(buf: &mut [u8]) {
    thread_local! {
        static RNG: RefCell<Option<(blake3::OutputReader, u64)>> = const { RefCell::new(None) };
    }
    RNG.with(|cell| {
        let mut slot = cell.borrow_mut();
        // Reseed from the kernel every 2^20 draws, and at a thread's first.
        if slot.as_ref().is_none_or(|(_, n)| *n >= 1 << 20) {
            let mut seed = [0u8; 32];
            super::config::getrandom(&mut seed).expect("the kernel's random source");
            let mut h = blake3::Hasher::new_keyed(&seed);
            h.update(b"rewind nonces");
            *slot = Some((h.finalize_xof(), 0));
            super::crypto::wipe(&mut seed);
        }
        let (reader, n) = slot.as_mut().expect("just set");
        reader.fill(buf);
        *n += 1;
    });
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>, Vec<u8>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    static STREAM_DECOMPRESSOR: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
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

/// Decompress one zstd frame that declares `declared` bytes (already
/// checked against the caller's cap), allocating output as it is produced:
/// at most twice what the frame really yields, and never more than
/// `declared` plus one step. Anything after the frame is an error.
fn decompress_growing(payload: &[u8], declared: usize) -> std::io::Result<Vec<u8>> {
    use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer, ResetDirective};
    let err = |code: usize| std::io::Error::other(zstd::zstd_safe::get_error_name(code));
    STREAM_DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dctx = slot.get_or_insert_with(DCtx::create);
        dctx.reset(ResetDirective::SessionOnly).map_err(err)?;
        // Start small: a lying size costs nothing until bytes come out.
        let mut out: Vec<u8> = Vec::with_capacity(declared.min(GROW_START));
        let mut input = InBuffer::around(payload);
        loop {
            if out.len() == out.capacity() && out.len() < declared {
                let more = out.capacity().max(GROW_START).min(declared - out.len());
                out.reserve_exact(more);
            }
            let (at, read) = (out.len(), input.pos());
            let mut output = OutBuffer::around_pos(&mut out, at);
            let hint = dctx
                .decompress_stream(&mut output, &mut input)
                .map_err(err)?;
            if hint == 0 {
                break;
            }
            // Each round consumes input or yields output (never beyond
            // `declared`), so this ends.
            if output.pos() == at && input.pos() == read {
                return Err(std::io::Error::other(if out.len() < declared {
                    "truncated frame"
                } else {
                    "more output than the frame declares"
                }));
            }
        }
        if input.pos() != payload.len() {
            return Err(std::io::Error::other("bytes after the frame"));
        }
        if out.len() != declared {
            return Err(std::io::Error::other(
                "frame yields another size than it declares",
            ));
        }
        Ok(out)
    })
}

/// The first allocation of [`decompress_growing`].
const GROW_START: usize = 64 << 10;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::crypto::{MasterKey, MASTER_LEN};

    fn aad() -> Aad {
        Aad::whole(FileKind::Snapshot, [1; 32])
    }

    fn sealed() -> Codec {
        Codec::encrypted(3, &Subkeys::derive(&MasterKey([9; MASTER_LEN])))
    }

    #[test]
    fn compressible_data_shrinks_and_round_trips() {
        for c in [Codec::new(3), sealed()] {
            let plain = b"hello world ".repeat(1000);
            let frame = c.encode(&plain, &aad());
            assert!(frame.len() < plain.len() / 10);
            assert_eq!(
                c.decode(&frame, Some(plain.len()), &aad(), "t").unwrap(),
                plain
            );
            assert_eq!(c.decode(&frame, None, &aad(), "t").unwrap(), plain);
        }
        assert_eq!(Codec::new(3).encode(&b"x".repeat(100), &aad())[0], ZSTD);
    }

    #[test]
    fn random_data_is_stored_raw() {
        let plain: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for c in [Codec::new(3), sealed()] {
            let frame = c.encode(&plain, &aad());
            assert!(frame.len() as u64 <= c.max_frame_len(plain.len() as u64));
            let decoded = c.decode(&frame, Some(plain.len()), &aad(), "t").unwrap();
            assert_eq!(decoded, plain);
        }
    }

    #[test]
    fn wrong_length_and_bad_scheme_are_corrupt() {
        let c = Codec::new(3);
        let frame = c.encode(&b"abc".repeat(100), &aad());
        assert!(matches!(
            c.decode(&frame, Some(5), &aad(), "t"),
            Err(Error::Corrupt { .. })
        ));
        for bad in [&[9u8, 1, 2][..], &[]] {
            assert!(matches!(
                c.decode(bad, None, &aad(), "t"),
                Err(Error::Corrupt { .. })
            ));
        }
    }

    /// A sealed frame fails to open with any bit flipped, cut short, under
    /// another id, offset or kind, or with another repository's key.
    #[test]
    fn sealed_frames_are_bound_to_their_place_and_key() {
        let c = sealed();
        let frame = c.encode(b"the secret manifest", &aad());
        assert!(!frame.windows(6).any(|w| w == b"secret"));
        for i in 0..frame.len() {
            for bit in [1u8, 0x80] {
                let mut f = frame.clone();
                f[i] ^= bit;
                assert!(c.decode(&f, None, &aad(), "t").is_err(), "byte {i}");
            }
        }
        for cut in 1..frame.len() {
            assert!(c.decode(&frame[..cut], None, &aad(), "t").is_err());
        }
        let elsewhere = [
            Aad::whole(FileKind::Snapshot, [2; 32]),
            Aad::whole(FileKind::Index, [1; 32]),
            Aad { offset: 9, ..aad() },
        ];
        for other in elsewhere {
            let e = c
                .decode(&frame, None, &other, "snapshot x")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("snapshot x") && e.contains("authentication failed"),
                "{e}"
            );
        }
        let stranger = Codec::encrypted(3, &Subkeys::derive(&MasterKey([1; MASTER_LEN])));
        assert!(stranger.decode(&frame, None, &aad(), "t").is_err());
    }

    /// An owned frame (decrypted in place, a stored payload returned in its
    /// buffer) decodes to what a borrowed one does, and fails where it does:
    /// damaged, cut short, or of another length than expected.
    #[test]
    fn owned_frames_decode_as_borrowed_ones() {
        let random: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let plains = [Vec::new(), vec![7], b"abc ".repeat(5000), random];
        for c in [Codec::new(3), sealed()] {
            for plain in &plains {
                let frame = c.encode(plain, &aad());
                let owned = |f: &[u8], n| c.decode_vec(f.to_vec(), n, &aad(), "t");
                let n = Some(plain.len());
                assert_eq!(&owned(&frame, n).unwrap(), plain);
                assert_eq!(&owned(&frame, None).unwrap(), plain);
                assert!(owned(&frame, Some(plain.len() + 1)).is_err());
                let step = frame.len() / 97 + 1;
                for i in (0..frame.len()).step_by(step) {
                    let mut f = frame.clone();
                    f[i] ^= 0x10;
                    let (a, b) = (owned(&f, n), c.decode(&f, n, &aad(), "t"));
                    assert_eq!(a.as_ref().ok(), b.as_ref().ok(), "byte {i}");
                    let (a, b) = (owned(&frame[..i], n), c.decode(&frame[..i], n, &aad(), "t"));
                    assert_eq!(a.as_ref().ok(), b.as_ref().ok(), "cut at {i}");
                    assert!(a.is_err(), "cut at {i}");
                }
            }
        }
    }

    #[test]
    fn equal_plaintexts_get_unrelated_nonces_and_sizes_vary() {
        let c = sealed();
        let plain = vec![0x5a; 50_000];
        let sizes: std::collections::HashSet<usize> =
            (0..20).map(|_| c.encode(&plain, &aad()).len()).collect();
        let a = c.encode(&plain, &aad());
        let b = c.encode(&plain, &aad());
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert!(sizes.len() > 1, "padding jitter varies the size");
    }

    #[test]
    fn envelope_checks_kind_and_version() {
        let mut f = envelope(FileKind::Pack, 1).to_vec();
        f.push(7);
        assert_eq!(
            open_envelope(&f, FileKind::Pack, "p").unwrap(),
            (1, &[7u8][..])
        );
        assert!(open_envelope(&f, FileKind::Index, "p").is_err());
        assert!(Codec::new(0).open(&f, FileKind::Pack, "p").is_ok());
        assert!(sealed().open(&f, FileKind::Pack, "p").is_err());
        f[5] = 99;
        let err = open_envelope(&f, FileKind::Pack, "p")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown format version 99"), "{err}");
        assert!(open_envelope(b"nope", FileKind::Pack, "p").is_err());
    }
}

//! Pack files: frames of blobs, then a header that lists them.
//!
//! A pack is written once and never changed. Its name
//! ([`PackId`](super::id::PackId)) is, in format 1, the BLAKE3 of its bytes; in
//! format 2, 32 random bytes drawn when the pack is started, which every
//! frame's associated data binds together with the frame's offset (so a frame
//! cannot be moved within a pack or to another one, and a renamed or
//! truncated pack fails to decrypt). Packs live under
//! `data/<first two hex digits>/`.
//!
//! | part    | size          | content                                              |
//! |---------|---------------|------------------------------------------------------|
//! | envelope| 8             | `RWND` `P` version 1 or 2, see [`codec`](super::codec) |
//! | frames  | variable      | codec frames, back to back                           |
//! | header  | `header_len`  | one codec frame whose plaintext is the header table  |
//! | trailer | 12            | `header_len` u32 LE, then the 8 bytes `RWNDTAIL`     |
//!
//! A frame holds one blob, or a *bundle*: the plaintexts of several small blobs
//! back to back, compressed together. Small files compress far better together
//! than one by one (source trees: about 30% smaller), and a reader of one of
//! them decompresses at most one bundle (128 KiB or so).
//!
//! Header table plaintext (all integers little-endian):
//!
//! | offset | size | field                                  |
//! |--------|------|----------------------------------------|
//! | 0      | 4    | number of entries `n`                  |
//! | 4      | 53·n | entries                                |
//!
//! Each entry:
//!
//! | offset | size | field                                                 |
//! |--------|------|-------------------------------------------------------|
//! | 0      | 1    | kind: `0` data, `1` tree                              |
//! | 1      | 32   | blob id                                               |
//! | 33     | 4    | offset of the blob's frame from the start of the pack |
//! | 37     | 4    | length of that frame as stored                        |
//! | 41     | 4    | length of the frame's plaintext                       |
//! | 45     | 4    | offset of the blob's plaintext inside the frame's     |
//! | 49     | 4    | length of the blob's plaintext                        |
//!
//! A reader *must* refuse a header whose entries claim frames larger than a
//! blob of their kind can be (a data frame's plaintext at most
//! [`MAX_DATA_FRAME`], a tree's at most [`tree::MAX_ENCODED`]; a stored frame
//! at most its plaintext plus the codec's overhead), as the index does: the
//! header is what `check` and an index rebuild read.
//!
//! Because every pack carries its own header, the index can always be rebuilt
//! from the packs alone. The writer *must* re-decode its header before it
//! finishes a pack, and *must* refuse any use after a failed write.

use super::codec::{Aad, Codec, Compressed, FileKind, ENVELOPE_LEN};
use super::id::BlobId;
use super::index::MAX_DATA_FRAME;
use super::tree;
use crate::error::{Error, Result};
use std::io::Write;

/// The 8 bytes that end every pack.
pub const TAIL_MAGIC: &[u8; 8] = b"RWNDTAIL";
/// Length of the trailer: header length and tail magic.
pub const TRAILER_LEN: usize = 12;
const ENTRY_LEN: usize = 53;

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlobKind {
    Data,
    Tree,
}

impl BlobKind {
    pub fn to_byte(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        }
    }
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

/// Where a blob lies: its frame, and its place in the frame's plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
}

/// One blob inside a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub kind: BlobKind,
    pub id: BlobId,
    pub frame: Frame,
    /// Offset of the blob's plaintext in the frame's plaintext.
    pub inner: u32,
    /// Length of the blob's plaintext.
    pub raw_len: u32,
}

/// One blob to place in a frame: kind, id, offset in the frame's plaintext, length.
pub type FrameBlob = (BlobKind, BlobId, u32, u32);

/// Writes one pack into `W`.
pub struct PackWriter<W: Write> {
    out: W,
    codec: Codec,
    /// The id the frames' associated data binds (format 2).
    id: [u8; 32],
    offset: u64,
    entries: Vec<PackEntry>,
    failed: bool,
    frame: Vec<u8>,
}

impl<W: Write> PackWriter<W> {
    /// Start pack `id` (format 2; format 1 names packs by their hash once
    /// written, and binds nothing): writes the envelope.
    pub fn new(mut out: W, codec: &Codec, id: [u8; 32]) -> Result<Self> {
        let failed = out.write_all(&codec.envelope(FileKind::Pack)).is_err();
        let w = PackWriter {
            out,
            codec: codec.clone(),
            id,
            offset: ENVELOPE_LEN as u64,
            entries: Vec::new(),
            failed,
            frame: Vec::new(),
        };
        w.usable()?;
        Ok(w)
    }

    fn usable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::InvalidInput(
                "pack writer used after a failed write".into(),
            ));
        }
        Ok(())
    }

    fn aad(&self) -> Aad {
        Aad {
            kind: FileKind::Pack,
            id: self.id,
            offset: self.offset,
        }
    }

    /// Seal `plain` (compressed) as the next frame, holding `blobs`.
    pub fn add_frame(&mut self, plain: &Compressed, blobs: &[FrameBlob]) -> Result<()> {
        self.usable()?;
        let raw_len = plain.raw_len();
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        self.codec.seal_into(plain, &self.aad(), &mut frame);
        let res = self.write_frame(&frame, raw_len, blobs);
        self.frame = frame;
        res
    }

    fn write_frame(&mut self, frame: &[u8], raw_len: usize, blobs: &[FrameBlob]) -> Result<()> {
        let end = self.offset + frame.len() as u64;
        if end > u32::MAX as u64 || raw_len > u32::MAX as usize {
            return Err(Error::InvalidInput("pack would exceed 4 GiB".into()));
        }
        if let Err(e) = self.out.write_all(frame) {
            self.failed = true;
            return Err(Error::io("writing pack", e));
        }
        let f = Frame {
            offset: self.offset as u32,
            stored_len: frame.len() as u32,
            raw_len: raw_len as u32,
        };
        for &(kind, id, inner, len) in blobs {
            self.entries.push(PackEntry {
                kind,
                id,
                frame: f,
                inner,
                raw_len: len,
            });
        }
        self.offset = end;
        Ok(())
    }

    /// Append one blob in a frame of its own.
    pub fn add(&mut self, kind: BlobKind, id: BlobId, plain: &[u8]) -> Result<()> {
        let c = self.codec.compress(plain);
        self.add_frame(&c, &[(kind, id, 0, plain.len() as u32)])
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[PackEntry] {
        &self.entries
    }

    /// Write header and trailer, after checking the header decodes to what was
    /// written. Returns the output and the entries.
    pub fn finish(mut self) -> Result<(W, Vec<PackEntry>)> {
        self.usable()?;
        let aad = self.aad();
        let frame = self.codec.encode(&encode_header(&self.entries), &aad);
        let again = decode_header(
            &self.codec.decode(&frame, None, &aad, "new pack header")?,
            "new pack header",
        )?;
        if again != self.entries {
            return Err(Error::corrupt(
                "new pack header",
                "does not decode to what was written",
            ));
        }
        let mut trailer = Vec::with_capacity(TRAILER_LEN);
        trailer.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        trailer.extend_from_slice(TAIL_MAGIC);
        let res = self
            .out
            .write_all(&frame)
            .and_then(|_| self.out.write_all(&trailer));
        if let Err(e) = res {
            return Err(Error::io("writing pack", e));
        }
        Ok((self.out, self.entries))
    }
}

/// The header table's plaintext.
pub fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * ENTRY_LEN);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.push(e.kind.to_byte());
        out.extend_from_slice(&e.id.0);
        for v in [
            e.frame.offset,
            e.frame.stored_len,
            e.frame.raw_len,
            e.inner,
            e.raw_len,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Parse a header table's plaintext.
pub fn decode_header(plain: &[u8], object: &str) -> Result<Vec<PackEntry>> {
    if plain.len() < 4 {
        return Err(Error::corrupt(object, "pack header too short"));
    }
    let n = u32::from_le_bytes(plain[..4].try_into().unwrap()) as usize;
    if n.checked_mul(ENTRY_LEN).and_then(|b| b.checked_add(4)) != Some(plain.len()) {
        return Err(Error::corrupt(
            object,
            "pack header length does not match its count",
        ));
    }
    plain[4..]
        .chunks_exact(ENTRY_LEN)
        .map(|r| {
            let kind = BlobKind::from_byte(r[0])
                .ok_or_else(|| Error::corrupt(object, "unknown blob kind"))?;
            let u = |at: usize| u32::from_le_bytes(r[at..at + 4].try_into().unwrap());
            let e = PackEntry {
                kind,
                id: BlobId(r[1..33].try_into().unwrap()),
                frame: Frame {
                    offset: u(33),
                    stored_len: u(37),
                    raw_len: u(41),
                },
                inner: u(45),
                raw_len: u(49),
            };
            if e.inner as u64 + e.raw_len as u64 > e.frame.raw_len as u64 {
                return Err(Error::corrupt(object, "blob lies outside its frame"));
            }
            if e.frame.raw_len as u64 > max_frame_plain(kind) {
                return Err(Error::corrupt(
                    object,
                    format!("blob {} claims a frame larger than any", e.id.short()),
                ));
            }
            Ok(e)
        })
        .collect()
}

/// The largest plaintext a frame of blobs of `kind` may have.
pub fn max_frame_plain(kind: BlobKind) -> u64 {
    match kind {
        BlobKind::Data => MAX_DATA_FRAME as u64,
        BlobKind::Tree => tree::MAX_ENCODED as u64,
    }
}

/// From the last [`TRAILER_LEN`] bytes of a pack, the length of its header frame.
pub fn trailer_header_len(trailer: &[u8], object: &str) -> Result<usize> {
    if trailer.len() != TRAILER_LEN || &trailer[4..] != TAIL_MAGIC {
        return Err(Error::corrupt(
            object,
            "pack trailer missing (truncated pack?)",
        ));
    }
    Ok(u32::from_le_bytes(trailer[..4].try_into().unwrap()) as usize)
}

/// Where the header frame of a pack of `size` bytes lies, from its trailer.
pub fn header_range(size: u64, trailer: &[u8], object: &str) -> Result<(u64, usize)> {
    let hlen = trailer_header_len(trailer, object)?;
    let start = size
        .checked_sub((TRAILER_LEN + hlen) as u64)
        .filter(|&s| s >= ENVELOPE_LEN as u64)
        .ok_or_else(|| Error::corrupt(object, "pack header length out of range"))?;
    Ok((start, hlen))
}

/// Decode a pack's header frame, found at `start`, and check that every
/// frame it lists lies between the envelope and the header.
pub fn decode_header_frame(
    frame: &[u8],
    start: u64,
    codec: &Codec,
    id: [u8; 32],
    object: &str,
) -> Result<Vec<PackEntry>> {
    let aad = Aad {
        kind: FileKind::Pack,
        id,
        offset: start,
    };
    let plain = codec.decode(frame, None, &aad, object)?;
    let entries = decode_header(&plain, object)?;
    for e in &entries {
        let end = e.frame.offset as u64 + e.frame.stored_len as u64;
        if (e.frame.offset as usize) < ENVELOPE_LEN || end > start {
            return Err(Error::corrupt(
                object,
                format!("blob {} lies outside the pack body", e.id.short()),
            ));
        }
        if e.frame.stored_len as u64 > codec.max_frame_len(e.frame.raw_len as u64) {
            return Err(Error::corrupt(
                object,
                format!(
                    "blob {}: its frame is longer than its plaintext allows",
                    e.id.short()
                ),
            ));
        }
    }
    Ok(entries)
}

/// Parse the header of a whole pack held in memory.
pub fn read_header(
    pack: &[u8],
    codec: &Codec,
    id: [u8; 32],
    object: &str,
) -> Result<Vec<PackEntry>> {
    codec.open(pack, FileKind::Pack, object)?;
    if pack.len() < ENVELOPE_LEN + TRAILER_LEN {
        return Err(Error::corrupt(object, "pack too short"));
    }
    let size = pack.len() as u64;
    let (start, hlen) = header_range(size, &pack[pack.len() - TRAILER_LEN..], object)?;
    let frame = &pack[start as usize..start as usize + hlen];
    decode_header_frame(frame, start, codec, id, object)
}

/// The bytes of `frame` inside a whole pack held in memory, if it lies there.
pub fn frame_bytes(pack: &[u8], frame: Frame) -> Option<&[u8]> {
    let start = frame.offset as usize;
    pack.get(start..start.checked_add(frame.stored_len as usize)?)
}

/// The associated data of the frame at `offset` in pack `id`.
pub fn frame_aad(id: [u8; 32], offset: u32) -> Aad {
    Aad {
        kind: FileKind::Pack,
        id,
        offset: offset as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::crypto::{MasterKey, Subkeys, MASTER_LEN};

    fn codecs() -> [Codec; 2] {
        [
            Codec::new(3),
            Codec::encrypted(3, &Subkeys::derive(&MasterKey([4; MASTER_LEN]))),
        ]
    }

    const ID: [u8; 32] = [6; 32];

    fn sample(codec: &Codec) -> (Vec<u8>, Vec<PackEntry>) {
        let mut w = PackWriter::new(Vec::new(), codec, ID).unwrap();
        w.add(BlobKind::Data, BlobId([1; 32]), &b"one".repeat(50))
            .unwrap();
        // A bundle of two blobs in one frame.
        let bundle = b"twothree".to_vec();
        let blobs = [
            (BlobKind::Tree, BlobId([2; 32]), 0, 3),
            (BlobKind::Data, BlobId([3; 32]), 3, 5),
        ];
        w.add_frame(&codec.compress(&bundle), &blobs).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn header_round_trips_and_blobs_decode() {
        for codec in codecs() {
            let (bytes, entries) = sample(&codec);
            assert_eq!(read_header(&bytes, &codec, ID, "p").unwrap(), entries);
            let frame = |e: &PackEntry| {
                codec
                    .decode(
                        frame_bytes(&bytes, e.frame).unwrap(),
                        Some(e.frame.raw_len as usize),
                        &frame_aad(ID, e.frame.offset),
                        "b",
                    )
                    .unwrap()
            };
            assert_eq!(frame(&entries[0]), b"one".repeat(50));
            let e = entries[2];
            assert_eq!(entries[1].frame, e.frame);
            let plain = frame(&e);
            assert_eq!(
                &plain[e.inner as usize..(e.inner + e.raw_len) as usize],
                b"three"
            );
        }
    }

    #[test]
    fn truncated_or_renamed_pack_is_corrupt() {
        for codec in codecs() {
            let (bytes, _) = sample(&codec);
            for cut in [1, 5, 12, 20] {
                let r = read_header(&bytes[..bytes.len() - cut], &codec, ID, "p");
                assert!(matches!(r, Err(Error::Corrupt { .. })), "cut {cut}");
            }
            if codec.is_encrypted() {
                assert!(read_header(&bytes, &codec, [7; 32], "p").is_err());
            }
        }
    }

    struct FailAfter(usize);
    impl Write for FailAfter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.0 < b.len() {
                return Err(std::io::Error::other("disk full"));
            }
            self.0 -= b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writer_refuses_use_after_failure() {
        let codec = Codec::new(0);
        let mut w = PackWriter::new(FailAfter(10), &codec, ID).unwrap();
        assert!(w.add(BlobKind::Data, BlobId([1; 32]), b"abc").is_err());
        assert!(w.add(BlobKind::Data, BlobId([2; 32]), b"a").is_err());
        assert!(w.finish().is_err());
    }
}

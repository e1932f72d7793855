//! Index files: sorted, fixed-width tables from blob id to its place in a pack.
//!
//! An index file is read through a memory map and searched in place, so the
//! memory a reader needs does not grow with the repository. Its body is one
//! *raw* codec frame (scheme `0`), so the table sits at a fixed offset.
//!
//! | part     | size        | content                                    |
//! |----------|-------------|--------------------------------------------|
//! | envelope | 8           | `RWND` `I` version 1                       |
//! | scheme   | 1           | `0` (raw frame)                            |
//! | counts   | 8           | `p` packs u32 LE, `n` blobs u32 LE         |
//! | packs    | 32·p        | pack ids, in no particular order           |
//! | records  | 60·n        | sorted by blob id, bytewise                |
//! | checksum | 32          | BLAKE3 of everything from `counts` to here |
//!
//! Record (little-endian):
//!
//! | offset | size | field                                              |
//! |--------|------|----------------------------------------------------|
//! | 0      | 32   | blob id                                            |
//! | 32     | 4    | pack number: position in the packs table           |
//! | 36     | 4    | offset of the blob's frame in the pack             |
//! | 40     | 4    | stored length of the frame                         |
//! | 44     | 4    | plaintext length of the frame                      |
//! | 48     | 4    | offset of the blob's plaintext in the frame's      |
//! | 52     | 4    | plaintext length of the blob                       |
//! | 56     | 1    | kind: `0` data, `1` tree                           |
//! | 57     | 3    | reserved, zero                                     |
//!
//! A blob may appear in several index files (two backups racing, or a repack):
//! any one entry is valid. An index file *must* only be written after every pack
//! it names is durable. `check` verifies the checksum; lookups do not, so opening
//! an index touches only the pages a search visits.
//!
//! Blob ids are keyed hashes, so uniform: a search interpolates on an id's first
//! eight bytes (big-endian) and finds it in two or three pages of a cold file,
//! where bisection would visit ten (see [`IndexFile::get`]). Nothing in the
//! format depends on it: a reader may bisect. A repository searches its index
//! files smallest first (`Repository::lookup`): small files are read whole,
//! so a miss in them costs no disk read.

use super::codec::{envelope, open_envelope, FileKind, ENVELOPE_LEN};
use super::id::{BlobId, IndexId, PackId};
use super::pack::{BlobKind, Frame, PackEntry};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::io::Write;
use std::ops::Deref;
use std::sync::Arc;

const RECORD_LEN: usize = 60;
const BODY_START: usize = ENVELOPE_LEN + 1;

/// Where a blob is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub kind: BlobKind,
    /// The frame holding the blob.
    pub frame: Frame,
    /// Offset of the blob's plaintext in the frame's plaintext.
    pub inner: u32,
    /// Length of the blob's plaintext.
    pub raw_len: u32,
}

/// Serialize an index file from entries grouped by pack.
pub fn encode(packs: &[(PackId, Vec<PackEntry>)]) -> Vec<u8> {
    let mut records: Vec<(BlobId, Location)> = Vec::new();
    for (pack, entries) in packs {
        records.extend(entries.iter().map(|e| (e.id, Location::of(*pack, e))));
    }
    records.sort_by_key(|r| r.0);
    records.dedup_by(|a, b| a.0 == b.0);
    let ids: Vec<PackId> = packs.iter().map(|(id, _)| *id).collect();
    let mut w =
        IndexWriter::new(Vec::new(), &ids, records.len() as u32).expect("writing to memory");
    for (id, loc) in &records {
        w.push(id, loc)
            .expect("records are sorted and name known packs");
    }
    w.finish().expect("counted").0
}

impl Location {
    /// The location of a pack entry.
    pub fn of(pack: PackId, e: &PackEntry) -> Self {
        Location {
            pack,
            kind: e.kind,
            frame: e.frame,
            inner: e.inner,
            raw_len: e.raw_len,
        }
    }
}

/// Writes an index file record by record, for indexes too big to build in
/// memory (prune's merged index). The pack table and the record count come
/// first; records must follow in strictly increasing id order.
pub struct IndexWriter<W: Write> {
    out: W,
    body: blake3::Hasher,
    file: blake3::Hasher,
    packs: HashMap<PackId, u32>,
    left: u32,
    prev: Option<BlobId>,
}

impl<W: Write> IndexWriter<W> {
    pub fn new(out: W, packs: &[PackId], count: u32) -> Result<Self> {
        let mut w = IndexWriter {
            out,
            body: blake3::Hasher::new(),
            file: blake3::Hasher::new(),
            packs: packs
                .iter()
                .enumerate()
                .map(|(i, p)| (*p, i as u32))
                .collect(),
            left: count,
            prev: None,
        };
        let mut head = envelope(FileKind::Index, 1).to_vec();
        head.push(0);
        w.raw(&head)?;
        w.body_bytes(&(packs.len() as u32).to_le_bytes())?;
        w.body_bytes(&count.to_le_bytes())?;
        for p in packs {
            w.body_bytes(&p.0)?;
        }
        Ok(w)
    }

    fn raw(&mut self, b: &[u8]) -> Result<()> {
        self.file.update(b);
        self.out.write_all(b).map_err(|e| Error::io("index", e))
    }

    fn body_bytes(&mut self, b: &[u8]) -> Result<()> {
        self.body.update(b);
        self.raw(b)
    }

    /// Append the record of blob `id`.
    pub fn push(&mut self, id: &BlobId, loc: &Location) -> Result<()> {
        if self.left == 0 || self.prev.is_some_and(|p| p >= *id) {
            return Err(Error::InvalidInput(
                "index records out of order or beyond the count".into(),
            ));
        }
        let pack = *self.packs.get(&loc.pack).ok_or_else(|| {
            Error::InvalidInput("index record names a pack not in its table".into())
        })?;
        let mut r = [0u8; RECORD_LEN];
        r[..32].copy_from_slice(&id.0);
        let f = loc.frame;
        for (k, v) in [
            pack,
            f.offset,
            f.stored_len,
            f.raw_len,
            loc.inner,
            loc.raw_len,
        ]
        .iter()
        .enumerate()
        {
            r[32 + 4 * k..36 + 4 * k].copy_from_slice(&v.to_le_bytes());
        }
        r[56] = loc.kind.to_byte();
        self.body_bytes(&r)?;
        self.left -= 1;
        self.prev = Some(*id);
        Ok(())
    }

    /// Write the checksum; returns the output and the file's id.
    pub fn finish(mut self) -> Result<(W, IndexId)> {
        if self.left != 0 {
            return Err(Error::InvalidInput(
                "fewer index records than announced".into(),
            ));
        }
        let sum = *self.body.finalize().as_bytes();
        self.raw(&sum)?;
        Ok((self.out, IndexId(*self.file.finalize().as_bytes())))
    }
}

/// Bytes of an index file: a memory map or a buffer.
pub type Bytes = Arc<dyn IndexBytes>;

/// An index file's bytes, with hints for how they are searched.
pub trait IndexBytes: Deref<Target = [u8]> + Send + Sync {
    /// The first lookup is done: a small file is read whole now, in the
    /// background (lookups search every index file until one has the id,
    /// and a miss in a cold file would cost a read from disk each time).
    fn searched(&self) {}

    /// Lookups come in bulk: bring the file into memory in the background,
    /// and from now on let a page read from disk bring its neighbours.
    fn bulk(&self) {}
}

/// Lookups after which an index file is searched in bulk (see
/// [`IndexBytes::bulk`]). Until then a lookup reads only the two or three
/// pages its search visits in a large file: a command that needs a handful
/// of blobs (the first file of a mount, a restore of one path) never reads a
/// whole large index.
const BULK_LOOKUPS: u32 = 16;

/// Interpolation steps before a search falls back to bisection. Ids are
/// BLAKE3 hashes, so uniform: two steps take 100,000 records to a page. The
/// cap keeps a damaged or crafted file to `O(log n)` probes all the same.
const INTERPOLATION_STEPS: u32 = 4;

/// Below this many records a search bisects: they share one or two pages.
const BISECT_BELOW: usize = 64;

impl IndexBytes for Vec<u8> {}

/// A parsed view of one index file; searches the bytes in place.
#[derive(Clone)]
pub struct IndexFile {
    bytes: Bytes,
    /// Lookups so far (up to [`BULK_LOOKUPS`]), for the hints to `bytes`.
    lookups: Arc<std::sync::atomic::AtomicU32>,
    packs: usize,
    records: usize,
    name: String,
    /// Whether records place blobs in encrypted frames (which are longer).
    sealed: bool,
}

/// The longest data frame's plaintext an index may claim: a chunk of the
/// largest chunker, or a bundle of small blobs.
pub const MAX_DATA_FRAME: u32 = 16 << 20;

impl IndexFile {
    /// Check the framing of `bytes` (named `name` in errors): the layout
    /// above, whatever the repository's format (a format-2 repository's
    /// index objects are encrypted; this is their decoded form). `sealed`
    /// says whether records place blobs in encrypted frames.
    pub fn open(bytes: Bytes, name: &str, sealed: bool) -> Result<Self> {
        let object = format!("index {name}");
        if open_envelope(&bytes, FileKind::Index, &object)?.0 != 1 {
            return Err(Error::corrupt(&object, "not a decoded index file"));
        }
        if bytes.len() < BODY_START + 8 + 32 || bytes[ENVELOPE_LEN] != 0 {
            return Err(Error::corrupt(
                &object,
                "index too short or not a raw frame",
            ));
        }
        let u = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let (packs, records) = (u(BODY_START), u(BODY_START + 4));
        let expect = (packs as u64 * 32)
            .checked_add(records as u64 * RECORD_LEN as u64)
            .and_then(|n| n.checked_add((BODY_START + 8 + 32) as u64));
        if expect != Some(bytes.len() as u64) {
            let expect = expect.map_or("more than fits".to_string(), |n| n.to_string());
            return Err(Error::corrupt(
                &object,
                format!(
                    "length {} does not match its counts (expected {expect})",
                    bytes.len()
                ),
            ));
        }
        Ok(IndexFile {
            bytes,
            lookups: Arc::new(std::sync::atomic::AtomicU32::new(0)),
            packs,
            records,
            name: name.to_string(),
            sealed,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's length in bytes.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Verify the checksum and that records are sorted and point at known packs.
    pub fn verify(&self) -> Result<()> {
        let object = format!("index {}", self.name);
        let end = self.bytes.len() - 32;
        if blake3::hash(&self.bytes[BODY_START..end]).as_bytes() != &self.bytes[end..] {
            return Err(Error::corrupt(&object, "checksum mismatch"));
        }
        let mut prev: Option<BlobId> = None;
        for i in 0..self.records {
            let id = self.id_at(i);
            if prev.is_some_and(|p| p >= id) {
                return Err(Error::corrupt(&object, "records not sorted"));
            }
            prev = Some(id);
            self.location_at(i, &object)?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The pack ids this index names.
    pub fn packs(&self) -> impl Iterator<Item = PackId> + '_ {
        (0..self.packs).map(|i| self.pack_at(i))
    }

    fn pack_at(&self, i: usize) -> PackId {
        let at = BODY_START + 8 + i * 32;
        PackId(self.bytes[at..at + 32].try_into().unwrap())
    }

    fn record(&self, i: usize) -> &[u8] {
        let at = BODY_START + 8 + self.packs * 32 + i * RECORD_LEN;
        &self.bytes[at..at + RECORD_LEN]
    }

    fn id_at(&self, i: usize) -> BlobId {
        BlobId(self.record(i)[..32].try_into().unwrap())
    }

    fn location_at(&self, i: usize, object: &str) -> Result<Location> {
        self.checked_location(i)
            .map_err(|reason| Error::corrupt(object, reason))
    }

    /// [`IndexFile::location_at`], or why the record is impossible: no
    /// name is formatted unless it is (a lookup per blob of every file).
    fn checked_location(&self, i: usize) -> std::result::Result<Location, &'static str> {
        let r = self.record(i);
        let u = |at: usize| u32::from_le_bytes(r[at..at + 4].try_into().unwrap());
        let pack = u(32) as usize;
        if pack >= self.packs {
            return Err("record names a pack beyond the table");
        }
        let kind = BlobKind::from_byte(r[56]).ok_or("unknown blob kind")?;
        let loc = Location {
            pack: self.pack_at(pack),
            kind,
            frame: Frame {
                offset: u(36),
                stored_len: u(40),
                raw_len: u(44),
            },
            inner: u(48),
            raw_len: u(52),
        };
        // A frame is never larger than its plaintext plus the codec's
        // overhead (the writer stores raw what does not shrink), and a
        // frame's plaintext never larger than a chunk, a bundle or a tree.
        let f = loc.frame;
        let max_raw = match kind {
            BlobKind::Data => MAX_DATA_FRAME as usize,
            BlobKind::Tree => super::tree::MAX_ENCODED,
        };
        let overhead = if self.sealed {
            super::codec::Codec::sealed_overhead(f.raw_len as u64)
        } else {
            1
        };
        if f.raw_len as usize > max_raw || f.stored_len as u64 > f.raw_len as u64 + overhead {
            return Err("record gives impossible frame lengths");
        }
        if loc.inner as u64 + loc.raw_len as u64 > loc.frame.raw_len as u64 {
            return Err("record places a blob outside its frame");
        }
        Ok(loc)
    }

    /// The first eight bytes of record `i`'s id, as a number.
    fn key_at(&self, i: usize) -> u64 {
        u64::from_be_bytes(self.record(i)[..8].try_into().unwrap())
    }

    /// Find `id`: interpolation on the id's leading bytes, then bisection.
    pub fn get(&self, id: &BlobId) -> Result<Option<Location>> {
        let found = self.search(id, |_| {});
        // The hints follow the search, so its own two or three pages are
        // read first rather than queued behind a whole file read ahead.
        let n = &self.lookups;
        if n.load(std::sync::atomic::Ordering::Relaxed) < BULK_LOOKUPS {
            match n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 {
                1 => self.bytes.searched(),
                BULK_LOOKUPS => self.bytes.bulk(),
                _ => {}
            }
        }
        match found {
            Some(i) => self
                .checked_location(i)
                .map(Some)
                .map_err(|reason| Error::corrupt(format!("index {}", self.name), reason)),
            None => Ok(None),
        }
    }

    /// The record holding `id`; `probed` sees each record compared.
    ///
    /// Each interpolation step guesses the position from the id's leading
    /// bytes, then probes a second record `sqrt(len)` beyond the guess,
    /// toward the id: hashed ids put the id between the two almost always,
    /// so a step shrinks `len` records to `sqrt(len)`, both sides bounded.
    fn search(&self, id: &BlobId, mut probed: impl FnMut(usize)) -> Option<usize> {
        let target = &id.0[..];
        let key = u64::from_be_bytes(id.0[..8].try_into().unwrap());
        // The id, if present, is in records [lo, hi), whose keys lie in
        // [klo, khi]: each probe bounds one side by its own key.
        let (mut lo, mut hi) = (0usize, self.records);
        let (mut klo, mut khi) = (0u64, u64::MAX);
        let mut steps = 0;
        // After an interpolated guess: the guess, and how far beyond it the
        // guard probe goes.
        let mut guard: Option<(usize, usize)> = None;
        while lo < hi {
            let len = hi - lo;
            let i = match guard.take() {
                // The guess was below the id (its probe moved `lo` past it).
                Some((guess, reach)) if lo > guess => (guess + reach).min(hi - 1),
                Some((guess, reach)) => guess.saturating_sub(reach).max(lo),
                None if steps < INTERPOLATION_STEPS && len > BISECT_BELOW => {
                    steps += 1;
                    let frac = (key - klo) as u128 * len as u128 / ((khi - klo) as u128 + 1);
                    let guess = lo + frac as usize;
                    guard = Some((guess, len.isqrt()));
                    guess
                }
                None => lo + len / 2,
            };
            probed(i);
            match self.record(i)[..32].cmp(target) {
                std::cmp::Ordering::Less => (lo, klo) = (i + 1, self.key_at(i)),
                std::cmp::Ordering::Greater => (hi, khi) = (i, self.key_at(i)),
                std::cmp::Ordering::Equal => return Some(i),
            }
        }
        None
    }

    /// Record `i` (in id order).
    pub fn record_at(&self, i: usize) -> Result<(BlobId, Location)> {
        Ok((
            self.id_at(i),
            self.location_at(i, &format!("index {}", self.name))?,
        ))
    }

    /// Every record, in id order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(BlobId, Location)>> + '_ {
        let object = format!("index {}", self.name);
        (0..self.records).map(move |i| Ok((self.id_at(i), self.location_at(i, &object)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u8, offset: u32) -> PackEntry {
        PackEntry {
            kind: BlobKind::Data,
            id: BlobId([id; 32]),
            frame: Frame {
                offset,
                stored_len: 10,
                raw_len: 20,
            },
            inner: 0,
            raw_len: 20,
        }
    }

    #[test]
    fn lookups_find_every_record_and_nothing_else() {
        let packs = vec![
            (PackId([7; 32]), vec![entry(5, 8), entry(1, 18)]),
            (PackId([9; 32]), vec![entry(3, 8)]),
        ];
        let bytes = encode(&packs);
        let idx = IndexFile::open(Arc::new(bytes), "t", false).unwrap();
        idx.verify().unwrap();
        assert_eq!(idx.len(), 3);
        let loc = idx.get(&BlobId([3; 32])).unwrap().unwrap();
        assert_eq!((loc.pack, loc.frame.offset), (PackId([9; 32]), 8));
        assert_eq!(idx.get(&BlobId([1; 32])).unwrap().unwrap().frame.offset, 18);
        assert!(idx.get(&BlobId([2; 32])).unwrap().is_none());
        assert!(idx.get(&BlobId([255; 32])).unwrap().is_none());
    }

    /// Every present id is found and every absent one missed, whether ids
    /// are uniform (hashes), clustered, or share their leading bytes (the
    /// interpolation's key), so a skewed file still searches correctly.
    #[test]
    fn searches_find_every_id_however_the_ids_are_spread() {
        let uniform = |i: u32| *blake3::hash(&i.to_le_bytes()).as_bytes();
        let clustered = |i: u32| {
            let mut id = [0u8; 32];
            id[0] = if i.is_multiple_of(10) { 0xf0 } else { 0x01 };
            id[8..12].copy_from_slice(&i.to_be_bytes());
            id
        };
        let same_head = |i: u32| {
            let mut id = [0x42u8; 32];
            id[20..24].copy_from_slice(&i.to_be_bytes());
            id
        };
        let spreads: [&dyn Fn(u32) -> [u8; 32]; 3] = [&uniform, &clustered, &same_head];
        for spread in spreads {
            // Even numbers are stored, odd ones are absent.
            let entries: Vec<PackEntry> = (0..5000u32)
                .step_by(2)
                .map(|i| PackEntry {
                    id: BlobId(spread(i)),
                    ..entry(0, i)
                })
                .collect();
            let idx = IndexFile::open(Arc::new(encode(&[(PackId([1; 32]), entries)])), "t", false)
                .unwrap();
            idx.verify().unwrap();
            for i in 0..5000u32 {
                let got = idx.get(&BlobId(spread(i))).unwrap();
                let stored = i.is_multiple_of(2).then_some(i);
                assert_eq!(got.map(|l| l.frame.offset), stored);
            }
            assert_eq!(idx.get(&BlobId([0; 32])).unwrap(), None);
            assert_eq!(idx.get(&BlobId([0xff; 32])).unwrap(), None);
        }
    }

    /// A damaged file whose records are out of order may miss ids, but
    /// every search ends, in bounds, without a panic.
    #[test]
    fn searches_of_unsorted_records_end() {
        let id = |i: u32| BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes());
        let entries = (0..3000u32)
            .map(|i| PackEntry {
                id: id(i),
                ..entry(0, i)
            })
            .collect();
        let mut bytes = encode(&[(PackId([1; 32]), entries)]);
        let records = BODY_START + 8 + 32;
        // Reverse the order of the records.
        let body = &mut bytes[records..records + 3000 * RECORD_LEN];
        let rows: Vec<Vec<u8>> = body.chunks(RECORD_LEN).rev().map(<[u8]>::to_vec).collect();
        body.copy_from_slice(&rows.concat());
        let idx = IndexFile::open(Arc::new(bytes), "t", false).unwrap();
        let mut probes = 0;
        for i in 0..3000 {
            let _ = idx.search(&id(i), |r| {
                assert!(r < 3000);
                probes += 1;
            });
        }
        assert!(probes < 3000 * 32, "{probes} probes");
    }

    /// Hashed ids are found reading two or three pages of the file, where
    /// bisection of the same 100,000 records visits about ten.
    #[test]
    fn hashed_ids_are_found_in_a_few_pages() {
        let id = |i: u32| BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes());
        let n = 100_000u32;
        let entries = (0..n)
            .map(|i| PackEntry {
                id: id(i),
                ..entry(0, i)
            })
            .collect();
        let idx =
            IndexFile::open(Arc::new(encode(&[(PackId([1; 32]), entries)])), "t", false).unwrap();
        let (mut total, mut worst) = (0, 0);
        for i in 0..n + n / 10 {
            let mut pages = std::collections::BTreeSet::new();
            let found = idx.search(&id(i), |r| {
                let at = BODY_START + 8 + 32 + r * RECORD_LEN;
                pages.insert(at / 4096);
                pages.insert((at + RECORD_LEN - 1) / 4096);
            });
            assert_eq!(found.is_some(), i < n);
            total += pages.len();
            worst = worst.max(pages.len());
        }
        let mean = total as f64 / (n + n / 10) as f64;
        assert!(mean < 3.5, "mean pages {mean}");
        assert!(worst <= 8, "worst pages {worst}");
    }

    #[test]
    fn damage_is_detected() {
        let mut bytes = encode(&[(PackId([7; 32]), vec![entry(5, 8)])]);
        let idx = IndexFile::open(Arc::new(bytes.clone()), "t", false).unwrap();
        idx.verify().unwrap();
        bytes[BODY_START + 8 + 32 + 40] ^= 1;
        let idx = IndexFile::open(Arc::new(bytes.clone()), "t", false).unwrap();
        assert!(idx.verify().is_err());
        bytes.pop();
        assert!(IndexFile::open(Arc::new(bytes), "t", false).is_err());
    }
}

//! Reading blobs: by id through the index, decoded, and checked against the
//! id and the length the caller expects.

use super::Repository;
use crate::backend::readahead::fit_windows;
use crate::backend::{FileType, Planned};
use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId, TreeId};
use crate::format::index::Location;
use crate::format::pack::{self, BlobKind, Frame, PackEntry};
use crate::format::tree::Tree;
use std::sync::Arc;

const MISSING_PACK: &str = "pack file is missing";

/// A planned blob's location (`None`: not in the index) and the index of
/// its frame among the plan's reads.
type Found = (Option<Location>, usize);

fn is_missing_pack(e: &Error) -> bool {
    matches!(e, Error::Corrupt { reason, .. } if reason == MISSING_PACK)
}

fn blob_slice<'a>(plain: &'a [u8], inner: u32, len: u32, object: &str) -> Result<&'a [u8]> {
    let start = inner as usize;
    start
        .checked_add(len as usize)
        .and_then(|end| plain.get(start..end))
        .ok_or_else(|| Error::corrupt(object, "blob lies outside its frame"))
}

impl Repository {
    /// The plaintext of blob `id`, checked against its id. With `expected`
    /// (a data blob's length as its tree gives it), the index must agree
    /// before a byte is read.
    pub fn read_blob(&self, id: &BlobId, expected: Option<u32>) -> Result<Vec<u8>> {
        let loc = self.lookup(id)?.ok_or_else(|| {
            Error::corrupt(
                format!("blob {}", id.short()),
                "not in any index (missing data)",
            )
        })?;
        self.read_blob_found(id, expected, loc)
    }

    /// [`Repository::read_blob`] of a blob already looked up at `loc`.
    fn read_blob_found(
        &self,
        id: &BlobId,
        expected: Option<u32>,
        loc: Location,
    ) -> Result<Vec<u8>> {
        if let Some(len) = expected {
            if loc.raw_len != len {
                return Err(Error::corrupt(
                    format!("blob {}", id.short()),
                    format!("the index gives {} bytes, the tree {len}", loc.raw_len),
                ));
            }
        }
        match self.read_blob_at(id, &loc) {
            // A blob whose pack was lost may have been stored again since.
            Err(e) if is_missing_pack(&e) => {
                for other in self.lookup_all(id)?.into_iter().filter(|l| *l != loc) {
                    if expected.is_none_or(|len| other.raw_len == len) {
                        if let Ok(plain) = self.read_blob_at(id, &other) {
                            return Ok(plain);
                        }
                    }
                }
                Err(e)
            }
            other => other,
        }
    }

    /// The plaintext of data blob `id`, which a tree says is `len` bytes.
    pub fn read_data(&self, id: &BlobId, len: u32) -> Result<Vec<u8>> {
        self.read_blob(id, Some(len))
    }

    /// [`Repository::read_data`] of a blob [`Repository::plan_data`] found
    /// at `loc` (one index search per blob, not two).
    pub fn read_data_at(&self, id: &BlobId, len: u32, loc: Location) -> Result<Vec<u8>> {
        self.read_blob_found(id, Some(len), loc)
    }

    /// Tell a remote backend the pack ranges that reading data blobs `ids`
    /// (in this order, by [`Repository::read_data`]) will take, up to `max`
    /// stored bytes: it may download them ahead and keep them until the
    /// plan is dropped ([`Backend::plan`](crate::backend::Backend::plan)).
    /// Also where the blobs the plan covers are (the first of `ids`, as far
    /// as one plan of the backend holds), in order (`None`: not in the
    /// index, whose read fails on its own), for
    /// [`Repository::read_data_at`]; its reader may drop the plan once it
    /// has read those, and plan the rest. A local repository plans nothing.
    pub fn plan_data<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a BlobId>,
        max: u64,
    ) -> Option<(Planned, Vec<Option<Location>>)> {
        self.plan_with(ids, max, false)
    }

    /// [`Repository::plan_data`] for the next stretch of a file being read:
    /// never waits ([`Backend::plan_now`](crate::backend::Backend::plan_now)).
    pub fn plan_data_now<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a BlobId>,
        max: u64,
    ) -> Option<(Planned, Vec<Option<Location>>)> {
        self.plan_with(ids, max, true)
    }

    fn plan_with<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a BlobId>,
        max: u64,
        now: bool,
    ) -> Option<(Planned, Vec<Option<Location>>)> {
        if self.backend.is_local() {
            return None;
        }
        let (reads, covered) = self.frames_of(ids, max);
        let (plan, n) = match now {
            true => self.backend.plan_now(FileType::Pack, &reads)?,
            false => self.backend.plan(FileType::Pack, &reads)?,
        };
        Some((plan, Self::covered(covered, n)))
    }

    /// The locations of the blobs whose frames are the first `n`.
    fn covered(blobs: Vec<Found>, n: usize) -> Vec<Option<Location>> {
        blobs
            .into_iter()
            .take_while(|(_, frame)| *frame < n)
            .map(|(loc, _)| loc)
            .collect()
    }

    /// The distinct frames (pack, offset, length) that reading blobs `ids`
    /// in order takes, up to `max` stored bytes and as far as one plan of
    /// the read-ahead holds ([`fit_windows`]); and each blob's location
    /// with the index of its frame (for a blob not in the index, that of
    /// the frame before it).
    fn frames_of<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a BlobId>,
        max: u64,
    ) -> (Vec<(String, u64, u64)>, Vec<Found>) {
        let mut frames: Vec<(PackId, u64, u64)> = Vec::new();
        let mut windows: Vec<(PackId, u64)> = Vec::new();
        let (mut total, mut covered) = (0u64, Vec::new());
        for id in ids {
            if total >= max {
                break;
            }
            let Ok(Some(loc)) = self.lookup(id) else {
                covered.push((None, frames.len().saturating_sub(1)));
                continue;
            };
            let (offset, len) = (loc.frame.offset as u64, loc.frame.stored_len as u64);
            // Blobs of one bundled frame: one read of it.
            if !frames
                .last()
                .is_some_and(|f| f.0 == loc.pack && f.1 == offset)
            {
                if !fit_windows(&mut windows, &loc.pack, offset, len) {
                    break;
                }
                total = total.saturating_add(len);
                frames.push((loc.pack, offset, len));
            }
            covered.push((Some(loc), frames.len() - 1));
        }
        let reads = frames
            .into_iter()
            .map(|(pack, offset, len)| (pack.to_hex(), offset, len))
            .collect();
        (reads, covered)
    }

    /// The plaintext of blob `id` at `loc`, checked against its id.
    pub fn read_blob_at(&self, id: &BlobId, loc: &Location) -> Result<Vec<u8>> {
        let object = format!("blob {} in pack {}", id.short(), loc.pack.short());
        let plain = self.frame_plain(
            &loc.pack,
            loc.frame,
            loc.frame.raw_len != loc.raw_len,
            loc.kind,
            &object,
        )?;
        let blob = blob_slice(&plain, loc.inner, loc.raw_len, &object)?;
        self.verify_blob(id, loc.kind, blob, &object)?;
        if blob.len() == plain.len() {
            // A frame of its own is not cached: hand over its buffer, not a copy
            // (this is every chunk a restore or the mount reads).
            return Ok(Arc::try_unwrap(plain).unwrap_or_else(|shared| shared.to_vec()));
        }
        Ok(blob.to_vec())
    }

    /// The decoded plaintext of a frame. Bundles (frames of several small
    /// blobs) are kept in a small cache: readers of neighbouring small files
    /// decompress each bundle once.
    fn frame_plain(
        &self,
        pack: &PackId,
        frame: Frame,
        bundle: bool,
        kind: BlobKind,
        object: &str,
    ) -> Result<Arc<Vec<u8>>> {
        let key = (*pack, frame.offset);
        if bundle {
            if let Some(hit) = self
                .frames
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
            {
                return Ok(hit);
            }
        }
        let bytes = match self.read_frame_bytes(pack, frame, kind) {
            Err(Error::NotFound(_)) => return Err(Error::corrupt(object, MISSING_PACK)),
            Err(Error::Corrupt { reason, .. }) => return Err(Error::corrupt(object, reason)),
            other => other?,
        };
        let aad = pack::frame_aad(pack.0, frame.offset);
        let plain =
            Arc::new(
                self.codec
                    .decode_vec(bytes, Some(frame.raw_len as usize), &aad, object)?,
            );
        if bundle {
            self.frames
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, plain.clone());
        }
        Ok(plain)
    }

    /// A frame's stored bytes: from the pack, or for tree frames of a remote
    /// repository from the whole pack in the local cache (a second backup
    /// then reads its parent's trees without a request each).
    fn read_frame_bytes(&self, pack: &PackId, frame: Frame, kind: BlobKind) -> Result<Vec<u8>> {
        let name = pack.to_hex();
        if let (BlobKind::Tree, Some(cache)) = (kind, self.remote_cache()) {
            if cache.pack(&name).is_none() {
                let bytes = self.backend.get(FileType::Pack, &name)?;
                let _ = cache.put_pack(&name, &bytes);
            }
            // A cached pack that cannot be read is read from the repository.
            if let Ok(bytes) =
                cache.read_pack_range(&name, frame.offset as u64, frame.stored_len as usize)
            {
                return Ok(bytes);
            }
        }
        self.backend.get_range(
            FileType::Pack,
            &name,
            frame.offset as u64,
            frame.stored_len as usize,
        )
    }

    /// Keep a tree pack this process stored in the local cache, when the
    /// repository is remote: the next backup reads its parent's trees
    /// without downloading them.
    pub(crate) fn cache_tree_pack(&self, pack: &PackId, bytes: &[u8]) {
        if let Some(cache) = self.remote_cache() {
            let _ = cache.put_pack(&pack.to_hex(), bytes);
        }
    }

    /// Check that `plain` hashes to `id`.
    pub fn verify_blob(
        &self,
        id: &BlobId,
        kind: BlobKind,
        plain: &[u8],
        object: &str,
    ) -> Result<()> {
        let actual = match kind {
            BlobKind::Data => self.hasher.blob(plain),
            BlobKind::Tree => self.hasher.tree(plain).blob(),
        };
        if actual != *id {
            return Err(Error::corrupt(object, "content does not match its id"));
        }
        Ok(())
    }

    /// Decode the frames of pack `pack` that `bytes` holds (`bytes` starts
    /// at offset `at` of the pack) and check every blob of `entries` in them.
    /// Entries whose frame is not wholly inside `bytes` are skipped. Returns
    /// the blobs that failed, with the reason.
    pub fn verify_frames(
        &self,
        pack: &PackId,
        bytes: &[u8],
        at: u64,
        entries: &[PackEntry],
        object: &str,
    ) -> Vec<(BlobId, String)> {
        let mut bad = Vec::new();
        let mut current: Option<(Frame, Result<Vec<u8>>)> = None;
        for e in entries {
            let start = (e.frame.offset as u64).checked_sub(at);
            let end = start.and_then(|s| s.checked_add(e.frame.stored_len as u64));
            let (Some(start), Some(end)) = (start, end) else {
                continue;
            };
            if end > bytes.len() as u64 {
                continue;
            }
            if current.as_ref().map(|(f, _)| *f) != Some(e.frame) {
                let aad = pack::frame_aad(pack.0, e.frame.offset);
                let decoded = self.codec.decode(
                    &bytes[start as usize..end as usize],
                    Some(e.frame.raw_len as usize),
                    &aad,
                    object,
                );
                current = Some((e.frame, decoded));
            }
            let res = match &current.as_ref().expect("just set").1 {
                Ok(plain) => blob_slice(plain, e.inner, e.raw_len, object)
                    .and_then(|b| self.verify_blob(&e.id, e.kind, b, object)),
                Err(err) => Err(Error::corrupt(object, err)),
            };
            if let Err(err) = res {
                bad.push((e.id, err.to_string()));
            }
        }
        bad
    }

    /// Load and validate a tree.
    pub fn load_tree(&self, id: &TreeId) -> Result<Tree> {
        let bytes = self.read_blob(&id.blob(), None)?;
        Tree::decode(&bytes, &format!("tree {}", id.short()))
    }

    /// The header entries of a pack, read from its end.
    pub fn pack_header(&self, id: &PackId) -> Result<Vec<PackEntry>> {
        let name = id.to_hex();
        let object = format!("pack {}", id.short());
        let size = self.backend.stat(FileType::Pack, &name)?.size;
        if size < (pack::TRAILER_LEN + 8) as u64 {
            return Err(Error::corrupt(&object, "pack too short"));
        }
        let envelope =
            self.backend
                .get_range(FileType::Pack, &name, 0, crate::format::codec::ENVELOPE_LEN)?;
        self.codec
            .open(&envelope, crate::format::codec::FileKind::Pack, &object)?;
        let trailer = self.backend.get_range(
            FileType::Pack,
            &name,
            size - pack::TRAILER_LEN as u64,
            pack::TRAILER_LEN,
        )?;
        let (start, hlen) = pack::header_range(size, &trailer, &object)?;
        let frame = self.backend.get_range(FileType::Pack, &name, start, hlen)?;
        pack::decode_header_frame(&frame, start, &self.codec, id.0, &object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::readahead::{ReadAhead, PLAN_MAX};
    use crate::backend::Backend;
    use crate::repo::writer::RepoWriter;
    use crate::repo::InitOptions;
    use crate::testing::noise;

    /// A plan's locations are those of the blobs whose frames it holds: all
    /// the blobs of a bundled frame (a blob missing from the index between
    /// two of them too, without a location), and no blob past the frames
    /// that fit one plan's windows.
    #[test]
    fn a_plan_locates_the_blobs_of_the_frames_it_holds() {
        let mem: Arc<dyn Backend> = Arc::new(MemoryBackend::remote());
        let backend = Arc::new(ReadAhead::new(mem, 8));
        let repo = Arc::new(Repository::init(backend, &InitOptions::plain()).unwrap());
        let w = RepoWriter::new(repo.clone(), 3, false).unwrap();
        // Two small blobs bundled in one frame, then big ones 3 MiB apart.
        let a = w.add_data(&noise(1000, 1)).unwrap();
        let b = w.add_data(&noise(1000, 2)).unwrap();
        let mut far = Vec::new();
        for i in 0..8 {
            far.push(w.add_data(&noise(100_000, 10 + i)).unwrap());
            w.add_data(&noise(3 << 20, 100 + i)).unwrap();
        }
        w.flush().unwrap();
        let (la, lb) = (
            repo.lookup(&a).unwrap().unwrap(),
            repo.lookup(&b).unwrap().unwrap(),
        );
        assert_eq!(
            (la.pack, la.frame.offset),
            (lb.pack, lb.frame.offset),
            "bundled"
        );
        let missing = BlobId([7; 32]);
        let (_plan, locs) = repo.plan_data_now([&a, &missing, &b], 8 << 20).unwrap();
        assert_eq!(locs.len(), 3, "the bundle's blobs and the one between");
        assert!(locs[0].is_some() && locs[1].is_none() && locs[2].is_some());
        // Each far blob in a window of its own: one plan holds four.
        let (_plan, locs) = repo.plan_data_now(&far, 64 << 20).unwrap();
        assert_eq!(locs.len(), PLAN_MAX);
    }
}

//! Throughput of the backup write path, stage by stage, in bytes per second.
//!
//! | group     | what is timed                                                     |
//! |-----------|-------------------------------------------------------------------|
//! | `chunker` | `Chunker::split` over 64 MiB (random, and SQL-dump-like text): FastCDC, the keyed chunker with a PRF at every position, and with candidates |
//! | `hash`    | keyed BLAKE3 blob ids (`Hasher::blob`) of one 512 KiB chunk       |
//! | `codec`   | `Codec::encode`/`decode` of one 512 KiB chunk, text and random    |
//! | `pack`    | `PackWriter` over a `Vec<u8>`: pre-encoded frames to ~16 MiB, `finish` |
//! | `repo`    | chunk 64 MiB of text and `RepoWriter::add_data` every chunk into a fresh memory repository, then `flush` |
//!
//! Throughput is counted in plaintext bytes, except for `pack`, which counts
//! the frame bytes it writes. Inputs are deterministic (fixed seeds), so runs
//! compare. Run with `cargo bench --bench throughput`; pass a filter to run
//! one group, e.g. `cargo bench --bench throughput -- codec`.

use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use rewind::backend::memory::MemoryBackend;
use rewind::chunker::Chunker;
use rewind::format::codec::{Aad, Codec, FileKind};
use rewind::format::config::ChunkerParams;
use rewind::format::crypto::{MasterKey, Subkeys, MASTER_LEN};
use rewind::format::id::{BlobId, Hasher};
use rewind::format::pack::{BlobKind, PackEntry, PackWriter};
use rewind::repo::writer::RepoWriter;
use rewind::repo::{InitOptions, Repository};
use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const MIB: usize = 1 << 20;
/// Size of the whole-buffer inputs (chunker, end to end).
const BIG: usize = 64 * MIB;
/// One chunk: the chunker's average size.
const CHUNK: usize = 512 * 1024;
/// Pack size the repository aims for.
const PACK: usize = 16 * MIB;

/// xorshift64: fast, deterministic, good enough to defeat zstd.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `n` bytes that do not compress (media files).
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(n);
    out
}

/// `n` bytes of a WordPress-like SQL dump: one `INSERT` per row, numbers,
/// dates and prose from a small vocabulary. zstd -3 shrinks it about 3-4x.
fn sql_text(n: usize, seed: u64) -> Vec<u8> {
    use std::io::Write;
    const WORDS: &[&str] = &[
        "the", "backup", "of", "a", "server", "and", "to", "post", "comment", "in", "is", "for",
        "with", "database", "file", "that", "on", "snapshot", "restore", "site", "page", "user",
        "theme", "plugin", "update", "security", "release", "version", "image", "gallery", "menu",
        "widget", "category", "tag", "archive", "draft", "publish", "review", "support", "thanks",
        "great", "article", "question", "answer", "about", "contact", "home", "blog", "news",
        "event", "summer", "winter", "garden", "recipe", "travel", "photo", "video", "music",
        "school", "project", "team", "office",
    ];
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(n + 4096);
    let mut row = 0u64;
    while out.len() < n {
        row += 1;
        let (y, mo, d) = (2015 + rng.below(10), 1 + rng.below(12), 1 + rng.below(28));
        let (h, mi, s) = (rng.below(24), rng.below(60), rng.below(60));
        let author = 1 + rng.below(500);
        write!(
            out,
            "INSERT INTO wp_posts VALUES ({row},{author},'{y}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}','"
        )
        .expect("writing to a Vec");
        for i in 0..8 + rng.below(120) {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
        }
        let status = ["publish", "draft", "inherit", "private"][rng.below(4)];
        writeln!(
            out,
            "','{status}','open','open','post-{row}',{});",
            rng.below(1000)
        )
        .expect("writing to a Vec");
    }
    out.truncate(n);
    out
}

fn random_big() -> &'static [u8] {
    static BUF: OnceLock<Vec<u8>> = OnceLock::new();
    BUF.get_or_init(|| random_bytes(BIG, 0x5eed_0001))
}

fn text_big() -> &'static [u8] {
    static BUF: OnceLock<Vec<u8>> = OnceLock::new();
    BUF.get_or_init(|| sql_text(BIG, 0x5eed_0002))
}

/// Settings that keep the whole run to a few minutes on a small machine.
fn short<M: criterion::measurement::Measurement>(g: &mut BenchmarkGroup<'_, M>) {
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

fn chunker(c: &mut Criterion) {
    let plain = Chunker::new(ChunkerParams::default(), None);
    let keyed = Chunker::new(ChunkerParams::default(), Some(&[9; 32]));
    let candidates = Chunker::with_candidates(
        ChunkerParams::default(),
        Some(&[9; 32]),
        rewind::format::config::CANDIDATE_BITS,
    );
    let mut g = c.benchmark_group("chunker");
    short(&mut g);
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Bytes(BIG as u64));
    for (kind, chunker) in [
        ("fastcdc", &plain),
        ("keyed_every", &keyed),
        ("keyed", &candidates),
    ] {
        for (name, data) in [("random_64MiB", random_big()), ("text_64MiB", text_big())] {
            g.bench_function(format!("{kind}_{name}"), |b| {
                b.iter(|| chunker.split(black_box(data)))
            });
        }
    }
    g.finish();
}

fn hash(c: &mut Criterion) {
    let hasher = Hasher::new([7; 32]);
    let data = &random_big()[..CHUNK];
    let mut g = c.benchmark_group("hash");
    short(&mut g);
    g.throughput(Throughput::Bytes(CHUNK as u64));
    g.bench_function("blob_id_512KiB", |b| {
        b.iter(|| hasher.blob(black_box(data)))
    });
    g.finish();
}

/// The plaintext codec and the encrypted one, at `level`.
fn codecs(level: i32) -> [(&'static str, Codec); 2] {
    let keys = Subkeys::derive(&MasterKey::from_bytes([3; MASTER_LEN]));
    [
        ("plain", Codec::new(level)),
        ("sealed", Codec::encrypted(level, &keys)),
    ]
}

fn codec(c: &mut Criterion) {
    let text = &text_big()[..CHUNK];
    let random = &random_big()[..CHUNK];
    let aad = Aad::whole(FileKind::Pack, [1; 32]);
    let mut g = c.benchmark_group("codec");
    short(&mut g);
    g.throughput(Throughput::Bytes(CHUNK as u64));
    for (kind, codec) in codecs(3) {
        for (name, data) in [("text", text), ("random", random)] {
            let frame = codec.encode(data, &aad);
            eprintln!(
                "codec: {kind} {name} 512 KiB at level 3 -> {} bytes ({:.2}x)",
                frame.len(),
                CHUNK as f64 / frame.len() as f64
            );
            g.bench_function(format!("{kind}_encode_l3_{name}"), |b| {
                b.iter(|| codec.encode(black_box(data), &aad))
            });
            g.bench_function(format!("{kind}_decode_l3_{name}"), |b| {
                b.iter(|| {
                    codec
                        .decode(black_box(&frame), Some(CHUNK), &aad, "bench")
                        .expect("decodes")
                })
            });
        }
    }
    for level in [1, 6] {
        let codec = Codec::new(level);
        g.bench_function(format!("plain_encode_l{level}_text"), |b| {
            b.iter(|| codec.encode(black_box(text), &aad))
        });
    }
    g.finish();
}

fn pack(c: &mut Criterion) {
    let hasher = Hasher::new([7; 32]);
    let mut g = c.benchmark_group("pack");
    short(&mut g);
    for (kind, codec) in codecs(3) {
        // 32 distinct text chunks, compressed once; the pack cycles through
        // them and seals each where it lands, as `RepoWriter` does.
        let chunks: Vec<(BlobId, &[u8])> = text_big()
            .chunks(CHUNK)
            .take(32)
            .map(|plain| (hasher.blob(plain), plain))
            .collect();
        let compressed: Vec<_> = chunks.iter().map(|(_, p)| codec.compress(p)).collect();
        let sizes: Vec<usize> = compressed
            .iter()
            .map(|c| {
                codec
                    .encode(
                        &text_big()[..c.raw_len()],
                        &Aad::whole(FileKind::Pack, [0; 32]),
                    )
                    .len()
            })
            .collect();
        let mut per_pack = 0;
        let mut count = 0;
        while per_pack < PACK {
            per_pack += sizes[count % sizes.len()];
            count += 1;
        }
        let write = || {
            let mut w = PackWriter::new(Vec::with_capacity(PACK + MIB), &codec, [5; 32])
                .expect("vec write");
            for ((id, _), c) in chunks.iter().zip(&compressed).cycle().take(count) {
                w.add_frame(c, &[(BlobKind::Data, *id, 0, CHUNK as u32)])
                    .expect("vec write");
            }
            w.finish().expect("finish")
        };
        let (bytes, entries): (Vec<u8>, Vec<PackEntry>) = write();
        assert_eq!(entries.len(), count);
        assert!(bytes.len() > per_pack / 2, "pack holds every frame");
        g.throughput(Throughput::Bytes(per_pack as u64));
        g.bench_function(format!("{kind}_write_16MiB_text_frames"), |b| b.iter(write));
    }
    g.finish();
}

fn repo(c: &mut Criterion) {
    let data = text_big();
    let mut g = c.benchmark_group("repo");
    short(&mut g);
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(BIG as u64));
    for (kind, opts) in [
        ("plain", InitOptions::plain()),
        ("sealed", InitOptions::test()),
    ] {
        let fresh = || {
            let repo =
                Repository::init(Arc::new(MemoryBackend::new()), &opts).expect("memory repo");
            let level = repo.config().compression;
            let chunker = repo.chunker();
            (
                RepoWriter::new(Arc::new(repo), level, false).expect("writer"),
                chunker,
            )
        };
        let backup = |(writer, chunker): (RepoWriter, Chunker)| {
            let mut at = 0;
            for n in chunker.split(data) {
                writer.add_data(&data[at..at + n]).expect("add_data");
                at += n;
            }
            writer.flush().expect("flush");
            writer
        };
        // Every chunk must be new to the fresh repository, or this measures dedup.
        let stats = backup(fresh()).stats();
        assert_eq!(stats.raw_bytes, BIG as u64);
        eprintln!(
            "repo: {kind} 64 MiB text -> {} data blobs, {} bytes stored, {} packs",
            stats.data_blobs, stats.stored_bytes, stats.packs
        );
        g.bench_function(format!("{kind}_add_data_64MiB_text"), |b| {
            b.iter_batched(fresh, backup, BatchSize::PerIteration)
        });
    }
    g.finish();
}

criterion_group!(benches, chunker, hash, codec, pack, repo);
criterion_main!(benches);

//! Prune and bundled frames: small files are stored many to a frame, and a
//! well-compressed frame gives each of its blobs a share of under one byte.
//! Such blobs in packs of forgotten nights must be repacked, never dropped
//! (they were, when a pack's used bytes rounded to zero).

use crate::common::{restored, tree, TempRepo};
use std::ffi::OsStr;
use std::fs;

#[test]
fn small_files_of_forgotten_nights_survive_prune() {
    let t = TempRepo::new();
    let src = t.join("src");
    let small = src.join("small");
    fs::create_dir_all(&small).unwrap();
    tree::file(&src.join("base.bin"), &tree::noise(6 << 20, 7));
    for i in 0..3000 {
        fs::write(small.join(format!("f{i}")), format!("small file {i}\n")).unwrap();
    }
    let mut kept = Vec::new();
    for night in 0..8u32 {
        // Each night rewrites its own 200 files and adds data that goes later.
        for i in night * 300..night * 300 + 300 {
            fs::write(
                small.join(format!("f{i}")),
                format!("small file {i} v{night}\n"),
            )
            .unwrap();
        }
        tree::file(
            &src.join(format!("night-{night}.bin")),
            &tree::noise(400_000, night as u64),
        );
        // A log that compresses to almost nothing shares the small files' frame.
        fs::write(
            src.join("log.txt"),
            format!("night {night}\n").repeat(1000 + night as usize),
        )
        .unwrap();
        if night >= 2 {
            let _ = fs::remove_file(src.join(format!("night-{}.bin", night - 2)));
        }
        let id = t.backup(&src);
        if night >= 6 {
            let copy = t.join(format!("copy-{night}"));
            crate::common::cp_a(&src, &copy);
            kept.push((id, copy));
        }
    }
    t.ok(["forget", "--keep-last", "2"]);
    for args in [&["prune"][..], &["prune", "--max-unused", "0%"]] {
        t.ok(args);
        t.ok(["check", "--read-data"]);
    }
    for (id, copy) in &kept {
        let out = t.join(format!("out-{id}"));
        t.ok([
            OsStr::new("restore"),
            OsStr::new(id),
            OsStr::new("--target"),
            out.as_os_str(),
        ]);
        for i in (0..3000).step_by(7) {
            let name = format!("small/f{i}");
            assert_eq!(
                fs::read(restored(&out, &src).join(&name)).unwrap(),
                fs::read(copy.join(&name)).unwrap(),
                "{name} in {id}"
            );
        }
    }
}

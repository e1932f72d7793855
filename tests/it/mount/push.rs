//! Small files pushed into the kernel's page cache ahead of a reader that
//! goes through a directory in order: they are there before anyone reads
//! them, hold the right bytes, and stop at a large file until the reader
//! gets there.

use super::guard::MountGuard;
use crate::common::tree::noise;
use crate::common::{restored, TempRepo};
use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Whether every page of `p` is in the page cache, asked without reading
/// it (mincore on a mapping; since Linux 5.0 that answers for files the
/// caller owns or could write, which root can, as in CI).
fn resident(p: &Path) -> bool {
    let f = fs::File::open(p).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    assert!(len > 0);
    // SAFETY: a fresh read-only shared mapping of an open file, unmapped below.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(addr, libc::MAP_FAILED, "mmap {}", p.display());
        let pages = len.div_ceil(4096);
        let mut vec = vec![0u8; pages];
        let r = libc::mincore(addr, len, vec.as_mut_ptr());
        libc::munmap(addr, len);
        assert_eq!(r, 0, "mincore {}", p.display());
        vec.iter().all(|&b| b & 1 == 1)
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(20), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_directory_read_in_order_has_its_next_small_files_pushed_into_the_page_cache() {
    let t = TempRepo::new();
    let src = t.join("src");
    let d = src.join("d");
    fs::create_dir_all(d.join("sub")).unwrap();
    let name = |i: u32| format!("f{i:02}");
    // f10 is several chunks, under the 4 MiB limit.
    let size = |i: u32| {
        if i == 10 {
            3 << 20
        } else {
            3000 + 97 * i as usize
        }
    };
    for i in 0..40 {
        fs::write(d.join(name(i)), noise(size(i), i as u64)).unwrap();
    }
    // A link count above 1 from a link outside the backed-up tree: the
    // snapshot holds one link, which is pushed like any file.
    fs::hard_link(d.join(name(5)), t.join("outside-link")).unwrap();
    // Over the 4 MiB limit, listed between f20 and f21.
    fs::write(d.join("f20big"), noise(5 << 20, 99)).unwrap();
    fs::write(d.join("empty"), b"").unwrap();
    fs::write(d.join("sub/x"), noise(100, 7)).unwrap();
    t.backup(&src);

    let m = MountGuard::start(&t, "mnt", &["--snapshot", "latest"]);
    let inside = restored(&m.mnt, &src).join("d");
    // Listing makes the kernel hold every inode of the directory.
    assert_eq!(fs::read_dir(&inside).unwrap().count(), 43);
    for i in 1..40 {
        assert!(
            !resident(&inside.join(name(i))),
            "{} before any read",
            name(i)
        );
    }

    // The first file starts an in-order pass: the files after it, up to the
    // large one, arrive without being read.
    assert_eq!(fs::read(inside.join(name(0))).unwrap(), noise(size(0), 0));
    wait_until("f01..f20 pushed after reading f00", || {
        (1..=20).all(|i| resident(&inside.join(name(i))))
    });
    assert!(
        !resident(&inside.join("f20big")),
        "a large file is not pushed"
    );
    assert!(
        !resident(&inside.join(name(21))),
        "nothing past the large file before the reader gets there"
    );
    for i in 1..=20 {
        assert_eq!(
            fs::read(inside.join(name(i))).unwrap(),
            noise(size(i), i as u64),
            "{} as pushed",
            name(i)
        );
    }

    // Reading the large file moves the window on to the rest.
    assert_eq!(fs::read(inside.join("f20big")).unwrap(), noise(5 << 20, 99));
    wait_until("f21..f39 pushed after reading f20big", || {
        (21..40).all(|i| resident(&inside.join(name(i))))
    });
    for i in 21..40 {
        assert_eq!(
            fs::read(inside.join(name(i))).unwrap(),
            noise(size(i), i as u64)
        );
    }
    assert!(
        !resident(&inside.join("sub/x")),
        "a subdirectory's files wait for their own reader"
    );
}

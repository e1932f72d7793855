use super::*;
use crate::dump::read::{members, records, Read};
use crate::format::id::BlobId;
use crate::format::tree::Xattr;

fn file(name: &[u8], content: &[u8]) -> Entry {
    let mut e = Entry::new(name.to_vec(), Kind::File);
    e.mode = 0o644;
    e.size = content.len() as u64;
    if !content.is_empty() {
        e.extents = vec![Extent::Data {
            id: BlobId([1; 32]),
            len: content.len() as u32,
        }];
    }
    e
}

/// An archive of `members`, each file's content given beside it.
fn archive(members: &[(Member, &[u8])]) -> Vec<u8> {
    let mut w = TarWriter::new(Vec::new(), "test");
    for (m, content) in members {
        let enc = encode(m).unwrap();
        w.begin(&enc).unwrap();
        if !content.is_empty() {
            w.content(content).unwrap();
        }
    }
    w.finish().unwrap()
}

fn one(m: Member, content: &[u8]) -> Read {
    let (mut got, ended) = members(&archive(&[(m, content)]));
    assert!(ended);
    assert_eq!(got.len(), 1);
    got.pop().unwrap()
}

#[test]
fn a_short_ascii_member_needs_no_pax_but_its_times() {
    let mut e = file(b"f", b"hello");
    e.uid = 1000;
    e.gid = 100;
    e.user = "alice".into();
    e.group = "users".into();
    e.mode = 0o4755;
    e.mtime = Time {
        sec: 1_500_000_000,
        nsec: 0,
    };
    let r = one(
        Member {
            path: b"dir/f",
            entry: &e,
            link: None,
        },
        b"hello",
    );
    assert_eq!(r.name, b"dir/f");
    assert_eq!(r.typeflag, b'0');
    assert_eq!(r.data, b"hello");
    assert_eq!(r.octal(100, 8), 0o4755);
    assert_eq!((r.octal(108, 8), r.octal(116, 8)), (1000, 100));
    assert_eq!(r.octal(136, 12), 1_500_000_000);
    assert_eq!(&r.header[265..271], b"alice\0");
    assert_eq!(&r.header[297..303], b"users\0");
    // Whole seconds: the ustar field is enough for mtime.
    let keys: Vec<&[u8]> = r.pax.iter().map(|(k, _)| &k[..]).collect();
    assert_eq!(keys, [&b"atime"[..], b"ctime"]);
}

#[test]
fn times_keep_their_nanoseconds_also_before_1970() {
    assert_eq!(pax_time(Time { sec: 5, nsec: 0 }), "5");
    assert_eq!(pax_time(Time { sec: 5, nsec: 7 }), "5.000000007");
    // What GNU tar 1.34 wrote for 1969-12-31 00:00:00.999999999.
    let t = Time {
        sec: -86_400,
        nsec: 999_999_999,
    };
    assert_eq!(pax_time(t), "-86399.000000001");
    assert_eq!(pax_time(Time { sec: -1, nsec: 5 }), "-0.999999995");
    assert_eq!(pax_time(Time { sec: -3, nsec: 0 }), "-3");
    let mut e = file(b"old", b"");
    e.mtime = t;
    e.atime = Time {
        sec: 4_102_444_800,
        nsec: 1,
    };
    let r = one(
        Member {
            path: b"old",
            entry: &e,
            link: None,
        },
        b"",
    );
    assert_eq!(r.record("mtime").unwrap(), b"-86399.000000001");
    assert_eq!(r.record("atime").unwrap(), b"4102444800.000000001");
    assert_eq!(r.octal(136, 12), 0, "a negative mtime leaves the field 0");
    e.mtime.nsec = 1_000_000_000;
    let m = Member {
        path: b"old",
        entry: &e,
        link: None,
    };
    assert!(matches!(encode(&m), Err(Error::Corrupt { .. })));
}

#[test]
fn long_and_raw_names_go_in_pax_records() {
    let long = vec![b'n'; 150];
    let e = file(&long, b"x");
    let r = one(
        Member {
            path: &long,
            entry: &e,
            link: None,
        },
        b"x",
    );
    assert_eq!(r.name, long);
    assert!(r.record("hdrcharset").is_none(), "UTF-8 needs no charset");
    // Not UTF-8: binary, said first.
    let raw = b"caf\xe9/\xff\nx".to_vec();
    let e = file(b"\xff\nx", b"");
    let r = one(
        Member {
            path: &raw,
            entry: &e,
            link: None,
        },
        b"",
    );
    assert_eq!(r.pax[0], (b"hdrcharset".to_vec(), b"BINARY".to_vec()));
    assert_eq!(r.record("path").unwrap(), &raw[..]);
    assert!(r.header[..100].iter().all(|&c| c == 0 || c.is_ascii()));
    // UTF-8 but not ASCII: a path record, no charset.
    let e = file("é".as_bytes(), b"");
    let r = one(
        Member {
            path: "é".as_bytes(),
            entry: &e,
            link: None,
        },
        b"",
    );
    assert_eq!(r.record("path").unwrap(), "é".as_bytes());
    assert!(r.record("hdrcharset").is_none());
    // Exactly 100 bytes still fits the field.
    let hundred = vec![b'h'; 100];
    let e = file(&hundred, b"");
    let r = one(
        Member {
            path: &hundred,
            entry: &e,
            link: None,
        },
        b"",
    );
    assert!(r.record("path").is_none());
    assert_eq!(r.name, hundred);
}

#[test]
fn record_lengths_count_their_own_digits() {
    // Bodies around the points where the length gains a digit.
    for n in [
        0, 1, 2, 90, 91, 92, 93, 94, 95, 96, 97, 98, 990, 991, 992, 993, 994, 995, 996,
    ] {
        let mut p = Pax::default();
        let value = vec![b'v'; n];
        p.add(b"k", &value);
        let back = records(&p.finish());
        assert_eq!(back, vec![(b"k".to_vec(), value)], "{n}");
    }
}

#[test]
fn big_owners_and_sizes_move_to_pax() {
    let mut e = file(b"f", b"");
    e.uid = 3_000_000;
    e.gid = 2_097_151;
    e.user = "a-very-long-user-name-of-forty-bytes-xxx".into();
    e.group = "ünïcode".into();
    let r = one(
        Member {
            path: b"f",
            entry: &e,
            link: None,
        },
        b"",
    );
    assert_eq!(r.record("uid").unwrap(), b"3000000");
    assert!(r.record("gid").is_none(), "the largest that fits");
    assert_eq!(r.octal(116, 8), 2_097_151);
    assert_eq!(r.record("uname").unwrap(), e.user.as_bytes());
    assert_eq!(r.record("gname").unwrap(), e.group.as_bytes());
    // 8 GiB of content: the size field cannot hold it.
    let mut big = file(b"big", b"");
    big.size = 8 << 30;
    big.extents = vec![
        Extent::Data {
            id: BlobId([1; 32]),
            len: u32::MAX,
        },
        Extent::Data {
            id: BlobId([2; 32]),
            len: u32::MAX,
        },
        Extent::Data {
            id: BlobId([3; 32]),
            len: 2,
        },
    ];
    let enc = encode(&Member {
        path: b"big",
        entry: &big,
        link: None,
    })
    .unwrap();
    assert_eq!(enc.content, 8 << 30);
    let pax_data = &enc.head[BLOCK..2 * BLOCK];
    assert!(
        records(&pax_data[..pax_data.iter().rposition(|&b| b == b'\n').unwrap() + 1])
            .contains(&(b"size".to_vec(), b"8589934592".to_vec()))
    );
}

#[test]
fn every_type_has_its_flag_and_fields() {
    let mut dir = Entry::new(b"d".to_vec(), Kind::Dir);
    dir.mode = 0o1777;
    let mut link = Entry::new(b"l".to_vec(), Kind::Symlink);
    link.target = b"../target".to_vec();
    let mut cdev = Entry::new(b"c".to_vec(), Kind::CharDev);
    cdev.rdev = libc::makedev(1, 3);
    let mut bdev = Entry::new(b"b".to_vec(), Kind::BlockDev);
    bdev.rdev = libc::makedev(259, 1_048_575);
    let fifo = Entry::new(b"p".to_vec(), Kind::Fifo);
    let f = file(b"f", b"abc");
    let list = [
        (
            Member {
                path: b"top/d",
                entry: &dir,
                link: None,
            },
            &b""[..],
        ),
        (
            Member {
                path: b"top/l",
                entry: &link,
                link: None,
            },
            b"",
        ),
        (
            Member {
                path: b"top/c",
                entry: &cdev,
                link: None,
            },
            b"",
        ),
        (
            Member {
                path: b"top/b",
                entry: &bdev,
                link: None,
            },
            b"",
        ),
        (
            Member {
                path: b"top/p",
                entry: &fifo,
                link: None,
            },
            b"",
        ),
        (
            Member {
                path: b"top/f",
                entry: &f,
                link: None,
            },
            b"abc",
        ),
        (
            Member {
                path: b"top/f2",
                entry: &f,
                link: Some(b"top/f"),
            },
            b"",
        ),
    ];
    let (got, ended) = members(&archive(&list));
    assert!(ended);
    let flags: Vec<(Vec<u8>, u8)> = got.iter().map(|r| (r.name.clone(), r.typeflag)).collect();
    assert_eq!(
        flags,
        [
            (b"top/d/".to_vec(), b'5'),
            (b"top/l".to_vec(), b'2'),
            (b"top/c".to_vec(), b'3'),
            (b"top/b".to_vec(), b'4'),
            (b"top/p".to_vec(), b'6'),
            (b"top/f".to_vec(), b'0'),
            (b"top/f2".to_vec(), b'1'),
        ]
    );
    assert_eq!(got[0].octal(100, 8), 0o1777);
    assert_eq!(got[1].linkname, b"../target");
    assert_eq!((got[2].octal(329, 8), got[2].octal(337, 8)), (1, 3));
    assert_eq!(
        (got[3].octal(329, 8), got[3].octal(337, 8)),
        (259, 1_048_575)
    );
    assert_eq!(got[5].data, b"abc");
    assert_eq!(got[6].linkname, b"top/f");
    assert!(got[6].data.is_empty(), "a hard link carries no content");
    let sock = Entry::new(b"s".to_vec(), Kind::Socket);
    let m = Member {
        path: b"s",
        entry: &sock,
        link: None,
    };
    assert!(encode(&m).is_err(), "tar has no type for sockets");
}

#[test]
fn acls_become_text_and_other_xattrs_raw() {
    let none = u32::MAX;
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, none),
        (2, 4, 1234),
        (4, 4, none),
        (16, 4, none),
        (32, 0, none),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    let mut e = file(b"f", b"");
    e.xattrs = vec![
        Xattr {
            name: b"security.selinux".to_vec(),
            value: b"ctx\0".to_vec(),
        },
        Xattr {
            name: b"system.posix_acl_access".to_vec(),
            value: acl,
        },
        Xattr {
            name: b"system.posix_acl_default".to_vec(),
            value: b"not an acl".to_vec(),
        },
        Xattr {
            name: b"user.bin".to_vec(),
            value: vec![0, b'\n', 255, b'='],
        },
        Xattr {
            name: b"user.a=b".to_vec(),
            value: b"v".to_vec(),
        },
    ];
    let enc = encode(&Member {
        path: b"f",
        entry: &e,
        link: None,
    })
    .unwrap();
    assert_eq!(enc.unwritable, vec![b"user.a=b".to_vec()]);
    let r = one(
        Member {
            path: b"f",
            entry: &e,
            link: None,
        },
        b"",
    );
    assert_eq!(
        r.record("SCHILY.acl.access").unwrap(),
        b"user::rw-\nuser:1234:r--\ngroup::r--\nmask::r--\nother::---\n"
    );
    assert!(
        r.record("SCHILY.xattr.system.posix_acl_access").is_none(),
        "the ACL is not set a second time as an attribute"
    );
    // Not an ACL: kept as it is, for the kernel to judge.
    assert_eq!(
        r.record("SCHILY.xattr.system.posix_acl_default").unwrap(),
        b"not an acl"
    );
    assert!(r.record("SCHILY.acl.default").is_none());
    assert_eq!(r.record("SCHILY.xattr.security.selinux").unwrap(), b"ctx\0");
    assert_eq!(
        r.record("SCHILY.xattr.user.bin").unwrap(),
        &[0, b'\n', 255, b'=']
    );
    assert!(!r
        .pax
        .iter()
        .any(|(k, _)| k.starts_with(b"SCHILY.xattr.user.a")));
}

/// GNU tar's map for a 1 GiB file with 4 KiB of data at 4 KiB.
#[test]
fn sparse_map_matches_gnu_tar() {
    let d = |len| Extent::Data {
        id: BlobId([1; 32]),
        len,
    };
    let h = |len| Extent::Hole { len };
    let map = sparse_map(&[h(4096), d(4096), h((1 << 30) - 8192)], 1 << 30).unwrap();
    assert_eq!(map.len(), BLOCK);
    assert!(map.starts_with(b"2\n4096\n4096\n1073741824\n0\n\0"));
    // Neighbouring data extents are one region; data at the end needs no
    // final empty region.
    let map = sparse_map(&[d(10), d(20), h(70), d(5)], 105).unwrap();
    assert!(map.starts_with(b"2\n0\n30\n100\n5\n\0"));
    // All hole.
    let map = sparse_map(&[h(8 << 30)], 8 << 30).unwrap();
    assert!(map.starts_with(b"1\n8589934592\n0\n\0"));
    // No hole, no map; empty holes do not count.
    assert!(sparse_map(&[d(10), h(0)], 10).is_none());
    assert!(sparse_map(&[], 0).is_none());
    // A map longer than a block takes whole blocks.
    let many: Vec<Extent> = (0..200).flat_map(|_| [d(1), h(4095)]).collect();
    let map = sparse_map(&many, 200 * 4096).unwrap();
    assert_eq!(map.len() % BLOCK, 0);
    assert!(map.len() > BLOCK);
}

#[test]
fn a_sparse_member_has_its_map_then_only_its_data() {
    let mut e = file(b"holes", b"");
    e.size = 8 << 30;
    e.extents = vec![
        Extent::Hole { len: 1 << 20 },
        Extent::Data {
            id: BlobId([1; 32]),
            len: 3,
        },
        Extent::Hole {
            len: (8 << 30) - (1 << 20) - 3,
        },
    ];
    let r = one(
        Member {
            path: b"dir/holes",
            entry: &e,
            link: None,
        },
        b"abc",
    );
    assert_eq!(r.name, b"dir/holes");
    assert_eq!(r.record("GNU.sparse.major").unwrap(), b"1");
    assert_eq!(r.record("GNU.sparse.minor").unwrap(), b"0");
    assert_eq!(r.record("GNU.sparse.realsize").unwrap(), b"8589934592");
    assert!(r.record("path").is_none());
    assert_eq!(&r.header[..21], b"GNUSparseFile.0/holes");
    assert_eq!(r.data.len(), BLOCK + 3);
    assert!(r.data.starts_with(b"2\n1048576\n3\n8589934592\n0\n"));
    assert_eq!(&r.data[BLOCK..], b"abc");
}

/// The writer takes exactly the content it announced.
#[test]
fn content_must_match_the_header() {
    let e = file(b"f", b"four");
    let enc = encode(&Member {
        path: b"f",
        entry: &e,
        link: None,
    })
    .unwrap();
    let mut w = TarWriter::new(Vec::new(), "test");
    w.begin(&enc).unwrap();
    assert!(w.content(b"fives").is_err());
    w.content(b"fo").unwrap();
    assert!(w.begin(&enc).is_err(), "two bytes still missing");
    let mut w2 = TarWriter::new(Vec::new(), "test");
    w2.begin(&enc).unwrap();
    assert!(w2.finish().is_err());
}

/// Stopped in the middle of content, the archive just ends there: short.
#[test]
fn an_abort_inside_a_member_leaves_it_short() {
    let e = file(b"f", b"four");
    let enc = encode(&Member {
        path: b"f",
        entry: &e,
        link: None,
    })
    .unwrap();
    let mut w = TarWriter::new(Vec::new(), "test");
    w.begin(&enc).unwrap();
    w.content(b"fo").unwrap();
    let out = w.abort().unwrap();
    assert_eq!(out.len(), enc.head.len() + 2);
}

/// Stopped between members, the archive ends in a pax header whose records
/// never come, so no reader takes it for whole.
#[test]
fn an_abort_between_members_ends_in_a_dangling_header() {
    let e = file(b"f", b"four");
    let enc = encode(&Member {
        path: b"f",
        entry: &e,
        link: None,
    })
    .unwrap();
    let mut w = TarWriter::new(Vec::new(), "test");
    w.begin(&enc).unwrap();
    w.content(b"four").unwrap();
    let done = enc.head.len() + BLOCK;
    let out = w.abort().unwrap();
    assert_eq!(out.len(), done + BLOCK);
    let last = &out[done..];
    assert_eq!(last[156], b'x');
    assert_ne!(&last[124..136], b"00000000000\0", "it announces data");
    let complete = std::panic::catch_unwind(|| members(&out));
    assert!(complete.is_err(), "the test reader refuses it too");
}

/// A failed write poisons the writer.
#[test]
fn a_failed_write_refuses_all_later_use() {
    struct Full(usize);
    impl Write for Full {
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
    let e = file(b"f", b"four");
    let enc = encode(&Member {
        path: b"f",
        entry: &e,
        link: None,
    })
    .unwrap();
    let mut w = TarWriter::new(Full(enc.head.len()), "out");
    w.begin(&enc).unwrap();
    let err = w.content(b"four").unwrap_err();
    assert!(err.to_string().contains("out: disk full"), "{err}");
    assert!(w.content(b"").is_err());
    assert!(w.finish().is_err());
}

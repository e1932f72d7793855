//! A strict reader of the archives [`super::tar`] writes, for tests: every
//! checksum, record length and padding is checked, so a test that lists
//! members also proves the framing.

use super::tar::BLOCK;

/// One member as read back.
#[derive(Debug)]
pub struct Read {
    /// The pax `path` (or `GNU.sparse.name`), else the ustar name.
    pub name: Vec<u8>,
    pub typeflag: u8,
    /// The pax `linkpath`, else the ustar linkname.
    pub linkname: Vec<u8>,
    /// The pax records, in order.
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
    pub header: [u8; BLOCK],
    /// The member's data as stored (a sparse map included).
    pub data: Vec<u8>,
}

impl Read {
    pub fn record(&self, key: &str) -> Option<&[u8]> {
        self.pax
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| &v[..])
    }

    pub fn octal(&self, off: usize, len: usize) -> u64 {
        let field = &self.header[off..off + len];
        let s = std::str::from_utf8(field)
            .unwrap()
            .trim_end_matches(['\0', ' ']);
        u64::from_str_radix(s, 8).unwrap()
    }
}

/// The members of `archive`, and whether it ends with the end-of-archive
/// marker. Panics on anything malformed.
pub fn members(archive: &[u8]) -> (Vec<Read>, bool) {
    assert_eq!(archive.len() % BLOCK, 0, "not whole blocks");
    let mut out = Vec::new();
    let mut pax = Vec::new();
    let mut at = 0;
    while at < archive.len() {
        let block: [u8; BLOCK] = archive[at..at + BLOCK].try_into().unwrap();
        if block == [0; BLOCK] {
            assert_eq!(
                archive.len(),
                at + 2 * BLOCK,
                "end marker is two final blocks"
            );
            assert!(archive[at..].iter().all(|&b| b == 0));
            return (out, true);
        }
        let want = u32::from_str_radix(std::str::from_utf8(&block[148..154]).unwrap(), 8).unwrap();
        assert_eq!(&block[154..156], b"\0 ");
        let sum: u32 = block
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    b' ' as u32
                } else {
                    b as u32
                }
            })
            .sum();
        assert_eq!(sum, want, "checksum at {at}");
        assert_eq!(&block[257..263], b"ustar\0");
        assert_eq!(&block[263..265], b"00");
        let mut r = Read {
            name: cstr(&block[0..100]),
            typeflag: block[156],
            linkname: cstr(&block[157..257]),
            pax: std::mem::take(&mut pax),
            header: block,
            data: Vec::new(),
        };
        let size = match r.record("size") {
            Some(s) => std::str::from_utf8(s).unwrap().parse().unwrap(),
            None => r.octal(124, 12),
        };
        let start = at + BLOCK;
        let end = start + size as usize;
        assert!(end <= archive.len(), "member at {at} is cut short");
        r.data = archive[start..end].to_vec();
        assert!(archive[end..end.next_multiple_of(BLOCK)]
            .iter()
            .all(|&b| b == 0));
        at = end.next_multiple_of(BLOCK);
        if r.typeflag == b'x' {
            pax = records(&r.data);
            continue;
        }
        if let Some(p) = r.record("path").or(r.record("GNU.sparse.name")) {
            r.name = p.to_vec();
        }
        if let Some(l) = r.record("linkpath") {
            r.linkname = l.to_vec();
        }
        out.push(r);
    }
    assert!(pax.is_empty(), "pax header without its member");
    (out, false)
}

fn cstr(field: &[u8]) -> Vec<u8> {
    field.split(|&b| b == 0).next().unwrap().to_vec()
}

/// Parse pax records, checking each length.
pub fn records(mut data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let sp = data.iter().position(|&b| b == b' ').unwrap();
        let len: usize = std::str::from_utf8(&data[..sp]).unwrap().parse().unwrap();
        let rec = &data[..len];
        assert_eq!(rec[len - 1], b'\n', "record length");
        let body = &rec[sp + 1..len - 1];
        let eq = body.iter().position(|&b| b == b'=').unwrap();
        out.push((body[..eq].to_vec(), body[eq + 1..].to_vec()));
        data = &data[len..];
    }
    out
}

//! A streaming tar reader for image layers and image archives: POSIX ustar,
//! PAX extended headers (`path`, `linkpath`, `size`, `uid`, `gid`,
//! `mtime`, `SCHILY.xattr.*`) and GNU long names (`L`, `K`), with base-256
//! numbers. It only reads headers and hands out each member's data as a
//! bounded reader; it never touches the filesystem.
//!
//! Hostile input is expected: every header's checksum is verified, every
//! size is bounded ([`TarLimits`]), sparse files and unknown member types
//! are refused, and nothing read from the archive is allocated before its
//! size has been checked against a limit.

use std::io::{self, Read};

/// Limits on what one archive may ask the reader to hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarLimits {
    /// The largest PAX or GNU long-name record, in bytes.
    pub max_meta: u64,
    /// The most members.
    pub max_entries: u64,
}

impl Default for TarLimits {
    fn default() -> Self {
        TarLimits {
            max_meta: 1 << 20,
            max_entries: 1_000_000,
        }
    }
}

/// What a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// A regular file (`0`, NUL, `7`).
    File,
    /// A hard link to an earlier member (`1`).
    Link,
    /// A symbolic link (`2`).
    Symlink,
    /// A character device (`3`).
    Char,
    /// A block device (`4`).
    Block,
    /// A directory (`5`).
    Dir,
    /// A FIFO (`6`).
    Fifo,
}

/// One member's header, with PAX and GNU extensions applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The path as written (raw bytes).
    pub path: Vec<u8>,
    /// The link target (hard or symbolic), raw bytes.
    pub link: Vec<u8>,
    /// What it is.
    pub kind: Type,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Size of its data in the archive.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Device numbers, for `Char` and `Block`.
    pub dev: (u32, u32),
    /// Extended attributes from `SCHILY.xattr.NAME` records.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why an archive cannot be read.
#[derive(Debug, displaydoc::Display, thiserror::Error)]
pub enum TarError {
    /// read error: {0}
    Io(#[from] io::Error),
    /// header at byte {offset}: checksum mismatch (not a tar archive, or corrupt)
    Checksum {
        /// Where the header starts.
        offset: u64,
    },
    /// header at byte {offset}: invalid {field} field
    Field {
        /// Where the header starts.
        offset: u64,
        /// Which field.
        field: &'static str,
    },
    /// header at byte {offset}: the archive ends in the middle of a member
    Truncated {
        /// Where the member's header starts.
        offset: u64,
    },
    /// member {path:?}: unsupported member type {kind:?}
    UnsupportedType {
        /// The member's path.
        path: String,
        /// Its type flag.
        kind: char,
    },
    /// member {path:?}: GNU sparse files are not supported
    Sparse {
        /// The member's path.
        path: String,
    },
    /// header at byte {offset}: a {what} of {size} bytes is over the limit of {limit} bytes
    MetaTooLarge {
        /// Where the header starts.
        offset: u64,
        /// PAX header or long name.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// the archive has more than {0} members
    TooManyEntries(u64),
    /// header at byte {offset}: malformed PAX record
    Pax {
        /// Where the header starts.
        offset: u64,
    },
}

const BLOCK: usize = 512;

/// Reads members one after another from `R`.
#[derive(Debug)]
pub struct Reader<R> {
    inner: R,
    limits: TarLimits,
    /// Bytes consumed from `inner`.
    offset: u64,
    /// Data bytes of the current member not yet read.
    remaining: u64,
    /// Padding after the current member's data.
    padding: u64,
    /// Where the current member's header started.
    header_offset: u64,
    entries: u64,
    done: bool,
}

impl<R: Read> Reader<R> {
    /// A reader of the archive in `inner`.
    pub fn new(inner: R, limits: TarLimits) -> Self {
        Reader {
            inner,
            limits,
            offset: 0,
            remaining: 0,
            padding: 0,
            header_offset: 0,
            entries: 0,
            done: false,
        }
    }

    /// The reader inside, for draining what follows the archive.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Where the current member's header started.
    pub fn header_offset(&self) -> u64 {
        self.header_offset
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of
    /// stream before the first byte.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, TarError> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => {
                    return Err(TarError::Truncated {
                        offset: self.header_offset,
                    });
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.offset += buf.len() as u64;
        Ok(true)
    }

    /// Like [`Self::fill`], but `Ok(false)` wherever the stream ends.
    fn fill_lenient(&mut self, buf: &mut [u8]) -> Result<bool, TarError> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => return Ok(false),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.offset += buf.len() as u64;
        Ok(true)
    }

    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            if !self.fill(&mut buf[..want])? {
                return Err(TarError::Truncated {
                    offset: self.header_offset,
                });
            }
            n -= want as u64;
        }
        Ok(())
    }

    /// Reads a member's data whole, when it is metadata (bounded).
    fn read_meta(&mut self, size: u64, what: &'static str) -> Result<Vec<u8>, TarError> {
        if size > self.limits.max_meta {
            return Err(TarError::MetaTooLarge {
                offset: self.header_offset,
                what,
                size,
                limit: self.limits.max_meta,
            });
        }
        let mut buf = vec![0u8; size as usize];
        if size > 0 && !self.fill(&mut buf)? {
            return Err(TarError::Truncated {
                offset: self.header_offset,
            });
        }
        self.skip(pad(size))?;
        Ok(buf)
    }

    /// The next member's header, or `None` at the end of the archive.
    /// Whatever was left unread of the previous member is skipped.
    pub fn next_header(&mut self) -> Result<Option<Header>, TarError> {
        if self.done {
            return Ok(None);
        }
        let (left, padding) = (self.remaining, self.padding);
        self.remaining = 0;
        self.padding = 0;
        self.skip(left)?;
        // A stream that ends in the last member's padding (umoci's
        // `insert` writes such layers) has no more members: tolerated,
        // like the missing end-of-archive marker below.
        let mut pad_buf = [0u8; BLOCK];
        let pad_buf = &mut pad_buf[..padding as usize];
        if !pad_buf.is_empty() && !self.fill_lenient(pad_buf)? {
            self.done = true;
            return Ok(None);
        }
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            self.header_offset = self.offset;
            let mut block = [0u8; BLOCK];
            if !self.fill(&mut block)? {
                // A missing end-of-archive marker: tolerated, as Docker does.
                self.done = true;
                return Ok(None);
            }
            if block.iter().all(|b| *b == 0) {
                // The first of the two zero blocks ends the archive.
                self.done = true;
                return Ok(None);
            }
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(TarError::TooManyEntries(self.limits.max_entries));
            }
            check_checksum(&block, self.header_offset)?;
            let field = |field| TarError::Field {
                offset: self.header_offset,
                field,
            };
            let size = number(&block[124..136]).ok_or_else(|| field("size"))?;
            let flag = block[156];
            match flag {
                b'x' => {
                    let data = self.read_meta(size, "PAX header")?;
                    pax.extend(parse_pax(&data).ok_or(TarError::Pax {
                        offset: self.header_offset,
                    })?);
                    continue;
                }
                b'g' => {
                    // Global headers set defaults for what follows; the
                    // keys berth uses only ever come per member in practice.
                    self.read_meta(size, "PAX global header")?;
                    continue;
                }
                b'L' => {
                    long_name = Some(trim_nul(self.read_meta(size, "GNU long name")?));
                    continue;
                }
                b'K' => {
                    long_link = Some(trim_nul(self.read_meta(size, "GNU long link")?));
                    continue;
                }
                _ => {}
            }
            let ustar = &block[257..263] == b"ustar\0";
            let mut path = cstr(&block[0..100]).to_vec();
            if ustar {
                let prefix = cstr(&block[345..500]);
                if !prefix.is_empty() {
                    let mut p = prefix.to_vec();
                    p.push(b'/');
                    p.extend_from_slice(&path);
                    path = p;
                }
            }
            let mut header = Header {
                path,
                link: cstr(&block[157..257]).to_vec(),
                kind: Type::File,
                mode: (number(&block[100..108]).ok_or_else(|| field("mode"))? & 0o7777) as u32,
                uid: number(&block[108..116]).ok_or_else(|| field("uid"))?,
                gid: number(&block[116..124]).ok_or_else(|| field("gid"))?,
                size,
                mtime: number(&block[136..148]).ok_or_else(|| field("mtime"))? as i64,
                dev: (0, 0),
                xattrs: Vec::new(),
            };
            if let Some(n) = long_name.take() {
                header.path = n;
            }
            if let Some(l) = long_link.take() {
                header.link = l;
            }
            let mut dev = (
                number(&block[329..337]).unwrap_or(0),
                number(&block[337..345]).unwrap_or(0),
            );
            for (k, v) in pax.drain(..) {
                let num = |v: &[u8]| {
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.split('.').next())
                        .and_then(|s| s.parse::<i64>().ok())
                };
                match k.as_slice() {
                    b"path" => header.path = v,
                    b"linkpath" => header.link = v,
                    b"size" => {
                        header.size = num(&v)
                            .and_then(|n| u64::try_from(n).ok())
                            .ok_or_else(|| field("PAX size"))?
                    }
                    b"uid" => {
                        header.uid = num(&v)
                            .and_then(|n| u64::try_from(n).ok())
                            .unwrap_or(header.uid)
                    }
                    b"gid" => {
                        header.gid = num(&v)
                            .and_then(|n| u64::try_from(n).ok())
                            .unwrap_or(header.gid)
                    }
                    b"mtime" => header.mtime = num(&v).unwrap_or(header.mtime),
                    b"SCHILY.devmajor" => {
                        dev.0 = num(&v).and_then(|n| u64::try_from(n).ok()).unwrap_or(dev.0)
                    }
                    b"SCHILY.devminor" => {
                        dev.1 = num(&v).and_then(|n| u64::try_from(n).ok()).unwrap_or(dev.1)
                    }
                    k if k.starts_with(b"GNU.sparse.") => {
                        return Err(TarError::Sparse {
                            path: String::from_utf8_lossy(&header.path).into_owned(),
                        });
                    }
                    k if k.starts_with(b"SCHILY.xattr.") => {
                        header
                            .xattrs
                            .push((k[b"SCHILY.xattr.".len()..].to_vec(), v));
                    }
                    _ => {}
                }
            }
            header.dev = (
                u32::try_from(dev.0).map_err(|_| field("devmajor"))?,
                u32::try_from(dev.1).map_err(|_| field("devminor"))?,
            );
            let name = || String::from_utf8_lossy(&header.path).into_owned();
            header.kind = match flag {
                b'0' | 0 | b'7' if header.path.ends_with(b"/") => Type::Dir,
                b'0' | 0 | b'7' => Type::File,
                b'1' => Type::Link,
                b'2' => Type::Symlink,
                b'3' => Type::Char,
                b'4' => Type::Block,
                b'5' => Type::Dir,
                b'6' => Type::Fifo,
                b'S' => return Err(TarError::Sparse { path: name() }),
                other => {
                    return Err(TarError::UnsupportedType {
                        path: name(),
                        kind: other as char,
                    });
                }
            };
            // Only regular files carry data; a size on anything else is
            // skipped (hard links written by some tools repeat the size).
            self.remaining = header.size;
            self.padding = pad(header.size);
            if header.kind != Type::File {
                header.size = 0;
            }
            return Ok(Some(header));
        }
    }

    /// Skips to the end of the archive, and reads what follows it (the
    /// second zero block, padding) to the end of the stream.
    pub fn finish(mut self) -> Result<R, TarError> {
        while self.next_header()?.is_some() {}
        Ok(self.inner)
    }
}

/// The current member's data.
impl<R: Read> Read for Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.remaining) as usize;
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the archive ends in the middle of the member at byte {}",
                    self.header_offset
                ),
            ));
        }
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }
}

fn pad(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    &field[..end]
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// A numeric field: octal (NUL or space terminated), or GNU base-256 when
/// the high bit of the first byte is set (positive numbers only).
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut n: u64 = u64::from(field[0] & 0x3f);
        for b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(n);
    }
    let s = field
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| **b != 0 && **b != b' ');
    let mut n: u64 = 0;
    let mut any = false;
    for b in s {
        if !(b'0'..=b'7').contains(b) {
            return None;
        }
        n = n.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    // An all-blank field reads as 0 (some writers leave unused fields so).
    let _ = any;
    Some(n)
}

fn check_checksum(block: &[u8; BLOCK], offset: u64) -> Result<(), TarError> {
    let recorded = number(&block[148..156]).ok_or(TarError::Checksum { offset })?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { *b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if recorded == unsigned || i64::try_from(recorded).is_ok_and(|r| r == signed) {
        Ok(())
    } else {
        Err(TarError::Checksum { offset })
    }
}

/// Parses PAX records: `"<len> <key>=<value>\n"`, repeated.
fn parse_pax(mut data: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.iter().all(|b| *b == 0) {
            break;
        }
        let sp = data.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..sp]).ok()?.parse().ok()?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return None;
        }
        let record = &data[sp + 1..len - 1];
        let eq = record.iter().position(|b| *b == b'=')?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal tar writer for tests: ustar headers, PAX for long or
    /// extra fields.
    #[derive(Default)]
    pub(crate) struct TestTar {
        pub(crate) out: Vec<u8>,
    }

    impl TestTar {
        pub(crate) fn header(
            &mut self,
            flag: u8,
            path: &[u8],
            link: &[u8],
            mode: u32,
            data: &[u8],
        ) {
            self.header_sized(flag, path, link, mode, data, data.len() as u64);
        }

        pub(crate) fn header_sized(
            &mut self,
            flag: u8,
            path: &[u8],
            link: &[u8],
            mode: u32,
            data: &[u8],
            size: u64,
        ) {
            let mut h = [0u8; BLOCK];
            let n = path.len().min(100);
            h[..n].copy_from_slice(&path[..n]);
            h[100..108].copy_from_slice(format!("{mode:07o}\0").as_bytes());
            h[108..116].copy_from_slice(b"0000000\0");
            h[116..124].copy_from_slice(b"0000000\0");
            h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
            h[136..148].copy_from_slice(b"00000000000\0");
            h[156] = flag;
            let l = link.len().min(100);
            h[157..157 + l].copy_from_slice(&link[..l]);
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
            h[148..156].copy_from_slice(b"        ");
            let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
            h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            self.out.extend_from_slice(&h);
            self.out.extend_from_slice(data);
            self.out
                .resize(self.out.len() + pad(data.len() as u64) as usize, 0);
        }

        pub(crate) fn pax(&mut self, records: &[(&str, &[u8])]) {
            let mut body = Vec::new();
            for (k, v) in records {
                let rest = format!(" {k}=").len() + v.len() + 1;
                let mut len = rest + 1;
                while len.to_string().len() + rest != len {
                    len = len.to_string().len() + rest;
                }
                body.extend_from_slice(format!("{len} {k}=").as_bytes());
                body.extend_from_slice(v);
                body.push(b'\n');
            }
            self.header(b'x', b"PaxHeaders/x", b"", 0o644, &body);
        }

        pub(crate) fn file(&mut self, path: &str, data: &[u8]) {
            self.header(b'0', path.as_bytes(), b"", 0o644, data);
        }

        pub(crate) fn dir(&mut self, path: &str) {
            self.header(b'5', path.as_bytes(), b"", 0o755, b"");
        }

        pub(crate) fn symlink(&mut self, path: &str, target: &str) {
            self.header(b'2', path.as_bytes(), target.as_bytes(), 0o777, b"");
        }

        pub(crate) fn hardlink(&mut self, path: &str, target: &str) {
            self.header(b'1', path.as_bytes(), target.as_bytes(), 0o644, b"");
        }

        pub(crate) fn finish(mut self) -> Vec<u8> {
            self.out.extend_from_slice(&[0u8; 1024]);
            self.out
        }
    }

    fn all(data: &[u8]) -> Result<Vec<(Header, Vec<u8>)>, TarError> {
        let mut r = Reader::new(data, TarLimits::default());
        let mut out = Vec::new();
        while let Some(h) = r.next_header()? {
            let mut d = Vec::new();
            r.read_to_end(&mut d)?;
            out.push((h, d));
        }
        Ok(out)
    }

    #[test]
    fn reads_ustar_pax_and_gnu_members() {
        let mut t = TestTar::default();
        t.dir("etc/");
        t.file("etc/hosts", b"127.0.0.1 localhost\n");
        t.symlink("bin/sh", "busybox");
        let long = "d/".repeat(80) + "file";
        t.pax(&[
            ("path", long.as_bytes()),
            ("SCHILY.xattr.user.k", b"v\0w"),
            ("uid", b"100000"),
        ]);
        t.file("short", b"x");
        t.header(b'L', b"././@LongLink", b"", 0o644, b"gnu/long/name\0");
        t.file("ignored", b"");
        let got = all(&t.finish()).unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].0.kind, Type::Dir);
        assert_eq!(got[1].1, b"127.0.0.1 localhost\n");
        assert_eq!(
            (got[2].0.kind, got[2].0.link.as_slice()),
            (Type::Symlink, &b"busybox"[..])
        );
        assert_eq!(got[3].0.path, long.as_bytes());
        assert_eq!(got[3].0.uid, 100000);
        assert_eq!(got[3].0.xattrs, [(b"user.k".to_vec(), b"v\0w".to_vec())]);
        assert_eq!(got[3].1, b"x");
        assert_eq!(got[4].0.path, b"gnu/long/name");
    }

    #[test]
    fn refuses_corrupt_and_hostile_headers() {
        let mut t = TestTar::default();
        t.file("a", b"data");
        let mut bad = t.finish();
        bad[10] ^= 1;
        assert!(matches!(all(&bad), Err(TarError::Checksum { offset: 0 })));

        let mut t = TestTar::default();
        t.header_sized(b'x', b"pax", b"", 0o644, b"", 1 << 30);
        assert!(matches!(
            all(&t.finish()),
            Err(TarError::MetaTooLarge { .. })
        ));

        let mut t = TestTar::default();
        t.header(b'S', b"sparse", b"", 0o644, b"");
        assert!(matches!(all(&t.finish()), Err(TarError::Sparse { .. })));

        let mut t = TestTar::default();
        t.header_sized(b'0', b"big", b"", 0o644, b"abc", 4096);
        let e = all(&t.out).unwrap_err();
        assert!(e.to_string().contains("ends in the middle"), "{e}");

        let mut t = TestTar::default();
        t.header(b'Z', b"odd", b"", 0o644, b"");
        assert!(matches!(
            all(&t.finish()),
            Err(TarError::UnsupportedType { kind: 'Z', .. })
        ));
    }

    #[test]
    fn tolerates_a_stream_ending_in_the_last_padding() {
        // As umoci's `insert` writes them: no padding after the last
        // member's data and no end-of-archive blocks.
        let mut t = TestTar::default();
        t.file("a", b"first");
        t.file("doc", b"doc");
        let mut out = t.out;
        out.truncate(out.len() - pad(3) as usize);
        let got = all(&out).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1, b"doc");
        // Data cut short is still an error.
        out.truncate(out.len() - 1);
        assert!(all(&out).is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(number(b"  644 \0"), Some(0o644));
        assert_eq!(number(b"\0\0\0"), Some(0));
        assert_eq!(number(&[0x80, 0, 0, 1, 0]), Some(256));
        assert_eq!(number(b"09"), None);
        assert_eq!(number(&[0xff, 0xff]), None);
    }
}

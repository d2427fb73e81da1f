//! A reproducible cpio "newc" (SVR4, no CRC) writer, the format the kernel
//! unpacks an initramfs from.
//!
//! An [`Archive`] collects entries in any order and writes them sorted by
//! path, compared component by component, so a directory always comes right
//! before its children. Missing parent directories are added (mode 0755).
//! Every entry gets the same mtime, the owner given (root by default), an
//! inode number assigned in output order from 1, and nlink 2 for directories
//! and 1 for everything else. Same entries in, same bytes out.
//!
//! Format: each entry is a 110-byte ASCII header (`070701` and thirteen
//! 8-digit hex fields), the NUL-terminated name padded to a multiple of 4,
//! then the data padded to a multiple of 4. A `TRAILER!!!` entry ends it.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Why an archive could not be built or written.
#[derive(Debug, displaydoc::Display, thiserror::Error)]
pub enum CpioError {
    /// invalid path in archive: {0:?} (must be relative, with no empty, `.` or `..` component)
    InvalidPath(String),
    /// {0:?} is added twice to the archive
    Duplicate(String),
    /// cannot add {path:?}: its parent {parent:?} is not a directory
    ParentNotDir {
        /// The entry.
        path: String,
        /// The ancestor that is not a directory.
        parent: String,
    },
    /// cannot add {path:?} to the archive: {reason}
    TooLarge {
        /// The entry.
        path: String,
        /// Which field overflows.
        reason: &'static str,
    },
    /// cannot read {path}: {source}
    Read {
        /// The file read.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// {path} changed size while being archived ({expected} bytes expected)
    Changed {
        /// The file read.
        path: PathBuf,
        /// Its size when added.
        expected: u64,
    },
    /// cannot write the archive: {0}
    Write(io::Error),
}

/// Where a regular file's contents come from.
#[derive(Debug, Clone)]
pub enum Data {
    /// Bytes held in memory.
    Bytes(Vec<u8>),
    /// A file on the host, read (streamed) when the archive is written. Its
    /// size is taken when it is added and checked again when it is read.
    File {
        /// The host file.
        path: PathBuf,
        /// Its size when added.
        size: u64,
    },
}

impl Data {
    /// Contents read from the host file `path` when the archive is written.
    pub fn file(path: &Path) -> Result<Data, CpioError> {
        let meta = std::fs::metadata(path).map_err(|source| CpioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Data::File {
            path: path.to_path_buf(),
            size: meta.len(),
        })
    }

    /// The size of the contents in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Data::Bytes(b) => b.len() as u64,
            Data::File { size, .. } => *size,
        }
    }

    /// Whether the contents are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What an entry is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File(Data),
    /// A symbolic link to the given target.
    Symlink(String),
    /// A character device node.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device node.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

/// One archive entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// What it is.
    pub kind: Kind,
    /// Permission bits (including setuid, setgid, sticky): `0o7777` at most.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// False for a directory the archive added only as a parent.
    explicit: bool,
}

impl Entry {
    /// An entry owned by root.
    pub fn new(kind: Kind, mode: u32) -> Self {
        Entry {
            kind,
            mode: mode & 0o7777,
            uid: 0,
            gid: 0,
            explicit: true,
        }
    }

    fn type_bits(&self) -> u32 {
        match self.kind {
            Kind::Dir => 0o040000,
            Kind::File(_) => 0o100000,
            Kind::Symlink(_) => 0o120000,
            Kind::CharDevice { .. } => 0o020000,
            Kind::BlockDevice { .. } => 0o060000,
        }
    }
}

/// A path inside the archive, ordered component by component, so that
/// `a/b` sorts right after `a` and before `a-b` ("a" < "a-b" as components).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ArchivePath(String);

impl Ord for ArchivePath {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.split('/').cmp(other.0.split('/'))
    }
}

impl PartialOrd for ArchivePath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Checks and normalises a path for the archive: one leading `/` is
/// dropped; empty, `.` and `..` components and NULs are refused.
pub fn normalize(path: &str) -> Result<String, CpioError> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let ok = !p.is_empty()
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(p.to_string())
    } else {
        Err(CpioError::InvalidPath(path.to_string()))
    }
}

/// Totals of a written archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Entries written, not counting the trailer.
    pub entries: u64,
    /// Bytes written, trailer and padding included.
    pub bytes: u64,
}

/// A set of entries to write as a newc archive.
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<ArchivePath, Entry>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries, parents included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the archive has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an entry exists at `path`.
    pub fn contains(&self, path: &str) -> bool {
        normalize(path).is_ok_and(|p| self.entries.contains_key(&ArchivePath(p)))
    }

    /// Adds `entry` at `path`, and any missing parent directories. A
    /// directory may be added explicitly after it was created as a parent
    /// (its mode and owner are then taken from `entry`); any other repeat is
    /// an error.
    pub fn add(&mut self, path: &str, entry: Entry) -> Result<(), CpioError> {
        let path = normalize(path)?;
        let mut parent_end = 0;
        while let Some(i) = path[parent_end..].find('/') {
            parent_end += i;
            let parent = ArchivePath(path[..parent_end].to_string());
            match self.entries.get(&parent) {
                Some(e) if matches!(e.kind, Kind::Dir) => {}
                Some(_) => {
                    return Err(CpioError::ParentNotDir {
                        path,
                        parent: parent.0,
                    });
                }
                None => {
                    let mut dir = Entry::new(Kind::Dir, 0o755);
                    dir.explicit = false;
                    self.entries.insert(parent, dir);
                }
            }
            parent_end += 1;
        }
        let key = ArchivePath(path);
        match self.entries.get(&key) {
            Some(old) if !old.explicit && matches!(entry.kind, Kind::Dir) => {}
            Some(_) => return Err(CpioError::Duplicate(key.0)),
            None => {}
        }
        self.entries.insert(key, entry);
        Ok(())
    }

    /// Adds a directory.
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), CpioError> {
        self.add(path, Entry::new(Kind::Dir, mode))
    }

    /// Adds a regular file.
    pub fn add_file(&mut self, path: &str, mode: u32, data: Data) -> Result<(), CpioError> {
        self.add(path, Entry::new(Kind::File(data), mode))
    }

    /// Adds a symbolic link (mode 0777, as the kernel shows them).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        self.add(path, Entry::new(Kind::Symlink(target.to_string()), 0o777))
    }

    /// Adds a character device node.
    pub fn add_char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.add(path, Entry::new(Kind::CharDevice { major, minor }, mode))
    }

    /// The exact number of bytes [`Archive::write`] will produce.
    pub fn encoded_len(&self) -> u64 {
        let align = |n: u64| n.div_ceil(4) * 4;
        let entries: u64 = self
            .entries
            .iter()
            .map(|(path, e)| {
                let size = match &e.kind {
                    Kind::File(data) => data.len(),
                    Kind::Symlink(target) => target.len() as u64,
                    _ => 0,
                };
                align(110 + path.0.len() as u64 + 1) + align(size)
            })
            .sum();
        entries + align(110 + "TRAILER!!!".len() as u64 + 1)
    }

    /// Iterates over the entries in output order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, v)| (k.0.as_str(), v))
    }

    /// Writes the archive to `out`, every entry with modification time
    /// `mtime` (seconds since the epoch).
    pub fn write<W: Write>(&self, out: W, mtime: u32) -> Result<Written, CpioError> {
        let mut w = Counter {
            inner: out,
            count: 0,
        };
        let mut entries = 0u64;
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let ino = u32::try_from(ino + 1).map_err(|_| CpioError::TooLarge {
                path: path.0.clone(),
                reason: "more than 2^32 entries",
            })?;
            write_entry(&mut w, ino, &path.0, entry, mtime)?;
            entries += 1;
        }
        let trailer = Header {
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            filesize: 0,
            rdev: (0, 0),
        };
        trailer
            .write(&mut w, "TRAILER!!!")
            .map_err(CpioError::Write)?;
        w.flush().map_err(CpioError::Write)?;
        Ok(Written {
            entries,
            bytes: w.count,
        })
    }
}

struct Header {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdev: (u32, u32),
}

impl Header {
    /// Writes the header and the padded name.
    fn write<W: Write>(&self, w: &mut Counter<W>, name: &str) -> io::Result<()> {
        let namesize = name.len() + 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            self.mode,
            self.uid,
            self.gid,
            self.nlink,
            self.mtime,
            self.filesize,
            0, // devmajor
            0, // devminor
            self.rdev.0,
            self.rdev.1,
            namesize,
            0, // check
        );
        w.write_all(header.as_bytes())?;
        w.write_all(name.as_bytes())?;
        w.write_all(&[0])?;
        w.pad4()
    }
}

fn write_entry<W: Write>(
    w: &mut Counter<W>,
    ino: u32,
    path: &str,
    entry: &Entry,
    mtime: u32,
) -> Result<(), CpioError> {
    let too_large = |reason| CpioError::TooLarge {
        path: path.to_string(),
        reason,
    };
    if path.len() + 1 > u32::MAX as usize {
        return Err(too_large("name too long"));
    }
    let size = match &entry.kind {
        Kind::File(data) => data.len(),
        Kind::Symlink(target) => target.len() as u64,
        _ => 0,
    };
    let filesize = u32::try_from(size).map_err(|_| too_large("larger than 4 GiB"))?;
    let rdev = match entry.kind {
        Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => (major, minor),
        _ => (0, 0),
    };
    let header = Header {
        ino,
        mode: entry.type_bits() | (entry.mode & 0o7777),
        uid: entry.uid,
        gid: entry.gid,
        nlink: if matches!(entry.kind, Kind::Dir) {
            2
        } else {
            1
        },
        mtime,
        filesize,
        rdev,
    };
    header.write(w, path).map_err(CpioError::Write)?;
    match &entry.kind {
        Kind::File(Data::Bytes(b)) => w.write_all(b).map_err(CpioError::Write)?,
        Kind::File(Data::File { path, size }) => copy_file(w, path, *size)?,
        Kind::Symlink(target) => w.write_all(target.as_bytes()).map_err(CpioError::Write)?,
        _ => {}
    }
    w.pad4().map_err(CpioError::Write)
}

/// Streams exactly `size` bytes of the host file `path` into `w`.
fn copy_file<W: Write>(w: &mut Counter<W>, path: &Path, size: u64) -> Result<(), CpioError> {
    let read_err = |source| CpioError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = size;
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        if n == 0 {
            break;
        }
        if n as u64 > left {
            return Err(CpioError::Changed {
                path: path.to_path_buf(),
                expected: size,
            });
        }
        w.write_all(&buf[..n]).map_err(CpioError::Write)?;
        left -= n as u64;
    }
    if left != 0 {
        return Err(CpioError::Changed {
            path: path.to_path_buf(),
            expected: size,
        });
    }
    Ok(())
}

/// A writer that counts bytes, for newc's 4-byte alignment.
struct Counter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Counter<W> {
    fn pad4(&mut self) -> io::Result<()> {
        let pad = (4 - (self.count % 4) as usize) % 4;
        self.write_all(&[0u8; 3][..pad])
    }
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// One parsed newc entry: (name, header fields, data).
    type Parsed = (String, [u32; 13], Vec<u8>);

    /// An independent newc reader for the unit tests, strict about magic,
    /// alignment and the trailer.
    fn parse(mut b: &[u8]) -> Vec<Parsed> {
        let total = b.len();
        let mut out = Vec::new();
        loop {
            let off = total - b.len();
            assert_eq!(off % 4, 0, "header not aligned");
            assert_eq!(&b[..6], b"070701", "bad magic at {off}");
            let mut f = [0u32; 13];
            for (i, v) in f.iter_mut().enumerate() {
                let s = std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap();
                *v = u32::from_str_radix(s, 16).unwrap();
            }
            let namesize = f[11] as usize;
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(b[110 + namesize - 1], 0);
            let data_start = (110 + namesize).div_ceil(4) * 4;
            let size = f[6] as usize;
            let data = b[data_start..data_start + size].to_vec();
            b = &b[(data_start + size).div_ceil(4) * 4..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty(), "bytes after trailer");
                return out;
            }
            out.push((name, f, data));
        }
    }

    fn sample() -> Archive {
        let mut a = Archive::new();
        a.add_file("init", 0o755, Data::Bytes(b"#!/bin/sh\n".to_vec()))
            .unwrap();
        a.add_char_device("/dev/console", 0o600, 5, 1).unwrap();
        a.add_file(
            "etc/berth/manifest.toml",
            0o644,
            Data::Bytes(b"version = 1\n".to_vec()),
        )
        .unwrap();
        a.add_symlink("usr/bin/sh", "../../bin/busybox").unwrap();
        a.add_dir("tmp", 0o1777).unwrap();
        a.add_file("a-b", 0o644, Data::Bytes(b"12345".to_vec()))
            .unwrap();
        a.add_file("a/b", 0o600, Data::Bytes(Vec::new())).unwrap();
        a
    }

    fn bytes(a: &Archive, mtime: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let w = a.write(&mut out, mtime).unwrap();
        assert_eq!(w.bytes, out.len() as u64);
        assert_eq!(a.encoded_len(), out.len() as u64);
        assert_eq!(w.entries, a.len() as u64);
        out
    }

    #[test]
    fn writes_sorted_entries_with_parents_first() {
        let got = parse(&bytes(&sample(), 0));
        let names: Vec<_> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "a",
                "a/b",
                "a-b",
                "dev",
                "dev/console",
                "etc",
                "etc/berth",
                "etc/berth/manifest.toml",
                "init",
                "tmp",
                "usr",
                "usr/bin",
                "usr/bin/sh"
            ]
        );
        // Inodes are sequential from 1.
        let inos: Vec<_> = got.iter().map(|e| e.1[0]).collect();
        assert_eq!(inos, (1..=names.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn header_fields_are_exact() {
        let got = parse(&bytes(&sample(), 1_700_000_000));
        let find = |n: &str| got.iter().find(|e| e.0 == n).unwrap();
        let (_, f, data) = find("init");
        assert_eq!(f[1], 0o100755);
        assert_eq!((f[2], f[3], f[4]), (0, 0, 1));
        assert_eq!(f[5], 1_700_000_000);
        assert_eq!(f[6], 10);
        assert_eq!(data, b"#!/bin/sh\n");
        let (_, f, _) = find("dev/console");
        assert_eq!(f[1], 0o020600);
        assert_eq!((f[9], f[10]), (5, 1));
        let (_, f, data) = find("usr/bin/sh");
        assert_eq!(f[1], 0o120777);
        assert_eq!(data, b"../../bin/busybox");
        let (_, f, _) = find("tmp");
        assert_eq!((f[1], f[4]), (0o041777, 2));
        let (_, f, _) = find("dev");
        assert_eq!(f[1], 0o040755);
    }

    #[test]
    fn output_is_independent_of_insertion_order() {
        let mut b = Archive::new();
        b.add_file("a/b", 0o600, Data::Bytes(Vec::new())).unwrap();
        b.add_file("a-b", 0o644, Data::Bytes(b"12345".to_vec()))
            .unwrap();
        b.add_dir("tmp", 0o1777).unwrap();
        b.add_symlink("usr/bin/sh", "../../bin/busybox").unwrap();
        b.add_file(
            "etc/berth/manifest.toml",
            0o644,
            Data::Bytes(b"version = 1\n".to_vec()),
        )
        .unwrap();
        b.add_char_device("dev/console", 0o600, 5, 1).unwrap();
        b.add_file("init", 0o755, Data::Bytes(b"#!/bin/sh\n".to_vec()))
            .unwrap();
        assert_eq!(bytes(&sample(), 7), bytes(&b, 7));
        assert_ne!(bytes(&sample(), 7), bytes(&sample(), 8));
    }

    #[test]
    fn refuses_bad_paths_and_duplicates() {
        let mut a = Archive::new();
        for bad in ["", "/", "a//b", "a/./b", "../x", "a/..", "a/", "x\0y"] {
            assert!(
                matches!(a.add_dir(bad, 0o755), Err(CpioError::InvalidPath(_))),
                "{bad:?} accepted"
            );
        }
        a.add_file("f", 0o644, Data::Bytes(vec![])).unwrap();
        assert!(matches!(
            a.add_file("/f", 0o644, Data::Bytes(vec![])),
            Err(CpioError::Duplicate(_))
        ));
        assert!(matches!(
            a.add_dir("f/g", 0o755),
            Err(CpioError::ParentNotDir { .. })
        ));
        // An implicit parent may be made explicit once, not twice.
        a.add_file("d/x", 0o644, Data::Bytes(vec![])).unwrap();
        a.add_dir("d", 0o700).unwrap();
        assert!(matches!(
            a.add_dir("d", 0o700),
            Err(CpioError::Duplicate(_))
        ));
        assert!(matches!(
            a.add_file("d", 0o644, Data::Bytes(vec![])),
            Err(CpioError::Duplicate(_))
        ));
    }

    #[test]
    fn padding_is_correct_for_every_name_and_size() {
        let mut a = Archive::new();
        for n in 1..=8 {
            let name = "x".repeat(n);
            a.add_file(&name, 0o644, Data::Bytes(vec![b'z'; n]))
                .unwrap();
        }
        let got = parse(&bytes(&a, 0));
        assert_eq!(got.len(), 8);
        for (name, _, data) in got {
            assert_eq!(data.len(), name.len());
        }
    }

    #[test]
    fn streams_host_files_and_detects_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        let mut a = Archive::new();
        a.add_file("f", 0o644, Data::file(&p).unwrap()).unwrap();
        let got = parse(&bytes(&a, 0));
        assert_eq!(got[0].2, b"hello");
        std::fs::write(&p, b"hello world").unwrap();
        assert!(matches!(
            a.write(Vec::new(), 0),
            Err(CpioError::Changed { .. })
        ));
        std::fs::write(&p, b"hi").unwrap();
        assert!(matches!(
            a.write(Vec::new(), 0),
            Err(CpioError::Changed { .. })
        ));
        assert!(matches!(
            Data::file(&dir.path().join("missing")),
            Err(CpioError::Read { .. })
        ));
    }

    /// The archive, read back by GNU cpio (scripts/install-deps installs it).
    #[test]
    fn gnu_cpio_reads_the_archive_back() {
        let have_cpio = Command::new("cpio")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(have_cpio, "cpio is not installed: run scripts/install-deps");
        let mut a = sample();
        let big: Vec<u8> = (0..100_003u32).map(|i| (i * 7 % 251) as u8).collect();
        a.add_file("usr/lib/big", 0o640, Data::Bytes(big.clone()))
            .unwrap();
        let archive = bytes(&a, 1_000_000_000);

        // Listing: types, modes, owners, sizes, device numbers.
        let out = Command::new("cpio")
            .args(["-itv", "--quiet", "--numeric-uid-gid"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(&archive)?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8(out.stdout).unwrap();
        let line = |name: &str| {
            listing
                .lines()
                .find(|l| l.ends_with(&format!(" {name}")) || l.contains(&format!(" {name} -> ")))
                .unwrap_or_else(|| panic!("{name} not in listing:\n{listing}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(line("init")[..5], ["-rwxr-xr-x", "1", "0", "0", "10"]);
        assert_eq!(
            line("dev/console")[..6],
            ["crw-------", "1", "0", "0", "5,", "1"]
        );
        assert_eq!(line("tmp")[0], "drwxrwxrwt");
        assert_eq!(
            line("usr/lib/big")[..5],
            ["-rw-r-----", "1", "0", "0", "100003"]
        );
        let sh = line("usr/bin/sh");
        assert_eq!(sh[0], "lrwxrwxrwx");
        assert_eq!(sh[sh.len() - 1], "../../bin/busybox");
        assert_eq!(listing.lines().count(), a.len());

        // Extraction: contents and modes on disk (device nodes excepted:
        // extracting them needs root and is not what this checks).
        let dir = tempfile::tempdir().unwrap();
        let mut without_dev = Archive::new();
        for (path, e) in a.iter().filter(|(p, _)| !p.starts_with("dev")) {
            without_dev.add(path, e.clone()).unwrap();
        }
        let archive = bytes(&without_dev, 1_000_000_000);
        let out = Command::new("cpio")
            .args(["-idm", "--quiet", "--no-absolute-filenames"])
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(&archive)?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        use std::os::unix::fs::PermissionsExt;
        let root = dir.path();
        assert_eq!(std::fs::read(root.join("usr/lib/big")).unwrap(), big);
        assert_eq!(std::fs::read(root.join("init")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(std::fs::read(root.join("a-b")).unwrap(), b"12345");
        let mode = |p: &str| {
            std::fs::symlink_metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
        };
        assert_eq!(mode("init"), 0o100755);
        assert_eq!(mode("tmp"), 0o041777);
        assert_eq!(mode("etc/berth/manifest.toml"), 0o100644);
        assert_eq!(
            std::fs::read_link(root.join("usr/bin/sh")).unwrap(),
            Path::new("../../bin/busybox")
        );
        let mtime = std::fs::metadata(root.join("init")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(mtime.mtime(), 1_000_000_000);
    }
}

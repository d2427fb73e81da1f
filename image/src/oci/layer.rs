//! A layer as a stream of checked entries.
//!
//! [`Layer::open`] takes a layer blob as stored (gzip, zstd or plain tar:
//! told by its first bytes, not by its media type), verifies the blob's
//! sha256 and size and the uncompressed stream's sha256 (the config's
//! DiffID) as it goes, and yields [`Entry`] values whose paths are already
//! checked: relative, no `..`, no empty or overlong components. Whiteouts
//! come out as [`Kind::Whiteout`] and [`Kind::Opaque`], in the overlay
//! filesystem's terms. A sink (berth's filesystem unpacker, the builder's
//! initramfs writer) applies them; it still has to refuse paths that pass
//! through a symlink the layer itself made, which only it can see.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::digest::{Digest, Mismatch, Verify};
use super::tar::{self, TarError, TarLimits};

/// The prefix of a whiteout file's name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of the opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Bounds on one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerLimits {
    /// The largest blob (compressed) accepted.
    pub max_blob: u64,
    /// The largest uncompressed tar stream: bounds decompression bombs.
    pub max_unpacked: u64,
    /// Tar limits: entries, PAX and long-name sizes.
    pub tar: TarLimits,
    /// The longest path, in bytes.
    pub max_path: usize,
    /// The largest extended attribute value, in bytes.
    pub max_xattr: usize,
    /// zstd's largest window, as a power of two (memory the decoder may
    /// allocate).
    pub zstd_window_log: u32,
}

impl Default for LayerLimits {
    fn default() -> Self {
        LayerLimits {
            max_blob: 8 << 30,
            max_unpacked: 16 << 30,
            tar: TarLimits::default(),
            max_path: 4096,
            max_xattr: 64 << 10,
            zstd_window_log: 27,
        }
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// What an entry is, in overlay terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file; its data follows (read it from the [`Layer`]).
    File {
        /// Its size.
        size: u64,
    },
    /// A symbolic link, target as written (any target is allowed: it is
    /// only ever resolved inside the container's root).
    Symlink(PathBuf),
    /// A hard link to an earlier entry of this layer (a checked path).
    Link(PathBuf),
    /// A character device.
    Char {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    Block {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A FIFO.
    Fifo,
    /// `.wh.NAME`: `path` (the NAME beside it) is deleted from the layers
    /// below. In overlay terms: a 0:0 character device at `path`.
    Whiteout,
    /// `.wh..wh..opq`: the directory `path` hides what the layers below
    /// have in it. In overlay terms: `trusted.overlay.opaque=y` on it.
    Opaque,
}

/// One checked entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path inside the layer: relative, normal components only. For a
    /// whiteout, the path it deletes; for an opaque marker, its directory
    /// (empty for the layer's root).
    pub path: PathBuf,
    /// What it is.
    pub kind: Kind,
    /// Permission bits, `0o7777` at most.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes, as the archive gives them (the sink decides
    /// which it applies).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why a layer was refused.
#[derive(Debug, displaydoc::Display, thiserror::Error)]
pub enum LayerError {
    /// {0}
    Tar(#[from] TarError),
    /// read error: {0}
    Io(#[from] io::Error),
    /// entry {path:?}: absolute path (a layer's paths are relative to its root)
    Absolute {
        /// The path as written.
        path: String,
    },
    /// entry {path:?}: `..` in the path (a layer cannot reach outside its directory)
    Traversal {
        /// The path as written.
        path: String,
    },
    /// entry {path:?}: {why}
    BadPath {
        /// The path as written.
        path: String,
        /// What is wrong.
        why: &'static str,
    },
    /// entry {path:?}: hard link target {target:?}: {why}
    BadLink {
        /// The link.
        path: String,
        /// Its target.
        target: String,
        /// What is wrong.
        why: &'static str,
    },
    /// entry {path:?}: {what} {value} is out of range
    Range {
        /// The entry.
        path: String,
        /// Which field.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// entry {path:?}: extended attribute {name:?} is {size} bytes, over the limit of {limit}
    Xattr {
        /// The entry.
        path: String,
        /// The attribute.
        name: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// blob: {0}
    Blob(Mismatch),
    /// uncompressed content (DiffID): {0}
    DiffId(Mismatch),
    /// the uncompressed layer is larger than the limit of {0} bytes (a decompression bomb?)
    Bomb(u64),
    /// the blob is larger than the limit of {0} bytes
    BlobTooLarge(u64),
    /// cannot decompress ({compression}): {source}
    Decompress {
        /// The compression.
        compression: Compression,
        /// The error.
        source: io::Error,
    },
}

/// The decompressor in the middle of the stack.
enum Decoder<'a> {
    Plain(BufReader<Verify<Box<dyn Read + 'a>>>),
    Gzip(flate2::bufread::MultiGzDecoder<BufReader<Verify<Box<dyn Read + 'a>>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<Verify<Box<dyn Read + 'a>>>>),
}

impl Read for Decoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

impl<'a> Decoder<'a> {
    fn into_blob(self) -> BufReader<Verify<Box<dyn Read + 'a>>> {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(r) => r.into_inner(),
            Decoder::Zstd(r) => r.finish(),
        }
    }
}

/// Tells the compression from a blob's first bytes.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A layer being read: entries come from [`Layer::next`], a file's data by
/// reading the layer itself; [`Layer::finish`] verifies the digests.
pub struct Layer<'a> {
    tar: tar::Reader<Verify<Decoder<'a>>>,
    compression: Compression,
    limits: LayerLimits,
}

impl std::fmt::Debug for Layer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

/// What reading a layer found, once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The blob's digest.
    pub blob: Digest,
    /// The blob's size.
    pub blob_size: u64,
    /// The uncompressed stream's digest (the DiffID).
    pub diff_id: Digest,
    /// The uncompressed size.
    pub unpacked_size: u64,
}

impl<'a> Layer<'a> {
    /// Opens the layer blob in `blob`, of size `size` if known.
    pub fn open(
        blob: Box<dyn Read + 'a>,
        size: Option<u64>,
        limits: LayerLimits,
    ) -> Result<Layer<'a>, LayerError> {
        if let Some(s) = size
            && s > limits.max_blob
        {
            return Err(LayerError::BlobTooLarge(limits.max_blob));
        }
        let mut buf = BufReader::with_capacity(64 << 10, Verify::new(blob, size, limits.max_blob));
        let compression = sniff(buf.fill_buf().map_err(map_blob_err)?);
        let decompress_err = |source| LayerError::Decompress {
            compression,
            source,
        };
        let decoder = match compression {
            Compression::None => Decoder::Plain(buf),
            Compression::Gzip => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(buf)),
            Compression::Zstd => {
                let mut d =
                    zstd::stream::read::Decoder::with_buffer(buf).map_err(decompress_err)?;
                d.window_log_max(limits.zstd_window_log)
                    .map_err(decompress_err)?;
                Decoder::Zstd(d)
            }
        };
        let diff = Verify::new(decoder, None, limits.max_unpacked);
        Ok(Layer {
            tar: tar::Reader::new(diff, limits.tar),
            compression,
            limits,
        })
    }

    /// How the blob is compressed.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The next entry, checked; `None` at the end of the layer.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
        loop {
            let h = match self.tar.next_header() {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.map_tar_err(e)),
            };
            if let Some(e) = self.entry(h)? {
                return Ok(Some(e));
            }
        }
    }

    fn map_tar_err(&self, e: TarError) -> LayerError {
        match e {
            TarError::Io(io) => self.map_io_err(io),
            e => LayerError::Tar(e),
        }
    }

    fn map_io_err(&self, e: io::Error) -> LayerError {
        if let Some(m) = e.get_ref().and_then(|i| i.downcast_ref::<Mismatch>()) {
            return LayerError::Blob(m.clone());
        }
        map_io(e, self.compression, self.limits)
    }

    fn entry(&self, h: tar::Header) -> Result<Option<Entry>, LayerError> {
        let shown = || String::from_utf8_lossy(&h.path).into_owned();
        let Some(mut path) = clean(&h.path, self.limits.max_path).map_err(|why| match why {
            PathProblem::Absolute => LayerError::Absolute { path: shown() },
            PathProblem::Traversal => LayerError::Traversal { path: shown() },
            PathProblem::Bad(why) => LayerError::BadPath { path: shown(), why },
        })?
        else {
            // The layer's root itself (`./`): nothing to create.
            return Ok(None);
        };
        let uid = u32::try_from(h.uid).map_err(|_| LayerError::Range {
            path: shown(),
            what: "uid",
            value: h.uid,
        })?;
        let gid = u32::try_from(h.gid).map_err(|_| LayerError::Range {
            path: shown(),
            what: "gid",
            value: h.gid,
        })?;
        for (name, value) in &h.xattrs {
            if value.len() > self.limits.max_xattr {
                return Err(LayerError::Xattr {
                    path: shown(),
                    name: String::from_utf8_lossy(name).into_owned(),
                    size: value.len(),
                    limit: self.limits.max_xattr,
                });
            }
        }
        let name = path
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        let kind = if name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            if name == OPAQUE_MARKER.as_bytes() {
                path.pop();
                Kind::Opaque
            } else if name.starts_with(b".wh..wh.") {
                // aufs's own bookkeeping (.wh..wh.plnk, .wh..wh.aufs): skip.
                return Ok(None);
            } else {
                let hidden = &name[WHITEOUT_PREFIX.len()..];
                if hidden.is_empty() || hidden == b"." || hidden == b".." {
                    return Err(LayerError::BadPath {
                        path: shown(),
                        why: "a whiteout must name an entry",
                    });
                }
                path.set_file_name(OsStr::from_bytes(hidden));
                Kind::Whiteout
            }
        } else {
            match h.kind {
                tar::Type::Dir => Kind::Dir,
                tar::Type::File => Kind::File { size: h.size },
                tar::Type::Symlink => {
                    if h.link.is_empty() {
                        return Err(LayerError::BadPath {
                            path: shown(),
                            why: "a symlink with an empty target",
                        });
                    }
                    Kind::Symlink(PathBuf::from(OsStr::from_bytes(&h.link)))
                }
                tar::Type::Link => {
                    let target = String::from_utf8_lossy(&h.link).into_owned();
                    let bad = |why| LayerError::BadLink {
                        path: shown(),
                        target: target.clone(),
                        why,
                    };
                    match clean(&h.link, self.limits.max_path) {
                        Ok(Some(t)) if t == path => return Err(bad("a link to itself")),
                        Ok(Some(t)) => Kind::Link(t),
                        Ok(None) => return Err(bad("the layer's root")),
                        Err(PathProblem::Absolute) => return Err(bad("absolute")),
                        Err(PathProblem::Traversal) => {
                            return Err(bad("`..` leads outside the layer"));
                        }
                        Err(PathProblem::Bad(why)) => return Err(bad(why)),
                    }
                }
                tar::Type::Char => Kind::Char {
                    major: h.dev.0,
                    minor: h.dev.1,
                },
                tar::Type::Block => Kind::Block {
                    major: h.dev.0,
                    minor: h.dev.1,
                },
                tar::Type::Fifo => Kind::Fifo,
            }
        };
        Ok(Some(Entry {
            path,
            kind,
            mode: h.mode,
            uid,
            gid,
            mtime: h.mtime,
            xattrs: h.xattrs,
        }))
    }

    /// Reads the rest of the layer and checks the blob against `blob` (and
    /// the size given to [`Layer::open`]) and the uncompressed stream
    /// against `diff_id`, when given.
    pub fn finish(
        self,
        blob: Option<&Digest>,
        diff_id: Option<&Digest>,
    ) -> Result<Verified, LayerError> {
        let compression = self.compression;
        let limits = self.limits;
        let diff = self.tar.finish().map_err(|e| match e {
            TarError::Io(io) => map_io(io, compression, limits),
            e => LayerError::Tar(e),
        })?;
        // The uncompressed stream: everything after the archive too.
        let (diff_id, unpacked_size, decoder) = finish_split(diff, diff_id, compression, limits)?;
        let mut blob_reader = decoder.into_blob();
        // What the decompressor left unread (padding after a zstd frame,
        // a trailing gzip member boundary) belongs to the blob too.
        io::copy(&mut blob_reader, &mut io::sink()).map_err(map_blob_err)?;
        let (blob_digest, blob_size) = match blob_reader
            .into_inner()
            .finish(blob)
            .map_err(map_blob_err)?
        {
            Ok(v) => v,
            Err(m) => return Err(LayerError::Blob(m)),
        };
        Ok(Verified {
            blob: blob_digest,
            blob_size,
            diff_id,
            unpacked_size,
        })
    }
}

/// Checks the uncompressed stream and gives back the decoder under it.
fn finish_split<'a>(
    mut diff: Verify<Decoder<'a>>,
    expected: Option<&Digest>,
    compression: Compression,
    limits: LayerLimits,
) -> Result<(Digest, u64, Decoder<'a>), LayerError> {
    diff.drain().map_err(|e| map_io(e, compression, limits))?;
    let (d, n, inner) = diff.split();
    if let Some(e) = expected
        && *e != d
    {
        return Err(LayerError::DiffId(Mismatch::Digest {
            expected: e.clone(),
            actual: d,
        }));
    }
    Ok((d, n, inner))
}

fn map_io(e: io::Error, compression: Compression, limits: LayerLimits) -> LayerError {
    if let Some(m) = e.get_ref().and_then(|i| i.downcast_ref::<Mismatch>()) {
        return LayerError::Blob(m.clone());
    }
    if let Some(l) = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<super::digest::LimitExceeded>())
    {
        // Two readers have limits: the uncompressed stream's, and the blob's.
        return if l.limit == limits.max_unpacked {
            LayerError::Bomb(l.limit)
        } else {
            LayerError::BlobTooLarge(l.limit)
        };
    }
    match compression {
        Compression::None => LayerError::Io(e),
        c => LayerError::Decompress {
            compression: c,
            source: e,
        },
    }
}

fn map_blob_err(e: io::Error) -> LayerError {
    if let Some(m) = e.get_ref().and_then(|i| i.downcast_ref::<Mismatch>()) {
        return LayerError::Blob(m.clone());
    }
    if let Some(l) = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<super::digest::LimitExceeded>())
    {
        return LayerError::BlobTooLarge(l.limit);
    }
    LayerError::Io(e)
}

/// The current file entry's data.
impl Read for Layer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tar.read(buf)
    }
}

impl Layer<'_> {
    /// Turns an error met while reading a file's data into a [`LayerError`].
    pub fn data_error(&self, e: io::Error) -> LayerError {
        self.map_io_err(e)
    }
}

enum PathProblem {
    Absolute,
    Traversal,
    Bad(&'static str),
}

/// Checks and normalises an archive path: `./` prefixes, `.` components,
/// repeated and trailing slashes go; absolute paths and `..` are refused,
/// except `/` alone, which some tools (umoci) write for the root.
/// `Ok(None)` is the root itself.
fn clean(raw: &[u8], max: usize) -> Result<Option<PathBuf>, PathProblem> {
    if raw.len() > max {
        return Err(PathProblem::Bad("the path is too long"));
    }
    if raw.first() == Some(&b'/') {
        if raw.split(|b| *b == b'/').all(|c| c.is_empty() || c == b".") {
            return Ok(None);
        }
        return Err(PathProblem::Absolute);
    }
    let mut out = PathBuf::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(PathProblem::Traversal),
            c if c.len() > 255 => {
                return Err(PathProblem::Bad(
                    "a path component is longer than 255 bytes",
                ));
            }
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok((out != Path::new("")).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::tar::tests::TestTar;
    use std::io::Write;

    fn entries(data: Vec<u8>) -> Result<Vec<Entry>, LayerError> {
        let mut l = Layer::open(
            Box::new(io::Cursor::new(data)),
            None,
            LayerLimits::default(),
        )?;
        let mut out = Vec::new();
        while let Some(e) = l.next_entry()? {
            out.push(e);
        }
        l.finish(None, None)?;
        Ok(out)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn whiteouts_in_overlay_terms() {
        let mut t = TestTar::default();
        t.dir("./");
        t.dir("/");
        t.file("./etc/.wh.passwd", b"");
        t.file("var/.wh..wh..opq", b"");
        t.file(".wh..wh..opq", b"");
        t.file("a/.wh..wh.plnk", b"");
        t.file("b//c/./d", b"x");
        let got = entries(t.finish()).unwrap();
        let summary: Vec<(String, Kind)> = got
            .iter()
            .map(|e| (e.path.display().to_string(), e.kind.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                ("etc/passwd".to_string(), Kind::Whiteout),
                ("var".to_string(), Kind::Opaque),
                (String::new(), Kind::Opaque),
                ("b/c/d".to_string(), Kind::File { size: 1 }),
            ]
        );
    }

    #[test]
    fn refuses_escaping_paths() {
        for (build, want) in [
            (
                Box::new(|t: &mut TestTar| t.file("../etc/passwd", b"x"))
                    as Box<dyn Fn(&mut TestTar)>,
                "`..` in the path",
            ),
            (
                Box::new(|t: &mut TestTar| t.file("a/../../x", b"x")),
                "`..` in the path",
            ),
            (
                Box::new(|t: &mut TestTar| t.file("/etc/passwd", b"x")),
                "absolute path",
            ),
            (
                Box::new(|t: &mut TestTar| t.hardlink("x", "../../etc/shadow")),
                "`..` leads outside",
            ),
            (
                Box::new(|t: &mut TestTar| t.hardlink("x", "/etc/shadow")),
                "absolute",
            ),
            (
                Box::new(|t: &mut TestTar| t.file("d/.wh...", b"")),
                "a whiteout must name",
            ),
        ] {
            let mut t = TestTar::default();
            build(&mut t);
            let e = entries(t.finish()).unwrap_err().to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn checks_blob_and_diff_id() {
        let mut t = TestTar::default();
        t.file("hello", b"hello world");
        let tar = t.finish();
        let gz = gzip(&tar);
        let diff = Digest::of(&tar);
        let blob = Digest::of(&gz);
        let open = |data: Vec<u8>, size| {
            Layer::open(
                Box::new(io::Cursor::new(data)),
                size,
                LayerLimits::default(),
            )
            .unwrap()
        };
        let mut l = open(gz.clone(), Some(gz.len() as u64));
        assert_eq!(l.compression(), Compression::Gzip);
        while l.next_entry().unwrap().is_some() {}
        let v = l.finish(Some(&blob), Some(&diff)).unwrap();
        assert_eq!((v.blob, v.diff_id), (blob.clone(), diff.clone()));

        // One flipped byte in the compressed data.
        let mut bad = gz.clone();
        let n = bad.len();
        bad[n - 12] ^= 0x55;
        let mut l = open(bad, Some(n as u64));
        let r = (|| {
            while l.next_entry()?.is_some() {}
            l.finish(Some(&blob), Some(&diff))
        })();
        assert!(r.is_err());

        // Truncated.
        let mut l = open(gz[..gz.len() - 4].to_vec(), Some(gz.len() as u64));
        let r = (|| {
            while l.next_entry()?.is_some() {}
            l.finish(Some(&blob), Some(&diff))
        })();
        assert!(r.is_err());

        // Right bytes, wrong DiffID.
        let mut l = open(tar.clone(), None);
        while l.next_entry().unwrap().is_some() {}
        let e = l.finish(None, Some(&blob)).unwrap_err();
        assert!(matches!(e, LayerError::DiffId(_)), "{e}");
    }

    #[test]
    fn bounds_decompression_bombs() {
        let mut t = TestTar::default();
        t.file("zeros", &vec![0u8; 4 << 20]);
        let gz = gzip(&t.finish());
        assert!(gz.len() < 64 << 10);
        let limits = LayerLimits {
            max_unpacked: 1 << 20,
            ..LayerLimits::default()
        };
        let mut l = Layer::open(Box::new(io::Cursor::new(gz)), None, limits).unwrap();
        let e = (|| {
            while let Some(_e) = l.next_entry()? {
                io::copy(&mut l, &mut io::sink()).map_err(|e| l.data_error(e))?;
            }
            l.finish(None, None).map(|_| ())
        })()
        .unwrap_err();
        assert!(matches!(e, LayerError::Bomb(_)), "{e}");
    }

    #[test]
    fn zstd_layers() {
        let mut t = TestTar::default();
        t.file("z", b"zstd data");
        let tar = t.finish();
        let z = zstd::encode_all(&tar[..], 3).unwrap();
        let mut l =
            Layer::open(Box::new(io::Cursor::new(z)), None, LayerLimits::default()).unwrap();
        assert_eq!(l.compression(), Compression::Zstd);
        let e = l.next_entry().unwrap().unwrap();
        assert_eq!(e.kind, Kind::File { size: 9 });
        let mut s = String::new();
        l.read_to_string(&mut s).unwrap();
        assert_eq!(s, "zstd data");
        assert!(l.next_entry().unwrap().is_none());
        assert_eq!(
            l.finish(None, Some(&Digest::of(&tar))).unwrap().diff_id,
            Digest::of(&tar)
        );
    }
}

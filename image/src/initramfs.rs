//! The initramfs's contents and its compressed encoding.
//!
//! Layout (paths in the image):
//! ```text
//! /init                                   berth (static x86-64 ELF), 0755
//! /dev/console                            char 5:1, 0600: PID 1's console
//! /etc/berth/manifest.toml                the manifest, as given, 0644
//! /lib/modules/<release>/kernel/**.ko     the selected modules, at their package paths
//! /lib/modules/<release>/modules.dep      see crate::modules
//! /lib/modules/<release>/modules.softdep
//! /lib/modules/<release>/modules.builtin  the kernel's list of built-in modules
//! /usr/lib/berth/images/<name>/<tag>/     container images, see crate::images
//! ```
//! plus any extra files a caller adds. The archive is written by
//! [`crate::cpio`] (sorted, fixed metadata) and compressed deterministically.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::cpio::{Archive, CpioError, Data, Written};
use crate::elf::{ElfError, check_static_executable};
use crate::modules::Resolution;
use crate::progress::Progress;

/// Where the manifest goes.
pub const MANIFEST_PATH: &str = "etc/berth/manifest.toml";

/// Why the initramfs could not be assembled or written.
#[derive(Debug, displaydoc::Display, thiserror::Error)]
pub enum InitramfsError {
    /// cannot read {path}: {source}
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// {path} cannot be berth's /init: {source}
    Init {
        /// The berth binary given.
        path: PathBuf,
        /// Why not.
        source: ElfError,
    },
    /// cannot add {what} to the initramfs: {source}
    Archive {
        /// What was being added.
        what: String,
        /// The archive's error.
        source: CpioError,
    },
    /// cannot write {path}: {source}
    Write {
        /// The output file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// cannot write {path}: {source}
    Encode {
        /// The output file.
        path: PathBuf,
        /// The archive's error.
        source: CpioError,
    },
    /// invalid compression level {0}
    Level(i32),
}

fn archive_err(what: impl Into<String>) -> impl FnOnce(CpioError) -> InitramfsError {
    let what = what.into();
    move |source| InitramfsError::Archive { what, source }
}

/// How the archive is compressed. The kernel must support it
/// (`CONFIG_RD_ZSTD`, `CONFIG_RD_GZIP`: the pinned kernel has both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not at all (the kernel accepts a plain cpio too).
    None,
    /// gzip (flate2) at level 0-9.
    Gzip {
        /// The level.
        level: u32,
    },
    /// zstd at level 1-22, single-threaded (deterministic for a given
    /// level and zstd version). Measured on a busybox image (7.2 MiB of
    /// cpio: berth 1.8 MiB, 34 modules, busybox), CPU seconds and bytes:
    /// level 3: 0.13 s, 2.93 MB; 9: 0.39 s, 2.68 MB; 15: 2.9 s, 2.65 MB;
    /// 17: 4.7 s, 2.24 MB; 18: 6.1 s, 2.17 MB; 19: 8.0 s, 2.17 MB.
    Zstd {
        /// The level.
        level: i32,
    },
}

impl Compression {
    /// The smallest output, for images that ship (the CLI's and
    /// scripts/build-image's default).
    pub const RELEASE: Compression = Compression::Zstd { level: 19 };
    /// Fast, for images built per test ([`crate::BuildOptions::new`]'s default).
    pub const FAST: Compression = Compression::Zstd { level: 3 };
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compression::None => write!(f, "none"),
            Compression::Gzip { level } => write!(f, "gzip -{level}"),
            Compression::Zstd { level } => write!(f, "zstd -{level}"),
        }
    }
}

/// Adds berth as `/init` and `/dev/console`. Returns berth's size.
pub fn add_init(archive: &mut Archive, berth: &Path) -> Result<u64, InitramfsError> {
    let data = std::fs::read(berth).map_err(|source| InitramfsError::Read {
        path: berth.to_path_buf(),
        source,
    })?;
    check_static_executable(&data).map_err(|source| InitramfsError::Init {
        path: berth.to_path_buf(),
        source,
    })?;
    let size = data.len() as u64;
    archive
        .add_file("init", 0o755, Data::Bytes(data))
        .map_err(archive_err("/init"))?;
    archive
        .add_char_device("dev/console", 0o600, 5, 1)
        .map_err(archive_err("/dev/console"))?;
    Ok(size)
}

/// Adds the manifest's bytes at [`MANIFEST_PATH`].
pub fn add_manifest(archive: &mut Archive, manifest: Vec<u8>) -> Result<(), InitramfsError> {
    archive
        .add_file(MANIFEST_PATH, 0o644, Data::Bytes(manifest))
        .map_err(archive_err(MANIFEST_PATH))
}

/// Adds the selected modules of the kernel release `release`, found in
/// `modules_dir`, with `modules.dep`, `modules.softdep` and
/// `modules.builtin`.
pub fn add_modules(
    archive: &mut Archive,
    release: &str,
    modules_dir: &Path,
    resolution: &Resolution,
) -> Result<(), InitramfsError> {
    let base = format!("lib/modules/{release}");
    for meta in resolution.modules.values() {
        let path = format!("{base}/{}", meta.path);
        let data = Data::file(&modules_dir.join(&meta.path)).map_err(archive_err(&path))?;
        archive
            .add_file(&path, 0o644, data)
            .map_err(archive_err(&path))?;
    }
    let builtin = modules_dir.join("modules.builtin");
    let builtin = std::fs::read(&builtin).map_err(|source| InitramfsError::Read {
        path: builtin,
        source,
    })?;
    for (name, data) in [
        ("modules.dep", resolution.modules_dep().into_bytes()),
        ("modules.softdep", resolution.modules_softdep().into_bytes()),
        ("modules.builtin", builtin),
    ] {
        let path = format!("{base}/{name}");
        archive
            .add_file(&path, 0o644, Data::Bytes(data))
            .map_err(archive_err(&path))?;
    }
    Ok(())
}

/// Writes `archive` to `path`, compressed, every entry with time `mtime`.
/// Writes through a temporary file in the same directory and renames it,
/// so `path` is never seen half-written.
pub fn write(
    archive: &Archive,
    path: &Path,
    compression: Compression,
    mtime: u32,
    progress: &Progress,
) -> Result<Written, InitramfsError> {
    let write_err = |source| InitramfsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let encode_err = |source| InitramfsError::Encode {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".initramfs-")
        .tempfile_in(dir)
        .map_err(write_err)?;
    let file = BufWriter::with_capacity(1 << 20, tmp.as_file());
    let total = archive.encoded_len();
    let what = format!("compressing ({compression})");
    let written = match compression {
        Compression::None => {
            let mut meter = progress.meter(&what, total, file);
            let w = archive.write(&mut meter, mtime).map_err(encode_err)?;
            meter.finish().flush().map_err(write_err)?;
            w
        }
        Compression::Gzip { level } => {
            if level > 9 {
                return Err(InitramfsError::Level(level as i32));
            }
            // No name, mtime 0: the gzip header is the same every time.
            let gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(file, flate2::Compression::new(level));
            let mut meter = progress.meter(&what, total, gz);
            let w = archive.write(&mut meter, mtime).map_err(encode_err)?;
            meter
                .finish()
                .finish()
                .map_err(write_err)?
                .flush()
                .map_err(write_err)?;
            w
        }
        Compression::Zstd { level } => {
            if !zstd::compression_level_range().contains(&level) || level == 0 {
                return Err(InitramfsError::Level(level));
            }
            let mut zst = zstd::stream::write::Encoder::new(file, level).map_err(write_err)?;
            zst.include_checksum(true).map_err(write_err)?;
            // The exact size goes in the frame header, and lets zstd size
            // its window to the input (less memory for the kernel).
            zst.set_pledged_src_size(Some(total)).map_err(write_err)?;
            let mut meter = progress.meter(&what, total, zst);
            let w = archive.write(&mut meter, mtime).map_err(encode_err)?;
            meter
                .finish()
                .finish()
                .map_err(write_err)?
                .flush()
                .map_err(write_err)?;
            w
        }
    };
    crate::persist(tmp, path).map_err(write_err)?;
    Ok(written)
}

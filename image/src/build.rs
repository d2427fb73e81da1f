//! [`build`]: the manifest in, `vmlinuz`, `initramfs.img` and `cmdline` out
//! (and, when asked, `disk.img`: see [`crate::disk`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cpio::{Archive, CpioError, Data};
use crate::disk::{self, DiskError, DiskReport};
use crate::images::ImageError;
use crate::initramfs::InitramfsError;
use crate::kernel::KernelError;
use crate::modules::{BASE_MODULES, KernelModules, ModuleError};
use crate::{Compression, Kernel, Progress, Sources, images, initramfs, kernel, modules};

/// The kernel command line written to `OUTDIR/cmdline` by default.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 quiet panic=-1 printk.devkmsg=on";

/// Why an image could not be built.
#[derive(Debug, displaydoc::Display, thiserror::Error)]
pub enum Error {
    /// {0}
    Manifest(#[from] berth_config::LoadError),
    /// {0}
    Kernel(#[from] KernelError),
    /// {0}
    Modules(#[from] ModuleError),
    /// {0}
    Image(#[from] ImageError),
    /// {0}
    Initramfs(#[from] InitramfsError),
    /// disk image: {0}
    Disk(#[from] DiskError),
    /// cannot add extra file {path:?}: {source}
    Extra {
        /// The path in the image.
        path: String,
        /// The archive's error.
        source: CpioError,
    },
    /// the kernel command line must be one line, not {0:?}
    Cmdline(String),
    /// SOURCE_DATE_EPOCH={0:?} is not a number of seconds between 0 and 4294967295
    SourceDateEpoch(String),
    /// cannot {action} {path}: {source}
    Output {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A file to add to the initramfs besides what the manifest implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraFile {
    /// Its path in the image, e.g. `/etc/berth/test.conf`.
    pub path: String,
    /// Its contents.
    pub contents: Vec<u8>,
    /// Its permission bits, e.g. `0o644`.
    pub mode: u32,
}

/// The disk image to write besides the kernel and initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskRequest {
    /// Its size in bytes, a whole number of MiB (default
    /// [`disk::DEFAULT_SIZE`]).
    pub size: u64,
    /// The EFI boot loader (default [`disk::SYSTEMD_BOOT`]).
    pub boot_loader: PathBuf,
}

impl Default for DiskRequest {
    fn default() -> Self {
        DiskRequest {
            size: disk::DEFAULT_SIZE,
            boot_loader: PathBuf::from(disk::SYSTEMD_BOOT),
        }
    }
}

/// What to build, and where.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The manifest (TOML): validated, then embedded as is.
    pub manifest: PathBuf,
    /// Where `vmlinuz`, `initramfs.img` and `cmdline` go (created if needed).
    pub out_dir: PathBuf,
    /// The berth binary: a statically linked x86-64 executable.
    pub berth: PathBuf,
    /// Files to add to the initramfs.
    pub extra_files: Vec<ExtraFile>,
    /// The kernel command line for `OUTDIR/cmdline`.
    pub cmdline: String,
    /// berth's cache directory; `None`: [`kernel::cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// How `initramfs.img` is compressed.
    pub compression: Compression,
    /// Every entry's mtime; `None`: `SOURCE_DATE_EPOCH` if set, else 0.
    pub mtime: Option<u32>,
    /// Where built-in container images come from.
    pub sources: Sources,
    /// Images given besides the built-in ones (`--image`, `--import`).
    pub images: Vec<images::ImageInput>,
    /// Also write `OUTDIR/disk.img` ([`crate::disk`]).
    pub disk: Option<DiskRequest>,
    /// Report steps on stderr (warnings are printed either way).
    pub verbose: bool,
}

impl BuildOptions {
    /// Options with defaults: no extra files, [`DEFAULT_CMDLINE`], the
    /// default cache, [`Compression::FAST`] (a busybox image builds in well
    /// under a second once the kernel is cached; set
    /// [`Compression::RELEASE`] for the smallest image), quiet.
    pub fn new(
        manifest: impl Into<PathBuf>,
        out_dir: impl Into<PathBuf>,
        berth: impl Into<PathBuf>,
    ) -> Self {
        BuildOptions {
            manifest: manifest.into(),
            out_dir: out_dir.into(),
            berth: berth.into(),
            extra_files: Vec::new(),
            cmdline: DEFAULT_CMDLINE.to_string(),
            cache_dir: None,
            compression: Compression::FAST,
            mtime: None,
            sources: Sources::default(),
            images: Vec::new(),
            disk: None,
            verbose: false,
        }
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The kernel used (in the cache).
    pub kernel: Kernel,
    /// `OUTDIR/vmlinuz`.
    pub vmlinuz: PathBuf,
    /// `OUTDIR/initramfs.img`.
    pub initramfs: PathBuf,
    /// `OUTDIR/cmdline`.
    pub cmdline: PathBuf,
    /// Size of `vmlinuz` in bytes.
    pub vmlinuz_size: u64,
    /// Size of `initramfs.img` in bytes.
    pub initramfs_size: u64,
    /// Size of the uncompressed cpio archive in bytes.
    pub cpio_size: u64,
    /// Entries in the archive.
    pub entries: u64,
    /// Size of berth in bytes.
    pub berth_size: u64,
    /// The modules in the image, by name.
    pub modules: Vec<String>,
    /// Modules the manifest asked for that are built into the kernel.
    pub builtin_modules: Vec<String>,
    /// Modules the manifest asked for that the kernel does not have.
    pub missing_modules: Vec<String>,
    /// The images embedded (`name:tag`).
    pub images: Vec<String>,
    /// How the initramfs was compressed.
    pub compression: Compression,
    /// The disk image, when asked for.
    pub disk: Option<DiskReport>,
    /// How long the build took.
    pub elapsed: Duration,
}

impl std::fmt::Display for BuildReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |n: u64| n as f64 / (1024.0 * 1024.0);
        writeln!(
            f,
            "kernel    {} ({:.1} MiB)  {}",
            self.kernel.version,
            mib(self.vmlinuz_size),
            self.vmlinuz.display()
        )?;
        writeln!(
            f,
            "initramfs {:.1} MiB ({}, {:.1} MiB of cpio, {} entries)  {}",
            mib(self.initramfs_size),
            self.compression,
            mib(self.cpio_size),
            self.entries,
            self.initramfs.display()
        )?;
        writeln!(f, "berth     {:.1} MiB", mib(self.berth_size))?;
        write!(f, "modules   {}", self.modules.len())?;
        if !self.missing_modules.is_empty() {
            write!(
                f,
                " (not in this kernel: {})",
                self.missing_modules.join(", ")
            )?;
        }
        writeln!(f)?;
        if let Some(d) = &self.disk {
            writeln!(f, "{d}")?;
        }
        writeln!(
            f,
            "images    {}",
            if self.images.is_empty() {
                "none".to_string()
            } else {
                self.images.join(", ")
            }
        )?;
        write!(f, "built in  {:.1} s", self.elapsed.as_secs_f64())
    }
}

/// The fixed mtime: `SOURCE_DATE_EPOCH` if set, else 0.
pub fn source_date_epoch() -> Result<u32, Error> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.trim().parse().map_err(|_| Error::SourceDateEpoch(v)),
        _ => Ok(0),
    }
}

/// Renames a finished temporary file to `path` with mode 0644.
pub(crate) fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file().sync_all()?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `contents` to `path` atomically (temporary file, then rename).
fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let err = |source| Error::Output {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(contents).map_err(err)?;
    persist(tmp, path).map_err(err)
}

/// Copies `from` to `to` atomically.
fn copy_atomic(from: &Path, to: &Path) -> Result<u64, Error> {
    let err = |source| Error::Output {
        action: "write",
        path: to.to_path_buf(),
        source,
    };
    let dir = to.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(err)?;
    let mut src = std::fs::File::open(from).map_err(|source| Error::Output {
        action: "read",
        path: from.to_path_buf(),
        source,
    })?;
    let n = std::io::copy(&mut src, &mut tmp).map_err(err)?;
    persist(tmp, to).map_err(err)?;
    Ok(n)
}

/// Builds `OUTDIR/{vmlinuz,initramfs.img,cmdline}` from the options. The
/// kernel is fetched on first use (see [`kernel::ensure`]); after that a
/// build needs no network. Modules the manifest names that the kernel lacks
/// are warned about on stderr and listed in the report.
pub fn build(opts: &BuildOptions) -> Result<BuildReport, Error> {
    let progress = if opts.verbose {
        Progress::stderr()
    } else {
        Progress::quiet()
    };
    let mtime = match opts.mtime {
        Some(t) => t,
        None => source_date_epoch()?,
    };

    if opts.cmdline.trim().contains(['\n', '\r']) {
        return Err(Error::Cmdline(opts.cmdline.clone()));
    }

    // The images first: the manifest is checked against what they say.
    let mut image_set = images::ImageSet::new(&opts.sources, u64::from(mtime));
    for input in &opts.images {
        progress.step(&format!("reading image {}", input.path.display()));
        image_set.add_input(input)?;
    }
    progress.step(&format!("reading manifest {}", opts.manifest.display()));
    let manifest_bytes = std::fs::read(&opts.manifest).map_err(|source| {
        Error::Manifest(berth_config::LoadError::Read {
            path: opts.manifest.clone(),
            source,
        })
    })?;
    let origin = opts.manifest.display().to_string();
    let facts = |r: &berth_config::ImageRef| image_set.facts(r);
    let manifest = match std::str::from_utf8(&manifest_bytes) {
        Ok(text) => berth_config::parse_with_images(text, &origin, &facts),
        Err(_) => berth_config::parse_bytes(&manifest_bytes, &origin),
    }
    .map_err(|d| Error::Manifest(berth_config::LoadError::Invalid(d)))?;

    // Check the cheap inputs before the kernel, which may need a download.
    let data_settings = match &opts.disk {
        Some(_) => Some(disk::data_settings(&manifest.host.storage)?),
        None => None,
    };
    let mut archive = Archive::new();
    let berth_size = initramfs::add_init(&mut archive, &opts.berth)?;

    let cache = match &opts.cache_dir {
        Some(c) => c.clone(),
        None => kernel::cache_dir()?,
    };
    let kernel = kernel::ensure_with(&cache, &progress)?;
    progress.step(&format!(
        "kernel {} from {}",
        kernel.version,
        cache.display()
    ));

    initramfs::add_manifest(&mut archive, manifest_bytes)?;

    let mut source = KernelModules::open(&kernel.modules_dir)?;
    // The data partition's filesystem, unless built in (ext4).
    let mut requested = manifest.host.modules.clone();
    if let Some(d) = &manifest.host.storage.data
        && d.fs != berth_config::Filesystem::Ext4
    {
        requested.push(d.fs.as_str().to_string());
    }
    let resolution = modules::resolve(&mut source, BASE_MODULES, &requested)?;
    for name in &resolution.missing {
        progress.warn(&format!(
            "module {name:?} (host.modules in {}) is not in kernel {}; berth will report it at boot",
            opts.manifest.display(),
            kernel.version
        ));
    }
    progress.step(&format!(
        "modules: {} selected ({} requested by the manifest)",
        resolution.modules.len(),
        manifest.host.modules.len()
    ));
    initramfs::add_modules(
        &mut archive,
        &kernel.version,
        &kernel.modules_dir,
        &resolution,
    )?;

    for (name, container) in &manifest.containers {
        image_set.require(name, &container.image)?;
    }
    let images = image_set.names();
    for i in &images {
        progress.step(&format!("image {i}"));
    }
    image_set.embed(&mut archive)?;

    for extra in &opts.extra_files {
        archive
            .add_file(&extra.path, extra.mode, Data::Bytes(extra.contents.clone()))
            .map_err(|source| Error::Extra {
                path: extra.path.clone(),
                source,
            })?;
    }

    std::fs::create_dir_all(&opts.out_dir).map_err(|source| Error::Output {
        action: "create",
        path: opts.out_dir.clone(),
        source,
    })?;
    let initramfs_path = opts.out_dir.join("initramfs.img");
    progress.step(&format!(
        "writing {} ({} entries, {:.1} MiB of cpio, {})",
        initramfs_path.display(),
        archive.len(),
        archive.encoded_len() as f64 / (1024.0 * 1024.0),
        opts.compression
    ));
    let written = initramfs::write(
        &archive,
        &initramfs_path,
        opts.compression,
        mtime,
        &progress,
    )?;

    let vmlinuz = opts.out_dir.join("vmlinuz");
    let vmlinuz_size = copy_atomic(&kernel.vmlinuz, &vmlinuz)?;
    let cmdline = opts.out_dir.join("cmdline");
    write_atomic(&cmdline, format!("{}\n", opts.cmdline.trim()).as_bytes())?;

    let disk = match (&opts.disk, data_settings) {
        (Some(request), Some(data)) => Some(disk::write(
            &disk::DiskOptions {
                out: opts.out_dir.join(disk::DISK_FILE),
                size: request.size,
                vmlinuz: vmlinuz.clone(),
                initramfs: initramfs_path.clone(),
                cmdline: opts.cmdline.trim().to_owned(),
                kernel_version: Some(kernel.version.clone()),
                data,
                boot_loader: request.boot_loader.clone(),
                mtime,
            },
            &progress,
        )?),
        _ => None,
    };

    let initramfs_size = std::fs::metadata(&initramfs_path)
        .map_err(|source| Error::Output {
            action: "stat",
            path: initramfs_path.clone(),
            source,
        })?
        .len();
    Ok(BuildReport {
        kernel,
        vmlinuz,
        initramfs: initramfs_path,
        cmdline,
        vmlinuz_size,
        initramfs_size,
        cpio_size: written.bytes,
        entries: written.entries,
        berth_size,
        modules: resolution.modules.keys().cloned().collect(),
        builtin_modules: resolution.builtin.clone(),
        missing_modules: resolution.missing.clone(),
        images,
        compression: opts.compression,
        disk,
        elapsed: progress.elapsed(),
    })
}

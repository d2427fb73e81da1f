//! Unpacking a layer into its own directory, safely.
//!
//! Every path is resolved from a descriptor of the layer's directory with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)`: the kernel itself refuses anything that would leave
//! the directory or pass through a symlink, so neither `..`, nor a symlink
//! the layer made (even one swapped in mid-archive over a directory), nor a
//! hard link can reach outside. The entry stream is already checked for
//! `..` and absolute paths ([`berth_image::oci::layer`]); this is the second
//! wall. Leaves are created with `O_CREAT | O_EXCL | O_NOFOLLOW`, after
//! removing what was there (a later entry replaces an earlier one, as tar
//! does).
//!
//! Whiteouts become what overlayfs reads: a 0:0 character device for
//! `.wh.NAME`, and the `trusted.overlay.opaque=y` attribute for
//! `.wh..wh..opq`. A whiteout for a name this same layer created is
//! dropped: per the OCI spec it only hides lower layers.
//!
//! Modes, owners (as root), modification times, hard links and symlinks
//! are kept. Extended attributes are kept for `user.*` and
//! `security.capability` only: `trusted.*` (overlay's own) and the rest
//! could change how the kernel treats the file. Device nodes are kept or
//! skipped by [`DevicePolicy`]; skipped by default, since a node in an
//! image is a way to a host device.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_image::oci::{Entry, Kind, Layer, LayerError};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};

/// What to do with device nodes in a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePolicy {
    /// Skip them (counted in [`Stats::skipped_devices`]).
    #[default]
    Skip,
    /// Create them (needs CAP_MKNOD).
    Keep,
}

/// How to unpack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Device nodes.
    pub devices: DevicePolicy,
    /// Whether to set owners (needs root; off, everything is owned by the
    /// caller).
    pub chown: bool,
    /// The attribute that marks an opaque directory:
    /// `trusted.overlay.opaque` for overlayfs mounted by root,
    /// `user.overlay.opaque` for overlayfs with `userxattr`.
    pub opaque_xattr: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            devices: DevicePolicy::Skip,
            chown: nix::unistd::geteuid().is_root(),
            opaque_xattr: "trusted.overlay.opaque",
        }
    }
}

/// What unpacking did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries applied.
    pub entries: u64,
    /// Bytes of file data written.
    pub bytes: u64,
    /// Device nodes skipped by policy.
    pub skipped_devices: u64,
    /// Extended attributes not applied.
    pub skipped_xattrs: u64,
    /// Whiteouts dropped because this layer has the name itself.
    pub shadowed_whiteouts: u64,
}

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum UnpackError {
    /// {0}
    Layer(#[from] LayerError),
    /// entry {path:?}: {what} passes through a symlink (refused: a layer may not reach through links)
    Symlink {
        /// The entry.
        path: PathBuf,
        /// Which path.
        what: &'static str,
    },
    /// entry {path:?}: a parent is not a directory
    NotDir {
        /// The entry.
        path: PathBuf,
    },
    /// entry {path:?}: hard link target {target:?} {why}
    LinkTarget {
        /// The link.
        path: PathBuf,
        /// Its target.
        target: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
    /// entry {path:?}: cannot {op}: {errno}
    Sys {
        /// The entry.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
    /// entry {path:?}: cannot write its data: {source}
    Write {
        /// The entry.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// cannot open the layer directory {path}: {errno}
    Root {
        /// The directory.
        path: PathBuf,
        /// The error.
        errno: Errno,
    },
}

fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_XDEV
}

/// Unpacks the rest of `layer` into `dir` (an empty directory). The
/// layer's digests are checked by the caller ([`Layer::finish`]) after.
pub fn unpack(layer: &mut Layer<'_>, dir: &Path, opts: &Options) -> Result<Stats, UnpackError> {
    let root = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| UnpackError::Root {
        path: dir.to_path_buf(),
        errno,
    })?;
    let mut u = Unpacker {
        root,
        opts,
        cache: None,
        dirs: Vec::new(),
        stats: Stats::default(),
    };
    while let Some(e) = layer.next_entry()? {
        u.apply(layer, &e)?;
        u.stats.entries += 1;
    }
    u.finish_dirs()?;
    Ok(u.stats)
}

struct Unpacker<'o> {
    root: OwnedFd,
    opts: &'o Options,
    /// The last parent directory opened.
    cache: Option<(PathBuf, OwnedFd)>,
    /// Directories made: their mode and mtime are set at the end, so that
    /// a read-only directory can still be filled, and children do not
    /// change a directory's mtime after it was set.
    dirs: Vec<(PathBuf, u32, i64)>,
    stats: Stats,
}

fn sys<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(Errno) -> UnpackError + 'a {
    move |errno| match errno {
        Errno::ELOOP => UnpackError::Symlink {
            path: path.to_path_buf(),
            what: "its path",
        },
        Errno::ENOTDIR => UnpackError::NotDir {
            path: path.to_path_buf(),
        },
        Errno::EXDEV => UnpackError::Symlink {
            path: path.to_path_buf(),
            what: "its path (leaving the layer)",
        },
        errno => UnpackError::Sys {
            path: path.to_path_buf(),
            op,
            errno,
        },
    }
}

/// The name of an entry's last component.
fn leaf(path: &Path) -> &OsStr {
    path.file_name().unwrap_or(OsStr::new("."))
}

impl Unpacker<'_> {
    /// Opens the directory `rel` (relative to the root), creating missing
    /// directories (0755, root) if `create`. Symlinks are never followed.
    fn open_dir(&self, rel: &Path, create: bool, entry: &Path) -> Result<OwnedFd, UnpackError> {
        // No O_NOFOLLOW: with O_PATH it would open a trailing symlink
        // itself; without it RESOLVE_NO_SYMLINKS refuses it (ELOOP).
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(beneath());
        if rel.as_os_str().is_empty() {
            return nix::fcntl::openat2(&self.root, ".", how).map_err(sys(entry, "open"));
        }
        match nix::fcntl::openat2(&self.root, rel, how) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) if create => {}
            Err(e) => return Err(sys(entry, "open its directory")(e)),
        }
        // Walk down, making what is missing.
        let mut cur = nix::fcntl::openat2(&self.root, ".", how).map_err(sys(entry, "open"))?;
        for c in rel.components() {
            let name = c.as_os_str();
            let next = match nix::fcntl::openat2(&cur, name, how) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    match nix::sys::stat::mkdirat(&cur, name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(sys(entry, "create a parent directory")(e)),
                    }
                    nix::fcntl::openat2(&cur, name, how).map_err(sys(entry, "open a parent"))?
                }
                Err(e) => return Err(sys(entry, "open a parent")(e)),
            };
            cur = next;
        }
        Ok(cur)
    }

    /// The parent directory of `path`, cached across entries.
    fn parent(&mut self, path: &Path) -> Result<BorrowedFd<'_>, UnpackError> {
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let hit = matches!(&self.cache, Some((p, _)) if *p == parent);
        if !hit {
            let fd = self.open_dir(&parent, true, path)?;
            self.cache = Some((parent, fd));
        }
        match &self.cache {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(UnpackError::Sys {
                path: path.to_path_buf(),
                op: "open its directory",
                errno: Errno::EINVAL,
            }),
        }
    }

    /// What is at `name` in `dir` (not following a symlink).
    fn existing(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<SFlag>, Errno> {
        match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(SFlag::from_bits_truncate(
                st.st_mode & SFlag::S_IFMT.bits(),
            ))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes what is at `path` so that a new entry can take its place;
    /// a directory stays if `keep_dir`. Returns whether a directory is
    /// (still) there.
    fn clear(&mut self, path: &Path, keep_dir: bool) -> Result<bool, UnpackError> {
        let name = leaf(path).to_owned();
        let dir = self.parent(path)?;
        let found = Self::existing(dir, &name).map_err(sys(path, "stat"))?;
        match found {
            None => Ok(false),
            Some(SFlag::S_IFDIR) if keep_dir => Ok(true),
            Some(SFlag::S_IFDIR) => {
                remove_tree(dir, &name).map_err(sys(path, "remove the directory it replaces"))?;
                self.cache = None;
                self.dirs.retain(|(p, _, _)| !p.starts_with(path));
                Ok(false)
            }
            Some(_) => {
                nix::unistd::unlinkat(dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                    .map_err(sys(path, "remove the entry it replaces"))?;
                Ok(false)
            }
        }
    }

    fn apply(&mut self, layer: &mut Layer<'_>, e: &Entry) -> Result<(), UnpackError> {
        let path = e.path.as_path();
        let name = leaf(path).to_owned();
        match &e.kind {
            Kind::Dir => {
                let exists = self.clear(path, true)?;
                let dir = self.parent(path)?;
                if !exists {
                    nix::sys::stat::mkdirat(dir, name.as_os_str(), Mode::from_bits_truncate(0o700))
                        .map_err(sys(path, "create the directory"))?;
                }
                let fd = open_leaf(dir, &name, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                    .map_err(sys(path, "open the directory"))?;
                self.owner(&fd, e)?;
                self.xattrs(&fd, e);
                self.dirs.push((path.to_path_buf(), e.mode, e.mtime));
            }
            Kind::File { size } => {
                self.clear(path, false)?;
                let dir = self.parent(path)?;
                let fd = nix::fcntl::openat(
                    dir,
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(sys(path, "create the file"))?;
                let mut file = File::from(fd);
                let n = io::copy(&mut layer.take(*size), &mut file).map_err(|err| {
                    if err.kind() == io::ErrorKind::UnexpectedEof || err.get_ref().is_some() {
                        UnpackError::Layer(layer.data_error(err))
                    } else {
                        UnpackError::Write {
                            path: path.to_path_buf(),
                            source: err,
                        }
                    }
                })?;
                if n != *size {
                    return Err(UnpackError::Layer(layer.data_error(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the layer ends inside a file",
                    ))));
                }
                self.stats.bytes += n;
                let fd = OwnedFd::from(file);
                self.owner(&fd, e)?;
                nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(e.mode))
                    .map_err(sys(path, "chmod"))?;
                self.xattrs(&fd, e);
                let t = TimeSpec::new(e.mtime, 0);
                nix::sys::stat::futimens(&fd, &t, &t).map_err(sys(path, "set the times of"))?;
            }
            Kind::Symlink(target) => {
                self.clear(path, false)?;
                let chown = self.opts.chown;
                let dir = self.parent(path)?;
                nix::unistd::symlinkat(target.as_os_str(), dir, name.as_os_str())
                    .map_err(sys(path, "create the symlink"))?;
                if chown {
                    nix::unistd::fchownat(
                        dir,
                        name.as_os_str(),
                        Some(Uid::from_raw(e.uid)),
                        Some(Gid::from_raw(e.gid)),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(sys(path, "chown"))?;
                }
                let t = TimeSpec::new(e.mtime, 0);
                nix::sys::stat::utimensat(
                    dir,
                    name.as_os_str(),
                    &t,
                    &t,
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                )
                .map_err(sys(path, "set the times of"))?;
            }
            Kind::Link(target) => {
                let bad = |why| UnpackError::LinkTarget {
                    path: path.to_path_buf(),
                    target: target.clone(),
                    why,
                };
                let tparent = target.parent().unwrap_or(Path::new(""));
                let tdir = self.open_dir(tparent, false, path).map_err(|e| match e {
                    UnpackError::Symlink { .. } => bad("passes through a symlink"),
                    UnpackError::Sys {
                        errno: Errno::ENOENT,
                        ..
                    } => bad("is not in this layer"),
                    e => e,
                })?;
                let tname = leaf(target).to_owned();
                match Self::existing(tdir.as_fd(), &tname).map_err(sys(path, "stat its target"))? {
                    None => return Err(bad("is not in this layer")),
                    Some(SFlag::S_IFDIR) => return Err(bad("is a directory")),
                    Some(_) => {}
                }
                self.clear(path, false)?;
                let dir = self.parent(path)?;
                nix::unistd::linkat(
                    &tdir,
                    tname.as_os_str(),
                    dir,
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(sys(path, "create the hard link"))?;
            }
            Kind::Char { major, minor } | Kind::Block { major, minor } => {
                if self.opts.devices == DevicePolicy::Skip {
                    self.stats.skipped_devices += 1;
                    return Ok(());
                }
                let kind = if matches!(e.kind, Kind::Char { .. }) {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                self.node(
                    path,
                    e,
                    kind,
                    nix::sys::stat::makedev(u64::from(*major), u64::from(*minor)),
                )?;
            }
            Kind::Fifo => self.node(path, e, SFlag::S_IFIFO, 0)?,
            Kind::Whiteout => {
                let dir = self.parent(path)?;
                if Self::existing(dir, &name)
                    .map_err(sys(path, "stat"))?
                    .is_some()
                {
                    self.stats.shadowed_whiteouts += 1;
                    return Ok(());
                }
                nix::sys::stat::mknodat(dir, name.as_os_str(), SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(sys(path, "create the whiteout"))?;
            }
            Kind::Opaque => {
                let fd = if path.as_os_str().is_empty() {
                    nix::unistd::dup(&self.root).map_err(sys(path, "open"))?
                } else {
                    // The marker's directory may not be a symlink this
                    // layer made: marking it would replace the link.
                    let dir = self.parent(path)?;
                    if Self::existing(dir, &name).map_err(sys(path, "stat"))?
                        == Some(SFlag::S_IFLNK)
                    {
                        return Err(UnpackError::Symlink {
                            path: path.to_path_buf(),
                            what: "an opaque marker",
                        });
                    }
                    let exists = self.clear(path, true)?;
                    let dir = self.parent(path)?;
                    if !exists {
                        nix::sys::stat::mkdirat(
                            dir,
                            name.as_os_str(),
                            Mode::from_bits_truncate(0o755),
                        )
                        .map_err(sys(path, "create the directory"))?;
                    }
                    open_leaf(dir, &name, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                        .map_err(sys(path, "open the directory"))?
                };
                set_xattr(&fd, self.opts.opaque_xattr.as_bytes(), b"y")
                    .map_err(sys(path, "mark the directory opaque"))?;
            }
        }
        Ok(())
    }

    /// A device node or FIFO.
    fn node(&mut self, path: &Path, e: &Entry, kind: SFlag, dev: u64) -> Result<(), UnpackError> {
        self.clear(path, false)?;
        let name = leaf(path).to_owned();
        let chown = self.opts.chown;
        let dir = self.parent(path)?;
        nix::sys::stat::mknodat(
            dir,
            name.as_os_str(),
            kind,
            Mode::from_bits_truncate(0o600),
            dev,
        )
        .map_err(sys(path, "create the node"))?;
        if chown {
            nix::unistd::fchownat(
                dir,
                name.as_os_str(),
                Some(Uid::from_raw(e.uid)),
                Some(Gid::from_raw(e.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(sys(path, "chown"))?;
        }
        // The node was just made here and is no symlink: following is safe.
        nix::sys::stat::fchmodat(
            dir,
            name.as_os_str(),
            Mode::from_bits_truncate(e.mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(sys(path, "chmod"))
    }

    fn owner(&self, fd: &OwnedFd, e: &Entry) -> Result<(), UnpackError> {
        if self.opts.chown {
            nix::unistd::fchown(fd, Some(Uid::from_raw(e.uid)), Some(Gid::from_raw(e.gid)))
                .map_err(sys(&e.path, "chown"))?;
        }
        Ok(())
    }

    fn xattrs(&mut self, fd: &OwnedFd, e: &Entry) {
        for (name, value) in &e.xattrs {
            let allowed = name.starts_with(b"user.") || name == b"security.capability";
            if !allowed || set_xattr(fd, name, value).is_err() {
                self.stats.skipped_xattrs += 1;
            }
        }
    }

    /// Sets directories' modes and times, deepest first.
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
        self.cache = None;
        for (path, mode, mtime) in dirs {
            let parent = self.open_dir(path.parent().unwrap_or(Path::new("")), false, &path)?;
            // Replaced by something else later in the archive: nothing to do.
            let Ok(fd) = open_leaf(
                parent.as_fd(),
                leaf(&path),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            ) else {
                continue;
            };
            nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode))
                .map_err(sys(&path, "chmod"))?;
            let t = TimeSpec::new(mtime, 0);
            nix::sys::stat::futimens(&fd, &t, &t).map_err(sys(&path, "set the times of"))?;
        }
        Ok(())
    }
}

/// Applies a shipped layer's fixups (see [`berth_image::oci::store::Fixups`])
/// to its directory `dir`, with the same checks as unpacking: no path may
/// pass through a symlink or leave the directory.
pub fn apply_fixups(
    dir: &Path,
    fixups: &berth_image::oci::store::Fixups,
    opts: &Options,
) -> Result<(), UnpackError> {
    let root = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| UnpackError::Root {
        path: dir.to_path_buf(),
        errno,
    })?;
    let mut u = Unpacker {
        root,
        opts,
        cache: None,
        dirs: Vec::new(),
        stats: Stats::default(),
    };
    let open = |u: &Unpacker<'_>, rel: &Path, flags: OFlag| -> Result<OwnedFd, UnpackError> {
        if rel.as_os_str().is_empty() {
            return nix::unistd::dup(&u.root).map_err(sys(rel, "open"));
        }
        let parent = u.open_dir(rel.parent().unwrap_or(Path::new("")), false, rel)?;
        open_leaf(parent.as_fd(), leaf(rel), flags).map_err(sys(rel, "open"))
    };
    for p in &fixups.opaque {
        let fd = open(&u, Path::new(p), OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        set_xattr(&fd, opts.opaque_xattr.as_bytes(), b"y")
            .map_err(sys(Path::new(p), "mark the directory opaque"))?;
    }
    for (p, name, value) in &fixups.xattrs {
        let fd = open(&u, Path::new(p), OFlag::O_RDONLY)?;
        let value = berth_image::oci::store::from_hex(value).unwrap_or_default();
        let e = Entry {
            path: PathBuf::from(p),
            kind: Kind::File { size: 0 },
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: vec![(name.as_bytes().to_vec(), value)],
        };
        u.xattrs(&fd, &e);
    }
    for (p, mode, uid, gid) in &fixups.fifos {
        let e = Entry {
            path: PathBuf::from(p),
            kind: Kind::Fifo,
            mode: *mode,
            uid: *uid,
            gid: *gid,
            mtime: 0,
            xattrs: Vec::new(),
        };
        u.node(Path::new(p), &e, SFlag::S_IFIFO, 0)?;
    }
    for (p, mode) in &fixups.modes {
        let fd = open(&u, Path::new(p), OFlag::O_RDONLY)?;
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(*mode))
            .map_err(sys(Path::new(p), "chmod"))?;
    }
    Ok(())
}

/// Opens the single component `name` in `dir`, never following a symlink.
fn open_leaf(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlag) -> Result<OwnedFd, Errno> {
    nix::fcntl::openat(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Sets an extended attribute on an open file.
fn set_xattr(fd: &OwnedFd, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    let name = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `name` is a NUL-terminated string and `value` a live slice
    // of the length given; fsetxattr only reads them.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(rc).map(drop)
}

/// Removes `name` in `dir` and everything under it, through descriptors
/// only and never following a symlink.
pub(crate) fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    let sub = open_leaf(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    let dup = nix::unistd::dup(&sub)?;
    let mut d = nix::dir::Dir::from_fd(dup)?;
    let children: Vec<(CString, Option<nix::dir::Type>)> = d
        .iter()
        .flatten()
        .filter(|e| !matches!(e.file_name().to_bytes(), b"." | b".."))
        .map(|e| (e.file_name().to_owned(), e.file_type()))
        .collect();
    for (child, kind) in children {
        let child = OsStr::from_bytes(child.to_bytes());
        let is_dir = match kind {
            Some(k) => k == nix::dir::Type::Directory,
            None => nix::sys::stat::fstatat(&sub, child, AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|s| s.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits()),
        };
        if is_dir {
            remove_tree(sub.as_fd(), child)?;
        } else {
            nix::unistd::unlinkat(&sub, child, UnlinkatFlags::NoRemoveDir)?;
        }
    }
    nix::unistd::unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

/// Removes the directory at `path` and everything in it (a store's own
/// directory: its last component is not followed if a symlink).
pub(crate) fn remove_dir_all(path: &Path) -> Result<(), Errno> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or(Errno::EINVAL)?;
    let dir = nix::fcntl::open(
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    remove_tree(dir.as_fd(), name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_image::oci::LayerLimits;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A tar writer for crafted archives.
    #[derive(Default)]
    struct Tar(Vec<u8>);

    impl Tar {
        fn member(&mut self, flag: u8, path: &str, link: &str, mode: u32, data: &[u8]) {
            let mut h = [0u8; 512];
            h[..path.len()].copy_from_slice(path.as_bytes());
            h[100..108].copy_from_slice(format!("{mode:07o}\0").as_bytes());
            h[108..116].copy_from_slice(b"0000000\0");
            h[116..124].copy_from_slice(b"0000000\0");
            h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
            h[136..148].copy_from_slice(b"14000000000\0");
            h[156] = flag;
            h[157..157 + link.len()].copy_from_slice(link.as_bytes());
            h[257..263].copy_from_slice(b"ustar\0");
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
            h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            self.0.extend_from_slice(&h);
            self.0.extend_from_slice(data);
            self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        }
        fn file(&mut self, p: &str, d: &[u8]) -> &mut Self {
            self.member(b'0', p, "", 0o644, d);
            self
        }
        fn dir(&mut self, p: &str, mode: u32) -> &mut Self {
            self.member(b'5', p, "", mode, b"");
            self
        }
        fn symlink(&mut self, p: &str, t: &str) -> &mut Self {
            self.member(b'2', p, t, 0o777, b"");
            self
        }
        fn hardlink(&mut self, p: &str, t: &str) -> &mut Self {
            self.member(b'1', p, t, 0o644, b"");
            self
        }
        fn bytes(&self) -> Vec<u8> {
            let mut v = self.0.clone();
            v.extend_from_slice(&[0u8; 1024]);
            v
        }
    }

    fn opts() -> Options {
        Options {
            devices: DevicePolicy::Skip,
            chown: false,
            opaque_xattr: "user.overlay.opaque",
        }
    }

    fn run(tar: &Tar, dir: &Path) -> Result<Stats, UnpackError> {
        let mut layer = Layer::open(
            Box::new(io::Cursor::new(tar.bytes())),
            None,
            LayerLimits::default(),
        )?;
        let s = unpack(&mut layer, dir, &opts())?;
        layer.finish(None, None)?;
        Ok(s)
    }

    /// A layer directory inside a sandbox, with a file outside it that no
    /// layer may touch.
    fn sandbox() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let layer = t.path().join("layer");
        std::fs::create_dir(&layer).unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"untouched").unwrap();
        (t, layer, outside)
    }

    fn untouched(outside: &Path) {
        let names: Vec<_> = std::fs::read_dir(outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "something was written outside the layer");
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"untouched");
    }

    #[test]
    fn unpacks_files_links_and_modes() {
        let (_t, layer, _) = sandbox();
        let mut t = Tar::default();
        t.dir("etc/", 0o755)
            .file("etc/motd", b"hi\n")
            .hardlink("etc/motd2", "etc/motd")
            .symlink("etc/link", "/etc/motd")
            .dir("ro/", 0o555)
            .file("ro/inside", b"x")
            .file("implicit/parent/file", b"y")
            .file("etc/motd", b"replaced\n");
        let s = run(&t, &layer).unwrap();
        assert_eq!(s.entries, 8);
        assert_eq!(
            std::fs::read(layer.join("etc/motd")).unwrap(),
            b"replaced\n"
        );
        assert_eq!(std::fs::read(layer.join("etc/motd2")).unwrap(), b"hi\n");
        assert_eq!(
            std::fs::read_link(layer.join("etc/link")).unwrap(),
            Path::new("/etc/motd")
        );
        let ro = std::fs::metadata(layer.join("ro")).unwrap();
        assert_eq!(ro.permissions().mode() & 0o7777, 0o555);
        assert_eq!(ro.mtime(), 0o14000000000);
        assert!(layer.join("implicit/parent/file").is_file());
    }

    #[test]
    fn hard_links_keep_one_inode() {
        let (_t, layer, _) = sandbox();
        let mut t = Tar::default();
        t.file("a", b"data").hardlink("b", "a");
        run(&t, &layer).unwrap();
        let a = std::fs::metadata(layer.join("a")).unwrap();
        let b = std::fs::metadata(layer.join("b")).unwrap();
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    }

    #[test]
    fn a_symlink_leading_out_is_never_followed() {
        let (_t, layer, outside) = sandbox();
        let mut t = Tar::default();
        t.symlink("evil", outside.to_str().unwrap())
            .file("evil/secret", b"pwned");
        let e = run(&t, &layer).unwrap_err();
        assert!(matches!(e, UnpackError::Symlink { .. }), "{e}");
        untouched(&outside);

        // Relative, through `..` in the target.
        let (_t, layer, outside) = sandbox();
        let mut t = Tar::default();
        t.symlink("up", "../outside").file("up/new", b"pwned");
        assert!(run(&t, &layer).is_err());
        untouched(&outside);
    }

    #[test]
    fn a_symlink_swapped_in_mid_archive_is_not_followed() {
        let (_t, layer, outside) = sandbox();
        let mut t = Tar::default();
        t.dir("d/", 0o755)
            .file("d/ok", b"fine")
            .symlink("d", outside.to_str().unwrap())
            .file("d/secret", b"pwned");
        let e = run(&t, &layer).unwrap_err();
        assert!(matches!(e, UnpackError::Symlink { .. }), "{e}");
        untouched(&outside);
    }

    #[test]
    fn hard_links_cannot_leave_the_layer() {
        let (_t, layer, outside) = sandbox();
        // Through a symlink the layer made.
        let mut t = Tar::default();
        t.symlink("out", outside.to_str().unwrap())
            .hardlink("stolen", "out/secret");
        let e = run(&t, &layer).unwrap_err();
        assert!(e.to_string().contains("passes through a symlink"), "{e}");
        assert!(!layer.join("stolen").exists());
        untouched(&outside);
        // To something this layer does not have.
        let (_t, layer, _) = sandbox();
        let mut t = Tar::default();
        t.hardlink("x", "etc/shadow");
        let e = run(&t, &layer).unwrap_err();
        assert!(e.to_string().contains("is not in this layer"), "{e}");
        // Through `..` (refused by the entry checks already).
        let (_t, layer, outside) = sandbox();
        let mut t = Tar::default();
        t.hardlink("x", "../outside/secret");
        assert!(run(&t, &layer).is_err());
        untouched(&outside);
    }

    #[test]
    fn traversal_and_absolute_paths_are_refused() {
        for path in [
            "../outside/new",
            "a/../../outside/new",
            "/tmp/berth-abs-test",
        ] {
            let (_t, layer, outside) = sandbox();
            let mut t = Tar::default();
            t.file(path, b"pwned");
            assert!(run(&t, &layer).is_err(), "{path}");
            untouched(&outside);
            assert!(!Path::new("/tmp/berth-abs-test").exists());
        }
    }

    #[test]
    fn whiteouts_and_opaque_directories() {
        let (_t, layer, _) = sandbox();
        let mut t = Tar::default();
        t.file("etc/.wh.passwd", b"")
            .dir("var/", 0o755)
            .file("var/.wh..wh..opq", b"")
            .file("var/kept", b"k")
            .file("same", b"")
            .file(".wh.same", b"");
        let s = run(&t, &layer).unwrap();
        assert_eq!(s.shadowed_whiteouts, 1);
        let w = std::fs::symlink_metadata(layer.join("etc/passwd")).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(w.file_type().is_char_device());
        assert_eq!(w.rdev(), 0);
        let mut buf = [0u8; 8];
        let name = CString::new("user.overlay.opaque").unwrap();
        let p = CString::new(layer.join("var").as_os_str().as_bytes()).unwrap();
        // SAFETY: both strings are NUL-terminated, buf is live and its
        // length is given.
        let n = unsafe { libc::getxattr(p.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 8) };
        assert_eq!(&buf[..usize::try_from(n).unwrap()], b"y");
        assert!(layer.join("var/kept").is_file());
        assert!(std::fs::metadata(layer.join("same")).unwrap().is_file());
    }

    #[test]
    fn devices_are_skipped_by_default() {
        let (_t, layer, _) = sandbox();
        let mut t = Tar::default();
        t.member(b'4', "dev/sda", "", 0o660, b"");
        t.member(b'6', "fifo", "", 0o600, b"");
        let s = run(&t, &layer).unwrap();
        assert_eq!(s.skipped_devices, 1);
        assert!(!layer.join("dev/sda").exists());
        use std::os::unix::fs::FileTypeExt;
        assert!(
            std::fs::symlink_metadata(layer.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
    }

    #[test]
    fn a_truncated_layer_is_an_error() {
        let (_t, layer, _) = sandbox();
        let mut t = Tar::default();
        t.file("big", &[7u8; 4096]);
        let mut data = t.bytes();
        data.truncate(512 + 1000);
        let mut l = Layer::open(
            Box::new(io::Cursor::new(data)),
            None,
            LayerLimits::default(),
        )
        .unwrap();
        let e = unpack(&mut l, &layer, &opts()).unwrap_err();
        assert!(e.to_string().contains("ends"), "{e}");
    }
}

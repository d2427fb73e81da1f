//! Paths inside a container's root, resolved so they cannot leave it.
//!
//! An image is untrusted: its `/etc` or `/data` may be a symlink to `/` or
//! to `../../..`. Every path berth touches inside a root is opened with
//! openat2(RESOLVE_IN_ROOT), which resolves `..` and symlinks as if the root
//! were `/`, and missing directories are made one component at a time from
//! a descriptor. Mounts then go onto `/proc/self/fd/N`, the exact directory
//! that was resolved, never onto a path that could be swapped.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};

/// What to make when a path is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Nothing: a missing path is an error (ENOENT).
    No,
    /// A directory (and missing parents), with this mode.
    Dir(u32),
    /// An empty file (parents as directories, 0755).
    File,
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// The path relative to the root, without a leading `/` and refusing empty.
fn relative(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect()
}

/// Opens `path` (relative to `root`, as if `root` were `/`) as an O_PATH
/// descriptor, making it if missing and asked to.
pub fn open_in(root: BorrowedFd<'_>, path: &Path, create: Create) -> Result<OwnedFd, Errno> {
    let rel = relative(path);
    if rel.as_os_str().is_empty() {
        return openat2(root, ".", how(OFlag::O_PATH | OFlag::O_DIRECTORY));
    }
    match openat2(root, &rel, how(OFlag::O_PATH)) {
        Err(Errno::ENOENT) if create != Create::No => {}
        other => return other,
    }
    let parent = rel.parent().unwrap_or(Path::new(""));
    let name: &OsStr = rel.file_name().ok_or(Errno::EINVAL)?;
    let pfd = open_in(root, parent, Create::Dir(0o755))?;
    // Make it through a real (not O_PATH) descriptor of the parent.
    let dir = reopen_dir(pfd.as_fd())?;
    match create {
        Create::Dir(mode) => match mkdirat(&dir, name, Mode::from_bits_truncate(mode)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        },
        Create::File => {
            match nix::fcntl::openat(
                &dir,
                name,
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            ) {
                Ok(_) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        Create::No => {}
    }
    openat2(root, &rel, how(OFlag::O_PATH))
}

/// Opens a directory for reading through its O_PATH descriptor.
fn reopen_dir(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    openat2(
        fd,
        ".",
        OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH),
    )
}

/// The path that names a descriptor's file for mount(2).
pub fn proc_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Whether an O_PATH descriptor is a directory.
pub fn is_dir(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    let st = fstat(fd)?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// Opens `path` inside `root` without following a symlink in its last
/// component, and refuses anything but a directory: for /proc and /sys,
/// where a symlink planted by an image could redirect the mount or hide a
/// masked path.
pub fn open_dir_nofollow(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, Errno> {
    let rel = relative(path);
    let fd = match openat2(root, &rel, how(OFlag::O_PATH | OFlag::O_NOFOLLOW)) {
        Err(Errno::ENOENT) => {
            open_in(root, &rel, Create::Dir(0o555))?;
            openat2(root, &rel, how(OFlag::O_PATH | OFlag::O_NOFOLLOW))?
        }
        other => other?,
    };
    if !is_dir(fd.as_fd())? {
        return Err(Errno::ENOTDIR);
    }
    Ok(fd)
}

/// Reads a file inside `root` (bounded to `max` bytes); `None` if missing.
pub fn read_in(root: &Path, path: &Path, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let dir = std::fs::File::open(root)?;
    match openat2(&dir, &relative(path), how(OFlag::O_RDONLY)) {
        Ok(fd) => {
            let mut buf = Vec::new();
            std::fs::File::from(fd)
                .take(max as u64)
                .read_to_end(&mut buf)?;
            Ok(Some(buf))
        }
        Err(Errno::ENOENT) | Err(Errno::ELOOP) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, OwnedFd) {
        let d = tempfile::tempdir().unwrap();
        let fd = std::fs::File::open(d.path()).unwrap().into();
        (d, fd)
    }

    #[test]
    fn symlinks_cannot_leave_the_root() {
        let (d, fd) = root();
        let outside = tempfile::tempdir().unwrap();
        // An absolute link names the same path inside the root...
        symlink(outside.path(), d.path().join("escape")).unwrap();
        let inside = d.path().join(outside.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        // ...and `..` stops at the root.
        symlink("../../../../..", d.path().join("up")).unwrap();
        open_in(fd.as_fd(), Path::new("/escape/x"), Create::Dir(0o755)).unwrap();
        open_in(fd.as_fd(), Path::new("/up/etc/hosts"), Create::File).unwrap();
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        assert!(inside.join("x").is_dir());
        assert!(d.path().join("etc/hosts").is_file());
        // A link that dangles inside the root is not followed out of it:
        // nothing can be made through it.
        symlink("/nowhere", d.path().join("dangling")).unwrap();
        assert_eq!(
            open_in(fd.as_fd(), Path::new("dangling/x"), Create::Dir(0o755)).unwrap_err(),
            Errno::ENOENT
        );
    }

    #[test]
    fn missing_paths_are_made_or_refused() {
        let (d, fd) = root();
        assert_eq!(
            open_in(fd.as_fd(), Path::new("a/b"), Create::No).unwrap_err(),
            Errno::ENOENT
        );
        let f = open_in(fd.as_fd(), Path::new("a/b/c"), Create::Dir(0o700)).unwrap();
        assert!(is_dir(f.as_fd()).unwrap());
        assert!(d.path().join("a/b/c").is_dir());
        let f = open_in(fd.as_fd(), Path::new("/etc/resolv.conf"), Create::File).unwrap();
        assert!(!is_dir(f.as_fd()).unwrap());
    }

    #[test]
    fn proc_target_that_is_a_symlink_is_refused() {
        let (d, fd) = root();
        std::fs::create_dir(d.path().join("elsewhere")).unwrap();
        symlink("elsewhere", d.path().join("proc")).unwrap();
        assert_eq!(
            open_dir_nofollow(fd.as_fd(), Path::new("proc")).unwrap_err(),
            Errno::ENOTDIR
        );
        // A real directory, or a missing one (made), is fine.
        open_dir_nofollow(fd.as_fd(), Path::new("sys")).unwrap();
        assert!(d.path().join("sys").is_dir());
    }

    #[test]
    fn reads_stay_inside() {
        let (d, _fd) = root();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(outside.path(), "secret").unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        symlink(outside.path(), d.path().join("etc/passwd")).unwrap();
        assert_eq!(
            read_in(d.path(), Path::new("/etc/passwd"), 100).unwrap(),
            None
        );
        std::fs::write(d.path().join("etc/group"), "root:x:0:\n").unwrap();
        assert_eq!(
            read_in(d.path(), Path::new("/etc/group"), 4).unwrap(),
            Some(b"root".to_vec())
        );
    }
}

//! Leaving the initramfs.
//!
//! The kernel unpacks the initramfs into `rootfs`, the root of the mount tree,
//! which pivot_root(2) cannot move. Containers need a real pivot_root, so at
//! its first start PID 1 copies the tree into a tmpfs, moves that tmpfs onto
//! `/`, chroots into it, frees the old files and re-executes itself from the
//! new root. The second start finds `BERTH_BOOT_START` in its environment and
//! skips all this.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

/// The environment variable that carries PID 1's start time (ns since boot)
/// across the re-exec.
pub const START_ENV: &str = "BERTH_BOOT_START";

/// Where the new root is assembled.
const NEW_ROOT: &str = "/.berth-root";

const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Why the switch failed.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// cannot {op} {path}: {source}
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// cannot {op} {path}: {errno}
    Sys {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        errno: Errno,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn sys<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> Error + 'a {
    move |errno| Error::Sys {
        op,
        path: path.to_path_buf(),
        errno,
    }
}

/// Whether `/` is a RAM filesystem, as the initramfs is. Only meaningful at
/// the first start: after the switch the root is a tmpfs too.
pub fn on_initramfs() -> bool {
    match nix::sys::statfs::statfs("/") {
        Ok(s) => {
            let t = s.filesystem_type().0;
            t == RAMFS_MAGIC || t == TMPFS_MAGIC
        }
        Err(_) => false,
    }
}

/// The start time carried across the re-exec, if this is the second start.
pub fn carried_start() -> Option<Duration> {
    let v = std::env::var(START_ENV).ok()?;
    // SAFETY: PID 1 is single-threaded at this point (no runtime has been
    // built yet), so nothing reads the environment concurrently.
    unsafe { std::env::remove_var(START_ENV) };
    v.parse().ok().map(Duration::from_nanos)
}

/// Copies the initramfs into a tmpfs, makes it the root, frees the old files
/// and re-executes `/init`. Returns only on failure; until the new root is
/// entered, a failure leaves the old root as it was.
pub fn switch(start: Duration) -> Error {
    let new_root = Path::new(NEW_ROOT);
    let old_root = match populate(new_root) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = nix::mount::umount2(new_root, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(new_root);
            return e;
        }
    };
    if let Err(e) = enter(new_root) {
        return e;
    }
    // The old files are reachable only through the descriptor now; free them.
    remove_contents(old_root.as_fd());
    drop(old_root);
    reexec(start)
}

/// Fills the new root and returns a descriptor of the old one.
fn populate(new_root: &Path) -> Result<OwnedFd, Error> {
    std::fs::create_dir_all(new_root).map_err(io("create", new_root))?;
    nix::mount::mount(
        Some("tmpfs"),
        new_root,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(sys("mount tmpfs on", new_root))?;
    let root = Path::new("/");
    let dev = std::fs::symlink_metadata(root)
        .map_err(io("stat", root))?
        .dev();
    copy_dir(root, new_root, dev, new_root)?;
    let fd = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open", root))?;
    Ok(fd)
}

fn copy_dir(src: &Path, dst: &Path, dev: u64, skip: &Path) -> Result<(), Error> {
    let entries = std::fs::read_dir(src).map_err(io("read directory", src))?;
    for entry in entries {
        let entry = entry.map_err(io("read directory", src))?;
        let from = entry.path();
        if from == skip {
            continue;
        }
        let to = dst.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from).map_err(io("stat", &from))?;
        if meta.dev() != dev {
            continue;
        }
        let ft = meta.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to).map_err(io("create", &to))?;
            copy_dir(&from, &to, dev, skip)?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(meta.mode()))
                .map_err(io("chmod", &to))?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(io("copy", &to))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&from).map_err(io("read link", &from))?;
            std::os::unix::fs::symlink(&target, &to).map_err(io("symlink", &to))?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_block_device() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFIFO
            };
            let perm = Mode::from_bits_truncate(meta.mode() & 0o7777);
            nix::sys::stat::mknod(&to, kind, perm, meta.rdev()).map_err(sys("mknod", &to))?;
        } else {
            continue;
        }
        let _ = std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()));
    }
    Ok(())
}

/// Deletes everything under the directory `dir` that lives on the same
/// filesystem, through descriptors only (the old root has no path any more).
/// Best effort: what cannot be removed only costs memory.
fn remove_contents(dir: BorrowedFd<'_>) {
    let Ok(own) = nix::sys::stat::fstat(dir) else {
        return;
    };
    let Ok(dup) = nix::unistd::dup(dir) else {
        return;
    };
    let Ok(mut d) = nix::dir::Dir::from_fd(dup) else {
        return;
    };
    let names: Vec<(std::ffi::CString, Option<nix::dir::Type>)> = d
        .iter()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_bytes();
            n != b"." && n != b".."
        })
        .map(|e| (e.file_name().to_owned(), e.file_type()))
        .collect();
    for (name, kind) in names {
        if kind == Some(nix::dir::Type::Directory) {
            let Ok(sub) = nix::fcntl::openat(
                dir,
                name.as_c_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            // Stay on the initramfs: never descend into another mount.
            if nix::sys::stat::fstat(&sub).map(|s| s.st_dev) != Ok(own.st_dev) {
                continue;
            }
            remove_contents(sub.as_fd());
            let _ =
                nix::unistd::unlinkat(dir, name.as_c_str(), nix::unistd::UnlinkatFlags::RemoveDir);
        } else {
            let _ = nix::unistd::unlinkat(
                dir,
                name.as_c_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

fn enter(new_root: &Path) -> Result<(), Error> {
    nix::unistd::chdir(new_root).map_err(sys("chdir to", new_root))?;
    nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(sys("move the new root onto", Path::new("/")))?;
    nix::unistd::chroot(".").map_err(sys("chroot to", new_root))?;
    nix::unistd::chdir("/").map_err(sys("chdir to", Path::new("/")))
}

fn reexec(start: Duration) -> Error {
    let init = Path::new("/init");
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    env.extend(CString::new(format!("{START_ENV}={}", start.as_nanos())));
    let path = c"/init";
    match nix::unistd::execve(path, &args, &env) {
        Ok(never) => match never {},
        Err(errno) => sys("re-execute", init)(errno),
    }
}

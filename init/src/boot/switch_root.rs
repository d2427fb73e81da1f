//! Leaving the initramfs.
//!
//! The kernel unpacks the initramfs into `rootfs`, the root of the mount tree,
//! which pivot_root(2) cannot move: it refuses a root mount without a parent.
//! Containers need a real pivot_root, so at its first start PID 1 bind-mounts
//! the initramfs onto a directory of its own, moves that bind mount onto `/`
//! and chroots into it: the root is then a mount with a parent (rootfs,
//! underneath), which pivot_root accepts. Nothing is copied: the files stay
//! where the kernel unpacked them (a tmpfs, as the kernel command line has no
//! `root=`), and PID 1 goes on in the same process: its binary, its open
//! descriptors and everything it mapped are the same files seen from the
//! new root.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

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

/// Whether `/` is a RAM filesystem, as the initramfs is. Only meaningful
/// before [`switch`]: after it the root is the same tmpfs.
pub fn on_initramfs() -> bool {
    match nix::sys::statfs::statfs("/") {
        Ok(s) => {
            let t = s.filesystem_type().0;
            t == RAMFS_MAGIC || t == TMPFS_MAGIC
        }
        Err(_) => false,
    }
}

/// Makes a bind mount of the initramfs the root. Until the new root is
/// entered, a failure leaves the old root as it was.
pub fn switch() -> Result<(), Error> {
    let new_root = Path::new(NEW_ROOT);
    if let Err(e) = bind_root(new_root) {
        let _ = nix::mount::umount2(new_root, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(new_root);
        return Err(e);
    }
    enter(new_root)?;
    // The mount point, left behind in the new root by the move.
    let _ = std::fs::remove_dir(new_root);
    Ok(())
}

/// Binds the initramfs onto `new_root`, in place: no file is copied.
fn bind_root(new_root: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(new_root).map_err(io("create", new_root))?;
    nix::mount::mount(
        Some("/"),
        new_root,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(sys("bind the initramfs onto", new_root))
}

fn enter(new_root: &Path) -> Result<(), Error> {
    nix::unistd::chdir(new_root).map_err(sys("chdir to", new_root))?;
    nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(sys("move the new root onto", Path::new("/")))?;
    nix::unistd::chroot(".").map_err(sys("chroot to", new_root))?;
    nix::unistd::chdir("/").map_err(sys("chdir to", Path::new("/")))
}

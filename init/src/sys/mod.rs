//! The system calls behind boot and shutdown, behind one small trait.
//!
//! Boot and shutdown are written as plans (which mounts, in which order, what to
//! do when one fails) executed against [`Sys`]. [`Real`] performs the calls;
//! the recording double in [`record`] logs them, so the plans are unit-tested
//! without root.

use std::io;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

pub mod record;

/// The operations boot and shutdown need.
pub trait Sys {
    /// mount(2).
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno>;
    /// umount2(2).
    fn umount(&self, target: &Path, flags: MntFlags) -> Result<(), Errno>;
    /// Creates a directory and its parents with `mode`.
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Writes `data` to an existing file (a sysfs, procfs or cgroupfs knob).
    fn write_file(&self, path: &Path, data: &str) -> io::Result<()>;
    /// Creates a symbolic link at `link` pointing to `target`.
    fn symlink(&self, target: &str, link: &Path) -> io::Result<()>;
}

/// The real system calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct Real;

impl Sys for Real {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        nix::mount::mount(Some(source), target, fstype, flags, data)
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> Result<(), Errno> {
        nix::mount::umount2(target, flags)
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
    }

    fn write_file(&self, path: &Path, data: &str) -> io::Result<()> {
        use std::io::Write;
        // Knobs take one write(2): open without create or truncate, as
        // `echo x > knob` does.
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(data.as_bytes())
    }

    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }
}

/// A descriptor that owns its file and never swaps it: `File` and `OwnedFd`.
pub trait OwnsFd: std::os::fd::AsRawFd {}
impl OwnsFd for std::fs::File {}
impl OwnsFd for std::os::fd::OwnedFd {}

/// Registers a non-blocking descriptor with the event loop. Must be called
/// inside the runtime.
pub fn async_fd<T: OwnsFd>(inner: T) -> io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: `OwnsFd` is implemented only for types that own their
    // descriptor and keep it open and unchanged until dropped, which is what
    // `register` requires for the `AsyncFd`'s whole life.
    unsafe { tokio::io::unix::AsyncFd::register(inner) }.map_err(io::Error::from)
}

/// Writes one of berth's state files so that a power cut leaves either the
/// old or the new content, never a torn one: a temporary file in the same
/// directory, fsync, rename over the target, fsync of the directory (which
/// makes the rename durable). Every state file berth writes goes through
/// here (the image store has its own temporary directory, and does the
/// same). The outcome is noted for [`crate::storage::full`]: a full disk is
/// reported once, for all of berth's writes.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        std::fs::create_dir_all(dir)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        fsync_dir(dir)
    })();
    match &result {
        Ok(()) => crate::storage::full::write_ok(),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            crate::storage::full::write_failed(path, e);
        }
    }
    result
}

/// Runs `work` in a forked helper process, so that PID 1 goes on: the
/// helper exits with 0 when `work` returns true, 1 otherwise, and the
/// reaper collects it. PID 1 is single-threaded, so the forked child may
/// run any code. Returns the helper's pid.
pub fn in_helper(work: impl FnOnce() -> bool) -> nix::Result<nix::unistd::Pid> {
    // SAFETY: fork in a single-threaded process: the child has a consistent
    // copy of everything, runs `work` and leaves with _exit.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(child),
        nix::unistd::ForkResult::Child => {
            let ok = work();
            // SAFETY: ends the helper without running PID 1's exit paths.
            unsafe { libc::_exit(i32::from(!ok)) }
        }
    }
}

/// Gives the heap's free pages back to the kernel: glibc's malloc keeps
/// free memory below the top of the heap, and up to its trim threshold at
/// the top, resident otherwise. PID 1 calls it when its work settles (at
/// ready, and when a container runs or ends while no other starts or
/// stops). Whether any memory went back.
pub fn trim_heap() -> bool {
    // SAFETY: malloc_trim has no preconditions; it walks malloc's own free
    // lists and madvises whole free pages.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// fsync(2) of a directory: makes the creation, renaming or removal of its
/// entries durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// syncfs(2) of the filesystem holding `path`: one call for a whole tree
/// just written, where an fsync of each file would cost a call per file.
pub fn syncfs(path: &Path) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    // SAFETY: syncfs on a descriptor we own for the duration of the call.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn trim_heap_gives_free_pages_back() {
        // 64 blocks of 64 KiB (below the mmap threshold: on the heap),
        // written, then all freed but the last, which keeps them from the
        // top of the heap: free pages only a trim gives back.
        let mut blocks: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 64 * 1024]).collect();
        let last = blocks.pop();
        drop(blocks);
        assert!(super::trim_heap());
        drop(last);
    }

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/state");
        super::write_atomic(&p, b"one").unwrap();
        super::write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(d.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
        // A target that cannot be replaced leaves it as it was.
        std::fs::create_dir(d.path().join("dir")).unwrap();
        assert!(super::write_atomic(&d.path().join("dir"), b"x").is_err());
        assert!(d.path().join("dir").is_dir());
    }
}

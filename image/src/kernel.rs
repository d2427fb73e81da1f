//! The pinned kernel: Debian's cloud kernel package, fetched once with the
//! ordinary package client, checked against a recorded sha256, unpacked into
//! berth's cache (outside git) and reused from there without network.
//!
//! Cache layout, under [`cache_dir`]:
//! ```text
//! kernel/<package version>/
//!     <package>_<version>_amd64.deb   the verified package
//!     tree/                           its unpacked contents (dpkg-deb -x)
//! kernel/<package version>.lock       serialises concurrent fetches
//! ```
//! Both the `.deb` and `tree/` appear atomically (made under a temporary
//! name, then renamed), so an interrupted fetch leaves nothing half-done
//! that a later build would trust.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::progress::Progress;

/// The kernel package's name.
pub const PACKAGE: &str = "linux-image-6.1.0-50-cloud-amd64-unsigned";
/// The pinned package version.
pub const PACKAGE_VERSION: &str = "6.1.176-1";
/// The sha256 of the package file (`.deb`), recorded when it was pinned.
pub const PACKAGE_SHA256: &str = "4f217f710203cdfedde21f836bc66a0a4d773752d7fe8e5e13f701f891788945";
/// The kernel release (`uname -r`): the name of its modules directory.
pub const RELEASE: &str = "6.1.0-50-cloud-amd64";

/// Why the kernel could not be made available.
#[derive(Debug, displaydoc::Display, thiserror::Error)]
pub enum KernelError {
    /// cannot find berth's cache directory: set BERTH_CACHE, XDG_CACHE_HOME or HOME
    NoCacheDir,
    /// cannot {action} {path}: {source}
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// cannot run {command}: {source}
    Spawn {
        /// The command.
        command: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// {command} failed ({status}) in {dir}{hint}
    Failed {
        /// The command.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Where it ran.
        dir: PathBuf,
        /// What to try.
        hint: String,
    },
    /// {path} has sha256 {actual}, not the pinned {expected}: refusing to use it
    Checksum {
        /// The downloaded file.
        path: PathBuf,
        /// Its actual sha256.
        actual: String,
        /// The pinned sha256.
        expected: String,
    },
    /// apt-get download left no {0} behind
    NotDownloaded(PathBuf),
    /// the unpacked kernel package at {0} lacks {1}
    Incomplete(PathBuf, &'static str),
}

/// An unpacked kernel, ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The kernel release, e.g. `6.1.0-50-cloud-amd64`.
    pub version: String,
    /// The kernel image (bzImage).
    pub vmlinuz: PathBuf,
    /// `.../lib/modules/<version>`: `kernel/**.ko`, `modules.builtin`...
    pub modules_dir: PathBuf,
}

/// berth's cache directory: `$BERTH_CACHE`, else `$XDG_CACHE_HOME/berth`,
/// else `~/.cache/berth`. Empty variables count as unset.
pub fn cache_dir() -> Result<PathBuf, KernelError> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("BERTH_CACHE") {
        return Ok(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(dir.join("berth"));
    }
    var("HOME")
        .map(|home| home.join(".cache").join("berth"))
        .ok_or(KernelError::NoCacheDir)
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KernelError {
    let path = path.to_path_buf();
    move |source| KernelError::Io {
        action,
        path,
        source,
    }
}

/// The kernel as unpacked in `cache` (berth's cache directory), if it is
/// there; `None` if it still has to be fetched. Never touches the network.
pub fn cached(cache: &Path) -> Option<Kernel> {
    let kernel = layout(&cache.join("kernel").join(PACKAGE_VERSION).join("tree"));
    let complete = kernel.vmlinuz.is_file() && kernel.modules_dir.join("modules.builtin").is_file();
    complete.then_some(kernel)
}

fn layout(tree: &Path) -> Kernel {
    Kernel {
        version: RELEASE.to_string(),
        vmlinuz: tree.join("boot").join(format!("vmlinuz-{RELEASE}")),
        modules_dir: tree.join("lib").join("modules").join(RELEASE),
    }
}

/// Makes the pinned kernel available in `cache` (berth's cache directory,
/// see [`cache_dir`]) and returns its paths. The first call downloads the
/// package with `apt-get download` (the package lists are refreshed with
/// `apt-get update` once if apt cannot find it), checks its sha256 and
/// unpacks it; later calls only look. Safe to call from several threads or
/// processes at once.
pub fn ensure(cache: &Path) -> Result<Kernel, KernelError> {
    ensure_with(cache, &Progress::quiet())
}

/// [`ensure`] in the default cache directory ([`cache_dir`]).
pub fn ensure_default() -> Result<Kernel, KernelError> {
    ensure(&cache_dir()?)
}

/// [`ensure`], reporting its steps to `progress`.
pub fn ensure_with(cache: &Path, progress: &Progress) -> Result<Kernel, KernelError> {
    if let Some(k) = cached(cache) {
        return Ok(k);
    }
    let base = cache.join("kernel");
    std::fs::create_dir_all(&base).map_err(io_err("create", &base))?;
    let lock_path = base.join(format!("{PACKAGE_VERSION}.lock"));
    let lock = File::create(&lock_path).map_err(io_err("create", &lock_path))?;
    lock.lock().map_err(io_err("lock", &lock_path))?;
    // Another process may have finished while this one waited.
    if let Some(k) = cached(cache) {
        return Ok(k);
    }
    let dir = base.join(PACKAGE_VERSION);
    std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    let deb = dir.join(format!("{PACKAGE}_{PACKAGE_VERSION}_amd64.deb"));
    let verified = deb.is_file() && sha256_file(&deb)? == PACKAGE_SHA256;
    if !verified {
        download(&dir, &deb, progress)?;
    }
    unpack(&dir, &deb, progress)?;
    drop(lock);
    cached(cache)
        .ok_or_else(|| KernelError::Incomplete(dir.join("tree"), "boot/vmlinuz or modules.builtin"))
}

/// The sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, KernelError> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn run(cmd: &mut Command, dir: &Path, hint: &'static str) -> Result<(), KernelError> {
    let command = format!("{cmd:?}").replace('"', "");
    let status = cmd
        .current_dir(dir)
        .status()
        .map_err(|source| KernelError::Spawn {
            command: command.clone(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(KernelError::Failed {
            command,
            status,
            dir: dir.to_path_buf(),
            hint: hint.to_string(),
        })
    }
}

/// Downloads the pinned package into a fresh directory next to `deb`,
/// checks it, and renames it to `deb`.
fn download(dir: &Path, deb: &Path, progress: &Progress) -> Result<(), KernelError> {
    progress.step(&format!(
        "downloading {PACKAGE} {PACKAGE_VERSION} (26 MB, once)"
    ));
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(dir)
        .map_err(io_err("create a temporary directory in", dir))?;
    let spec = format!("{PACKAGE}={PACKAGE_VERSION}");
    let apt_download = || {
        let mut c = Command::new("apt-get");
        c.args(["download", "-q", &spec]);
        c
    };
    const HINT: &str = " (is the pinned version still in the archive? a copy of the .deb placed \
                        in berth's cache is used as long as its sha256 matches)";
    if run(&mut apt_download(), tmp.path(), HINT).is_err() {
        // Fresh machines have no package lists yet: refresh once, retry.
        progress.step("apt-get could not fetch it; refreshing package lists (apt-get update)");
        run(
            Command::new("apt-get").args(["update", "-qq"]),
            tmp.path(),
            " (apt-get update needs root)",
        )?;
        run(&mut apt_download(), tmp.path(), HINT)?;
    }
    let name = deb.file_name().map(PathBuf::from).unwrap_or_default();
    let got = tmp.path().join(&name);
    if !got.is_file() {
        return Err(KernelError::NotDownloaded(name));
    }
    let actual = sha256_file(&got)?;
    if actual != PACKAGE_SHA256 {
        return Err(KernelError::Checksum {
            path: got,
            actual,
            expected: PACKAGE_SHA256.to_string(),
        });
    }
    std::fs::rename(&got, deb).map_err(io_err("rename into place", deb))?;
    progress.step(&format!("verified sha256 {PACKAGE_SHA256}"));
    Ok(())
}

/// Unpacks `deb` into `<dir>/tree`, through a temporary directory.
fn unpack(dir: &Path, deb: &Path, progress: &Progress) -> Result<(), KernelError> {
    progress.step("unpacking the kernel package");
    let tree = dir.join("tree");
    let tmp = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(dir)
        .map_err(io_err("create a temporary directory in", dir))?;
    run(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(tmp.path()),
        dir,
        " (dpkg-deb comes with dpkg; run scripts/install-deps)",
    )?;
    let unpacked = layout(tmp.path());
    if !unpacked.vmlinuz.is_file() {
        return Err(KernelError::Incomplete(deb.to_path_buf(), "boot/vmlinuz-*"));
    }
    if !unpacked.modules_dir.join("modules.builtin").is_file() {
        return Err(KernelError::Incomplete(
            deb.to_path_buf(),
            "modules.builtin",
        ));
    }
    // A stale, incomplete tree (from before this layout check) goes first.
    if tree.exists() {
        std::fs::remove_dir_all(&tree).map_err(io_err("remove", &tree))?;
    }
    std::fs::rename(tmp.path(), &tree).map_err(io_err("rename into place", &tree))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_known_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn cached_needs_a_complete_tree() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cached(dir.path()), None);
        let k = layout(&dir.path().join("kernel").join(PACKAGE_VERSION).join("tree"));
        std::fs::create_dir_all(&k.modules_dir).unwrap();
        std::fs::create_dir_all(k.vmlinuz.parent().unwrap()).unwrap();
        std::fs::write(&k.vmlinuz, b"").unwrap();
        assert_eq!(cached(dir.path()), None);
        std::fs::write(k.modules_dir.join("modules.builtin"), b"").unwrap();
        assert_eq!(cached(dir.path()), Some(k));
    }
}

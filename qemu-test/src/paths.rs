//! Where the harness keeps things on the host: the workspace's target
//! directory (console logs, the KVM verdict) and per-VM runtime directories
//! (QMP and control sockets) under the system temp directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// The cargo target directory: `$CARGO_TARGET_DIR`, else the nearest ancestor
/// of the running test binary that holds cargo's `CACHEDIR.TAG`, else
/// `target/` next to the workspace's `Cargo.lock` above `CARGO_MANIFEST_DIR`,
/// else the system temp directory.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            return dir;
        }
        if let Ok(cwd) = std::env::current_dir() {
            return cwd.join(dir);
        }
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.ancestors().find(|d| d.join("CACHEDIR.TAG").is_file())
    {
        return dir.to_owned();
    }
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    if let Some(ws) = manifest
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
    {
        return ws.join("target");
    }
    std::env::temp_dir()
}

/// `<target>/qemu-logs`: console logs of VMs, kept there when a test fails.
pub fn log_dir() -> PathBuf {
    target_dir().join("qemu-logs")
}

/// A process-wide sequence number, so that names made of `<name>-<pid>-<n>`
/// are unique on the machine.
pub(crate) fn next_seq() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Creates `dir` and its parents.
pub(crate) fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))
}

/// A private directory under the system temp dir, removed on drop. Socket
/// paths must stay under 108 bytes, so this is short: `/tmp/berth-qemu-<tag>`.
#[derive(Debug)]
pub(crate) struct RuntimeDir {
    path: PathBuf,
}

impl RuntimeDir {
    /// Creates `/tmp/berth-qemu-<tag>` with mode 0700; `tag` must be unique
    /// on the machine (pid and sequence number).
    pub(crate) fn create(tag: &str) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!("berth-qemu-{tag}"));
        // A leftover from a killed process of the same pid: remove it first.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| Error::io("create directory", &path, e))?;
        Ok(RuntimeDir { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_dir_is_the_workspace_target() {
        // This test binary was built there. (Not "it holds CACHEDIR.TAG":
        // cargo skips the tag when another build made target/ first, as
        // scripts/test's static build beside clippy may.)
        let t = target_dir();
        let exe = std::env::current_exe().unwrap();
        assert!(
            exe.starts_with(&t),
            "{} is not under {}",
            exe.display(),
            t.display()
        );
    }

    #[test]
    fn runtime_dir_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let rt = RuntimeDir::create(&format!("unit-{}-{}", std::process::id(), next_seq()))
            .expect("create");
        let p = rt.path().to_owned();
        let mode = std::fs::metadata(&p).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(rt);
        assert!(!p.exists());
    }
}

//! A tiny busybox initramfs for the harness's own tests and for helper
//! guests: `/bin/busybox`, kernel modules, extra files, and an `/init`
//! script. Packed with the `cpio` tool (`find . | cpio -o -H newc`).
//!
//! `/init` first mounts proc, sysfs and devtmpfs, installs busybox's applets
//! as symlinks, and `insmod`s the modules in order; then it runs the given
//! script; when the script ends, it powers off (`poweroff -f`), so a guest
//! whose script forgot to stop never outlives its test's timeout by much.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Where busybox comes from, unless `$BERTH_TEST_BUSYBOX` says otherwise.
/// It must be statically linked (Debian's `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// An initramfs to build.
#[derive(Debug, Clone)]
pub struct Initramfs {
    busybox: PathBuf,
    modules: Vec<PathBuf>,
    files: Vec<(String, Vec<u8>, u32)>,
    script: String,
}

impl Initramfs {
    /// A busybox initramfs whose `/init` runs `script` (busybox `sh`).
    pub fn busybox(script: &str) -> Self {
        let busybox = std::env::var_os("BERTH_TEST_BUSYBOX")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(BUSYBOX));
        Initramfs {
            busybox,
            modules: Vec::new(),
            files: Vec::new(),
            script: script.to_owned(),
        }
    }

    /// Adds kernel modules, loaded in this order before the script runs.
    pub fn modules(mut self, modules: impl IntoIterator<Item = PathBuf>) -> Self {
        self.modules.extend(modules);
        self
    }

    /// Adds a file at `dest` (absolute, in the guest) with `mode`.
    pub fn file(mut self, dest: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push((dest.to_owned(), contents.into(), mode));
        self
    }

    /// The full `/init` script.
    pub fn init_script(&self) -> String {
        let mut s = String::from(
            "#!/bin/busybox sh\n\
             /bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/bin /usr/sbin\n\
             /bin/busybox --install -s\n\
             export PATH=/sbin:/usr/sbin:/bin:/usr/bin\n\
             mount -t proc proc /proc\n\
             mount -t sysfs sysfs /sys\n\
             mount -t devtmpfs devtmpfs /dev\n",
        );
        for m in &self.modules {
            if let Some(f) = m.file_name() {
                let f = f.to_string_lossy();
                s.push_str(&format!(
                    "insmod /lib/modules/{f} || echo \"init: insmod {f} failed\"\n"
                ));
            }
        }
        s.push_str("# --- test script ---\n");
        s.push_str(&self.script);
        s.push_str("\n# --- end of test script ---\npoweroff -f\n");
        s
    }

    /// Packs the initramfs into `out` (an uncompressed newc cpio archive,
    /// which the kernel takes as it is).
    pub fn write(&self, out: &Path) -> Result<()> {
        let stage = staging_dir(out);
        let _ = std::fs::remove_dir_all(&stage);
        let result = self.stage(&stage).and_then(|()| pack(&stage, out));
        let _ = std::fs::remove_dir_all(&stage);
        result
    }

    fn stage(&self, root: &Path) -> Result<()> {
        for d in ["bin", "dev", "proc", "sys", "tmp", "lib/modules", "etc"] {
            crate::paths::create_dir_all(&root.join(d))?;
        }
        copy(&self.busybox, &root.join("bin/busybox"), 0o755)?;
        for m in &self.modules {
            let name = m.file_name().ok_or_else(|| Error::MissingFile {
                what: "kernel module",
                path: m.clone(),
            })?;
            copy(m, &root.join("lib/modules").join(name), 0o644)?;
        }
        for (dest, contents, mode) in &self.files {
            let path = root.join(dest.trim_start_matches('/'));
            if let Some(parent) = path.parent() {
                crate::paths::create_dir_all(parent)?;
            }
            write_file(&path, contents, *mode)?;
        }
        write_file(&root.join("init"), self.init_script().as_bytes(), 0o755)
    }
}

/// An initramfs file that is removed when dropped.
#[derive(Debug)]
pub struct TempInitramfs {
    path: PathBuf,
}

impl TempInitramfs {
    /// Builds `initramfs` into `<target>/qemu-test/<name>-<pid>-<n>.cpio`.
    pub fn build(name: &str, initramfs: &Initramfs) -> Result<Self> {
        let dir = crate::paths::target_dir().join("qemu-test");
        crate::paths::create_dir_all(&dir)?;
        let path = dir.join(format!(
            "{name}-{}-{}.cpio",
            std::process::id(),
            crate::paths::next_seq()
        ));
        initramfs.write(&path)?;
        Ok(TempInitramfs { path })
    }

    /// The archive.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempInitramfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn staging_dir(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".d");
    PathBuf::from(s)
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    let bytes = std::fs::read(from).map_err(|e| Error::io("read", from, e))?;
    write_file(to, &bytes, mode)
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).map_err(|e| Error::io("write", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("chmod", path, e))
}

fn pack(root: &Path, out: &Path) -> Result<()> {
    let file = std::fs::File::create(out).map_err(|e| Error::io("create", out, e))?;
    let output = Command::new("sh")
        .args([
            "-c",
            "find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet",
        ])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::Tool {
            program: "cpio",
            path: out.to_owned(),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Tool {
            program: "cpio",
            path: out.to_owned(),
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_loads_modules_then_runs_the_script_then_powers_off() {
        let i = Initramfs::busybox("echo hi").modules([
            PathBuf::from("/m/virtio.ko"),
            PathBuf::from("/m/virtio_console.ko"),
        ]);
        let s = i.init_script();
        let a = s.find("insmod /lib/modules/virtio.ko").expect("virtio");
        let b = s
            .find("insmod /lib/modules/virtio_console.ko")
            .expect("console");
        let c = s.find("echo hi").expect("script");
        let d = s.rfind("poweroff -f").expect("poweroff");
        assert!(s.starts_with("#!/bin/busybox sh\n"));
        assert!(a < b && b < c && c < d);
    }

    #[test]
    fn packs_a_cpio_archive() {
        if !Path::new(BUSYBOX).exists() {
            return;
        }
        let t = TempInitramfs::build(
            "unit",
            &Initramfs::busybox("true").file("/etc/x", "y", 0o600),
        )
        .expect("build");
        let listing = Command::new("sh")
            .arg("-c")
            .arg(format!("cpio -it --quiet < {}", t.path().display()))
            .output()
            .expect("cpio -t");
        let listing = String::from_utf8_lossy(&listing.stdout);
        for f in ["init", "bin/busybox", "etc/x", "proc", "lib/modules"] {
            assert!(listing.lines().any(|l| l == f), "{f} missing in {listing}");
        }
        let p = t.path().to_owned();
        drop(t);
        assert!(!p.exists());
    }
}

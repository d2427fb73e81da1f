//! Flashable disk images under OVMF: what a scenario needs to boot berth
//! the way a machine does, from `disk.img` with no `-kernel`.
//!
//! - [`build_disk`]: a manifest into a disk image (see `berth_image::disk`),
//!   cached beside the scenario image it is made from
//!   (`<target>/qemu-images/<key>/disk-<MiB>.img`), written atomically.
//! - [`ScratchDisk`]: a writable copy of a cached disk for one VM, sparse
//!   like the original, removed on drop; the cached one is never booted.
//! - [`boot_disk`]: a VM on [`VmConfig::ovmf`] (q35, OVMF code read-only,
//!   a private copy of its variables) with the disk as its first
//!   virtio-blk drive, waited on until [`READY`].
//!
//! Measured here (QEMU 7.2 TCG, 2 cores shared with other builds, load
//! 6-8): from QEMU's start to berth's `ready` took 19.5 s for the demo alone
//! (OVMF handed over to systemd-boot at 8.6 s, the kernel started berth at
//! 18 s), and 32-42 s with two such VMs at once; a direct kernel boot takes
//! 3-5 s. Most of it is the firmware, and the kernel and initramfs read
//! through OVMF's virtio driver. Hence [`EFI_BOOT_TIMEOUT`].

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_image::disk::{self, DiskOptions};

use crate::config::{Disk, VmConfig};
use crate::error::{Error, Result};
use crate::paths;
use crate::scenario::{self, READY};
use crate::vm::Vm;

/// How long an OVMF boot from disk may take to reach [`READY`] (or to power
/// off): generous, since TCG runs the firmware slowly and two VMs may share
/// the cores with a build.
pub const EFI_BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// The size of scenario disks: the smallest comfortable one for a busybox
/// image (64 MiB ESP, about 60 MiB of ext4), quick to copy.
pub const SCENARIO_DISK_SIZE: u64 = 128 * 1024 * 1024;

/// Builds (or takes from the cache) the image of `manifest` for the
/// scenario `name` ([`scenario::build_image`]) and its disk image of
/// `size` bytes; returns the disk's path (in the cache: boot a
/// [`ScratchDisk`] copy of it).
pub fn build_disk(name: &str, manifest: &str, size: u64) -> Result<PathBuf> {
    let image = scenario::build_image(name, manifest)?;
    let dir = image
        .vmlinuz
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default();
    let path = dir.join(format!("disk-{}.img", size / (1024 * 1024)));
    if path.is_file() {
        return Ok(path);
    }
    let failed = |detail: String| Error::BuildImage {
        name: name.to_owned(),
        dir: dir.clone(),
        detail,
    };
    let manifest = berth_config::parse(manifest, &format!("{name}.toml"))
        .map_err(|d| failed(d.to_string()))?;
    let data = disk::data_settings(&manifest.host.storage).map_err(|e| failed(e.to_string()))?;
    let opts = DiskOptions {
        out: path.clone(),
        size,
        vmlinuz: image.vmlinuz.clone(),
        initramfs: image.initramfs.clone(),
        cmdline: image.cmdline.clone(),
        kernel_version: Some(berth_image::kernel::RELEASE.to_owned()),
        data,
        boot_loader: PathBuf::from(disk::SYSTEMD_BOOT),
        mtime: 0,
    };
    disk::write(&opts, &berth_image::Progress::quiet())
        .map_err(|e| failed(format!("disk image: {e}")))?;
    Ok(path)
}

/// A writable copy of a disk image for one VM, removed on drop.
#[derive(Debug)]
pub struct ScratchDisk {
    path: PathBuf,
}

impl ScratchDisk {
    /// Copies `template` to `<target>/qemu-disks/<name>-<pid>-<n>.img`,
    /// leaving holes where it reads zeros.
    pub fn copy_of(template: &Path, name: &str) -> Result<ScratchDisk> {
        let dir = paths::target_dir().join("qemu-disks");
        paths::create_dir_all(&dir)?;
        let path = dir.join(format!(
            "{name}-{}-{}.img",
            std::process::id(),
            paths::next_seq()
        ));
        let scratch = ScratchDisk { path };
        sparse_copy(template, &scratch.path)?;
        Ok(scratch)
    }

    /// The copy's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The copy as a writable QEMU disk.
    pub fn disk(&self) -> Disk {
        Disk::raw(&self.path)
    }
}

impl Drop for ScratchDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn sparse_copy(from: &Path, to: &Path) -> Result<()> {
    const BLOCK: usize = 64 * 1024;
    let mut src = std::fs::File::open(from).map_err(|e| Error::io("open", from, e))?;
    let len = src
        .metadata()
        .map_err(|e| Error::io("stat", from, e))?
        .len();
    let dst = std::fs::File::create(to).map_err(|e| Error::io("create", to, e))?;
    dst.set_len(len).map_err(|e| Error::io("size", to, e))?;
    let mut buf = vec![0u8; BLOCK];
    let mut pos = 0u64;
    loop {
        let mut n = 0;
        while n < BLOCK {
            let r = src
                .read(&mut buf[n..])
                .map_err(|e| Error::io("read", from, e))?;
            if r == 0 {
                break;
            }
            n += r;
        }
        if n == 0 {
            return Ok(());
        }
        if buf[..n].iter().any(|&b| b != 0) {
            dst.write_all_at(&buf[..n], pos)
                .map_err(|e| Error::io("write", to, e))?;
        }
        pos += n as u64;
    }
}

/// Launches the VM `name` booting `disk` under OVMF (its first drive),
/// with `tweak` applied to the configuration; does not wait.
pub fn launch_disk(
    name: &str,
    disk: &ScratchDisk,
    tweak: impl FnOnce(VmConfig) -> VmConfig,
) -> Result<Vm> {
    Vm::launch(&tweak(VmConfig::ovmf(name).disk(disk.disk())))
}

/// Like [`launch_disk`], then waits for [`READY`] for up to
/// [`EFI_BOOT_TIMEOUT`].
pub fn boot_disk(
    name: &str,
    disk: &ScratchDisk,
    tweak: impl FnOnce(VmConfig) -> VmConfig,
) -> Result<Vm> {
    let vm = launch_disk(name, disk, tweak)?;
    vm.wait_for(READY, EFI_BOOT_TIMEOUT)?;
    Ok(vm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_copy_has_the_same_bytes_and_goes_away() {
        let dir = paths::target_dir().join("qemu-disks");
        paths::create_dir_all(&dir).expect("dir");
        let template = dir.join(format!("unit-template-{}.img", std::process::id()));
        let mut bytes = vec![0u8; 300 * 1024];
        bytes[70_000] = 1;
        bytes[299 * 1024] = 2;
        std::fs::write(&template, &bytes).expect("write");
        let copy = ScratchDisk::copy_of(&template, "unit").expect("copy");
        assert_eq!(std::fs::read(copy.path()).expect("read"), bytes);
        let p = copy.path().to_owned();
        drop(copy);
        assert!(!p.exists());
        let _ = std::fs::remove_file(&template);
    }
}

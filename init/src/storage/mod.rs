//! Storage: the data partition, and where berth keeps its state.
//!
//! berth's state lives under one root ([`Layout`]): the manifest's
//! `host.storage.data.mount` (default `/var/lib/berth`):
//!
//! ```text
//! /var/lib/berth/
//!   volumes/NAME/             named volumes
//!   containers/NAME/upper     writable layers (work/ beside); kept across
//!                             reboots for `persist = true`, discarded at
//!                             boot for the others
//!   images/                   the writable image store (docs/images.md)
//!   network/ipam              the bridge's address book
//!   log/                      log files: /var/log/berth links here
//!   .trash/                   layers being removed
//! ```
//!
//! At boot ([`setup`]) berth finds the data device the manifest names
//! (by label, UUID or path: [`blockdev`] reads sysfs and [`probe`] the
//! superblocks, with no udev or blkid), waiting up to [`DEVICE_WAIT`] for
//! it to appear, and mounts it there. Without a data device the root is a
//! directory of the root tmpfs: state is kept in memory, and berth says so
//! in one line. A configured device that never appears, or will not
//! mount, is an error naming the device and what berth saw; boot goes on
//! with state in memory, and `GET /v1/system/info` reports it.
//!
//! berth does not check the filesystem (no fsck): ext4 replays its journal
//! at mount, which is what a power cut needs. Its own state files are
//! written crash-safely ([`crate::sys::write_atomic`]); shutdown unmounts
//! the partition after the containers have stopped, or remounts it
//! read-only ([`crate::power::shutdown`]). A full partition is reported
//! once and degrades berth's own writes ([`full`]).

pub mod blockdev;
pub mod full;
pub mod probe;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use berth_config::{DataDevice, Filesystem, defaults};
use nix::errno::Errno;
use nix::mount::MsFlags;
use serde_json::{Value, json};

use crate::sys::Sys;

/// How long boot waits for the data device to appear.
pub const DEVICE_WAIT: Duration = Duration::from_secs(10);

/// How often boot looks for it meanwhile.
const POLL: Duration = Duration::from_millis(25);

/// Drivers the data device may need, loaded beside boot with the other
/// device drivers when the manifest has a data device: virtio disks. The
/// kernel has NVMe built in; SCSI disks (virtio-scsi, USB) need
/// `host.modules = ["virtio_scsi", "sd_mod"]`.
pub const MODULES: [&str; 1] = ["virtio_blk"];

/// Where berth's log files go by default; a link to the data partition's
/// `log/` once it is mounted.
pub const LOG_LINK: &str = defaults::LOG_DIR;

/// Where berth keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The root: the data partition's mount point.
    pub root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    /// Named volumes: `volumes/NAME`.
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// Writable layers: `containers/NAME/{upper,work}`.
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// The writable image store.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// The bridge's address book.
    pub fn ipam(&self) -> PathBuf {
        self.root.join("network/ipam")
    }

    /// Log files.
    pub fn logs(&self) -> PathBuf {
        self.root.join("log")
    }

    /// Layers being removed.
    pub fn trash(&self) -> PathBuf {
        self.root.join(".trash")
    }

    /// The directories made at boot on a mounted partition.
    pub fn dirs(&self) -> [PathBuf; 5] {
        [
            self.volumes(),
            self.containers(),
            self.images(),
            self.root.join("network"),
            self.logs(),
        ]
    }
}

static STATUS: OnceLock<Status> = OnceLock::new();

/// berth's state layout: under the state root boot chose
/// ([`Status::mount`]), or `/var/lib/berth` before boot has decided (and
/// in tests).
pub fn layout() -> Layout {
    Layout::new(
        status()
            .map(|s| s.mount.clone())
            .unwrap_or_else(|| PathBuf::from(defaults::DATA_MOUNT)),
    )
}

/// Where state is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No data device: in memory.
    Memory,
    /// On the data partition.
    Mounted,
    /// A data device is configured but could not be used: in memory.
    Failed,
}

impl State {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Memory => "memory",
            State::Mounted => "mounted",
            State::Failed => "failed",
        }
    }
}

/// How storage turned out at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Where state is kept.
    pub state: State,
    /// The manifest's device, as written (`LABEL=…`).
    pub device: Option<String>,
    /// The block device found.
    pub source: Option<PathBuf>,
    /// Its filesystem, as probed (`ext4 LABEL=… UUID=…`).
    pub filesystem: Option<String>,
    /// The state root.
    pub mount: PathBuf,
    /// Why the device could not be used.
    pub error: Option<String>,
}

/// How storage turned out at boot; `None` before [`setup`].
pub fn status() -> Option<&'static Status> {
    STATUS.get()
}

/// Mounts the data device as the manifest says (`None`: there is none),
/// prepares the state layout, and records the outcome ([`status`]). Never
/// fails: without a usable device, state is kept in memory.
pub fn setup(sys: &dyn Sys, data: Option<&DataDevice>) -> &'static Status {
    let status = match data {
        None => {
            log::info!(
                "no data device (host.storage.data): volumes, images, logs and state are kept in memory and lost at power-off"
            );
            Status {
                state: State::Memory,
                device: None,
                source: None,
                filesystem: None,
                mount: PathBuf::from(defaults::DATA_MOUNT),
                error: None,
            }
        }
        Some(d) => mount(sys, d),
    };
    STATUS.get_or_init(|| status)
}

fn mount(sys: &dyn Sys, d: &DataDevice) -> Status {
    let mut status = Status {
        state: State::Failed,
        device: Some(d.device.to_string()),
        source: None,
        filesystem: None,
        mount: d.mount.clone(),
        error: None,
    };
    let fail = |mut status: Status, why: String| {
        log::error!(
            "data device {}: {why}; state is kept in memory and lost at power-off",
            d.device
        );
        status.error = Some(why);
        status
    };
    let mut seen = blockdev::Seen::default();
    let (found, took) = blockdev::wait(DEVICE_WAIT, POLL, || {
        blockdev::find(
            &d.device,
            Path::new(blockdev::SYS_CLASS_BLOCK),
            Path::new("/dev"),
            &mut seen,
        )
    });
    let Some(found) = found else {
        return fail(
            status,
            format!(
                "not found after {} s among the block devices: {}",
                took.as_secs(),
                seen.describe()
            ),
        );
    };
    let node = found.node.display().to_string();
    status.source = Some(found.node.clone());
    status.filesystem = found.superblock.as_ref().map(probe::Superblock::describe);
    if !found.also.is_empty() {
        let also: Vec<String> = found.also.iter().map(|p| p.display().to_string()).collect();
        log::warn!(
            "data device {} matches {node} and {}; using {node}",
            d.device,
            also.join(", ")
        );
    }
    if let Some(sb) = &found.superblock
        && !sb.mounts_as(d.fs.as_str())
    {
        return fail(
            status,
            format!(
                "{node} holds {}, not {} (host.storage.data.fs)",
                sb.describe(),
                d.fs.as_str()
            ),
        );
    }
    if let Err(e) = mount_plan(sys, &found.node, d) {
        return fail(status, format!("{node}: {e}"));
    }
    let layout = Layout::new(&d.mount);
    for e in prepare(sys, &layout, Path::new(LOG_LINK)) {
        log::warn!("{e}");
    }
    log::info!(
        "data partition {node} ({}) mounted on {} after {} ms; state is kept there",
        status.filesystem.as_deref().unwrap_or(d.fs.as_str()),
        d.mount.display(),
        took.as_millis()
    );
    status.state = State::Mounted;
    status
}

/// Why the data partition could not be mounted.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// cannot create mount point {path}: {source}
    MountPoint {
        /// The mount point.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// cannot mount it ({fs}) on {target}: {errno}
    Mount {
        /// The filesystem type.
        fs: &'static str,
        /// The mount point.
        target: PathBuf,
        /// The error.
        errno: Errno,
    },
}

/// Mount flags of the data partition: no access-time writes (SD cards
/// and eMMC wear).
pub const FLAGS: MsFlags = MsFlags::MS_NOATIME;

/// Filesystem options: ext4 goes read-only on an error rather than go on
/// writing to an inconsistent filesystem.
pub fn options(fs: Filesystem) -> Option<&'static str> {
    match fs {
        Filesystem::Ext4 => Some("errors=remount-ro"),
        Filesystem::Xfs | Filesystem::Btrfs => None,
    }
}

/// Mounts the device at `node` on the data mount point, creating it.
pub fn mount_plan(sys: &dyn Sys, node: &Path, d: &DataDevice) -> Result<(), Error> {
    sys.mkdir_all(&d.mount, 0o755)
        .map_err(|source| Error::MountPoint {
            path: d.mount.clone(),
            source,
        })?;
    sys.mount(
        &node.to_string_lossy(),
        &d.mount,
        Some(d.fs.as_str()),
        FLAGS,
        options(d.fs),
    )
    .map_err(|errno| Error::Mount {
        fs: d.fs.as_str(),
        target: d.mount.clone(),
        errno,
    })
}

/// Makes the state directories on a mounted partition and links `link`
/// ([`LOG_LINK`]) to its `log/`. Returns what failed (boot goes on).
pub fn prepare(sys: &dyn Sys, layout: &Layout, link: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    for dir in layout.dirs() {
        if let Err(e) = sys.mkdir_all(&dir, 0o755) {
            errors.push(format!("cannot create {}: {e}", dir.display()));
        }
    }
    // New directories are durable once their parent is synced.
    let _ = crate::sys::fsync_dir(&layout.root);
    // The image ships no /var/log/berth; an empty directory made by hand
    // is replaced, anything else is left alone.
    let _ = std::fs::remove_dir(link);
    if let Some(parent) = link.parent()
        && let Err(e) = sys.mkdir_all(parent, 0o755)
    {
        errors.push(format!("cannot create {}: {e}", parent.display()));
    }
    let target = layout.logs();
    match sys.symlink(&target.to_string_lossy(), link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => errors.push(format!(
            "cannot link {} to {}: {e}",
            link.display(),
            target.display()
        )),
    }
    errors
}

/// Discards, at boot, the writable layers the manifest does not keep:
/// those of containers without `persist = true`, and of containers no
/// longer in the manifest. Each is moved into `.trash/` (one rename) and
/// the trash is emptied by a helper process, so boot does not wait.
/// Returns how many were discarded.
pub fn discard_layers(layout: &Layout, keep: &BTreeSet<String>) -> usize {
    let trash = layout.trash();
    let mut n = 0;
    if let Ok(entries) = std::fs::read_dir(layout.containers()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if keep.contains(&name) {
                continue;
            }
            let _ = std::fs::create_dir_all(&trash);
            let to = trash.join(format!("{name}.{}", n + 1));
            match std::fs::rename(e.path(), &to) {
                Ok(()) => n += 1,
                Err(err) => log::warn!("cannot discard {}: {err}", e.path().display()),
            }
        }
    }
    // Also what a power cut left in the trash last time.
    if std::fs::read_dir(&trash).is_ok_and(|mut d| d.next().is_some()) {
        let _ = crate::sys::fsync_dir(&trash);
        let _ = crate::sys::fsync_dir(&layout.containers());
        remove_in_background(&trash);
    }
    n
}

/// Removes `dir` at once: tests run on many threads, where forking is not
/// safe.
#[cfg(test)]
fn remove_in_background(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// Removes `dir` in a helper process ([`crate::sys::in_helper`]).
#[cfg(not(test))]
fn remove_in_background(dir: &Path) {
    if let Err(e) = crate::sys::in_helper(|| std::fs::remove_dir_all(dir).is_ok()) {
        log::warn!(
            "cannot fork to empty {}: {e}; emptying it now",
            dir.display()
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The size and free space of the filesystem holding `path`, in bytes.
/// Free space is what an unprivileged writer may still use (`df`'s
/// "Avail"): ext4 keeps a reserve for root beyond it, which berth and
/// containers running as root also use up.
pub fn space(path: &Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let unit = s.fragment_size();
    Some((
        s.blocks().saturating_mul(unit),
        s.blocks_available().saturating_mul(unit),
    ))
}

/// Remounts the data partition read-only, at once, on the fatal path
/// (best effort: it fails while a container has a file open for writing).
pub fn emergency_read_only(sys: &dyn Sys) {
    if let Some(s) = status().filter(|s| s.state == State::Mounted) {
        let _ = sys.mount(
            "none",
            &s.mount,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        );
    }
}

/// The storage part of `GET /v1/system/info`.
pub fn info() -> Value {
    let layout = layout();
    let (state, device, source, filesystem, error) = match status() {
        Some(s) => (
            s.state.as_str(),
            s.device.clone(),
            s.source.clone(),
            s.filesystem.clone(),
            s.error.clone(),
        ),
        None => ("memory", None, None, None, None),
    };
    let space = space(&layout.root);
    json!({
        "state": state,
        "device": device,
        "source": source,
        "filesystem": filesystem,
        "mount": layout.root,
        "error": error,
        "total_bytes": space.map(|s| s.0),
        "free_bytes": space.map(|s| s.1),
        "full": full::is_full(),
        "dropped_writes": full::dropped(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::record::Recorder;
    use berth_config::DeviceRef;

    fn data(mount: &str, fs: Filesystem) -> DataDevice {
        DataDevice {
            device: DeviceRef::Label("berth-data".into()),
            fs,
            mount: mount.into(),
        }
    }

    #[test]
    fn the_layout_is_under_the_mount_point() {
        let l = Layout::new("/data");
        assert_eq!(l.volumes(), Path::new("/data/volumes"));
        assert_eq!(l.containers(), Path::new("/data/containers"));
        assert_eq!(l.images(), Path::new("/data/images"));
        assert_eq!(l.ipam(), Path::new("/data/network/ipam"));
        assert_eq!(l.logs(), Path::new("/data/log"));
        // Until boot decides, the default.
        if STATUS.get().is_none() {
            assert_eq!(layout().root, Path::new(defaults::DATA_MOUNT));
        }
    }

    #[test]
    fn the_partition_is_mounted_on_its_mount_point_made_first() {
        let rec = Recorder::default();
        let d = data("/var/lib/berth", Filesystem::Ext4);
        mount_plan(&rec, Path::new("/dev/vda2"), &d).unwrap();
        assert_eq!(
            rec.calls(),
            [
                "mkdir /var/lib/berth 755",
                "mount /dev/vda2 /var/lib/berth ext4 [MS_NOATIME] errors=remount-ro",
            ]
        );
        let rec = Recorder::default();
        mount_plan(
            &rec,
            Path::new("/dev/nvme0n1p3"),
            &data("/data", Filesystem::Xfs),
        )
        .unwrap();
        assert_eq!(
            rec.calls()[1],
            "mount /dev/nvme0n1p3 /data xfs [MS_NOATIME]"
        );
    }

    #[test]
    fn a_failed_mount_names_the_filesystem_and_the_error() {
        let rec = Recorder::default();
        rec.fail("mount /dev/vdb", Errno::EINVAL);
        let e = mount_plan(
            &rec,
            Path::new("/dev/vdb"),
            &data("/var/lib/berth", Filesystem::Btrfs),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot mount it (btrfs) on /var/lib/berth: EINVAL: Invalid argument"
        );
        let rec = Recorder::default();
        rec.fail("mkdir", Errno::EROFS);
        let e = mount_plan(
            &rec,
            Path::new("/dev/vdb"),
            &data("/data", Filesystem::Ext4),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot create mount point /data: "),
            "{e}"
        );
        assert_eq!(rec.calls().len(), 1, "no mount without its mount point");
    }

    #[test]
    fn the_state_directories_are_made_and_the_logs_linked() {
        let rec = Recorder::default();
        let errors = prepare(
            &rec,
            &Layout::new("/var/lib/berth"),
            Path::new("/nonexistent/var/log/berth"),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            rec.calls(),
            [
                "mkdir /var/lib/berth/volumes 755",
                "mkdir /var/lib/berth/containers 755",
                "mkdir /var/lib/berth/images 755",
                "mkdir /var/lib/berth/network 755",
                "mkdir /var/lib/berth/log 755",
                "mkdir /nonexistent/var/log 755",
                "symlink /nonexistent/var/log/berth -> /var/lib/berth/log",
            ]
        );
        let rec = Recorder::default();
        rec.fail("mkdir /data/images", Errno::ENOSPC);
        let errors = prepare(&rec, &Layout::new("/data"), Path::new("/nonexistent/log"));
        assert_eq!(
            errors,
            ["cannot create /data/images: No space left on device (os error 28)"]
        );
    }

    #[test]
    fn layers_not_kept_go_to_the_trash_and_the_kept_stay() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        for name in ["db", "web", "gone"] {
            std::fs::create_dir_all(l.containers().join(name).join("upper/etc")).unwrap();
            std::fs::write(l.containers().join(name).join("upper/etc/x"), name).unwrap();
        }
        let keep: BTreeSet<String> = ["db".to_string()].into();
        assert_eq!(discard_layers(&l, &keep), 2);
        let left: Vec<String> = std::fs::read_dir(l.containers())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["db"]);
        assert_eq!(
            std::fs::read_to_string(l.containers().join("db/upper/etc/x")).unwrap(),
            "db"
        );
        // The trash is removed (by a child process in PID 1).
        assert!(!l.trash().exists());
        // Nothing to discard: nothing happens.
        assert_eq!(discard_layers(&l, &keep), 0);
    }

    #[test]
    fn info_reports_memory_before_setup_and_the_space() {
        if STATUS.get().is_some() {
            return;
        }
        let v = info();
        assert_eq!(v["state"], "memory");
        assert_eq!(v["full"], false);
        let (total, free) = space(Path::new("/")).unwrap();
        assert!(total > 0 && free <= total);
    }
}

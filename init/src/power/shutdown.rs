//! The end of an orderly shutdown, for a power-off, a reboot or a halt
//! alike: sync, unmount in reverse order (remount read-only what cannot be
//! unmounted), sync again, reboot(2).
//!
//! Containers have been stopped before this runs, and berth's own log file
//! is closed first, so the data partition ([`crate::storage`]) has nothing
//! open. A filesystem with data that is busy is tried again for up to
//! [`BUSY_WAIT`] (the mount namespaces of containers that just ended are
//! released by the kernel a moment later), then remounted read-only,
//! which flushes it and leaves its journal clean. The whole shutdown is
//! bounded: [`arm_deadline`] starts a timer thread that ends the machine
//! even if a step hangs (a sync on a dying disk, say).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use super::Action;
use crate::sys::Sys;

/// One line of /proc/self/mountinfo, reduced to what shutdown needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub target: PathBuf,
    /// The filesystem type.
    pub fstype: String,
}

/// How long a busy filesystem with data is tried again before it is
/// remounted read-only instead.
pub const BUSY_WAIT: Duration = Duration::from_secs(2);

/// Filesystems that hold no data worth a clean unmount: failures to unmount
/// them are only logged at debug level, and they are not tried again.
const VIRTUAL: [&str; 11] = [
    "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "cgroup2", "mqueue", "overlay", "bpf",
    "tracefs", "debugfs",
];

/// Decodes the octal escapes (`\040` for a space) mountinfo uses in paths.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/self/mountinfo.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let target = fields.get(4)?;
            let sep = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(sep + 1)?;
            Some(MountEntry {
                target: PathBuf::from(unescape(target)),
                fstype: (*fstype).to_string(),
            })
        })
        .collect()
}

/// The order to unmount in: deepest mount points first, and of mounts stacked
/// on one point the latest first. `/` itself is left to the kernel.
pub fn unmount_order(mounts: &[MountEntry]) -> Vec<MountEntry> {
    let mut v: Vec<(usize, &MountEntry)> = mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| m.target != Path::new("/"))
        .collect();
    v.sort_by(|(ia, a), (ib, b)| {
        let da = a.target.components().count();
        let db = b.target.components().count();
        db.cmp(&da).then(ib.cmp(ia))
    });
    v.into_iter().map(|(_, m)| m.clone()).collect()
}

/// What happened to one mount at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Unmounted.
    Unmounted,
    /// Busy, and remounted read-only instead.
    ReadOnly(Errno),
    /// Neither worked.
    Failed(Errno, Errno),
}

/// Unmounts everything in `mounts` in the right order. A busy filesystem
/// with data is tried again for up to `busy_wait`. Returns each mount's
/// fate, in the order tried.
pub fn unmount_all(
    sys: &dyn Sys,
    mounts: &[MountEntry],
    busy_wait: Duration,
) -> Vec<(MountEntry, Outcome)> {
    unmount_order(mounts)
        .into_iter()
        .map(|m| {
            let deadline = Instant::now() + busy_wait;
            let mut r = sys.umount(&m.target, MntFlags::empty());
            while r == Err(Errno::EBUSY)
                && !VIRTUAL.contains(&m.fstype.as_str())
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
                r = sys.umount(&m.target, MntFlags::empty());
            }
            let outcome = match r {
                Ok(()) => Outcome::Unmounted,
                Err(e) => match sys.mount(
                    "none",
                    &m.target,
                    None,
                    MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None,
                ) {
                    Ok(()) => Outcome::ReadOnly(e),
                    Err(e2) => Outcome::Failed(e, e2),
                },
            };
            (m, outcome)
        })
        .collect()
}

/// Starts the timer that ends the machine if shutdown overruns `bound`.
pub fn arm_deadline(action: Action, bound: Duration) {
    let spawned = std::thread::Builder::new()
        .name("shutdown-deadline".into())
        .spawn(move || {
            std::thread::sleep(bound);
            crate::logging::emergency(&format!(
                "power: shutdown overran its bound of {} s; forcing {}",
                bound.as_secs(),
                action.as_str()
            ));
            super::kernel_reboot(action)
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the shutdown deadline timer: {e}");
    }
}

/// Syncs, unmounts, syncs and ends the machine. Never returns.
pub fn finish(sys: &dyn Sys, action: Action) -> ! {
    let start = std::time::Instant::now();
    crate::logging::close_files();
    nix::unistd::sync();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = parse_mountinfo(&mountinfo);
    let mut unmounted = 0;
    for (m, outcome) in unmount_all(sys, &mounts, BUSY_WAIT) {
        let virt = VIRTUAL.contains(&m.fstype.as_str());
        match outcome {
            Outcome::Unmounted => unmounted += 1,
            Outcome::ReadOnly(e) if virt => {
                log::debug!("{} busy ({e}); remounted read-only", m.target.display())
            }
            Outcome::ReadOnly(e) => {
                log::warn!("{} busy ({e}); remounted read-only", m.target.display())
            }
            Outcome::Failed(e, e2) if virt => {
                log::debug!("cannot unmount {}: {e}; remount: {e2}", m.target.display())
            }
            Outcome::Failed(e, e2) => log::error!(
                "cannot unmount {} ({}): {e}, nor remount it read-only: {e2}",
                m.target.display(),
                m.fstype
            ),
        }
    }
    nix::unistd::sync();
    log::info!(
        "unmounted {unmounted} of {} filesystems; {} ({:.1} ms)",
        mounts.len().saturating_sub(1),
        action.as_str(),
        start.elapsed().as_secs_f64() * 1e3
    );
    super::kernel_reboot(action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::record::Recorder;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime - tmpfs tmpfs rw,mode=755
23 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
24 22 0:23 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
25 22 0:5 / /dev rw,nosuid,relatime - devtmpfs devtmpfs rw,size=246M,mode=755
26 25 0:24 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666
27 22 0:25 / /run rw,nosuid,nodev,relatime - tmpfs tmpfs rw,mode=755
28 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
29 22 254:1 / /var/lib/berth rw,relatime - ext4 /dev/vda1 rw
30 29 254:1 /volumes/a /var/lib/berth/my\\040vol rw,relatime - ext4 /dev/vda1 rw
31 27 0:27 / /run rw - tmpfs tmpfs rw
";

    #[test]
    fn parses_targets_types_and_escapes() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 10);
        assert_eq!(m[1].target, Path::new("/proc"));
        assert_eq!(m[1].fstype, "proc");
        assert_eq!(m[8].target, Path::new("/var/lib/berth/my vol"));
    }

    #[test]
    fn children_before_parents_and_latest_first_on_one_point() {
        let order: Vec<String> = unmount_order(&parse_mountinfo(MOUNTINFO))
            .iter()
            .map(|m| m.target.display().to_string())
            .collect();
        assert_eq!(
            order,
            [
                "/var/lib/berth/my vol",
                "/var/lib/berth",
                "/sys/fs/cgroup",
                "/dev/pts",
                "/run",
                "/run",
                "/dev",
                "/sys",
                "/proc",
            ]
        );
        // The root is never in the plan.
        assert!(!order.contains(&"/".to_string()));
    }

    #[test]
    fn busy_mounts_are_remounted_read_only() {
        let rec = Recorder::default();
        rec.fail("umount /var/lib/berth", Errno::EBUSY);
        rec.fail("mount none /var/lib/berth/my vol", Errno::EACCES);
        rec.fail("umount /var/lib/berth/my vol", Errno::EBUSY);
        let out = unmount_all(&rec, &parse_mountinfo(MOUNTINFO), Duration::ZERO);
        let data = out
            .iter()
            .find(|(m, _)| m.target == Path::new("/var/lib/berth"))
            .unwrap();
        assert_eq!(data.1, Outcome::ReadOnly(Errno::EBUSY));
        let vol = out
            .iter()
            .find(|(m, _)| m.target == Path::new("/var/lib/berth/my vol"))
            .unwrap();
        assert_eq!(vol.1, Outcome::Failed(Errno::EBUSY, Errno::EACCES));
        let calls = rec.calls();
        let i = calls
            .iter()
            .position(|c| c.starts_with("umount /var/lib/berth ->"))
            .unwrap();
        assert_eq!(
            calls[i + 1],
            "mount none /var/lib/berth [MS_RDONLY|MS_REMOUNT]"
        );
    }

    #[test]
    fn a_busy_data_partition_is_tried_again_before_going_read_only() {
        let rec = Recorder::default();
        rec.fail("umount /var/lib/berth", Errno::EBUSY);
        rec.fail("umount /run", Errno::EBUSY);
        let out = unmount_all(
            &rec,
            &parse_mountinfo(MOUNTINFO),
            Duration::from_millis(100),
        );
        let calls = rec.calls();
        let tries = |t: &str| {
            calls
                .iter()
                .filter(|c| *c == &format!("umount {t} -> EBUSY: Device or resource busy"))
                .count()
        };
        // ext4 is tried again within the bound; tmpfs once.
        assert!(tries("/var/lib/berth") > 1, "{calls:?}");
        assert!(tries("/var/lib/berth") <= 6, "{calls:?}");
        assert!(tries("/var/lib/berth/my vol") > 1, "{calls:?}");
        assert_eq!(tries("/run"), 2, "two tmpfs on /run, each tried once");
        let data = out
            .iter()
            .find(|(m, _)| m.target == Path::new("/var/lib/berth"))
            .unwrap();
        assert_eq!(data.1, Outcome::ReadOnly(Errno::EBUSY));
        // Its children went first, and it was remounted read-only at last.
        let last_try = calls
            .iter()
            .rposition(|c| c.starts_with("umount /var/lib/berth ->"))
            .unwrap();
        assert_eq!(
            calls[last_try + 1],
            "mount none /var/lib/berth [MS_RDONLY|MS_REMOUNT]"
        );
        let child = calls
            .iter()
            .position(|c| c.starts_with("umount /var/lib/berth/my vol"))
            .unwrap();
        assert!(child < last_try);
    }
}

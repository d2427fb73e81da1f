//! The filesystems PID 1 mounts at boot, as a plan applied through [`Sys`].

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::sys::Sys;

/// One mount in the boot plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The source (a filesystem name for virtual filesystems).
    pub source: &'static str,
    /// Where it goes.
    pub target: &'static str,
    /// The filesystem type.
    pub fstype: &'static str,
    /// Mount flags.
    pub flags: MsFlags,
    /// Filesystem options.
    pub data: Option<&'static str>,
    /// Options to mount with instead when the kernel refuses `data`
    /// (EINVAL): an option newer kernels have, and boot can do without.
    pub fallback: Option<&'static str>,
    /// Whether boot cannot go on without it.
    pub required: bool,
}

/// Why a boot mount failed.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// cannot create mount point {path}: {source}
    MountPoint {
        /// The mount point.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// cannot mount {fstype} on {target}: {errno}
    Mount {
        /// The filesystem type.
        fstype: &'static str,
        /// The mount point.
        target: &'static str,
        /// The error.
        errno: Errno,
    },
}

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
const NOSUID_NODEV_NOEXEC: MsFlags = NOSUID_NODEV.union(MsFlags::MS_NOEXEC);

/// The boot mounts, parents before children.
pub fn plan() -> Vec<Mount> {
    let m = |source, target, fstype, flags, data, required| Mount {
        source,
        target,
        fstype,
        flags,
        data,
        fallback: None,
        required,
    };
    vec![
        m("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, None, true),
        m("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, None, true),
        m(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
            true,
        ),
        m(
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
            false,
        ),
        m(
            "shm",
            "/dev/shm",
            "tmpfs",
            NOSUID_NODEV,
            Some("mode=1777"),
            false,
        ),
        m(
            "tmpfs",
            "/run",
            "tmpfs",
            NOSUID_NODEV,
            Some("mode=0755"),
            true,
        ),
        m(
            "tmpfs",
            "/tmp",
            "tmpfs",
            NOSUID_NODEV,
            Some("mode=1777"),
            false,
        ),
        // favordynmods (Linux 6.0): moving a process between cgroups and
        // enabling controllers no longer wait for an RCU grace period each;
        // the mount waits for one instead. Under TCG (berth-bench --only
        // boot, 7 boots): mounts 9 -> 19 ms, cgroup setup 55 -> 34 ms (in
        // one traced boot, PID 1's move into berth/init 28 -> 8 ms). The
        // price is one more memory barrier in fork and exit.
        Mount {
            fallback: Some("nsdelegate"),
            ..m(
                "cgroup2",
                "/sys/fs/cgroup",
                "cgroup2",
                NOSUID_NODEV_NOEXEC,
                Some("nsdelegate,favordynmods"),
                true,
            )
        },
    ]
}

/// Mounts one entry of the plan, creating its mount point.
pub fn apply(sys: &dyn Sys, m: &Mount) -> Result<(), Error> {
    sys.mkdir_all(Path::new(m.target), 0o755)
        .map_err(|source| Error::MountPoint {
            path: m.target.into(),
            source,
        })?;
    let mount = |data| sys.mount(m.source, Path::new(m.target), Some(m.fstype), m.flags, data);
    let r = match (mount(m.data), m.fallback) {
        (Err(Errno::EINVAL), Some(fallback)) => {
            log::warn!(
                "the kernel refuses {} options {}; mounting {} with {fallback}",
                m.fstype,
                m.data.unwrap_or(""),
                m.target
            );
            mount(Some(fallback))
        }
        (r, _) => r,
    };
    match r {
        // Already there (the kernel may have mounted devtmpfs itself).
        Ok(()) | Err(Errno::EBUSY) => Ok(()),
        Err(errno) => Err(Error::Mount {
            fstype: m.fstype,
            target: m.target,
            errno,
        }),
    }
}

/// The symlinks /dev needs beside what devtmpfs creates.
pub const DEV_LINKS: [(&str, &str); 4] = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::record::Recorder;

    #[test]
    fn plan_mounts_parents_first_and_cgroup2_with_nsdelegate_and_favordynmods() {
        let rec = Recorder::default();
        for m in plan() {
            apply(&rec, &m).unwrap();
        }
        let mounts: Vec<String> = rec
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("mount"))
            .collect();
        assert_eq!(
            mounts,
            [
                "mount proc /proc proc [MS_NOSUID|MS_NODEV|MS_NOEXEC]",
                "mount sysfs /sys sysfs [MS_NOSUID|MS_NODEV|MS_NOEXEC]",
                "mount devtmpfs /dev devtmpfs [MS_NOSUID] mode=0755",
                "mount devpts /dev/pts devpts [MS_NOSUID|MS_NOEXEC] newinstance,ptmxmode=0666,mode=0620,gid=5",
                "mount shm /dev/shm tmpfs [MS_NOSUID|MS_NODEV] mode=1777",
                "mount tmpfs /run tmpfs [MS_NOSUID|MS_NODEV] mode=0755",
                "mount tmpfs /tmp tmpfs [MS_NOSUID|MS_NODEV] mode=1777",
                "mount cgroup2 /sys/fs/cgroup cgroup2 [MS_NOSUID|MS_NODEV|MS_NOEXEC] nsdelegate,favordynmods",
            ]
        );
        // Every target is created before it is mounted on.
        let calls = rec.calls();
        for m in plan() {
            let mk = calls
                .iter()
                .position(|c| c == &format!("mkdir {} 755", m.target));
            let mt = calls
                .iter()
                .position(|c| c.starts_with(&format!("mount {} {} ", m.source, m.target)));
            assert!(mk < mt, "{}: {calls:?}", m.target);
        }
    }

    #[test]
    fn an_existing_mount_is_not_an_error_but_a_failure_is_named() {
        let rec = Recorder::default();
        rec.fail("mount devtmpfs", Errno::EBUSY);
        rec.fail("mount sysfs", Errno::ENODEV);
        let plan = plan();
        assert!(apply(&rec, &plan[2]).is_ok());
        let err = apply(&rec, &plan[1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot mount sysfs on /sys: ENODEV: No such device"
        );
    }

    #[test]
    fn a_kernel_without_favordynmods_gets_cgroup2_with_nsdelegate_alone() {
        let rec = Recorder::default();
        let cgroup2 = plan().pop().unwrap();
        rec.fail(
            "mount cgroup2 /sys/fs/cgroup cgroup2 [MS_NOSUID|MS_NODEV|MS_NOEXEC] nsdelegate,favordynmods",
            Errno::EINVAL,
        );
        apply(&rec, &cgroup2).unwrap();
        assert_eq!(
            rec.calls().last().unwrap(),
            "mount cgroup2 /sys/fs/cgroup cgroup2 [MS_NOSUID|MS_NODEV|MS_NOEXEC] nsdelegate"
        );
        // Any other failure is not retried.
        let rec = Recorder::default();
        rec.fail("mount cgroup2", Errno::EPERM);
        let err = apply(&rec, &cgroup2).unwrap_err();
        assert!(err.to_string().contains("EPERM"), "{err}");
        assert_eq!(
            rec.calls()
                .iter()
                .filter(|c| c.starts_with("mount"))
                .count(),
            1
        );
    }

    #[test]
    fn required_mounts_are_the_ones_pid1_cannot_live_without() {
        let required: Vec<&str> = plan()
            .iter()
            .filter(|m| m.required)
            .map(|m| m.target)
            .collect();
        assert_eq!(
            required,
            ["/proc", "/sys", "/dev", "/run", "/sys/fs/cgroup"]
        );
    }
}

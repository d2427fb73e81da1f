//! The container's filesystem, as a plan: every mount, directory and link
//! the child makes inside the new root before pivot_root, in order.
//!
//! The plan is plain data, built here and unit-tested without root; the
//! child ([`super::child`]) carries it out. Paths in the plan are relative to
//! the new root, and the child resolves each one inside it (openat2 with
//! RESOLVE_IN_ROOT), so an image's symlinks can never redirect a mount or a
//! new directory outside.
//!
//! Devices: /dev is a `nodev` tmpfs, and each device the container may use
//! (null, zero, full, tty, random, urandom, and `devices` from the manifest)
//! is the host's node bind-mounted onto an empty file. Every other writable
//! place is `nodev` too, so a node made with CAP_MKNOD cannot be opened:
//! berth needs no device cgroup program to keep a container off the host's
//! disks. (Docker allows `mknod` + open of the default devices; berth does
//! not.) A privileged container gets the host's /dev.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Mount a filesystem at `target` (a directory, made if missing).
    Mount {
        /// The source: a filesystem name.
        source: String,
        /// The mount point, relative to the new root.
        target: PathBuf,
        /// Its type.
        fstype: String,
        /// Flags.
        flags: MsFlags,
        /// Options.
        data: Option<String>,
    },
    /// Bind-mount a host path onto `target`, made as a file or a directory
    /// like the source; optionally read-only and recursive.
    Bind {
        /// The host path (absolute, outside the new root).
        source: PathBuf,
        /// The mount point, relative to the new root.
        target: PathBuf,
        /// Read-only.
        read_only: bool,
        /// Extra flags for the remount (nosuid, nodev, noexec).
        flags: MsFlags,
    },
    /// Make a directory (and its parents).
    Mkdir {
        /// Relative to the new root.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// Make a symbolic link `link` pointing to `target`.
    Symlink {
        /// What it points to (as written in the link).
        target: String,
        /// The link, relative to the new root.
        link: PathBuf,
    },
    /// Hide a file by binding /dev/null over it, or a directory with an empty
    /// read-only tmpfs. Missing paths are skipped.
    Mask {
        /// Relative to the new root.
        path: PathBuf,
    },
    /// Make an existing path read-only (bind onto itself, remount read-only).
    /// Missing paths are skipped.
    ReadOnly {
        /// Relative to the new root.
        path: PathBuf,
    },
}

/// The devices every container gets, as Docker gives them.
pub const DEFAULT_DEVICES: [&str; 6] = ["null", "zero", "full", "tty", "random", "urandom"];

/// Docker's default masked paths.
pub const MASKED: [&str; 12] = [
    "proc/asound",
    "proc/acpi",
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Docker's default read-only paths.
pub const READ_ONLY: [&str; 6] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
    "sys/fs/cgroup",
];

/// A volume or tmpfs the container asked for, resolved to host paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserMount {
    /// A host directory or file (a bind volume, or a named volume's
    /// directory).
    Bind {
        /// The host path.
        source: PathBuf,
        /// Where in the container (absolute).
        target: PathBuf,
        /// Read-only.
        read_only: bool,
    },
    /// A tmpfs.
    Tmpfs {
        /// Where in the container (absolute).
        target: PathBuf,
        /// Size in bytes, if limited.
        size: Option<u64>,
        /// Root mode; 1777 if unset.
        mode: Option<u32>,
    },
}

/// What the plan is built from.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// Whether the container is privileged (host /dev, writable /sys).
    pub privileged: bool,
    /// /dev/shm's size in bytes.
    pub shm_size: u64,
    /// Host devices to add: (host node, path in the container).
    pub devices: &'a [(PathBuf, PathBuf)],
    /// Volumes and tmpfs mounts, in the manifest's order.
    pub mounts: &'a [UserMount],
    /// Files berth writes for the container (hosts, hostname,
    /// resolv.conf): (host file, path in the container).
    pub files: &'a [(PathBuf, PathBuf)],
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

fn rel(p: &Path) -> PathBuf {
    p.strip_prefix("/").unwrap_or(p).to_path_buf()
}

fn mount(source: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<String>) -> Op {
    Op::Mount {
        source: source.into(),
        target: target.into(),
        fstype: fstype.into(),
        flags,
        data,
    }
}

/// Builds the plan. The root itself (overlay or read-only bind) is mounted
/// before it and is not part of it.
pub fn plan(i: &Inputs<'_>) -> Vec<Op> {
    let mut ops = Vec::new();
    ops.push(mount("proc", "proc", "proc", NOSUID_NODEV_NOEXEC, None));
    let sys_flags = if i.privileged {
        NOSUID_NODEV_NOEXEC
    } else {
        NOSUID_NODEV_NOEXEC | MsFlags::MS_RDONLY
    };
    // A fresh sysfs shows the network namespace the child is in: its own,
    // the host's (host mode) or the one it joined (service mode).
    ops.push(mount("sysfs", "sys", "sysfs", sys_flags, None));
    ops.push(mount(
        "cgroup2",
        "sys/fs/cgroup",
        "cgroup2",
        sys_flags,
        None,
    ));

    if i.privileged {
        ops.push(Op::Bind {
            source: "/dev".into(),
            target: "dev".into(),
            read_only: false,
            flags: MsFlags::MS_NOSUID,
        });
    } else {
        ops.push(mount(
            "tmpfs",
            "dev",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
            Some("mode=755,size=65536k".into()),
        ));
        for d in DEFAULT_DEVICES {
            ops.push(Op::Bind {
                source: Path::new("/dev").join(d),
                target: Path::new("dev").join(d),
                read_only: false,
                flags: MsFlags::MS_NOSUID,
            });
        }
        for (host, target) in i.devices {
            ops.push(Op::Bind {
                source: host.clone(),
                target: rel(target),
                read_only: false,
                flags: MsFlags::MS_NOSUID,
            });
        }
        ops.push(mount(
            "devpts",
            "dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5".into()),
        ));
        ops.push(Op::Symlink {
            target: "pts/ptmx".into(),
            link: "dev/ptmx".into(),
        });
        ops.push(mount(
            "shm",
            "dev/shm",
            "tmpfs",
            NOSUID_NODEV_NOEXEC,
            Some(format!("mode=1777,size={}", i.shm_size)),
        ));
        ops.push(mount(
            "mqueue",
            "dev/mqueue",
            "mqueue",
            NOSUID_NODEV_NOEXEC,
            None,
        ));
        for (target, link) in [
            ("/proc/self/fd", "dev/fd"),
            ("/proc/self/fd/0", "dev/stdin"),
            ("/proc/self/fd/1", "dev/stdout"),
            ("/proc/self/fd/2", "dev/stderr"),
        ] {
            ops.push(Op::Symlink {
                target: target.into(),
                link: link.into(),
            });
        }
    }

    for (host, target) in i.files {
        ops.push(Op::Bind {
            source: host.clone(),
            target: rel(target),
            read_only: false,
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        });
    }

    for m in i.mounts {
        ops.push(match m {
            UserMount::Bind {
                source,
                target,
                read_only,
            } => Op::Bind {
                source: source.clone(),
                target: rel(target),
                read_only: *read_only,
                flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            },
            UserMount::Tmpfs { target, size, mode } => {
                let mut data = format!("mode={:o}", mode.unwrap_or(0o1777));
                if let Some(s) = size {
                    data += &format!(",size={s}");
                }
                Op::Mount {
                    source: "tmpfs".into(),
                    target: rel(target),
                    fstype: "tmpfs".into(),
                    flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    data: Some(data),
                }
            }
        });
    }

    if !i.privileged {
        for p in MASKED {
            ops.push(Op::Mask { path: p.into() });
        }
        for p in READ_ONLY {
            ops.push(Op::ReadOnly { path: p.into() });
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(ops: &[Op]) -> Vec<String> {
        ops.iter()
            .map(|o| match o {
                Op::Mount { target, fstype, .. } => format!("{fstype} {}", target.display()),
                Op::Bind {
                    source,
                    target,
                    read_only,
                    ..
                } => format!(
                    "bind {} {}{}",
                    source.display(),
                    target.display(),
                    if *read_only { " ro" } else { "" }
                ),
                Op::Mkdir { path, .. } => format!("mkdir {}", path.display()),
                Op::Symlink { target, link } => format!("link {} -> {target}", link.display()),
                Op::Mask { path } => format!("mask {}", path.display()),
                Op::ReadOnly { path } => format!("ro {}", path.display()),
            })
            .collect()
    }

    fn inputs<'a>(mounts: &'a [UserMount], files: &'a [(PathBuf, PathBuf)]) -> Inputs<'a> {
        Inputs {
            privileged: false,
            shm_size: 64 << 20,
            devices: &[],
            mounts,
            files,
        }
    }

    #[test]
    fn default_container_plan() {
        let files = [(
            PathBuf::from("/run/berth/c/web/hosts"),
            PathBuf::from("/etc/hosts"),
        )];
        let mounts = [
            UserMount::Tmpfs {
                target: "/tmp".into(),
                size: Some(1 << 20),
                mode: None,
            },
            UserMount::Bind {
                source: "/var/lib/berth/volumes/data".into(),
                target: "/data".into(),
                read_only: true,
            },
        ];
        let ops = plan(&inputs(&mounts, &files));
        let t = targets(&ops);
        assert_eq!(
            t[..19],
            [
                "proc proc",
                "sysfs sys",
                "cgroup2 sys/fs/cgroup",
                "tmpfs dev",
                "bind /dev/null dev/null",
                "bind /dev/zero dev/zero",
                "bind /dev/full dev/full",
                "bind /dev/tty dev/tty",
                "bind /dev/random dev/random",
                "bind /dev/urandom dev/urandom",
                "devpts dev/pts",
                "link dev/ptmx -> pts/ptmx",
                "tmpfs dev/shm",
                "mqueue dev/mqueue",
                "link dev/fd -> /proc/self/fd",
                "link dev/stdin -> /proc/self/fd/0",
                "link dev/stdout -> /proc/self/fd/1",
                "link dev/stderr -> /proc/self/fd/2",
                "bind /run/berth/c/web/hosts etc/hosts",
            ]
        );
        assert_eq!(
            t[19..21],
            ["tmpfs tmp", "bind /var/lib/berth/volumes/data data ro"]
        );
        assert!(t.contains(&"mask proc/kcore".to_string()));
        assert!(t.contains(&"mask sys/firmware".to_string()));
        assert!(t.contains(&"ro proc/sys".to_string()));
        assert!(t.contains(&"ro proc/sysrq-trigger".to_string()));
        // Masks come after every mount, so nothing mounted later uncovers them.
        let first_mask = t.iter().position(|s| s.starts_with("mask")).unwrap();
        assert!(
            t[first_mask..]
                .iter()
                .all(|s| s.starts_with("mask") || s.starts_with("ro"))
        );
    }

    #[test]
    fn sys_is_read_only_and_nothing_writable_allows_devices() {
        let ops = plan(&inputs(&[], &[]));
        for op in &ops {
            match op {
                Op::Mount {
                    target,
                    flags,
                    fstype,
                    ..
                } => {
                    if target == Path::new("sys") || target == Path::new("sys/fs/cgroup") {
                        assert!(flags.contains(MsFlags::MS_RDONLY), "{fstype}");
                    }
                    if fstype != "devpts"
                        && fstype != "proc"
                        && fstype != "sysfs"
                        && fstype != "cgroup2"
                    {
                        assert!(
                            flags.contains(MsFlags::MS_NODEV),
                            "{fstype} {}",
                            target.display()
                        );
                    }
                }
                Op::Bind { target, flags, .. } if !target.starts_with("dev") => {
                    assert!(flags.contains(MsFlags::MS_NODEV), "{}", target.display());
                }
                _ => {}
            }
        }
    }

    #[test]
    fn tmpfs_options() {
        let mounts = [UserMount::Tmpfs {
            target: "/run".into(),
            size: Some(4096),
            mode: Some(0o755),
        }];
        let ops = plan(&inputs(&mounts, &[]));
        assert!(ops.contains(&Op::Mount {
            source: "tmpfs".into(),
            target: "run".into(),
            fstype: "tmpfs".into(),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            data: Some("mode=755,size=4096".into()),
        }));
    }

    #[test]
    fn privileged_gets_host_dev_writable_sys_and_no_masks() {
        let mut i = inputs(&[], &[]);
        i.privileged = true;
        let t = targets(&plan(&i));
        assert!(t.contains(&"bind /dev dev".to_string()));
        assert!(
            !t.iter()
                .any(|s| s.starts_with("mask") || s.starts_with("ro "))
        );
    }

    #[test]
    fn sys_is_a_fresh_mount() {
        let t = targets(&plan(&inputs(&[], &[])));
        assert_eq!(t[1..3], ["sysfs sys", "cgroup2 sys/fs/cgroup"]);
    }

    #[test]
    fn devices_are_bound_onto_their_targets() {
        let devs = [(PathBuf::from("/dev/ttyS1"), PathBuf::from("/dev/serial"))];
        let mut i = inputs(&[], &[]);
        i.devices = &devs;
        let t = targets(&plan(&i));
        assert!(t.contains(&"bind /dev/ttyS1 dev/serial".to_string()));
    }
}

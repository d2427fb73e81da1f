//! A container's cgroup: created under berth's subtree with its limits
//! before the container starts, entered atomically by clone3
//! (CLONE_INTO_CGROUP), read for OOM kills after it exits, then removed.

use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use berth_config::{MemorySwap, Resources};

use crate::boot::cgroup::CONTAINERS;
use crate::sys::Sys;

/// The period cpu.max quotas are expressed in, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Why a cgroup step failed.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// cannot create cgroup {path}: {source}
    Create {
        /// The cgroup directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// cannot set {path} to {value:?}: {source}
    Limit {
        /// The knob.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The error.
        source: std::io::Error,
    },
    /// cannot open cgroup {path}: {source}
    Open {
        /// The cgroup directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The cgroup under which containers' cgroups are made.
pub fn default_parent() -> PathBuf {
    PathBuf::from(CONTAINERS)
}

/// The knob writes that carry `r`'s limits, in order.
pub fn limits(r: &Resources) -> Vec<(&'static str, String)> {
    let mut w = Vec::new();
    if let Some(m) = r.memory {
        w.push(("memory.max", m.to_string()));
        // As in Docker, memory_swap is memory plus swap. Unset, Docker
        // allows as much swap again as memory; berth allows none, so a
        // memory limit means what it says.
        let swap = match r.memory_swap {
            Some(MemorySwap::Limit(total)) => total.saturating_sub(m).to_string(),
            Some(MemorySwap::Unlimited) => "max".to_string(),
            None => "0".to_string(),
        };
        w.push(("memory.swap.max", swap));
    } else if let Some(MemorySwap::Limit(total)) = r.memory_swap {
        w.push(("memory.swap.max", total.to_string()));
    }
    if let Some(cpus) = r.cpus {
        let quota = ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000);
        w.push(("cpu.max", format!("{quota} {CPU_PERIOD_US}")));
    }
    if let Some(wt) = r.cpu_weight {
        w.push(("cpu.weight", wt.to_string()));
    }
    if let Some(p) = r.pids {
        w.push(("pids.max", p.to_string()));
    }
    if let Some(wt) = r.io_weight {
        w.push(("io.weight", format!("default {wt}")));
    }
    w
}

/// Creates the container's cgroup under `parent` and writes its limits. A
/// stale cgroup of the same name (left by a crashed start) is reused.
pub fn create(sys: &dyn Sys, parent: &Path, name: &str, r: &Resources) -> Result<PathBuf, Error> {
    let dir = parent.join(name);
    sys.mkdir_all(&dir, 0o755).map_err(|source| Error::Create {
        path: dir.clone(),
        source,
    })?;
    for (knob, value) in limits(r) {
        let p = dir.join(knob);
        sys.write_file(&p, &value).map_err(|source| Error::Limit {
            path: p,
            value,
            source,
        })?;
    }
    Ok(dir)
}

/// Opens the cgroup directory for CLONE_INTO_CGROUP.
pub fn open(dir: &Path) -> Result<OwnedFd, Error> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|source| Error::Open {
            path: dir.to_path_buf(),
            source,
        })?;
    Ok(f.into())
}

/// How many times the OOM killer killed in this cgroup, from memory.events.
pub fn oom_kills(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("memory.events")).unwrap_or_default();
    parse_oom_kills(&text)
}

/// Reads `oom_kill N` from the text of memory.events.
pub fn parse_oom_kills(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Kills everything left in the cgroup and removes it. Returns whether it
/// is gone (the kernel may need a moment to release a cgroup whose last
/// process just died; the caller retries).
pub fn remove(dir: &Path) -> bool {
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    match std::fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::record::Recorder;

    #[test]
    fn limits_map_to_cgroup_v2_knobs() {
        let r = Resources {
            memory: Some(64 << 20),
            memory_swap: None,
            cpus: Some(0.5),
            cpu_weight: Some(200),
            pids: Some(100),
            io_weight: Some(50),
        };
        let rec = Recorder::default();
        let dir = create(&rec, &default_parent(), "web", &r).unwrap();
        assert_eq!(dir, Path::new("/sys/fs/cgroup/berth/containers/web"));
        assert_eq!(
            rec.calls(),
            [
                "mkdir /sys/fs/cgroup/berth/containers/web 755",
                "write /sys/fs/cgroup/berth/containers/web/memory.max 67108864",
                "write /sys/fs/cgroup/berth/containers/web/memory.swap.max 0",
                "write /sys/fs/cgroup/berth/containers/web/cpu.max 50000 100000",
                "write /sys/fs/cgroup/berth/containers/web/cpu.weight 200",
                "write /sys/fs/cgroup/berth/containers/web/pids.max 100",
                "write /sys/fs/cgroup/berth/containers/web/io.weight default 50",
            ]
        );
    }

    #[test]
    fn swap_follows_docker_arithmetic() {
        let mut r = Resources {
            memory: Some(100),
            memory_swap: Some(MemorySwap::Limit(300)),
            ..Default::default()
        };
        assert_eq!(limits(&r)[1], ("memory.swap.max", "200".into()));
        r.memory_swap = Some(MemorySwap::Unlimited);
        assert_eq!(limits(&r)[1], ("memory.swap.max", "max".into()));
        assert!(limits(&Resources::default()).is_empty());
    }

    #[test]
    fn tiny_cpu_shares_keep_a_minimum_quota() {
        let r = Resources {
            cpus: Some(0.001),
            ..Default::default()
        };
        assert_eq!(limits(&r), [("cpu.max", "1000 100000".to_string())]);
    }

    #[test]
    fn a_failed_limit_names_the_knob() {
        let rec = Recorder::default();
        rec.fail(
            "write /sys/fs/cgroup/berth/containers/x/pids.max",
            nix::errno::Errno::EINVAL,
        );
        let r = Resources {
            pids: Some(5),
            ..Default::default()
        };
        let e = create(&rec, &default_parent(), "x", &r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot set /sys/fs/cgroup/berth/containers/x/pids.max to \"5\": Invalid argument (os error 22)"
        );
    }

    #[test]
    fn oom_kills_are_read_from_memory_events() {
        assert_eq!(
            parse_oom_kills("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n"),
            1
        );
        assert_eq!(parse_oom_kills(""), 0);
    }
}

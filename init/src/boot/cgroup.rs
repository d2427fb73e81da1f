//! cgroup v2 at boot: PID 1 leaves the root cgroup, and berth's subtree gets
//! the controllers that container limits need.
//!
//! The layout, under /sys/fs/cgroup:
//! ```text
//! berth/               controllers enabled for its children
//! ├── init/            PID 1 and berth's own helpers
//! └── containers/      controllers enabled; one child per container
//! ```
//! Controllers are only enabled in `subtree_control` of cgroups without
//! processes (the root is exempt), or moving a process in fails with EBUSY.

use std::path::{Path, PathBuf};

use crate::sys::Sys;

/// Where cgroup2 is mounted.
pub const ROOT: &str = "/sys/fs/cgroup";
/// The cgroup that holds PID 1.
pub const INIT: &str = "/sys/fs/cgroup/berth/init";
/// The parent of every container's cgroup.
pub const CONTAINERS: &str = "/sys/fs/cgroup/berth/containers";

/// The controllers container limits use, in the order they are enabled.
pub const WANTED: [&str; 5] = ["cpu", "cpuset", "io", "memory", "pids"];

/// Why the cgroup setup failed.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// cannot create cgroup {path}: {source}
    Create {
        /// The cgroup's directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// cannot move PID 1 into {path}: {source}
    MoveInit {
        /// The cgroup.procs file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// What the setup achieved: controllers that could not be enabled are
/// reported, not fatal (a host without `io` still runs containers).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Controllers enabled for containers.
    pub enabled: Vec<String>,
    /// Controllers that are missing or failed, with the reason.
    pub unavailable: Vec<(String, String)>,
}

/// Sets up berth's subtree. `available` is the content of the root's
/// `cgroup.controllers`.
pub fn setup(sys: &dyn Sys, available: &str) -> Result<Outcome, Error> {
    for dir in [INIT, CONTAINERS] {
        sys.mkdir_all(Path::new(dir), 0o755)
            .map_err(|source| Error::Create {
                path: dir.into(),
                source,
            })?;
    }
    let procs = Path::new(INIT).join("cgroup.procs");
    // "0" names the writing process: PID 1.
    sys.write_file(&procs, "0")
        .map_err(|source| Error::MoveInit {
            path: procs.clone(),
            source,
        })?;

    let available: Vec<&str> = available.split_whitespace().collect();
    let mut out = Outcome::default();
    for c in WANTED {
        if !available.contains(&c) {
            out.unavailable
                .push((c.into(), "not in cgroup.controllers".into()));
            continue;
        }
        let mut failed = None;
        for parent in [ROOT, "/sys/fs/cgroup/berth", CONTAINERS] {
            let knob = Path::new(parent).join("cgroup.subtree_control");
            if let Err(e) = sys.write_file(&knob, &format!("+{c}")) {
                failed = Some(format!("{}: {e}", knob.display()));
                break;
            }
        }
        match failed {
            None => out.enabled.push(c.into()),
            Some(why) => out.unavailable.push((c.into(), why)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::record::Recorder;
    use nix::errno::Errno;

    #[test]
    fn pid1_moves_before_controllers_are_enabled_top_down() {
        let rec = Recorder::default();
        let out = setup(&rec, "cpuset cpu io memory hugetlb pids rdma misc").unwrap();
        assert_eq!(out.enabled, ["cpu", "cpuset", "io", "memory", "pids"]);
        assert!(out.unavailable.is_empty());
        let calls = rec.calls();
        assert_eq!(
            calls[..6],
            [
                "mkdir /sys/fs/cgroup/berth/init 755",
                "mkdir /sys/fs/cgroup/berth/containers 755",
                "write /sys/fs/cgroup/berth/init/cgroup.procs 0",
                "write /sys/fs/cgroup/cgroup.subtree_control +cpu",
                "write /sys/fs/cgroup/berth/cgroup.subtree_control +cpu",
                "write /sys/fs/cgroup/berth/containers/cgroup.subtree_control +cpu",
            ]
        );
        // Never on a cgroup that holds processes.
        assert!(
            !calls
                .iter()
                .any(|c| c.contains("berth/init/cgroup.subtree_control"))
        );
        assert_eq!(calls.len(), 3 + 3 * 5);
    }

    #[test]
    fn missing_or_failing_controllers_are_reported_not_fatal() {
        let rec = Recorder::default();
        rec.fail(
            "write /sys/fs/cgroup/berth/cgroup.subtree_control +io",
            Errno::EINVAL,
        );
        let out = setup(&rec, "cpu io memory pids").unwrap();
        assert_eq!(out.enabled, ["cpu", "memory", "pids"]);
        assert_eq!(
            out.unavailable[0],
            ("cpuset".into(), "not in cgroup.controllers".into())
        );
        assert_eq!(out.unavailable[1].0, "io");
        assert!(
            out.unavailable[1]
                .1
                .contains("berth/cgroup.subtree_control")
        );
    }

    #[test]
    fn failing_to_leave_the_root_cgroup_is_an_error() {
        let rec = Recorder::default();
        rec.fail("write /sys/fs/cgroup/berth/init/cgroup.procs", Errno::EBUSY);
        let err = setup(&rec, "cpu").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot move PID 1 into /sys/fs/cgroup/berth/init/cgroup.procs")
        );
    }
}

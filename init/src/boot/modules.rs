//! Kernel modules: dependency resolution from `modules.dep` and loading with
//! finit_module(2). No modprobe binary is involved.
//!
//! `modules.dep` has one line per module, `path.ko: dep.ko dep.ko`, with paths
//! relative to `/lib/modules/<release>`. Module names treat `-` and `_` alike.
//! `modules.builtin` lists modules compiled into the kernel: asking for one
//! of those succeeds without loading anything.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;

/// Why a module could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// module {0}: not found in modules.dep or modules.builtin
    NotFound(String),
    /// module {module}: needs {dependency}, which could not be loaded
    Dependency {
        /// The module asked for.
        module: String,
        /// The dependency that failed.
        dependency: String,
    },
    /// module {module}: dependency cycle through {through}
    Cycle {
        /// The module asked for.
        module: String,
        /// A module on the cycle.
        through: String,
    },
    /// module {module}: cannot open {path}: {errno}
    Open {
        /// The module.
        module: String,
        /// Its file.
        path: PathBuf,
        /// The error.
        errno: Errno,
    },
    /// module {module}: finit_module {path}: {errno}
    Load {
        /// The module.
        module: String,
        /// Its file.
        path: PathBuf,
        /// The error.
        errno: Errno,
    },
}

/// The canonical form of a module name: `_` for `-`, no directory, no `.ko`.
pub fn canonical(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.trim_end_matches(".ko").replace('-', "_")
}

/// The module index of one kernel release.
#[derive(Debug, Default, Clone)]
pub struct Index {
    /// Module name to its path and its direct dependencies' names.
    modules: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

/// One module to load, after resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The module's canonical name.
    pub name: String,
    /// Its path relative to the release's module directory.
    pub path: String,
}

impl Index {
    /// Builds the index from the text of `modules.dep` and `modules.builtin`.
    pub fn parse(dep: &str, builtin: &str) -> Self {
        let mut modules = BTreeMap::new();
        for line in dep.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let deps = deps.split_whitespace().map(canonical).collect();
            modules.insert(canonical(path), (path.to_string(), deps));
        }
        let builtin = builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(canonical)
            .collect();
        Index { modules, builtin }
    }

    /// Reads the index for the running kernel from `dir` (normally
    /// `/lib/modules/<release>`). Missing files give an empty index.
    pub fn read(dir: &Path) -> Self {
        let dep = std::fs::read_to_string(dir.join("modules.dep")).unwrap_or_default();
        let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
        Self::parse(&dep, &builtin)
    }

    /// The modules to load for `name`, dependencies first, each once.
    /// `done` holds modules already resolved in this boot and is extended.
    pub fn resolve(&self, name: &str, done: &mut BTreeSet<String>) -> Result<Vec<Step>, Error> {
        let mut steps = Vec::new();
        let mut visiting = Vec::new();
        self.visit(
            &canonical(name),
            &canonical(name),
            done,
            &mut visiting,
            &mut steps,
        )?;
        Ok(steps)
    }

    fn visit(
        &self,
        root: &str,
        name: &str,
        done: &mut BTreeSet<String>,
        visiting: &mut Vec<String>,
        steps: &mut Vec<Step>,
    ) -> Result<(), Error> {
        if done.contains(name) || self.builtin.contains(name) {
            return Ok(());
        }
        if visiting.iter().any(|v| v == name) {
            return Err(Error::Cycle {
                module: root.into(),
                through: name.into(),
            });
        }
        let Some((path, deps)) = self.modules.get(name) else {
            return Err(if name == root {
                Error::NotFound(name.into())
            } else {
                Error::Dependency {
                    module: root.into(),
                    dependency: name.into(),
                }
            });
        };
        visiting.push(name.to_string());
        for d in deps {
            self.visit(root, d, done, visiting, steps)?;
        }
        visiting.pop();
        done.insert(name.to_string());
        steps.push(Step {
            name: name.to_string(),
            path: path.clone(),
        });
        Ok(())
    }
}

/// Loads one module file. A module that is already loaded counts as loaded.
pub fn load(dir: &Path, step: &Step) -> Result<Duration, Error> {
    let path = dir.join(&step.path);
    let start = Instant::now();
    let file = std::fs::File::open(&path).map_err(|e| Error::Open {
        module: step.name.clone(),
        path: path.clone(),
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    const NO_PARAMS: &CStr = c"";
    match nix::kmod::finit_module(&file, NO_PARAMS, nix::kmod::ModuleInitFlags::empty()) {
        Ok(()) | Err(Errno::EEXIST) => Ok(start.elapsed()),
        Err(errno) => Err(Error::Load {
            module: step.name.clone(),
            path,
            errno,
        }),
    }
}

/// The running kernel's module directory, `/lib/modules/<release>`.
pub fn release_dir() -> PathBuf {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    Path::new("/lib/modules").join(release.trim())
}

/// Resolves and loads `names` in order, logging each module and each failure.
/// A failure affects only that module and those that need it.
pub fn load_all(dir: &Path, index: &Index, names: &[String]) -> (usize, Vec<Error>) {
    load_all_then(dir, index, names, &mut || {})
}

/// [`load_all`], calling `after_each` after each module's attempt.
fn load_all_then(
    dir: &Path,
    index: &Index,
    names: &[String],
    after_each: &mut dyn FnMut(),
) -> (usize, Vec<Error>) {
    let mut done = BTreeSet::new();
    let mut loaded = 0;
    let mut errors = Vec::new();
    for name in names {
        let steps = match index.resolve(name, &mut done) {
            Ok(s) => s,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for step in steps {
            let r = load(dir, &step);
            after_each();
            match r {
                Ok(took) => {
                    loaded += 1;
                    log::debug!(
                        "loaded module {} ({:.1} ms)",
                        step.name,
                        took.as_secs_f64() * 1e3
                    );
                }
                Err(e) => {
                    errors.push(e);
                    break;
                }
            }
        }
    }
    (loaded, errors)
}

/// How long the device-module helper stays at the lowest priority.
pub const BACKGROUND_FOR: Duration = Duration::from_secs(2);

/// The helper's nice value `elapsed` after it started: the lowest (19) for
/// [`BACKGROUND_FOR`], then the normal 0.
pub fn background_nice(elapsed: Duration) -> i32 {
    if elapsed < BACKGROUND_FOR { 19 } else { 0 }
}

/// Loads `names` in a helper process ([`crate::sys::in_helper`]), so the
/// caller goes on while devices are probed; the helper logs its failures.
///
/// On one CPU the helper competes with boot and the first containers
/// (berth-bench: PID 1 to the first container's exec 646 ms with the
/// helper at the normal priority, 467 ms at the lowest). So it starts at
/// the lowest priority and, between modules, returns to the normal one
/// after [`BACKGROUND_FOR`]: busy containers cannot starve the network and
/// console drivers for longer than that (and one module's load).
pub fn load_in_background(
    dir: &Path,
    index: &Index,
    names: &[String],
) -> nix::Result<nix::unistd::Pid> {
    crate::sys::in_helper(|| {
        let start = Instant::now();
        let (loaded, errors) = load_yielding(dir, index, names, &mut || start.elapsed());
        for e in &errors {
            log::warn!("{e}");
        }
        log::debug!(
            "{loaded} device module(s) loaded beside boot ({:.1} ms)",
            start.elapsed().as_secs_f64() * 1e3
        );
        errors.is_empty()
    })
}

/// [`load_all`] at the nice value [`background_nice`] gives for the time
/// `elapsed` tells, looked at before the first module and after each.
fn load_yielding(
    dir: &Path,
    index: &Index,
    names: &[String],
    elapsed: &mut dyn FnMut() -> Duration,
) -> (usize, Vec<Error>) {
    let mut nice = background_nice(elapsed());
    set_nice(nice);
    load_all_then(dir, index, names, &mut || {
        let want = background_nice(elapsed());
        if want != nice {
            nice = want;
            set_nice(nice);
        }
    })
}

/// Sets this process's nice value; a failure only costs speed.
fn set_nice(nice: i32) {
    // SAFETY: setpriority with integer arguments, on this process only.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value (Linux keeps one per thread).
    fn own_nice() -> i32 {
        // SAFETY: getpriority with integer arguments.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn loading_in_the_background_lowers_the_priority_then_restores_it() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["virtio_net".to_string()];
        // Just started: the loader (here a thread of its own) yields. The
        // module files are missing, so each attempt fails at once.
        let d = dir.path().to_path_buf();
        let n = names.clone();
        let nice = std::thread::spawn(move || {
            let idx = Index::parse(DEP, BUILTIN);
            load_yielding(&d, &idx, &n, &mut || Duration::ZERO);
            own_nice()
        })
        .join()
        .unwrap();
        assert_eq!(nice, 19);
        // Once BACKGROUND_FOR has passed (here: after the first module's
        // attempt), it is back to normal. (Lowering a nice value needs
        // CAP_SYS_NICE: root only.)
        if nix::unistd::geteuid().is_root() {
            let d = dir.path().to_path_buf();
            let nice = std::thread::spawn(move || {
                let idx = Index::parse(DEP, BUILTIN);
                let mut calls = 0;
                let (_, errors) = load_yielding(&d, &idx, &names, &mut || {
                    calls += 1;
                    if calls == 1 {
                        Duration::ZERO
                    } else {
                        BACKGROUND_FOR
                    }
                });
                assert!(!errors.is_empty());
                own_nice()
            })
            .join()
            .unwrap();
            assert_eq!(nice, 0);
        }
    }

    #[test]
    fn the_background_helper_yields_for_a_while_then_runs_normally() {
        assert_eq!(background_nice(Duration::ZERO), 19);
        assert_eq!(
            background_nice(BACKGROUND_FOR - Duration::from_millis(1)),
            19
        );
        assert_eq!(background_nice(BACKGROUND_FOR), 0);
        assert_eq!(background_nice(Duration::from_secs(60)), 0);
    }

    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/fs/overlayfs/overlay.ko:
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/drivers/virtio/virtio-mmio.ko: kernel/drivers/missing/gone.ko
kernel/a/loop_a.ko: kernel/a/loop_b.ko
kernel/a/loop_b.ko: kernel/a/loop_a.ko
";
    const BUILTIN: &str = "kernel/fs/ext4/ext4.ko\nkernel/drivers/virtio/virtio.ko\n";

    fn names(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn dependencies_come_first_and_only_once() {
        let idx = Index::parse(DEP, BUILTIN);
        let mut done = BTreeSet::new();
        let s = idx.resolve("virtio_net", &mut done).unwrap();
        assert_eq!(names(&s), ["failover", "net_failover", "virtio_net"]);
        assert_eq!(s[2].path, "kernel/drivers/net/virtio_net.ko");
        let s = idx.resolve("bridge", &mut done).unwrap();
        assert_eq!(names(&s), ["llc", "stp", "bridge"]);
        // Already resolved in this boot: nothing more to do.
        assert!(idx.resolve("stp", &mut done).unwrap().is_empty());
    }

    #[test]
    fn dashes_and_underscores_are_one_name() {
        let idx = Index::parse(DEP, BUILTIN);
        let mut done = BTreeSet::new();
        let s = idx.resolve("virtio-net", &mut done).unwrap();
        assert_eq!(names(&s).last(), Some(&"virtio_net"));
        let s = idx.resolve("virtio_mmio", &mut done);
        assert_eq!(
            s,
            Err(Error::Dependency {
                module: "virtio_mmio".into(),
                dependency: "gone".into()
            })
        );
    }

    #[test]
    fn builtins_need_no_loading_and_unknowns_are_named() {
        let idx = Index::parse(DEP, BUILTIN);
        let mut done = BTreeSet::new();
        assert!(idx.resolve("ext4", &mut done).unwrap().is_empty());
        let e = idx.resolve("nosuchmod", &mut done).unwrap_err();
        assert_eq!(
            e.to_string(),
            "module nosuchmod: not found in modules.dep or modules.builtin"
        );
    }

    #[test]
    fn cycles_are_reported_not_followed() {
        let idx = Index::parse(DEP, BUILTIN);
        let e = idx.resolve("loop_a", &mut BTreeSet::new()).unwrap_err();
        assert_eq!(
            e,
            Error::Cycle {
                module: "loop_a".into(),
                through: "loop_a".into()
            }
        );
    }

    #[test]
    fn load_all_reports_missing_and_continues() {
        let idx = Index::parse(DEP, BUILTIN);
        let dir = tempfile::tempdir().unwrap();
        // ext4 is built in; nosuch is missing; neither touches the filesystem.
        let (loaded, errors) = load_all(dir.path(), &idx, &["ext4".into(), "nosuch".into()]);
        assert_eq!(loaded, 0);
        assert_eq!(errors, [Error::NotFound("nosuch".into())]);
        // A module whose file is absent fails at open, naming the path.
        let (_, errors) = load_all(dir.path(), &idx, &["overlay".into()]);
        assert!(
            matches!(&errors[0], Error::Open { module, .. } if module == "overlay"),
            "{errors:?}"
        );
    }
}

//! The container runtime: turns one container's resolved spec into a running,
//! isolated process, and tells its owner when the program is running (or why
//! it could not start). berth does this itself with nix and libc: no runc,
//! no crun.
//!
//! [`Runtime::spawn`] prepares the host side (runtime files, writable layer,
//! cgroup with limits), then calls clone3 with new mount, PID, UTS, IPC,
//! cgroup and (unless `network_mode = "host"`) network namespaces, straight
//! into the container's cgroup (CLONE_INTO_CGROUP). The child runs
//! [`child::run`] and execs. PID 1 is single-threaded, so the child, a copy
//! of it, may run ordinary Rust code until exec. The child's exit reaches
//! its owner through the PID 1 reaper, like every other exit.

pub mod cgroup;
pub mod child;
pub mod exec;
pub mod fs;
pub mod init;
pub mod message;
pub mod rootfs;
pub mod security;
pub mod spec;
pub mod user;
pub mod userns;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_config::Container;
use nix::errno::Errno;

use crate::images::{self, Store};
use crate::sys::Sys;
use message::Failure;
use spec::{Spec, StateDirs};

/// Why a container could not be started. Nothing is left behind.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// {0}
    Image(#[from] images::Error),
    /// {0}
    Spec(#[from] spec::Error),
    /// {0}
    User(#[from] user::Error),
    /// {0}
    Security(#[from] security::Error),
    /// {0}
    Cgroup(#[from] cgroup::Error),
    /// cannot prepare {path}: {source}
    Prepare {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// {step}: {errno}
    Sys {
        /// What was being done.
        step: &'static str,
        /// The error.
        errno: Errno,
    },
    /// {kind} {id} is not in the container's {kind}_map
    Unmapped {
        /// "uid" or "gid".
        kind: &'static str,
        /// The container's id.
        id: u32,
    },
    /// cannot mount the root at {path}: {errno}
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The error.
        errno: Errno,
    },
}

/// How a container joins the network, as the supervisor decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSpec {
    /// /etc/hosts entries of its network: each container by name and
    /// hostname.
    pub hosts: Vec<(std::net::IpAddr, Vec<String>)>,
    /// `network_mode = "service:NAME"`: the pid whose network namespace it
    /// joins.
    pub join: Option<i32>,
}

/// A container whose setup process is running.
#[derive(Debug)]
pub struct Launch {
    /// The setup process, later the container's PID 1 (as seen by berth).
    pub pid: i32,
    /// Its cgroup.
    pub cgroup: PathBuf,
    /// When clone3 returned.
    pub spawned: Instant,
    /// berth's end of the message socket: end-of-stream once the program
    /// runs, a [`Failure`] if setup failed.
    pub sync: OwnedFd,
    /// The read end of the container's stdout.
    pub stdout: OwnedFd,
    /// The read end of the container's stderr.
    pub stderr: OwnedFd,
    /// What a command run in the container later needs (health checks,
    /// `berth exec`): its user, security, environment and working directory.
    pub context: ExecContext,
    /// The image's layer directories under its root: in use while it runs.
    pub layers: Vec<PathBuf>,
}

/// What commands run inside a running container share with it.
#[derive(Debug, Clone)]
pub struct ExecContext {
    /// The user.
    pub ids: user::Ids,
    /// Capabilities, no_new_privs, seccomp.
    pub security: security::Security,
    /// The environment.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Whether it has a user namespace of its own.
    pub userns: bool,
}

/// What the runtime needs from the host.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Where state lives.
    pub dirs: StateDirs,
    /// Where images are found.
    pub store: Store,
    /// The cgroup2 directory under which each container gets its own.
    pub cgroups: PathBuf,
    /// The host's resolv.conf (read at each start: DHCP may change it),
    /// for containers without `dns`.
    pub resolv_conf: PathBuf,
    /// berth's binary, run as a container's init (`init = true`).
    pub init_binary: PathBuf,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            dirs: StateDirs::default(),
            store: Store::default(),
            cgroups: cgroup::default_parent(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            init_binary: PathBuf::from("/proc/self/exe"),
        }
    }
}

fn prepare_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Prepare {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads /etc/passwd and /etc/group as the container will see them: the
/// writable layer first, then the image's layers.
fn account_files(spec: &Spec) -> (String, String) {
    let mut layers = vec![spec.upper.0.clone()];
    layers.extend(spec.lowers.iter().cloned());
    let read = |file: &str| {
        layers
            .iter()
            .find_map(|l| fs::read_in(l, Path::new(file), 1 << 20).ok().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    (read("etc/passwd"), read("etc/group"))
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3 without CLONE_VM: a fork into new namespaces and a cgroup.
/// Returns the child's pid in the parent and 0 in the child.
fn clone3(flags: u64, cgroup: &OwnedFd) -> Result<i32, Errno> {
    // SAFETY: clone_args is plain old data; all-zero is its documented
    // "nothing requested" state.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags | CLONE_INTO_CGROUP;
    args.exit_signal = libc::SIGCHLD as u64;
    args.cgroup = cgroup.as_raw_fd() as u64;
    // SAFETY: without CLONE_VM or a stack, clone3 behaves like fork: the
    // child gets a copy of this address space and returns here with 0.
    // PID 1 is single-threaded, so no lock can be held by a thread that
    // does not exist in the child.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    Errno::result(rc).map(|pid| pid as i32)
}

impl Runtime {
    /// Starts a container. Returns once the setup process exists, waiting
    /// to be [`release`]d; its outcome then arrives on [`Launch::sync`].
    pub fn spawn(&self, sys: &dyn Sys, c: &Container, net: &NetSpec) -> Result<Launch, Error> {
        let image = self.store.resolve(&c.image)?;
        let resolv = std::fs::read_to_string(&self.resolv_conf).unwrap_or_default();
        let spec = spec::resolve(c, &image, &self.dirs, &resolv, &net.hosts)?;
        let (passwd, group) = account_files(&spec);
        let ids = user::resolve(spec.user.as_ref(), &c.group_add, &passwd, &group)?;
        let mut spec = spec;
        let maps = c.userns.as_ref();
        if let Some(maps) = maps {
            userns::check_ids(maps, &ids)?;
            spec.lowers = spec
                .lowers
                .iter()
                .map(|l| self.store.shifted(l, maps))
                .collect::<Result<_, _>>()?;
        }
        if !spec.env.iter().any(|e| e.starts_with("HOME=")) {
            let home = ids.home.clone().unwrap_or_else(|| PathBuf::from("/"));
            spec.env.push(format!("HOME={}", home.display()));
            spec.env.sort();
        }
        let security = security::Security::for_container(c, ids.uid)?;

        // Host side: runtime files, mount point, writable layer, volumes.
        let run = spec
            .rootfs
            .parent()
            .unwrap_or(Path::new("/run"))
            .to_path_buf();
        std::fs::create_dir_all(&spec.rootfs).map_err(prepare_err(&spec.rootfs))?;
        for (host, _, contents) in &spec.files {
            std::fs::write(host, contents).map_err(prepare_err(host))?;
            if let Some(maps) = maps {
                userns::own(host, maps)?;
            }
        }
        for d in [&spec.upper.0, &spec.upper.1] {
            std::fs::create_dir_all(d).map_err(prepare_err(d))?;
        }
        if let Some(maps) = maps {
            // The merged root's owner is the upper directory's.
            userns::own(&spec.upper.0, maps)?;
        }
        for m in &spec.mounts {
            if let rootfs::UserMount::Bind { source, .. } = m
                && !source.exists()
            {
                std::fs::create_dir_all(source).map_err(prepare_err(source))?;
                if let Some(maps) = maps {
                    userns::own(source, maps)?;
                }
            }
        }
        let devices: Vec<(PathBuf, PathBuf)> = c
            .devices
            .iter()
            .map(|d| (d.source.clone(), d.target.clone()))
            .collect();
        let files: Vec<(PathBuf, PathBuf)> = spec
            .files
            .iter()
            .map(|(h, t, _)| (h.clone(), t.clone()))
            .collect();
        let plan = rootfs::plan(&rootfs::Inputs {
            privileged: c.privileged,
            shm_size: c.shm_size,
            devices: &devices,
            mounts: &spec.mounts,
            files: &files,
        });
        let sysctls: Vec<(String, String)> = c.sysctls.clone().into_iter().collect();
        let rlimits: Vec<(u32, u64, u64)> = c
            .ulimits
            .iter()
            .map(|u| (u.name.resource(), u.soft, u.hard))
            .collect();

        if maps.is_some() {
            spec.mount_overlay().map_err(|errno| Error::Mount {
                path: spec.rootfs.clone(),
                errno,
            })?;
        }
        let cgroup_dir = match cgroup::create(sys, &self.cgroups, &c.name, &c.resources) {
            Ok(d) => d,
            Err(e) => {
                userns::unmount_root(&spec.rootfs);
                return Err(e.into());
            }
        };
        let cleanup = |e: Error| {
            cgroup::remove(&cgroup_dir);
            if maps.is_some() {
                userns::unmount_root(&spec.rootfs);
            }
            let _ = std::fs::remove_dir_all(&run);
            e
        };
        let cgroup_fd = cgroup::open(&cgroup_dir).map_err(|e| cleanup(e.into()))?;
        let (parent_sync, child_sync) = message::pair().map_err(|errno| {
            cleanup(Error::Sys {
                step: "socketpair",
                errno,
            })
        })?;
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
        let (out_r, out_w) = pipe().map_err(|errno| {
            cleanup(Error::Sys {
                step: "pipe",
                errno,
            })
        })?;
        let (err_r, err_w) = pipe().map_err(|errno| {
            cleanup(Error::Sys {
                step: "pipe",
                errno,
            })
        })?;
        let null: OwnedFd = std::fs::File::open("/dev/null")
            .map_err(|e| cleanup(prepare_err(Path::new("/dev/null"))(e)))?
            .into();

        let mut flags =
            (libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWCGROUP)
                as u64;
        if spec.own_netns {
            flags |= libc::CLONE_NEWNET as u64;
        }
        if !c.pid_host {
            flags |= libc::CLONE_NEWPID as u64;
        }
        if maps.is_some() {
            flags |= libc::CLONE_NEWUSER as u64;
        }
        // The container's init is berth itself, opened before the child
        // leaves the host's filesystem.
        let init: Option<OwnedFd> = if c.init {
            Some(
                std::fs::File::open(&self.init_binary)
                    .map_err(|e| cleanup(prepare_err(&self.init_binary)(e)))?
                    .into(),
            )
        } else {
            None
        };
        let join = match net.join {
            Some(pid) => Some(OwnedFd::from(
                std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| {
                    cleanup(prepare_err(Path::new(&format!("/proc/{pid}/ns/net")))(e))
                })?,
            )),
            None => None,
        };
        let cx = child::Context {
            spec: &spec,
            plan: &plan,
            sysctls: &sysctls,
            rlimits: &rlimits,
            userns: maps.is_some(),
            hostname: c.hostname.as_deref(),
            init: init.as_ref().map(|f| f.as_fd()),
            join_netns: join.as_ref().map(|f| f.as_fd()),
            ids: &ids,
            security: &security,
            sync: child_sync.as_fd(),
            stdio: [null.as_fd(), out_w.as_fd(), err_w.as_fd()],
        };
        let pid = match clone3(flags, &cgroup_fd) {
            Ok(0) => child::run(&cx),
            Ok(pid) => pid,
            Err(errno) => {
                return Err(cleanup(Error::Sys {
                    step: "clone3",
                    errno,
                }));
            }
        };
        let spawned = Instant::now();
        drop((child_sync, out_w, err_w, null, cgroup_fd, init, join));
        // The child waits for this word before it does anything: the steps
        // that need the host's namespace come first. A failure here reaches
        // the child, which reports it as its own and exits, so it arrives
        // like any setup failure.
        match outside_steps(pid, c, maps, &rlimits) {
            Ok(()) => message::send_ready(parent_sync.as_fd()),
            Err(f) => message::send_failure(parent_sync.as_fd(), &f),
        }
        Ok(Launch {
            pid,
            cgroup: cgroup_dir,
            spawned,
            sync: parent_sync,
            stdout: out_r,
            stderr: err_r,
            context: ExecContext {
                ids,
                security,
                env: spec.env,
                cwd: spec.cwd,
                userns: maps.is_some(),
            },
            layers: spec.lowers,
        })
    }

    /// Removes what a container left on the host after it exited: its
    /// cgroup and runtime files. The writable layer stays for a restart.
    /// Returns false while the cgroup is still being released.
    pub fn cleanup(&self, name: &str, cgroup: &Path) -> bool {
        let gone = cgroup::remove(cgroup);
        let run = self.dirs.run.join(name);
        // A container in a user namespace has its root mounted in berth's
        // namespace: detach it first, or removing the directory would
        // reach into the container's files.
        if userns::unmount_root(&run.join(spec::ROOTFS)) {
            let _ = std::fs::remove_dir_all(&run);
        }
        gone
    }

    /// Removes a container's writable layer (when it is removed for good).
    pub fn remove_layer(&self, name: &str) {
        let _ = std::fs::remove_dir_all(self.dirs.containers.join(name));
    }
}

/// What berth does for a new container from the host's namespace, between
/// clone3 and the child's first step: the user namespace's maps; hard
/// rlimits above berth's own, which a child in a user namespace cannot
/// raise (its own setrlimit then sets the exact values); oom_score_adj,
/// which only the host's root may lower.
fn outside_steps(
    pid: i32,
    c: &Container,
    maps: Option<&berth_config::IdMaps>,
    rlimits: &[(u32, u64, u64)],
) -> Result<(), Failure> {
    if let Some(maps) = maps {
        userns::write_maps(pid, maps)?;
        for &(resource, _, hard) in rlimits {
            raise_hard_limit(pid, resource, hard)
                .map_err(|e| Failure::sys(format!("prlimit {resource}"), None, e))?;
        }
    }
    if c.oom_score_adj != 0 {
        let path = format!("/proc/{pid}/oom_score_adj");
        std::fs::write(&path, c.oom_score_adj.to_string()).map_err(|e| Failure {
            step: "set oom_score_adj".into(),
            path: Some(path.clone()),
            errno: e.raw_os_error().unwrap_or(0),
            detail: String::new(),
        })?;
    }
    Ok(())
}

/// Raises process `pid`'s hard limit on `resource` to `hard` if it is
/// lower, keeping its soft limit.
fn raise_hard_limit(pid: i32, resource: u32, hard: u64) -> Result<(), Errno> {
    // SAFETY: rlimit is plain old data; zeroed is a valid value to overwrite.
    let mut old: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: prlimit reads nothing and writes the old limits into `old`.
    if unsafe { libc::prlimit(pid, resource as _, std::ptr::null(), &mut old) } != 0 {
        return Err(Errno::last());
    }
    if old.rlim_max >= hard {
        return Ok(());
    }
    let new = libc::rlimit {
        rlim_cur: old.rlim_cur,
        rlim_max: hard,
    };
    // SAFETY: prlimit reads `new`; berth holds CAP_SYS_RESOURCE.
    Errno::result(unsafe { libc::prlimit(pid, resource as _, &new, std::ptr::null_mut()) })
        .map(drop)
}

/// Lets a spawned container's setup go on to exec, once its host side (its
/// network) is ready.
pub fn release(sync: &OwnedFd) -> std::io::Result<()> {
    nix::unistd::write(sync, &[message::GO])
        .map(drop)
        .map_err(std::io::Error::from)
}

/// Reads the setup outcome from berth's end of the message socket: `None`
/// once the program runs, or the failure.
pub async fn setup_outcome(sync: OwnedFd) -> Option<Failure> {
    let fd = match crate::sys::async_fd(sync) {
        Ok(fd) => fd,
        Err(e) => {
            return Some(Failure {
                step: "watch setup".into(),
                path: None,
                errno: e.raw_os_error().unwrap_or(0),
                detail: e.to_string(),
            });
        }
    };
    let mut buf = vec![0u8; message::MAX];
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return None;
        };
        match guard
            .try_io(|f| nix::unistd::read(f.get_ref(), &mut buf).map_err(std::io::Error::from))
        {
            Ok(Ok(n)) => return message::decode(&buf[..n]),
            Ok(Err(_)) => return None,
            Err(_would_block) => {}
        }
    }
}

//! The container's setup process: what runs between clone3 and exec.
//!
//! It starts as a copy of PID 1 (single-threaded, so any code is safe here),
//! already in its new namespaces and in its cgroup. In order: reset signal
//! handling; wire stdio; mount the root (overlay) and carry out the
//! [`rootfs`](super::rootfs) plan inside it, every path resolved within the
//! root; apply sysctls; hide and protect the Docker default paths; pivot_root
//! the safe way; set hostname, rlimits and oom_score_adj; wait for berth's
//! go-ahead; switch user, capabilities, no_new_privs and seccomp (last);
//! exec. Any failure is sent to berth as a [`Failure`] naming the step, the
//! path and errno, and the process exits: its namespaces, and so its mounts,
//! die with it.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::stat::Mode;

use super::fs::{self, Create};
use super::message::{self, Failure};
use super::rootfs::Op;
use super::security::Security;
use super::user::Ids;

/// Everything the child needs, prepared by the parent before clone3.
pub struct Context<'a> {
    /// The resolved container.
    pub spec: &'a super::spec::Spec,
    /// The rootfs plan.
    pub plan: &'a [Op],
    /// Sysctls to set (dotted names).
    pub sysctls: &'a [(String, String)],
    /// rlimits: (resource, soft, hard).
    pub rlimits: &'a [(u32, u64, u64)],
    /// Whether it is in a user namespace of its own: berth has mounted the
    /// root (see [`super::userns`]).
    pub userns: bool,
    /// The hostname, when the container has its own UTS namespace name.
    pub hostname: Option<&'a str>,
    /// berth's own binary, to run as the container's init (`init = true`).
    pub init: Option<BorrowedFd<'a>>,
    /// Another container's network namespace to join (`service:NAME`).
    pub join_netns: Option<BorrowedFd<'a>>,
    /// The user to become.
    pub ids: &'a Ids,
    /// Capabilities, no_new_privs, seccomp.
    pub security: &'a Security,
    /// The child's end of the message socket.
    pub sync: BorrowedFd<'a>,
    /// stdin (/dev/null), stdout and stderr.
    pub stdio: [BorrowedFd<'a>; 3],
}

/// Runs the setup and execs, or reports the failure and exits.
pub fn run(cx: &Context<'_>) -> ! {
    let failure = match setup(cx) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    message::send_failure(cx.sync, &failure);
    // SAFETY: _exit ends this process at once, without running atexit
    // handlers or flushing state copied from PID 1.
    unsafe { libc::_exit(127) }
}

type R<T> = Result<T, Failure>;

fn sys<T>(step: &str, path: Option<&Path>, r: nix::Result<T>) -> R<T> {
    r.map_err(|e| Failure::sys(step, path, e))
}

fn setup(cx: &Context<'_>) -> R<Infallible> {
    reset_signals();
    message::wait_ready(cx.sync)?;
    if cx.userns {
        // Become the namespace's root (mapped now), so that what setup
        // creates belongs to the container.
        sys(
            "become the namespace's root",
            None,
            nix::unistd::setresgid(0.into(), 0.into(), 0.into()),
        )?;
        sys(
            "become the namespace's root",
            None,
            nix::unistd::setresuid(0.into(), 0.into(), 0.into()),
        )?;
    }
    for (i, fd) in cx.stdio.iter().enumerate() {
        // SAFETY: dup2 onto 0, 1 and 2, which nothing in this process uses
        // as a Rust-owned descriptor; the sources are open.
        if unsafe { libc::dup2(fd.as_raw_fd(), i as i32) } < 0 {
            return Err(Failure::sys("dup2 stdio", None, Errno::last()));
        }
    }
    let spec = cx.spec;
    if let Some(ns) = cx.join_netns {
        // SAFETY: setns on a namespace descriptor berth opened; it changes
        // only this (single-threaded) process's network namespace.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(Failure::sys(
                "join the network namespace",
                None,
                Errno::last(),
            ));
        }
    }

    // Nothing mounted here may reach the host.
    sys(
        "make mounts private",
        Some(Path::new("/")),
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        ),
    )?;
    if cx.userns {
        // berth mounted the root; inherited, it is locked to this namespace
        // and pivot_root refuses it, so bind it onto itself.
        sys(
            "bind the root",
            Some(&spec.rootfs),
            nix::mount::mount(
                Some(&spec.rootfs),
                &spec.rootfs,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            ),
        )?;
    } else {
        sys(
            "mount overlay root",
            Some(&spec.rootfs),
            spec.mount_overlay(),
        )?;
    }
    let root: OwnedFd = sys(
        "open root",
        Some(&spec.rootfs),
        nix::fcntl::open(
            &spec.rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ),
    )?;

    let mut protected = false;
    for op in cx.plan {
        if !protected && matches!(op, Op::Mask { .. } | Op::ReadOnly { .. }) {
            // /proc/sys turns read-only next: namespaced sysctls go first.
            apply_sysctls(root.as_fd(), cx.sysctls)?;
            protected = true;
        }
        apply(root.as_fd(), op)?;
    }
    if !protected {
        apply_sysctls(root.as_fd(), cx.sysctls)?;
    }

    pivot(&spec.rootfs)?;
    if spec.read_only {
        sys(
            "remount root read-only",
            Some(Path::new("/")),
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NODEV,
                None::<&str>,
            ),
        )?;
    }
    if let Some(h) = cx.hostname {
        sys("sethostname", None, nix::unistd::sethostname(h))?;
    }
    if spec.own_netns {
        // lo starts down in a new network namespace; 127.0.0.1 must work
        // (health checks use it).
        sys("bring up lo", None, crate::network::loopback::up())?;
    }
    for &(resource, soft, hard) in cx.rlimits {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the rlimit struct we pass by reference.
        let rc = unsafe { libc::setrlimit(resource as _, &lim) };
        if rc != 0 {
            return Err(Failure::sys(
                format!("setrlimit {resource}"),
                None,
                Errno::last(),
            ));
        }
    }
    close_other_fds();

    let program = find_program(&spec.argv[0], &spec.env)?;
    let argv = cstrings(&spec.argv)?;
    let env = cstrings(&spec.env)?;

    message::wait_go(cx.sync)?;
    cx.security.apply_before_exec(cx.ids).map_err(|e| Failure {
        step: "apply security".into(),
        path: None,
        errno: e.errno(),
        detail: e.to_string(),
    })?;
    sys("chdir", Some(&spec.cwd), nix::unistd::chdir(&spec.cwd))?;
    if let Some(init) = cx.init {
        // berth-init PROGRAM ARGV...: it runs the program as its child.
        let mut args = vec![
            CString::new(super::init::ARGV0).unwrap_or_default(),
            program,
        ];
        args.extend(argv);
        return match nix::unistd::execveat(
            init,
            c"",
            &args,
            &env,
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        ) {
            Ok(never) => match never {},
            Err(e) => Err(Failure::sys("exec berth-init", None, e)),
        };
    }
    match nix::unistd::execve(&program, &argv, &env) {
        Ok(never) => match never {},
        Err(e) => Err(Failure::sys(
            "exec",
            Some(Path::new(program.to_str().unwrap_or("?"))),
            e,
        )),
    }
}

/// Every handler PID 1 installed goes back to the default, and nothing is
/// blocked: the container starts with a clean signal state.
fn reset_signals() {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: installing SIG_DFL is always sound; no handler runs.
            let _ = unsafe { nix::sys::signal::sigaction(sig, &dfl) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    );
}

/// Marks every descriptor above stderr close-on-exec: the container gets
/// stdio and nothing else of PID 1's.
fn close_other_fds() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on the
    // descriptors; it closes nothing that Rust code still uses.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

fn apply(root: BorrowedFd<'_>, op: &Op) -> R<()> {
    match op {
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => {
            let step = format!("mount {fstype}");
            let fd = if target == Path::new("proc") || target == Path::new("sys") {
                // Refuse a /proc or /sys that is a symlink planted by the image.
                fs::open_dir_nofollow(root, target)
            } else {
                fs::open_in(root, target, Create::Dir(0o755))
            }
            .map_err(|e| Failure::sys(&step, Some(target), e))?;
            sys(
                &step,
                Some(target),
                nix::mount::mount(
                    Some(source.as_str()),
                    &fs::proc_path(fd.as_fd()),
                    Some(fstype.as_str()),
                    *flags,
                    data.as_deref(),
                ),
            )
        }
        Op::Bind {
            source,
            target,
            read_only,
            flags,
        } => {
            let src_dir = std::fs::metadata(source)
                .map_err(|e| Failure {
                    step: "bind mount".into(),
                    path: Some(source.display().to_string()),
                    errno: e.raw_os_error().unwrap_or(0),
                    detail: String::new(),
                })?
                .is_dir();
            let create = if src_dir {
                Create::Dir(0o755)
            } else {
                Create::File
            };
            let fd = fs::open_in(root, target, create)
                .map_err(|e| Failure::sys("bind mount", Some(target), e))?;
            sys(
                "bind mount",
                Some(target),
                nix::mount::mount(
                    Some(source.as_path()),
                    &fs::proc_path(fd.as_fd()),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                ),
            )?;
            remount(
                root,
                target,
                *flags
                    | if *read_only {
                        MsFlags::MS_RDONLY
                    } else {
                        MsFlags::empty()
                    },
            )
        }
        Op::Mkdir { path, mode } => fs::open_in(root, path, Create::Dir(*mode))
            .map(drop)
            .map_err(|e| Failure::sys("mkdir", Some(path), e)),
        Op::Symlink { target, link } => {
            let parent = link.parent().unwrap_or(Path::new(""));
            let name = link.file_name().unwrap_or_default();
            let pfd = fs::open_in(root, parent, Create::Dir(0o755))
                .map_err(|e| Failure::sys("symlink", Some(link), e))?;
            let dir = sys(
                "symlink",
                Some(link),
                nix::fcntl::openat(
                    &pfd,
                    ".",
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ),
            )?;
            match nix::unistd::symlinkat(target.as_str(), &dir, name) {
                Ok(()) | Err(Errno::EEXIST) => Ok(()),
                Err(e) => Err(Failure::sys("symlink", Some(link), e)),
            }
        }
        Op::Mask { path } => {
            let fd = match fs::open_in(root, path, Create::No) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(Failure::sys("mask", Some(path), e)),
            };
            let target = fs::proc_path(fd.as_fd());
            let dir = fs::is_dir(fd.as_fd()).map_err(|e| Failure::sys("mask", Some(path), e))?;
            let r = if dir {
                nix::mount::mount(
                    Some("tmpfs"),
                    &target,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    Some("size=0,mode=0555"),
                )
            } else {
                nix::mount::mount(
                    Some("/dev/null"),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
            };
            sys("mask", Some(path), r)
        }
        Op::ReadOnly { path } => {
            let fd = match fs::open_in(root, path, Create::No) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(Failure::sys("make read-only", Some(path), e)),
            };
            let p = fs::proc_path(fd.as_fd());
            sys(
                "make read-only",
                Some(path),
                nix::mount::mount(
                    Some(&p),
                    &p,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                ),
            )?;
            remount(
                root,
                path,
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            )
        }
    }
}

/// Remounts the bind mount now at `path` with `flags`.
fn remount(root: BorrowedFd<'_>, path: &Path, flags: MsFlags) -> R<()> {
    if flags.is_empty() {
        return Ok(());
    }
    // Open again: the descriptor from before the mount names what is under it.
    let fd =
        fs::open_in(root, path, Create::No).map_err(|e| Failure::sys("remount", Some(path), e))?;
    sys(
        "remount",
        Some(path),
        nix::mount::mount(
            None::<&str>,
            &fs::proc_path(fd.as_fd()),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
            None::<&str>,
        ),
    )
}

fn apply_sysctls(root: BorrowedFd<'_>, sysctls: &[(String, String)]) -> R<()> {
    for (name, value) in sysctls {
        let rel = PathBuf::from("proc/sys").join(name.replace('.', "/"));
        let fd = fs::open_in(root, &rel, Create::No)
            .map_err(|e| Failure::sys("sysctl", Some(&rel), e))?;
        let path = fs::proc_path(fd.as_fd());
        std::fs::write(&path, value).map_err(|e| Failure {
            step: format!("sysctl {name}"),
            path: None,
            errno: e.raw_os_error().unwrap_or(0),
            detail: String::new(),
        })?;
    }
    Ok(())
}

/// pivot_root the safe way: the new root must be a mount point (the overlay
/// is); pivot it onto itself, then detach the old root from underneath,
/// first marking it slave so the detach cannot propagate to the host.
fn pivot(rootfs: &Path) -> R<()> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let old = sys(
        "open old root",
        Some(Path::new("/")),
        nix::fcntl::open("/", flags, Mode::empty()),
    )?;
    let new = sys(
        "open new root",
        Some(rootfs),
        nix::fcntl::open(rootfs, flags, Mode::empty()),
    )?;
    sys("chdir new root", Some(rootfs), nix::unistd::fchdir(&new))?;
    sys(
        "pivot_root",
        Some(rootfs),
        nix::unistd::pivot_root(".", "."),
    )?;
    sys("chdir old root", None, nix::unistd::fchdir(&old))?;
    sys(
        "make old root slave",
        None,
        nix::mount::mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        ),
    )?;
    sys(
        "detach old root",
        None,
        nix::mount::umount2(".", MntFlags::MNT_DETACH),
    )?;
    sys("chdir /", None, nix::unistd::chdir("/"))
}

/// Finds the program as execvp would, in the container's PATH.
fn find_program(arg0: &str, env: &[String]) -> R<CString> {
    let not_found = |errno| Failure {
        step: "exec".into(),
        path: Some(arg0.into()),
        errno,
        detail: if arg0.contains('/') {
            String::new()
        } else {
            "executable file not found in $PATH".into()
        },
    };
    if arg0.contains('/') {
        return match nix::unistd::access(arg0, nix::unistd::AccessFlags::X_OK) {
            Ok(()) => CString::new(arg0).map_err(|_| not_found(libc::EINVAL)),
            Err(e) => Err(not_found(e as i32)),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(super::spec::DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(arg0);
        if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok() {
            return CString::new(candidate.as_os_str().as_bytes())
                .map_err(|_| not_found(libc::EINVAL));
        }
    }
    Err(not_found(libc::ENOENT))
}

fn cstrings(v: &[String]) -> R<Vec<CString>> {
    v.iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| Failure {
                step: "exec".into(),
                path: None,
                errno: libc::EINVAL,
                detail: format!("argument or variable with a NUL byte: {s:?}"),
            })
        })
        .collect()
}

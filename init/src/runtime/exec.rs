//! Running a command inside a running container: health checks, and
//! `berth exec`.
//!
//! The process must be in all of the container's namespaces and in its
//! cgroup, with its user, capabilities, no_new_privs and seccomp filter.
//! berth clone3s a helper straight into the container's cgroup; the helper
//! joins the namespaces of the container's PID 1 (one setns on a pidfd),
//! then, because joining a PID namespace only affects children, clones the
//! real process with CLONE_PARENT, so that its parent is berth's PID 1 and
//! the reaper gets its exit. The helper sends that process's pid to berth
//! and exits. The process applies the container's security and execs.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;

use super::message::{self, Failure};

/// Why a command could not be started in a container.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// {step}: {errno}
    Sys {
        /// What was being done.
        step: &'static str,
        /// The error.
        errno: Errno,
    },
    /// {0}
    Setup(Failure),
}

/// What a command needs from its container.
pub struct Target<'a> {
    /// The pid of the container's PID 1, as berth sees it.
    pub pid: i32,
    /// The container's cgroup.
    pub cgroup: &'a Path,
    /// What the command shares with the container: user, security,
    /// working directory, user namespace.
    pub context: &'a super::ExecContext,
    /// The environment: the container's, perhaps with more.
    pub env: &'a [String],
    /// Whether stdin is a terminal to make the controlling terminal.
    pub tty: bool,
}

/// A started command.
#[derive(Debug)]
pub struct Started {
    /// Its pid, as berth sees it; its parent is berth's PID 1.
    pub pid: i32,
    /// berth's end of the message socket: end-of-stream once it runs, or a
    /// [`Failure`].
    pub sync: OwnedFd,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

fn raw_clone(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> Result<i32, Errno> {
    // SAFETY: clone_args is plain old data; all-zero requests nothing.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags;
    // With CLONE_PARENT the kernel takes the exit signal from the caller
    // (SIGCHLD) and refuses one given here.
    if flags & libc::CLONE_PARENT as u64 == 0 {
        args.exit_signal = libc::SIGCHLD as u64;
    }
    if let Some(cg) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cg.as_raw_fd() as u64;
    }
    // SAFETY: without CLONE_VM or a stack, clone3 is a fork; the caller is
    // single-threaded (PID 1, or the helper forked from it).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    Errno::result(rc).map(|p| p as i32)
}

/// Starts `argv` in the container. `stdio` are the descriptors it gets as
/// 0, 1 and 2.
pub fn spawn(
    t: &Target<'_>,
    argv: &[String],
    stdio: [BorrowedFd<'_>; 3],
) -> Result<Started, Error> {
    let sys = |step| move |errno| Error::Sys { step, errno };
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, t.pid, 0) };
    let pidfd = Errno::result(pidfd).map_err(sys("pidfd_open"))? as i32;
    // SAFETY: pidfd_open returned a fresh descriptor that nothing else owns.
    let pidfd: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(pidfd) };
    let cgroup: OwnedFd = std::fs::File::open(t.cgroup)
        .map_err(|e| Error::Sys {
            step: "open the container's cgroup",
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?
        .into();
    let (parent_end, child_end) = message::pair().map_err(sys("socketpair"))?;
    let argv = cstrings(argv)?;
    let env = cstrings(t.env)?;
    let helper = raw_clone(0, Some(cgroup.as_fd())).map_err(sys("clone3"))?;
    if helper == 0 {
        helper_main(t, pidfd.as_fd(), child_end.as_fd(), &argv, &env, stdio);
    }
    drop(child_end);
    // The helper sends the command's pid, then exits; the reaper collects
    // it like any orphan.
    let mut buf = [0u8; message::MAX];
    let n = loop {
        match nix::unistd::read(&parent_end, &mut buf) {
            Err(Errno::EINTR) => {}
            other => break other.map_err(sys("read from the exec helper"))?,
        }
    };
    if let Ok(s) = std::str::from_utf8(&buf[..n])
        && let Some(pid) = s.strip_prefix("pid ").and_then(|p| p.parse().ok())
    {
        return Ok(Started {
            pid,
            sync: parent_end,
        });
    }
    Err(Error::Setup(message::decode(&buf[..n]).unwrap_or(
        Failure {
            step: "exec helper".into(),
            path: None,
            errno: 0,
            detail: "ended without a word".into(),
        },
    )))
}

/// The helper: join, clone the command, report its pid, exit.
fn helper_main(
    t: &Target<'_>,
    pidfd: BorrowedFd<'_>,
    sync: BorrowedFd<'_>,
    argv: &[CString],
    env: &[CString],
    stdio: [BorrowedFd<'_>; 3],
) -> ! {
    let fail = |f: Failure| -> ! {
        message::send_failure(sync, &f);
        // SAFETY: ends the helper at once, running nothing copied from PID 1.
        unsafe { libc::_exit(127) }
    };
    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWCGROUP;
    if t.context.userns {
        // Joined first by the kernel, so the rest are joined with the
        // namespace's capabilities.
        flags |= libc::CLONE_NEWUSER;
    }
    // SAFETY: setns with a valid pidfd and namespace flags.
    if unsafe { libc::setns(pidfd.as_raw_fd(), flags) } != 0 {
        fail(Failure::sys(
            "join the container's namespaces",
            None,
            Errno::last(),
        ));
    }
    let pid = match raw_clone(libc::CLONE_PARENT as u64, None) {
        Ok(0) => command_main(t, sync, argv, env, stdio),
        Ok(pid) => pid,
        Err(e) => fail(Failure::sys("clone the command", None, e)),
    };
    let _ = nix::unistd::write(sync, format!("pid {pid}").as_bytes());
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

/// The command: stdio, security, working directory, exec.
fn command_main(
    t: &Target<'_>,
    sync: BorrowedFd<'_>,
    argv: &[CString],
    env: &[CString],
    stdio: [BorrowedFd<'_>; 3],
) -> ! {
    let fail = |f: Failure| -> ! {
        message::send_failure(sync, &f);
        // SAFETY: ends the process at once.
        unsafe { libc::_exit(127) }
    };
    let dfl = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::SigDfl,
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    for sig in nix::sys::signal::Signal::iterator() {
        if sig != nix::sys::signal::Signal::SIGKILL && sig != nix::sys::signal::Signal::SIGSTOP {
            // SAFETY: installing SIG_DFL is always sound.
            let _ = unsafe { nix::sys::signal::sigaction(sig, &dfl) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    for (i, fd) in stdio.iter().enumerate() {
        // SAFETY: dup2 onto 0..2, which no Rust object owns here.
        if unsafe { libc::dup2(fd.as_raw_fd(), i as i32) } < 0 {
            fail(Failure::sys("dup2 stdio", None, Errno::last()));
        }
    }
    if t.tty {
        // A session of its own, with the terminal as its controlling one, so
        // job control and Ctrl-C work in an interactive shell.
        if let Err(e) = nix::unistd::setsid() {
            fail(Failure::sys("setsid", None, e));
        }
        // SAFETY: TIOCSCTTY on stdin, the terminal just put there.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
            fail(Failure::sys("take the terminal", None, Errno::last()));
        }
    }
    // SAFETY: only sets close-on-exec flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    if let Err(e) = t.context.security.apply_before_exec(&t.context.ids) {
        fail(Failure {
            step: "apply security".into(),
            path: None,
            errno: e.errno(),
            detail: e.to_string(),
        });
    }
    if let Err(e) = nix::unistd::chdir(&t.context.cwd) {
        fail(Failure::sys("chdir", Some(&t.context.cwd), e));
    }
    let program = find(&argv[0], env);
    match nix::unistd::execve(&program, argv, env) {
        Ok(never) => match never {},
        Err(e) => fail(Failure::sys(
            "exec",
            Some(Path::new(&*argv[0].to_string_lossy())),
            e,
        )),
    }
}

/// execvp's search, in the container's PATH.
fn find(arg0: &CString, env: &[CString]) -> CString {
    let a = arg0.to_string_lossy();
    if a.contains('/') {
        return arg0.clone();
    }
    let path = env
        .iter()
        .filter_map(|e| e.to_str().ok())
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(super::spec::DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(&*a);
        if nix::unistd::access(&p, nix::unistd::AccessFlags::X_OK).is_ok()
            && let Ok(c) = CString::new(p.to_string_lossy().as_bytes())
        {
            return c;
        }
    }
    arg0.clone()
}

fn cstrings(v: &[String]) -> Result<Vec<CString>, Error> {
    v.iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| Error::Sys {
                step: "argument with a NUL byte",
                errno: Errno::EINVAL,
            })
        })
        .collect()
}

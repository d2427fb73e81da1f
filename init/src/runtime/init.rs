//! `berth-init`: the minimal init a container gets with `init = true`, as
//! Docker's `--init` gives tini. It is berth's own binary, executed inside
//! the container as its PID 1 under the name `berth-init`.
//!
//! It starts the program as its only child, forwards every signal it
//! receives to it (a PID 1 ignores signals it has no handler for, so
//! without an init `stop_signal` would not reach a program that has none),
//! reaps every orphan the program leaves behind, and exits with the
//! program's status (its code, or 128 + the signal that killed it).
//! Nothing else: no runtime, no allocation after start.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// The name the binary runs under as a container's init.
pub const ARGV0: &str = "berth-init";

/// Runs as init: `args` are the program's path, then its argv. Never returns.
pub fn main(args: &[std::ffi::OsString]) -> ! {
    let cargs: Vec<CString> = args
        .iter()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    let Some((program, argv)) = cargs.split_first() else {
        die("berth-init: no program given");
    };
    let all = SigSet::all();
    // Block everything: signals are taken one at a time with sigwait.
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), None);
    // SAFETY: single-threaded process; the child only resets its mask and
    // execs (or _exits), both async-signal-safe.
    let child = match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => run_child(program, argv),
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
        Err(e) => die(&format!("berth-init: fork: {e}")),
    };
    loop {
        let sig = match all.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, sig);
            continue;
        }
        // Reap everything; end when the program has ended.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => exit(code),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => exit(128 + s as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

fn run_child(program: &CStr, argv: &[CString]) -> ! {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let e = match nix::unistd::execve(program, argv, &env) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let msg = format!("berth-init: exec {}: {e}\n", program.to_string_lossy());
    let _ = nix::unistd::write(std::io::stderr(), msg.as_bytes());
    // SAFETY: _exit in the forked child, without running exit handlers.
    unsafe { libc::_exit(127) }
}

fn exit(code: i32) -> ! {
    // SAFETY: ends the process with the program's status; nothing is left
    // to flush.
    unsafe { libc::_exit(code) }
}

fn die(msg: &str) -> ! {
    let _ = nix::unistd::write(std::io::stderr(), format!("{msg}\n").as_bytes());
    exit(127)
}

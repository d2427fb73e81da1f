//! The reaper: the one place in PID 1 that waits for children.
//!
//! Every process whose parent dies is re-parented to PID 1, so PID 1 must
//! collect every exit, or zombies pile up. On SIGCHLD the reaper loops
//! `waitpid(-1, WNOHANG)` and routes each status to whoever registered the
//! pid; exits nobody asked about are orphans, counted and dropped. Nothing
//! else in berth may wait for a child (no `std::process::Command::status`,
//! no `tokio::process`), or the reaper would steal or lose its status.

use std::collections::HashMap;

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// exit(code).
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl Exit {
    /// The shell's view: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(*s)
                    .map(|s| s.as_str())
                    .unwrap_or("unknown signal");
                write!(f, "killed by {name} ({})", 128 + s)
            }
        }
    }
}

/// Routes exits to their owners.
#[derive(Debug, Default)]
pub struct Reaper {
    owners: HashMap<i32, oneshot::Sender<Exit>>,
    /// Exits that arrived before their owner registered (a child that dies
    /// before spawn returns), kept until claimed.
    early: HashMap<i32, Exit>,
    orphans: u64,
}

impl Reaper {
    /// Asks for `pid`'s exit. Register right after creating the child.
    pub fn watch(&mut self, pid: i32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        match self.early.remove(&pid) {
            Some(exit) => {
                let _ = tx.send(exit);
            }
            None => {
                self.owners.insert(pid, tx);
            }
        }
        rx
    }

    /// How many exits nobody claimed so far.
    pub fn orphans(&self) -> u64 {
        self.orphans
    }

    /// Delivers one exit.
    pub fn deliver(&mut self, pid: i32, exit: Exit) {
        match self.owners.remove(&pid) {
            Some(tx) => {
                let _ = tx.send(exit);
            }
            None => {
                self.orphans += 1;
                // Keep it briefly in case its owner is about to register;
                // bound the map so orphans cannot grow it without end.
                if self.early.len() >= 1024 {
                    self.early.clear();
                }
                self.early.insert(pid, exit);
            }
        }
    }

    /// Collects every exited child. Returns how many were reaped.
    pub fn reap(&mut self) -> usize {
        let mut n = 0;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    self.deliver(pid.as_raw(), Exit::Code(code));
                    n += 1;
                }
                Ok(WaitStatus::Signaled(pid, sig, _core)) => {
                    self.deliver(pid.as_raw(), Exit::Signal(sig as i32));
                    n += 1;
                }
                // Stopped/continued children are not exits; no child left.
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return n,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    log::warn!("waitpid: {e}");
                    return n;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_reach_their_owner_even_when_they_come_first() {
        let mut r = Reaper::default();
        let mut a = r.watch(10);
        r.deliver(10, Exit::Code(3));
        assert_eq!(a.try_recv(), Ok(Exit::Code(3)));
        r.deliver(11, Exit::Signal(9));
        let mut b = r.watch(11);
        assert_eq!(b.try_recv(), Ok(Exit::Signal(9)));
        r.deliver(12, Exit::Code(0));
        assert_eq!(r.orphans(), 2);
    }

    #[test]
    fn codes_follow_the_shell() {
        assert_eq!(Exit::Code(2).code(), 2);
        assert_eq!(Exit::Signal(9).code(), 137);
        assert_eq!(Exit::Signal(9).to_string(), "killed by SIGKILL (137)");
    }

    #[test]
    fn reaps_real_children_including_a_burst() {
        // Fork children that exit at once, then reap them all.
        let mut r = Reaper::default();
        let mut rx = Vec::new();
        for i in 0..50 {
            // SAFETY: the child only calls _exit, which is async-signal-safe.
            match unsafe { nix::unistd::fork() }.unwrap() {
                nix::unistd::ForkResult::Child => {
                    // SAFETY: _exit is always safe to call in a forked child.
                    unsafe { libc::_exit(i % 7) }
                }
                nix::unistd::ForkResult::Parent { child } => rx.push((i, r.watch(child.as_raw()))),
            }
        }
        let mut got = 0;
        while got < 50 {
            got += r.reap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for (i, mut rx) in rx {
            assert_eq!(rx.try_recv(), Ok(Exit::Code(i % 7)));
        }
    }
}

//! Spawning QEMU so that it cannot outlive the test process.
//!
//! Each QEMU gets `PR_SET_PDEATHSIG(SIGKILL)` between fork and exec. The
//! kernel delivers that signal when the *thread* that forked the child ends,
//! not the process, and test harnesses run each test on a thread of its own;
//! a `Vm` kept in a static and shared between tests would lose its QEMU when
//! the first test's thread ended. So all QEMUs are forked by one spawner
//! thread that lives as long as the process: when the process exits, aborts
//! or is killed, every QEMU it started gets SIGKILL from the kernel.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};

type Request = (Command, Sender<io::Result<Child>>);

/// Spawns `cmd` from the process-lifetime spawner thread, with
/// `PR_SET_PDEATHSIG(SIGKILL)` set in the child.
pub(crate) fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    tie_to_process(&mut cmd);
    let spawner = spawner()?;
    let (reply_tx, reply_rx) = channel();
    spawner
        .lock()
        .map_err(|_| io::Error::other("the spawner lock is poisoned"))?
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the spawner thread dropped the request"))?
}

fn spawner() -> io::Result<&'static Mutex<Sender<Request>>> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    Ok(SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Request>();
        // If the thread cannot start, requests fail with "the spawner thread
        // is gone" since `rx` is dropped with it.
        let _ = std::thread::Builder::new()
            .name("berth-qemu-spawner".into())
            .spawn(move || {
                // The sender lives in the static, so this loop only ends with
                // the process.
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
            });
        Mutex::new(tx)
    }))
}

/// Makes the child die with SIGKILL when its forking thread (the spawner,
/// living as long as the process) ends.
fn tie_to_process(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    let hook = move || -> io::Result<()> {
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and takes no
        // pointers; it only changes this (child) process's attributes.
        let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // The parent may have died before prctl: then nobody would kill us.
        // SAFETY: getppid is async-signal-safe and cannot fail.
        let ppid = unsafe { libc::getppid() };
        if u32::try_from(ppid).ok() != Some(parent) {
            // ESRCH: the test process is gone. No allocation after fork.
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe calls (prctl, getppid),
    // allocates nothing on success, and touches no state shared with the
    // parent, as required between fork and exec.
    unsafe {
        cmd.pre_exec(hook);
    }
}

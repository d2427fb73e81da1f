//! Messages between berth and a container's setup process, over a
//! SOCK_SEQPACKET socketpair (one message per packet, no framing needed).
//!
//! The child sends one [`Failure`] if a step before exec fails, then exits.
//! Its end is close-on-exec, so a successful exec shows up in the parent as
//! end-of-stream: no message means the container's program is running.
//! The parent sends one [`Go`] byte when the host side (network, later) is
//! ready; the child waits for it just before it drops privileges and execs.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, socketpair};
use serde::{Deserialize, Serialize};

/// The byte that releases the child.
pub const GO: u8 = b'G';

/// berth to the child, first: the steps outside are done (the user
/// namespace's maps, limits); set up.
pub const READY: u8 = b'R';

/// The largest message.
pub const MAX: usize = 4096;

/// A setup step that failed in the child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The step, e.g. "mount /proc", "pivot_root", "exec".
    pub step: String,
    /// The path involved, if any.
    pub path: Option<String>,
    /// errno, or 0.
    pub errno: i32,
    /// More detail, if any.
    pub detail: String,
}

impl Failure {
    /// A failure from a system call.
    pub fn sys(step: impl Into<String>, path: Option<&std::path::Path>, errno: Errno) -> Self {
        Failure {
            step: step.into(),
            path: path.map(|p| p.display().to_string()),
            errno: errno as i32,
            detail: String::new(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.step)?;
        if let Some(p) = &self.path {
            write!(f, " {p}")?;
        }
        if self.errno != 0 {
            write!(f, ": {}", Errno::from_raw(self.errno).desc())?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// A connected pair: (parent's end, child's end), both close-on-exec.
pub fn pair() -> Result<(OwnedFd, OwnedFd), Errno> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// Sends a failure (child side; best effort: the child exits next anyway).
pub fn send_failure(fd: BorrowedFd<'_>, f: &Failure) {
    if let Ok(mut bytes) = serde_json::to_vec(f) {
        bytes.truncate(MAX);
        let _ = nix::unistd::write(fd, &bytes);
    }
}

/// Decodes what the parent read: nothing (exec happened) or a failure.
pub fn decode(bytes: &[u8]) -> Option<Failure> {
    if bytes.is_empty() {
        return None;
    }
    Some(serde_json::from_slice(bytes).unwrap_or_else(|_| Failure {
        step: "setup".into(),
        path: None,
        errno: 0,
        detail: format!("unreadable message from the child ({} bytes)", bytes.len()),
    }))
}

/// A failure message already waiting on berth's end, without blocking:
/// `None` when there is none (the child is still setting up, or ran).
pub fn try_recv_failure(fd: BorrowedFd<'_>) -> Option<Failure> {
    let mut buf = vec![0u8; MAX];
    match nix::sys::socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
        Ok(n) if n > 0 => decode(&buf[..n]),
        _ => None,
    }
}

/// Tells the child that the steps outside are done.
pub fn send_ready(fd: BorrowedFd<'_>) {
    let _ = nix::unistd::write(fd, &[READY]);
}

/// Waits for [`READY`] (the steps outside are done); a [`Failure`] berth
/// sent instead (a step outside failed) is returned as the child's own.
pub fn wait_ready(fd: BorrowedFd<'_>) -> Result<(), Failure> {
    wait_for(fd, READY)
}

/// Waits for the parent's go-ahead (child side). An error or end of stream
/// means the parent gave up on this container.
pub fn wait_go(fd: BorrowedFd<'_>) -> Result<(), Failure> {
    wait_for(fd, GO)
}

/// Waits for the one-byte `word` from berth; end of stream means berth
/// withdrew the start, and anything else is read as its [`Failure`].
fn wait_for(fd: BorrowedFd<'_>, word: u8) -> Result<(), Failure> {
    let mut buf = vec![0u8; MAX];
    let refusal = |detail: &str| Failure {
        step: "wait for berth".into(),
        path: None,
        errno: 0,
        detail: detail.into(),
    };
    loop {
        return match nix::unistd::read(fd, &mut buf) {
            Ok(1) if buf[0] == word => Ok(()),
            Ok(0) => Err(refusal("berth withdrew the start")),
            Ok(n) => Err(decode(&buf[..n]).unwrap_or_else(|| refusal("unexpected message"))),
            Err(Errno::EINTR) => continue,
            Err(e) => Err(Failure::sys("wait for berth", None, e)),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn failures_round_trip_and_read_well() {
        let (a, b) = pair().unwrap();
        let f = Failure::sys(
            "exec",
            Some(std::path::Path::new("/bin/nope")),
            Errno::ENOENT,
        );
        send_failure(b.as_fd(), &f);
        let mut buf = [0u8; MAX];
        let n = nix::unistd::read(a.as_fd(), &mut buf).unwrap();
        assert_eq!(decode(&buf[..n]), Some(f.clone()));
        assert_eq!(f.to_string(), "exec /bin/nope: No such file or directory");
        assert_eq!(decode(b""), None);
    }

    #[test]
    fn a_waiting_failure_is_read_without_blocking() {
        let (a, b) = pair().unwrap();
        assert_eq!(try_recv_failure(a.as_fd()), None);
        let f = Failure::sys("find the program", None, Errno::ENOENT);
        send_failure(b.as_fd(), &f);
        assert_eq!(try_recv_failure(a.as_fd()), Some(f));
        drop(b);
        assert_eq!(try_recv_failure(a.as_fd()), None);
    }

    #[test]
    fn go_releases_and_a_closed_parent_withdraws() {
        let (a, b) = pair().unwrap();
        nix::unistd::write(&a, &[GO]).unwrap();
        assert!(wait_go(b.as_fd()).is_ok());
        drop(a);
        let e = wait_go(b.as_fd()).unwrap_err();
        assert_eq!(e.detail, "berth withdrew the start");
    }

    #[test]
    fn ready_lets_the_child_set_up_and_a_failure_outside_becomes_its_own() {
        let (a, b) = pair().unwrap();
        send_ready(a.as_fd());
        assert!(wait_ready(b.as_fd()).is_ok());
        let f = Failure::sys("write the user namespace's map", None, Errno::EPERM);
        send_failure(a.as_fd(), &f);
        assert_eq!(wait_ready(b.as_fd()), Err(f));
        // GO where READY is due is not taken for it.
        nix::unistd::write(&a, &[GO]).unwrap();
        assert!(wait_ready(b.as_fd()).is_err());
    }
}

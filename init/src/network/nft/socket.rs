//! The NETLINK_NETFILTER socket: sends a batch, reads the kernel's answer
//! to each of its messages.
//!
//! The kernel runs a batch inside `sendto` itself (netlink delivery to the
//! kernel is synchronous): when the call returns the transaction is
//! committed or aborted, and every acknowledgement is already queued on
//! the socket. They are then read without waiting.
//!
//! The socket is kept open for the next batch, one per thread and network
//! namespace: closing a netfilter socket makes the kernel wait for the
//! last commit's deferred clean-up (an RCU grace period, ~12 ms on the
//! development host), while a commit itself takes well under a
//! millisecond for berth's rules.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use super::Error;
use super::msg::Batch;
use super::uapi::*;

/// Room in the receive buffer per acknowledgement: one small skb each.
const ACK_ROOM: usize = 2048;

thread_local! {
    /// The open socket, and the network namespace it belongs to.
    static SOCKET: RefCell<Option<(Netns, OwnedFd)>> = const { RefCell::new(None) };
}

/// A network namespace's identity: its nsfs device and inode.
type Netns = (u64, u64);

fn current_netns() -> Option<Netns> {
    let m = std::fs::metadata("/proc/thread-self/ns/net").ok()?;
    Some((m.dev(), m.ino()))
}

/// Sends `batch` as one transaction and checks the kernel's answers.
pub(super) fn commit(batch: &Batch) -> Result<(), Error> {
    let netns = current_netns();
    let cached = SOCKET.with(|s| match s.borrow_mut().take() {
        Some((ns, fd)) if Some(ns) == netns => Some(fd),
        _ => None,
    });
    let fd = match cached {
        Some(fd) => fd,
        None => open()?,
    };
    let result = exchange(&fd, batch);
    // A socket that failed is not trusted again: the next batch opens
    // another. A refusal by the kernel leaves the socket sound.
    if let (Some(ns), Ok(()) | Err(Error::Refused { .. })) = (netns, &result) {
        SOCKET.with(|s| *s.borrow_mut() = Some((ns, fd)));
    }
    result
}

fn exchange(fd: &OwnedFd, batch: &Batch) -> Result<(), Error> {
    let bytes = batch.to_bytes();
    size_buffers(fd, bytes.len(), batch.len()).map_err(Error::Socket)?;
    // Nothing should be queued; whatever is belongs to no batch of ours.
    receive(fd).map_err(Error::Receive)?;
    send(fd, &bytes).map_err(|source| Error::Send {
        messages: batch.len(),
        bytes: bytes.len(),
        source,
    })?;
    let answers = receive(fd).map_err(Error::Receive)?;
    check(batch, &answers)
}

/// The kernel's answer to one message: its sequence number, the errno
/// (0 for success), and the extended ack's text if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    pub seq: u32,
    pub errno: i32,
    pub msg: Option<String>,
}

/// The first refusal, else success if every message was answered.
pub(super) fn check(batch: &Batch, answers: &[Answer]) -> Result<(), Error> {
    if let Some(a) = answers
        .iter()
        .filter(|a| a.errno != 0)
        .min_by_key(|a| a.seq)
    {
        return Err(Error::Refused {
            op: batch.op(a.seq),
            source: io::Error::from_raw_os_error(a.errno),
            detail: detail(a),
        });
    }
    let expected = batch.len();
    let mut seen: Vec<u32> = answers.iter().map(|a| a.seq).collect();
    seen.sort_unstable();
    seen.dedup();
    let answered = seen
        .iter()
        .filter(|&&s| s >= 1 && (s as usize) <= expected)
        .count();
    if answered == expected {
        Ok(())
    } else {
        Err(Error::Unanswered {
            answered,
            sent: expected,
        })
    }
}

fn detail(a: &Answer) -> String {
    let mut d = String::new();
    if let Some(msg) = &a.msg {
        d.push_str(&format!(" ({msg})"));
    }
    if a.errno == libc::ENOENT || a.errno == libc::EOPNOTSUPP {
        d.push_str("; is a kernel module missing? apply needs network::nft::MODULES");
    }
    d
}

fn open() -> Result<OwnedFd, Error> {
    // SAFETY: plain system call with constant arguments; the result is
    // checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    if raw < 0 {
        return Err(Error::Socket(io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a descriptor just opened and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Errors carry only the original header, not the whole message back;
    // the kernel may add a text explaining them.
    setsockopt(&fd, libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1).map_err(Error::Socket)?;
    setsockopt(&fd, libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, 1).map_err(Error::Socket)?;
    Ok(fd)
}

/// Makes room for the whole batch in one datagram, and for one
/// acknowledgement per message (the kernel doubles these values). The
/// FORCE variants pass the system's maxima, as root (CAP_NET_ADMIN, which
/// nf_tables needs anyway); the others are the fallback.
fn size_buffers(fd: &OwnedFd, bytes: usize, messages: usize) -> io::Result<()> {
    let snd = clamp(bytes + 65536);
    let rcv = clamp((messages + 2) * ACK_ROOM + 65536);
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, snd)
        .or_else(|_| setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, snd))?;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcv)
        .or_else(|_| setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcv))
}

fn clamp(n: usize) -> libc::c_int {
    libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX)
}

fn setsockopt(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live c_int of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn send(fd: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_nl is valid (family set below; pid 0 is
    // the kernel).
    let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    loop {
        // SAFETY: `bytes` and `to` are live for the call, with the lengths
        // passed.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n >= 0 {
            return if n as usize == bytes.len() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "sent {n} of {} bytes",
                    bytes.len()
                )))
            };
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reads every queued datagram, without waiting.
fn receive(fd: &OwnedFd) -> io::Result<Vec<Answer>> {
    let mut answers = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: `buf` is live and writable for its whole length.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(answers),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
        parse(&buf[..n as usize], &mut answers);
    }
}

/// Collects the NLMSG_ERROR messages (acknowledgements are errors with
/// errno 0) of one datagram.
pub(super) fn parse(mut data: &[u8], out: &mut Vec<Answer>) {
    while data.len() >= NLMSG_HDRLEN {
        let len = u32_at(data, 0) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            return;
        }
        let ty = u16::from_ne_bytes([data[4], data[5]]);
        let flags = u16::from_ne_bytes([data[6], data[7]]);
        let seq = u32_at(data, 8);
        let body = &data[NLMSG_HDRLEN..len];
        if ty == NLMSG_ERROR && body.len() >= 4 {
            let errno = -i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
            // With NETLINK_CAP_ACK the original message is cut to its
            // header, except for a success without TLVs; TLVs follow.
            let mut msg = None;
            if flags & NLM_F_ACK_TLVS != 0 && body.len() >= 4 + NLMSG_HDRLEN {
                msg = ext_ack_msg(&body[4 + NLMSG_HDRLEN..]);
            }
            out.push(Answer { seq, errno, msg });
        }
        let next = (len + 3) & !3;
        data = &data[next.min(data.len())..];
    }
}

fn ext_ack_msg(mut tlvs: &[u8]) -> Option<String> {
    while tlvs.len() >= NLA_HDRLEN {
        let len = usize::from(u16::from_ne_bytes([tlvs[0], tlvs[1]]));
        let ty = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & !NLA_F_NESTED;
        if len < NLA_HDRLEN || len > tlvs.len() {
            return None;
        }
        if ty == NLMSGERR_ATTR_MSG {
            let text = &tlvs[NLA_HDRLEN..len];
            let text = text.split(|&b| b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        tlvs = &tlvs[((len + 3) & !3).min(tlvs.len())..];
    }
    None
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(seq: u32, errno: i32, tlv_msg: Option<&str>) -> Vec<u8> {
        let mut body = (-errno).to_ne_bytes().to_vec();
        // the original header, capped
        body.extend_from_slice(&[0u8; NLMSG_HDRLEN]);
        let mut flags = 0u16;
        if let Some(m) = tlv_msg {
            flags |= NLM_F_ACK_TLVS;
            super::super::msg::put(&mut body, NLMSGERR_ATTR_MSG, &[m.as_bytes(), &[0]].concat());
        }
        let mut out = ((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes().to_vec();
        out.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn batch(n: usize) -> Batch {
        let mut b = Batch::new();
        for i in 0..n {
            b.push(NFT_MSG_NEWTABLE, 0, format!("message {}", i + 1), |_| {});
        }
        b
    }

    #[test]
    fn every_message_acknowledged_is_success() {
        let mut answers = Vec::new();
        let datagram = [ack(1, 0, None), ack(2, 0, None), ack(3, 0, None)].concat();
        parse(&datagram, &mut answers);
        assert_eq!(answers.len(), 3);
        check(&batch(3), &answers).unwrap();
    }

    #[test]
    fn a_missing_acknowledgement_is_an_error() {
        let mut answers = Vec::new();
        parse(&[ack(1, 0, None), ack(3, 0, None)].concat(), &mut answers);
        let e = check(&batch(3), &answers).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the kernel answered 2 of 3 nftables messages"
        );
    }

    #[test]
    fn the_first_refusal_names_its_message_errno_and_text() {
        let mut answers = Vec::new();
        let datagram = [
            ack(1, 0, None),
            ack(3, libc::EINVAL, None),
            ack(2, libc::ENOENT, Some("chain not found")),
        ]
        .concat();
        parse(&datagram, &mut answers);
        let e = check(&batch(3), &answers).unwrap_err().to_string();
        assert!(e.starts_with("nftables refused message 2: "), "{e}");
        assert!(e.contains("No such file or directory"), "{e}");
        assert!(e.contains("(chain not found)"), "{e}");
        assert!(e.contains("MODULES"), "{e}");
    }

    #[test]
    fn a_refused_batch_begin_is_reported_as_such() {
        let mut answers = Vec::new();
        parse(&ack(0, libc::EPERM, None), &mut answers);
        let e = check(&batch(2), &answers).unwrap_err().to_string();
        assert!(
            e.starts_with("nftables refused begin the nftables batch: "),
            "{e}"
        );
        assert!(e.contains("Operation not permitted"), "{e}");
    }

    #[test]
    fn truncated_input_is_ignored() {
        let mut answers = Vec::new();
        let datagram = ack(1, 0, None);
        parse(&datagram[..datagram.len() - 1], &mut answers);
        parse(&datagram[..7], &mut answers);
        assert!(answers.is_empty());
    }
}

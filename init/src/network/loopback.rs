//! `lo`, brought up with one ioctl: in the host's namespace at boot and in
//! each container's own network namespace, where it starts down. Setting a
//! flag needs no netlink connection, whose first use (a link dump parsed by
//! rtnetlink) costs PID 1 tens of milliseconds while the first containers
//! are being set up.

use std::os::fd::AsRawFd;

use nix::errno::Errno;

/// Brings up `lo` in the calling thread's network namespace (a no-op when
/// it is already up).
pub fn up() -> Result<(), Errno> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; zeroed is a valid empty request.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills req.ifr_ifru with the flags of the
    // interface named in req; the pointer is to our own ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the union's flags member is the one SIOCGIFFLAGS just set.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads our ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

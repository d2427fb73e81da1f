//! Devices as they appear: kernel uevents, plus a sysfs scan for what was
//! there before berth listened. There is no udev on berth's image; this is
//! the little of it berth needs (the control port, the power button, and
//! later block devices).

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, setsockopt,
    socket, sockopt,
};
use tokio::io::unix::AsyncFd;

/// A device event from the kernel, or from the initial scan (as `add`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    /// `add`, `remove`, `change`, ...
    pub action: String,
    /// The subsystem, e.g. `input`, `virtio-ports`, `block`.
    pub subsystem: String,
    /// The node under /dev, e.g. `input/event1`, if the device has one.
    pub devname: Option<String>,
    /// All the event's variables.
    pub vars: BTreeMap<String, String>,
}

impl Uevent {
    /// Parses one kernel uevent datagram: `action@devpath\0KEY=VALUE\0...`.
    /// Returns `None` for anything else (e.g. udev's own messages).
    pub fn parse(buf: &[u8]) -> Option<Uevent> {
        let mut parts = buf.split(|b| *b == 0).filter(|p| !p.is_empty());
        let head = std::str::from_utf8(parts.next()?).ok()?;
        if !head.contains('@') {
            return None;
        }
        let vars: BTreeMap<String, String> = parts
            .filter_map(|p| std::str::from_utf8(p).ok())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Uevent {
            action: vars.get("ACTION")?.clone(),
            subsystem: vars.get("SUBSYSTEM")?.clone(),
            devname: vars.get("DEVNAME").cloned(),
            vars,
        })
    }
}

/// A socket subscribed to kernel uevents.
pub struct Listener {
    fd: AsyncFd<OwnedFd>,
}

impl Listener {
    /// Subscribes. Open it before loading drivers, then [`scan`], so that no
    /// device is missed.
    pub fn open() -> std::io::Result<Listener> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkKObjectUEvent,
        )?;
        // Group 1 carries the kernel's own events.
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1))?;
        // A burst of events (many devices at once) must not overflow.
        let _ = setsockopt(&fd, sockopt::RcvBufForce, &(1 << 20));
        Ok(Listener {
            fd: crate::sys::async_fd(fd)?,
        })
    }

    /// The next event.
    pub async fn next(&self) -> std::io::Result<Uevent> {
        let mut buf = vec![0u8; 8192];
        loop {
            let mut guard = self.fd.readable().await?;
            let got = guard.try_io(|fd| {
                recv(fd.get_ref().as_raw_fd(), &mut buf, MsgFlags::empty())
                    .map_err(std::io::Error::from)
            });
            match got {
                Ok(Ok(n)) => {
                    if let Some(ev) = Uevent::parse(&buf[..n]) {
                        return Ok(ev);
                    }
                }
                // ENOBUFS: events were lost; the caller rescans on demand.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    log::warn!("device events overflowed; some may be missed");
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}

/// The devices of `subsystem` present now, as `add` events, read from
/// /sys/class/<subsystem>/*/uevent.
pub fn scan(subsystem: &str) -> Vec<Uevent> {
    let dir = std::path::Path::new("/sys/class").join(subsystem);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<Uevent> = entries
        .flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join("uevent")).ok()?;
            let mut raw = format!("add@/class/{subsystem}\0ACTION=add\0SUBSYSTEM={subsystem}\0");
            for line in text.lines() {
                raw.push_str(line);
                raw.push('\0');
            }
            Uevent::parse(raw.as_bytes())
        })
        .collect();
    out.sort_by(|a, b| a.devname.cmp(&b.devname));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_events() {
        let raw = b"add@/devices/LNXSYSTM:00/LNXPWRBN:00/input/input0/event0\0ACTION=add\0DEVPATH=/devices/LNXSYSTM:00/LNXPWRBN:00/input/input0/event0\0SUBSYSTEM=input\0MAJOR=13\0MINOR=64\0DEVNAME=input/event0\0SEQNUM=1234\0";
        let ev = Uevent::parse(raw).unwrap();
        assert_eq!(ev.action, "add");
        assert_eq!(ev.subsystem, "input");
        assert_eq!(ev.devname.as_deref(), Some("input/event0"));
        assert_eq!(ev.vars["MAJOR"], "13");
    }

    #[test]
    fn ignores_udev_and_garbage() {
        assert!(Uevent::parse(b"libudev\0\xfe\xed\xca\xfe").is_none());
        assert!(Uevent::parse(b"").is_none());
        assert!(Uevent::parse(b"change@/x\0ACTION=change\0").is_none());
    }
}

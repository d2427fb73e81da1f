//! A thin wrapper over rtnetlink: links found by name, index or MAC, and
//! the few changes berth makes to links, addresses and routes.
//!
//! "Not found" is an answer, not an error: lookups return `Option`.
//! Adding an address or route that exists is success (routes are
//! replaced). Every error names the operation and the interface.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// Why a netlink request failed.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// cannot open a netlink socket: {0}
    Socket(std::io::Error),
    /// cannot enter the network namespace of pid {pid}: {source}
    Netns {
        /// The process whose namespace it is.
        pid: i32,
        /// The error.
        source: std::io::Error,
    },
    /// {op} {target}: {source}
    Request {
        /// What was being done.
        op: &'static str,
        /// The interface, address or route.
        target: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// {op} {target}: not found
    NotFound {
        /// What was being done.
        op: &'static str,
        /// What was missing.
        target: String,
    },
}

/// How to find a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkFilter {
    /// By name.
    Name(String),
    /// By index.
    Index(u32),
    /// By hardware address.
    Mac([u8; 6]),
}

impl std::fmt::Display for LinkFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkFilter::Name(n) => f.write_str(n),
            LinkFilter::Index(i) => write!(f, "link #{i}"),
            LinkFilter::Mac(m) => write!(
                f,
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
        }
    }
}

/// What berth needs to know of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its hardware address, if it has one.
    pub mac: Option<[u8; 6]>,
    /// Whether it is administratively up.
    pub up: bool,
    /// Whether it has a carrier.
    pub running: bool,
}

impl Link {
    fn from_message(m: &LinkMessage) -> Link {
        let mut name = String::new();
        let mut mac = None;
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => name = n.clone(),
                LinkAttribute::Address(a) if a.len() == 6 => {
                    let mut b = [0u8; 6];
                    b.copy_from_slice(a);
                    mac = Some(b);
                }
                _ => {}
            }
        }
        Link {
            index: m.header.index,
            name,
            mac,
            up: m.header.flags.contains(LinkFlags::Up),
            running: m.header.flags.contains(LinkFlags::Running),
        }
    }

    /// Whether the link matches `f`.
    pub fn matches(&self, f: &LinkFilter) -> bool {
        match f {
            LinkFilter::Name(n) => &self.name == n,
            LinkFilter::Index(i) => self.index == *i,
            LinkFilter::Mac(m) => self.mac.as_ref() == Some(m),
        }
    }
}

/// A connection to the kernel's routing netlink, in one network namespace.
///
/// The kernel runs one dump at a time per socket and answers a second with
/// EBUSY (pitfall 11), so dumps (listing all links or addresses) take turns
/// through `dumps`; lookups by name or index are single requests.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    dumps: std::rc::Rc<tokio::sync::Mutex<()>>,
}

impl Netlink {
    /// Connects in the caller's network namespace. Must run in the event
    /// loop: the connection is a task on it.
    pub fn new() -> Result<Netlink, Error> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
        tokio::task::spawn_local(conn);
        Ok(Netlink {
            handle,
            dumps: Default::default(),
        })
    }

    /// Connects in the network namespace of process `pid` (a container's).
    /// PID 1 is single-threaded: it steps into the namespace only to open
    /// the socket, which stays bound to it, and steps back at once.
    pub fn in_netns_of(pid: i32) -> Result<Netlink, Error> {
        let netns_err = |source| Error::Netns { pid, source };
        let own = std::fs::File::open("/proc/self/ns/net").map_err(netns_err)?;
        let target = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(netns_err)?;
        setns(&target).map_err(netns_err)?;
        let made = rtnetlink::new_connection().map_err(Error::Socket);
        // Step back whatever happened; failing that would leave PID 1 in
        // a container's namespace, which must not go unnoticed.
        if let Err(e) = setns(&own) {
            crate::power::fatal::fatal(&format!(
                "network: cannot return to the host's namespace: {e}"
            ));
        }
        let (conn, handle, _) = made?;
        tokio::task::spawn_local(conn);
        Ok(Netlink {
            handle,
            dumps: Default::default(),
        })
    }

    /// Every link.
    pub async fn links(&self) -> Result<Vec<Link>, Error> {
        let _turn = self.dumps.lock().await;
        let mut out = Vec::new();
        let mut s = self.handle.link().get().execute();
        loop {
            match s.try_next().await {
                Ok(Some(m)) => out.push(Link::from_message(&m)),
                Ok(None) => return Ok(out),
                Err(source) => {
                    return Err(Error::Request {
                        op: "list links",
                        target: String::new(),
                        source,
                    });
                }
            }
        }
    }

    /// The link matching `f`, if there is one.
    pub async fn link(&self, f: &LinkFilter) -> Result<Option<Link>, Error> {
        let req = self.handle.link().get();
        let req = match f {
            LinkFilter::Name(n) => req.match_name(n.clone()),
            LinkFilter::Index(i) => req.match_index(*i),
            LinkFilter::Mac(_) => {
                return Ok(self.links().await?.into_iter().find(|l| l.matches(f)));
            }
        };
        match req.execute().try_next().await {
            Ok(Some(m)) => Ok(Some(Link::from_message(&m))),
            Ok(None) => Ok(None),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(source) => Err(Error::Request {
                op: "look up link",
                target: f.to_string(),
                source,
            }),
        }
    }

    /// The link matching `f`, or a NotFound error for `op`.
    pub async fn require(&self, op: &'static str, f: &LinkFilter) -> Result<Link, Error> {
        self.link(f).await?.ok_or_else(|| Error::NotFound {
            op,
            target: f.to_string(),
        })
    }

    async fn set(&self, op: &'static str, target: &str, m: LinkMessage) -> Result<(), Error> {
        self.handle
            .link()
            .set(m)
            .execute()
            .await
            .map_err(|source| Error::Request {
                op,
                target: target.to_string(),
                source,
            })
    }

    /// Brings a link up.
    pub async fn up(&self, l: &Link) -> Result<(), Error> {
        self.set(
            "bring up",
            &l.name,
            LinkUnspec::new_with_index(l.index).up().build(),
        )
        .await
    }

    /// Sets a link's MTU.
    pub async fn set_mtu(&self, l: &Link, mtu: u32) -> Result<(), Error> {
        self.set(
            "set the MTU of",
            &l.name,
            LinkUnspec::new_with_index(l.index).mtu(mtu).build(),
        )
        .await
    }

    /// Renames a (down) link.
    pub async fn rename(&self, l: &Link, name: &str) -> Result<(), Error> {
        self.set(
            "rename",
            &l.name,
            LinkUnspec::new_with_index(l.index).name(name).build(),
        )
        .await
    }

    /// Makes `l` a port of the bridge `master`.
    pub async fn set_master(&self, l: &Link, master: &Link) -> Result<(), Error> {
        self.set(
            "attach to a bridge",
            &l.name,
            LinkUnspec::new_with_index(l.index)
                .controller(master.index)
                .build(),
        )
        .await
    }

    /// Moves a link into the network namespace of process `pid`.
    pub async fn move_to_netns_of(&self, l: &Link, pid: i32) -> Result<(), Error> {
        self.set(
            "move into a container",
            &l.name,
            LinkUnspec::new_with_index(l.index)
                .setns_by_pid(pid as u32)
                .build(),
        )
        .await
    }

    /// Creates a bridge (an existing one is fine) and returns it.
    pub async fn ensure_bridge(&self, name: &str) -> Result<Link, Error> {
        let f = LinkFilter::Name(name.to_string());
        if let Some(l) = self.link(&f).await? {
            return Ok(l);
        }
        self.handle
            .link()
            .add(LinkBridge::new(name).build())
            .execute()
            .await
            .map_err(|source| Error::Request {
                op: "create bridge",
                target: name.to_string(),
                source,
            })?;
        self.require("create bridge", &f).await
    }

    /// Creates a veth pair.
    pub async fn add_veth(&self, name: &str, peer: &str) -> Result<(), Error> {
        self.handle
            .link()
            .add(LinkVeth::new(name, peer).build())
            .execute()
            .await
            .map_err(|source| Error::Request {
                op: "create veth pair",
                target: format!("{name}/{peer}"),
                source,
            })
    }

    /// Deletes a link; one already gone is fine.
    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        let Some(l) = self.link(&LinkFilter::Name(name.to_string())).await? else {
            return Ok(());
        };
        match self.handle.link().del(l.index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
            Err(source) => Err(Error::Request {
                op: "delete",
                target: name.to_string(),
                source,
            }),
        }
    }

    /// Adds an address to a link (one already there is fine).
    pub async fn add_address(&self, l: &Link, addr: IpAddr, prefix: u8) -> Result<(), Error> {
        match self
            .handle
            .address()
            .add(l.index, addr, prefix)
            .replace()
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
            Err(source) => Err(Error::Request {
                op: "add address",
                target: format!("{addr}/{prefix} on {}", l.name),
                source,
            }),
        }
    }

    /// Deletes every address of `l` equal to `addr`; none is fine.
    pub async fn del_address(&self, l: &Link, addr: IpAddr) -> Result<(), Error> {
        let turn = self.dumps.lock().await;
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(l.index)
            .set_address_filter(addr)
            .execute();
        let mut found = Vec::new();
        while let Some(m) = s.try_next().await.map_err(|source| Error::Request {
            op: "list addresses of",
            target: l.name.clone(),
            source,
        })? {
            found.push(m);
        }
        drop(turn);
        for m in found {
            match self.handle.address().del(m).execute().await {
                Ok(()) => {}
                Err(e) if is_errno(&e, libc::EADDRNOTAVAIL) => {}
                Err(source) => {
                    return Err(Error::Request {
                        op: "delete address",
                        target: format!("{addr} on {}", l.name),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Adds or replaces a route: to `dest` (`None`: the default route) via
    /// `gateway` (`None`: on-link) out of `l`.
    pub async fn replace_route(
        &self,
        l: &Link,
        dest: Option<(IpAddr, u8)>,
        gateway: Option<IpAddr>,
        metric: Option<u32>,
    ) -> Result<(), Error> {
        let target = format!(
            "{} via {} dev {}",
            dest.map_or("default".to_string(), |(a, p)| format!("{a}/{p}")),
            gateway.map_or("(on-link)".to_string(), |g| g.to_string()),
            l.name
        );
        let msg = match (dest.map(|d| d.0), gateway) {
            (Some(IpAddr::V6(_)), _) | (None, Some(IpAddr::V6(_))) => {
                let mut b =
                    RouteMessageBuilder::<std::net::Ipv6Addr>::new().output_interface(l.index);
                if let Some((IpAddr::V6(a), p)) = dest {
                    b = b.destination_prefix(a, p);
                }
                if let Some(IpAddr::V6(g)) = gateway {
                    b = b.gateway(g);
                }
                if let Some(m) = metric {
                    b = b.priority(m);
                }
                b.build()
            }
            _ => {
                let mut b =
                    RouteMessageBuilder::<std::net::Ipv4Addr>::new().output_interface(l.index);
                if let Some((IpAddr::V4(a), p)) = dest {
                    b = b.destination_prefix(a, p);
                }
                if let Some(IpAddr::V4(g)) = gateway {
                    b = b.gateway(g);
                }
                if let Some(m) = metric {
                    b = b.priority(m);
                }
                b.build()
            }
        };
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|source| Error::Request {
                op: "add route",
                target,
                source,
            })
    }
}

/// Whether a netlink error is the kernel's `errno`.
pub fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.raw_code() == -errno,
        _ => false,
    }
}

fn setns(f: &std::fs::File) -> std::io::Result<()> {
    // SAFETY: setns with a namespace file we hold open; it changes only
    // the calling thread's network namespace, and PID 1 has one thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_and_name_links() {
        let l = Link {
            index: 3,
            name: "eth0".into(),
            mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            up: true,
            running: true,
        };
        assert!(l.matches(&LinkFilter::Name("eth0".into())));
        assert!(l.matches(&LinkFilter::Index(3)));
        assert!(l.matches(&LinkFilter::Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56])));
        assert!(!l.matches(&LinkFilter::Name("eth1".into())));
        assert_eq!(
            LinkFilter::Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]).to_string(),
            "52:54:00:12:34:56"
        );
    }
}

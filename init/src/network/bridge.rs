//! The container bridge: one bridge on the host with the subnet's first
//! address, and per container a veth pair whose host end is a port of the
//! bridge and whose other end becomes `eth0` in the container, with its
//! address and a default route through the bridge.
//!
//! A container's veth is named from its name (`vb` + 8 hex digits of a
//! hash), so a stale one from a crashed start is found and replaced. When a
//! container's network namespace dies, the kernel deletes the pair; berth
//! deletes it itself only when a start fails half-way.

use std::net::{IpAddr, Ipv4Addr};

use super::netlink::{Error, Link, LinkFilter, Netlink};

/// Modules the bridge and veth pairs need.
pub const MODULES: [&str; 2] = ["bridge", "veth"];

/// What one container's attachment is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The container.
    pub container: String,
    /// The host end of the veth pair.
    pub host_veth: String,
    /// The container end, before it is renamed `eth0`.
    pub peer_veth: String,
    /// The container's address.
    pub ip: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The bridge's address, the container's default gateway.
    pub gateway: Ipv4Addr,
}

/// The prefix of the host ends of containers' veth pairs.
pub const HOST_PREFIX: &str = "vb";

/// The veth names of a container: `vb…` on the host, `vc…` before it moves.
pub fn veth_names(container: &str) -> (String, String) {
    let h = container.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (format!("{HOST_PREFIX}{h:08x}"), format!("vc{h:08x}"))
}

impl Attachment {
    /// The attachment of `container` at `ip`.
    pub fn new(container: &str, ip: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> Attachment {
        let (host_veth, peer_veth) = veth_names(container);
        Attachment {
            container: container.to_string(),
            host_veth,
            peer_veth,
            ip,
            prefix,
            gateway,
        }
    }
}

/// Creates the bridge if needed, gives it `gateway/prefix` and brings it up.
pub async fn ensure(
    nl: &Netlink,
    name: &str,
    gateway: Ipv4Addr,
    prefix: u8,
) -> Result<Link, Error> {
    let br = nl.ensure_bridge(name).await?;
    nl.add_address(&br, IpAddr::V4(gateway), prefix).await?;
    nl.up(&br).await?;
    Ok(br)
}

/// Connects the container whose PID 1 is `pid` to the bridge. On failure
/// nothing is left: the pair is deleted.
pub async fn attach(nl: &Netlink, bridge: &str, a: &Attachment, pid: i32) -> Result<(), Error> {
    let r = attach_inner(nl, bridge, a, pid).await;
    if r.is_err() {
        let _ = nl.delete(&a.host_veth).await;
    }
    r
}

async fn attach_inner(nl: &Netlink, bridge: &str, a: &Attachment, pid: i32) -> Result<(), Error> {
    // A pair left by a crashed start of the same container goes first.
    nl.delete(&a.host_veth).await?;
    nl.add_veth(&a.host_veth, &a.peer_veth).await?;
    let br = nl
        .require(
            "attach to the bridge",
            &LinkFilter::Name(bridge.to_string()),
        )
        .await?;
    let host = nl
        .require(
            "attach to the bridge",
            &LinkFilter::Name(a.host_veth.clone()),
        )
        .await?;
    let peer = nl
        .require(
            "move into the container",
            &LinkFilter::Name(a.peer_veth.clone()),
        )
        .await?;
    nl.set_master(&host, &br).await?;
    nl.up(&host).await?;
    nl.move_to_netns_of(&peer, pid).await?;

    let inside = Netlink::in_netns_of(pid)?;
    let peer = inside
        .require(
            "configure in the container",
            &LinkFilter::Name(a.peer_veth.clone()),
        )
        .await?;
    inside.rename(&peer, "eth0").await?;
    let eth0 = inside
        .require(
            "configure in the container",
            &LinkFilter::Name("eth0".into()),
        )
        .await?;
    inside
        .add_address(&eth0, IpAddr::V4(a.ip), a.prefix)
        .await?;
    inside.up(&eth0).await?;
    inside
        .replace_route(&eth0, None, Some(IpAddr::V4(a.gateway)), None)
        .await
}

/// Removes a container's veth pair, if it is still there.
pub async fn detach(nl: &Netlink, container: &str) -> Result<(), Error> {
    nl.delete(&veth_names(container).0).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_ifnamsiz_and_differ_per_container() {
        let (h, p) = veth_names("a-container-with-a-rather-long-name");
        assert_eq!(h.len(), 10);
        assert!(h.starts_with("vb") && p.starts_with("vc"));
        assert_eq!(h[2..], p[2..]);
        assert_ne!(veth_names("web").0, veth_names("db").0);
        assert_eq!(veth_names("web"), veth_names("web"));
    }
}

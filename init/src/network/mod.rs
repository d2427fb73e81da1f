//! Networking, all through netlink: host interfaces, the container bridge
//! with a veth pair per container, addresses from a deterministic IPAM,
//! NAT and published ports in nftables, and names between containers.

pub mod netlink;

/// The host network's state, as containers that need it wait on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostNetState {
    /// Interfaces are being configured (a DHCP lease is being sought).
    Configuring,
    /// Every interface of the manifest is configured (or there are none).
    Up,
    /// Configuration failed; containers start without waiting further.
    Failed(String),
}

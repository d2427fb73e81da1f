//! Networking, all through netlink: host interfaces, the container bridge
//! with a veth pair per container, addresses from a deterministic IPAM,
//! NAT and published ports in nftables, and names between containers.

pub mod dhcp;
pub mod host;
pub mod ipam;
pub mod netlink;
pub mod nft;
pub mod resolv;

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

pub mod bridge;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use berth_config::{Container, NetworkMode};

/// Where the address book is kept across reboots.
pub const IPAM_STATE: &str = "/var/lib/berth/network/ipam";

/// The containers' side of the network: the bridge and its address book.
pub struct ContainerNet {
    nl: netlink::Netlink,
    bridge: String,
    ipam: ipam::Ipam,
    state: PathBuf,
}

/// Whether a container is on the bridge.
pub fn on_bridge(c: &Container) -> bool {
    c.network_mode == NetworkMode::Bridge
}

impl ContainerNet {
    /// Creates the bridge and gives every bridge container of the manifest
    /// its address. Runs in the event loop.
    pub async fn start(
        cfg: &berth_config::Network,
        containers: &[Container],
        state: PathBuf,
    ) -> Result<ContainerNet, String> {
        let dir = crate::boot::modules::release_dir();
        let index = crate::boot::modules::Index::read(&dir);
        let names: Vec<String> = bridge::MODULES.iter().map(|m| m.to_string()).collect();
        for e in crate::boot::modules::load_all(&dir, &index, &names).1 {
            log::warn!("{e}");
        }
        let mut ipam = ipam::Ipam::new(cfg.bridge.subnet).map_err(|e| e.to_string())?;
        ipam.load(&state);
        ipam.retain(|n| containers.iter().any(|c| c.name == n && on_bridge(c)));
        for c in containers.iter().filter(|c| on_bridge(c)) {
            ipam.assign(&c.name).map_err(|e| e.to_string())?;
        }
        if let Err(e) = ipam.save(&state) {
            log::warn!("cannot save the address book {}: {e}", state.display());
        }
        let nl = netlink::Netlink::new().map_err(|e| e.to_string())?;
        bridge::ensure(&nl, &cfg.bridge.name, ipam.gateway(), ipam.prefix())
            .await
            .map_err(|e| e.to_string())?;
        log::info!(
            "bridge {} at {}/{}",
            cfg.bridge.name,
            ipam.gateway(),
            ipam.prefix()
        );
        Ok(ContainerNet {
            nl,
            bridge: cfg.bridge.name.clone(),
            ipam,
            state,
        })
    }

    /// A container's address on the bridge.
    pub fn ip(&self, name: &str) -> Option<Ipv4Addr> {
        self.ipam.get(name)
    }

    /// The /etc/hosts entries every bridge container gets: each bridge
    /// container by name and hostname.
    pub fn hosts(&self, containers: &[Container]) -> Vec<(IpAddr, Vec<String>)> {
        containers
            .iter()
            .filter_map(|c| {
                let ip = self.ipam.get(&c.name)?;
                let mut names = vec![c.name.clone()];
                if let Some(h) = c.hostname.as_ref().filter(|h| **h != c.name) {
                    names.push(h.clone());
                }
                Some((IpAddr::V4(ip), names))
            })
            .collect()
    }

    /// What connecting `name` takes, giving it an address if it has none.
    pub fn attachment(&mut self, name: &str) -> Result<bridge::Attachment, String> {
        let known = self.ipam.get(name).is_some();
        let ip = self.ipam.assign(name).map_err(|e| e.to_string())?;
        if !known && let Err(e) = self.ipam.save(&self.state) {
            log::warn!("cannot save the address book {}: {e}", self.state.display());
        }
        Ok(bridge::Attachment::new(
            name,
            ip,
            self.ipam.prefix(),
            self.ipam.gateway(),
        ))
    }

    /// A netlink handle in the host's namespace, and the bridge's name.
    pub fn link(&self) -> (netlink::Netlink, String) {
        (self.nl.clone(), self.bridge.clone())
    }

    /// Frees a removed container's address.
    pub fn release(&mut self, name: &str) {
        self.ipam.release(name);
        if let Err(e) = self.ipam.save(&self.state) {
            log::warn!("cannot save the address book {}: {e}", self.state.display());
        }
    }

    /// Removes the bridge at shutdown.
    pub async fn shutdown(&self) {
        if let Err(e) = self.nl.delete(&self.bridge).await {
            log::warn!("bridge {}: {e}", self.bridge);
        }
    }
}

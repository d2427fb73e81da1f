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

/// Saves the address book (a full disk is reported by
/// [`crate::storage::full`], once for all of berth's writes).
fn save(ipam: &ipam::Ipam, state: &std::path::Path) {
    if let Err(e) = ipam.save(state)
        && !crate::storage::full::is_no_space(&e)
    {
        log::warn!("cannot save the address book {}: {e}", state.display());
    }
}

/// The containers' side of the network: the bridge, its address book, and
/// the NAT table (masquerade, and the published ports of the containers
/// that run).
pub struct ContainerNet {
    nl: netlink::Netlink,
    bridge: String,
    ipam: ipam::Ipam,
    state: PathBuf,
    masquerade: bool,
    /// Published ports of running containers, by container.
    published: std::collections::BTreeMap<String, Vec<nft::Published>>,
}

/// A container's published ports as nftables rules, at its address.
pub fn published(c: &Container, ip: Ipv4Addr) -> Vec<nft::Published> {
    c.ports
        .iter()
        .filter_map(|p| {
            let host_ip = match p.host_ip {
                None => None,
                Some(IpAddr::V4(a)) if a.is_unspecified() => None,
                Some(IpAddr::V4(a)) => Some(a),
                // The NAT table is IPv4; an IPv6 binding is reported at start.
                Some(IpAddr::V6(_)) => return None,
            };
            Some(nft::Published {
                protocol: match p.protocol {
                    berth_config::Protocol::Tcp => nft::Protocol::Tcp,
                    berth_config::Protocol::Udp => nft::Protocol::Udp,
                },
                host_ip,
                host_ports: (p.host.start, p.host.end),
                container_ip: ip,
                container_port: p.container.start,
                container: c.name.clone(),
            })
        })
        .collect()
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
        save(&ipam, &state);
        let nl = netlink::Netlink::new().map_err(|e| e.to_string())?;
        bridge::ensure(&nl, &cfg.bridge.name, ipam.gateway(), ipam.prefix())
            .await
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = nft::MODULES.iter().map(|m| m.to_string()).collect();
        for e in crate::boot::modules::load_all(&dir, &index, &names).1 {
            log::warn!("{e}");
        }
        nft::enable_forwarding().map_err(|e| e.to_string())?;
        log::info!(
            "bridge {} at {}/{}",
            cfg.bridge.name,
            ipam.gateway(),
            ipam.prefix()
        );
        let net = ContainerNet {
            nl,
            bridge: cfg.bridge.name.clone(),
            ipam,
            state,
            masquerade: cfg.bridge.nat,
            published: Default::default(),
        };
        net.apply_rules().map_err(|e| e.to_string())?;
        Ok(net)
    }

    fn apply_rules(&self) -> Result<(), nft::Error> {
        let rules = nft::Ruleset {
            bridge: self.bridge.clone(),
            subnet: (self.ipam.gateway(), self.ipam.prefix()),
            masquerade: self.masquerade,
            ports: self.published.values().flatten().cloned().collect(),
        };
        nft::apply(&rules)
    }

    /// Publishes a running container's ports. On failure the previous
    /// rules stay.
    pub fn publish(&mut self, c: &Container) -> Result<(), String> {
        let Some(ip) = self.ipam.get(&c.name) else {
            return Ok(());
        };
        let rules = published(c, ip);
        if rules.is_empty() {
            return Ok(());
        }
        self.published.insert(c.name.clone(), rules);
        self.apply_rules().map_err(|e| {
            self.published.remove(&c.name);
            e.to_string()
        })
    }

    /// Withdraws a container's ports when it stops.
    pub fn unpublish(&mut self, name: &str) {
        if self.published.remove(name).is_some()
            && let Err(e) = self.apply_rules()
        {
            log::error!("{name}: cannot withdraw its published ports: {e}");
        }
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
        if !known {
            save(&self.ipam, &self.state);
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
        save(&self.ipam, &self.state);
    }

    /// Removes the NAT table and the bridge at shutdown.
    pub async fn shutdown(&self) {
        if let Err(e) = nft::remove() {
            log::warn!("nftables: {e}");
        }
        if let Err(e) = self.nl.delete(&self.bridge).await {
            log::warn!("bridge {}: {e}", self.bridge);
        }
    }
}

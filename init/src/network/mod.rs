//! Networking, all through netlink: host interfaces, the container bridge
//! with a veth pair per container, addresses from a deterministic IPAM,
//! NAT and published ports in nftables, and names between containers. The
//! one exception is `lo`, which only needs a flag set ([`loopback`]).

pub mod dhcp;
pub mod host;
pub mod ipam;
pub mod loopback;
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

/// A container's published ports as nftables rules, at its address. A
/// binding to a particular IPv6 address cannot be honoured (the NAT table
/// is IPv4) and is an error; `[::]` means every address, as no address does.
pub fn published(c: &Container, ip: Ipv4Addr) -> Result<Vec<nft::Published>, String> {
    c.ports
        .iter()
        .map(|p| {
            let host_ip = match p.host_ip {
                None => None,
                Some(a) if a.is_unspecified() => None,
                Some(IpAddr::V4(a)) => Some(a),
                Some(IpAddr::V6(_)) => {
                    return Err(format!(
                        "cannot publish {p}: berth's NAT table is IPv4 only, so ports \
                         are published on IPv4 addresses only"
                    ));
                }
            };
            Ok(nft::Published {
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
            // A container the subnet has no room for fails at its own start,
            // with this reason; the others keep their network.
            if let Err(e) = ipam.assign(&c.name) {
                log::error!("{e}");
            }
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

    /// Publishes a container's ports, before its program runs. On failure
    /// the previous rules stay, and the container must not start.
    pub fn publish(&mut self, c: &Container) -> Result<(), String> {
        let Some(ip) = self.ipam.get(&c.name) else {
            return Ok(());
        };
        let rules = published(c, ip)?;
        if rules.is_empty() {
            return Ok(());
        }
        self.published.insert(c.name.clone(), rules);
        self.apply_rules().map_err(|e| {
            self.published.remove(&c.name);
            e.to_string()
        })
    }

    /// How many DNAT rules berth has asked for (each published port, or
    /// same-port range, of each container that runs).
    pub fn published_count(&self) -> usize {
        self.published.values().map(Vec::len).sum()
    }

    /// Withdraws a container's ports when it stops.
    pub fn unpublish(&mut self, name: &str) {
        if self.published.remove(name).is_some()
            && let Err(e) = self.apply_rules()
        {
            log::error!("{name}: cannot withdraw its published ports: {e}");
        }
    }

    /// The container network as `/v1/system/info` shows it, with leak
    /// detectors: the addresses in the book, the DNAT rules asked for, and
    /// the host ends of veth pairs that exist (`vb…` in /sys/class/net).
    pub fn status(&self) -> serde_json::Value {
        let veths = std::fs::read_dir("/sys/class/net").map_or(0, |d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(bridge::HOST_PREFIX)
                })
                .count()
        });
        serde_json::json!({
            "bridge": self.bridge,
            "gateway": format!("{}/{}", self.ipam.gateway(), self.ipam.prefix()),
            "addresses": self.ipam.all().count(),
            "published_rules": self.published_count(),
            "veths": veths,
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

    /// The address of `name`, giving it one if it has none (and saving the
    /// address book then).
    pub fn assign(&mut self, name: &str) -> Result<Ipv4Addr, String> {
        let known = self.ipam.get(name).is_some();
        let ip = self.ipam.assign(name).map_err(|e| e.to_string())?;
        if !known {
            save(&self.ipam, &self.state);
        }
        Ok(ip)
    }

    /// What connecting `name` takes, giving it an address if it has none.
    pub fn attachment(&mut self, name: &str) -> Result<bridge::Attachment, String> {
        let ip = self.assign(name)?;
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
        let mut clean = true;
        if let Err(e) = nft::remove() {
            log::warn!("nftables: {e}");
            clean = false;
        }
        if let Err(e) = self.nl.delete(&self.bridge).await {
            log::warn!("bridge {}: {e}", self.bridge);
            clean = false;
        }
        if clean {
            log::info!(
                "container network removed: bridge {} and table ip {}",
                self.bridge,
                nft::plan::TABLE
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(ports: &[&str]) -> Container {
        let ports = ports
            .iter()
            .map(|p| format!("{p:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let m = berth_config::parse(
            &format!("version = 1\n[containers.web]\nimage = \"busybox\"\nports = [{ports}]\n"),
            "test",
        )
        .unwrap();
        m.containers["web"].clone()
    }

    #[test]
    fn published_ports_bind_ipv4_or_every_address() {
        let ip = Ipv4Addr::new(10, 88, 0, 7);
        let got = published(
            &container(&[
                "8080:80",
                "10.0.2.15:9000:90/udp",
                "0.0.0.0:81:81",
                "[::]:82:82",
            ]),
            ip,
        )
        .unwrap();
        let summary: Vec<String> = got
            .iter()
            .map(|p| {
                format!(
                    "{} {:?} {}-{} {}:{}",
                    p.protocol,
                    p.host_ip,
                    p.host_ports.0,
                    p.host_ports.1,
                    p.container_ip,
                    p.container_port
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "tcp None 8080-8080 10.88.0.7:80",
                "udp Some(10.0.2.15) 9000-9000 10.88.0.7:90",
                "tcp None 81-81 10.88.0.7:81",
                "tcp None 82-82 10.88.0.7:82",
            ]
        );
    }

    #[test]
    fn a_port_bound_to_an_ipv6_address_is_refused() {
        let e = published(
            &container(&["[fd00::1]:8080:80"]),
            Ipv4Addr::new(10, 88, 0, 7),
        )
        .unwrap_err();
        assert!(e.starts_with("cannot publish [fd00::1]:8080:80"), "{e}");
        assert!(e.contains("IPv4 only"), "{e}");
    }
}

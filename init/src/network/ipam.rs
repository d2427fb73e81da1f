//! Addresses for containers on the bridge, deterministic and stable.
//!
//! A container's address is picked from a hash of its name (FNV-1a over
//! the usable hosts of the subnet: not the network, the bridge's own first
//! host, or the broadcast address), probing upwards on a collision. It is
//! kept while the container exists, across restarts, and across reboots
//! when the table is saved (the state file is written atomically); it is
//! released when the container is removed from the manifest. So the same
//! manifest gives every container the same address on every boot.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use berth_config::Cidr;

/// Why an address could not be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// the bridge subnet {0} is not IPv4
    NotIpv4(Cidr),
    /// the bridge subnet {subnet} has no free address for {container}
    Exhausted {
        /// The subnet.
        subnet: Cidr,
        /// The container asking.
        container: String,
    },
}

/// The address book of one subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipam {
    network: u32,
    prefix: u8,
    assigned: BTreeMap<String, Ipv4Addr>,
}

/// FNV-1a, 32 bits: stable across builds and platforms, unlike std's
/// randomly seeded hasher.
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

impl Ipam {
    /// An empty book for `subnet` (IPv4).
    pub fn new(subnet: Cidr) -> Result<Ipam, Error> {
        let std::net::IpAddr::V4(net) = subnet.network() else {
            return Err(Error::NotIpv4(subnet));
        };
        Ok(Ipam {
            network: u32::from(net),
            prefix: subnet.prefix,
            assigned: BTreeMap::new(),
        })
    }

    /// The subnet's prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The bridge's own address (the first host).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    /// Usable container addresses: hosts 2 .. broadcast-1.
    fn usable(&self) -> u32 {
        let size = 1u64 << (32 - u32::from(self.prefix.min(32)));
        size.saturating_sub(3).min(u64::from(u32::MAX)) as u32
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip).wrapping_sub(self.network);
        n >= 2 && n < 2 + self.usable()
    }

    /// The address of `container`, giving it one if it has none.
    pub fn assign(&mut self, container: &str) -> Result<Ipv4Addr, Error> {
        if let Some(ip) = self.assigned.get(container) {
            return Ok(*ip);
        }
        let usable = self.usable();
        if usable == 0 {
            return Err(self.exhausted(container));
        }
        let start = fnv1a(container) % usable;
        for i in 0..usable {
            let ip = Ipv4Addr::from(self.network + 2 + (start + i) % usable);
            if !self.assigned.values().any(|a| *a == ip) {
                self.assigned.insert(container.to_string(), ip);
                return Ok(ip);
            }
        }
        Err(self.exhausted(container))
    }

    fn exhausted(&self, container: &str) -> Error {
        Error::Exhausted {
            subnet: Cidr {
                addr: Ipv4Addr::from(self.network).into(),
                prefix: self.prefix,
            },
            container: container.to_string(),
        }
    }

    /// The address of `container`, if it has one.
    pub fn get(&self, container: &str) -> Option<Ipv4Addr> {
        self.assigned.get(container).copied()
    }

    /// Frees `container`'s address.
    pub fn release(&mut self, container: &str) {
        self.assigned.remove(container);
    }

    /// Every container and its address.
    pub fn all(&self) -> impl Iterator<Item = (&str, Ipv4Addr)> {
        self.assigned.iter().map(|(n, ip)| (n.as_str(), *ip))
    }

    /// Keeps only the containers in `keep` (the manifest's), releasing the
    /// others' addresses.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.assigned.retain(|n, _| keep(n));
    }

    /// The table as text: one `name address` line each.
    pub fn to_text(&self) -> String {
        self.assigned
            .iter()
            .map(|(n, ip)| format!("{n} {ip}\n"))
            .collect()
    }

    /// Restores a saved table, dropping lines that do not fit this subnet
    /// or that clash. Returns how many lines could not be read at all.
    pub fn load_text(&mut self, text: &str) -> usize {
        let mut unreadable = 0;
        for line in text.lines() {
            let mut w = line.split_whitespace();
            let (Some(name), Some(ip), None) = (w.next(), w.next(), w.next()) else {
                unreadable += 1;
                continue;
            };
            let Ok(ip) = ip.parse::<Ipv4Addr>() else {
                unreadable += 1;
                continue;
            };
            if self.contains(ip) && !self.assigned.values().any(|a| *a == ip) {
                self.assigned.insert(name.to_string(), ip);
            }
        }
        unreadable
    }

    /// Restores the table saved at `path`, if any; says so if it cannot be
    /// read (it is written atomically, so that would be a bug or damage).
    pub fn load(&mut self, path: &Path) {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let n = self.load_text(&text);
                if n > 0 {
                    log::warn!(
                        "address book {}: {n} unreadable line(s) ignored",
                        path.display()
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("address book {}: {e}; starting afresh", path.display()),
        }
    }

    /// Saves the table at `path` atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::sys::write_atomic(path, self.to_text().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(s: &str) -> Ipam {
        Ipam::new(berth_config::parse_cidr(s).unwrap()).unwrap()
    }

    #[test]
    fn addresses_are_deterministic_and_stable() {
        let mut a = ipam("10.88.0.0/24");
        let mut b = ipam("10.88.0.0/24");
        let web = a.assign("web").unwrap();
        assert_eq!(b.assign("web").unwrap(), web);
        assert_eq!(a.assign("web").unwrap(), web, "kept across restarts");
        assert_eq!(a.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        let n = u32::from(web) - u32::from(Ipv4Addr::new(10, 88, 0, 0));
        assert!((2..255).contains(&n), "{web}");
        // The order of assignment does not change a container's address
        // unless two collide.
        b.assign("db").unwrap();
        let mut c = ipam("10.88.0.0/24");
        c.assign("db").unwrap();
        assert_eq!(c.assign("web").unwrap(), web);
    }

    #[test]
    fn collisions_probe_and_exhaustion_is_an_error() {
        let mut a = ipam("10.0.0.0/29"); // hosts .2 .. .6
        let mut got: Vec<Ipv4Addr> = (0..5)
            .map(|i| a.assign(&format!("c{i}")).unwrap())
            .collect();
        got.sort();
        assert_eq!(
            got,
            (2..7)
                .map(|h| Ipv4Addr::new(10, 0, 0, h))
                .collect::<Vec<_>>()
        );
        let e = a.assign("one-too-many").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the bridge subnet 10.0.0.0/29 has no free address for one-too-many"
        );
        a.release("c3");
        assert!(a.assign("one-too-many").is_ok());
    }

    #[test]
    fn the_table_survives_a_reboot_and_forgets_removed_containers() {
        let mut a = ipam("10.88.0.0/24");
        let ips: Vec<Ipv4Addr> = ["web", "db", "cache"]
            .iter()
            .map(|n| a.assign(n).unwrap())
            .collect();
        let mut b = ipam("10.88.0.0/24");
        b.load_text(&a.to_text());
        b.retain(|n| n != "cache");
        assert_eq!(b.get("web"), Some(ips[0]));
        assert_eq!(b.get("db"), Some(ips[1]));
        assert_eq!(b.get("cache"), None);
        // Lines from another subnet, garbage and clashes are dropped.
        let mut c = ipam("10.88.0.0/24");
        let unreadable =
            c.load_text("x 10.99.0.5\ny nonsense\nz 10.88.0.7\nw 10.88.0.7\ngw 10.88.0.1\nv\n");
        assert_eq!(unreadable, 2, "y and v");
        assert_eq!(
            c.all().collect::<Vec<_>>(),
            [("z", Ipv4Addr::new(10, 88, 0, 7))]
        );
    }

    #[test]
    fn ipv6_bridges_are_refused() {
        let e = Ipam::new(berth_config::parse_cidr("fd00::/64").unwrap()).unwrap_err();
        assert_eq!(e.to_string(), "the bridge subnet fd00::/64 is not IPv4");
    }
}

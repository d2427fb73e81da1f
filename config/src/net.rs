//! Network values: addresses with prefix lengths ("10.0.2.15/24",
//! "fd00::2/64"), MAC addresses, and names that must be valid on Linux.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP address with a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length: 0-32 for IPv4, 0-128 for IPv6.
    pub prefix: u8,
}

impl Cidr {
    /// The network address: `addr` with the host bits cleared.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }

    /// Whether the address has no host bits set.
    pub fn is_network(&self) -> bool {
        self.network() == self.addr
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Cidr {
            addr: ip,
            prefix: self.prefix,
        }
        .network()
            == self.network()
            && ip.is_ipv4() == self.addr.is_ipv4()
    }

    /// The `n`th address of the network (1 is the usual gateway), if it fits.
    pub fn host(&self, n: u32) -> Option<IpAddr> {
        match self.network() {
            IpAddr::V4(a) => {
                let size = 1u64 << (32 - u32::from(self.prefix));
                (u64::from(n) < size).then(|| IpAddr::V4(Ipv4Addr::from(u32::from(a) + n)))
            }
            IpAddr::V6(a) => Some(IpAddr::V6(Ipv6Addr::from(u128::from(a) + u128::from(n)))),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses "address/prefix".
pub fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let bad = || {
        format!(
            "invalid address {text:?}; expected an address with a prefix length, like \"10.0.2.15/24\" or \"fd00::2/64\""
        )
    };
    let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if prefix > max {
        return Err(format!(
            "prefix length /{prefix} is out of range for {addr}; expected 0 to {max}"
        ));
    }
    Ok(Cidr { addr, prefix })
}

/// Parses an IP address.
pub fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("invalid IP address {text:?}"))
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Parses "52:54:00:12:34:56" (or with '-').
pub fn parse_mac(text: &str) -> Result<MacAddr, String> {
    let bad = || {
        format!("invalid MAC address {text:?}; expected six hex pairs like \"52:54:00:12:34:56\"")
    };
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (slot, p) in mac.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *slot = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(MacAddr(mac))
}

/// Checks a Linux interface name: 1 to 15 bytes, no '/', ':' or whitespace.
pub fn check_ifname(text: &str) -> Result<(), String> {
    if text.is_empty()
        || text.len() > 15
        || text == "."
        || text == ".."
        || text
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "invalid interface name {text:?}; expected 1 to 15 characters without '/', ':' or spaces"
        ));
    }
    Ok(())
}

/// Checks a hostname (RFC 1123): dot-separated labels of letters, digits
/// and '-', at most 63 characters each and 253 in all.
pub fn check_hostname(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid hostname {text:?}; expected letters, digits and '-' in dot-separated labels of at most 63 characters"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = parse_cidr("10.88.0.0/24").unwrap();
        assert!(c.is_network());
        assert_eq!(c.host(1), Some("10.88.0.1".parse().unwrap()));
        assert!(c.contains("10.88.0.77".parse().unwrap()));
        assert!(!c.contains("10.88.1.1".parse().unwrap()));
        assert!(!parse_cidr("10.88.0.1/24").unwrap().is_network());
        assert!(parse_cidr("fd00::2/64").is_ok());
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("10.0.0.1").is_err());
        assert_eq!(
            parse_cidr("0.0.0.0/0").unwrap().network().to_string(),
            "0.0.0.0"
        );
    }

    #[test]
    fn macs_and_names() {
        assert_eq!(
            parse_mac("52:54:00:AB:cd:01").unwrap().to_string(),
            "52:54:00:ab:cd:01"
        );
        assert!(parse_mac("52:54:00:ab:cd").is_err());
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("a-very-long-name0").is_err());
        assert!(check_hostname("edge-01.example").is_ok());
        assert!(check_hostname("-bad").is_err());
    }
}

//! Published ports as Compose writes them: `"[ip:]host:container[/tcp|udp]"`,
//! with ranges such as `"8000-8010:80-90"`, and IPv6 addresses in brackets
//! (`"[::1]:8080:80"`).

use std::fmt;
use std::net::IpAddr;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Protocol {
    /// TCP, the default.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// "tcp" or "udp".
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An inclusive range of ports; a single port has `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port, inclusive.
    pub end: u16,
}

impl PortRange {
    /// A single port.
    pub fn single(port: u16) -> PortRange {
        PortRange {
            start: port,
            end: port,
        }
    }

    /// How many ports.
    pub fn len(self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// Never empty: a range holds at least one port.
    pub fn is_empty(self) -> bool {
        false
    }

    /// Whether two ranges share a port.
    pub fn overlaps(self, other: PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One published port or port range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// The host address to bind; `None` binds every address.
    pub host_ip: Option<IpAddr>,
    /// The host port(s).
    pub host: PortRange,
    /// The container port(s); as many as `host`.
    pub container: PortRange,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl PortMapping {
    /// Whether two mappings would bind the same host port.
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        let ips_meet = match (self.host_ip, other.host_ip) {
            (Some(a), Some(b)) => a == b || a.is_unspecified() || b.is_unspecified(),
            _ => true,
        };
        self.protocol == other.protocol && ips_meet && self.host.overlaps(other.host)
    }
}

impl fmt::Display for PortMapping {
    /// The canonical short form: `[ip:]host:container/proto`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        write!(f, "{}:{}/{}", self.host, self.container, self.protocol)
    }
}

/// Parses a protocol name.
pub fn parse_protocol(text: &str) -> Result<Protocol, String> {
    match text {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        _ => Err(format!(
            "unknown protocol {text:?}; expected \"tcp\" or \"udp\""
        )),
    }
}

/// Parses one port number, 1 to 65535.
pub fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {text:?}"));
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => u16::try_from(n).map_err(|e| e.to_string()),
        _ => Err(format!("port {text} is out of range; expected 1 to 65535")),
    }
}

/// Parses "N" or "N-M".
pub fn parse_range(text: &str) -> Result<PortRange, String> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let r = PortRange {
        start: parse_port(a)?,
        end: parse_port(b)?,
    };
    if r.start > r.end {
        return Err(format!("port range {text} is reversed"));
    }
    Ok(r)
}

/// "1 host port", "11 host ports".
pub(crate) fn count(n: u32, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Parses the short form of a published port.
pub fn parse_port_mapping(text: &str) -> Result<PortMapping, String> {
    let syntax =
        || format!("invalid port mapping {text:?}; expected \"[ip:]host:container[/tcp|udp]\"");
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((spec, proto)) => (spec, parse_protocol(proto)?),
        None => (text, Protocol::Tcp),
    };
    let (host_ip, rest) = if let Some(rest) = spec.strip_prefix('[') {
        let (ip, rest) = rest.split_once("]:").ok_or_else(syntax)?;
        let ip: std::net::Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("invalid IPv6 address {ip:?} in port mapping {text:?}"))?;
        (Some(IpAddr::V6(ip)), rest)
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.as_slice() {
            [_, _] => (None, spec),
            [ip, _, _] => {
                let ip: std::net::Ipv4Addr = ip
                    .parse()
                    .map_err(|_| format!("invalid IP address {ip:?} in port mapping {text:?}"))?;
                let rest = spec.split_once(':').map_or(spec, |(_, r)| r);
                (Some(IpAddr::V4(ip)), rest)
            }
            [_] => {
                return Err(format!(
                    "port mapping {text:?} has no host port; expected \"[ip:]host:container[/tcp|udp]\""
                ));
            }
            _ => {
                return Err(format!(
                    "invalid port mapping {text:?}; write IPv6 addresses in brackets, like \"[::1]:8080:80\""
                ));
            }
        }
    };
    let (host, container) = rest.split_once(':').ok_or_else(syntax)?;
    let host = parse_range(host)?;
    let container = parse_range(container)?;
    if host.len() != container.len() {
        return Err(format!(
            "port mapping {text:?} maps {} to {}",
            count(host.len(), "host port"),
            count(container.len(), "container port")
        ));
    }
    Ok(PortMapping {
        host_ip,
        host,
        container,
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_short_forms() {
        let m = parse_port_mapping("8080:80").unwrap();
        assert_eq!(m.to_string(), "8080:80/tcp");
        let m = parse_port_mapping("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(m.to_string(), "127.0.0.1:5353:53/udp");
        let m = parse_port_mapping("[::1]:8080:80").unwrap();
        assert_eq!(m.to_string(), "[::1]:8080:80/tcp");
        let m = parse_port_mapping("8000-8010:80-90").unwrap();
        assert_eq!(m.host.len(), 11);
    }

    #[test]
    fn rejects_bad_forms() {
        for (text, msg) in [
            (
                "80",
                "port mapping \"80\" has no host port; expected \"[ip:]host:container[/tcp|udp]\"",
            ),
            (
                "70000:80",
                "port 70000 is out of range; expected 1 to 65535",
            ),
            ("0:80", "port 0 is out of range; expected 1 to 65535"),
            (
                "8080:80/sctp",
                "unknown protocol \"sctp\"; expected \"tcp\" or \"udp\"",
            ),
            ("90-80:90-80", "port range 90-80 is reversed"),
            (
                "8000-8001:80",
                "port mapping \"8000-8001:80\" maps 2 host ports to 1 container port",
            ),
            ("x:80", "invalid port \"x\""),
            (
                "1.2.3:80:80",
                "invalid IP address \"1.2.3\" in port mapping \"1.2.3:80:80\"",
            ),
            (
                "::1:80:80",
                "invalid port mapping \"::1:80:80\"; write IPv6 addresses in brackets, like \"[::1]:8080:80\"",
            ),
        ] {
            assert_eq!(parse_port_mapping(text), Err(msg.to_string()), "{text}");
        }
    }

    #[test]
    fn conflicts() {
        let a = parse_port_mapping("8080:80").unwrap();
        let b = parse_port_mapping("127.0.0.1:8080:81").unwrap();
        let c = parse_port_mapping("8080:80/udp").unwrap();
        let d = parse_port_mapping("8000-8100:1000-1100").unwrap();
        assert!(a.conflicts_with(&b));
        assert!(!a.conflicts_with(&c));
        assert!(a.conflicts_with(&d));
    }
}

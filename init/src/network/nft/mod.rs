//! NAT and published ports in nftables, programmed over netlink.
//!
//! berth owns one table, `ip berth`, and rebuilds it whole from the desired
//! state ([`Ruleset`]) in one transaction whenever that changes ([`apply`]):
//! rules go away with their container by construction, and nothing else in
//! the kernel's ruleset is touched. There is no `nft` binary nor libnftnl on
//! berth's image: the messages are built here, as nft builds them.
//!
//! For a bridge `berth0` on 172.17.0.0/16 with one published port the
//! table is (as `nft list table ip berth` prints it):
//!
//! ```text
//! table ip berth {
//!     chain postrouting {
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr 172.17.0.0/16 oifname != "berth0" masquerade
//!         ip saddr 172.17.0.0/16 ip daddr 172.17.0.0/16 oifname "berth0" masquerade
//!     }
//!
//!     chain prerouting {
//!         type nat hook prerouting priority dstnat; policy accept;
//!         fib daddr type local jump published
//!     }
//!
//!     chain output {
//!         type nat hook output priority -100; policy accept;
//!         ip daddr != 127.0.0.0/8 fib daddr type local jump published
//!     }
//!
//!     chain published {
//!         tcp dport 8080 dnat to 172.17.0.2:80 comment "web"
//!     }
//! }
//! ```
//!
//! - `postrouting`: outbound masquerade (when [`Ruleset::masquerade`]), and
//!   hairpin masquerade for containers reaching a published port. (With
//!   `br_netfilter` loaded, which berth does not, hairpin would also need
//!   the bridge ports in hairpin mode.)
//! - `prerouting` and `output`: connections to one of the host's own
//!   addresses (from outside and containers; from the host itself) go
//!   through `published`. `fib daddr type local` keeps a container's
//!   connection to port 8080 of another machine from being caught.
//!   Localhost is left out: DNAT from 127.0.0.1 to a container would need
//!   `route_localnet`, which opens the loopback range to the network.
//! - `published`: one DNAT rule per port or same-port range; a range mapped
//!   to other ports is one rule per port, since Linux 6.1's DNAT cannot
//!   shift a range.
//!
//! Cost: one `sendto` that the kernel runs synchronously, on a netfilter
//! socket kept open per thread (closing one waits for an RCU grace period,
//! ~12 ms): measured on the development host (Linux 6.18, debug build),
//! ~1 ms for the example above and 3 to 15 ms with 100 published ports.
//! PID 1 may call [`apply`] from its event loop; it should apply once per
//! batch of changes (all containers of a boot) rather than once per port.
//!
//! Layers: `uapi` (the ABI's numbers), `msg` (attributes, messages,
//! batches), `expr` (expressions as nft encodes them), [`plan`] (the
//! renderer), `socket` (the transaction and its acknowledgements).

mod expr;
mod msg;
pub mod plan;
mod socket;
mod uapi;

use std::fmt;
use std::net::Ipv4Addr;

pub use msg::Batch;
pub use plan::{Action, AddrField, Chain, Hook, Match, Plan, Rule};

/// The kernel modules [`apply`] needs on Debian's 6.1 cloud kernel, loaded
/// before the first call (their dependencies, nfnetlink, nf_nat,
/// nf_conntrack, nf_defrag_ipv4/6, libcrc32c and nft_fib, by resolution).
/// Without them the kernel refuses the batch with ENOENT: berth's image has
/// no modprobe for nf_tables to load them on demand.
pub const MODULES: &[&str] = &[
    // tables, chains, and the payload/meta/cmp/bitwise/immediate expressions
    "nf_tables",
    // chains of type nat
    "nft_chain_nat",
    // dnat
    "nft_nat",
    // masquerade
    "nft_masq",
    // fib daddr type local, for the ip family (with nft_fib)
    "nft_fib_ipv4",
];

/// A layer 4 protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    fn number(self) -> u8 {
        match self {
            Protocol::Tcp => uapi::IPPROTO_TCP,
            Protocol::Udp => uapi::IPPROTO_UDP,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// The desired NAT state of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The containers' bridge (at most 15 bytes).
    pub bridge: String,
    /// The containers' subnet: an address in it and the prefix length
    /// (host bits are ignored, so the bridge's address will do).
    pub subnet: (Ipv4Addr, u8),
    /// Whether connections from the subnet leaving by another interface
    /// are masqueraded.
    pub masquerade: bool,
    /// The published ports of every running container.
    pub ports: Vec<Published>,
}

/// One published port or range: `[host_ip:]host:container[/protocol]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Only connections to this host address, or to any of the host's
    /// addresses (but loopback's).
    pub host_ip: Option<Ipv4Addr>,
    /// The host's ports, an inclusive range (a single port twice).
    pub host_ports: (u16, u16),
    /// The container's address.
    pub container_ip: Ipv4Addr,
    /// The container's port for the first host port; the ranges have the
    /// same length.
    pub container_port: u16,
    /// The container's name, for comments and errors.
    pub container: String,
}

/// Why the NAT rules could not be programmed.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// bridge name {0:?} is not an interface name (1 to 15 bytes, without '/', ':' or spaces)
    BridgeName(String),
    /// subnet prefix length /{0} is out of range (1 to 32)
    SubnetPrefix(u8),
    /// container {container}: cannot publish {protocol} port {ports}: {reason}
    Port {
        /// The container.
        container: String,
        /// The protocol.
        protocol: Protocol,
        /// The host port or range.
        ports: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// containers {first} and {second} both publish {protocol} port {ports}
    PortConflict {
        /// The container that has it first.
        first: String,
        /// The one that asks for it again.
        second: String,
        /// The protocol.
        protocol: Protocol,
        /// The second one's port or range.
        ports: String,
    },
    /// cannot open a netfilter netlink socket: {0}
    Socket(std::io::Error),
    /// cannot send {messages} nftables messages ({bytes} bytes): {source}
    Send {
        /// How many messages.
        messages: usize,
        /// The batch's size.
        bytes: usize,
        /// The error.
        source: std::io::Error,
    },
    /// cannot read the kernel's answers to the nftables batch: {0}
    Receive(std::io::Error),
    /// nftables refused {op}: {source}{detail}
    Refused {
        /// The message refused, as nft would write it.
        op: String,
        /// The kernel's errno.
        source: std::io::Error,
        /// The kernel's explanation, and a hint.
        detail: String,
    },
    /// the kernel answered {answered} of {sent} nftables messages
    Unanswered {
        /// Acknowledged.
        answered: usize,
        /// Sent.
        sent: usize,
    },
    /// cannot write {path}: {source}
    Sysctl {
        /// The file under /proc/sys.
        path: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// Replaces table `ip berth` with the rules for `state`, atomically: on
/// error nothing has changed. Blocking, for about a millisecond (see the
/// module's documentation); the network namespace is the calling thread's.
pub fn apply(state: &Ruleset) -> Result<(), Error> {
    commit(&Plan::new(state)?.batch())
}

/// Deletes table `ip berth`; absent is fine.
pub fn remove() -> Result<(), Error> {
    commit(&plan::removal())
}

/// Sends a batch (from [`Plan::batch`]) as one transaction, and checks that
/// the kernel accepted every message of it.
pub fn commit(batch: &Batch) -> Result<(), Error> {
    socket::commit(batch)
}

/// Turns on IPv4 forwarding (for every interface, present and future), which
/// the containers' traffic through the host needs.
pub fn enable_forwarding() -> Result<(), Error> {
    for path in [
        "/proc/sys/net/ipv4/ip_forward",
        "/proc/sys/net/ipv4/conf/all/forwarding",
    ] {
        std::fs::write(path, "1\n").map_err(|source| Error::Sysctl { path, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::msg::tests::{hex, split};
    use super::*;

    fn published(
        container: &str,
        protocol: Protocol,
        host_ip: Option<[u8; 4]>,
        host_ports: (u16, u16),
        container_ip: [u8; 4],
        container_port: u16,
    ) -> Published {
        Published {
            protocol,
            host_ip: host_ip.map(Ipv4Addr::from),
            host_ports,
            container_ip: Ipv4Addr::from(container_ip),
            container_port,
            container: container.into(),
        }
    }

    /// The state behind testdata/example.nft.
    fn example() -> Ruleset {
        Ruleset {
            bridge: "berth0".into(),
            subnet: (Ipv4Addr::new(172, 17, 0, 1), 16),
            masquerade: true,
            ports: vec![
                published(
                    "web",
                    Protocol::Tcp,
                    None,
                    (8080, 8080),
                    [172, 17, 0, 2],
                    80,
                ),
                published(
                    "dns",
                    Protocol::Udp,
                    Some([10, 0, 2, 15]),
                    (8000, 8010),
                    [172, 17, 0, 3],
                    8000,
                ),
                published(
                    "api",
                    Protocol::Tcp,
                    None,
                    (9000, 9001),
                    [172, 17, 0, 4],
                    7000,
                ),
            ],
        }
    }

    /// The messages nft sent for a file, with the acknowledgement berth
    /// asks for added to every message between begin and end.
    fn nft_sent(hex_lines: &str) -> Vec<String> {
        let msgs: Vec<&str> = hex_lines.lines().filter(|l| !l.is_empty()).collect();
        let last = msgs.len() - 1;
        msgs.iter()
            .enumerate()
            .map(|(i, m)| {
                let mut bytes: Vec<u8> = (0..m.len() / 2)
                    .map(|j| u8::from_str_radix(&m[2 * j..2 * j + 2], 16).unwrap())
                    .collect();
                if i != 0 && i != last {
                    bytes[6] |= uapi::NLM_F_ACK as u8;
                }
                hex(&bytes)
            })
            .collect()
    }

    fn assert_same(ours: &Batch, nft: &str) {
        let ours: Vec<String> = split(&ours.to_bytes()).iter().map(|m| hex(m)).collect();
        let nft = nft_sent(nft);
        for (i, (a, b)) in ours.iter().zip(&nft).enumerate() {
            assert_eq!(a, b, "message {i} ({}) differs from nft's", ours.len());
        }
        assert_eq!(ours.len(), nft.len());
    }

    #[test]
    fn the_example_renders_as_nft_prints_it() {
        let plan = Plan::new(&example()).unwrap();
        let expected = include_str!("testdata/example.nft")
            .split_once("table ip berth {")
            .map(|(_, t)| format!("table ip berth {{{t}"))
            .unwrap()
            // the source file has no blank lines between chains
            .replace("\t}\n\tchain", "\t}\n\n\tchain");
        assert_eq!(plan.to_string(), expected);
    }

    #[test]
    fn the_example_batch_is_the_one_nft_sends() {
        assert_same(
            &Plan::new(&example()).unwrap().batch(),
            include_str!("testdata/example.hex"),
        );
    }

    #[test]
    fn a_narrow_subnet_without_outbound_masquerade_is_the_one_nft_sends() {
        let state = Ruleset {
            bridge: "br-test".into(),
            subnet: (Ipv4Addr::new(10, 88, 3, 7), 20),
            masquerade: false,
            ports: vec![],
        };
        assert_same(
            &Plan::new(&state).unwrap().batch(),
            include_str!("testdata/narrow.hex"),
        );
    }

    #[test]
    fn removal_is_the_batch_nft_sends() {
        assert_same(&plan::removal(), include_str!("testdata/remove.hex"));
    }

    #[test]
    fn shifted_ranges_become_one_rule_per_port_and_same_port_ranges_one_rule() {
        let mut state = example();
        state.ports = vec![
            published("a", Protocol::Udp, None, (5000, 5002), [10, 0, 0, 2], 6000),
            published("b", Protocol::Tcp, None, (7000, 7999), [10, 0, 0, 3], 7000),
        ];
        let plan = Plan::new(&state).unwrap();
        let rules: Vec<String> = plan.chains[3].rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            rules,
            [
                "udp dport 5000 dnat to 10.0.0.2:6000 comment \"a\"",
                "udp dport 5001 dnat to 10.0.0.2:6001 comment \"a\"",
                "udp dport 5002 dnat to 10.0.0.2:6002 comment \"a\"",
                "tcp dport 7000-7999 dnat to 10.0.0.3 comment \"b\"",
            ]
        );
    }

    #[test]
    fn invalid_states_are_refused_with_what_is_wrong() {
        let err = |f: &dyn Fn(&mut Ruleset)| {
            let mut s = example();
            f(&mut s);
            Plan::new(&s).unwrap_err().to_string()
        };
        assert_eq!(
            err(&|s| s.bridge = "a-bridge-name-too-long".into()),
            "bridge name \"a-bridge-name-too-long\" is not an interface name \
             (1 to 15 bytes, without '/', ':' or spaces)"
        );
        assert!(err(&|s| s.bridge = String::new()).starts_with("bridge name \"\""));
        assert!(err(&|s| s.bridge = "a b".into()).starts_with("bridge name \"a b\""));
        assert_eq!(
            err(&|s| s.subnet.1 = 33),
            "subnet prefix length /33 is out of range (1 to 32)"
        );
        assert_eq!(
            err(&|s| s.ports[0].host_ports = (0, 0)),
            "container web: cannot publish tcp port 0: port 0 cannot be published"
        );
        assert_eq!(
            err(&|s| s.ports[0].host_ports = (9, 8)),
            "container web: cannot publish tcp port 9-8: the range ends before it starts"
        );
        assert_eq!(
            err(&|s| {
                s.ports[0].host_ports = (100, 200);
                s.ports[0].container_port = 65500;
            }),
            "container web: cannot publish tcp port 100-200: \
             the container's range goes past port 65535"
        );
        assert_eq!(
            err(&|s| {
                s.ports[0].host_ports = (10000, 12000);
                s.ports[0].container_port = 20000;
            }),
            "container web: cannot publish tcp port 10000-12000: \
             a range mapped to other ports may hold at most 1024 ports"
        );
        assert_eq!(
            err(&|s| s.ports.push(published(
                "api2",
                Protocol::Tcp,
                Some([10, 0, 2, 15]),
                (9001, 9001),
                [172, 17, 0, 5],
                80
            ))),
            "containers api and api2 both publish tcp port 9001"
        );
    }

    #[test]
    fn ports_apart_by_protocol_or_host_address_do_not_conflict() {
        let mut s = example();
        s.ports.push(published(
            "t",
            Protocol::Udp,
            None,
            (8080, 8080),
            [172, 17, 0, 9],
            80,
        ));
        s.ports.push(published(
            "u",
            Protocol::Tcp,
            Some([10, 0, 2, 16]),
            (8000, 8000),
            [172, 17, 0, 9],
            80,
        ));
        s.ports.push(published(
            "v",
            Protocol::Udp,
            Some([10, 0, 2, 16]),
            (8000, 8000),
            [172, 17, 0, 9],
            80,
        ));
        Plan::new(&s).unwrap();
    }

    #[test]
    fn comments_are_cut_and_quotes_replaced() {
        let mut s = example();
        s.ports[0].container = format!("a\"b{}", "é".repeat(100));
        let plan = Plan::new(&s).unwrap();
        let c = plan.chains[3].rules[0].comment.clone().unwrap();
        assert!(c.len() <= 127 && c.starts_with("a_b"), "{c}");
    }
}

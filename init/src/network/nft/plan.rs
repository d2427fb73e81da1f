//! The ruleset renderer: from berth's desired state ([`Ruleset`]) to the
//! table `ip berth` as chains of rules ([`Plan`]), each rule both as nft
//! prints it ([`Display`](std::fmt::Display)) and as kernel expressions.

use std::fmt;
use std::net::Ipv4Addr;

use super::expr::Expr;
use super::msg::{Batch, nest, put, put_str, put_u32};
use super::uapi::*;
use super::{Error, Protocol, Published, Ruleset};

/// The table's name (family `ip`).
pub const TABLE: &str = "berth";
/// The regular chain of DNAT rules, one per published port (or range);
/// `prerouting` and `output` jump to it for local destinations.
pub const PUBLISHED: &str = "published";
/// A shifted range (host ports not equal to the container's) becomes one
/// rule per port; longer shifted ranges are refused.
pub const MAX_SHIFTED_RANGE: u32 = 1024;
/// Comments are cut to this many bytes (nft's limit is 128 with the NUL).
const COMMENT_MAX: usize = 127;

/// What berth programs: the chains of table `ip berth`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The chains, base chains first.
    pub chains: Vec<Chain>,
}

/// A chain of table `ip berth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Its name.
    pub name: String,
    /// For a base chain: where it hooks in (always `type nat`).
    pub hook: Option<Hook>,
    /// Its rules, in order.
    pub rules: Vec<Rule>,
}

/// A NAT base chain's hook and priority (policy accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `hook prerouting priority dstnat` (-100).
    Prerouting,
    /// `hook output priority -100`.
    Output,
    /// `hook postrouting priority srcnat` (100).
    Postrouting,
}

impl Hook {
    fn number(self) -> u32 {
        match self {
            Hook::Prerouting => NF_INET_PRE_ROUTING,
            Hook::Output => NF_INET_LOCAL_OUT,
            Hook::Postrouting => NF_INET_POST_ROUTING,
        }
    }

    fn priority(self) -> i32 {
        match self {
            Hook::Prerouting | Hook::Output => -100,
            Hook::Postrouting => 100,
        }
    }
}

impl fmt::Display for Hook {
    /// As `nft list` (1.0.6) prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::Prerouting => "type nat hook prerouting priority dstnat; policy accept;",
            Hook::Output => "type nat hook output priority -100; policy accept;",
            Hook::Postrouting => "type nat hook postrouting priority srcnat; policy accept;",
        })
    }
}

/// A rule: every match must hold for the action to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The conditions, in order.
    pub matches: Vec<Match>,
    /// What it does.
    pub action: Action,
    /// A comment (the container it serves), shown by `nft list`.
    pub comment: Option<String>,
}

/// A condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `ip saddr|daddr [!=] NET/LEN` (a /32 prints as the address alone).
    Addr {
        /// Which address of the IP header.
        field: AddrField,
        /// The network (host bits zero).
        net: Ipv4Addr,
        /// The prefix length, 1 to 32.
        len: u8,
        /// `!=` instead of `==`.
        negate: bool,
    },
    /// `oifname [!=] "NAME"`: the output interface.
    Oifname {
        /// The interface name, at most 15 bytes.
        name: String,
        /// `!=` instead of `==`.
        negate: bool,
    },
    /// `tcp|udp dport FIRST[-LAST]`.
    Dport {
        /// The layer 4 protocol.
        protocol: Protocol,
        /// The inclusive range of destination ports.
        ports: (u16, u16),
    },
    /// `fib daddr type local`: the destination is one of the host's
    /// addresses.
    FibDaddrLocal,
}

/// Which address of the IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrField {
    /// `ip saddr`.
    Source,
    /// `ip daddr`.
    Destination,
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `masquerade`: SNAT to the output interface's address.
    Masquerade,
    /// `jump CHAIN`.
    Jump(String),
    /// `dnat to ADDR[:PORT]`; without a port, the port is kept.
    Dnat {
        /// The new destination address.
        addr: Ipv4Addr,
        /// The new destination port.
        port: Option<u16>,
    },
}

impl Match {
    fn exprs(&self, out: &mut Vec<Expr>) {
        match self {
            Match::Addr {
                field,
                net,
                len,
                negate,
            } => {
                let offset = match field {
                    AddrField::Source => 12,
                    AddrField::Destination => 16,
                };
                // As nft: a whole number of bytes is compared as such,
                // another prefix as the masked address.
                let octets = net.octets();
                let bytes = if len % 8 == 0 {
                    usize::from(len / 8)
                } else {
                    4
                };
                out.push(Expr::Payload {
                    base: NFT_PAYLOAD_NETWORK_HEADER,
                    offset,
                    len: bytes as u32,
                });
                if len % 8 != 0 {
                    out.push(Expr::Bitwise {
                        mask: prefix_mask(*len).octets().to_vec(),
                    });
                }
                out.push(Expr::Cmp {
                    op: if *negate { NFT_CMP_NEQ } else { NFT_CMP_EQ },
                    data: octets[..bytes].to_vec(),
                });
            }
            Match::Oifname { name, negate } => {
                out.push(Expr::Meta {
                    key: NFT_META_OIFNAME,
                });
                let mut data = name.as_bytes().to_vec();
                data.resize(IFNAMSIZ, 0);
                out.push(Expr::Cmp {
                    op: if *negate { NFT_CMP_NEQ } else { NFT_CMP_EQ },
                    data,
                });
            }
            Match::Dport { protocol, ports } => {
                out.push(Expr::Meta {
                    key: NFT_META_L4PROTO,
                });
                out.push(Expr::Cmp {
                    op: NFT_CMP_EQ,
                    data: vec![protocol.number()],
                });
                out.push(Expr::Payload {
                    base: NFT_PAYLOAD_TRANSPORT_HEADER,
                    offset: 2,
                    len: 2,
                });
                let (first, last) = *ports;
                if first == last {
                    out.push(Expr::Cmp {
                        op: NFT_CMP_EQ,
                        data: first.to_be_bytes().to_vec(),
                    });
                } else {
                    out.push(Expr::Cmp {
                        op: NFT_CMP_GTE,
                        data: first.to_be_bytes().to_vec(),
                    });
                    out.push(Expr::Cmp {
                        op: NFT_CMP_LTE,
                        data: last.to_be_bytes().to_vec(),
                    });
                }
            }
            Match::FibDaddrLocal => {
                out.push(Expr::FibDaddrType);
                out.push(Expr::Cmp {
                    op: NFT_CMP_EQ,
                    data: RTN_LOCAL.to_ne_bytes().to_vec(),
                });
            }
        }
    }
}

impl Action {
    fn exprs(&self, out: &mut Vec<Expr>) {
        match self {
            Action::Masquerade => out.push(Expr::Masq),
            Action::Jump(chain) => out.push(Expr::Jump(chain.clone())),
            Action::Dnat { addr, port } => {
                out.push(Expr::immediate_addr(NFT_REG_1, *addr));
                if let Some(port) = port {
                    out.push(Expr::immediate_port(NFT_REG_2, *port));
                }
                out.push(Expr::Dnat {
                    with_port: port.is_some(),
                });
            }
        }
    }
}

impl Rule {
    /// The rule's expressions, in order.
    pub(super) fn exprs(&self) -> Vec<Expr> {
        let mut out = Vec::new();
        for m in &self.matches {
            m.exprs(&mut out);
        }
        self.action.exprs(&mut out);
        out
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::Addr {
                field,
                net,
                len,
                negate,
            } => {
                let field = match field {
                    AddrField::Source => "saddr",
                    AddrField::Destination => "daddr",
                };
                let op = if *negate { "!= " } else { "" };
                if *len == 32 {
                    write!(f, "ip {field} {op}{net}")
                } else {
                    write!(f, "ip {field} {op}{net}/{len}")
                }
            }
            Match::Oifname { name, negate } => {
                let op = if *negate { "!= " } else { "" };
                write!(f, "oifname {op}\"{name}\"")
            }
            Match::Dport {
                protocol,
                ports: (first, last),
            } => {
                if first == last {
                    write!(f, "{protocol} dport {first}")
                } else {
                    write!(f, "{protocol} dport {first}-{last}")
                }
            }
            Match::FibDaddrLocal => f.write_str("fib daddr type local"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Masquerade => f.write_str("masquerade"),
            Action::Jump(chain) => write!(f, "jump {chain}"),
            Action::Dnat { addr, port: None } => write!(f, "dnat to {addr}"),
            Action::Dnat {
                addr,
                port: Some(port),
            } => write!(f, "dnat to {addr}:{port}"),
        }
    }
}

impl fmt::Display for Rule {
    /// As `nft list` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.matches {
            write!(f, "{m} ")?;
        }
        write!(f, "{}", self.action)?;
        if let Some(c) = &self.comment {
            write!(f, " comment \"{c}\"")?;
        }
        Ok(())
    }
}

impl fmt::Display for Plan {
    /// As `nft list table ip berth` (1.0.6) prints it; valid input to
    /// `nft -f`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "table ip {TABLE} {{")?;
        for (i, chain) in self.chains.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "\tchain {} {{", chain.name)?;
            if let Some(hook) = chain.hook {
                writeln!(f, "\t\t{hook}")?;
            }
            for rule in &chain.rules {
                writeln!(f, "\t\t{rule}")?;
            }
            writeln!(f, "\t}}")?;
        }
        writeln!(f, "}}")
    }
}

impl Plan {
    /// The chains and rules for `state`, or why it cannot be programmed.
    pub fn new(state: &Ruleset) -> Result<Plan, Error> {
        validate_ifname(&state.bridge)?;
        let (addr, len) = state.subnet;
        if !(1..=32).contains(&len) {
            return Err(Error::SubnetPrefix(len));
        }
        let net = Ipv4Addr::from(u32::from(addr) & u32::from(prefix_mask(len)));
        let subnet = |field| Match::Addr {
            field,
            net,
            len,
            negate: false,
        };
        let oifname = |negate| Match::Oifname {
            name: state.bridge.clone(),
            negate,
        };

        let mut postrouting = Vec::new();
        if state.masquerade {
            // Outbound: from the containers to anywhere but their bridge.
            postrouting.push(rule(
                vec![subnet(AddrField::Source), oifname(true)],
                Action::Masquerade,
            ));
        }
        // Hairpin: a container reaching a published port of the host is
        // DNATed back onto the bridge; without SNAT the server would answer
        // it directly, from an address it never connected to. Only such
        // connections are routed from the bridge back onto it: containers
        // talk to each other over the bridge without routing.
        postrouting.push(rule(
            vec![
                subnet(AddrField::Source),
                subnet(AddrField::Destination),
                oifname(false),
            ],
            Action::Masquerade,
        ));

        let to_published = Action::Jump(PUBLISHED.into());
        let prerouting = vec![rule(vec![Match::FibDaddrLocal], to_published.clone())];
        // Connections of the host itself to one of its own addresses; not
        // to 127.0.0.0/8, which the kernel does not route off the host
        // (that would need route_localnet on the bridge).
        let output = vec![rule(
            vec![
                Match::Addr {
                    field: AddrField::Destination,
                    net: Ipv4Addr::new(127, 0, 0, 0),
                    len: 8,
                    negate: true,
                },
                Match::FibDaddrLocal,
            ],
            to_published,
        )];

        let mut published = Vec::new();
        for (i, p) in state.ports.iter().enumerate() {
            validate_port(p)?;
            if let Some(q) = state.ports[..i].iter().find(|q| overlap(p, q)) {
                return Err(Error::PortConflict {
                    first: q.container.clone(),
                    second: p.container.clone(),
                    protocol: p.protocol,
                    ports: range_text(p.host_ports),
                });
            }
            published_rules(p, &mut published);
        }

        Ok(Plan {
            chains: vec![
                base(Hook::Postrouting, "postrouting", postrouting),
                base(Hook::Prerouting, "prerouting", prerouting),
                base(Hook::Output, "output", output),
                Chain {
                    name: PUBLISHED.into(),
                    hook: None,
                    rules: published,
                },
            ],
        })
    }

    /// The transaction that replaces table `ip berth` with this plan.
    ///
    /// Adding the table before deleting it makes the delete succeed whether
    /// or not the table exists; the whole is one batch, so the old rules
    /// stay in force until the new ones are, and a refused batch changes
    /// nothing.
    pub fn batch(&self) -> Batch {
        let mut batch = Batch::new();
        add_table(&mut batch);
        del_table(&mut batch);
        add_table(&mut batch);
        for chain in &self.chains {
            add_chain(&mut batch, chain);
        }
        for chain in &self.chains {
            for rule in &chain.rules {
                add_rule(&mut batch, &chain.name, rule);
            }
        }
        batch
    }
}

/// The transaction that deletes table `ip berth`, absent or not.
pub fn removal() -> Batch {
    let mut batch = Batch::new();
    add_table(&mut batch);
    del_table(&mut batch);
    batch
}

fn add_table(batch: &mut Batch) {
    batch.push(NFT_MSG_NEWTABLE, 0, format!("add table ip {TABLE}"), |b| {
        put_str(b, NFTA_TABLE_NAME, TABLE);
        put_u32(b, NFTA_TABLE_FLAGS, 0);
    });
}

fn del_table(batch: &mut Batch) {
    batch.push(
        NFT_MSG_DELTABLE,
        0,
        format!("delete table ip {TABLE}"),
        |b| {
            put_str(b, NFTA_TABLE_NAME, TABLE);
        },
    );
}

fn add_chain(batch: &mut Batch, chain: &Chain) {
    let op = match chain.hook {
        Some(hook) => format!("add chain ip {TABLE} {} {{ {hook} }}", chain.name),
        None => format!("add chain ip {TABLE} {}", chain.name),
    };
    batch.push(NFT_MSG_NEWCHAIN, NLM_F_CREATE, op, |b| {
        put_str(b, NFTA_CHAIN_TABLE, TABLE);
        put_str(b, NFTA_CHAIN_NAME, &chain.name);
        if let Some(hook) = chain.hook {
            put_str(b, NFTA_CHAIN_TYPE, "nat");
            put_u32(b, NFTA_CHAIN_POLICY, NF_ACCEPT);
            nest(b, NFTA_CHAIN_HOOK, |b| {
                put_u32(b, NFTA_HOOK_HOOKNUM, hook.number());
                put(b, NFTA_HOOK_PRIORITY, &hook.priority().to_be_bytes());
            });
        }
    });
}

fn add_rule(batch: &mut Batch, chain: &str, rule: &Rule) {
    let op = format!("add rule ip {TABLE} {chain} {rule}");
    batch.push(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, op, |b| {
        put_str(b, NFTA_RULE_TABLE, TABLE);
        put_str(b, NFTA_RULE_CHAIN, chain);
        super::expr::put_list(b, &rule.exprs());
        if let Some(comment) = &rule.comment {
            // libnftnl's user data: a type-length-value list.
            let mut udata = vec![NFTNL_UDATA_RULE_COMMENT, (comment.len() + 1) as u8];
            udata.extend_from_slice(comment.as_bytes());
            udata.push(0);
            put(b, NFTA_RULE_USERDATA, &udata);
        }
    });
}

fn base(hook: Hook, name: &str, rules: Vec<Rule>) -> Chain {
    Chain {
        name: name.into(),
        hook: Some(hook),
        rules,
    }
}

fn rule(matches: Vec<Match>, action: Action) -> Rule {
    Rule {
        matches,
        action,
        comment: None,
    }
}

/// The DNAT rules of one published port or range: a single port, or a
/// range to the same ports, is one rule (a DNAT without a port keeps it);
/// a shifted range is one rule per port, since the kernel's DNAT maps a
/// range onto a range only from Linux 6.6 on.
fn published_rules(p: &Published, out: &mut Vec<Rule>) {
    let (first, last) = p.host_ports;
    let comment = Some(comment(&p.container));
    let matches = |ports| {
        let mut m = Vec::new();
        if let Some(ip) = p.host_ip {
            m.push(Match::Addr {
                field: AddrField::Destination,
                net: ip,
                len: 32,
                negate: false,
            });
        }
        m.push(Match::Dport {
            protocol: p.protocol,
            ports,
        });
        m
    };
    if first == last || first == p.container_port {
        let port = (first == last).then_some(p.container_port);
        out.push(Rule {
            matches: matches((first, last)),
            action: Action::Dnat {
                addr: p.container_ip,
                port,
            },
            comment,
        });
        return;
    }
    for host in first..=last {
        let port = p.container_port + (host - first);
        out.push(Rule {
            matches: matches((host, host)),
            action: Action::Dnat {
                addr: p.container_ip,
                port: Some(port),
            },
            comment: comment.clone(),
        });
    }
}

fn comment(container: &str) -> String {
    let mut end = container.len().min(COMMENT_MAX);
    while !container.is_char_boundary(end) {
        end -= 1;
    }
    container[..end].replace(['"', '\0'], "_")
}

fn prefix_mask(len: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0))
}

fn range_text((first, last): (u16, u16)) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// What the kernel accepts as an interface name (`dev_valid_name`).
fn validate_ifname(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() < IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(Error::BridgeName(name.into()))
    }
}

fn validate_port(p: &Published) -> Result<(), Error> {
    let (first, last) = p.host_ports;
    let count = u32::from(last)
        .wrapping_sub(u32::from(first))
        .wrapping_add(1);
    let reason = if first == 0 || p.container_port == 0 {
        Some("port 0 cannot be published")
    } else if first > last {
        Some("the range ends before it starts")
    } else if u32::from(p.container_port) + count - 1 > u32::from(u16::MAX) {
        Some("the container's range goes past port 65535")
    } else if first != last && first != p.container_port && count > MAX_SHIFTED_RANGE {
        Some("a range mapped to other ports may hold at most 1024 ports")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::Port {
            container: p.container.clone(),
            protocol: p.protocol,
            ports: range_text(p.host_ports),
            reason,
        }),
    }
}

/// Whether two published ports would catch the same packets.
fn overlap(a: &Published, b: &Published) -> bool {
    let ips = match (a.host_ip, b.host_ip) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    a.protocol == b.protocol
        && ips
        && a.host_ports.0 <= b.host_ports.1
        && b.host_ports.0 <= a.host_ports.1
}

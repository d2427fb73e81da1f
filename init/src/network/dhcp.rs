//! A DHCPv4 client (RFC 2131): a pure state machine, its small wire codec,
//! and the socket and netlink driver around it.
//!
//! The machine ([`Client`]) does no I/O and has no clock of its own: every
//! input is an [`Event`] with the time it happened (a reply, a timeout, a
//! request to release); every effect is an [`Action`] for the driver: a
//! packet to send, a lease to apply, a lease to remove. It says when it next
//! wants a [`Event::Timeout`] through [`Client::deadline`]. So its rules are
//! unit-tested with a fake clock.
//!
//! # States
//! `init` → `selecting` (DISCOVER sent, waiting for an OFFER) → `requesting`
//! (REQUEST sent for the first OFFER, waiting for the ACK) → `bound` (the
//! lease is applied) → at T1 `renewing` (REQUEST unicast to the server) →
//! at T2 `rebinding` (REQUEST broadcast to any server) → at expiry the
//! address is removed and the client starts over in `init`. An ACK in
//! `renewing` or `rebinding` extends the lease; a NAK in `requesting`,
//! `renewing` or `rebinding` removes any address and starts over.
//! `released` is final: the lease was given back (DHCPRELEASE) at shutdown.
//!
//! # Timers
//! - DISCOVER and the first REQUEST are retransmitted after
//!   [`RETRANSMIT_INITIAL`] (1 s), doubling up to [`RETRANSMIT_MAX`] (64 s).
//!   RFC 2131 suggests starting at 4 s; berth starts at 1 s because
//!   containers wait for the first lease. DISCOVER is retried forever; a
//!   REQUEST unanswered [`REQUEST_TRIES`] times sends the client back to
//!   DISCOVER.
//! - T1 and T2 are the server's, or 50% and 87.5% of the lease. A lease
//!   without a time is taken as [`DEFAULT_LEASE`] (1 h); leases shorter than
//!   [`MIN_LEASE`] (10 s) are lengthened to it; 0xffffffff is infinite (no
//!   timers).
//! - In `renewing` and `rebinding`, REQUESTs are retransmitted after half
//!   the time left until T2 (or expiry), at least [`RENEW_RETRY_MIN`]
//!   (60 s), never past T2 (or expiry).
//! - After a NAK the client starts over at once; after consecutive NAKs it
//!   waits 1 s, 2 s, ... up to 64 s first.
//!
//! # Packets
//! Before it has an address the client sets the broadcast flag, so servers
//! broadcast their replies: a UDP socket bound to `0.0.0.0:68` with
//! `SO_BINDTODEVICE` and `SO_BROADCAST` then receives them, and sends from
//! `0.0.0.0` to `255.255.255.255:67`, with no raw socket. This needs
//! reverse-path filtering off on the interface (`rp_filter` 0, the
//! kernel's default): with it on, the kernel drops replies to an interface
//! without an address, and the driver warns ([`rp_filter_blocks`]).
//! Requests are padded to 548 bytes (a 576-byte datagram): QEMU's built-in
//! server drops shorter ones.
//!
//! Except what goes before the client has an address (ciaddr 0: DISCOVER,
//! and REQUEST while selecting or rebooting). For those a UDP socket would
//! not send from `0.0.0.0`, as RFC 2131 asks: the kernel takes another
//! interface's address as the source, such as the container bridge's. A
//! server's host may hold that very address (another berth on the LAN, with
//! the default bridge subnet) and drops the packet as a martian. So those go
//! out on a packet socket, as an IPv4 datagram built here
//! ([`broadcast_packet`]) to the link's broadcast address.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::netlink::{Link, Netlink};

/// The client's UDP port.
pub const CLIENT_PORT: u16 = 68;
/// The servers' UDP port.
pub const SERVER_PORT: u16 = 67;
/// The first retransmission delay of DISCOVER and REQUEST.
pub const RETRANSMIT_INITIAL: Duration = Duration::from_secs(1);
/// The longest retransmission delay.
pub const RETRANSMIT_MAX: Duration = Duration::from_secs(64);
/// REQUESTs sent in `requesting` before starting over with DISCOVER.
pub const REQUEST_TRIES: u32 = 4;
/// The shortest wait between REQUESTs in `renewing` and `rebinding`.
pub const RENEW_RETRY_MIN: Duration = Duration::from_secs(60);
/// The lease assumed when an ACK has no lease time.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3600);
/// The shortest lease berth accepts (shorter ones are lengthened).
pub const MIN_LEASE: Duration = Duration::from_secs(10);
/// The smallest BOOTP payload berth sends (576-byte IP datagrams).
pub const MIN_PAYLOAD: usize = 548;
/// The largest reply berth reads.
const MAX_REPLY: usize = 1500;

/// Why the DHCP client cannot run or apply a lease.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// {iface}: cannot open the DHCP socket ({op}): {source}
    Socket {
        /// The interface.
        iface: String,
        /// The step that failed.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// {0}
    Netlink(#[from] super::netlink::Error),
}

/// Where the client is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No lease; about to send DISCOVER (or waiting after a NAK).
    Init,
    /// DISCOVER sent; waiting for an OFFER.
    Selecting,
    /// REQUEST sent for an OFFER; waiting for the ACK.
    Requesting,
    /// The lease is applied; waiting for T1.
    Bound,
    /// Past T1: asking the server to extend the lease.
    Renewing,
    /// Past T2: asking any server to extend the lease.
    Rebinding,
    /// The lease was released; the client is done.
    Released,
}

impl State {
    /// The word shown in status and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Init => "init",
            State::Selecting => "selecting",
            State::Requesting => "requesting",
            State::Bound => "bound",
            State::Renewing => "renewing",
            State::Rebinding => "rebinding",
            State::Released => "released",
        }
    }

    /// Whether a lease is applied in this state.
    pub fn has_lease(self) -> bool {
        matches!(self, State::Bound | State::Renewing | State::Rebinding)
    }
}

/// A lease, as applied to the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub address: Ipv4Addr,
    /// Its prefix length, from the subnet mask.
    pub prefix: u8,
    /// The default router, if the server gave one.
    pub router: Option<Ipv4Addr>,
    /// Nameservers.
    pub dns: Vec<Ipv4Addr>,
    /// Search domains (option 119, else the domain name, option 15).
    pub search: Vec<String>,
    /// The server that granted it (option 54).
    pub server: Ipv4Addr,
    /// How long it lasts; `None` for an infinite lease.
    pub duration: Option<Duration>,
    /// When to renew, from the start of the lease.
    pub t1: Duration,
    /// When to rebind, from the start of the lease.
    pub t2: Duration,
}

impl Lease {
    /// "10.0.2.15/24".
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefix)
    }

    /// Whether `ip` is in the lease's subnet.
    pub fn on_link(&self, ip: Ipv4Addr) -> bool {
        let mask = prefix_mask(self.prefix);
        u32::from(ip) & mask == u32::from(self.address) & mask
    }

    /// The nameservers as `IpAddr`s.
    pub fn dns_ips(&self) -> Vec<IpAddr> {
        self.dns.iter().map(|d| IpAddr::V4(*d)).collect()
    }

    /// The lease as one line for the console:
    /// `10.0.2.15/24 via 10.0.2.2 (DHCP, lease 86400 s)`.
    pub fn describe(&self) -> String {
        let via = self.router.map(|r| format!(" via {r}")).unwrap_or_default();
        let time = match self.duration {
            Some(d) => format!("lease {} s", d.as_secs()),
            None => "infinite lease".to_string(),
        };
        format!("{}{via} (DHCP, {time})", self.cidr())
    }
}

/// The kinds of replies the client acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// DHCPOFFER.
    Offer,
    /// DHCPACK.
    Ack,
    /// DHCPNAK.
    Nak,
}

/// A server's reply, with the options berth uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// OFFER, ACK or NAK.
    pub kind: ReplyKind,
    /// The transaction it answers.
    pub xid: u32,
    /// "Your" address.
    pub yiaddr: Ipv4Addr,
    /// Option 54, the server identifier.
    pub server: Option<Ipv4Addr>,
    /// Option 1.
    pub mask: Option<Ipv4Addr>,
    /// Option 3.
    pub routers: Vec<Ipv4Addr>,
    /// Option 6.
    pub dns: Vec<Ipv4Addr>,
    /// Option 15.
    pub domain: Option<String>,
    /// Option 119.
    pub search: Vec<String>,
    /// Option 51, in seconds.
    pub lease_time: Option<u32>,
    /// Option 58, in seconds.
    pub t1: Option<u32>,
    /// Option 59, in seconds.
    pub t2: Option<u32>,
    /// Option 56, the server's message (on a NAK, why).
    pub message: Option<String>,
}

impl Reply {
    /// An empty reply of `kind` to `xid`; tests and the parser fill it in.
    pub fn new(kind: ReplyKind, xid: u32) -> Reply {
        Reply {
            kind,
            xid,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            server: None,
            mask: None,
            routers: Vec::new(),
            dns: Vec::new(),
            domain: None,
            search: Vec::new(),
            lease_time: None,
            t1: None,
            t2: None,
            message: None,
        }
    }
}

/// DHCP message types (option 53).
pub mod msg {
    /// DHCPDISCOVER.
    pub const DISCOVER: u8 = 1;
    /// DHCPOFFER.
    pub const OFFER: u8 = 2;
    /// DHCPREQUEST.
    pub const REQUEST: u8 = 3;
    /// DHCPACK.
    pub const ACK: u8 = 5;
    /// DHCPNAK.
    pub const NAK: u8 = 6;
    /// DHCPRELEASE.
    pub const RELEASE: u8 = 7;
}

/// The option codes berth sends or reads (RFC 2132, RFC 3397).
pub mod opt {
    /// Pad.
    pub const PAD: u8 = 0;
    /// Subnet mask.
    pub const SUBNET_MASK: u8 = 1;
    /// Routers.
    pub const ROUTER: u8 = 3;
    /// Nameservers.
    pub const DNS: u8 = 6;
    /// Host name.
    pub const HOSTNAME: u8 = 12;
    /// Domain name.
    pub const DOMAIN_NAME: u8 = 15;
    /// Requested IP address.
    pub const REQUESTED_IP: u8 = 50;
    /// Lease time.
    pub const LEASE_TIME: u8 = 51;
    /// Message type.
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier.
    pub const SERVER_ID: u8 = 54;
    /// Parameter request list.
    pub const PARAMS: u8 = 55;
    /// Message (text).
    pub const MESSAGE: u8 = 56;
    /// Maximum message size.
    pub const MAX_SIZE: u8 = 57;
    /// Renewal (T1) time.
    pub const T1: u8 = 58;
    /// Rebinding (T2) time.
    pub const T2: u8 = 59;
    /// Client identifier.
    pub const CLIENT_ID: u8 = 61;
    /// Domain search list.
    pub const DOMAIN_SEARCH: u8 = 119;
    /// End.
    pub const END: u8 = 255;
}

/// BOOTREQUEST.
pub const BOOTREQUEST: u8 = 1;
/// BOOTREPLY.
pub const BOOTREPLY: u8 = 2;
/// The options' magic cookie.
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// The fixed part of a message, up to the magic cookie.
const HEADER: usize = 236;

/// A DHCP message as berth sends and reads it (RFC 2131 section 2): the
/// fixed BOOTP fields berth uses, an Ethernet `chaddr`, and the options in
/// order (no `sname`/`file` overloading).
///
/// berth encodes and decodes the few options it needs itself: dhcproto,
/// with the DNS library it pulls in for option 119, made the static binary
/// 250 KB larger. The tests check this codec against dhcproto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// [`BOOTREQUEST`] or [`BOOTREPLY`].
    pub op: u8,
    /// The transaction id.
    pub xid: u32,
    /// Seconds since the client began the exchange.
    pub secs: u16,
    /// The broadcast flag: "reply by broadcast, I have no address yet".
    pub broadcast: bool,
    /// The client's address, when it has one.
    pub ciaddr: Ipv4Addr,
    /// "Your" address, in replies.
    pub yiaddr: Ipv4Addr,
    /// The next server, in replies.
    pub siaddr: Ipv4Addr,
    /// The client's hardware address.
    pub chaddr: [u8; 6],
    /// The options, in order: code and data (repeated codes concatenated).
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Packet {
    /// An empty request from `chaddr`.
    pub fn request(xid: u32, chaddr: [u8; 6]) -> Packet {
        Packet {
            op: BOOTREQUEST,
            xid,
            secs: 0,
            broadcast: false,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            options: Vec::new(),
        }
    }

    /// Appends an option (at most 255 bytes of data are kept).
    pub fn push(&mut self, code: u8, data: &[u8]) {
        let data = &data[..data.len().min(255)];
        self.options.push((code, data.to_vec()));
    }

    /// An option's data.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| d.as_slice())
    }

    /// The message type (option 53).
    pub fn msg_type(&self) -> Option<u8> {
        self.option(opt::MESSAGE_TYPE)?.first().copied()
    }

    /// The wire form, padded to [`MIN_PAYLOAD`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MIN_PAYLOAD);
        b.extend_from_slice(&[self.op, 1, 6, 0]);
        b.extend_from_slice(&self.xid.to_be_bytes());
        b.extend_from_slice(&self.secs.to_be_bytes());
        let flags: u16 = if self.broadcast { 0x8000 } else { 0 };
        b.extend_from_slice(&flags.to_be_bytes());
        for a in [self.ciaddr, self.yiaddr, self.siaddr, Ipv4Addr::UNSPECIFIED] {
            b.extend_from_slice(&a.octets());
        }
        b.extend_from_slice(&self.chaddr);
        b.resize(HEADER, 0); // the rest of chaddr, sname, file
        b.extend_from_slice(&MAGIC);
        for (code, data) in &self.options {
            b.push(*code);
            b.push(data.len() as u8);
            b.extend_from_slice(data);
        }
        b.push(opt::END);
        if b.len() < MIN_PAYLOAD {
            b.resize(MIN_PAYLOAD, opt::PAD);
        }
        b
    }

    /// Reads a message; `None` if it is too short, not Ethernet, has no
    /// magic cookie, or its options run past its end.
    pub fn decode(b: &[u8]) -> Option<Packet> {
        if b.len() < HEADER + 4 || b[1] != 1 || b[2] != 6 || b[HEADER..HEADER + 4] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut chaddr = [0u8; 6];
        chaddr.copy_from_slice(&b[28..34]);
        let mut p = Packet {
            op: b[0],
            xid: u32_at(4),
            secs: u16::from_be_bytes([b[8], b[9]]),
            broadcast: b[10] & 0x80 != 0,
            ciaddr: Ipv4Addr::from(u32_at(12)),
            yiaddr: Ipv4Addr::from(u32_at(16)),
            siaddr: Ipv4Addr::from(u32_at(20)),
            chaddr,
            options: Vec::new(),
        };
        let mut i = HEADER + 4;
        while i < b.len() {
            let code = b[i];
            match code {
                opt::PAD => i += 1,
                opt::END => break,
                _ => {
                    let len = usize::from(*b.get(i + 1)?);
                    let data = b.get(i + 2..i + 2 + len)?;
                    // RFC 3396: a repeated option continues the first.
                    match p.options.iter_mut().find(|(c, _)| *c == code) {
                        Some((_, d)) => d.extend_from_slice(data),
                        None => p.options.push((code, data.to_vec())),
                    }
                    i += 2 + len;
                }
            }
        }
        Some(p)
    }
}

/// The IPv4 addresses in an option's data.
fn addrs(d: &[u8]) -> Vec<Ipv4Addr> {
    d.chunks_exact(4)
        .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
        .collect()
}

/// An option's data as one IPv4 address.
fn addr(d: &[u8]) -> Option<Ipv4Addr> {
    let a: [u8; 4] = d.try_into().ok()?;
    Some(Ipv4Addr::from(a))
}

/// An option's data as a 32-bit number.
fn number(d: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(d.try_into().ok()?))
}

/// An option's data as text (NULs at the end dropped, as some servers
/// send them).
fn text(d: &[u8]) -> String {
    String::from_utf8_lossy(d)
        .trim_end_matches('\0')
        .to_string()
}

/// The names of a domain search list (RFC 3397): DNS wire-format names,
/// with compression pointers into the list itself. Stops at the first
/// malformed name.
pub fn search_list(d: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut i = 0;
    while i < d.len() {
        let mut labels: Vec<String> = Vec::new();
        let mut at = i;
        let mut next = None; // where the following name starts
        let mut jumps = 0;
        loop {
            let Some(&len) = d.get(at) else {
                return names;
            };
            match len {
                0 => {
                    next.get_or_insert(at + 1);
                    break;
                }
                l if l & 0xc0 == 0xc0 => {
                    let Some(&low) = d.get(at + 1) else {
                        return names;
                    };
                    next.get_or_insert(at + 2);
                    jumps += 1;
                    if jumps > 32 {
                        return names;
                    }
                    at = (usize::from(l & 0x3f) << 8) | usize::from(low);
                }
                l if l & 0xc0 == 0 => {
                    let l = usize::from(l);
                    let Some(label) = d.get(at + 1..at + 1 + l) else {
                        return names;
                    };
                    labels.push(String::from_utf8_lossy(label).into_owned());
                    at += 1 + l;
                }
                _ => return names,
            }
        }
        if !labels.is_empty() {
            names.push(labels.join("."));
        }
        i = next.unwrap_or(d.len());
    }
    names
}

/// Parses a server's reply to the client with hardware address `mac`.
/// `None` for anything else: requests, other clients' replies, message
/// types the client does not act on, malformed packets.
pub fn parse(bytes: &[u8], mac: &[u8; 6]) -> Option<Reply> {
    let p = Packet::decode(bytes)?;
    if p.op != BOOTREPLY || p.chaddr != *mac {
        return None;
    }
    let kind = match p.msg_type()? {
        msg::OFFER => ReplyKind::Offer,
        msg::ACK => ReplyKind::Ack,
        msg::NAK => ReplyKind::Nak,
        _ => return None,
    };
    let mut r = Reply::new(kind, p.xid);
    r.yiaddr = p.yiaddr;
    for (code, d) in &p.options {
        match *code {
            opt::SERVER_ID => r.server = addr(d),
            opt::SUBNET_MASK => r.mask = addr(d),
            opt::ROUTER => r.routers = addrs(d),
            opt::DNS => r.dns = addrs(d),
            opt::DOMAIN_NAME => {
                r.domain = Some(text(d).trim_end_matches('.').to_string()).filter(|d| !d.is_empty())
            }
            opt::DOMAIN_SEARCH => r.search = search_list(d),
            opt::LEASE_TIME => r.lease_time = number(d),
            opt::T1 => r.t1 = number(d),
            opt::T2 => r.t2 = number(d),
            opt::MESSAGE => r.message = Some(text(d)),
            _ => {}
        }
    }
    Some(r)
}

/// The options berth asks servers for.
pub const REQUESTED_OPTIONS: [u8; 8] = [
    opt::SUBNET_MASK,
    opt::ROUTER,
    opt::DNS,
    opt::DOMAIN_NAME,
    opt::DOMAIN_SEARCH,
    opt::LEASE_TIME,
    opt::T1,
    opt::T2,
];

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// `255.255.255.255:67`.
    Broadcast,
    /// The server, unicast.
    Server(Ipv4Addr),
}

impl Dest {
    /// The socket address.
    pub fn addr(self) -> SocketAddrV4 {
        match self {
            Dest::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT),
            Dest::Server(s) => SocketAddrV4::new(s, SERVER_PORT),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A reply arrived (already parsed and addressed to this client).
    Reply(Reply),
    /// The deadline the client asked for has come.
    Timeout,
    /// Give the lease back and stop (shutdown).
    Release,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a packet.
    Send {
        /// Where to.
        to: Dest,
        /// The message.
        message: Packet,
    },
    /// Configure the interface with `lease`; `old` is the lease it extends
    /// or replaces (whose address goes if it differs).
    Apply {
        /// The new lease.
        lease: Lease,
        /// The previous one, on a renewal.
        old: Option<Lease>,
    },
    /// Remove the lease's address (and its default route).
    Remove(Lease),
}

/// The client's identity on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The interface's hardware address.
    pub mac: [u8; 6],
    /// The host name to send (option 12), if any.
    pub hostname: Option<String>,
}

/// One interface's DHCP client: the state machine.
#[derive(Debug, Clone)]
pub struct Client {
    id: Identity,
    state: State,
    /// The current transaction.
    xid: u32,
    /// The transaction id generator's state.
    rng: u64,
    /// Packets sent in this state (for back-off).
    sent: u32,
    /// When this exchange began (the `secs` field).
    began: Instant,
    /// The OFFER being requested.
    offer: Option<Reply>,
    /// The lease, while bound, renewing or rebinding.
    lease: Option<Lease>,
    /// When the lease began.
    bound_at: Option<Instant>,
    /// When the client next wants a timeout.
    deadline: Option<Instant>,
    /// NAKs in a row.
    naks: u32,
}

/// What the client can say about itself, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Its state.
    pub state: State,
    /// Its lease, if bound, renewing or rebinding.
    pub lease: Option<Lease>,
    /// When the lease began.
    pub bound_at: Option<Instant>,
}

impl Snapshot {
    /// The status as JSON, with times relative to `now`.
    pub fn to_json(&self, now: Instant) -> serde_json::Value {
        let mut v = serde_json::json!({ "state": self.state.as_str() });
        if let (Some(l), Some(at)) = (&self.lease, self.bound_at) {
            let left = |d: Duration| (at + d).saturating_duration_since(now).as_secs();
            v["address"] = l.cidr().into();
            v["router"] = l.router.map(|r| r.to_string()).into();
            v["dns"] = l
                .dns
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .into();
            v["search"] = l.search.clone().into();
            v["server"] = l.server.to_string().into();
            v["lease_s"] = l.duration.map(|d| d.as_secs()).into();
            v["age_s"] = now.saturating_duration_since(at).as_secs().into();
            if let Some(d) = l.duration {
                v["renew_in_s"] = left(l.t1).into();
                v["rebind_in_s"] = left(l.t2).into();
                v["expires_in_s"] = left(d).into();
            }
        }
        v
    }
}

/// The back-off delay after `n` sends: 1 s, 2 s, 4 s, ... up to 64 s.
pub fn backoff(n: u32) -> Duration {
    RETRANSMIT_INITIAL
        .checked_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
        .unwrap_or(RETRANSMIT_MAX)
        .min(RETRANSMIT_MAX)
}

/// The netmask of a prefix length, as a host-order u32.
fn prefix_mask(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

/// The prefix length of a contiguous netmask.
pub fn mask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// The classful prefix of an address, for servers that send no mask.
fn classful(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// The lease an ACK grants, or `None` for an ACK without an address or
/// server (which the client ignores).
pub fn lease_from(ack: &Reply, offer: Option<&Reply>) -> Option<Lease> {
    if ack.yiaddr.is_unspecified() {
        return None;
    }
    let server = ack.server.or(offer.and_then(|o| o.server))?;
    let prefix = ack
        .mask
        .or(offer.and_then(|o| o.mask))
        .and_then(mask_prefix)
        .unwrap_or_else(|| classful(ack.yiaddr));
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    let duration = match ack.lease_time.or(offer.and_then(|o| o.lease_time)) {
        Some(u32::MAX) => None,
        Some(s) => Some(secs(s).max(MIN_LEASE)),
        None => Some(DEFAULT_LEASE),
    };
    let (t1, t2) = match duration {
        None => (Duration::MAX, Duration::MAX),
        Some(d) => {
            let t2 = ack
                .t2
                .map(secs)
                .filter(|t| *t > Duration::ZERO && *t < d)
                .unwrap_or(d * 7 / 8);
            let t1 = ack
                .t1
                .map(secs)
                .filter(|t| *t > Duration::ZERO && *t <= t2)
                .unwrap_or((d / 2).min(t2));
            (t1, t2)
        }
    };
    Some(Lease {
        address: ack.yiaddr,
        prefix,
        router: ack.routers.first().copied(),
        dns: ack.dns.clone(),
        search: if !ack.search.is_empty() {
            ack.search.clone()
        } else {
            ack.domain.iter().cloned().collect()
        },
        server,
        duration,
        t1,
        t2,
    })
}

impl Client {
    /// A client in `init`. `seed` seeds its transaction ids.
    pub fn new(id: Identity, seed: u64, now: Instant) -> Client {
        Client {
            id,
            state: State::Init,
            xid: 0,
            rng: seed | 1,
            sent: 0,
            began: now,
            offer: None,
            lease: None,
            bound_at: None,
            deadline: None,
            naks: 0,
        }
    }

    /// Its state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Its lease, while it has one applied.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// The current transaction id.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// When it wants the next [`Event::Timeout`]; `None` for never.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// What it can say about itself.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.state,
            lease: self.lease.clone(),
            bound_at: self.bound_at,
        }
    }

    /// Starts: sends the first DISCOVER.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Init {
            self.discover(now, &mut out);
        }
        out
    }

    /// Takes one event; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Reply(r) => self.reply(now, r, &mut out),
            Event::Timeout => {
                if self.deadline.is_some_and(|d| now >= d) {
                    self.timeout(now, &mut out);
                }
            }
            Event::Release => self.release(&mut out),
        }
        out
    }

    fn next_xid(&mut self) -> u32 {
        // xorshift64*: enough to tell transactions apart.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    fn message(&self, now: Instant, kind: u8, ciaddr: Ipv4Addr) -> Packet {
        let mut p = Packet::request(self.xid, self.id.mac);
        p.ciaddr = ciaddr;
        // Without an address the client can receive only broadcasts.
        p.broadcast = ciaddr.is_unspecified();
        p.push(opt::MESSAGE_TYPE, &[kind]);
        let mut client_id = vec![1u8];
        client_id.extend_from_slice(&self.id.mac);
        p.push(opt::CLIENT_ID, &client_id);
        if kind != msg::RELEASE {
            let secs = now.saturating_duration_since(self.began).as_secs();
            p.secs = u16::try_from(secs).unwrap_or(u16::MAX);
            p.push(opt::PARAMS, &REQUESTED_OPTIONS);
            p.push(opt::MAX_SIZE, &(MAX_REPLY as u16).to_be_bytes());
            if let Some(h) = &self.id.hostname {
                p.push(opt::HOSTNAME, h.as_bytes());
            }
        }
        p
    }

    fn send_discover(&mut self, now: Instant, out: &mut Vec<Action>) {
        let message = self.message(now, msg::DISCOVER, Ipv4Addr::UNSPECIFIED);
        out.push(Action::Send {
            to: Dest::Broadcast,
            message,
        });
        self.deadline = Some(now + backoff(self.sent));
        self.sent += 1;
    }

    fn discover(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.state = State::Selecting;
        self.xid = self.next_xid();
        self.began = now;
        self.sent = 0;
        self.offer = None;
        self.send_discover(now, out);
    }

    fn send_request(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(offer) = &self.offer else { return };
        let (address, server) = (offer.yiaddr, offer.server);
        let mut message = self.message(now, msg::REQUEST, Ipv4Addr::UNSPECIFIED);
        message.push(opt::REQUESTED_IP, &address.octets());
        if let Some(s) = server {
            message.push(opt::SERVER_ID, &s.octets());
        }
        out.push(Action::Send {
            to: Dest::Broadcast,
            message,
        });
        self.deadline = Some(now + backoff(self.sent));
        self.sent += 1;
    }

    /// A REQUEST to extend the lease: unicast when renewing, broadcast
    /// when rebinding; the next try after half the time left until `end`,
    /// at least [`RENEW_RETRY_MIN`], never past `end`.
    fn send_extend(&mut self, now: Instant, end: Instant, out: &mut Vec<Action>) {
        let Some(lease) = &self.lease else { return };
        let to = if self.state == State::Renewing {
            Dest::Server(lease.server)
        } else {
            Dest::Broadcast
        };
        let message = self.message(now, msg::REQUEST, lease.address);
        out.push(Action::Send { to, message });
        let wait = (end.saturating_duration_since(now) / 2).max(RENEW_RETRY_MIN);
        self.deadline = Some((now + wait).min(end));
        self.sent += 1;
    }

    fn reply(&mut self, now: Instant, r: Reply, out: &mut Vec<Action>) {
        if r.xid != self.xid {
            return;
        }
        match (self.state, r.kind) {
            (State::Selecting, ReplyKind::Offer) => {
                if r.yiaddr.is_unspecified() || r.server.is_none() {
                    return;
                }
                self.state = State::Requesting;
                self.offer = Some(r);
                self.sent = 0;
                self.send_request(now, out);
            }
            (State::Requesting, ReplyKind::Ack | ReplyKind::Nak) => {
                let chosen = self.offer.as_ref().and_then(|o| o.server);
                if r.server.is_some() && chosen.is_some() && r.server != chosen {
                    return; // another server's answer to our broadcast
                }
                if r.kind == ReplyKind::Nak {
                    self.nak(now, out);
                } else if let Some(lease) = lease_from(&r, self.offer.as_ref()) {
                    self.bind(now, lease, None, out);
                }
            }
            (State::Renewing | State::Rebinding, ReplyKind::Ack) => {
                if let Some(lease) = lease_from(&r, None) {
                    let old = self.lease.take();
                    self.bind(now, lease, old, out);
                }
            }
            (State::Renewing | State::Rebinding, ReplyKind::Nak) => self.nak(now, out),
            _ => {}
        }
    }

    fn bind(&mut self, now: Instant, lease: Lease, old: Option<Lease>, out: &mut Vec<Action>) {
        self.state = State::Bound;
        self.naks = 0;
        self.sent = 0;
        self.offer = None;
        self.bound_at = Some(now);
        self.deadline = lease.duration.map(|_| now + lease.t1);
        self.lease = Some(lease.clone());
        out.push(Action::Apply { lease, old });
    }

    fn drop_lease(&mut self, out: &mut Vec<Action>) {
        if let Some(l) = self.lease.take() {
            out.push(Action::Remove(l));
        }
        self.bound_at = None;
    }

    fn nak(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.drop_lease(out);
        self.naks += 1;
        self.state = State::Init;
        self.offer = None;
        if self.naks == 1 {
            self.discover(now, out);
        } else {
            self.deadline = Some(now + backoff(self.naks - 2));
        }
    }

    fn timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::Init => self.discover(now, out),
            State::Selecting => self.send_discover(now, out),
            State::Requesting if self.sent >= REQUEST_TRIES => self.discover(now, out),
            State::Requesting => self.send_request(now, out),
            State::Bound | State::Renewing | State::Rebinding => self.lease_timer(now, out),
            State::Released => self.deadline = None,
        }
    }

    fn lease_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        let (Some(lease), Some(at)) = (&self.lease, self.bound_at) else {
            return;
        };
        let Some(duration) = lease.duration else {
            self.deadline = None;
            return;
        };
        let (t1, t2, expiry) = (at + lease.t1, at + lease.t2, at + duration);
        if now >= expiry {
            self.drop_lease(out);
            self.state = State::Init;
            self.discover(now, out);
        } else if now >= t2 {
            if self.state != State::Rebinding {
                self.state = State::Rebinding;
                self.xid = self.next_xid();
                self.began = now;
                self.sent = 0;
            }
            self.send_extend(now, expiry, out);
        } else if now >= t1 {
            if self.state != State::Renewing {
                self.state = State::Renewing;
                self.xid = self.next_xid();
                self.began = now;
                self.sent = 0;
            }
            self.send_extend(now, t2, out);
        } else {
            self.deadline = Some(t1);
        }
    }

    fn release(&mut self, out: &mut Vec<Action>) {
        if let (true, Some(lease)) = (self.state.has_lease(), &self.lease) {
            let (address, server) = (lease.address, lease.server);
            self.xid = self.next_xid();
            let mut message = self.message(self.began, msg::RELEASE, address);
            message.push(opt::SERVER_ID, &server.octets());
            out.push(Action::Send {
                to: Dest::Server(server),
                message,
            });
        }
        self.drop_lease(out);
        self.state = State::Released;
        self.deadline = None;
    }
}

/// The IPv4 packet of a DHCP message broadcast by a client without an
/// address: from `0.0.0.0:68` to `255.255.255.255:67`, TTL 64, with the
/// header and UDP checksums.
pub fn broadcast_packet(payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let src = Ipv4Addr::UNSPECIFIED.octets();
    let dst = Ipv4Addr::BROADCAST.octets();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    // identification, flags and fragment offset, TTL, protocol, checksum
    p.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let ip_sum = checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    p.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    p.extend_from_slice(&SERVER_PORT.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    let udp_sum = match checksum(&[&pseudo, &p[20..]]) {
        // 0 means "no checksum" in UDP; all ones stands for it.
        0 => 0xffff,
        s => s,
    };
    p[26..28].copy_from_slice(&udp_sum.to_be_bytes());
    p
}

/// The Internet checksum (RFC 1071) of the concatenation of `parts`, each
/// of even length but the last.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut words = part.chunks(2);
        for w in words.by_ref() {
            let hi = u32::from(w[0]) << 8;
            let lo = w.get(1).map_or(0, |b| u32::from(*b));
            sum += hi | lo;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends an IPv4 `packet` to the link-layer broadcast address of interface
/// `index`, through a packet socket (the kernel adds the Ethernet header).
/// Needs CAP_NET_RAW, which PID 1 has.
fn send_link_broadcast(index: u32, packet: &[u8]) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket(2) with constant arguments; the result is checked and
    // owned at once.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new, valid descriptor no one else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all zeros is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: the buffer and address are valid for the lengths given, for
    // the duration of the call; fd is open.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            libc::MSG_DONTWAIT,
            std::ptr::from_ref(&to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The client's socket: UDP on `0.0.0.0:68`, bound to the interface, able
/// to broadcast. Must be opened in the event loop.
pub fn socket(iface: &str) -> Result<tokio::net::UdpSocket, Error> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let err = |op| {
        move |source| Error::Socket {
            iface: iface.to_string(),
            op,
            source,
        }
    };
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(err("socket"))?;
    s.set_reuse_address(true).map_err(err("SO_REUSEADDR"))?;
    s.set_broadcast(true).map_err(err("SO_BROADCAST"))?;
    s.bind_device(Some(iface.as_bytes()))
        .map_err(err("SO_BINDTODEVICE"))?;
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT);
    s.bind(&SockAddr::from(any))
        .map_err(err("bind to port 68"))?;
    s.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
    tokio::net::UdpSocket::from_std(s.into()).map_err(err("register"))
}

/// The effective reverse-path filter of an interface, from the text of
/// `conf/all/rp_filter` and `conf/<iface>/rp_filter` (the larger wins), if
/// it is on. On, the kernel drops packets from a source it has no route
/// back to through the interface, and without an address there is none:
/// the broadcast OFFER and ACK are lost (the client would need a packet
/// socket to see them).
pub fn rp_filter_blocks(all: &str, iface: &str) -> Option<u32> {
    let v = |s: &str| s.trim().parse::<u32>().unwrap_or(0);
    let n = v(all).max(v(iface));
    (n != 0).then_some(n)
}

/// What the driver tells its owner as it goes.
#[derive(Debug)]
pub enum Report<'a> {
    /// The client's state or lease changed.
    Changed(Snapshot),
    /// A lease was applied (a first lease, a renewal, a new address).
    Applied(&'a Lease),
    /// A lease was removed (expired, refused, released).
    Removed(&'a Lease),
    /// Applying or removing a lease failed.
    Failed(String),
}

/// The driver: runs `client` on `link` until `stop` turns true, then
/// releases the lease (DHCPRELEASE, then the address goes) and returns.
/// With `default_route` false the lease's router is not installed (the
/// manifest has a static IPv4 gateway for the interface).
pub struct Driver {
    /// The interface.
    pub link: Link,
    /// Its netlink connection.
    pub netlink: Netlink,
    /// Route changes netlink.rs does not make.
    pub routes: super::host::Routes,
    /// Whether to install the lease's router as the default route.
    pub default_route: bool,
}

impl Driver {
    /// Runs until `stop` becomes true (or its sender goes). `report` hears
    /// of every change.
    pub async fn run(
        &self,
        mut client: Client,
        mut stop: tokio::sync::watch::Receiver<bool>,
        mut report: impl FnMut(Report<'_>),
    ) -> Result<(), Error> {
        let sock = socket(&self.link.name)?;
        let conf = |key: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{key}/rp_filter"))
                .unwrap_or_default()
        };
        if let Some(n) = rp_filter_blocks(&conf("all"), &conf(&self.link.name)) {
            log::warn!(
                "{}: rp_filter is {n}, so the kernel drops DHCP replies until the interface \
                 has an address; set net.ipv4.conf.all.rp_filter and net.ipv4.conf.{}.rp_filter \
                 to 0 in host.sysctls",
                self.link.name,
                self.link.name
            );
        }
        let mac = client.id.mac;
        let mut actions = client.start(Instant::now());
        let mut buf = vec![0u8; MAX_REPLY + 100];
        let mut last = client.snapshot();
        report(Report::Changed(last.clone()));
        loop {
            self.execute(&sock, actions, &mut report).await;
            let snap = client.snapshot();
            if snap != last {
                report(Report::Changed(snap.clone()));
                last = snap;
            }
            if client.state() == State::Released {
                return Ok(());
            }
            let deadline = client.deadline();
            let sleep = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            actions = tokio::select! {
                r = sock.recv_from(&mut buf) => match r {
                    Ok((n, _)) => match parse(&buf[..n], &mac) {
                        Some(reply) => client.handle(Instant::now(), Event::Reply(reply)),
                        None => Vec::new(),
                    },
                    Err(e) => {
                        log::warn!("{}: DHCP receive: {e}", self.link.name);
                        tokio::time::sleep(RETRANSMIT_INITIAL).await;
                        Vec::new()
                    }
                },
                () = sleep => client.handle(Instant::now(), Event::Timeout),
                _ = stop.wait_for(|s| *s) => client.handle(Instant::now(), Event::Release),
            };
        }
    }

    async fn execute(
        &self,
        sock: &tokio::net::UdpSocket,
        actions: Vec<Action>,
        report: &mut impl FnMut(Report<'_>),
    ) {
        let name = &self.link.name;
        for a in actions {
            match a {
                Action::Send { to, message } => {
                    let kind = type_name(message.msg_type());
                    log::debug!("{name}: DHCP{kind} to {}", to.addr());
                    let bytes = message.encode();
                    let sent = if to == Dest::Broadcast && message.ciaddr.is_unspecified() {
                        send_link_broadcast(self.link.index, &broadcast_packet(&bytes))
                    } else {
                        sock.send_to(&bytes, to.addr()).await.map(|_| ())
                    };
                    if let Err(e) = sent {
                        log::warn!("{name}: cannot send DHCP{kind} to {}: {e}", to.addr());
                    }
                }
                Action::Apply { lease, old } => match self.apply(&lease, old.as_ref()).await {
                    Ok(()) => {
                        if old.as_ref().is_some_and(|o| same_config(o, &lease)) {
                            log::debug!("{name}: DHCP lease extended: {}", lease.describe());
                        } else {
                            log::info!("{name}: {}", lease.describe());
                        }
                        report(Report::Applied(&lease));
                    }
                    Err(e) => {
                        log::error!("{name}: cannot apply the DHCP lease {}: {e}", lease.cidr());
                        report(Report::Failed(e.to_string()));
                    }
                },
                Action::Remove(lease) => {
                    log::info!("{name}: DHCP lease {} given up; removing it", lease.cidr());
                    if let Err(e) = self.remove(&lease).await {
                        log::error!("{name}: cannot remove {}: {e}", lease.cidr());
                        report(Report::Failed(e.to_string()));
                    }
                    report(Report::Removed(&lease));
                }
            }
        }
    }

    async fn apply(&self, lease: &Lease, old: Option<&Lease>) -> Result<(), Error> {
        if let Some(o) = old
            && (o.address, o.prefix) != (lease.address, lease.prefix)
        {
            self.remove(o).await?;
        }
        let addr = IpAddr::V4(lease.address);
        self.netlink
            .add_address(&self.link, addr, lease.prefix)
            .await?;
        if let (true, Some(r)) = (self.default_route, lease.router) {
            if !lease.on_link(r) {
                // A router outside the subnet is reached through a host
                // route to it (RFC 3442's rule for such routers).
                let host = berth_config::Cidr {
                    addr: IpAddr::V4(r),
                    prefix: 32,
                };
                self.routes.replace_onlink(&self.link, host, None).await?;
            }
            self.netlink
                .replace_route(&self.link, None, Some(IpAddr::V4(r)), None)
                .await?;
        }
        Ok(())
    }

    async fn remove(&self, lease: &Lease) -> Result<(), Error> {
        if let (true, Some(r)) = (self.default_route, lease.router) {
            self.routes
                .delete(&self.link, None, Some(IpAddr::V4(r)))
                .await?;
        }
        self.netlink
            .del_address(&self.link, IpAddr::V4(lease.address))
            .await?;
        Ok(())
    }
}

/// A message type's name, for logs.
fn type_name(t: Option<u8>) -> &'static str {
    match t {
        Some(msg::DISCOVER) => "DISCOVER",
        Some(msg::REQUEST) => "REQUEST",
        Some(msg::RELEASE) => "RELEASE",
        Some(msg::OFFER) => "OFFER",
        Some(msg::ACK) => "ACK",
        Some(msg::NAK) => "NAK",
        _ => "(other)",
    }
}

/// Whether two leases configure the interface alike (only times differ).
fn same_config(a: &Lease, b: &Lease) -> bool {
    (a.address, a.prefix, a.router, &a.dns, &a.search)
        == (b.address, b.prefix, b.router, &b.dns, &b.search)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{
        Decodable, Decoder, DhcpOption, Encodable, Message, MessageType, Opcode, OptionCode,
    };

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    const ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

    fn client(t0: Instant) -> Client {
        Client::new(
            Identity {
                mac: MAC,
                hostname: Some("edge".into()),
            },
            42,
            t0,
        )
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// The one packet in `actions`: where to and its message.
    fn sent(actions: &[Action]) -> (Dest, &Packet) {
        let sends: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { to, message } => Some((*to, message)),
                _ => None,
            })
            .collect();
        assert_eq!(sends.len(), 1, "{actions:#?}");
        sends[0]
    }

    fn offer(xid: u32) -> Reply {
        let mut r = Reply::new(ReplyKind::Offer, xid);
        r.yiaddr = ADDR;
        r.server = Some(SERVER);
        r.mask = Some(Ipv4Addr::new(255, 255, 255, 0));
        r.routers = vec![SERVER];
        r.dns = vec![Ipv4Addr::new(10, 0, 2, 3)];
        r.lease_time = Some(3600);
        r
    }

    fn ack(xid: u32) -> Reply {
        Reply {
            kind: ReplyKind::Ack,
            ..offer(xid)
        }
    }

    /// A client bound at `t0` to a one-hour lease.
    fn bound(t0: Instant) -> Client {
        let mut c = client(t0);
        c.start(t0);
        c.handle(t0, Event::Reply(offer(c.xid())));
        let a = c.handle(t0, Event::Reply(ack(c.xid())));
        assert!(
            matches!(&a[..], [Action::Apply { old: None, .. }]),
            "{a:#?}"
        );
        assert_eq!(c.state(), State::Bound);
        c
    }

    #[test]
    fn discover_offer_request_ack_binds() {
        let t0 = Instant::now();
        let mut c = client(t0);
        let a = c.start(t0);
        let (to, m) = sent(&a);
        assert_eq!(to, Dest::Broadcast);
        assert_eq!(m.msg_type(), Some(msg::DISCOVER));
        assert!(m.broadcast);
        assert_eq!(m.chaddr, MAC);
        assert_eq!(c.state(), State::Selecting);
        assert_eq!(c.deadline(), Some(t0 + s(1)));

        // Another transaction's offer is ignored.
        assert!(c.handle(t0, Event::Reply(offer(c.xid() ^ 1))).is_empty());
        let a = c.handle(t0, Event::Reply(offer(c.xid())));
        let (to, m) = sent(&a);
        assert_eq!(to, Dest::Broadcast);
        assert_eq!(m.msg_type(), Some(msg::REQUEST));
        assert_eq!(m.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert!(m.broadcast);
        assert_eq!(m.option(opt::REQUESTED_IP), Some(&ADDR.octets()[..]));
        assert_eq!(m.option(opt::SERVER_ID), Some(&SERVER.octets()[..]));
        assert_eq!(c.state(), State::Requesting);

        // An ACK from another server answers someone else.
        let mut other = ack(c.xid());
        other.server = Some(Ipv4Addr::new(10, 0, 2, 9));
        assert!(c.handle(t0, Event::Reply(other)).is_empty());

        let t = t0 + Duration::from_millis(20);
        let a = c.handle(t, Event::Reply(ack(c.xid())));
        let lease = Lease {
            address: ADDR,
            prefix: 24,
            router: Some(SERVER),
            dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            search: vec![],
            server: SERVER,
            duration: Some(s(3600)),
            t1: s(1800),
            t2: s(3150),
        };
        assert_eq!(
            a,
            [Action::Apply {
                lease: lease.clone(),
                old: None
            }]
        );
        assert_eq!(c.state(), State::Bound);
        assert_eq!(c.lease(), Some(&lease));
        assert_eq!(c.deadline(), Some(t + s(1800)));
        assert_eq!(
            lease.describe(),
            "10.0.2.15/24 via 10.0.2.2 (DHCP, lease 3600 s)"
        );
    }

    #[test]
    fn discover_and_request_back_off_then_request_gives_up() {
        let t0 = Instant::now();
        let mut c = client(t0);
        c.start(t0);
        let xid = c.xid();
        let mut t = t0;
        for wait in [1, 2, 4, 8, 16, 32, 64, 64] {
            assert_eq!(c.deadline(), Some(t + s(wait)));
            // Early timeouts do nothing.
            assert!(c.handle(t, Event::Timeout).is_empty());
            t += s(wait);
            let a = c.handle(t, Event::Timeout);
            let (_, m) = sent(&a);
            assert_eq!(m.msg_type(), Some(msg::DISCOVER));
            // Retransmissions keep the transaction, and count the seconds.
            assert_eq!(m.xid, xid);
            assert_eq!(u64::from(m.secs), (t - t0).as_secs());
        }
        c.handle(t, Event::Reply(offer(xid)));
        for wait in [1, 2, 4] {
            t += s(wait);
            let a = c.handle(t, Event::Timeout);
            let (_, m) = sent(&a);
            assert_eq!(m.msg_type(), Some(msg::REQUEST));
        }
        // The fourth REQUEST went unanswered: start over.
        t += s(8);
        let a = c.handle(t, Event::Timeout);
        let (_, m) = sent(&a);
        assert_eq!(m.msg_type(), Some(msg::DISCOVER));
        assert_ne!(m.xid, xid);
        assert_eq!(c.state(), State::Selecting);
        assert_eq!(c.deadline(), Some(t + s(1)));
    }

    #[test]
    fn renews_at_t1_by_unicast_and_extends() {
        let t0 = Instant::now();
        let mut c = bound(t0);
        assert!(c.handle(t0 + s(1799), Event::Timeout).is_empty());
        let t1 = t0 + s(1800);
        let a = c.handle(t1, Event::Timeout);
        let (to, m) = sent(&a);
        assert_eq!(to, Dest::Server(SERVER));
        assert_eq!(m.msg_type(), Some(msg::REQUEST));
        assert_eq!(m.ciaddr, ADDR);
        assert!(!m.broadcast);
        assert!(m.option(opt::SERVER_ID).is_none());
        assert!(m.option(opt::REQUESTED_IP).is_none());
        assert_eq!(c.state(), State::Renewing);
        // Half the time to T2 (1350 s).
        assert_eq!(c.deadline(), Some(t1 + s(675)));

        let t = t1 + s(3);
        let a = c.handle(t, Event::Reply(ack(c.xid())));
        match &a[..] {
            [
                Action::Apply {
                    lease,
                    old: Some(old),
                },
            ] => {
                assert_eq!(lease.address, ADDR);
                assert_eq!(old.address, ADDR);
            }
            _ => panic!("{a:#?}"),
        }
        assert_eq!(c.state(), State::Bound);
        assert_eq!(c.deadline(), Some(t + s(1800)));
        assert_eq!(c.snapshot().bound_at, Some(t));
    }

    #[test]
    fn rebinds_at_t2_after_unanswered_renewals() {
        let t0 = Instant::now();
        let mut c = bound(t0);
        let mut t = t0 + s(1800);
        let mut unicasts = 0;
        // Renewals until T2 (3150 s), each after half the time left but at
        // least a minute: at 1800, 2475, 2812.5, 2981.25, 3065.6, 3125.6.
        loop {
            let a = c.handle(t, Event::Timeout);
            if c.state() == State::Rebinding {
                let (to, m) = sent(&a);
                assert_eq!(to, Dest::Broadcast);
                assert_eq!(m.ciaddr, ADDR);
                assert_eq!(m.msg_type(), Some(msg::REQUEST));
                break;
            }
            assert_eq!(sent(&a).0, Dest::Server(SERVER));
            unicasts += 1;
            t = c.deadline().unwrap();
        }
        assert_eq!(unicasts, 6);
        assert_eq!(t, t0 + s(3150));
        // In rebinding: half the time to expiry (450 s), at least 60 s.
        assert_eq!(c.deadline(), Some(t + s(225)));
        // Any server's ACK now extends the lease.
        let mut a = ack(c.xid());
        a.server = Some(Ipv4Addr::new(10, 0, 2, 4));
        let actions = c.handle(t + s(1), Event::Reply(a));
        assert!(matches!(&actions[..], [Action::Apply { old: Some(_), .. }]));
        assert_eq!(c.state(), State::Bound);
        assert_eq!(c.lease().unwrap().server, Ipv4Addr::new(10, 0, 2, 4));
    }

    #[test]
    fn expiry_removes_the_address_and_starts_over() {
        let t0 = Instant::now();
        let mut c = bound(t0);
        let mut t = t0 + s(1800);
        while c.state() != State::Init && t < t0 + s(3600) {
            c.handle(t, Event::Timeout);
            t = c.deadline().unwrap();
        }
        assert_eq!(c.state(), State::Rebinding);
        assert_eq!(t, t0 + s(3600));
        let a = c.handle(t, Event::Timeout);
        match &a[..] {
            [Action::Remove(l), Action::Send { to, message }] => {
                assert_eq!(l.address, ADDR);
                assert_eq!(*to, Dest::Broadcast);
                assert_eq!(message.msg_type(), Some(msg::DISCOVER));
            }
            _ => panic!("{a:#?}"),
        }
        assert_eq!(c.state(), State::Selecting);
        assert!(c.lease().is_none());
    }

    #[test]
    fn a_late_wakeup_goes_straight_to_the_right_state() {
        let t0 = Instant::now();
        let mut c = bound(t0);
        // Suspended past T2: rebinding, not renewing.
        c.handle(t0 + s(3200), Event::Timeout);
        assert_eq!(c.state(), State::Rebinding);
        let mut c = bound(t0);
        let a = c.handle(t0 + s(4000), Event::Timeout);
        assert!(matches!(a[0], Action::Remove(_)));
        assert_eq!(c.state(), State::Selecting);
    }

    #[test]
    fn nak_restarts_and_backs_off_when_repeated() {
        let t0 = Instant::now();
        // A NAK to the first REQUEST: DISCOVER again at once.
        let mut c = client(t0);
        c.start(t0);
        c.handle(t0, Event::Reply(offer(c.xid())));
        let old = c.xid();
        let a = c.handle(t0, Event::Reply(Reply::new(ReplyKind::Nak, old)));
        let (_, m) = sent(&a);
        assert_eq!(m.msg_type(), Some(msg::DISCOVER));
        assert_ne!(m.xid, old);
        assert_eq!(c.state(), State::Selecting);
        // A second NAK in a row: wait 1 s, then 2 s for the third.
        c.handle(t0, Event::Reply(offer(c.xid())));
        let a = c.handle(t0, Event::Reply(Reply::new(ReplyKind::Nak, c.xid())));
        assert!(a.is_empty());
        assert_eq!((c.state(), c.deadline()), (State::Init, Some(t0 + s(1))));
        let a = c.handle(t0 + s(1), Event::Timeout);
        assert_eq!(sent(&a).1.msg_type(), Some(msg::DISCOVER));
        c.handle(t0 + s(1), Event::Reply(offer(c.xid())));
        c.handle(t0 + s(1), Event::Reply(Reply::new(ReplyKind::Nak, c.xid())));
        assert_eq!(c.deadline(), Some(t0 + s(3)));

        // A NAK while renewing removes the address, then starts over.
        let mut c = bound(t0);
        c.handle(t0 + s(1800), Event::Timeout);
        let a = c.handle(
            t0 + s(1801),
            Event::Reply(Reply::new(ReplyKind::Nak, c.xid())),
        );
        match &a[..] {
            [Action::Remove(l), Action::Send { message, .. }] => {
                assert_eq!(l.address, ADDR);
                assert_eq!(message.msg_type(), Some(msg::DISCOVER));
            }
            _ => panic!("{a:#?}"),
        }
        assert!(c.lease().is_none());
    }

    #[test]
    fn release_sends_dhcprelease_then_removes() {
        let t0 = Instant::now();
        let mut c = bound(t0);
        let a = c.handle(t0 + s(5), Event::Release);
        match &a[..] {
            [Action::Send { to, message }, Action::Remove(l)] => {
                assert_eq!(*to, Dest::Server(SERVER));
                assert_eq!(message.msg_type(), Some(msg::RELEASE));
                assert_eq!(message.ciaddr, ADDR);
                assert_eq!(message.option(opt::SERVER_ID), Some(&SERVER.octets()[..]));
                assert_eq!(l.address, ADDR);
            }
            _ => panic!("{a:#?}"),
        }
        assert_eq!((c.state(), c.deadline()), (State::Released, None));
        // Nothing moves it after that.
        assert!(c.handle(t0 + s(9999), Event::Timeout).is_empty());
        assert!(c.handle(t0, Event::Reply(ack(c.xid()))).is_empty());
        // Without a lease, release sends nothing.
        let mut c = client(t0);
        c.start(t0);
        assert!(c.handle(t0, Event::Release).is_empty());
        assert_eq!(c.state(), State::Released);
    }

    #[test]
    fn leases_take_the_servers_times_within_reason() {
        let mut a = ack(1);
        a.t1 = Some(100);
        a.t2 = Some(200);
        let l = lease_from(&a, None).unwrap();
        assert_eq!((l.t1, l.t2, l.duration), (s(100), s(200), Some(s(3600))));
        // T1 after T2, T2 after the lease: the defaults.
        a.t1 = Some(3300);
        a.t2 = Some(9000);
        let l = lease_from(&a, None).unwrap();
        assert_eq!((l.t1, l.t2), (s(1800), s(3150)));
        // Infinite, missing, tiny.
        a.lease_time = Some(u32::MAX);
        assert_eq!(lease_from(&a, None).unwrap().duration, None);
        a.lease_time = None;
        assert_eq!(lease_from(&a, None).unwrap().duration, Some(DEFAULT_LEASE));
        a.lease_time = Some(1);
        assert_eq!(lease_from(&a, None).unwrap().duration, Some(MIN_LEASE));
        // No mask: classful. No address or server: no lease.
        a.mask = None;
        assert_eq!(lease_from(&a, None).unwrap().prefix, 8);
        a.server = None;
        assert!(lease_from(&a, None).is_none());
        assert!(lease_from(&a, Some(&offer(1))).is_some());
        // Domain name when there is no search list.
        let mut a = ack(1);
        a.domain = Some("lan".into());
        assert_eq!(lease_from(&a, None).unwrap().search, ["lan"]);
        a.search = vec!["a.example".into()];
        assert_eq!(lease_from(&a, None).unwrap().search, ["a.example"]);
    }

    #[test]
    fn an_infinite_lease_has_no_timers() {
        let t0 = Instant::now();
        let mut c = client(t0);
        c.start(t0);
        c.handle(t0, Event::Reply(offer(c.xid())));
        let mut a = ack(c.xid());
        a.lease_time = Some(u32::MAX);
        c.handle(t0, Event::Reply(a));
        assert_eq!((c.state(), c.deadline()), (State::Bound, None));
        let j = c.snapshot().to_json(t0);
        assert_eq!(j["lease_s"], serde_json::Value::Null);
        assert!(j.get("expires_in_s").is_none());
    }

    #[test]
    fn reverse_path_filtering_is_the_larger_of_all_and_the_interface() {
        assert_eq!(rp_filter_blocks("0\n", "0\n"), None);
        assert_eq!(rp_filter_blocks("", ""), None);
        assert_eq!(rp_filter_blocks("1\n", "0\n"), Some(1));
        assert_eq!(rp_filter_blocks("0\n", "2\n"), Some(2));
    }

    #[test]
    fn broadcasts_without_an_address_are_well_formed_ipv4_udp() {
        for payload in [&b"odd"[..], &[0u8; 548][..], &[0xffu8; 300][..]] {
            let p = broadcast_packet(payload);
            assert_eq!(p.len(), 28 + payload.len());
            assert_eq!(p[0], 0x45);
            assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
            assert_eq!((p[8], p[9]), (64, 17));
            assert_eq!(p[12..16], [0, 0, 0, 0]);
            assert_eq!(p[16..20], [255; 4]);
            assert_eq!(u16::from_be_bytes([p[20], p[21]]), 68);
            assert_eq!(u16::from_be_bytes([p[22], p[23]]), 67);
            assert_eq!(
                usize::from(u16::from_be_bytes([p[24], p[25]])),
                8 + payload.len()
            );
            assert_eq!(&p[28..], payload);
            // A header with its checksum sums to all ones: checksum 0.
            assert_eq!(checksum(&[&p[..20]]), 0);
            let mut pseudo = vec![0, 0, 0, 0, 255, 255, 255, 255, 0, 17];
            pseudo.extend_from_slice(&p[24..26]);
            assert_eq!(checksum(&[&pseudo, &p[20..]]), 0);
        }
        // RFC 1071's example: words 0001 f203 f4f5 f6f7 sum to ddf2.
        assert_eq!(
            checksum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            !0xddf2
        );
    }

    #[test]
    fn masks_and_backoff() {
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(mask_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
        assert_eq!(backoff(0), s(1));
        assert_eq!(backoff(5), s(32));
        assert_eq!(backoff(6), s(64));
        assert_eq!(backoff(40), s(64));
        let l = lease_from(&ack(1), None).unwrap();
        assert!(l.on_link(SERVER));
        assert!(!l.on_link(Ipv4Addr::new(10, 0, 3, 1)));
    }

    #[test]
    fn requests_carry_the_options_berth_uses_and_are_padded() {
        let t0 = Instant::now();
        let mut c = client(t0);
        let a = c.start(t0);
        let (_, m) = sent(&a);
        let bytes = m.encode();
        assert_eq!(bytes.len(), MIN_PAYLOAD);
        let back = Message::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(back.opcode(), Opcode::BootRequest);
        assert_eq!(back.xid(), c.xid());
        assert!(back.flags().broadcast());
        let o = back.opts();
        assert_eq!(
            o.get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(vec![
                1, 0x52, 0x54, 0, 0x12, 0x34, 0x56
            ]))
        );
        assert_eq!(
            o.get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("edge".into()))
        );
        assert_eq!(
            o.get(OptionCode::ParameterRequestList),
            Some(&DhcpOption::ParameterRequestList(
                REQUESTED_OPTIONS
                    .iter()
                    .map(|c| OptionCode::from(*c))
                    .collect()
            ))
        );
        assert_eq!(
            o.get(OptionCode::MaxMessageSize),
            Some(&DhcpOption::MaxMessageSize(1500))
        );
        assert_eq!(o.msg_type(), Some(MessageType::Discover));
        assert_eq!(back.chaddr(), MAC);

        // The REQUEST for an offer, and a RELEASE, as dhcproto reads them.
        let a = c.handle(t0 + s(2), Event::Reply(offer(c.xid())));
        let back = Message::decode(&mut Decoder::new(&sent(&a).1.encode())).unwrap();
        assert_eq!(back.opts().msg_type(), Some(MessageType::Request));
        assert_eq!(back.secs(), 2);
        assert_eq!(
            back.opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(ADDR))
        );
        assert_eq!(
            back.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(SERVER))
        );
        c.handle(t0 + s(2), Event::Reply(ack(c.xid())));
        let a = c.handle(t0 + s(3), Event::Release);
        let back = Message::decode(&mut Decoder::new(&sent(&a).1.encode())).unwrap();
        assert_eq!(back.opts().msg_type(), Some(MessageType::Release));
        assert_eq!(back.ciaddr(), ADDR);
        assert!(!back.flags().broadcast());
        assert!(back.opts().get(OptionCode::ParameterRequestList).is_none());
    }

    #[test]
    fn packets_round_trip_and_malformed_ones_are_refused() {
        let mut p = Packet::request(7, MAC);
        p.op = BOOTREPLY;
        p.yiaddr = ADDR;
        p.broadcast = true;
        p.secs = 9;
        p.push(opt::MESSAGE_TYPE, &[msg::ACK]);
        p.push(opt::ROUTER, &[10, 0, 2, 2, 10, 0, 2, 1]);
        let bytes = p.encode();
        assert_eq!(Packet::decode(&bytes), Some(p.clone()));
        // A short packet, a missing cookie, an option past the end.
        assert!(Packet::decode(&bytes[..200]).is_none());
        let mut no_magic = bytes.clone();
        no_magic[236] = 0;
        assert!(Packet::decode(&no_magic).is_none());
        let mut cut = bytes[..240].to_vec();
        cut.extend_from_slice(&[opt::ROUTER, 8, 10, 0]);
        assert!(Packet::decode(&cut).is_none());
        // A split option (RFC 3396) is joined.
        let mut split = bytes[..240].to_vec();
        split.extend_from_slice(&[opt::DNS, 4, 10, 0, 2, 3, opt::PAD, opt::DNS, 4, 10, 0, 2, 4]);
        split.push(opt::END);
        let p = Packet::decode(&split).unwrap();
        assert_eq!(
            addrs(p.option(opt::DNS).unwrap()),
            [Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(10, 0, 2, 4)]
        );
    }

    #[test]
    fn search_lists_follow_compression_pointers_and_stop_at_loops() {
        let mut d = b"\x07example\x03org\x00".to_vec();
        d.extend_from_slice(b"\x03sub\xc0\x00");
        assert_eq!(search_list(&d), ["example.org", "sub.example.org"]);
        assert_eq!(search_list(b"\xc0\x00"), Vec::<String>::new());
        assert_eq!(search_list(b"\x03abc"), Vec::<String>::new());
        assert_eq!(search_list(b""), Vec::<String>::new());
    }

    /// A reply as a server would encode it.
    fn server_reply(kind: MessageType, chaddr: &[u8]) -> Vec<u8> {
        let mut m = Message::new_with_id(
            0x1234_5678,
            Ipv4Addr::UNSPECIFIED,
            ADDR,
            SERVER,
            Ipv4Addr::UNSPECIFIED,
            chaddr,
        );
        m.set_opcode(Opcode::BootReply);
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ServerIdentifier(SERVER));
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        o.insert(DhcpOption::Router(vec![SERVER, Ipv4Addr::new(10, 0, 2, 1)]));
        o.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            10, 0, 2, 3,
        )]));
        o.insert(DhcpOption::DomainName("example.org".into()));
        o.insert(DhcpOption::DomainSearch(vec![
            "a.example.".parse().unwrap(),
            "b.example".parse().unwrap(),
        ]));
        o.insert(DhcpOption::AddressLeaseTime(86400));
        o.insert(DhcpOption::Renewal(100));
        o.insert(DhcpOption::Rebinding(200));
        o.insert(DhcpOption::Message("go away".into()));
        m.to_vec().unwrap()
    }

    #[test]
    fn parses_the_options_berth_uses() {
        let r = parse(&server_reply(MessageType::Ack, &MAC), &MAC).unwrap();
        assert_eq!(
            r,
            Reply {
                kind: ReplyKind::Ack,
                xid: 0x1234_5678,
                yiaddr: ADDR,
                server: Some(SERVER),
                mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
                routers: vec![SERVER, Ipv4Addr::new(10, 0, 2, 1)],
                dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
                domain: Some("example.org".into()),
                search: vec!["a.example".into(), "b.example".into()],
                lease_time: Some(86400),
                t1: Some(100),
                t2: Some(200),
                message: Some("go away".into()),
            }
        );
        let r = parse(&server_reply(MessageType::Offer, &MAC), &MAC).unwrap();
        assert_eq!(r.kind, ReplyKind::Offer);
        assert_eq!(
            parse(&server_reply(MessageType::Nak, &MAC), &MAC)
                .unwrap()
                .kind,
            ReplyKind::Nak
        );
        // Someone else's reply, a request, garbage: nothing.
        assert!(parse(&server_reply(MessageType::Ack, &[1, 2, 3, 4, 5, 6]), &MAC).is_none());
        assert!(parse(&server_reply(MessageType::Inform, &MAC), &MAC).is_none());
        let t0 = Instant::now();
        let mut c = client(t0);
        let a = c.start(t0);
        assert!(parse(&sent(&a).1.encode(), &MAC).is_none());
        assert!(parse(b"\x02\x01", &MAC).is_none());
    }

    #[test]
    fn snapshot_reports_the_lease_and_its_times() {
        let t0 = Instant::now();
        let c = bound(t0);
        let j = c.snapshot().to_json(t0 + s(100));
        assert_eq!(j["state"], "bound");
        assert_eq!(j["address"], "10.0.2.15/24");
        assert_eq!(j["router"], "10.0.2.2");
        assert_eq!(j["dns"], serde_json::json!(["10.0.2.3"]));
        assert_eq!(j["server"], "10.0.2.2");
        assert_eq!(j["lease_s"], 3600);
        assert_eq!(j["age_s"], 100);
        assert_eq!(j["renew_in_s"], 1700);
        assert_eq!(j["rebind_in_s"], 3050);
        assert_eq!(j["expires_in_s"], 3500);
    }
}

//! The host's own interfaces, from `[host.network]`: `lo` first, then each
//! manifest interface once its link appears, by static configuration, by
//! DHCP, or both; `/etc/resolv.conf` from the result.
//!
//! [`HostNetwork::start`] spawns the work on the event loop and returns at
//! once, with a watch of the [`HostNetState`] that containers needing the
//! network wait on ([`wait_up`]):
//! - `Configuring` while some interface is within its bound;
//! - `Up` once every interface is configured (a DHCP interface: its first
//!   lease is applied), or at once after `lo` when there are none;
//! - `Failed(reason)` once the bounds have passed with some interface not
//!   configured; the reason names each such interface and its error.
//!
//! Bounds: a link must appear within [`LINK_WAIT`] (10 s) of the start;
//! a DHCP interface must get its first lease within [`DHCP_WAIT`] (30 s) of
//! its link appearing. Past either, the state says `Failed`, but berth keeps
//! at it: a late link is still configured (polled each second), the DHCP
//! client keeps asking, and the state turns `Up` when all is done.
//!
//! Static configuration goes in a fixed order ([`plan`]): MTU, up, the
//! addresses (IPv4 and IPv6), on-link routes, routes via gateways, then the
//! default gateways, so that every gateway is reachable when its route is
//! added. On-link IPv4 routes get scope link: the kernel accepts a gateway
//! only through a route of that scope.
//!
//! [`HostNetwork::shutdown`] releases DHCP leases (DHCPRELEASE), then
//! removes every address berth added, within [`SHUTDOWN_BOUND`] (3 s).

use std::cell::RefCell;
use std::net::IpAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use berth_config::{Cidr, Interface, Network};
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::route::{RouteMessage, RouteProtocol, RouteScope};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::HostNetState;
use super::dhcp;
use super::netlink::{self, Link, LinkFilter, Netlink};
use super::resolv::{self, Resolver};

/// How long a manifest interface's link may take to appear.
pub const LINK_WAIT: Duration = Duration::from_secs(10);
/// How long a DHCP interface may take to get its first lease.
pub const DHCP_WAIT: Duration = Duration::from_secs(30);
/// How long [`HostNetwork::shutdown`] may take.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(3);
/// How often links are looked for within [`LINK_WAIT`].
const LINK_POLL: Duration = Duration::from_millis(100);
/// How often a link that did not come in time is looked for.
const LINK_POLL_LATE: Duration = Duration::from_secs(1);
/// The NIC drivers berth loads before looking for links.
const NIC_MODULES: &[&str] = &["virtio_net"];

/// Why an interface is not configured.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// {iface}: no such interface after {secs} s
    Missing {
        /// The manifest's interface.
        iface: String,
        /// The bound.
        secs: u64,
    },
    /// {iface}: no DHCP lease after {secs} s (still trying)
    NoLease {
        /// The interface.
        iface: String,
        /// The bound.
        secs: u64,
    },
    /// {iface}: the DHCP lease was lost (still trying)
    LeaseLost {
        /// The interface.
        iface: String,
    },
    /// {iface}: {source}
    Netlink {
        /// The interface.
        iface: String,
        /// The netlink error (its operation, target and the kernel's answer).
        source: netlink::Error,
    },
    /// lo: cannot bring it up: {0}
    Loopback(nix::errno::Errno),
    /// {iface}: DHCP needs a hardware address, and the link has none
    NoMac {
        /// The interface.
        iface: String,
    },
    /// {0}
    Dhcp(#[from] dhcp::Error),
}

/// Knobs, for tests; [`Options::default`] is what PID 1 uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to write resolv.conf; `None` to leave it alone.
    pub resolv_conf: Option<PathBuf>,
    /// Whether to load the NIC driver modules first.
    pub load_modules: bool,
    /// How long a link may take to appear.
    pub link_wait: Duration,
    /// How long the first DHCP lease may take.
    pub dhcp_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            resolv_conf: Some(PathBuf::from(resolv::RESOLV_CONF)),
            load_modules: true,
            link_wait: LINK_WAIT,
            dhcp_wait: DHCP_WAIT,
        }
    }
}

/// One step of an interface's static configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Set the MTU (before up, as drivers prefer).
    Mtu(u32),
    /// Bring the link up.
    Up,
    /// Add an address.
    Address(Cidr),
    /// Add a route without a gateway.
    OnLink {
        /// The destination.
        to: Cidr,
        /// Its metric.
        metric: Option<u32>,
    },
    /// Add a route through a gateway.
    Via {
        /// The destination; `None` for the default route.
        to: Option<Cidr>,
        /// The gateway.
        via: IpAddr,
        /// Its metric.
        metric: Option<u32>,
    },
}

/// The static configuration of `i`, in the order it must be applied: MTU,
/// up, addresses, on-link routes, routes via gateways (default routes of
/// `routes` last among them), then `gateway` (IPv4, IPv6).
pub fn plan(i: &Interface) -> Vec<Step> {
    let mut steps = Vec::new();
    if let Some(m) = i.mtu {
        steps.push(Step::Mtu(m));
    }
    steps.push(Step::Up);
    steps.extend(i.addresses.iter().copied().map(Step::Address));
    for r in i.routes.iter().filter(|r| r.via.is_none()) {
        steps.push(Step::OnLink {
            to: r.to,
            metric: r.metric,
        });
    }
    let mut via: Vec<_> = i.routes.iter().filter(|r| r.via.is_some()).collect();
    via.sort_by_key(|r| r.to.prefix == 0);
    for r in via {
        if let Some(gw) = r.via {
            steps.push(Step::Via {
                to: (r.to.prefix != 0).then_some(r.to),
                via: gw,
                metric: r.metric,
            });
        }
    }
    let gateways = [i.gateway4.map(IpAddr::V4), i.gateway6.map(IpAddr::V6)];
    for gw in gateways.into_iter().flatten() {
        steps.push(Step::Via {
            to: None,
            via: gw,
            metric: None,
        });
    }
    steps
}

/// Whether link `l` is the manifest's interface `i`: its name and its MAC
/// must match those given (an entry with neither matches nothing).
pub fn matches(i: &Interface, l: &Link) -> bool {
    (i.name.is_some() || i.mac.is_some())
        && i.name.as_ref().is_none_or(|n| *n == l.name)
        && i.mac.is_none_or(|m| l.mac == Some(m.0))
}

/// How the manifest names an interface, for messages.
pub fn label(i: &Interface) -> String {
    match (&i.name, i.mac) {
        (Some(n), _) => n.clone(),
        (None, Some(m)) => m.to_string(),
        (None, None) => "(unnamed interface)".into(),
    }
}

/// Where one interface is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Being configured, within its bound.
    Pending,
    /// Configured.
    Up,
    /// Not configured; why.
    Failed(String),
}

impl Phase {
    fn as_str(&self) -> &'static str {
        match self {
            Phase::Pending => "configuring",
            Phase::Up => "up",
            Phase::Failed(_) => "failed",
        }
    }
}

/// The host network's state from its interfaces' phases and any failure
/// of its own (`lo`, netlink): configuring while any is pending, then up
/// if all are, else failed with every reason.
pub fn overall<'a>(
    phases: impl IntoIterator<Item = &'a Phase>,
    general: Option<&str>,
) -> HostNetState {
    let mut pending = false;
    let mut reasons: Vec<&str> = general.into_iter().collect();
    for p in phases {
        match p {
            Phase::Pending => pending = true,
            Phase::Up => {}
            Phase::Failed(r) => reasons.push(r),
        }
    }
    if pending {
        HostNetState::Configuring
    } else if reasons.is_empty() {
        HostNetState::Up
    } else {
        HostNetState::Failed(reasons.join("; "))
    }
}

/// Waits up to `bound` for the host network to be up: `Ok` once it is,
/// `Err(reason)` if it failed or the bound passed.
pub async fn wait_up(
    rx: &mut watch::Receiver<HostNetState>,
    bound: Duration,
) -> Result<(), String> {
    let waited = tokio::time::timeout(bound, async {
        match rx.wait_for(|s| *s != HostNetState::Configuring).await {
            Ok(s) => s.clone(),
            Err(_) => HostNetState::Failed("the host network's configuration ended".into()),
        }
    })
    .await;
    match waited {
        Ok(HostNetState::Up) => Ok(()),
        Ok(HostNetState::Failed(r)) => Err(r),
        Ok(HostNetState::Configuring) | Err(_) => Err(format!(
            "the host network is not up after {} s",
            bound.as_secs()
        )),
    }
}

/// Route changes netlink.rs does not make, on a connection of their own:
/// IPv4 on-link routes with scope link, and deletions.
#[derive(Clone)]
pub struct Routes {
    handle: rtnetlink::Handle,
}

impl Routes {
    /// Connects in the caller's network namespace; must run in the event
    /// loop (the connection is a task on it).
    pub fn new() -> Result<Routes, netlink::Error> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(netlink::Error::Socket)?;
        tokio::task::spawn_local(conn);
        Ok(Routes { handle })
    }

    fn message(
        l: &Link,
        dest: Option<Cidr>,
        gateway: Option<IpAddr>,
        metric: Option<u32>,
    ) -> RouteMessage {
        let v6 = dest.map_or(gateway.is_some_and(|g| g.is_ipv6()), |d| d.addr.is_ipv6());
        if v6 {
            let mut b = RouteMessageBuilder::<std::net::Ipv6Addr>::new().output_interface(l.index);
            if let Some(Cidr {
                addr: IpAddr::V6(a),
                prefix,
            }) = dest
            {
                b = b.destination_prefix(a, prefix);
            }
            if let Some(IpAddr::V6(g)) = gateway {
                b = b.gateway(g);
            }
            if let Some(m) = metric {
                b = b.priority(m);
            }
            b.build()
        } else {
            let mut b = RouteMessageBuilder::<std::net::Ipv4Addr>::new().output_interface(l.index);
            if let Some(Cidr {
                addr: IpAddr::V4(a),
                prefix,
            }) = dest
            {
                b = b.destination_prefix(a, prefix);
            }
            match gateway {
                Some(IpAddr::V4(g)) => b = b.gateway(g),
                _ => b = b.scope(RouteScope::Link),
            }
            if let Some(m) = metric {
                b = b.priority(m);
            }
            b.build()
        }
    }

    /// Adds or replaces an on-link route to `to` out of `l` (scope link
    /// for IPv4, so gateways behind it are accepted).
    pub async fn replace_onlink(
        &self,
        l: &Link,
        to: Cidr,
        metric: Option<u32>,
    ) -> Result<(), netlink::Error> {
        self.handle
            .route()
            .add(Self::message(l, Some(to), None, metric))
            .replace()
            .execute()
            .await
            .map_err(|source| netlink::Error::Request {
                op: "add route",
                target: format!("{to} dev {}", l.name),
                source,
            })
    }

    /// Deletes the route to `dest` (`None`: default) via `gateway` out of
    /// `l`, whatever its scope and origin; one already gone is fine.
    pub async fn delete(
        &self,
        l: &Link,
        dest: Option<Cidr>,
        gateway: Option<IpAddr>,
    ) -> Result<(), netlink::Error> {
        let mut m = Self::message(l, dest, gateway, None);
        m.header.scope = RouteScope::NoWhere;
        m.header.protocol = RouteProtocol::Unspec;
        match self.handle.route().del(m).execute().await {
            Ok(()) => Ok(()),
            Err(e) if netlink::is_errno(&e, libc::ESRCH) => Ok(()),
            Err(source) => Err(netlink::Error::Request {
                op: "delete route",
                target: format!(
                    "{} via {} dev {}",
                    dest.map_or("default".into(), |d| d.to_string()),
                    gateway.map_or("(on-link)".into(), |g| g.to_string()),
                    l.name
                ),
                source,
            }),
        }
    }
}

/// Applies one static step to `l`.
async fn apply_step(
    nl: &Netlink,
    routes: &Routes,
    l: &Link,
    step: &Step,
) -> Result<(), netlink::Error> {
    match *step {
        Step::Mtu(m) => nl.set_mtu(l, m).await,
        Step::Up => nl.up(l).await,
        Step::Address(c) => nl.add_address(l, c.addr, c.prefix).await,
        Step::OnLink { to, metric } if to.addr.is_ipv4() => {
            routes.replace_onlink(l, to, metric).await
        }
        Step::OnLink { to, metric } => {
            nl.replace_route(l, Some((to.addr, to.prefix)), None, metric)
                .await
        }
        Step::Via { to, via, metric } => {
            nl.replace_route(l, to.map(|c| (c.addr, c.prefix)), Some(via), metric)
                .await
        }
    }
}

/// One manifest interface's record.
#[derive(Debug, Clone)]
struct Iface {
    /// How messages name it: the manifest's name or MAC, and the link's
    /// name when that differs.
    label: String,
    /// Its link, once found.
    link: Option<Link>,
    phase: Phase,
    /// Static addresses berth added.
    added: Vec<Cidr>,
    /// The applied DHCP lease.
    lease: Option<dhcp::Lease>,
    /// The DHCP client's last word.
    dhcp: Option<dhcp::Snapshot>,
}

struct Inner {
    cfg: Network,
    opts: Options,
    state: watch::Sender<HostNetState>,
    stop: watch::Sender<bool>,
    ifaces: RefCell<Vec<Iface>>,
    /// A failure of the host network as a whole (lo, netlink).
    general: RefCell<Option<String>>,
    tasks: RefCell<Vec<tokio::task::JoinHandle<()>>>,
    netlink: RefCell<Option<Netlink>>,
    /// The resolv.conf text last written.
    resolv: RefCell<Option<String>>,
    started: Instant,
}

/// The host's interfaces, being configured or configured. Cheap to clone;
/// lives on PID 1's event loop (not `Send`).
#[derive(Clone)]
pub struct HostNetwork {
    inner: Rc<Inner>,
}

impl HostNetwork {
    /// Starts configuring the host network as `cfg` says; returns at once.
    /// Must be called on the event loop's `LocalSet`.
    pub fn start(cfg: &Network) -> (HostNetwork, watch::Receiver<HostNetState>) {
        Self::start_with(cfg, Options::default())
    }

    /// [`HostNetwork::start`] with other [`Options`].
    pub fn start_with(
        cfg: &Network,
        opts: Options,
    ) -> (HostNetwork, watch::Receiver<HostNetState>) {
        let (state, rx) = watch::channel(HostNetState::Configuring);
        let ifaces = cfg
            .interfaces
            .iter()
            .map(|i| Iface {
                label: label(i),
                link: None,
                phase: Phase::Pending,
                added: Vec::new(),
                lease: None,
                dhcp: None,
            })
            .collect();
        let inner = Rc::new(Inner {
            cfg: cfg.clone(),
            opts,
            state,
            stop: watch::channel(false).0,
            ifaces: RefCell::new(ifaces),
            general: RefCell::new(None),
            tasks: RefCell::new(Vec::new()),
            netlink: RefCell::new(None),
            resolv: RefCell::new(None),
            started: Instant::now(),
        });
        let task = tokio::task::spawn_local(run(inner.clone()));
        inner.tasks.borrow_mut().push(task);
        (HostNetwork { inner }, rx)
    }

    /// The current state.
    pub fn state(&self) -> HostNetState {
        self.inner.state.borrow().clone()
    }

    /// A new watch of the state.
    pub fn subscribe(&self) -> watch::Receiver<HostNetState> {
        self.inner.state.subscribe()
    }

    /// Releases DHCP leases and removes the addresses berth added, within
    /// [`SHUTDOWN_BOUND`]. Configuration stops for good.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        let deadline = tokio::time::Instant::now() + SHUTDOWN_BOUND;
        inner.stop.send_replace(true);
        // The first task spawns the others: take them one at a time.
        loop {
            let next = {
                let mut tasks = inner.tasks.borrow_mut();
                (!tasks.is_empty()).then(|| tasks.remove(0))
            };
            let Some(mut task) = next else { break };
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                log::warn!(
                    "network: configuration still busy after {} s; abandoning it",
                    SHUTDOWN_BOUND.as_secs()
                );
                task.abort();
            }
        }
        let nl = inner.netlink.borrow().clone();
        let Some(nl) = nl else { return };
        let added: Vec<(Link, Vec<Cidr>)> = inner
            .ifaces
            .borrow_mut()
            .iter_mut()
            .filter_map(|i| Some((i.link.clone()?, std::mem::take(&mut i.added))))
            .collect();
        for (link, cidrs) in added {
            for c in cidrs {
                match tokio::time::timeout_at(deadline, nl.del_address(&link, c.addr)).await {
                    Ok(Ok(())) => log::debug!("{}: removed {c}", link.name),
                    Ok(Err(e)) => log::warn!("{}: {e}", link.name),
                    Err(_) => {
                        log::warn!("{}: {c} not removed in time", link.name);
                        return;
                    }
                }
            }
        }
        log::info!("host network down");
    }

    /// The host network for `GET /v1/system/info`: its state, and per
    /// interface its link, addresses, gateways, DNS and DHCP lease.
    pub fn status(&self) -> Value {
        let inner = &self.inner;
        let now = Instant::now();
        let state = inner.state.borrow().clone();
        let (state_word, error) = match &state {
            HostNetState::Configuring => ("configuring", None),
            HostNetState::Up => ("up", None),
            HostNetState::Failed(r) => ("failed", Some(r.clone())),
        };
        let ifaces = inner.ifaces.borrow();
        let interfaces: Vec<Value> = inner
            .cfg
            .interfaces
            .iter()
            .zip(ifaces.iter())
            .map(|(c, i)| {
                let mut addresses: Vec<String> = i.added.iter().map(|a| a.to_string()).collect();
                if let Some(l) = &i.lease {
                    addresses.push(l.cidr());
                }
                let gateway4 = c
                    .gateway4
                    .or(i.lease.as_ref().and_then(|l| l.router))
                    .map(|g| g.to_string());
                json!({
                    "match": {
                        "name": c.name,
                        "mac": c.mac.map(|m| m.to_string()),
                    },
                    "name": i.link.as_ref().map(|l| l.name.clone()),
                    "index": i.link.as_ref().map(|l| l.index),
                    "mac": i.link.as_ref().and_then(|l| l.mac).map(|m| LinkFilter::Mac(m).to_string()),
                    "state": i.phase.as_str(),
                    "error": match &i.phase { Phase::Failed(r) => Some(r.clone()), _ => None },
                    "mtu": c.mtu,
                    "addresses": addresses,
                    "gateway4": gateway4,
                    "gateway6": c.gateway6.map(|g| g.to_string()),
                    "dns": i.lease.as_ref().map(|l| l.dns_ips()).unwrap_or_default(),
                    "dhcp": i.dhcp.as_ref().map(|s| s.to_json(now)),
                })
            })
            .collect();
        drop(ifaces);
        let r = inner.resolver();
        json!({
            "state": state_word,
            "error": error,
            "interfaces": interfaces,
            "dns": r.nameservers,
            "dns_search": r.search,
        })
    }
}

impl Inner {
    fn with_iface<T>(&self, idx: usize, f: impl FnOnce(&mut Iface) -> T) -> Option<T> {
        self.ifaces.borrow_mut().get_mut(idx).map(f)
    }

    fn phase(&self, idx: usize) -> Option<Phase> {
        self.with_iface(idx, |i| i.phase.clone())
    }

    fn set_phase(&self, idx: usize, phase: Phase) {
        self.with_iface(idx, |i| i.phase = phase);
        self.recompute();
    }

    fn fail_general(&self, reason: String) {
        log::error!("{reason}");
        *self.general.borrow_mut() = Some(reason);
        self.recompute();
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    fn recompute(&self) {
        let new = {
            let ifaces = self.ifaces.borrow();
            let general = self.general.borrow();
            overall(ifaces.iter().map(|i| &i.phase), general.as_deref())
        };
        let changed = self.state.send_if_modified(|s| {
            if *s == new {
                return false;
            }
            *s = new.clone();
            true
        });
        if changed {
            let ms = self.started.elapsed().as_millis();
            match &new {
                HostNetState::Up => log::info!("host network up ({ms} ms)"),
                HostNetState::Failed(r) => log::warn!("host network not up: {r}"),
                HostNetState::Configuring => {}
            }
        }
    }

    fn resolver(&self) -> Resolver {
        let ifaces = self.ifaces.borrow();
        let leases: Vec<(Vec<IpAddr>, Vec<String>)> = ifaces
            .iter()
            .filter_map(|i| i.lease.as_ref().map(|l| (l.dns_ips(), l.search.clone())))
            .collect();
        Resolver::merge(
            &self.cfg.dns,
            &self.cfg.dns_search,
            leases.iter().map(|(d, s)| (d.as_slice(), s.as_slice())),
        )
    }

    /// Writes resolv.conf if what it should say changed (and it has ever
    /// had something to say).
    fn update_resolv(&self) {
        let Some(path) = &self.opts.resolv_conf else {
            return;
        };
        let r = self.resolver();
        let text = r.render();
        let mut last = self.resolv.borrow_mut();
        if last.as_deref() == Some(text.as_str()) || (last.is_none() && r.is_empty()) {
            return;
        }
        match resolv::write_atomic(path, &text) {
            Ok(()) => {
                let ns: Vec<String> = r.nameservers.iter().map(|n| n.to_string()).collect();
                log::info!("{}: nameservers [{}]", path.display(), ns.join(", "));
                *last = Some(text);
            }
            Err(e) => log::warn!("{e}"),
        }
    }
}

/// Brings `lo` up, then starts a task per manifest interface. The netlink
/// connections are made only for those: `lo` needs none
/// ([`super::loopback`]).
async fn run(inner: Rc<Inner>) {
    if let Err(errno) = super::loopback::up() {
        inner.fail_general(Error::Loopback(errno).to_string());
    }
    inner.update_resolv();
    if inner.cfg.interfaces.is_empty() || inner.stopping() {
        inner.recompute();
        return;
    }
    let nl = match Netlink::new() {
        Ok(n) => n,
        Err(e) => return inner.fail_general(format!("cannot configure the network: {e}")),
    };
    let routes = match Routes::new() {
        Ok(r) => r,
        Err(e) => return inner.fail_general(format!("cannot configure the network: {e}")),
    };
    *inner.netlink.borrow_mut() = Some(nl.clone());
    if inner.opts.load_modules {
        load_nic_modules();
    }
    for idx in 0..inner.cfg.interfaces.len() {
        let task =
            tokio::task::spawn_local(configure(inner.clone(), nl.clone(), routes.clone(), idx));
        inner.tasks.borrow_mut().push(task);
    }
}

/// Loads the NIC drivers berth's image ships; failures are logged (the
/// kernel may have them built in, and a missing link says the rest).
fn load_nic_modules() {
    use crate::boot::modules;
    let dir = modules::release_dir();
    let names: Vec<String> = NIC_MODULES.iter().map(|m| m.to_string()).collect();
    let (loaded, errors) = modules::load_all(&dir, &modules::Index::read(&dir), &names);
    log::debug!("loaded {loaded} NIC driver module(s)");
    for e in errors {
        log::warn!("{e}");
    }
}

/// The link matching `i`, if there is one now.
async fn find_link(nl: &Netlink, i: &Interface) -> Result<Option<Link>, netlink::Error> {
    Ok(nl.links().await?.into_iter().find(|l| matches(i, l)))
}

/// Waits for interface `idx`'s link, applies its static configuration,
/// then runs its DHCP client until shutdown.
async fn configure(inner: Rc<Inner>, nl: Netlink, routes: Routes, idx: usize) {
    let iface = inner.cfg.interfaces[idx].clone();
    let mut stop = inner.stop.subscribe();
    let manifest_label = label(&iface);
    let mut late = false;
    let link = loop {
        match find_link(&nl, &iface).await {
            Ok(Some(l)) => break l,
            Ok(None) => {}
            Err(e) => log::debug!("{manifest_label}: {e}"),
        }
        if !late && inner.started.elapsed() >= inner.opts.link_wait {
            late = true;
            let e = Error::Missing {
                iface: manifest_label.clone(),
                secs: inner.opts.link_wait.as_secs(),
            };
            log::error!("{e}; still looking for it");
            inner.set_phase(idx, Phase::Failed(e.to_string()));
        }
        let wait = if late { LINK_POLL_LATE } else { LINK_POLL };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    };
    let label = if iface.name.as_deref() == Some(link.name.as_str()) {
        link.name.clone()
    } else {
        format!("{manifest_label} ({})", link.name)
    };
    inner.with_iface(idx, |i| {
        i.label.clone_from(&label);
        i.link = Some(link.clone());
    });
    if late {
        log::info!("{label}: appeared late; configuring it");
    }

    let steps = plan(&iface);
    for step in &steps {
        if let Err(source) = apply_step(&nl, &routes, &link, step).await {
            let e = Error::Netlink {
                iface: label.clone(),
                source,
            };
            log::error!("{e}");
            inner.set_phase(idx, Phase::Failed(e.to_string()));
            return;
        }
        if let Step::Address(c) = step {
            inner.with_iface(idx, |i| i.added.push(*c));
        }
    }
    if let Some(summary) = describe_static(&iface) {
        log::info!("{label}: {summary} (static)");
    }
    if !iface.dhcp {
        inner.set_phase(idx, Phase::Up);
        return;
    }
    let Some(mac) = link.mac else {
        let e = Error::NoMac { iface: label };
        log::error!("{e}");
        inner.set_phase(idx, Phase::Failed(e.to_string()));
        return;
    };
    run_dhcp(&inner, idx, &iface, link, mac, nl, routes, &label, stop).await;
}

/// Runs interface `idx`'s DHCP client until shutdown, keeping its phase,
/// its lease and resolv.conf up to date.
#[allow(clippy::too_many_arguments)]
async fn run_dhcp(
    inner: &Rc<Inner>,
    idx: usize,
    iface: &Interface,
    link: Link,
    mac: [u8; 6],
    nl: Netlink,
    routes: Routes,
    label: &str,
    stop: watch::Receiver<bool>,
) {
    // A static IPv4 default route wins over the lease's router.
    let default_route = iface.gateway4.is_none()
        && !iface
            .routes
            .iter()
            .any(|r| r.to.prefix == 0 && r.to.addr.is_ipv4());
    let driver = dhcp::Driver {
        link,
        netlink: nl,
        routes,
        default_route,
    };
    let id = dhcp::Identity {
        mac,
        hostname: hostname(),
    };
    let client = dhcp::Client::new(id, seed(&mac), Instant::now());
    let timer = {
        let inner = inner.clone();
        let e = Error::NoLease {
            iface: label.to_string(),
            secs: inner.opts.dhcp_wait.as_secs(),
        };
        tokio::task::spawn_local(async move {
            tokio::time::sleep(inner.opts.dhcp_wait).await;
            if inner.phase(idx) == Some(Phase::Pending) && !inner.stopping() {
                log::warn!("{e}");
                inner.set_phase(idx, Phase::Failed(e.to_string()));
            }
        })
    };
    let ran = driver
        .run(client, stop, |r| match r {
            dhcp::Report::Changed(s) => {
                inner.with_iface(idx, |i| i.dhcp = Some(s));
            }
            dhcp::Report::Applied(l) => {
                inner.with_iface(idx, |i| i.lease = Some(l.clone()));
                inner.update_resolv();
                inner.set_phase(idx, Phase::Up);
            }
            dhcp::Report::Removed(_) => {
                inner.with_iface(idx, |i| i.lease = None);
                if !inner.stopping() {
                    inner.update_resolv();
                    let e = Error::LeaseLost {
                        iface: label.to_string(),
                    };
                    inner.set_phase(idx, Phase::Failed(e.to_string()));
                }
            }
            dhcp::Report::Failed(msg) => {
                inner.set_phase(idx, Phase::Failed(format!("{label}: {msg}")));
            }
        })
        .await;
    timer.abort();
    if let Err(e) = ran {
        log::error!("{e}");
        inner.set_phase(idx, Phase::Failed(Error::from(e).to_string()));
    }
}

/// The static part of an interface as one line: addresses, gateways, MTU.
fn describe_static(i: &Interface) -> Option<String> {
    let mut parts: Vec<String> = i.addresses.iter().map(|a| a.to_string()).collect();
    let gws: Vec<String> = [i.gateway4.map(IpAddr::V4), i.gateway6.map(IpAddr::V6)]
        .into_iter()
        .flatten()
        .map(|g| g.to_string())
        .collect();
    if !gws.is_empty() {
        parts.push(format!("via {}", gws.join(", ")));
    }
    if !i.routes.is_empty() {
        parts.push(format!("{} route(s)", i.routes.len()));
    }
    if let Some(m) = i.mtu {
        parts.push(format!("mtu {m}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The host name to give DHCP servers, if one is set.
fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty() && h != "(none)" && h != "localhost").then(|| h.to_string())
}

/// A seed for DHCP transaction ids: the MAC, the time and the pid.
fn seed(mac: &[u8; 6]) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut m = [0u8; 8];
    m[..6].copy_from_slice(mac);
    nanos ^ u64::from_le_bytes(m).rotate_left(17) ^ u64::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_config::{MacAddr, Route};

    fn cidr(s: &str) -> Cidr {
        let (a, p) = s.split_once('/').unwrap();
        Cidr {
            addr: a.parse().unwrap(),
            prefix: p.parse().unwrap(),
        }
    }

    fn iface() -> Interface {
        Interface {
            name: None,
            mac: None,
            dhcp: false,
            addresses: Vec::new(),
            gateway4: None,
            gateway6: None,
            routes: Vec::new(),
            mtu: None,
        }
    }

    fn link(name: &str, mac: [u8; 6]) -> Link {
        Link {
            index: 2,
            name: name.into(),
            mac: Some(mac),
            up: false,
            running: false,
        }
    }

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    #[test]
    fn interfaces_match_by_name_mac_or_both() {
        let l = link("eth0", MAC);
        let by_name = Interface {
            name: Some("eth0".into()),
            ..iface()
        };
        let by_mac = Interface {
            mac: Some(MacAddr(MAC)),
            ..iface()
        };
        let both = Interface {
            name: Some("eth0".into()),
            mac: Some(MacAddr(MAC)),
            ..iface()
        };
        assert!(matches(&by_name, &l));
        assert!(matches(&by_mac, &l));
        assert!(matches(&both, &l));
        // By MAC: whatever the link's name.
        assert!(matches(&by_mac, &link("enp0s3", MAC)));
        // Both given: both must match.
        assert!(!matches(&both, &link("eth1", MAC)));
        assert!(!matches(&both, &link("eth0", [2, 0, 0, 0, 0, 1])));
        assert!(!matches(&by_name, &link("eth1", MAC)));
        assert!(!matches(
            &by_mac,
            &Link {
                mac: None,
                ..l.clone()
            }
        ));
        assert!(!matches(&iface(), &l));
        assert_eq!(label(&by_mac), "52:54:00:12:34:56");
        assert_eq!(label(&both), "eth0");
    }

    #[test]
    fn static_configuration_goes_mtu_up_addresses_onlink_via_gateways() {
        let i = Interface {
            name: Some("eth0".into()),
            addresses: vec![cidr("10.0.2.15/24"), cidr("fd00::15/64")],
            gateway4: Some("10.0.2.2".parse().unwrap()),
            gateway6: Some("fd00::2".parse().unwrap()),
            routes: vec![
                Route {
                    to: cidr("0.0.0.0/0"),
                    via: Some("10.9.0.1".parse().unwrap()),
                    metric: Some(500),
                },
                Route {
                    to: cidr("10.8.0.0/16"),
                    via: Some("10.9.0.1".parse().unwrap()),
                    metric: None,
                },
                Route {
                    to: cidr("10.9.0.0/24"),
                    via: None,
                    metric: Some(10),
                },
            ],
            mtu: Some(1400),
            ..iface()
        };
        assert_eq!(
            plan(&i),
            [
                Step::Mtu(1400),
                Step::Up,
                Step::Address(cidr("10.0.2.15/24")),
                Step::Address(cidr("fd00::15/64")),
                Step::OnLink {
                    to: cidr("10.9.0.0/24"),
                    metric: Some(10)
                },
                Step::Via {
                    to: Some(cidr("10.8.0.0/16")),
                    via: "10.9.0.1".parse().unwrap(),
                    metric: None
                },
                Step::Via {
                    to: None,
                    via: "10.9.0.1".parse().unwrap(),
                    metric: Some(500)
                },
                Step::Via {
                    to: None,
                    via: "10.0.2.2".parse().unwrap(),
                    metric: None
                },
                Step::Via {
                    to: None,
                    via: "fd00::2".parse().unwrap(),
                    metric: None
                },
            ]
        );
        // DHCP only: just up.
        let d = Interface {
            name: Some("eth0".into()),
            dhcp: true,
            ..iface()
        };
        assert_eq!(plan(&d), [Step::Up]);
        assert_eq!(
            describe_static(&i).unwrap(),
            "10.0.2.15/24, fd00::15/64, via 10.0.2.2, fd00::2, 3 route(s), mtu 1400"
        );
        assert_eq!(describe_static(&d), None);
    }

    #[test]
    fn the_state_waits_for_every_interface() {
        use HostNetState::*;
        let f = |r: &str| Phase::Failed(r.into());
        assert_eq!(overall([], None), Up);
        assert_eq!(overall([], Some("lo: down")), Failed("lo: down".into()));
        assert_eq!(overall([&Phase::Up, &Phase::Pending], None), Configuring);
        // A failure waits for the pending ones, then names every failure.
        assert_eq!(
            overall([&f("eth1: gone"), &Phase::Pending], None),
            Configuring
        );
        assert_eq!(
            overall([&f("eth1: gone"), &Phase::Up, &f("eth2: no lease")], None),
            Failed("eth1: gone; eth2: no lease".into())
        );
        assert_eq!(overall([&Phase::Up, &Phase::Up], None), Up);
    }

    #[test]
    fn on_link_ipv4_routes_have_scope_link() {
        let l = link("eth0", MAC);
        let m = Routes::message(&l, Some(cidr("10.9.0.0/24")), None, None);
        assert_eq!(m.header.scope, RouteScope::Link);
        assert_eq!(m.header.destination_prefix_length, 24);
        let m = Routes::message(&l, None, Some("10.0.2.2".parse().unwrap()), None);
        assert_eq!(m.header.scope, RouteScope::Universe);
        let m = Routes::message(&l, Some(cidr("fd00::/64")), None, Some(5));
        assert_eq!(m.header.destination_prefix_length, 64);
    }

    #[test]
    fn wait_up_is_bounded_and_says_why() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, mut rx) = watch::channel(HostNetState::Configuring);
            let e = wait_up(&mut rx, Duration::from_millis(20))
                .await
                .unwrap_err();
            assert_eq!(e, "the host network is not up after 0 s");
            tx.send_replace(HostNetState::Failed(
                "eth0: no DHCP lease after 30 s".into(),
            ));
            let e = wait_up(&mut rx, Duration::from_secs(5)).await.unwrap_err();
            assert_eq!(e, "eth0: no DHCP lease after 30 s");
            tx.send_replace(HostNetState::Up);
            assert_eq!(wait_up(&mut rx, Duration::from_secs(5)).await, Ok(()));
        });
    }
}

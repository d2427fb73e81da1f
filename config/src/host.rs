//! Reading `[host]` and its sub-tables into [`Host`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::defaults::{self, limits};
use crate::keys;
use crate::model::{
    Api, Bridge, DataDevice, DeviceRef, FatalAction, Filesystem, Host, Interface, LogFiles,
    LogLevel, Logging, Network, RemoteApi, Route, Storage, Syslog, SyslogFormat, Watchdog,
};
use crate::net::{self, Cidr};
use crate::ports::Protocol;
use crate::walk::{Cx, Field};

/// The host settings with every default.
pub(crate) fn default_host() -> Host {
    Host {
        hostname: None,
        modules: Vec::new(),
        sysctls: BTreeMap::new(),
        on_fatal: defaults::ON_FATAL,
        shutdown_grace: defaults::SHUTDOWN_GRACE,
        network: Network {
            interfaces: Vec::new(),
            bridge: default_bridge(),
            dns: Vec::new(),
            dns_search: Vec::new(),
        },
        storage: Storage::default(),
        logging: Logging {
            console: defaults::LOG_CONSOLE,
            files: Some(LogFiles {
                dir: PathBuf::from(defaults::LOG_DIR),
                max_size: defaults::LOG_MAX_SIZE,
                max_files: defaults::LOG_MAX_FILES,
            }),
            syslog: None,
        },
        watchdog: None,
        api: Api {
            socket: PathBuf::from(defaults::API_SOCKET),
            remote: None,
        },
    }
}

fn default_bridge() -> Bridge {
    let subnet = net::parse_cidr(defaults::BRIDGE_SUBNET).unwrap_or(Cidr {
        addr: IpAddr::from([10, 88, 0, 0]),
        prefix: 24,
    });
    Bridge {
        name: defaults::BRIDGE_NAME.to_string(),
        subnet,
        nat: defaults::BRIDGE_NAT,
    }
}

/// Reads `[host]`.
pub(crate) fn read_host(cx: &mut Cx, field: &Field<'_, '_>) -> Host {
    let mut host = default_host();
    let Some(t) = field.table(cx, keys::HOST, &[]) else {
        return host;
    };
    if let Some(f) = t.field("hostname") {
        host.hostname = f.parse(cx, check_hostname);
    }
    if let Some(f) = t.field("modules") {
        host.modules = f
            .array(cx)
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m.parse(cx, check_module))
            .collect();
    }
    if let Some(f) = t.field("sysctls") {
        host.sysctls = read_sysctls(cx, &f);
    }
    if let Some(f) = t.field("on_fatal") {
        host.on_fatal = f.parse(cx, parse_fatal).unwrap_or(defaults::ON_FATAL);
    }
    if let Some(f) = t.field("shutdown_grace") {
        host.shutdown_grace = f
            .duration_in(cx, std::time::Duration::ZERO, limits::MAX_GRACE)
            .unwrap_or(defaults::SHUTDOWN_GRACE);
    }
    if let Some(f) = t.field("network") {
        read_network(cx, &f, &mut host.network);
    }
    if let Some(f) = t.field("storage") {
        host.storage = read_storage(cx, &f);
    }
    if let Some(f) = t.field("logging") {
        read_logging(cx, &f, &mut host.logging);
    }
    if let Some(f) = t.field("watchdog") {
        host.watchdog = read_watchdog(cx, &f);
    }
    if let Some(f) = t.field("api") {
        read_api(cx, &f, &mut host.api);
    }
    host
}

/// A hostname for the kernel: RFC 1123, at most 64 characters.
pub(crate) fn check_hostname(s: &str) -> Result<String, String> {
    net::check_hostname(s)?;
    if s.len() > 64 {
        return Err(format!("hostname {s:?} is longer than 64 characters"));
    }
    Ok(s.to_string())
}

fn check_module(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Ok(s.to_string())
    } else {
        Err(format!("invalid module name {s:?}"))
    }
}

fn parse_fatal(s: &str) -> Result<FatalAction, String> {
    match s {
        "reboot" => Ok(FatalAction::Reboot),
        "poweroff" => Ok(FatalAction::Poweroff),
        "halt" => Ok(FatalAction::Halt),
        _ => Err(format!(
            "unknown action {s:?}; expected \"reboot\", \"poweroff\" or \"halt\""
        )),
    }
}

/// Reads a table of sysctls (host or container).
pub(crate) fn read_sysctls(cx: &mut Cx, f: &Field<'_, '_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in f.map(cx).unwrap_or_default() {
        let ok = e
            .key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
            && e.key.contains(['.', '/'])
            && !e.key.starts_with(['.', '/']);
        if !ok {
            cx.error(
                e.key_span.clone(),
                format!("{}: invalid sysctl name {:?}", f.path, e.key),
            );
            continue;
        }
        if let Some(v) = e.field.scalar_string(cx) {
            out.insert(e.key.replace('/', "."), v);
        }
    }
    out
}

fn read_network(cx: &mut Cx, f: &Field<'_, '_>, net: &mut Network) {
    let Some(t) = f.table(cx, keys::NETWORK, &[]) else {
        return;
    };
    if let Some(f) = t.field("interfaces") {
        for item in f.array(cx).unwrap_or_default() {
            if let Some(i) = read_interface(cx, &item) {
                // The same name, or the same MAC, is the same link.
                let dup = net.interfaces.iter().any(|o| {
                    (i.name.is_some() && o.name == i.name) || (i.mac.is_some() && o.mac == i.mac)
                });
                if dup {
                    item.err(cx, "the same interface is listed twice");
                } else {
                    net.interfaces.push(i);
                }
            }
        }
    }
    if let Some(f) = t.field("bridge") {
        read_bridge(cx, &f, &mut net.bridge);
    }
    if let Some(f) = t.field("dns") {
        net.dns = read_ips(cx, &f);
    }
    if let Some(f) = t.field("dns_search") {
        net.dns_search = read_domains(cx, &f);
    }
}

/// An array of IP addresses.
pub(crate) fn read_ips(cx: &mut Cx, f: &Field<'_, '_>) -> Vec<IpAddr> {
    f.one_or_many(cx)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.parse(cx, net::parse_ip))
        .collect()
}

/// An array of DNS domain names.
pub(crate) fn read_domains(cx: &mut Cx, f: &Field<'_, '_>) -> Vec<String> {
    f.one_or_many(cx)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| {
            a.parse(cx, |s| {
                net::check_hostname(s.trim_end_matches('.'))
                    .map(|()| s.to_string())
                    .map_err(|_| format!("invalid domain name {s:?}"))
            })
        })
        .collect()
}

fn read_interface(cx: &mut Cx, f: &Field<'_, '_>) -> Option<Interface> {
    let t = f.table(cx, keys::INTERFACE, &[])?;
    let mut i = Interface {
        name: None,
        mac: None,
        dhcp: defaults::INTERFACE_DHCP,
        addresses: Vec::new(),
        gateway4: None,
        gateway6: None,
        routes: Vec::new(),
        mtu: None,
    };
    if let Some(f) = t.field("name") {
        i.name = f.parse(cx, |s| net::check_ifname(s).map(|()| s.to_string()));
    }
    if let Some(f) = t.field("mac") {
        i.mac = f.parse(cx, net::parse_mac);
    }
    if t.field("name").is_none() && t.field("mac").is_none() {
        t.err(cx, "an interface needs \"name\" or \"mac\" to match a link");
    }
    if let Some(f) = t.field("dhcp") {
        i.dhcp = f.bool(cx).unwrap_or(defaults::INTERFACE_DHCP);
    }
    if let Some(f) = t.field("addresses") {
        for a in f.one_or_many(cx).unwrap_or_default() {
            if let Some(c) = a.parse(cx, net::parse_cidr) {
                i.addresses.push(c);
            }
        }
    }
    if let Some(f) = t.field("gateway") {
        for g in f.one_or_many(cx).unwrap_or_default() {
            match g.parse(cx, net::parse_ip) {
                Some(IpAddr::V4(a)) if i.gateway4.is_none() => i.gateway4 = Some(a),
                Some(IpAddr::V6(a)) if i.gateway6.is_none() => i.gateway6 = Some(a),
                Some(_) => g.err(cx, "at most one IPv4 and one IPv6 gateway"),
                None => {}
            }
        }
    }
    if let Some(f) = t.field("routes") {
        for r in f.array(cx).unwrap_or_default() {
            if let Some(r) = read_route(cx, &r) {
                i.routes.push(r);
            }
        }
    }
    if let Some(f) = t.field("mtu") {
        i.mtu = f.int_in(cx, 68, 65535);
    }
    Some(i)
}

fn read_route(cx: &mut Cx, f: &Field<'_, '_>) -> Option<Route> {
    let t = f.table(cx, keys::ROUTE, &[])?;
    let to_field = t.required(cx, "to");
    let via_field = t.field("via");
    let via = via_field.as_ref().and_then(|f| f.parse(cx, net::parse_ip));
    let to = to_field.as_ref().and_then(|f| {
        f.parse(cx, |s| {
            if s == "default" {
                let v6 = via.is_some_and(|v| v.is_ipv6());
                let addr = if v6 {
                    IpAddr::from([0u16; 8])
                } else {
                    IpAddr::from([0u8; 4])
                };
                Ok(Cidr { addr, prefix: 0 })
            } else {
                net::parse_cidr(s)
            }
        })
    })?;
    if let (Some(v), Some(vf)) = (via, &via_field)
        && v.is_ipv4() != to.addr.is_ipv4()
    {
        vf.err(
            cx,
            format!("gateway {v} is not of the same IP version as {to}"),
        );
    }
    let metric = t
        .field("metric")
        .and_then(|f| f.int_in(cx, 0, i64::from(u32::MAX)));
    Some(Route { to, via, metric })
}

fn read_bridge(cx: &mut Cx, f: &Field<'_, '_>, b: &mut Bridge) {
    let Some(t) = f.table(cx, keys::BRIDGE, &[]) else {
        return;
    };
    if let Some(f) = t.field("name")
        && let Some(n) = f.parse(cx, |s| net::check_ifname(s).map(|()| s.to_string()))
    {
        b.name = n;
    }
    if let Some(f) = t.field("subnet") {
        let subnet = f.parse(cx, |s| {
            let c = net::parse_cidr(s)?;
            if !c.addr.is_ipv4() {
                return Err(format!("the bridge subnet must be IPv4, found {s:?}"));
            }
            if !(8..=30).contains(&c.prefix) {
                return Err(format!(
                    "the bridge subnet's prefix /{} is out of range; expected /8 to /30",
                    c.prefix
                ));
            }
            if !c.is_network() {
                return Err(format!(
                    "{s:?} has host bits set; did you mean \"{}/{}\"?",
                    c.network(),
                    c.prefix
                ));
            }
            Ok(c)
        });
        if let Some(s) = subnet {
            b.subnet = s;
        }
    }
    if let Some(f) = t.field("nat") {
        b.nat = f.bool(cx).unwrap_or(defaults::BRIDGE_NAT);
    }
}

fn read_storage(cx: &mut Cx, f: &Field<'_, '_>) -> Storage {
    let Some(t) = f.table(cx, keys::STORAGE, &[]) else {
        return Storage::default();
    };
    let data = t.field("data").and_then(|f| {
        let t = f.table(cx, keys::DATA, &[])?;
        let device = t
            .required(cx, "device")
            .and_then(|f| f.parse(cx, parse_device));
        let fs = t
            .field("fs")
            .map_or(Some(defaults::DATA_FS), |f| f.parse(cx, parse_fs));
        let mount = t
            .field("mount")
            .map_or(Some(PathBuf::from(defaults::DATA_MOUNT)), |f| {
                f.parse(cx, |s| {
                    if s == "/" {
                        return Err("cannot mount the data device on /".to_string());
                    }
                    crate::walk::check_abs_path(s)
                })
            });
        Some(DataDevice {
            device: device?,
            fs: fs?,
            mount: mount?,
        })
    });
    Storage { data }
}

fn parse_device(s: &str) -> Result<DeviceRef, String> {
    if let Some(l) = s.strip_prefix("LABEL=") {
        if l.is_empty() {
            return Err("empty LABEL".to_string());
        }
        return Ok(DeviceRef::Label(l.to_string()));
    }
    if let Some(u) = s.strip_prefix("UUID=") {
        if u.is_empty() || !u.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(format!("invalid UUID {u:?}"));
        }
        return Ok(DeviceRef::Uuid(u.to_ascii_lowercase()));
    }
    if s.starts_with("/dev/") {
        return Ok(DeviceRef::Path(PathBuf::from(s)));
    }
    Err(format!(
        "invalid device {s:?}; expected \"LABEL=…\", \"UUID=…\" or a path under /dev"
    ))
}

fn parse_fs(s: &str) -> Result<Filesystem, String> {
    match s {
        "ext4" => Ok(Filesystem::Ext4),
        "xfs" => Ok(Filesystem::Xfs),
        "btrfs" => Ok(Filesystem::Btrfs),
        _ => Err(format!(
            "unsupported filesystem {s:?}; expected \"ext4\", \"xfs\" or \"btrfs\""
        )),
    }
}

fn read_logging(cx: &mut Cx, f: &Field<'_, '_>, l: &mut Logging) {
    let Some(t) = f.table(cx, keys::LOGGING, &[]) else {
        return;
    };
    if let Some(f) = t.field("console") {
        l.console = f.parse(cx, parse_level).unwrap_or(defaults::LOG_CONSOLE);
    }
    if let Some(f) = t.field("files") {
        l.files = f.table(cx, keys::LOG_FILES, &[]).map(|t| LogFiles {
            dir: t
                .field("dir")
                .and_then(|f| f.abs_path(cx))
                .unwrap_or_else(|| PathBuf::from(defaults::LOG_DIR)),
            max_size: t
                .field("max_size")
                .and_then(|f| f.size_min(cx, limits::MIN_LOG_SIZE))
                .unwrap_or(defaults::LOG_MAX_SIZE),
            max_files: t
                .field("max_files")
                .and_then(|f| f.int_in(cx, 1, 1000))
                .unwrap_or(defaults::LOG_MAX_FILES),
        });
    }
    if let Some(f) = t.field("syslog") {
        l.syslog = f.table(cx, keys::SYSLOG, &[]).and_then(|t| {
            let target = t
                .required(cx, "target")
                .and_then(|f| f.parse(cx, parse_syslog_target));
            let format = t
                .field("format")
                .map_or(Some(defaults::SYSLOG_FORMAT), |f| {
                    f.parse(cx, parse_syslog_format)
                });
            let (protocol, host, port) = target?;
            Some(Syslog {
                protocol,
                host,
                port,
                format: format?,
            })
        });
    }
}

fn parse_level(s: &str) -> Result<LogLevel, String> {
    match s {
        "error" => Ok(LogLevel::Error),
        "warn" => Ok(LogLevel::Warn),
        "info" => Ok(LogLevel::Info),
        "debug" => Ok(LogLevel::Debug),
        "trace" => Ok(LogLevel::Trace),
        _ => Err(format!(
            "unknown level {s:?}; expected \"error\", \"warn\", \"info\", \"debug\" or \"trace\""
        )),
    }
}

fn parse_syslog_format(s: &str) -> Result<SyslogFormat, String> {
    match s {
        "rfc5424" => Ok(SyslogFormat::Rfc5424),
        "rfc3164" => Ok(SyslogFormat::Rfc3164),
        _ => Err(format!(
            "unknown format {s:?}; expected \"rfc5424\" or \"rfc3164\""
        )),
    }
}

/// "udp://host[:port]" or "tcp://host[:port]"; IPv6 hosts in brackets.
fn parse_syslog_target(s: &str) -> Result<(Protocol, String, u16), String> {
    let bad = || {
        format!(
            "invalid syslog target {s:?}; expected \"udp://host[:port]\" or \"tcp://host[:port]\""
        )
    };
    let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
    let protocol = match scheme {
        "udp" => Protocol::Udp,
        "tcp" => Protocol::Tcp,
        _ => return Err(bad()),
    };
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, p) = r.split_once(']').ok_or_else(bad)?;
        h.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        (h, p.strip_prefix(':'))
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() || (host.parse::<IpAddr>().is_err() && net::check_hostname(host).is_err()) {
        return Err(bad());
    }
    let port = match port {
        Some(p) => crate::ports::parse_port(p)?,
        None => defaults::SYSLOG_PORT,
    };
    Ok((protocol, host.to_string(), port))
}

fn read_watchdog(cx: &mut Cx, f: &Field<'_, '_>) -> Option<Watchdog> {
    let t = f.table(cx, keys::WATCHDOG, &[])?;
    Some(Watchdog {
        device: t
            .field("device")
            .and_then(|f| f.abs_path(cx))
            .unwrap_or_else(|| PathBuf::from(defaults::WATCHDOG_DEVICE)),
        timeout: t
            .field("timeout")
            .and_then(|f| {
                f.duration_in(
                    cx,
                    limits::MIN_WATCHDOG_TIMEOUT,
                    limits::MAX_WATCHDOG_TIMEOUT,
                )
            })
            .unwrap_or(defaults::WATCHDOG_TIMEOUT),
    })
}

fn read_api(cx: &mut Cx, f: &Field<'_, '_>, api: &mut Api) {
    let Some(t) = f.table(cx, keys::API, &[]) else {
        return;
    };
    if let Some(p) = t.field("socket").and_then(|f| f.abs_path(cx)) {
        api.socket = p;
    }
    api.remote = t.field("remote").and_then(|f| {
        let t = f.table(cx, keys::REMOTE_API, &[])?;
        let listen = t.required(cx, "listen").and_then(|f| {
            f.parse(cx, |s| {
                s.parse::<SocketAddr>().map_err(|_| {
                    format!("invalid address {s:?}; expected \"ip:port\", like \"0.0.0.0:2376\"")
                })
            })
        });
        let cert = t.required(cx, "cert").and_then(|f| f.abs_path(cx));
        let key = t.required(cx, "key").and_then(|f| f.abs_path(cx));
        let client_ca = t.required(cx, "client_ca").and_then(|f| f.abs_path(cx));
        Some(RemoteApi {
            listen: listen?,
            cert: cert?,
            key: key?,
            client_ca: client_ca?,
        })
    });
}

//! Host interfaces on the host, as root. Each test runs in a network
//! namespace of its own (a thread that unshared CLONE_NEWNET, with a
//! current_thread runtime and a LocalSet, as in PID 1), on veth pairs it
//! creates: a DHCP lease from dnsmasq (serving from a second namespace on
//! the other end), renewed and released; static configuration matched by
//! MAC; and the bounded waits for a missing link and a missing server.
//! Nothing leaves the test's namespaces.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::network::HostNetState;
use berth::network::host::{HostNetwork, Options, wait_up};
use berth::network::netlink::{LinkFilter, Netlink};

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "host network tests need root (scripts/test runs them as root)"
    );
}

/// Runs `f` on a thread of its own in a new network namespace, in an event
/// loop like PID 1's.
fn in_netns<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    require_root();
    let joined = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, f());
    })
    .join();
    if let Err(p) = joined {
        std::panic::resume_unwind(p);
    }
}

/// `[host.network]` from TOML.
fn network(body: &str) -> berth_config::Network {
    let source = format!("version = 1\n[host.network]\n{body}\n");
    match berth_config::parse(&source, "test.toml") {
        Ok(m) => m.host.network,
        Err(d) => panic!("{d}"),
    }
}

fn options(dir: &Path) -> Options {
    Options {
        resolv_conf: Some(dir.join("resolv.conf")),
        load_modules: false,
        link_wait: Duration::from_secs(5),
        dhcp_wait: Duration::from_secs(20),
    }
}

/// `ip ARGS` in the calling thread's namespace.
fn ip(args: &str) -> String {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("run ip (iproute2)");
    assert!(out.status.success(), "ip {args}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `cond` every 100 ms for up to `within`.
async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// dnsmasq serving DHCP on `iface` (moved into a namespace of its own),
/// as 192.168.77.1/24; killed when dropped.
struct Dnsmasq {
    child: Child,
    log: PathBuf,
    leases: PathBuf,
}

impl Dnsmasq {
    async fn start(nl: &Netlink, iface: &str, dir: &Path, t1: u32) -> Dnsmasq {
        let log = dir.join("dnsmasq.log");
        let leases = dir.join("dnsmasq.leases");
        // The script waits for the link to arrive in its namespace.
        let script = format!(
            "while ! ip link show {iface} >/dev/null 2>&1; do sleep 0.05; done; \
             ip link set lo up; ip addr add 192.168.77.1/24 dev {iface}; ip link set {iface} up; \
             exec dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
             --port=0 --user=root --pid-file= --interface={iface} --bind-interfaces \
             --dhcp-range=192.168.77.50,192.168.77.60,255.255.255.0,2m \
             --dhcp-option=option:router,192.168.77.1 \
             --dhcp-option=option:dns-server,192.168.77.53 \
             --dhcp-option=option:domain-search,test.example \
             --dhcp-option=option:T1,{t1} --dhcp-option=option:T2,100 \
             --dhcp-leasefile={} --dhcp-authoritative --log-dhcp --log-facility=-",
            leases.display()
        );
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("unshare")
            .args(["-n", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("run unshare -n ... dnsmasq (install dnsmasq)");
        let d = Dnsmasq { child, log, leases };
        // unshare execs sh in the same process: its pid names the namespace,
        // once it has unshared.
        let pid = d.child.id();
        let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        eventually("the server's namespace", Duration::from_secs(5), || {
            std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|n| n != ours)
        })
        .await;
        let link = nl
            .require("find", &LinkFilter::Name(iface.into()))
            .await
            .unwrap();
        nl.move_to_netns_of(&link, pid as i32).await.unwrap();
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_dhcp_lease_from_dnsmasq_is_applied_renewed_and_released() {
    in_netns(|| async {
        let dir = tempfile::tempdir().unwrap();
        let nl = Netlink::new().unwrap();
        nl.add_veth("bdc0", "bds0").await.unwrap();
        let server = Dnsmasq::start(&nl, "bds0", dir.path(), 3).await;

        let cfg = network(r#"interfaces = [{ name = "bdc0", dhcp = true }]"#);
        let (net, mut rx) = HostNetwork::start_with(&cfg, options(dir.path()));
        let up = wait_up(&mut rx, Duration::from_secs(30)).await;
        assert_eq!(up, Ok(()), "dnsmasq said:\n{}", server.log());

        // The lease is applied: address, default route, resolv.conf.
        let addr = ip("-4 addr show dev bdc0");
        assert!(addr.contains("inet 192.168.77."), "{addr}");
        assert!(addr.contains("/24"), "{addr}");
        let routes = ip("-4 route show");
        assert!(
            routes.contains("default via 192.168.77.1 dev bdc0"),
            "{routes}"
        );
        let resolv = std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap();
        assert!(resolv.contains("nameserver 192.168.77.53\n"), "{resolv}");
        assert!(resolv.contains("search test.example\n"), "{resolv}");
        // Loopback came first.
        assert!(ip("link show lo").contains("UP"));

        let s = net.status();
        assert_eq!(s["state"], "up", "{s:#}");
        let i = &s["interfaces"][0];
        assert_eq!(i["name"], "bdc0");
        assert_eq!(i["dhcp"]["state"], "bound", "{s:#}");
        assert_eq!(i["dhcp"]["server"], "192.168.77.1");
        assert_eq!(i["dhcp"]["lease_s"], 120);
        assert_eq!(i["gateway4"], "192.168.77.1");
        assert_eq!(s["dns"], serde_json::json!(["192.168.77.53"]));
        let leased = i["dhcp"]["address"].as_str().unwrap().to_string();
        assert_eq!(i["addresses"], serde_json::json!([leased.clone()]));

        // T1 is 3 s: a renewal (unicast to the server) is answered.
        eventually("a renewal", Duration::from_secs(15), || {
            server.log().matches("DHCPACK(bds0)").count() >= 2
        })
        .await;
        assert_eq!(net.state(), HostNetState::Up);
        assert!(ip("-4 addr show dev bdc0").contains(leased.split('/').next().unwrap()));

        // Shutdown gives the lease back and removes the address.
        let t = Instant::now();
        net.shutdown().await;
        assert!(t.elapsed() < Duration::from_secs(3));
        eventually("DHCPRELEASE at the server", Duration::from_secs(5), || {
            server.log().contains("DHCPRELEASE(bds0)")
        })
        .await;
        let addr = ip("-4 addr show dev bdc0");
        assert!(!addr.contains("inet "), "{addr}");
        let routes = ip("-4 route show");
        assert!(!routes.contains("default"), "{routes}");
        let leases = std::fs::read_to_string(&server.leases).unwrap_or_default();
        assert!(!leases.contains("192.168.77."), "{leases}");
    });
}

#[test]
fn static_configuration_by_mac_applies_addresses_routes_and_mtu_in_order() {
    in_netns(|| async {
        let dir = tempfile::tempdir().unwrap();
        let nl = Netlink::new().unwrap();
        nl.add_veth("bst0", "bst1").await.unwrap();
        let peer = nl
            .require("find", &LinkFilter::Name("bst1".into()))
            .await
            .unwrap();
        nl.up(&peer).await.unwrap();
        let link = nl
            .require("find", &LinkFilter::Name("bst0".into()))
            .await
            .unwrap();
        let mac = LinkFilter::Mac(link.mac.unwrap()).to_string();
        // The route via 10.3.0.1 needs the on-link route before it.
        let cfg = network(&format!(
            r#"interfaces = [{{ mac = "{mac}", addresses = ["10.1.0.2/24", "fd00:1::2/64"],
                gateway = ["10.1.0.1", "fd00:1::1"], mtu = 1400,
                routes = [{{ to = "10.4.0.0/16", via = "10.3.0.1" }}, {{ to = "10.3.0.0/24" }}] }}]
            dns = ["10.1.0.53"]
            dns_search = ["static.example"]"#
        ));
        let (net, mut rx) = HostNetwork::start_with(&cfg, options(dir.path()));
        assert_eq!(wait_up(&mut rx, Duration::from_secs(10)).await, Ok(()));

        let addr = ip("addr show dev bst0");
        assert!(addr.contains("mtu 1400"), "{addr}");
        assert!(addr.contains("state UP") || addr.contains(",UP"), "{addr}");
        assert!(addr.contains("inet 10.1.0.2/24"), "{addr}");
        assert!(addr.contains("inet6 fd00:1::2/64"), "{addr}");
        let routes = ip("-4 route show");
        assert!(routes.contains("default via 10.1.0.1 dev bst0"), "{routes}");
        assert!(
            routes.contains("10.3.0.0/24 dev bst0 proto static scope link"),
            "{routes}"
        );
        assert!(
            routes.contains("10.4.0.0/16 via 10.3.0.1 dev bst0"),
            "{routes}"
        );
        let routes6 = ip("-6 route show");
        assert!(
            routes6.contains("default via fd00:1::1 dev bst0"),
            "{routes6}"
        );
        let resolv = std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap();
        assert!(
            resolv.contains("nameserver 10.1.0.53\nsearch static.example\n"),
            "{resolv}"
        );

        let s = net.status();
        let i = &s["interfaces"][0];
        assert_eq!(i["name"], "bst0");
        assert_eq!(i["mac"], mac.as_str());
        assert_eq!(
            i["addresses"],
            serde_json::json!(["10.1.0.2/24", "fd00:1::2/64"])
        );
        assert_eq!(i["dhcp"], serde_json::Value::Null);

        net.shutdown().await;
        let addr = ip("addr show dev bst0");
        assert!(!addr.contains("10.1.0.2"), "{addr}");
        assert!(!addr.contains("fd00:1::2"), "{addr}");
    });
}

#[test]
fn with_no_interfaces_lo_comes_up_and_the_network_is_up_at_once() {
    in_netns(|| async {
        let dir = tempfile::tempdir().unwrap();
        // A new network namespace has lo, down.
        assert!(
            !ip("link show lo").contains(",UP"),
            "{}",
            ip("link show lo")
        );
        let cfg = network(r#"dns = ["192.0.2.53"]"#);
        let (net, mut rx) = HostNetwork::start_with(&cfg, options(dir.path()));
        assert_eq!(wait_up(&mut rx, Duration::from_secs(5)).await, Ok(()));
        assert!(ip("link show lo").contains(",UP"), "{}", ip("link show lo"));
        let resolv = std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap();
        assert!(resolv.contains("nameserver 192.0.2.53\n"), "{resolv}");
        assert_eq!(net.status()["state"], "up", "{:#}", net.status());
        net.shutdown().await;
    });
}

#[test]
fn a_missing_link_fails_in_bounded_time_then_comes_up_late() {
    in_netns(|| async {
        let dir = tempfile::tempdir().unwrap();
        let nl = Netlink::new().unwrap();
        let cfg = network(
            r#"interfaces = [{ name = "blate0", addresses = ["10.5.0.2/24"] }, { name = "lo" }]"#,
        );
        let opts = Options {
            link_wait: Duration::from_secs(1),
            ..options(dir.path())
        };
        let t = Instant::now();
        let (net, mut rx) = HostNetwork::start_with(&cfg, opts);
        let e = wait_up(&mut rx, Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(e, "blate0: no such interface after 1 s");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(net.status()["interfaces"][0]["state"], "failed");
        assert_eq!(net.status()["interfaces"][1]["state"], "up");
        // No DNS anywhere: resolv.conf is left alone.
        assert!(!dir.path().join("resolv.conf").exists());

        // It appears: configured, and the state turns Up.
        nl.add_veth("blate0", "blate1").await.unwrap();
        rx.wait_for(|s| *s == HostNetState::Up).await.unwrap();
        assert!(ip("addr show dev blate0").contains("inet 10.5.0.2/24"));
        net.shutdown().await;
    });
}

#[test]
fn no_lease_fails_in_bounded_time_and_the_client_keeps_asking() {
    in_netns(|| async {
        let dir = tempfile::tempdir().unwrap();
        let nl = Netlink::new().unwrap();
        nl.add_veth("bnl0", "bnl1").await.unwrap();
        let cfg = network(r#"interfaces = [{ name = "bnl0", dhcp = true }]"#);
        let opts = Options {
            dhcp_wait: Duration::from_secs(2),
            ..options(dir.path())
        };
        let (net, mut rx) = HostNetwork::start_with(&cfg, opts);
        let e = wait_up(&mut rx, Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(e, "bnl0: no DHCP lease after 2 s (still trying)");
        assert_eq!(net.status()["interfaces"][0]["dhcp"]["state"], "selecting");

        // A server comes: the next DISCOVER (at most 4 s later) gets a lease.
        let server = Dnsmasq::start(&nl, "bnl1", dir.path(), 60).await;
        let up = tokio::time::timeout(
            Duration::from_secs(20),
            rx.wait_for(|s| *s == HostNetState::Up),
        )
        .await;
        assert!(up.is_ok(), "no lease; dnsmasq said:\n{}", server.log());
        assert!(ip("-4 addr show dev bnl0").contains("inet 192.168.77."));
        net.shutdown().await;
    });
}

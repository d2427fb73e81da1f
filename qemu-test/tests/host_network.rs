//! The host's interfaces in a real guest, on QEMU's user network (slirp,
//! `restrict=on`): an address by DHCP from QEMU's built-in server, and
//! separately by static configuration matched by MAC. In both, a
//! host-network container sees the result (addresses, routes, MTU,
//! resolv.conf) and reaches a tiny HTTP server this test runs on the host's
//! 127.0.0.1, through a guest forward (10.0.2.100). No traffic leaves this
//! machine.
//!
//! With `restrict=on`, QEMU's DHCP server (libslirp's bootp.c) leaves out
//! the router and DNS options: the lease is 10.0.2.15/24 for 86400 s from
//! server 10.0.2.2, and nothing more. So the DHCP scenario checks that no
//! default route appears, and takes its nameserver from the manifest (the
//! static list fills resolv.conf while the address comes by DHCP).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use berth_qemu_test::scenario::{self, HTTP_TIMEOUT};
use berth_qemu_test::{GuestFwd, Mac, UserNet, Vm};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

/// The port the guest fetches from on 10.0.2.100.
const GUEST_PORT: u16 = 8080;

const BODY: &str = "hello from the host\n";

/// Serves [`BODY`] to every HTTP request on 127.0.0.1 (a port of its
/// own, returned). QEMU's guest forward opens one connection when QEMU
/// starts and passes guest connections' bytes over it, so each connection
/// may carry several requests.
fn serve_on_loopback() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                loop {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let reply = format!(
                            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                            BODY.len()
                        );
                        if conn.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

fn info(vm: &Vm) -> Value {
    let (status, body) = vm
        .http("GET", "/v1/system/info", None, HTTP_TIMEOUT)
        .unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The console lines a container printed, without berth's prefix.
fn output(vm: &Vm, name: &str) -> Vec<String> {
    let marker = format!(" {name} | ");
    vm.console()
        .lines()
        .filter_map(|l| l.split_once(&marker).map(|(_, rest)| rest.to_string()))
        .collect()
}

/// Waits until `name` has printed a line containing `last`; returns its
/// output.
fn wait_output(vm: &Vm, name: &str, last: &str) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = output(vm, name);
        if out.iter().any(|l| l.contains(last)) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never printed {last:?}; it printed {out:#?}\n{}",
            vm.console_tail(40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// berth's own warnings and errors about the network.
fn network_problems(vm: &Vm) -> Vec<String> {
    scenario::berth_problems(&vm.console())
        .into_iter()
        .filter(|l| l.contains("network"))
        .collect()
}

const PROBE: &str = r#"
[containers.probe]
image = "busybox:latest"
network_mode = "host"
command = ["sh", "-c", "cat /etc/resolv.conf; ip -o addr show eth0; ip route; ip -6 route; ip -o link show eth0; wget -q -O- http://10.0.2.100:8080/; echo probe-done"]
"#;

#[test]
fn dhcp_from_qemus_server_configures_the_host_and_host_mode_containers() {
    let host_port = serve_on_loopback();
    let manifest = format!(
        r#"
version = 1
[host]
on_fatal = "poweroff"
[host.network]
interfaces = [{{ name = "eth0", dhcp = true }}]
dns = ["10.0.2.3"]
{PROBE}"#
    );
    let vm = scenario::boot("host-net-dhcp", &manifest, |c| {
        c.network(UserNet::new().guestfwd(GuestFwd::tcp(GUEST_PORT, host_port)))
    })
    .unwrap();

    let out = wait_output(&vm, "probe", "probe-done");
    let all = out.join("\n");
    assert!(all.contains("nameserver 10.0.2.3"), "{all}");
    assert!(all.contains("inet 10.0.2.15/24"), "{all}");
    assert!(all.contains("10.0.2.0/24 dev eth0"), "{all}");
    // The restricted server sends no router: no default route.
    assert!(!all.contains("default via"), "{all}");
    // 10.0.2.100 is on the leased subnet.
    assert!(all.contains(BODY.trim()), "{all}");

    // One console line per applied lease.
    let console = vm.console();
    assert!(
        console.contains("berth: network: eth0: 10.0.2.15/24 (DHCP, lease 86400 s)"),
        "{}",
        vm.console_tail(60)
    );
    let net = &info(&vm)["network"];
    assert_eq!(net["state"], "up", "{net:#}");
    let eth0 = &net["interfaces"][0];
    assert_eq!(eth0["name"], "eth0");
    assert_eq!(eth0["addresses"], serde_json::json!(["10.0.2.15/24"]));
    assert_eq!(eth0["gateway4"], Value::Null);
    assert_eq!(eth0["dns"], serde_json::json!([]));
    let dhcp = &eth0["dhcp"];
    assert_eq!(dhcp["state"], "bound", "{net:#}");
    assert_eq!(dhcp["server"], "10.0.2.2");
    assert_eq!(dhcp["router"], Value::Null);
    assert_eq!(dhcp["lease_s"], 86400);
    assert!(dhcp["renew_in_s"].as_u64().unwrap() > 43000, "{dhcp:#}");
    assert_eq!(net["dns"], serde_json::json!(["10.0.2.3"]));
    assert_eq!(network_problems(&vm), Vec::<String>::new());

    // Shutdown releases the lease.
    let status = scenario::power_off(&vm).unwrap();
    assert!(status.success(), "{status:?}");
    let console = vm.console();
    assert!(
        console.contains("eth0: DHCP lease 10.0.2.15/24 given up"),
        "{}",
        vm.console_tail(40)
    );
    assert!(console.contains("berth: network: host network down"));
}

#[test]
fn static_configuration_by_mac_with_ipv6_and_mtu() {
    let host_port = serve_on_loopback();
    let manifest = format!(
        r#"
version = 1
[host]
on_fatal = "poweroff"
[host.network]
interfaces = [{{ mac = "52:54:00:12:34:56", addresses = ["10.0.2.15/24", "fd00::15/64"], gateway = "10.0.2.2", mtu = 1400 }}]
dns = ["10.0.2.3"]
dns_search = ["berth.test"]
{PROBE}"#
    );
    let vm = scenario::boot("host-net-static", &manifest, |c| {
        c.network(
            UserNet::new()
                .mac(Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]))
                .guestfwd(GuestFwd::tcp(GUEST_PORT, host_port)),
        )
    })
    .unwrap();

    let out = wait_output(&vm, "probe", "probe-done");
    let all = out.join("\n");
    assert!(all.contains("nameserver 10.0.2.3"), "{all}");
    assert!(all.contains("search berth.test"), "{all}");
    assert!(all.contains("inet 10.0.2.15/24"), "{all}");
    assert!(all.contains("inet6 fd00::15/64"), "{all}");
    assert!(all.contains("default via 10.0.2.2 dev eth0"), "{all}");
    assert!(all.contains("fd00::/64 dev eth0"), "{all}");
    assert!(all.contains("mtu 1400"), "{all}");
    assert!(all.contains(BODY.trim()), "{all}");

    assert!(
        vm.console()
            .contains("berth: network: 52:54:00:12:34:56 (eth0): 10.0.2.15/24, fd00::15/64, via 10.0.2.2, mtu 1400 (static)"),
        "{}",
        vm.console_tail(60)
    );
    let net = &info(&vm)["network"];
    assert_eq!(net["state"], "up", "{net:#}");
    let eth0 = &net["interfaces"][0];
    assert_eq!(eth0["name"], "eth0");
    assert_eq!(eth0["mac"], "52:54:00:12:34:56");
    assert_eq!(
        eth0["addresses"],
        serde_json::json!(["10.0.2.15/24", "fd00::15/64"])
    );
    assert_eq!(eth0["mtu"], 1400);
    assert_eq!(eth0["dhcp"], Value::Null);
    assert_eq!(network_problems(&vm), Vec::<String>::new());

    let status = scenario::power_off(&vm).unwrap();
    assert!(status.success(), "{status:?}");
    assert!(vm.console().contains("berth: network: host network down"));
}

//! The container network in a real guest: the bridge, names between
//! containers, stable addresses across restarts, the network modes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use berth_qemu_test::Vm;
use berth_qemu_test::scenario::{self, HTTP_TIMEOUT};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

fn containers(vm: &Vm) -> Vec<Value> {
    let (status, body) = vm
        .http("GET", "/v1/containers", None, HTTP_TIMEOUT)
        .unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The console lines a container printed, without berth's prefix.
fn output(vm: &Vm, name: &str) -> Vec<String> {
    let marker = format!(" {name} | ");
    vm.console()
        .lines()
        .filter_map(|l| l.split_once(&marker).map(|(_, rest)| rest.to_string()))
        .collect()
}

/// Waits until `name` has printed at least `n` lines.
fn wait_lines(vm: &Vm, name: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = output(vm, name);
        if out.len() >= n {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{name} printed {out:?}, not {n} lines:\n{}",
            vm.console_tail(40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

const BRIDGE: &str = r#"
version = 1
[host]
on_fatal = "poweroff"

[containers.web]
image = "busybox:latest"
hostname = "www"
command = ["sh", "-c", "mkdir -p /srv && echo hello from web > /srv/index.html && exec httpd -f -p 80 -h /srv"]

[containers.client]
image = "busybox:latest"
depends_on = ["web"]
command = ["sh", "-c", "sleep 1; wget -q -O- http://web/; wget -q -O- http://www/; grep -w web /etc/hosts; ip -4 -o addr show eth0 | grep -o 'inet [0-9./]*'; ip route | grep default"]

[containers.flaky]
image = "busybox:latest"
restart = "always"
command = ["sh", "-c", "ip -4 -o addr show eth0 | grep -o 'inet [0-9./]*'; sleep 1; exit 1"]

[containers.alone]
image = "busybox:latest"
network_mode = "none"
command = ["sh", "-c", "ls /sys/class/net | tr '\n' ' '; echo"]

[containers.sidecar]
image = "busybox:latest"
network_mode = "service:web"
command = ["sh", "-c", "sleep 1; wget -q -O- http://127.0.0.1/"]
"#;

#[test]
fn containers_reach_each_other_by_name_and_keep_their_address() {
    let vm = scenario::boot("network-bridge", BRIDGE, |c| c).unwrap();

    // A reaches B by name and by hostname, through the bridge.
    let out = wait_lines(&vm, "client", 5);
    assert_eq!(out[0], "hello from web");
    assert_eq!(out[1], "hello from web");
    let web_ip = out[2].split_whitespace().next().unwrap().to_string();
    assert!(web_ip.starts_with("10.88.0."), "{out:?}");
    assert!(out[2].contains("web") && out[2].contains("www"), "{out:?}");
    assert!(
        out[3].starts_with("inet 10.88.0.") && out[3].ends_with("/24"),
        "{out:?}"
    );
    assert_eq!(
        out[4].split_whitespace().nth(2),
        Some("10.88.0.1"),
        "{out:?}"
    );

    // A restarted container comes back at the same address.
    let ips = wait_lines(&vm, "flaky", 3);
    assert!(ips[0].starts_with("inet 10.88.0."), "{ips:?}");
    assert!(ips.iter().all(|ip| *ip == ips[0]), "{ips:?}");

    // network_mode none: loopback only; service:NAME: NAME's namespace.
    assert_eq!(wait_lines(&vm, "alone", 1)[0].trim(), "lo");
    assert_eq!(wait_lines(&vm, "sidecar", 1)[0], "hello from web");

    // Different containers, different addresses; the address book is the
    // deterministic one (each container's own, whatever the start order).
    let all = containers(&vm);
    assert!(
        all.iter()
            .any(|c| c["name"] == "web" && c["state"] == "running")
    );

    scenario::power_off(&vm).unwrap();
}

const PUBLISHED: &str = r#"
version = 1
[host]
on_fatal = "poweroff"
[host.network]
interfaces = [{ name = "eth0", dhcp = true }]

[containers.web]
image = "busybox:latest"
ports = ["8080:80"]
command = ["sh", "-c", "mkdir -p /srv && echo published hello > /srv/index.html && exec httpd -f -p 80 -h /srv"]

[containers.outbound]
image = "busybox:latest"
command = ["sh", "-c", "sleep 2; wget -q -O- http://10.0.2.100:7000/ || echo outbound failed"]
"#;

/// A one-shot HTTP server on 127.0.0.1 that answers `body` and reports the
/// request line it got.
fn serve_once(body: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut line = String::new();
            let _ = std::io::BufReader::new(s.try_clone().unwrap()).read_line(&mut line);
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = tx.send(line);
        }
    });
    (port, rx)
}

#[test]
fn published_ports_and_outbound_nat_through_qemu_user_networking() {
    use berth_qemu_test::{GuestFwd, HostFwd, UserNet};
    let host_port = berth_qemu_test::free_local_port().unwrap();
    let (server, requests) = serve_once("from the host\n");
    let vm = scenario::boot("network-published", PUBLISHED, |c| {
        c.network(
            UserNet::new()
                .hostfwd(HostFwd::tcp(host_port, 8080))
                .guestfwd(GuestFwd::tcp(7000, server)),
        )
    })
    .unwrap();

    // The host reaches a published port through QEMU's forward on 127.0.0.1
    // and berth's DNAT.
    let deadline = Instant::now() + WAIT;
    let body = loop {
        let got = std::process::Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "5",
                &format!("http://127.0.0.1:{host_port}/"),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&got.stdout).to_string();
        if text.contains("published hello") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no answer on the published port:\n{}",
            vm.console_tail(40)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(body, "published hello\n");

    // A container reaches beyond the host through the masquerade.
    assert_eq!(wait_lines(&vm, "outbound", 1)[0], "from the host");
    let line = requests.recv_timeout(WAIT).unwrap();
    assert!(line.starts_with("GET / HTTP/1."), "{line}");

    // The NAT rules go with the container: stop it and the port closes.
    let (status, _) = vm
        .http("POST", "/v1/containers/web/stop", None, HTTP_TIMEOUT)
        .unwrap();
    assert_eq!(status, 204);
    let deadline = Instant::now() + WAIT;
    loop {
        let c = containers(&vm)
            .into_iter()
            .find(|c| c["name"] == "web")
            .unwrap();
        if c["state"] == "stopped" {
            break;
        }
        assert!(Instant::now() < deadline, "web did not stop: {c:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let got = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "3",
            &format!("http://127.0.0.1:{host_port}/"),
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&got.stdout).contains("published hello"));
    scenario::power_off(&vm).unwrap();
}

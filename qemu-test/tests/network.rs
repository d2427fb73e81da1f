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

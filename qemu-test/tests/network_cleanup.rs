//! The container network over time, in a real guest: /etc/hosts follows
//! reloads, a container whose network setup fails leaves nothing behind,
//! a hundred containers started and stopped leave no veth, address or
//! nftables rule, and the network goes at shutdown.
//!
//! What is left in the kernel is read by tools nobody here wrote: Debian's
//! `nft` (shipped into an image by the builder, `--deb nftables`) and
//! busybox's `ip`, in a privileged host-network container; berth's own
//! counters (`container_network` in `/v1/system/info`) are checked against
//! them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_qemu_test::Vm;
use berth_qemu_test::scenario::{self, HTTP_TIMEOUT};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(150);

fn json(vm: &Vm, path: &str) -> Value {
    let (status, body) = vm.http("GET", path, None, HTTP_TIMEOUT).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn container(vm: &Vm, name: &str) -> Value {
    json(vm, &format!("/v1/containers/{name}"))
}

/// The console lines a container printed, without berth's prefix.
fn output(vm: &Vm, name: &str) -> Vec<String> {
    let marker = format!(" {name} | ");
    vm.console()
        .lines()
        .filter_map(|l| l.split_once(&marker).map(|(_, rest)| rest.to_string()))
        .collect()
}

/// Waits until `ok` holds, or fails with `what` and the console's tail.
fn wait_until(vm: &Vm, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            vm.console_tail(60)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn reload(vm: &Vm, manifest: &str) -> Value {
    let (status, body) = vm
        .http("POST", "/v1/system/reload", Some(manifest), HTTP_TIMEOUT)
        .unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// An OCI layout of busybox plus Debian's nftables (`nft` and its
/// libraries), built by berth's image builder; its reference is
/// `berth-test/nettools:1`. Built once per test process: the tests that
/// use it share it (it is only read).
fn nettools() -> PathBuf {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(build_nettools).clone()
}

fn build_nettools() -> PathBuf {
    use berth_image::oci::layer::Compression;
    use berth_image::ocibuild::{self, LayerFrom, OciOptions};
    let dir = scenario::images_dir()
        .parent()
        .unwrap()
        .join("image-inputs")
        .join(format!("nettools-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let layout = dir.join("layout");
    ocibuild::build(&OciOptions {
        out: layout.clone(),
        reference: "berth-test/nettools:1".into(),
        layers: vec![LayerFrom::Busybox, LayerFrom::Deb("nftables".into())],
        config: ocibuild::default_config(),
        compression: Compression::Gzip,
        created: 0,
        sources: berth_image::Sources::default(),
        cache: berth_image::kernel::cache_dir().unwrap(),
    })
    .unwrap();
    layout
}

/// A privileged host-network container that prints, every half second,
/// what the kernel holds of the container network: `veths=N addrs=N
/// rules=N` (host ends of veth pairs, IPv4 addresses on the bridge, DNAT
/// rules in table ip berth).
const PROBE: &str = r#"
[containers.probe]
image = "berth-test/nettools:1"
network_mode = "host"
privileged = true
init = true
command = ["sh", "-c", "while true; do v=$(ls /sys/class/net 2>/dev/null | grep -c '^vb'); a=$(ip -4 -o addr show dev berth0 2>/dev/null | wc -l); r=$(nft list table ip berth 2>/dev/null | grep -c dnat); echo \"veths=$v addrs=$a rules=$r\"; sleep 0.5; done"]
"#;

/// The probe's readings so far, as (veths, addrs, rules).
fn readings(vm: &Vm) -> Vec<(usize, usize, usize)> {
    output(vm, "probe")
        .iter()
        .filter_map(|l| {
            let mut n = l
                .split_whitespace()
                .map(|w| w.split_once('=')?.1.parse().ok());
            Some((n.next()??, n.next()??, n.next()??))
        })
        .collect()
}

/// Waits for a probe reading taken after now, and returns it.
fn fresh_reading(vm: &Vm) -> (usize, usize, usize) {
    let seen = readings(vm).len();
    let mut last = None;
    wait_until(vm, "a probe reading", || {
        let r = readings(vm);
        last = r.last().copied();
        r.len() > seen + 1
    });
    last.unwrap()
}

const NAMES: &str = r#"
version = 1
[host]
on_fatal = "poweroff"

[containers.a]
image = "busybox:latest"
init = true
extra_hosts = ["metrics.internal:10.0.0.9"]
dns = ["10.0.2.3", "10.0.2.4"]
dns_search = ["berth.test", "example.internal"]
command = ["sh", "-c", "cat /etc/resolv.conf; old=; while true; do new=$(cat /etc/hosts); if [ \"$new\" != \"$old\" ]; then echo '--- hosts'; cat /etc/hosts; echo '--- end'; old=$new; fi; sleep 0.3; done"]
"#;

/// The snapshots of /etc/hosts that container `a` printed, each as its
/// lines.
fn snapshots(vm: &Vm) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<String>> = None;
    for l in output(vm, "a") {
        match l.as_str() {
            "--- hosts" => cur = Some(Vec::new()),
            "--- end" => out.extend(cur.take()),
            _ => {
                if let Some(c) = cur.as_mut() {
                    c.push(l);
                }
            }
        }
    }
    out
}

/// The names /etc/hosts gives an address, in a snapshot.
fn names_of(snapshot: &[String], ip: &str) -> Vec<String> {
    snapshot
        .iter()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == ip).then(|| w.map(str::to_string).collect::<Vec<_>>())
        })
        .flatten()
        .collect()
}

#[test]
fn hosts_follow_reloads_resolv_conf_follows_dns_and_the_network_goes_at_shutdown() {
    let vm = scenario::boot("netclean-names", NAMES, |c| c).unwrap();
    wait_until(&vm, "a's first /etc/hosts", || !snapshots(&vm).is_empty());

    // resolv.conf from the container's own dns options only.
    let out = output(&vm, "a");
    let resolv: Vec<&String> = out.iter().take_while(|l| *l != "--- hosts").collect();
    assert_eq!(
        resolv,
        [
            "nameserver 10.0.2.3",
            "nameserver 10.0.2.4",
            "search berth.test example.internal"
        ],
        "{out:?}"
    );
    let first = snapshots(&vm)[0].clone();
    let a_ip = container(&vm, "a")["ip"].as_str().unwrap().to_string();
    assert_eq!(names_of(&first, &a_ip), ["a"], "{first:?}");
    assert_eq!(names_of(&first, "10.0.0.9"), ["metrics.internal"]);
    assert_eq!(names_of(&first, "127.0.0.1"), ["localhost"]);

    // A reload adds b (hostname bee): a's file names it at b's address,
    // though a keeps running.
    let pid = container(&vm, "a")["pid"].clone();
    let with_b = format!(
        "{NAMES}\n[containers.b]\nimage = \"busybox:latest\"\nhostname = \"bee\"\ninit = true\ncommand = [\"sleep\", \"3600\"]\n"
    );
    let r = reload(&vm, &with_b);
    assert_eq!(r["added"], serde_json::json!(["b"]), "{r:#}");
    wait_until(&vm, "a second /etc/hosts", || snapshots(&vm).len() >= 2);
    let b_ip = container(&vm, "b")["ip"].as_str().unwrap().to_string();
    assert_ne!(a_ip, b_ip);
    let second = snapshots(&vm)[1].clone();
    assert_eq!(names_of(&second, &b_ip), ["b", "bee"], "{second:?}");
    assert_eq!(names_of(&second, &a_ip), ["a"], "{second:?}");
    assert_eq!(names_of(&second, "10.0.0.9"), ["metrics.internal"]);
    assert_eq!(container(&vm, "a")["pid"], pid, "a was not restarted");

    // Removing b takes it out again. (Once b runs: a stop asked of a
    // container still in its setup is not this test's subject.)
    wait_until(&vm, "b to run", || {
        container(&vm, "b")["state"] == "running"
    });
    let r = reload(&vm, NAMES);
    assert_eq!(r["removed"], serde_json::json!(["b"]), "{r:#}");
    wait_until(&vm, "a third /etc/hosts", || snapshots(&vm).len() >= 3);
    let third = snapshots(&vm)[2].clone();
    assert!(names_of(&third, &b_ip).is_empty(), "{third:?}");
    assert_eq!(third, first);
    let net = &json(&vm, "/v1/system/info")["container_network"];
    assert_eq!(net["addresses"], 1, "{net:#}");

    // A container removed while still in its setup (the second reload
    // follows the first at once) is killed, not left to its grace period:
    // its setup process would ignore the stop signal, and berth would warn.
    let with_c = format!(
        "{NAMES}\n[containers.c]\nimage = \"busybox:latest\"\ninit = true\ncommand = [\"sleep\", \"3600\"]\n"
    );
    assert_eq!(reload(&vm, &with_c)["added"], serde_json::json!(["c"]));
    assert_eq!(reload(&vm, NAMES)["removed"], serde_json::json!(["c"]));
    wait_until(&vm, "c to go", || {
        vm.console()
            .contains("berth: supervisor: c: removed by reload")
    });

    // Shutdown removes the bridge and the NAT table, without complaint.
    let status = scenario::power_off(&vm).unwrap();
    assert!(status.success(), "{status:?}");
    let console = vm.console();
    assert!(
        console.contains(
            "berth: network: container network removed: bridge berth0 and table ip berth"
        ),
        "{}",
        vm.console_tail(40)
    );
    assert_eq!(
        scenario::berth_problems(&console),
        Vec::<String>::new(),
        "{}",
        vm.console_tail(60)
    );
}

const FAILURES: &str = r#"
version = 1
[host]
on_fatal = "poweroff"

# Deletes the bridge under berth, so that the next bridge container's
# setup fails half-way: after its veth pair exists.
[containers.breaker]
image = "berth-test/nettools:1"
network_mode = "host"
privileged = true
depends_on = { web = { condition = "service_started" } }
command = ["sh", "-c", "sleep 1; ip link delete berth0 && echo bridge-deleted"]

[containers.victim]
image = "busybox:latest"
ports = ["8085:80"]
depends_on = { breaker = { condition = "service_completed_successfully" } }
command = ["httpd", "-f", "-p", "80"]

# A port bound to an IPv6 address cannot be programmed: web6 never starts.
[containers.web6]
image = "busybox:latest"
ports = ["[fd00::1]:8086:80"]
command = ["httpd", "-f", "-p", "80"]

[containers.web]
image = "busybox:latest"
ports = ["8087:80"]
command = ["httpd", "-f", "-p", "80"]
"#;

#[test]
fn a_container_whose_network_setup_fails_does_not_start_and_leaves_nothing() {
    let layout = nettools();
    let manifest = format!("{FAILURES}{PROBE}");
    let img = scenario::build_image_with_images(
        "netclean-failures",
        &manifest,
        &[],
        &[scenario::image(&layout, None)],
    )
    .unwrap();
    let vm = scenario::boot_image("netclean-failures", &img, |c| c).unwrap();

    // web6: refused before anything was made for it.
    wait_until(&vm, "web6 to fail", || {
        container(&vm, "web6")["state"] != "waiting"
            && container(&vm, "web6")["state"] != "starting"
    });
    let web6 = container(&vm, "web6");
    assert_ne!(web6["state"], "running", "{web6:#}");
    assert!(
        vm.console()
            .contains("web6: cannot start: network: cannot publish [fd00::1]:8086:80"),
        "{}",
        vm.console_tail(40)
    );

    // victim: its veth pair was made, then attaching it to the deleted
    // bridge failed; the error names the interface.
    wait_until(&vm, "the bridge to go", || {
        output(&vm, "breaker").iter().any(|l| l == "bridge-deleted")
    });
    wait_until(&vm, "victim to fail", || {
        vm.console().contains("victim: cannot start: network:")
    });
    let console = vm.console();
    let line = console
        .lines()
        .find(|l| l.contains("victim: cannot start: network:"))
        .unwrap();
    assert!(line.contains("berth0"), "{line}");
    wait_until(&vm, "victim to end", || {
        let v = container(&vm, "victim");
        v["pid"].is_null() && v["state"] != "starting"
    });
    let victim = container(&vm, "victim");
    assert_ne!(victim["state"], "running", "{victim:#}");

    // Left in the kernel: web's veth and port, nothing of web6's or
    // victim's; no address but web's (the bridge, and its own, are gone).
    let (veths, addrs, rules) = fresh_reading(&vm);
    assert_eq!((veths, addrs, rules), (1, 0, 1), "{}", vm.console_tail(40));
    let net = &json(&vm, "/v1/system/info")["container_network"];
    assert_eq!(net["veths"], 1, "{net:#}");
    assert_eq!(net["published_rules"], 1, "{net:#}");
    scenario::power_off(&vm).unwrap();
}

#[test]
fn a_hundred_containers_started_and_stopped_leave_no_veth_address_or_rule() {
    const N: usize = 100;
    let layout = nettools();
    let mut manifest = format!("version = 1\n[host]\non_fatal = \"poweroff\"\n{PROBE}");
    for i in 0..N {
        manifest += &format!(
            "[containers.c{i:03}]\nimage = \"busybox:latest\"\nports = [\"{}:80\"]\ncommand = [\"sleep\", \"4\"]\n",
            9000 + i
        );
    }
    let img = scenario::build_image_with_images(
        "netclean-hundred",
        &manifest,
        &[],
        &[scenario::image(&layout, None)],
    )
    .unwrap();
    let vm = scenario::boot_image("netclean-hundred", &img, |c| c.memory_mib(768)).unwrap();

    let names: Vec<String> = (0..N).map(|i| format!("c{i:03}")).collect();
    // Starting a hundred keeps PID 1 busy for a while under TCG: an API
    // call may time out meanwhile, and is tried again.
    wait_until(&vm, "the hundred to run and exit", || {
        let Ok((200, body)) = vm.http("GET", "/v1/containers", None, HTTP_TIMEOUT) else {
            return false;
        };
        let all: Value = serde_json::from_str(&body).unwrap();
        let all = all.as_array().unwrap();
        names.iter().all(|n| {
            all.iter()
                .any(|c| c["name"] == *n && c["state"] == "exited" && c["exit_code"] == 0)
        })
    });
    // While they ran, the kernel held their veths and rules.
    let peak = readings(&vm).iter().map(|r| r.0).max().unwrap_or(0);
    let peak_rules = readings(&vm).iter().map(|r| r.2).max().unwrap_or(0);
    assert!(peak >= 10 && peak_rules >= 10, "{:?}", readings(&vm));

    // Now: no veth, no rule, the bridge's own address only.
    let (veths, addrs, rules) = fresh_reading(&vm);
    assert_eq!((veths, addrs, rules), (0, 1, 0), "{}", vm.console_tail(40));
    let net = &json(&vm, "/v1/system/info")["container_network"];
    assert_eq!(net["veths"], 0, "{net:#}");
    assert_eq!(net["published_rules"], 0, "{net:#}");
    assert_eq!(net["addresses"], N, "{net:#}");

    // Removing them from the manifest frees their addresses.
    let only_probe = format!("version = 1\n[host]\non_fatal = \"poweroff\"\n{PROBE}");
    let r = reload(&vm, &only_probe);
    assert_eq!(r["removed"].as_array().unwrap().len(), N, "{r:#}");
    wait_until(&vm, "the address book to empty", || {
        json(&vm, "/v1/system/info")["container_network"]["addresses"] == 0
    });
    assert_eq!(fresh_reading(&vm), (0, 1, 0));
    scenario::power_off(&vm).unwrap();
}

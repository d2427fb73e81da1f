//! Two berth guests on one virtual LAN (QEMU `-netdev socket` over
//! 127.0.0.1, no other network): guest A has a static address and runs
//! Debian's dnsmasq (shipped into an image by berth's builder, `--deb
//! dnsmasq-base`) as a host-network container; guest B takes its address by
//! DHCP from it. Each runs a web container on a published port, and a
//! container of each reaches the other guest's published port, through
//! its own masquerade and the other's DNAT.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_qemu_test::scenario::{self, HTTP_TIMEOUT};
use berth_qemu_test::{Mac, SocketNet, Vm};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

const MAC_A: Mac = Mac([0x52, 0x54, 0x00, 0xaa, 0x00, 0x01]);
const MAC_B: Mac = Mac([0x52, 0x54, 0x00, 0xbb, 0x00, 0x02]);

/// The console lines a container printed on stdout or stderr, without
/// berth's prefix.
fn output(vm: &Vm, name: &str) -> Vec<String> {
    let (out, err) = (format!(" {name} | "), format!(" {name} ! "));
    vm.console()
        .lines()
        .filter_map(|l| {
            l.split_once(&out)
                .or_else(|| l.split_once(&err))
                .map(|(_, rest)| rest.to_string())
        })
        .collect()
}

fn wait_output(vm: &Vm, name: &str, text: &str) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = output(vm, name);
        if out.iter().any(|l| l.contains(text)) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never printed {text:?}:\n{}",
            vm.console_tail(60)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn info(vm: &Vm) -> Value {
    let (status, body) = vm
        .http("GET", "/v1/system/info", None, HTTP_TIMEOUT)
        .unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// An OCI layout of busybox plus Debian's dnsmasq and the libraries it
/// needs, built by berth's image builder: `berth-test/dnsmasq:1`.
fn dnsmasq_image() -> PathBuf {
    use berth_image::oci::layer::Compression;
    use berth_image::ocibuild::{self, LayerFrom, OciOptions};
    let dir = scenario::images_dir()
        .parent()
        .unwrap()
        .join("image-inputs")
        .join(format!("dnsmasq-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let layout = dir.join("layout");
    ocibuild::build(&OciOptions {
        out: layout.clone(),
        reference: "berth-test/dnsmasq:1".into(),
        layers: vec![LayerFrom::Busybox, LayerFrom::Deb("dnsmasq-base".into())],
        config: ocibuild::default_config(),
        compression: Compression::Gzip,
        created: 0,
        sources: berth_image::Sources::default(),
        cache: berth_image::kernel::cache_dir().unwrap(),
    })
    .unwrap();
    layout
}

/// A web container publishing `port`, and a client that fetches `url`
/// until it answers. (busybox 1.35's `wget -T` crashes when the connection
/// is refused, so `timeout` bounds each try.)
fn web_and_client(greeting: &str, port: u16, url: &str) -> String {
    format!(
        r#"
[containers.web]
image = "busybox:latest"
init = true
ports = ["{port}:80"]
command = ["sh", "-c", "mkdir -p /srv && echo {greeting} > /srv/index.html && exec httpd -f -p 80 -h /srv"]

[containers.client]
image = "busybox:latest"
init = true
command = ["sh", "-c", "until timeout 5 wget -q -O /tmp/got {url}; do sleep 1; done; echo \"got: $(cat /tmp/got)\"; sleep 3600"]
"#
    )
}

#[test]
fn two_guests_reach_each_others_published_ports_one_configured_by_dnsmasq_in_the_other() {
    let layout = dnsmasq_image();
    let a = format!(
        r#"
version = 1
[host]
hostname = "lan-a"
on_fatal = "poweroff"
[host.network]
interfaces = [{{ mac = "{MAC_A}", addresses = ["192.168.77.1/24"] }}]

[containers.dhcpd]
image = "berth-test/dnsmasq:1"
network_mode = "host"
privileged = true
command = ["dnsmasq", "--keep-in-foreground", "--log-facility=-", "--log-dhcp", "--conf-file=/dev/null", "--user=root", "--group=root", "--port=0", "--interface=eth0", "--dhcp-range=192.168.77.50,192.168.77.99,255.255.255.0,1h", "--dhcp-host={MAC_B},192.168.77.60", "--dhcp-leasefile=/tmp/leases", "--pid-file=/tmp/dnsmasq.pid"]
{}"#,
        web_and_client("hello-from-a", 8081, "http://192.168.77.60:8082/")
    );
    let b = format!(
        r#"
version = 1
[host]
hostname = "lan-b"
on_fatal = "poweroff"
[host.network]
interfaces = [{{ mac = "{MAC_B}", dhcp = true }}]
{}"#,
        web_and_client("hello-from-b", 8082, "http://192.168.77.1:8081/")
    );
    let img_a =
        scenario::build_image_with_images("lan-a", &a, &[], &[scenario::image(&layout, None)])
            .unwrap();
    let img_b = scenario::build_image("lan-b", &b).unwrap();

    let port = berth_qemu_test::free_local_port().unwrap();
    let vm_a = scenario::launch_image("lan-a", &img_a, |c| {
        c.network(SocketNet::listen(port).mac(MAC_A))
    })
    .unwrap();
    let vm_b = scenario::launch_image("lan-b", &img_b, |c| {
        c.network(SocketNet::connect(port).mac(MAC_B))
    })
    .unwrap();
    vm_a.wait_for(scenario::READY, scenario::BOOT_TIMEOUT)
        .unwrap();
    vm_b.wait_for(scenario::READY, scenario::BOOT_TIMEOUT)
        .unwrap();

    // B took the address dnsmasq keeps for its MAC, from A.
    let out = wait_output(&vm_a, "dhcpd", "DHCPACK");
    assert!(
        out.iter()
            .any(|l| l.contains("DHCPACK(eth0) 192.168.77.60 52:54:00:bb:00:02")),
        "{out:#?}"
    );
    let deadline = Instant::now() + WAIT;
    let mut eth0 = info(&vm_b)["network"]["interfaces"][0].clone();
    while eth0["dhcp"]["state"] != "bound" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        eth0 = info(&vm_b)["network"]["interfaces"][0].clone();
    }
    assert_eq!(
        eth0["addresses"],
        serde_json::json!(["192.168.77.60/24"]),
        "{eth0:#}"
    );
    assert_eq!(eth0["dhcp"]["server"], "192.168.77.1", "{eth0:#}");

    // Each guest's container reaches the other's published port.
    let got = wait_output(&vm_b, "client", "got: ");
    assert!(got.iter().any(|l| l == "got: hello-from-a"), "{got:?}");
    let got = wait_output(&vm_a, "client", "got: ");
    assert!(got.iter().any(|l| l == "got: hello-from-b"), "{got:?}");

    scenario::power_off(&vm_b).unwrap();
    scenario::power_off(&vm_a).unwrap();
}

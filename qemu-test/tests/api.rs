//! berth's API and CLI in a real guest.
//!
//! The control channel is one byte stream: fine for requests, no good for
//! long streams. So the CLI runs **inside the guest**, in a container that
//! bind-mounts berth's own static binary (`/init`) and the API socket's
//! directory, and prints what it sees to the console (`cli | ...`). The
//! harness's channel then checks reloads and PID 1's health; the remote
//! listener is reached with curl through a QEMU host forward on 127.0.0.1,
//! and the metrics go through `promtool check metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_image::ExtraFile;
use berth_qemu_test::scenario::{self, HTTP_TIMEOUT};
use berth_qemu_test::{HostFwd, UserNet, Vm, free_local_port, paths};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

fn json(vm: &Vm, path: &str) -> Value {
    let (status, body) = vm.http("GET", path, None, HTTP_TIMEOUT).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Each container's state and PID.
fn states(vm: &Vm) -> BTreeMap<String, (String, Option<u64>)> {
    json(vm, "/v1/containers")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                (c["state"].as_str().unwrap().to_string(), c["pid"].as_u64()),
            )
        })
        .collect()
}

/// The console lines a container printed, without berth's prefix.
fn output(vm: &Vm, name: &str) -> Vec<String> {
    let marker = format!(" {name} | ");
    vm.console()
        .lines()
        .filter_map(|l| {
            l.split_once(&marker)
                .map(|(_, rest)| rest.trim_end_matches('\r').to_string())
        })
        .collect()
}

/// Waits until `name` has printed `line`; returns everything it printed.
fn wait_output(vm: &Vm, name: &str, line: &str) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = output(vm, name);
        if out.iter().any(|l| l == line) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never printed {line:?}:\n{}",
            vm.console_tail(60)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The lines between `=== from` and the next `===` marker.
fn section<'a>(out: &'a [String], from: &str) -> &'a [String] {
    let start = out
        .iter()
        .position(|l| l == &format!("=== {from}"))
        .unwrap_or_else(|| panic!("no section {from}: {out:#?}"))
        + 1;
    let len = out[start..]
        .iter()
        .position(|l| l.starts_with("=== "))
        .unwrap_or(out.len() - start);
    &out[start..start + len]
}

/// The CLI's session, run by the `cli` container; it waits for the
/// states to settle first, so `ps` shows each.
const SCRIPT: &str = r#"
export PATH=/usr/local/bin:$PATH
settle() { n=0; until berth ps | grep -q "$1"; do n=$((n+1)); [ $n -gt 240 ] && break; sleep 0.5; done; }
settle ' failed '; settle ' exited '; settle 'ticker .* running '
berth stop victim
settle ' stopped '
echo '=== ps'
berth ps
echo '=== more'
berth logs --tail 2 ticker
berth stats web
berth images
berth images prune
echo '=== json'
berth --json ps | grep -c '"name"'
echo '=== follow'
berth logs -f --tail 0 ticker | head -n 3
echo '=== exec'
berth exec web sh -c 'echo host=$(hostname); echo pid1=$(tr "\0" " " < /proc/1/cmdline); cat /tmp/in-web; exit 42'
echo "exec-rc=$?"
echo '=== tty'
printf 'tty; [ -t 0 ] && echo pty-$((6*7)); exit 7\n' | berth exec -it web sh
echo "tty-rc=$?"
echo '=== errors'
berth logs ghost 2>&1; echo "ghost-rc=$?"
berth frobnicate 2>&1; echo "usage-rc=$?"
echo '=== storm'
berth start victim > /dev/null
sleep 2
fds() { berth --json info | grep -o '"open_fds": *[0-9]*' | grep -o '[0-9]*$'; }
fds0=$(fds)
i=0; while [ $i -lt 50 ]; do (berth ps > /tmp/ps.$i 2>&1; echo $? > /tmp/rc.$i) & i=$((i+1)); done; wait
echo "ok=$(cat /tmp/rc.* | grep -c '^0$') of 50"
berth logs -f ticker > /dev/null & a=$!
berth events > /dev/null & b=$!
berth exec -i web sh -c 'sleep 2; echo late' > /dev/null & c=$!
sleep 1; kill -9 $a $b $c
sleep 4
echo "fds before=$fds0 after=$(fds)"
echo '=== done'
"#;

fn manifest() -> String {
    format!(
        r#"
version = 1
[host]
on_fatal = "poweroff"

[containers.web]
image = "busybox:latest"
hostname = "webhost"
command = ["sh", "-c", "echo made-in-web > /tmp/in-web; exec sleep 3600"]

[containers.job]
image = "busybox:latest"
command = ["sh", "-c", "echo job done"]

[containers.crasher]
image = "busybox:latest"
command = ["sh", "-c", "exit 3"]
restart = "on-failure:1"

[containers.blocked]
image = "busybox:latest"
command = ["sleep", "3600"]
depends_on = {{ crasher = {{ condition = "service_completed_successfully" }} }}

[containers.victim]
image = "busybox:latest"
command = ["sleep", "3600"]
restart = "always"

[containers.ticker]
image = "busybox:latest"
command = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"]

[containers.cli]
image = "busybox:latest"
volumes = ["/init:/usr/local/bin/berth:ro", "/run/berth:/run/berth"]
command = ["sh", "-c", '''{SCRIPT}''']
"#
    )
}

#[test]
fn the_cli_in_a_guest_container_and_reload() {
    let vm = scenario::boot("api-cli", &manifest(), |c| c).unwrap();
    vm.keep_log();
    let out = wait_output(&vm, "cli", "=== done");

    // ps: a table with each state.
    let ps = section(&out, "ps");
    assert!(ps[0].starts_with("NAME "), "{ps:#?}");
    let state = |name: &str| {
        let row = ps
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {ps:#?}"));
        row.split_whitespace().nth(2).unwrap().to_string()
    };
    for (name, s) in [
        ("web", "running"),
        ("job", "exited"),
        ("crasher", "failed"),
        ("blocked", "waiting"),
        ("victim", "stopped"),
        ("cli", "running"),
    ] {
        assert_eq!(state(name), s, "{ps:#?}");
    }
    assert_eq!(section(&out, "json"), ["7"]);
    let more = section(&out, "more");
    assert!(
        more[0].starts_with("tick ") && more[1].starts_with("tick "),
        "{more:#?}"
    );
    assert!(more[2].starts_with("NAME   CPU "), "{more:#?}");
    assert!(more[3].starts_with("web    "), "{more:#?}");
    assert!(more[4].starts_with("REFERENCE "), "{more:#?}");
    // Every image here is named and in use: pruning removes nothing.
    assert_eq!(
        more.last().map(String::as_str),
        Some("removed 0 image(s), 0 layer(s) (0B), 0 blob(s)"),
        "{more:#?}"
    );

    // logs -f: new lines only (--tail 0), as they come, in order.
    let follow = section(&out, "follow");
    assert_eq!(follow.len(), 3, "{follow:#?}");
    let ticks: Vec<u32> = follow
        .iter()
        .map(|l| l.strip_prefix("tick ").unwrap().parse().unwrap())
        .collect();
    assert!(ticks.windows(2).all(|w| w[1] == w[0] + 1), "{ticks:?}");
    assert!(ticks[0] > 1, "a stored line came: {ticks:?}");

    // exec: inside web's namespaces (UTS, PID, mount), its exit code back.
    let exec: Vec<&str> = section(&out, "exec").iter().map(|l| l.trim_end()).collect();
    assert_eq!(
        exec,
        [
            "host=webhost",
            "pid1=sleep 3600",
            "made-in-web",
            "exec-rc=42"
        ]
    );

    // exec -it: a terminal of its own, through the frames.
    let tty = section(&out, "tty");
    assert!(tty.iter().any(|l| l.starts_with("/dev/pts/")), "{tty:#?}");
    assert!(tty.iter().any(|l| l == "pty-42"), "{tty:#?}");
    assert_eq!(tty.last().map(String::as_str), Some("tty-rc=7"));

    // Errors: one line, exit 1; usage errors exit 2.
    assert_eq!(
        section(&out, "errors"),
        [
            "berth: no such container: ghost",
            "ghost-rc=1",
            "berth: unknown command frobnicate (berth help: the commands)",
            "usage-rc=2"
        ]
    );

    // 50 concurrent clients, and clients killed mid-stream: all answered,
    // no descriptor left behind.
    let storm = section(&out, "storm");
    assert_eq!(storm[0], "ok=50 of 50", "{storm:#?}");
    let fds: Vec<u64> = storm[1]
        .split(['=', ' '])
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(fds.len(), 2, "{storm:#?}");
    assert!(fds[1] <= fds[0], "PID 1 kept descriptors: {storm:#?}");
    eprintln!("PID 1's open descriptors: {storm:?}");

    // Reload: an invalid manifest changes nothing.
    let before = states(&vm);
    let (status, body) = vm
        .http(
            "POST",
            "/v1/system/reload",
            Some("version = 1\n[containers.web]\nimage = 3\n"),
            HTTP_TIMEOUT,
        )
        .unwrap();
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["message"], "invalid manifest; nothing changed");
    assert!(!v["errors"].as_array().unwrap().is_empty(), "{body}");
    assert_eq!(states(&vm), before);

    // Streams are refused on the control channel (they would hold it for
    // good), with a pointer to where they are served; the channel goes on.
    for (method, path) in [
        ("GET", "/v1/containers/ticker/logs?follow=1"),
        ("GET", "/v1/events"),
        ("POST", "/v1/containers/web/exec"),
    ] {
        let (status, body) = vm
            .http(method, path, Some("{\"cmd\": [\"true\"]}"), HTTP_TIMEOUT)
            .unwrap();
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert!(body.contains("control channel does not carry"), "{body}");
    }
    assert_eq!(json(&vm, "/v1/ping")["ok"], true);

    // A valid one: job removed, newbie added, ticker changed; the rest
    // keep running with the same PIDs.
    let next = manifest()
        .replace(
            "[containers.job]\nimage = \"busybox:latest\"\ncommand = [\"sh\", \"-c\", \"echo job done\"]\n",
            "[containers.newbie]\nimage = \"busybox:latest\"\ncommand = [\"sleep\", \"3600\"]\n",
        )
        .replace("echo tick $i", "echo tock $i");
    let (status, body) = vm
        .http("POST", "/v1/system/reload", Some(&next), HTTP_TIMEOUT)
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["added"], serde_json::json!(["newbie"]));
    assert_eq!(v["removed"], serde_json::json!(["job"]));
    assert_eq!(v["changed"], serde_json::json!(["ticker"]));
    assert_eq!(
        v["unchanged"],
        serde_json::json!(["blocked", "cli", "crasher", "victim", "web"])
    );
    let deadline = Instant::now() + WAIT;
    let after = loop {
        let s = states(&vm);
        if s.get("newbie").is_some_and(|n| n.0 == "running")
            && s.get("ticker").is_some_and(|t| t.0 == "running")
        {
            break s;
        }
        assert!(Instant::now() < deadline, "reload never settled: {s:?}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(!after.contains_key("job"));
    for name in ["web", "victim"] {
        assert_eq!(after[name], before[name], "{name} was disturbed");
    }
    assert_ne!(after["ticker"].1, before["ticker"].1);
    wait_output(&vm, "ticker", "tock 2");

    // PID 1 is healthy after all that.
    assert_eq!(json(&vm, "/v1/ping"), serde_json::json!({"ok": true}));
    let info = json(&vm, "/v1/system/info");
    eprintln!("berth after the CLI session: {}", info["berth"]);
    scenario::power_off(&vm).unwrap();
}

/// A certificate authority made for the test.
struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

fn ca(name: &str) -> Ca {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

/// A certificate signed by `ca`: (certificate, key), as PEM.
fn leaf(ca: &Ca, name: &str, client: bool) -> (String, String) {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
    let sans = if client {
        vec![]
    } else {
        vec!["localhost".to_string(), "127.0.0.1".to_string()]
    };
    let mut params = CertificateParams::new(sans).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "15"])
        .args(args)
        .output()
        .expect("curl (scripts/install-deps installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// promtool: on the PATH, or taken out of Debian's prometheus package
/// (96 MB installed, with a web UI and a service) into the target
/// directory once: `apt-get download`, then only `usr/bin/promtool`.
fn promtool() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v promtool"])
        .output()
        && out.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    let dir = paths::target_dir().join("promtool");
    let bin = dir.join("promtool");
    if bin.is_file() {
        return bin;
    }
    let tmp = tempfile::tempdir_in(paths::target_dir()).unwrap();
    let download = || {
        Command::new("apt-get")
            .args(["download", "-q", "prometheus"])
            .current_dir(tmp.path())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !download() {
        // A fresh machine may have no package lists yet.
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        assert!(download(), "apt-get download prometheus failed");
    }
    let deb = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("the prometheus package");
    let script = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' ./usr/bin/promtool",
        deb.display(),
        tmp.path().display()
    );
    let ok = Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(ok.success(), "unpacking promtool failed");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::rename(tmp.path().join("usr/bin/promtool"), &bin).unwrap();
    bin
}

fn promtool_check(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

const REMOTE: &str = r#"
version = 1
[host]
on_fatal = "poweroff"

[host.network]
interfaces = [{ name = "eth0", dhcp = true }]

[host.api.remote]
listen = "0.0.0.0:8443"
cert = "/etc/berth/tls/server.pem"
key = "/etc/berth/tls/server.key"
client_ca = "/etc/berth/tls/clients.pem"

[containers.web]
image = "busybox:latest"
command = ["sleep", "3600"]
healthcheck = { test = ["CMD", "true"], interval = "1s" }

[containers.job]
image = "busybox:latest"
command = ["sh", "-c", "echo done"]
"#;

#[test]
fn remote_api_with_mutual_tls_and_metrics() {
    let (fleet, stranger) = (ca("berth fleet CA"), ca("someone else's CA"));
    let (server_cert, server_key) = leaf(&fleet, "berth", false);
    let (client_cert, client_key) = leaf(&fleet, "operator", true);
    let (bad_cert, bad_key) = leaf(&stranger, "intruder", true);
    let file = |path: &str, text: &str, mode| ExtraFile {
        path: path.into(),
        contents: text.as_bytes().to_vec(),
        mode,
    };
    let extra = [
        file("/etc/berth/tls/server.pem", &server_cert, 0o644),
        file("/etc/berth/tls/server.key", &server_key, 0o600),
        file("/etc/berth/tls/clients.pem", &fleet.pem, 0o644),
    ];
    let image = scenario::build_image_with("api-remote", REMOTE, &extra).unwrap();
    let port = free_local_port().unwrap();
    let vm = scenario::boot_image("api-remote", &image, |c| {
        c.network(UserNet::new().hostfwd(HostFwd::tcp(port, 8443)))
    })
    .unwrap();
    vm.keep_log();

    let dir = tempfile::tempdir().unwrap();
    let ca_pem = write(dir.path(), "ca.pem", &fleet.pem);
    let (cert, key) = (
        write(dir.path(), "client.pem", &client_cert),
        write(dir.path(), "client.key", &client_key),
    );
    let (bad, bad_k) = (
        write(dir.path(), "bad.pem", &bad_cert),
        write(dir.path(), "bad.key", &bad_key),
    );
    let url = |p: &str| format!("https://127.0.0.1:{port}{p}");
    let good = |path: &str| {
        curl(&[
            "--cacert",
            &ca_pem,
            "--cert",
            &cert,
            "--key",
            &key,
            &url(path),
        ])
    };

    // The listener comes up; the guest gets its address by DHCP.
    let started = Instant::now();
    let deadline = started + WAIT;
    loop {
        let (ok, out, err) = good("/v1/ping");
        if ok {
            assert_eq!(out.trim(), r#"{"ok":true}"#);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the remote API never answered: {err}\n{}",
            vm.console_tail(40)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("remote API answered {:?} after boot", started.elapsed());

    // Refused: no client certificate, another CA's, plain HTTP.
    let (ok, out, err) = curl(&["--cacert", &ca_pem, &url("/v1/ping")]);
    assert!(!ok && out.is_empty(), "let in without a certificate: {out}");
    eprintln!("no certificate: {}", err.trim());
    let (ok, out, err) = curl(&[
        "--cacert",
        &ca_pem,
        "--cert",
        &bad,
        "--key",
        &bad_k,
        &url("/v1/ping"),
    ]);
    assert!(!ok && out.is_empty(), "let in with another CA's: {out}");
    eprintln!("another CA: {}", err.trim());
    let (ok, out, _) = curl(&[&format!("http://127.0.0.1:{port}/v1/ping")]);
    assert!(!ok, "plain HTTP answered: {out}");
    // Each refusal is one warning line.
    let deadline = Instant::now() + Duration::from_secs(20);
    while vm.console().matches("remote API: refused").count() < 3 {
        assert!(
            Instant::now() < deadline,
            "refusals not logged:\n{}",
            vm.console_tail(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for l in vm
        .console()
        .lines()
        .filter(|l| l.contains("remote API: refused"))
    {
        eprintln!("{l}");
    }

    // The good client gets everything.
    let (ok, out, err) = good("/v1/containers");
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);

    // Metrics, with containers, pass promtool.
    let deadline = Instant::now() + WAIT;
    let metrics = loop {
        let (status, body) = vm.http("GET", "/v1/metrics", None, HTTP_TIMEOUT).unwrap();
        assert_eq!(status, 200);
        if body.contains("berth_container_healthy{container=\"web\"} 1") {
            break body;
        }
        assert!(Instant::now() < deadline, "web never healthy:\n{body}");
        std::thread::sleep(Duration::from_millis(500));
    };
    for family in [
        "berth_container_cpu_seconds_total",
        "berth_container_memory_bytes",
        "berth_container_restarts_total",
        "berth_container_up",
        "berth_container_uptime_seconds",
        "berth_host_memory_total_bytes",
        "berth_host_load1",
        "berth_rss_bytes",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "{family}:\n{metrics}"
        );
    }
    let (ok, says) = promtool_check(&metrics);
    assert!(ok, "promtool check metrics:\n{says}\n{metrics}");
    // The same over TLS.
    let (ok, remote_metrics, _) = good("/v1/metrics");
    assert!(ok && remote_metrics.contains("# TYPE berth_rss_bytes gauge"));

    scenario::power_off(&vm).unwrap();
}

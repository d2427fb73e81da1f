//! Remote syslog in a real guest: berth forwards its own records and its
//! containers' lines to rsyslog on this machine's 127.0.0.1, reached through
//! a QEMU guest forward (10.0.2.100, TCP: QEMU cannot forward UDP to the
//! host). rsyslog, configured in a temporary directory, parses each message
//! (RFC 5424 with RFC 6587 octet counting) and writes its fields through a
//! template, so the framing is checked by a parser nobody here wrote.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use berth_qemu_test::scenario::{self, HTTP_TIMEOUT};
use berth_qemu_test::{GuestFwd, UserNet, Vm};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

/// The guest port of the forward to rsyslog.
const GUEST_PORT: u16 = 6514;

/// rsyslogd in the foreground, killed when dropped.
struct Rsyslog {
    child: Child,
    out: PathBuf,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts rsyslogd with a configuration of its own in `dir`: one TCP
/// input on 127.0.0.1:`port`, every message written to `dir/out.log` as
/// `HOST|APP|PROCID|SEVERITY|VERSION|MSG`, after rsyslog's own parsing.
fn rsyslog(dir: &Path, port: u16) -> Rsyslog {
    std::fs::create_dir_all(dir.join("work")).unwrap();
    let out = dir.join("out.log");
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="fwd")
template(name="fields" type="string" string="%hostname%|%app-name%|%procid%|%syslogseverity-text%|%protocol-version%|%msg%\n")
ruleset(name="fwd") {{
  action(type="omfile" file="{out}" template="fields")
}}
"#,
            work = dir.join("work").display(),
            out = out.display(),
        ),
    )
    .unwrap();
    let child = Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .spawn()
        .unwrap();
    // Ready once it listens.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rsyslogd never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    Rsyslog { child, out }
}

/// rsyslog's parsed messages so far, each as its fields.
fn received(r: &Rsyslog) -> Vec<Vec<String>> {
    std::fs::read_to_string(&r.out)
        .unwrap_or_default()
        .lines()
        .map(|l| l.splitn(6, '|').map(str::to_string).collect())
        .collect()
}

fn wait_received(vm: &Vm, r: &Rsyslog, what: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(m) = received(r).into_iter().find(|m| ok(m)) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "rsyslog never got {what}; it got {:#?}\n{}",
            received(r),
            vm.console_tail(40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn container(vm: &Vm, name: &str) -> Value {
    let (status, body) = vm
        .http("GET", &format!("/v1/containers/{name}"), None, HTTP_TIMEOUT)
        .unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn logs_reach_rsyslog_on_the_host_over_tcp_as_rfc5424() {
    let dir = scenario::images_dir()
        .parent()
        .unwrap()
        .join("syslog")
        .join(format!("rfc5424-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = berth_qemu_test::free_local_port().unwrap();
    let r = rsyslog(&dir, port);

    let manifest = format!(
        r#"
version = 1
[host]
hostname = "syslog-guest"
on_fatal = "poweroff"
[host.network]
interfaces = [{{ name = "eth0", dhcp = true }}]
[host.logging]
syslog = {{ target = "tcp://10.0.2.100:{GUEST_PORT}", format = "rfc5424" }}

[containers.talker]
image = "busybox:latest"
command = ["sh", "-c", "echo 'hello, syslog'; echo 'trouble on stderr' >&2; exec sleep 3600"]

[containers.quiet]
image = "busybox:latest"
logging = {{ syslog = false }}
command = ["sh", "-c", "echo 'kept off syslog'; exec sleep 3600"]
"#
    );
    let vm = scenario::boot("syslog-rfc5424", &manifest, |c| {
        c.network(UserNet::new().guestfwd(GuestFwd::tcp(GUEST_PORT, port)))
    })
    .unwrap();

    // berth's own records, from before the network was up too.
    let ready = wait_received(&vm, &r, "berth's ready record", |m| {
        m.len() == 6 && m[1] == "berth" && m[5].starts_with("ready in ")
    });
    assert_eq!(ready[..5], ["syslog-guest", "berth", "1", "info", "1"]);

    // A container's stdout at info, its stderr at err, with its pid.
    let pid = container(&vm, "talker")["pid"]
        .as_i64()
        .unwrap()
        .to_string();
    let out = wait_received(&vm, &r, "talker's stdout", |m| {
        m.len() == 6 && m[5] == "hello, syslog"
    });
    assert_eq!(
        out[..5],
        ["syslog-guest", "talker", pid.as_str(), "info", "1"]
    );
    let err = wait_received(&vm, &r, "talker's stderr", |m| {
        m.len() == 6 && m[5] == "trouble on stderr"
    });
    assert_eq!(
        err[..5],
        ["syslog-guest", "talker", pid.as_str(), "err", "1"]
    );

    // A container with syslog off is not forwarded (it printed by now).
    assert!(
        vm.console().contains("quiet | kept off syslog"),
        "{}",
        vm.console_tail(40)
    );
    scenario::power_off(&vm).unwrap();
    assert!(
        !received(&r)
            .iter()
            .any(|m| m.iter().any(|f| f.contains("kept off syslog"))),
        "{:#?}",
        received(&r)
    );
    // Every line was parsed as RFC 5424 (protocol version 1) from the guest.
    for m in received(&r) {
        assert_eq!(m.len(), 6, "{m:?}");
        assert_eq!(
            (m[0].as_str(), m[4].as_str()),
            ("syslog-guest", "1"),
            "{m:?}"
        );
    }
}

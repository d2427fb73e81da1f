//! Remote syslog over UDP as RFC 3164, against rsyslog on 127.0.0.1 (QEMU's
//! guest forwards carry TCP only, so the UDP path is checked here; the TCP,
//! RFC 5424 path is the QEMU scenario qemu-test/tests/syslog.rs). rsyslog,
//! configured in a temporary directory, parses each datagram and writes its
//! fields through a template.
//!
//! berth's forwarder is process-wide (started once), so this file holds a
//! single test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use berth::logging::syslog::{self, Level};
use berth_config::{Protocol, Syslog, SyslogFormat};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn udp_rfc3164_messages_are_parsed_by_rsyslog() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let out = dir.path().join("out.log");
    let conf = dir.path().join("rsyslog.conf");
    std::fs::create_dir_all(dir.path().join("work")).unwrap();
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{port}" ruleset="fwd")
template(name="fields" type="string" string="%hostname%|%syslogtag%|%programname%|%procid%|%syslogfacility-text%|%syslogseverity-text%|%protocol-version%|%msg%\n")
ruleset(name="fwd") {{
  action(type="omfile" file="{out}" template="fields")
}}
"#,
            work = dir.path().join("work").display(),
            out = out.display(),
        ),
    )
    .unwrap();
    let _rsyslog = Killed(
        Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.path().join("pid"))
            .spawn()
            .expect("rsyslogd (Debian package rsyslog)"),
    );

    let what = syslog::start(
        &Syslog {
            protocol: Protocol::Udp,
            host: "127.0.0.1".into(),
            port,
            format: SyslogFormat::Rfc3164,
        },
        "edge-01",
    )
    .unwrap();
    assert_eq!(what, format!("udp to 127.0.0.1:{port} (RFC 3164)"));

    // rsyslog may not listen yet: send until a message arrives.
    let deadline = Instant::now() + Duration::from_secs(20);
    let lines = loop {
        syslog::send("web", 42, Level::Info, "hello over udp");
        syslog::send("web", 42, Level::Error, "trouble");
        std::thread::sleep(Duration::from_millis(200));
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.contains("| trouble") {
            break text;
        }
        assert!(Instant::now() < deadline, "rsyslog got nothing: {text:?}");
    };
    // rsyslog keeps the space after an RFC 3164 tag's colon in %msg%.
    let parsed: Vec<&str> = lines.lines().collect();
    assert!(
        parsed.contains(&"edge-01|web[42]:|web|42|daemon|info|0| hello over udp"),
        "{lines}"
    );
    assert!(
        parsed.contains(&"edge-01|web[42]:|web|42|daemon|err|0| trouble"),
        "{lines}"
    );
}

//! Remote syslog: berth's records and containers' lines sent to a syslog
//! receiver over UDP or TCP, formatted as RFC 5424 or RFC 3164 (both
//! written here: a few lines, where the `syslog` crate brought the `time`
//! crate and its formatting into the binary).
//!
//! Sending never blocks PID 1. UDP datagrams go out on a non-blocking
//! socket; one that cannot go now is dropped. TCP messages (RFC 6587
//! octet-counted) go through a bounded queue to a task that connects and
//! reconnects with back-off; when the queue is full, messages are dropped
//! and counted, and the count is reported once the receiver catches up.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use berth_config::{Protocol, Syslog, SyslogFormat};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Messages waiting for a TCP receiver.
const QUEUE: usize = 4096;

/// The forwarder, once configured.
static FORWARDER: OnceLock<Forwarder> = OnceLock::new();

/// Messages dropped because the receiver could not keep up.
static DROPPED: AtomicU64 = AtomicU64::new(0);

enum Transport {
    /// Not connected: berth may start forwarding before the host network
    /// is up, when connect(2) would fail with ENETUNREACH for good.
    Udp(UdpSocket, SocketAddr),
    Tcp(mpsc::Sender<Vec<u8>>),
}

/// Where and how messages go.
pub struct Forwarder {
    transport: Transport,
    format: SyslogFormat,
    hostname: String,
}

/// How bad a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Errors (a container's stderr).
    Error,
    /// Warnings.
    Warning,
    /// Information (a container's stdout).
    Info,
    /// Debugging detail.
    Debug,
}

/// The facility berth sends as: daemon (3), shifted into the priority.
const LOG_DAEMON: u8 = 3 << 3;

/// Resolves the receiver's host: an address, or a name in /etc/hosts (berth
/// is static and uses no resolver library).
pub fn resolve(host: &str, hosts_file: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse() {
        return Some(ip);
    }
    hosts_file.lines().find_map(|l| {
        let l = l.split('#').next()?;
        let mut words = l.split_whitespace();
        let ip: IpAddr = words.next()?.parse().ok()?;
        words.any(|w| w.eq_ignore_ascii_case(host)).then_some(ip)
    })
}

/// Formats one message.
pub fn format(
    format: SyslogFormat,
    hostname: &str,
    app: &str,
    pid: u32,
    level: Level,
    text: &str,
    now: SystemTime,
) -> Vec<u8> {
    let severity: u8 = match level {
        Level::Error => 3,
        Level::Warning => 4,
        Level::Info => 6,
        Level::Debug => 7,
    };
    let prio = LOG_DAEMON | severity;
    match format {
        // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG,
        // with message ID 1 and no structured data.
        SyslogFormat::Rfc5424 => format!(
            "<{prio}>1 {} {hostname} {app} {pid} 1 - {text}",
            rfc5424_time(now)
        ),
        // UTC: a local time offset may be unknown, and looking it up is no
        // reason for PID 1 to fail.
        SyslogFormat::Rfc3164 => {
            format!("<{prio}>{} {hostname} {app}[{pid}]: {text}", bsd_time(now))
        }
    }
    .into_bytes()
}

/// RFC 3339 in UTC to the microsecond at most (RFC 5424 allows six
/// digits), trailing zeros of the fraction left out:
/// `2026-11-30T05:45:29.5531Z`, `2026-11-30T05:45:29Z`.
fn rfc5424_time(now: SystemTime) -> String {
    // 2026-11-30T05:45:29.553100Z
    let iso = super::files::rfc3339(now);
    let (secs, frac) = iso
        .trim_end_matches('Z')
        .split_once('.')
        .unwrap_or((&iso, ""));
    match frac.trim_end_matches('0') {
        "" => format!("{secs}Z"),
        f => format!("{secs}.{f}Z"),
    }
}

/// `Nov 30 05:45:29`, in UTC.
fn bsd_time(now: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let iso = super::files::rfc3339(now);
    // 2026-11-30T05:45:29.553104Z
    let month: usize = iso[5..7].parse().unwrap_or(1);
    let day: u32 = iso[8..10].parse().unwrap_or(1);
    format!("{} {day:>2} {}", MONTHS[(month - 1) % 12], &iso[11..19])
}

/// Starts forwarding to `cfg`. Must run inside the event loop (TCP starts a
/// task). Returns a description for the boot log, or why it cannot.
pub fn start(cfg: &Syslog, hostname: &str) -> Result<String, String> {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let ip = resolve(&cfg.host, &hosts).ok_or_else(|| {
        format!(
            "cannot resolve syslog host {:?} (an address, or a name in /etc/hosts)",
            cfg.host
        )
    })?;
    let addr = SocketAddr::new(ip, cfg.port);
    let transport = match cfg.protocol {
        Protocol::Udp => {
            let bind: SocketAddr = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                .parse()
                .map_err(|e| format!("{e}"))?;
            let s = UdpSocket::bind(bind).map_err(|e| format!("syslog socket: {e}"))?;
            s.set_nonblocking(true)
                .map_err(|e| format!("syslog socket: {e}"))?;
            Transport::Udp(s, addr)
        }
        Protocol::Tcp => {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::task::spawn_local(tcp_sender(addr, rx, cfg.format, hostname.to_string()));
            Transport::Tcp(tx)
        }
    };
    let f = Forwarder {
        transport,
        format: cfg.format,
        hostname: hostname.to_string(),
    };
    FORWARDER
        .set(f)
        .map_err(|_| "syslog forwarding already started".to_string())?;
    Ok(format!(
        "{} to {addr} ({})",
        match cfg.protocol {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        },
        match cfg.format {
            SyslogFormat::Rfc5424 => "RFC 5424",
            SyslogFormat::Rfc3164 => "RFC 3164",
        }
    ))
}

/// Sends one message, if forwarding is on. Never blocks.
pub fn send(app: &str, pid: u32, level: Level, text: &str) {
    let Some(f) = FORWARDER.get() else {
        return;
    };
    let msg = format(
        f.format,
        &f.hostname,
        app,
        pid,
        level,
        text,
        SystemTime::now(),
    );
    let sent = match &f.transport {
        Transport::Udp(s, addr) => s.send_to(&msg, addr).is_ok(),
        Transport::Tcp(tx) => tx.try_send(octet_counted(&msg)).is_ok(),
    };
    if !sent {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether forwarding is on.
pub fn enabled() -> bool {
    FORWARDER.get().is_some()
}

/// A message framed for TCP as RFC 6587 octet counting: `LEN SP MSG`.
fn octet_counted(msg: &[u8]) -> Vec<u8> {
    let mut framed = format!("{} ", msg.len()).into_bytes();
    framed.extend_from_slice(msg);
    framed
}

async fn tcp_sender(
    addr: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    syntax: SyslogFormat,
    hostname: String,
) {
    let mut delay = Duration::from_millis(200);
    let mut pending: Option<Vec<u8>> = None;
    loop {
        let mut stream = match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                delay = Duration::from_millis(200);
                s
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        loop {
            let msg = match pending.take() {
                Some(m) => m,
                None => match rx.recv().await {
                    Some(m) => m,
                    None => return,
                },
            };
            let dropped = DROPPED.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                let note = format(
                    syntax,
                    &hostname,
                    "berth",
                    1,
                    Level::Warning,
                    &format!("{dropped} syslog message(s) dropped: the receiver was slow or away"),
                    SystemTime::now(),
                );
                let _ = stream.write_all(&octet_counted(&note)).await;
            }
            if stream.write_all(&msg).await.is_err() {
                pending = Some(msg);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_carries_host_app_pid_and_severity() {
        let m = format(
            SyslogFormat::Rfc5424,
            "edge-01",
            "web",
            7,
            Level::Error,
            "boom",
            SystemTime::now(),
        );
        let s = String::from_utf8(m).unwrap();
        // <daemon(3)*8 + err(3)>1 TIMESTAMP HOST APP PID MSGID SD MSG
        assert!(s.starts_with("<27>1 "), "{s}");
        assert!(s.ends_with(" edge-01 web 7 1 - boom"), "{s}");
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_015_129_553_100);
        let m = format(
            SyslogFormat::Rfc5424,
            "edge-01",
            "web",
            7,
            Level::Warning,
            "hi",
            t,
        );
        assert_eq!(
            String::from_utf8(m).unwrap(),
            "<28>1 2026-11-30T05:05:29.5531Z edge-01 web 7 1 - hi"
        );
    }

    #[test]
    fn rfc5424_time_has_no_trailing_zeros() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_015_129);
        assert_eq!(rfc5424_time(t), "2026-11-30T05:05:29Z");
        let t = t + Duration::from_nanos(120_000_999);
        assert_eq!(rfc5424_time(t), "2026-11-30T05:05:29.12Z");
        let t = t + Duration::from_micros(3);
        assert_eq!(rfc5424_time(t), "2026-11-30T05:05:29.120003Z");
    }

    #[test]
    fn rfc3164_is_written_without_local_time() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_015_129);
        let m = format(
            SyslogFormat::Rfc3164,
            "edge-01",
            "web",
            7,
            Level::Info,
            "hi",
            t,
        );
        assert_eq!(
            String::from_utf8(m).unwrap(),
            "<30>Nov 30 05:05:29 edge-01 web[7]: hi"
        );
    }

    #[test]
    fn hosts_are_addresses_or_etc_hosts_names() {
        let hosts = "127.0.0.1 localhost\n10.0.2.100 logs logs.lan # receiver\n";
        assert_eq!(
            resolve("10.0.2.9", hosts),
            Some("10.0.2.9".parse().unwrap())
        );
        assert_eq!(
            resolve("LOGS.lan", hosts),
            Some("10.0.2.100".parse().unwrap())
        );
        assert_eq!(resolve("nowhere", hosts), None);
    }
}

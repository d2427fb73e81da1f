//! NAT and published ports on the host, as root: berth's nftables messages
//! against the real kernel, checked with Debian's `nft` (package
//! `nftables`), and traffic through the rules between network namespaces.
//!
//! Every test first moves its own thread into a new, empty network
//! namespace (`unshare(CLONE_NEWNET)` affects the calling thread only; the
//! commands it spawns inherit it), so nothing here touches the host's
//! network. Other namespaces ("container", "outside") are held by file
//! descriptors and entered by short-lived threads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use berth::network::nft::{self, Action, Error, Plan, Protocol, Published, Rule, Ruleset};
use nix::sched::{CloneFlags, setns, unshare};

const TIMEOUT: Duration = Duration::from_secs(3);

/// Moves the calling test's thread into a new, empty network namespace.
fn fresh_netns() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "host nft tests need root (scripts/test runs them as root)"
    );
    unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
}

/// A new network namespace, held open by a descriptor.
fn new_netns() -> OwnedFd {
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).unwrap();
        OwnedFd::from(File::open("/proc/thread-self/ns/net").unwrap())
    })
    .join()
    .unwrap()
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &OwnedFd, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.try_clone().unwrap();
    std::thread::spawn(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// The path another process opens to reach namespace `ns`.
fn ns_path(ns: &OwnedFd) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd())
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ip(args: &str) {
    run("ip", &args.split_whitespace().collect::<Vec<_>>());
}

fn ip_in(ns: &OwnedFd, args: &str) {
    let args = args.to_string();
    in_netns(ns, move || ip(&args));
}

/// The kernel's ruleset as `nft -j` reads it back.
#[derive(Debug, PartialEq)]
struct Listed {
    tables: Vec<String>,
    /// name → "type hook prio policy" for base chains, "" otherwise
    chains: BTreeMap<String, String>,
    /// chain → rules, as `nft list` prints them
    rules: BTreeMap<String, Vec<String>>,
}

fn listed() -> Listed {
    let json: serde_json::Value =
        serde_json::from_str(&run("nft", &["-j", "list", "ruleset"])).unwrap();
    let mut tables = Vec::new();
    let mut chains = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for item in json["nftables"].as_array().unwrap() {
        if let Some(t) = item.get("table") {
            tables.push(format!("{} {}", t["family"].as_str().unwrap(), t["name"]));
        } else if let Some(c) = item.get("chain") {
            if c["table"] != "berth" {
                continue;
            }
            let spec = match c.get("hook") {
                Some(hook) => format!("{} {} {} {}", c["type"], hook, c["prio"], c["policy"]),
                None => String::new(),
            };
            chains.insert(
                c["name"].as_str().unwrap().to_string(),
                spec.replace('"', ""),
            );
        } else if let Some(r) = item.get("rule").filter(|r| r["table"] == "berth") {
            *counts
                .entry(r["chain"].as_str().unwrap().into())
                .or_default() += 1;
        }
    }
    let mut rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if tables.iter().any(|t| t == "ip \"berth\"") {
        let text = run("nft", &["list", "table", "ip", "berth"]);
        let mut chain = String::new();
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("chain ") {
                chain = name.trim_end_matches(" {").to_string();
                rules.entry(chain.clone()).or_default();
            } else if !(line.is_empty()
                || line == "}"
                || line.starts_with("table ")
                || line.starts_with("type "))
            {
                rules
                    .entry(chain.clone())
                    .or_default()
                    .push(line.to_string());
            }
        }
    }
    // The JSON and the text agree on how many rules each chain has.
    for (chain, n) in &counts {
        assert_eq!(rules[chain].len(), *n, "rules of {chain}");
    }
    Listed {
        tables,
        chains,
        rules,
    }
}

fn published(
    container: &str,
    protocol: Protocol,
    host_ports: (u16, u16),
    container_ip: Ipv4Addr,
    container_port: u16,
) -> Published {
    Published {
        protocol,
        host_ip: None,
        host_ports,
        container_ip,
        container_port,
        container: container.into(),
    }
}

fn example() -> Ruleset {
    let c = |n| Ipv4Addr::new(172, 17, 0, n);
    let mut dns = published("dns", Protocol::Udp, (8000, 8010), c(3), 8000);
    dns.host_ip = Some(Ipv4Addr::new(10, 0, 2, 15));
    Ruleset {
        bridge: "berth0".into(),
        subnet: (c(1), 16),
        masquerade: true,
        ports: vec![
            published("web", Protocol::Tcp, (8080, 8080), c(2), 80),
            dns,
            published("api", Protocol::Tcp, (9000, 9001), c(4), 7000),
        ],
    }
}

fn strings(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

/// Chains and their rules as written by hand for `example()` with the
/// published rules given.
fn expected(published: &[&str]) -> Listed {
    Listed {
        tables: vec!["ip \"berth\"".into()],
        chains: BTreeMap::from([
            ("postrouting".into(), "nat postrouting 100 accept".into()),
            ("prerouting".into(), "nat prerouting -100 accept".into()),
            ("output".into(), "nat output -100 accept".into()),
            ("published".into(), String::new()),
        ]),
        rules: BTreeMap::from([
            (
                "postrouting".into(),
                strings(&[
                    "ip saddr 172.17.0.0/16 oifname != \"berth0\" masquerade",
                    "ip saddr 172.17.0.0/16 ip daddr 172.17.0.0/16 oifname \"berth0\" masquerade",
                ]),
            ),
            (
                "prerouting".into(),
                strings(&["fib daddr type local jump published"]),
            ),
            (
                "output".into(),
                strings(&["ip daddr != 127.0.0.0/8 fib daddr type local jump published"]),
            ),
            ("published".into(), strings(published)),
        ]),
    }
}

const EXAMPLE_PUBLISHED: &[&str] = &[
    "tcp dport 8080 dnat to 172.17.0.2:80 comment \"web\"",
    "ip daddr 10.0.2.15 udp dport 8000-8010 dnat to 172.17.0.3 comment \"dns\"",
    "tcp dport 9000 dnat to 172.17.0.4:7000 comment \"api\"",
    "tcp dport 9001 dnat to 172.17.0.4:7001 comment \"api\"",
];

#[test]
fn apply_programs_exactly_the_expected_chains_and_rules() {
    fresh_netns();
    nft::apply(&example()).unwrap();
    assert_eq!(listed(), expected(EXAMPLE_PUBLISHED));
    // and the renderer describes what the kernel holds
    let text = run("nft", &["list", "table", "ip", "berth"]);
    assert_eq!(text, Plan::new(&example()).unwrap().to_string());
}

#[test]
fn a_smaller_ruleset_replaces_the_larger_one() {
    fresh_netns();
    nft::apply(&example()).unwrap();
    let mut smaller = example();
    smaller.ports.retain(|p| p.container == "web");
    nft::apply(&smaller).unwrap();
    assert_eq!(listed(), expected(&EXAMPLE_PUBLISHED[..1]));
    smaller.ports.clear();
    nft::apply(&smaller).unwrap();
    assert_eq!(listed(), expected(&[]));
}

#[test]
fn the_table_is_applied_whether_or_not_it_exists_and_others_are_untouched() {
    fresh_netns();
    run(
        "nft",
        &["add table ip other; add chain ip other c; add rule ip other c accept"],
    );
    nft::apply(&example()).unwrap();
    nft::apply(&example()).unwrap();
    let l = listed();
    assert_eq!(l.tables, ["ip \"other\"", "ip \"berth\""]);
    nft::remove().unwrap();
    assert_eq!(listed().tables, ["ip \"other\""]);
    assert!(run("nft", &["list", "table", "ip", "other"]).contains("accept"));
}

#[test]
fn remove_leaves_no_table_and_absent_is_fine() {
    fresh_netns();
    nft::remove().unwrap();
    nft::apply(&example()).unwrap();
    nft::remove().unwrap();
    let l = listed();
    assert!(l.tables.is_empty() && l.chains.is_empty(), "{l:?}");
    nft::remove().unwrap();
    assert!(run("nft", &["list", "ruleset"]).trim().is_empty());
}

#[test]
fn a_thread_that_changes_namespace_programs_the_new_one() {
    // The netfilter socket is kept per thread: it must follow the thread.
    fresh_netns();
    nft::apply(&example()).unwrap();
    let first = OwnedFd::from(File::open("/proc/thread-self/ns/net").unwrap());
    fresh_netns();
    assert!(listed().tables.is_empty());
    let mut smaller = example();
    smaller.ports.truncate(1);
    nft::apply(&smaller).unwrap();
    assert_eq!(listed(), expected(&EXAMPLE_PUBLISHED[..1]));
    assert_eq!(in_netns(&first, listed), expected(EXAMPLE_PUBLISHED));
}

#[test]
fn a_hundred_containers_started_and_stopped_leave_no_rule_behind() {
    fresh_netns();
    let mut state = example();
    state.ports.clear();
    let port = |i: u16| {
        published(
            &format!("c{i}"),
            if i.is_multiple_of(2) {
                Protocol::Tcp
            } else {
                Protocol::Udp
            },
            (10000 + i, 10000 + i),
            Ipv4Addr::new(172, 17, 1, i as u8),
            80,
        )
    };
    let mut times = Vec::new();
    let mut timed = |state: &Ruleset| {
        let t = Instant::now();
        nft::apply(state).unwrap();
        times.push(t.elapsed());
    };
    for i in 0..100 {
        state.ports.push(port(i));
        timed(&state);
        if (i + 1).is_multiple_of(25) {
            assert_eq!(listed().rules["published"].len(), usize::from(i) + 1);
        }
    }
    let full = listed();
    assert_eq!(full.rules["published"].len(), 100);
    assert_eq!(
        full.rules["published"][99],
        "udp dport 10099 dnat to 172.17.1.99:80 comment \"c99\""
    );
    // Stop them in another order than they started.
    for i in (0..100)
        .rev()
        .filter(|i: &u16| i.is_multiple_of(2))
        .chain((0..100).filter(|i: &u16| !i.is_multiple_of(2)))
    {
        state.ports.retain(|p| p.container != format!("c{i}"));
        timed(&state);
    }
    assert_eq!(listed(), expected(&[]));
    nft::remove().unwrap();
    assert!(listed().tables.is_empty());

    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    eprintln!(
        "apply with 0 to 100 published ports, {} times: mean {mean:?}, median {:?}, max {:?}",
        times.len(),
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

#[test]
fn refused_requests_say_why_and_leave_the_previous_ruleset() {
    fresh_netns();
    nft::apply(&example()).unwrap();
    let before = listed();

    // Refused by berth before the kernel sees it.
    let mut bad = example();
    bad.bridge = "a-very-long-bridge".into();
    let e = nft::apply(&bad).unwrap_err();
    assert!(matches!(e, Error::BridgeName(_)), "{e}");
    assert_eq!(listed(), before);

    // Refused by the kernel in the middle of the batch: nothing changes.
    let mut plan = Plan::new(&example()).unwrap();
    plan.chains[3].rules.clear();
    plan.chains[3].rules.push(Rule {
        matches: vec![],
        action: Action::Jump("nowhere".into()),
        comment: None,
    });
    let e = nft::commit(&plan.batch()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("nftables refused add rule ip berth published jump nowhere: "),
        "{text}"
    );
    match e {
        Error::Refused { source, .. } => assert_eq!(source.raw_os_error(), Some(libc::ENOENT)),
        e => panic!("{e}"),
    }
    assert_eq!(listed(), before);
}

#[test]
fn forwarding_is_enabled() {
    fresh_netns();
    let read = |p| std::fs::read_to_string(p).unwrap();
    assert_eq!(read("/proc/sys/net/ipv4/ip_forward"), "0\n");
    nft::enable_forwarding().unwrap();
    assert_eq!(read("/proc/sys/net/ipv4/ip_forward"), "1\n");
    assert_eq!(read("/proc/sys/net/ipv4/conf/all/forwarding"), "1\n");
}

/// A TCP server that answers each connection with the client's address
/// and what it sent, until dropped.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn tcp(ns: &OwnedFd, port: u16) -> Server {
        let listener = in_netns(ns, move || TcpListener::bind(("0.0.0.0", port)).unwrap());
        listener.set_nonblocking(true).unwrap();
        Server::spawn(move |stop| {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(TIMEOUT)).unwrap();
                        let mut data = String::new();
                        let _ = s.read_to_string(&mut data);
                        let _ = write!(s, "{} {data}", peer.ip());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    }

    /// Answers each datagram with the client's address, the port it came
    /// to and what it sent.
    fn udp(ns: &OwnedFd, port: u16) -> Server {
        let socket = in_netns(ns, move || UdpSocket::bind(("0.0.0.0", port)).unwrap());
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Server::spawn(move |stop| {
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                    let data = String::from_utf8_lossy(&buf[..n]);
                    let reply = format!("{} {port} {data}", peer.ip());
                    let _ = socket.send_to(reply.as_bytes(), peer);
                }
            }
        })
    }

    fn spawn(body: impl FnOnce(Arc<AtomicBool>) + Send + 'static) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        Server {
            stop,
            thread: Some(std::thread::spawn(move || body(s))),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from namespace `ns` (None: the test's own) and returns the
/// server's answer to "hello".
fn tcp_hello(ns: Option<&OwnedFd>, to: &str) -> std::io::Result<String> {
    let to: SocketAddr = to.parse().unwrap();
    let body = move || {
        let mut s = TcpStream::connect_timeout(&to, TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.write_all(b"hello")?;
        s.shutdown(Shutdown::Write)?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    };
    match ns {
        Some(ns) => in_netns(ns, body),
        None => body(),
    }
}

fn udp_hi(ns: &OwnedFd, to: &str) -> std::io::Result<String> {
    let to: SocketAddr = to.parse().unwrap();
    in_netns(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.send_to(b"hi", to)?;
        let mut buf = [0u8; 512];
        let (n, _) = s.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

/// The host (this thread's namespace) with a bridge to a "container"
/// namespace, and a link to an "outside" namespace that has no route to
/// the containers' subnet:
///
/// ```text
/// container 172.30.0.2 -- [berth-t0 172.30.0.1] host [192.0.2.1] -- 192.0.2.2 outside
/// ```
#[test]
fn traffic_goes_through_published_ports_and_masquerade() {
    fresh_netns();
    let container = new_netns();
    let outside = new_netns();
    ip("link set lo up");
    ip("link add name berth-t0 type bridge");
    ip("addr add 172.30.0.1/24 dev berth-t0");
    ip("link set berth-t0 up");
    // berth's kernel has br_netfilter as a module berth does not load, so
    // routed traffic between containers and the host never meets the IP
    // hooks inside the bridge. A host kernel may have it built in (and on
    // by default in every namespace): turn it off to take berth's path.
    let call_iptables = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    if std::path::Path::new(call_iptables).exists() {
        std::fs::write(call_iptables, "0\n").unwrap();
    }
    ip(&format!(
        "link add name hc0 type veth peer name eth0 netns {}",
        ns_path(&container)
    ));
    ip("link set hc0 master berth-t0 up");
    ip_in(&container, "link set lo up");
    ip_in(&container, "addr add 172.30.0.2/24 dev eth0");
    ip_in(&container, "link set eth0 up");
    ip_in(&container, "route add default via 172.30.0.1");
    ip(&format!(
        "link add name ho0 type veth peer name eth0 netns {}",
        ns_path(&outside)
    ));
    ip("addr add 192.0.2.1/24 dev ho0");
    ip("link set ho0 up");
    ip_in(&outside, "link set lo up");
    ip_in(&outside, "addr add 192.0.2.2/24 dev eth0");
    ip_in(&outside, "link set eth0 up");
    nft::enable_forwarding().unwrap();

    let c = Ipv4Addr::new(172, 30, 0, 2);
    let mut only_outside_address = published("pinned", Protocol::Tcp, (8081, 8081), c, 80);
    only_outside_address.host_ip = Some(Ipv4Addr::new(192, 0, 2, 1));
    let state = Ruleset {
        bridge: "berth-t0".into(),
        subnet: (Ipv4Addr::new(172, 30, 0, 1), 24),
        masquerade: true,
        ports: vec![
            published("web", Protocol::Tcp, (8080, 8080), c, 80),
            only_outside_address,
            published("rtp", Protocol::Udp, (5000, 5001), c, 6000),
        ],
    };
    nft::apply(&state).unwrap();

    let _web = Server::tcp(&container, 80);
    let _rtp0 = Server::udp(&container, 6000);
    let _rtp1 = Server::udp(&container, 6001);
    let _far = Server::tcp(&outside, 9000);
    let _far8080 = Server::tcp(&outside, 8080);

    // From outside: DNAT to the container, the client's address kept.
    assert_eq!(
        tcp_hello(Some(&outside), "192.0.2.1:8080").unwrap(),
        "192.0.2.2 hello"
    );
    assert_eq!(
        tcp_hello(Some(&outside), "192.0.2.1:8081").unwrap(),
        "192.0.2.2 hello"
    );
    // A shifted UDP range, port by port.
    assert_eq!(
        udp_hi(&outside, "192.0.2.1:5000").unwrap(),
        "192.0.2.2 6000 hi"
    );
    assert_eq!(
        udp_hi(&outside, "192.0.2.1:5001").unwrap(),
        "192.0.2.2 6001 hi"
    );
    // From the host itself, to one of its addresses (the output chain)...
    assert_eq!(
        tcp_hello(None, "192.0.2.1:8080").unwrap(),
        "192.0.2.1 hello"
    );
    // ...but not to localhost, left out by design.
    let e = tcp_hello(None, "127.0.0.1:8080").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    // From the container to the host's published port: hairpin, so the
    // answer comes back through the host.
    assert_eq!(
        tcp_hello(Some(&container), "192.0.2.1:8080").unwrap(),
        "172.30.0.1 hello"
    );
    // A port pinned to one host address is not published on the others.
    let e = tcp_hello(Some(&container), "172.30.0.1:8081").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    // Outbound: masqueraded to the host's address on the way out...
    assert_eq!(
        tcp_hello(Some(&container), "192.0.2.2:9000").unwrap(),
        "192.0.2.1 hello"
    );
    // ...and a published port catches only connections to the host.
    assert_eq!(
        tcp_hello(Some(&container), "192.0.2.2:8080").unwrap(),
        "192.0.2.1 hello"
    );

    // Unpublished, then removed: the port is the host's own again (closed).
    let mut none = state.clone();
    none.ports.clear();
    nft::apply(&none).unwrap();
    let e = tcp_hello(Some(&outside), "192.0.2.1:8080").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    assert_eq!(
        tcp_hello(Some(&container), "192.0.2.2:9000").unwrap(),
        "192.0.2.1 hello"
    );
    nft::remove().unwrap();
    assert!(listed().tables.is_empty());
}

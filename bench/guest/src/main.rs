//! `berth-bench-guest`: what `scripts/bench` runs inside its guests. It is
//! static (built as berth is), so it runs in berth's root, in a busybox
//! container and in the baseline's busybox initramfs alike.
//!
//! ```text
//! berth-bench-guest stamp FILE        write "MONO_NS BOOT_NS" to FILE: a container's first program
//! berth-bench-guest mark LABEL        print "BENCH-MARK LABEL BOOT_NS": a point in a boot
//! berth-bench-guest sink PORT         a TCP server: reads each connection to its end,
//!                                     answers the byte count (8 bytes, big-endian), closes
//! berth-bench-guest serve PORT        take `CMD [ARGS]` lines on TCP PORT, one per
//!                                     connection, and answer with the output of
//!                                     `host CMD [ARGS]` and a last line
//!                                     `BENCH-EXIT <status>` (the tools container's
//!                                     program: berth's control channel carries no
//!                                     exec streams, and the guest's port is reached
//!                                     only through QEMU's forward on 127.0.0.1)
//! berth-bench-guest host CMD [ARGS]   CMD in PID 1's namespaces (run from a privileged
//!                                     container with pid = "host"):
//!   starts ROUNDS                     container start: berth (API), crun, runc, unshare
//!   fleet MANIFEST PREFIX STARTS      reload MANIFEST, wait for STARTS starts of PREFIX*
//!   storm PREFIX N                    restart PREFIX0..PREFIX{N-1} at once, wait until all run
//!   mem                               PID 1's Rss and Pss (smaps_rollup)
//!   cpu SECS                          PID 1's CPU time over SECS seconds
//!   run PROGRAM [ARGS]                run a program there (to look around)
//! ```
//!
//! Results are lines `BENCH KIND key=value...` on stdout, for berth-bench.
//! Times come from CLOCK_MONOTONIC, which every namespace shares, so a
//! container's stamp and its runner's clock compare directly.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Where berth-bench puts its files in the guest (the helper, busybox,
/// the OCI configs, the manifests).
const LIB: &str = "/usr/lib/berth-bench";
/// The scratch directory for bundles, rootfs and stamps.
const RUN: &str = "/run/bench";
/// berth's API socket.
const SOCKET: &str = "/run/berth/berth.sock";
/// How long one container run may take before the bench gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["stamp", file] => stamp(file),
        ["mark", label] => {
            println!("BENCH-MARK {label} {}", clock(libc::CLOCK_BOOTTIME));
            Ok(())
        }
        ["sink", port] => port
            .parse()
            .map_err(|_| format!("bad port {port:?}"))
            .and_then(sink),
        ["host", rest @ ..] => enter_host().and_then(|()| host(rest)),
        ["serve", port] => port
            .parse()
            .map_err(|_| format!("bad port {port:?}"))
            .and_then(serve_commands),
        _ => Err("usage: berth-bench-guest stamp FILE | mark LABEL | sink PORT | host CMD".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-bench-guest: {e}");
            ExitCode::FAILURE
        }
    }
}

fn host(args: &[&str]) -> Result<()> {
    let num = |s: &str| s.parse::<usize>().map_err(|_| format!("bad number {s:?}"));
    match args {
        ["starts", rounds] => starts(num(rounds)?),
        ["fleet", manifest, prefix, starts] => fleet(manifest, prefix, num(starts)?),
        ["storm", prefix, n] => storm(prefix, num(n)?),
        ["mem"] => mem(),
        ["cpu", secs] => cpu(num(secs)?),
        ["run", program, rest @ ..] => {
            let st = Command::new(program)
                .args(rest)
                .status()
                .map_err(|e| format!("{program}: {e}"))?;
            if st.success() {
                Ok(())
            } else {
                Err(format!("{program}: {st}"))
            }
        }
        _ => Err(format!("unknown host command {args:?}")),
    }
}

/// A clock's reading in nanoseconds.
fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into memory this frame owns.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn mono() -> u64 {
    clock(libc::CLOCK_MONOTONIC)
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

fn stamp(file: &str) -> Result<()> {
    let line = format!("{} {}\n", mono(), clock(libc::CLOCK_BOOTTIME));
    std::fs::write(file, line).map_err(|e| format!("{file}: {e}"))
}

/// Joins PID 1's cgroup, IPC, UTS, network and mount namespaces (the PID
/// namespace is already the host's). Must run before any thread exists:
/// a multi-threaded process cannot change its mount namespace.
fn enter_host() -> Result<()> {
    let spaces = [
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("mnt", libc::CLONE_NEWNS),
    ];
    let mut files = Vec::new();
    for (name, flag) in spaces {
        let path = format!("/proc/1/ns/{name}");
        files.push((
            File::open(&path).map_err(|e| format!("{path}: {e}"))?,
            flag,
            name,
        ));
    }
    for (f, flag, name) in files {
        // SAFETY: setns on a namespace file this process holds open.
        if unsafe { libc::setns(f.as_raw_fd(), flag) } != 0 {
            return Err(format!("setns {name}: {}", std::io::Error::last_os_error()));
        }
    }
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))
}

// ---- HTTP over berth's API socket ------------------------------------------

/// One kept-alive HTTP/1.1 connection to berth's API.
struct Api {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Api {
    fn connect() -> Result<Api> {
        let s = UnixStream::connect(SOCKET).map_err(|e| format!("{SOCKET}: {e}"))?;
        let writer = s.try_clone().map_err(|e| e.to_string())?;
        Ok(Api {
            reader: BufReader::new(s),
            writer,
        })
    }

    fn send(&mut self, method: &str, path: &str, body: &[u8]) -> Result<()> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: berth\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.writer
            .write_all(head.as_bytes())
            .and_then(|()| self.writer.write_all(body))
            .map_err(|e| format!("{method} {path}: {e}"))
    }

    /// Sends a request and reads the whole answer: (status, body).
    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        self.send(method, path, body)?;
        let (status, headers) = read_head(&mut self.reader)?;
        let body = read_body(&mut self.reader, &headers)?;
        Ok((status, body))
    }

    /// POSTs until berth takes it (204), retrying while it answers 409 (the
    /// container is still between states).
    fn post(&mut self, path: &str) -> Result<()> {
        let deadline = mono() + 10_000_000_000;
        loop {
            let (status, body) = self.request("POST", path, b"")?;
            match status {
                200..=299 => return Ok(()),
                409 if mono() < deadline => std::thread::sleep(Duration::from_millis(5)),
                _ => {
                    return Err(format!(
                        "POST {path}: {status} {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
            }
        }
    }
}

fn read_line(r: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => Err("the API closed the connection".into()),
        Ok(_) => Ok(line.trim_end().to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

fn read_head(r: &mut impl BufRead) -> Result<(u16, Vec<(String, String)>)> {
    let status_line = read_line(r)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            return Ok((status, headers));
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn read_body(r: &mut impl BufRead, headers: &[(String, String)]) -> Result<Vec<u8>> {
    if header(headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut out = Vec::new();
        while let Some(chunk) = read_chunk(r)? {
            out.extend_from_slice(&chunk);
        }
        return Ok(out);
    }
    let len: usize = header(headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(body)
}

/// One chunk of a chunked body; `None` after the last.
fn read_chunk(r: &mut impl BufRead) -> Result<Option<Vec<u8>>> {
    let size_line = read_line(r)?;
    let size_hex = size_line.split(';').next().unwrap_or("").trim();
    let size =
        usize::from_str_radix(size_hex, 16).map_err(|_| format!("bad chunk size {size_line:?}"))?;
    let mut chunk = vec![0; size];
    r.read_exact(&mut chunk).map_err(|e| e.to_string())?;
    let _ = read_line(r)?;
    Ok((size > 0).then_some(chunk))
}

/// The value of `"key":"..."` in a JSON line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let rest = line[line.find(&pat)? + pat.len()..].trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// berth's event stream, read by a thread: (arrival, container, event).
struct Events {
    rx: mpsc::Receiver<(u64, String, String)>,
}

impl Events {
    fn subscribe() -> Result<Events> {
        let mut api = Api::connect()?;
        api.send("GET", "/v1/events", b"")?;
        let (status, _) = read_head(&mut api.reader)?;
        if status != 200 {
            return Err(format!("GET /v1/events: {status}"));
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            while let Ok(Some(chunk)) = read_chunk(&mut api.reader) {
                let now = mono();
                pending.extend_from_slice(&chunk);
                while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    let line = String::from_utf8_lossy(&line);
                    if let (Some(c), Some(e)) = (field(&line, "container"), field(&line, "event"))
                        && tx.send((now, c.to_owned(), e.to_owned())).is_err()
                    {
                        return;
                    }
                }
            }
        });
        Ok(Events { rx })
    }

    /// Forgets the events so far.
    fn drain(&self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// Waits for `event` of `container`; returns when it arrived.
    fn wait(&self, container: &str, event: &str) -> Result<u64> {
        let deadline = mono() + RUN_TIMEOUT.as_nanos() as u64;
        loop {
            let left = deadline.saturating_sub(mono());
            match self.rx.recv_timeout(Duration::from_nanos(left)) {
                Ok((t, c, e)) if c == container && e == event => return Ok(t),
                Ok(_) => {}
                Err(_) => return Err(format!("no {event} event of {container} in time")),
            }
        }
    }

    /// Waits until `n` distinct containers named `prefix*` have started;
    /// returns when the last did.
    fn wait_starts(&self, prefix: &str, n: usize, timeout: Duration) -> Result<u64> {
        let deadline = mono() + timeout.as_nanos() as u64;
        let mut seen = BTreeSet::new();
        let mut last = mono();
        while seen.len() < n {
            let left = deadline.saturating_sub(mono());
            match self.rx.recv_timeout(Duration::from_nanos(left)) {
                Ok((t, c, e)) if e == "start" && c.starts_with(prefix) => {
                    seen.insert(c);
                    last = t;
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "only {} of {n} {prefix}* containers started in time",
                        seen.len()
                    ));
                }
            }
        }
        Ok(last)
    }
}

// ---- container start --------------------------------------------------------

/// The metric a sample measures.
#[derive(Clone, Copy)]
enum Metric {
    /// From the request to the container's first program running (its
    /// stamp).
    Exec,
    /// From the request to the end of a container running /bin/true.
    True,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Exec => "exec",
            Metric::True => "true",
        }
    }
}

/// Lays out the busybox rootfs the OCI runtimes share, and their bundles.
fn prepare() -> Result<()> {
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let root = Path::new(RUN).join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "bench", "out"] {
        let p = root.join(d);
        std::fs::create_dir_all(&p).map_err(|e| err(&p, e))?;
    }
    let out = Path::new(RUN).join("out");
    std::fs::create_dir_all(&out).map_err(|e| err(&out, e))?;
    let bb = root.join("bin/busybox");
    if !bb.exists() {
        std::fs::copy(Path::new(LIB).join("busybox"), &bb).map_err(|e| err(&bb, e))?;
    }
    for applet in ["sh", "true", "sleep"] {
        let p = root.join("bin").join(applet);
        if !p.exists() {
            std::os::unix::fs::symlink("busybox", &p).map_err(|e| err(&p, e))?;
        }
    }
    for runtime in ["crun", "runc"] {
        for metric in ["exec", "true"] {
            let dir = Path::new(RUN).join(format!("{runtime}-{metric}"));
            std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
            let src = Path::new(LIB).join(format!("oci/{runtime}-{metric}.json"));
            std::fs::copy(&src, dir.join("config.json")).map_err(|e| err(&src, e))?;
        }
    }
    Ok(())
}

fn stamp_file() -> std::path::PathBuf {
    Path::new(RUN).join("out/stamp")
}

/// The monotonic time the container's stamp recorded.
fn read_stamp() -> Result<u64> {
    let p = stamp_file();
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad stamp {text:?}"))
}

/// Runs `argv` to its end; returns (start, end).
fn run(argv: &[String]) -> Result<(u64, u64)> {
    let t0 = mono();
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    let t1 = mono();
    if !out.status.success() {
        return Err(format!(
            "{argv:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((t0, t1))
}

/// One sample of `runtime` (µs).
fn sample(runtime: &str, metric: Metric, n: usize, api: &mut Api, events: &Events) -> Result<f64> {
    let _ = std::fs::remove_file(stamp_file());
    let stamp = format!("{LIB}/guest");
    let bb = format!("{LIB}/busybox");
    let out = stamp_file().display().to_string();
    let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (t0, t1) = match runtime {
        "berth" => {
            let name = match metric {
                Metric::Exec => "probe-exec",
                Metric::True => "probe-true",
            };
            events.drain();
            let t0 = mono();
            api.post(&format!("/v1/containers/{name}/start"))?;
            (t0, events.wait(name, "die")?)
        }
        "crun" | "runc" => {
            let bundle = format!("{RUN}/{runtime}-{}", metric.name());
            let id = format!("bench-{runtime}-{}-{n}", metric.name());
            run(&argv(&[runtime, "run", "--bundle", &bundle, &id]))?
        }
        "unshare" => {
            let mut v = vec![bb.as_str(), "unshare", "-m", "-u", "-i", "-n", "-p", "-f"];
            match metric {
                Metric::Exec => v.extend([stamp.as_str(), "stamp", out.as_str()]),
                Metric::True => v.extend([bb.as_str(), "true"]),
            }
            run(&argv(&v))?
        }
        _ => return Err(format!("unknown runtime {runtime}")),
    };
    Ok(match metric {
        Metric::Exec => us(read_stamp()?.saturating_sub(t0)),
        Metric::True => us(t1 - t0),
    })
}

fn starts(rounds: usize) -> Result<()> {
    prepare()?;
    let events = Events::subscribe()?;
    let mut api = Api::connect()?;
    let runtimes = ["berth", "crun", "runc", "unshare"];
    // Round 0 warms the caches up and is not reported; the runtimes take
    // turns, so that a disturbance hits them alike.
    for round in 0..=rounds {
        for runtime in runtimes {
            for metric in [Metric::Exec, Metric::True] {
                let v = sample(runtime, metric, round, &mut api, &events)?;
                if round > 0 {
                    println!(
                        "BENCH start runtime={runtime} metric={} us={v:.0}",
                        metric.name()
                    );
                }
            }
        }
    }
    Ok(())
}

// ---- many containers ----------------------------------------------------------

fn fleet(manifest: &str, prefix: &str, starts: usize) -> Result<()> {
    let body = std::fs::read(manifest).map_err(|e| format!("{manifest}: {e}"))?;
    let events = Events::subscribe()?;
    let mut api = Api::connect()?;
    let t0 = mono();
    let (status, answer) = api.request("POST", "/v1/system/reload", &body)?;
    let answered = mono();
    if status != 200 {
        return Err(format!(
            "reload: {status} {}",
            String::from_utf8_lossy(&answer)
        ));
    }
    let all = if starts == 0 {
        answered
    } else {
        events.wait_starts(prefix, starts, Duration::from_secs(900))?
    };
    println!(
        "BENCH fleet starts={starts} answer_ms={:.1} all_ms={:.1}",
        us(answered - t0) / 1e3,
        us(all - t0) / 1e3
    );
    Ok(())
}

fn storm(prefix: &str, n: usize) -> Result<()> {
    let events = Events::subscribe()?;
    let mut api = Api::connect()?;
    let t0 = mono();
    for i in 0..n {
        api.post(&format!("/v1/containers/{prefix}{i}/restart"))?;
    }
    let posted = mono();
    let all = events.wait_starts(prefix, n, Duration::from_secs(900))?;
    println!(
        "BENCH storm n={n} posted_ms={:.1} all_ms={:.1}",
        us(posted - t0) / 1e3,
        us(all - t0) / 1e3
    );
    Ok(())
}

fn mem() -> Result<()> {
    let text = std::fs::read_to_string("/proc/1/smaps_rollup")
        .map_err(|e| format!("/proc/1/smaps_rollup: {e}"))?;
    let kib = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    println!(
        "BENCH mem rss_kib={} pss_kib={} private_kib={} anon_kib={}",
        kib("Rss:"),
        kib("Pss:"),
        kib("Private_Clean:") + kib("Private_Dirty:"),
        kib("Anonymous:")
    );
    Ok(())
}

/// PID 1's CPU time in ns: from /proc/1/schedstat (the scheduler's
/// count, in ns) where the kernel has it, else utime + stime in ticks.
fn pid1_cpu_ns() -> Result<u64> {
    if let Some(ns) = std::fs::read_to_string("/proc/1/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
    {
        return Ok(ns);
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(pid1_ticks()? * 1_000_000_000 / hz)
}

/// PID 1's utime + stime, in clock ticks.
fn pid1_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/1/stat").map_err(|e| e.to_string())?;
    // The fields after the command (which may hold spaces), from field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15: indexes 11 and 12 here.
    Ok(tick(11) + tick(12))
}

fn cpu(secs: usize) -> Result<()> {
    let (a, t0) = (pid1_cpu_ns()?, mono());
    std::thread::sleep(Duration::from_secs(secs as u64));
    let (b, t1) = (pid1_cpu_ns()?, mono());
    let cpu_ms = us(b.saturating_sub(a)) / 1e3;
    let wall_ms = us(t1 - t0) / 1e3;
    println!("BENCH cpu cpu_ms={cpu_ms:.2} wall_ms={wall_ms:.0}");
    Ok(())
}

// ---- commands from berth-bench ---------------------------------------------------

/// The commands `serve` runs: the measurements, never an arbitrary program.
const SERVED: [&str; 5] = ["starts", "fleet", "storm", "mem", "cpu"];

fn serve_commands(port: u16) -> Result<()> {
    let l = TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("port {port}: {e}"))?;
    println!("serve: listening on {port}");
    for conn in l.incoming() {
        let Ok(conn) = conn else { continue };
        if let Err(e) = serve_one(conn) {
            eprintln!("serve: {e}");
        }
    }
    Ok(())
}

/// Runs one command line in a fresh process (which joins PID 1's
/// namespaces single-threaded) and sends back its output.
fn serve_one(conn: TcpStream) -> Result<()> {
    let mut reader = BufReader::new(conn.try_clone().map_err(|e| e.to_string())?);
    let line = read_line(&mut reader)?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut out = conn;
    if !words.first().is_some_and(|w| SERVED.contains(w)) {
        let _ = writeln!(out, "not a bench command: {line:?}\nBENCH-EXIT 2");
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let o = Command::new(exe)
        .arg("host")
        .args(&words)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let status = o.status.code().unwrap_or(-1);
    out.write_all(&o.stdout)
        .and_then(|()| out.write_all(&o.stderr))
        .and_then(|()| writeln!(out, "\nBENCH-EXIT {status}"))
        .map_err(|e| e.to_string())
}

// ---- the TCP sink ------------------------------------------------------------

fn sink(port: u16) -> Result<()> {
    let l = TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("port {port}: {e}"))?;
    println!("sink: listening on {port}");
    for conn in l.incoming() {
        let Ok(conn) = conn else { continue };
        std::thread::spawn(move || serve(conn));
    }
    Ok(())
}

fn serve(mut conn: TcpStream) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(_) => return,
        }
    }
    let _ = conn.write_all(&total.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_compact_and_spaced_json() {
        let line = r#"{"container":"probe-true","event":"die","exit_code":0}"#;
        assert_eq!(field(line, "container"), Some("probe-true"));
        assert_eq!(field(line, "event"), Some("die"));
        assert_eq!(field(r#"{"event": "start"}"#, "event"), Some("start"));
        assert_eq!(field(line, "exit_code"), None);
    }

    #[test]
    fn chunked_bodies_decode() {
        let mut r = BufReader::new(&b"5\r\nhello\r\n3;x=1\r\n!!!\r\n0\r\n\r\n"[..]);
        let headers = vec![("transfer-encoding".into(), "chunked".into())];
        assert_eq!(read_body(&mut r, &headers).unwrap(), b"hello!!!");
    }
}

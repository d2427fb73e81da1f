//! The API's real server side (`api::unix::serve`, `api::remote::serve`)
//! against the CLI's client, on the host, without root: a test double
//! answers the supervisor's `Command`s (and runs exec'd commands as plain
//! child processes) on a current-thread runtime with a `LocalSet`, as in
//! PID 1.
//!
//! Covered: tables and JSON, errors as one line, control requests, reload
//! (valid and invalid), logs with `--tail` and `-f`, events, a follower
//! that vanishes mid-stream, exec (output, exit codes, stdin, and an
//! interactive `-it` session through the real binary on a pseudo-terminal:
//! raw mode, resizes, the terminal restored), 50 concurrent clients, and
//! the mutual-TLS listener with good and bad client certificates (curl).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc as smpsc};
use std::time::{Duration, Instant};

use berth::api::{ApiError, Command, ExecRequest, ExecStarted, LogSource};
use berth::cli::{self, Io, client::Client, exec};
use berth::supervisor::reaper::Exit;
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};

const WAIT: Duration = Duration::from_secs(20);

/// What the double saw: control requests, reloads, power requests.
type Seen = Arc<Mutex<Vec<String>>>;

struct Server {
    dir: tempfile::TempDir,
    socket: PathBuf,
    logs: broadcast::Sender<String>,
    events: broadcast::Sender<String>,
    seen: Seen,
}

const STORED: &str = "2026-11-30T06:00:00.000000Z stdout one\n\
                      2026-11-30T06:00:01.000000Z stderr two\n\
                      2026-11-30T06:00:02.000000Z stdout three\n";

fn containers() -> Value {
    json!([
        {"name": "web", "image": "busybox:latest", "state": "running", "health": "healthy",
         "status": "running, healthy", "restarts": 0, "pid": 4242, "uptime_ms": 52000,
         "exit_code": null, "oom_killed": false, "ip": "10.88.0.2", "ports": ["8080:80/tcp"]},
        {"name": "job", "image": "busybox:latest", "state": "exited", "health": "",
         "status": "exit code 0", "restarts": 0, "pid": null, "uptime_ms": null,
         "exit_code": 0, "oom_killed": false, "ip": null, "ports": []},
        {"name": "crasher", "image": "busybox:latest", "state": "backing-off", "health": "",
         "status": "exit code 3; restart 2 in 200 ms", "restarts": 2, "pid": null,
         "uptime_ms": null, "exit_code": 3, "oom_killed": false, "ip": null, "ports": []}
    ])
}

/// In a child between fork and exec: a session of its own, with its stdin
/// (a pty's slave) as its controlling terminal. Only async-signal-safe
/// calls: setsid(2) and ioctl(2).
fn take_terminal() -> std::io::Result<()> {
    nix::unistd::setsid()?;
    // SAFETY: TIOCSCTTY takes an integer argument; fd 0 is the child's own.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs an exec'd command as a child of the test, on the stdio berth's
/// exec code made for it.
fn spawn(req: ExecRequest) -> Result<ExecStarted, ApiError> {
    let [i, o, e] = req.stdio;
    let mut cmd = std::process::Command::new(&req.cmd[0]);
    cmd.args(&req.cmd[1..])
        .stdin(i)
        .stdout(o)
        .stderr(e)
        .env("PS1", "$ ");
    for kv in &req.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    if req.tty {
        // SAFETY: take_terminal makes only async-signal-safe calls.
        unsafe { cmd.pre_exec(take_terminal) };
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    // The Command holds the command's ends of the pipes or pty: close them.
    drop(cmd);
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        use std::os::unix::process::ExitStatusExt;
        let st = child.wait().unwrap();
        let exit = match (st.code(), st.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            (None, None) => Exit::Code(-1),
        };
        let _ = tx.send(exit);
    });
    let (sync, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    drop(w); // End of stream: the command runs.
    Ok(ExecStarted { exit: rx, sync })
}

async fn double(
    mut rx: mpsc::UnboundedReceiver<Command>,
    log_file: PathBuf,
    logs: broadcast::Sender<String>,
    events: broadcast::Sender<String>,
    seen: Seen,
) {
    let known = |n: &str| ["web", "job", "crasher"].contains(&n);
    let note = |s: String| seen.lock().unwrap().push(s);
    while let Some(c) = rx.recv().await {
        match c {
            Command::Info(r) => drop(r.send(Ok(json!({"version": "test"})))),
            Command::Containers(r) => drop(r.send(Ok(containers()))),
            Command::Inspect(n, r) => {
                let v = containers()
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["name"] == n.as_str())
                    .cloned();
                drop(r.send(v.ok_or_else(|| ApiError::no_container(&n))));
            }
            Command::Control(n, c, r) => {
                if known(&n) {
                    note(format!("{n} {c:?}"));
                    drop(r.send(Ok(())));
                } else {
                    drop(r.send(Err(ApiError::no_container(&n))));
                }
            }
            Command::Logs(n, r) => drop(r.send(if known(&n) {
                Ok(LogSource {
                    files: vec![log_file.clone()],
                    follow: logs.subscribe(),
                })
            } else {
                Err(ApiError::no_container(&n))
            })),
            Command::Stats(_, r) => drop(r.send(Ok(json!([{"name": "web",
                "cpu_usage_usec": 1_234_567, "memory_bytes": 3_145_728,
                "memory_limit_bytes": 67_108_864, "pids": 3, "pids_limit": 100,
                "io_read_bytes": 0, "io_write_bytes": 4096}])))),
            Command::Events(r) => drop(r.send(Ok(events.subscribe()))),
            Command::Images(r) => drop(r.send(Ok(
                json!([{"reference": "busybox:latest", "layers": 1, "size_bytes": 2_097_152}]),
            ))),
            Command::PruneImages(r) => drop(r.send(Ok(
                json!({"images": 1, "layers": 2, "bytes": 3_145_728, "blobs": 3}),
            ))),
            Command::Reload(text, r) => {
                note(format!("reload {text:?}"));
                let bad = text.as_deref().is_some_and(|t| t.contains("bad"));
                drop(r.send(if bad {
                    Err(ApiError {
                        status: StatusCode::BAD_REQUEST,
                        message: "invalid manifest; nothing changed".into(),
                        details: Some(json!(["reload:2:1: unknown key `bad`"])),
                    })
                } else {
                    Ok(json!({"added": ["new"], "removed": ["old"], "changed": [],
                              "unchanged": ["web"], "host_changes_need_reboot": []}))
                }));
            }
            Command::Exec(n, req, r) => drop(r.send(if known(&n) {
                spawn(req)
            } else {
                Err(ApiError::no_container(&n))
            })),
            Command::Metrics(r) => drop(r.send(Ok("berth_rss_bytes 1\n".into()))),
            Command::Power(a, _) => note(format!("power {}", a.as_str())),
        }
    }
}

/// Starts the server side in a thread of its own, as PID 1 runs it.
fn server(remote: Option<berth_config::RemoteApi>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("berth.sock");
    let log_file = dir.path().join("web.log");
    std::fs::write(&log_file, STORED).unwrap();
    let (logs, _) = broadcast::channel(64);
    let (events, _) = broadcast::channel(64);
    let seen: Seen = Arc::default();
    let (l, e, s, path) = (logs.clone(), events.clone(), seen.clone(), socket.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::task::spawn_local(double(rx, log_file, l, e, s));
            if let Some(remote) = remote {
                let tx = tx.clone();
                tokio::task::spawn_local(async move {
                    berth::api::remote::serve(&remote, tx).await.unwrap();
                });
            }
            berth::api::unix::serve(&path, tx).await.unwrap();
        });
    });
    let deadline = Instant::now() + WAIT;
    while Client::new(&socket).json("GET", "/v1/ping", None).is_err() {
        assert!(Instant::now() < deadline, "the server never answered");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        dir,
        socket,
        logs,
        events,
        seen,
    }
}

/// Runs the CLI as `main` would, with its output captured.
fn cli(s: &Server, args: &[&str]) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let code = {
        let mut io = Io {
            out: &mut out,
            err: &mut err,
        };
        match cli::run(&args, Some(s.socket.clone()), &mut io) {
            Ok(c) => c,
            Err(e) => cli::report(&e, io.err),
        }
    };
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn tables_json_and_one_line_errors() {
    let s = server(None);
    let (code, out, err) = cli(&s, &["ps"]);
    assert_eq!((code, err.as_str()), (0, ""));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME      IMAGE            STATE         STATUS"));
    assert!(lines[1].starts_with("web       busybox:latest   running       running, healthy"));
    assert!(lines[2].contains(" exited ") && lines[3].contains(" backing-off "));
    assert!(
        lines[1].ends_with("52s      10.88.0.2   8080:80/tcp"),
        "{out}"
    );

    let (code, out, _) = cli(&s, &["--json", "ps"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), containers());

    let (code, out, _) = cli(&s, &["inspect", "web"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["pid"], 4242);

    assert_eq!(
        cli(&s, &["inspect", "ghost"]),
        (1, String::new(), "berth: no such container: ghost\n".into())
    );
    assert_eq!(
        cli(&s, &["stats"]).1,
        "NAME   CPU     MEMORY   LIMIT     PIDS   IO-READ   IO-WRITE\n\
         web    1.23s   3.0MiB   64.0MiB   3      0B        4.0KiB\n"
    );
    assert_eq!(
        cli(&s, &["images"]).1,
        "REFERENCE        LAYERS   SIZE\nbusybox:latest   1        2.0MiB\n"
    );
    assert_eq!(
        cli(&s, &["images", "prune"]).1,
        "removed 1 image(s), 2 layer(s) (3.0MiB), 3 blob(s)\n"
    );
    assert_eq!(cli(&s, &["metrics"]).1, "berth_rss_bytes 1\n");
}

#[test]
fn control_reload_and_power() {
    let s = server(None);
    assert_eq!(
        cli(&s, &["stop", "web"]),
        (0, "web\n".into(), String::new())
    );
    assert_eq!(cli(&s, &["kill", "-s", "TERM", "web"]).0, 0);
    assert_eq!(
        cli(&s, &["restart", "web", "ghost", "job"]),
        (
            1,
            "web\njob\n".into(),
            "berth: no such container: ghost\n".into()
        )
    );
    let bad_signal = cli(&s, &["kill", "--signal=NOPE", "web"]);
    assert_eq!(bad_signal.2, "berth: unknown signal \"NOPE\"\n");

    let good = s.dir.path().join("good.toml");
    std::fs::write(&good, "version = 1\n").unwrap();
    let (code, out, _) = cli(&s, &["reload", good.to_str().unwrap()]);
    assert_eq!(
        (code, out.as_str()),
        (0, "added: new\nremoved: old\nchanged: -\nunchanged: web\n")
    );
    let bad = s.dir.path().join("bad.toml");
    std::fs::write(&bad, "version = 1\nbad = 1\n").unwrap();
    assert_eq!(
        cli(&s, &["reload", bad.to_str().unwrap()]),
        (
            1,
            String::new(),
            "berth: invalid manifest; nothing changed\n  reload:2:1: unknown key `bad`\n".into()
        )
    );
    assert_eq!(cli(&s, &["reload"]).0, 0);
    let (code, _, err) = cli(&s, &["reload", "/nonexistent.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("berth: /nonexistent.toml: No such file"),
        "{err}"
    );
    assert_eq!(cli(&s, &["--json", "reboot"]).0, 0);
    // The power request is answered (202) before the supervisor takes it.
    let deadline = Instant::now() + WAIT;
    while s.seen.lock().unwrap().len() < 8 {
        assert!(Instant::now() < deadline, "{:?}", s.seen.lock().unwrap());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The supervisor saw each request once, in order.
    assert_eq!(
        *s.seen.lock().unwrap(),
        [
            "web Stop",
            "web Kill(15)",
            "web Restart",
            "job Restart",
            "reload Some(\"version = 1\\n\")",
            "reload Some(\"version = 1\\nbad = 1\\n\")",
            "reload None",
            "power reboot"
        ]
    );
}

/// A writer that passes each line on, and fails like a closed pipe once
/// `left` lines have gone (`berth logs -f web | head -n 4`).
struct Lines {
    tx: smpsc::Sender<String>,
    buf: String,
    left: usize,
}

impl Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        self.buf.push_str(&String::from_utf8_lossy(b));
        while let Some(i) = self.buf.find('\n') {
            let line: String = self.buf.drain(..=i).collect();
            let _ = self.tx.send(line.trim_end().to_string());
            self.left = self.left.saturating_sub(1);
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs the CLI in a thread, its stdout lines coming out of the receiver.
fn cli_lines(
    s: &Server,
    args: &[&str],
    left: usize,
) -> (smpsc::Receiver<String>, std::thread::JoinHandle<i32>) {
    let (tx, rx) = smpsc::channel();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let socket = s.socket.clone();
    let t = std::thread::spawn(move || {
        let mut out = Lines {
            tx,
            buf: String::new(),
            left,
        };
        let mut err = Vec::new();
        let mut io = Io {
            out: &mut out,
            err: &mut err,
        };
        match cli::run(&args, Some(socket), &mut io) {
            Ok(c) => c,
            Err(e) => cli::report(&e, io.err),
        }
    });
    (rx, t)
}

fn next(rx: &smpsc::Receiver<String>) -> String {
    rx.recv_timeout(WAIT).expect("a line in time")
}

/// Sends `line` until the server has dropped every follower.
fn until_forgotten(tx: &broadcast::Sender<String>, line: &str) {
    let deadline = Instant::now() + WAIT;
    while tx.receiver_count() > 0 {
        assert!(
            Instant::now() < deadline,
            "a vanished follower is still fed"
        );
        let _ = tx.send(line.to_string());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn logs_tail_follow_and_a_follower_that_leaves() {
    let s = server(None);
    assert_eq!(
        cli(&s, &["logs", "web"]),
        (0, "one\nthree\n".into(), "two\n".into())
    );
    assert_eq!(cli(&s, &["logs", "--tail", "1", "web"]).1, "three\n");
    assert_eq!(
        cli(&s, &["logs", "-t", "-n", "2", "web"]).1,
        "2026-11-30T06:00:02.000000Z three\n"
    );
    assert_eq!(cli(&s, &["logs", "--tail", "x", "web"]).0, 2);
    assert_eq!(
        cli(&s, &["logs", "ghost"]).2,
        "berth: no such container: ghost\n"
    );

    // -f: the stored lines, then new ones as they come; the reader goes
    // away after four lines, as `| head -n 4` would.
    let (rx, t) = cli_lines(&s, &["logs", "-f", "web"], 4);
    assert_eq!([next(&rx), next(&rx)], ["one", "three"]);
    let started = Instant::now();
    s.logs
        .send("2026-11-30T06:00:03.000000Z stdout fresh".into())
        .unwrap();
    assert_eq!(next(&rx), "fresh");
    let latency = started.elapsed();
    s.logs
        .send("2026-11-30T06:00:04.000000Z stdout fresher".into())
        .unwrap();
    assert_eq!(next(&rx), "fresher");
    s.logs
        .send("2026-11-30T06:00:05.000000Z stdout unread".into())
        .unwrap();
    assert_eq!(t.join().unwrap(), 0, "a closed output pipe is a quiet end");
    eprintln!("a followed line reached the CLI in {latency:?}");

    // A raw client that vanishes mid-stream is forgotten; berth serves on.
    let mut body = Client::new(&s.socket)
        .stream("/v1/containers/web/logs?follow=1&tail=0")
        .unwrap();
    s.logs
        .send("2026-11-30T06:00:06.000000Z stdout x".into())
        .unwrap();
    let mut line = String::new();
    BufReader::new(&mut body).read_line(&mut line).unwrap();
    assert!(line.ends_with("stdout x\n"), "{line:?}");
    drop(body);
    until_forgotten(&s.logs, "2026-11-30T06:00:07.000000Z stdout y");
    assert_eq!(cli(&s, &["ps"]).0, 0);
}

#[test]
fn events_as_they_happen() {
    let s = server(None);
    let (rx, t) = cli_lines(&s, &["events"], 2);
    // The subscription exists once the server has answered.
    let deadline = Instant::now() + WAIT;
    while s.events.receiver_count() == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let die = r#"{"time":"2026-11-30T06:41:22.123456Z","container":"job","event":"die","exit_code":137,"oom":true}"#;
    s.events.send(die.into()).unwrap();
    assert_eq!(
        next(&rx),
        "2026-11-30T06:41:22.123456Z job die exit_code=137 oom=true"
    );
    let (jrx, jt) = cli_lines(&s, &["events", "--json"], 1);
    while s.events.receiver_count() < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    s.events.send(die.into()).unwrap();
    assert_eq!(next(&jrx), die);
    assert!(next(&rx).contains(" job die "));
    until_forgotten(&s.events, die);
    assert_eq!((t.join().unwrap(), jt.join().unwrap()), (0, 0));
}

#[test]
fn exec_output_exit_codes_and_stdin() {
    let s = server(None);
    assert_eq!(
        cli(
            &s,
            &[
                "exec",
                "-e",
                "WHO=you",
                "web",
                "sh",
                "-c",
                "echo out $WHO; echo err >&2; exit 3"
            ]
        ),
        (3, "out you\n".into(), "err\n".into())
    );
    // Without -i the command's stdin ends at once: cat does not wait.
    assert_eq!(
        cli(&s, &["exec", "web", "cat"]),
        (0, String::new(), String::new())
    );
    let (code, out, _) = cli(
        &s,
        &["--json", "exec", "web", "sh", "-c", "echo hi; exit 4"],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (code, v["exit_code"].as_i64(), v["stdout"].as_str()),
        (4, Some(4), Some("hi\n"))
    );
    assert_eq!(
        cli(&s, &["exec", "ghost", "true"]).2,
        "berth: no such container: ghost\n"
    );
    let (code, _, err) = cli(&s, &["exec", "web", "/no/such/program"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("berth: No such file"), "{err}");

    // -i: stdin goes to the command in frames, then its end.
    let client = Client::new(&s.socket);
    let body = json!({"cmd": ["sh", "-c", "tr a-z A-Z; exit 5"], "tty": false}).to_string();
    let (mut frames, writer) = client
        .upgrade("/v1/containers/web/exec", body.as_bytes())
        .unwrap();
    let sink: exec::Sink = Arc::new(Mutex::new(writer));
    let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(b"hello\nworld\n".to_vec()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = exec::relay(&mut frames, &sink, Some(input), &mut out, &mut err).unwrap();
    assert_eq!((code, out.as_slice()), (5, &b"HELLO\nWORLD\n"[..]));

    // A client that vanishes mid-session leaves the server serving.
    for tty in [false, true] {
        let body = json!({"cmd": ["sleep", "0.5"], "tty": tty}).to_string();
        let (frames, writer) = client
            .upgrade("/v1/containers/web/exec", body.as_bytes())
            .unwrap();
        drop((frames, writer));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(cli(&s, &["exec", "web", "true"]).0, 0);
}

/// The pty's local-mode flags as the CLI left them.
fn lflags(fd: &std::os::fd::OwnedFd) -> nix::sys::termios::LocalFlags {
    nix::sys::termios::tcgetattr(fd).unwrap().local_flags
}

#[test]
fn an_interactive_terminal_session() {
    use nix::sys::termios::LocalFlags;
    let s = server(None);
    let size = |rows, cols| nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size(24, 80)), None).unwrap();
    let before = lflags(&pty.slave);
    assert!(before.contains(LocalFlags::ICANON | LocalFlags::ECHO));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args([
        "--host",
        s.socket.to_str().unwrap(),
        "exec",
        "-it",
        "web",
        "sh",
    ])
    .stdin(pty.slave.try_clone().unwrap())
    .stdout(pty.slave.try_clone().unwrap())
    .stderr(pty.slave.try_clone().unwrap());
    // SAFETY: take_terminal makes only async-signal-safe calls.
    unsafe { cmd.pre_exec(take_terminal) };
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let screen = Arc::new(Mutex::new(String::new()));
    let (mut master, sc) = (std::fs::File::from(pty.master), screen.clone());
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sc.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + WAIT;
        while !f() {
            assert!(
                Instant::now() < deadline,
                "never {what}; screen:\n{}",
                screen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Raw mode: no echo or line editing on our side.
    wait("raw", &|| !lflags(&pty.slave).contains(LocalFlags::ICANON));
    assert!(!lflags(&pty.slave).contains(LocalFlags::ECHO | LocalFlags::ISIG));
    // The command has a terminal of its own, of our size.
    master.write_all(b"tty; stty size\r").unwrap();
    wait("24 80", &|| screen.lock().unwrap().contains("24 80"));
    assert!(screen.lock().unwrap().contains("/dev/pts/"));
    // A resize of our terminal reaches the command's (SIGWINCH, a frame).
    let resize = size(40, 100);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&master);
    // SAFETY: TIOCSWINSZ reads the winsize we pass; the master is open.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &resize) };
    assert_eq!(r, 0);
    let deadline = Instant::now() + WAIT;
    while !screen.lock().unwrap().contains("40 100") {
        assert!(Instant::now() < deadline, "the resize never arrived");
        master.write_all(b"stty size\r").unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    master.write_all(b"exit 7\r").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7));
    // Our terminal is as it was.
    assert_eq!(lflags(&pty.slave), before);
}

#[test]
fn fifty_concurrent_clients() {
    let s = server(None);
    let socket = s.socket.clone();
    let started = Instant::now();
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let c = Client::new(&socket);
                let ps = c.json("GET", "/v1/containers", None).unwrap();
                assert_eq!(ps.as_array().unwrap().len(), 3);
                // Half of them also hold a stream open while the rest run.
                if i % 2 == 0 {
                    let _events = c.stream("/v1/events").unwrap();
                    c.json("GET", "/v1/ping", None).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    eprintln!("50 concurrent clients answered in {:?}", started.elapsed());
    until_forgotten(&s.events, "{}");
    assert_eq!(cli(&s, &["ps"]).0, 0);
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

/// A certificate signed by `ca`, written as `NAME.pem` and `NAME.key`.
fn leaf(ca: &Ca, dir: &Path, name: &str, client: bool) -> (PathBuf, PathBuf) {
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
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn curl(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl (scripts/install-deps installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn remote_api_requires_a_client_certificate_of_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ours, theirs) = (ca("berth fleet CA"), ca("someone else's CA"));
    std::fs::write(d.join("ca.pem"), &ours.pem).unwrap();
    let (cert, key) = leaf(&ours, d, "server", false);
    let (good, good_key) = leaf(&ours, d, "client", true);
    let (bad, bad_key) = leaf(&theirs, d, "stranger", true);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = server(Some(berth_config::RemoteApi {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        cert,
        key,
        client_ca: d.join("ca.pem"),
    }));
    let url = |p: &str| format!("https://127.0.0.1:{port}{p}");
    let ca_arg = d.join("ca.pem");
    let ca_arg = ca_arg.to_str().unwrap();
    let deadline = Instant::now() + WAIT;
    let (good, good_key) = (good.to_str().unwrap(), good_key.to_str().unwrap());
    loop {
        let (ok, out, err) = curl(&[
            "--cacert",
            ca_arg,
            "--cert",
            good,
            "--key",
            good_key,
            &url("/v1/ping"),
        ]);
        if ok {
            assert_eq!(out.trim(), r#"{"ok":true}"#);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listener never served: {err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // No certificate, a certificate of another CA: the handshake fails.
    let (ok, out, err) = curl(&["--cacert", ca_arg, &url("/v1/ping")]);
    assert!(
        !ok && out.is_empty(),
        "no client certificate was let in: {out}"
    );
    eprintln!("without a certificate, curl says: {}", err.trim());
    let (ok, out, err) = curl(&[
        "--cacert",
        ca_arg,
        "--cert",
        bad.to_str().unwrap(),
        "--key",
        bad_key.to_str().unwrap(),
        &url("/v1/ping"),
    ]);
    assert!(
        !ok && out.is_empty(),
        "another CA's client was let in: {out}"
    );
    eprintln!("with another CA's certificate, curl says: {}", err.trim());
    // Plain HTTP is no way in either.
    let (ok, _, _) = curl(&[&format!("http://127.0.0.1:{port}/v1/ping")]);
    assert!(!ok);
    // The good client still gets everything, streams included.
    let (ok, out, err) = curl(&[
        "--cacert",
        ca_arg,
        "--cert",
        good,
        "--key",
        good_key,
        &url("/v1/containers/web/logs?tail=1"),
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "2026-11-30T06:00:02.000000Z stdout three\n");
    let (ok, out, _) = curl(&[
        "--cacert",
        ca_arg,
        "--cert",
        good,
        "--key",
        good_key,
        "-X",
        "POST",
        &url("/v1/containers/ghost/stop"),
    ]);
    assert!(ok);
    assert_eq!(out.trim(), r#"{"message":"no such container: ghost"}"#);
}

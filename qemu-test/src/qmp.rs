//! A small QMP client: QEMU's JSON machine protocol on a unix socket.
//!
//! On connect QEMU sends a greeting (`{"QMP": ...}`); the client answers
//! `qmp_capabilities` to leave negotiation mode. Each command carries an `id`
//! and the client reads lines until the reply with that id, keeping the
//! asynchronous events (`{"event": ...}`) that arrive in between.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{Error, Result};

/// A negotiated QMP connection.
#[derive(Debug)]
pub(crate) struct Qmp {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    events: Vec<Value>,
    /// A line read in part when a read timed out; the next read goes on.
    partial: String,
    /// QEMU closed the connection.
    closed: bool,
}

impl Qmp {
    /// Reads the greeting from `stream` and negotiates capabilities.
    pub(crate) fn handshake(stream: UnixStream, path: &Path, timeout: Duration) -> Result<Self> {
        let writer = stream
            .try_clone()
            .map_err(|e| Error::io("clone the socket", path, e))?;
        let mut q = Qmp {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
            next_id: 0,
            events: Vec::new(),
            partial: String::new(),
            closed: false,
        };
        let deadline = Instant::now() + timeout;
        let greeting = q.read_message(deadline, "the greeting")?;
        if greeting.get("QMP").is_none() {
            return Err(q.protocol(format!("expected a greeting, got {greeting}")));
        }
        q.execute("qmp_capabilities", None, timeout)?;
        Ok(q)
    }

    /// Runs `command` with optional `arguments` and returns its `return`
    /// value.
    pub(crate) fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| Error::io("write a QMP command to", &self.path, e))?;
        loop {
            let reply = self.read_message(deadline, command)?;
            if reply.get("event").is_some() {
                self.events.push(reply);
                continue;
            }
            if reply.get("id").and_then(Value::as_u64) != Some(id) {
                // A reply to an earlier command that timed out.
                continue;
            }
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
                return Err(Error::QmpCommand {
                    command: command.to_owned(),
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            return Err(self.protocol(format!("unexpected reply {reply}")));
        }
    }

    /// The asynchronous events received so far (`SHUTDOWN`, `RESET`, ...).
    pub(crate) fn events(&self) -> &[Value] {
        &self.events
    }

    /// Reads the events QEMU has sent, waiting up to `wait` for more, and
    /// until end of file once QEMU has exited. Replies to commands that
    /// timed out are dropped.
    pub(crate) fn drain_events(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while !self.closed {
            match self.read_message(deadline, "events") {
                Ok(msg) if msg.get("event").is_some() => self.events.push(msg),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    fn read_message(&mut self, deadline: Instant, waiting_for: &str) -> Result<Value> {
        let mut line = std::mem::take(&mut self.partial);
        let result = self.read_line_into(&mut line, deadline, waiting_for);
        if result.is_err() {
            // Keep what came of the line for the next read.
            self.partial = line;
        }
        result
    }

    fn read_line_into(
        &mut self,
        line: &mut String,
        deadline: Instant,
        waiting_for: &str,
    ) -> Result<Value> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.protocol(format!("timed out waiting for {waiting_for}")));
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .map_err(|e| Error::io("set a timeout on", &self.path, e))?;
            match self.reader.read_line(line) {
                Ok(0) => {
                    self.closed = true;
                    return Err(Error::io(
                        "read from",
                        &self.path,
                        std::io::Error::new(
                            ErrorKind::UnexpectedEof,
                            format!("QEMU closed QMP while waiting for {waiting_for}"),
                        ),
                    ));
                }
                Ok(_) if line.ends_with('\n') => {
                    let text = std::mem::take(line);
                    return serde_json::from_str(&text)
                        .map_err(|e| self.protocol(format!("bad JSON {text:?}: {e}")));
                }
                // A partial line: the loop reads on and appends.
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read from", &self.path, e)),
            }
        }
    }

    fn protocol(&self, detail: String) -> Error {
        Error::QmpProtocol {
            path: self.path.clone(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    /// A fake QEMU: greets, then answers each command as `respond` says,
    /// preceded by an event.
    fn fake_qemu(server: UnixStream) -> std::thread::JoinHandle<Vec<Value>> {
        std::thread::spawn(move || {
            let mut w = server.try_clone().expect("clone");
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .expect("greet");
            let mut seen = Vec::new();
            for line in BufReader::new(server).lines() {
                let Ok(line) = line else { break };
                let cmd: Value = serde_json::from_str(&line).expect("json");
                let id = cmd["id"].clone();
                let reply = match cmd["execute"].as_str() {
                    Some("qmp_capabilities") => json!({"return": {}, "id": id}),
                    Some("query-status") => {
                        w.write_all(b"{\"event\": \"RESET\", \"timestamp\": {}}\n")
                            .expect("event");
                        // A stale reply to some other id comes first.
                        w.write_all(b"{\"return\": {}, \"id\": 999}\n")
                            .expect("stale");
                        // And the real one in two writes.
                        let s = json!({"return": {"status": "running"}, "id": id}).to_string();
                        let (a, b) = s.split_at(5);
                        w.write_all(a.as_bytes()).expect("half");
                        w.flush().expect("flush");
                        std::thread::sleep(Duration::from_millis(50));
                        w.write_all(b.as_bytes()).expect("half");
                        w.write_all(b"\n").expect("nl");
                        seen.push(cmd);
                        continue;
                    }
                    _ => json!({"error": {"class": "CommandNotFound", "desc": "nope"}, "id": id}),
                };
                seen.push(cmd);
                w.write_all(format!("{reply}\n").as_bytes()).expect("reply");
            }
            seen
        })
    }

    #[test]
    fn negotiates_skips_events_and_reports_errors() {
        let (client, server) = UnixStream::pair().expect("pair");
        let fake = fake_qemu(server);
        let t = Duration::from_secs(5);
        let mut q = Qmp::handshake(client, Path::new("/fake/qmp.sock"), t).expect("handshake");
        let status = q.execute("query-status", None, t).expect("status");
        assert_eq!(status["status"], "running");
        assert_eq!(q.events().len(), 1);
        assert_eq!(q.events()[0]["event"], "RESET");
        let err = q
            .execute("bogus", Some(json!({"a": 1})), t)
            .expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "QMP command bogus failed: CommandNotFound: nope"
        );
        drop(q);
        let seen = fake.join().expect("join");
        assert_eq!(seen[0]["execute"], "qmp_capabilities");
        assert_eq!(seen[2]["arguments"]["a"], 1);
    }

    #[test]
    fn drains_events_across_partial_lines_until_eof() {
        let (client, mut server) = UnixStream::pair().expect("pair");
        let t = Duration::from_secs(5);
        server.write_all(b"{\"QMP\": {}}\n").expect("greet");
        // The capabilities reply; its id is 1.
        server
            .write_all(b"{\"return\": {}, \"id\": 1}\n")
            .expect("reply");
        let mut q = Qmp::handshake(client, Path::new("/x"), t).expect("handshake");
        server
            .write_all(b"{\"event\": \"POWERDOWN\"}\n{\"event\": \"SHUT")
            .expect("events");
        q.drain_events(Duration::from_millis(200));
        assert_eq!(q.events().len(), 1);
        server
            .write_all(b"DOWN\", \"data\": {\"reason\": \"guest-shutdown\"}}\n")
            .expect("rest");
        drop(server);
        q.drain_events(Duration::from_secs(5));
        assert_eq!(q.events().len(), 2);
        assert_eq!(q.events()[1]["data"]["reason"], "guest-shutdown");
    }

    #[test]
    fn a_silent_server_times_out() {
        let (client, _server) = UnixStream::pair().expect("pair");
        let start = Instant::now();
        let err = Qmp::handshake(client, Path::new("/x"), Duration::from_millis(200))
            .expect_err("no greeting");
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(err.to_string().contains("timed out"), "{err}");
    }
}

//! A minimal blocking HTTP/1.1 client, written for one server: berth's API,
//! which serves Content-Length framed JSON with keep-alive, over the
//! virtio-serial control channel (and, in scenarios, over forwarded TCP).
//!
//! It writes `Host: berth` and a `Content-Length` for every request, and reads
//! a status line, headers, then a body framed by `Content-Length`, by chunked
//! transfer encoding, or by the end of the stream. Interim `1xx` responses are
//! skipped. After any error, or a `Connection: close`, the client reports
//! itself unusable ([`HttpClient::is_reusable`]) so the caller reconnects.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The most a status line or header line may hold.
const MAX_LINE: usize = 64 * 1024;
/// The most a body may hold.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A byte stream the client can run on: it must be cloneable (one half
/// reads, one writes) and take read timeouts.
pub trait HttpStream: Read + Write + Sized {
    /// Clones the handle to the same connection.
    fn try_clone_stream(&self) -> io::Result<Self>;
    /// Sets how long a read may block.
    fn set_read_timeout_to(&self, t: Option<Duration>) -> io::Result<()>;
}

impl HttpStream for UnixStream {
    fn try_clone_stream(&self) -> io::Result<Self> {
        self.try_clone()
    }
    fn set_read_timeout_to(&self, t: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(t)
    }
}

impl HttpStream for TcpStream {
    fn try_clone_stream(&self) -> io::Result<Self> {
        self.try_clone()
    }
    fn set_read_timeout_to(&self, t: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(t)
    }
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body, lossily decoded as UTF-8.
    pub body: String,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct HttpClient<S> {
    reader: BufReader<S>,
    writer: S,
    reusable: bool,
}

impl<S: HttpStream> HttpClient<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> io::Result<Self> {
        let writer = stream.try_clone_stream()?;
        Ok(HttpClient {
            reader: BufReader::new(stream),
            writer,
            reusable: true,
        })
    }

    /// Whether the connection can carry another request.
    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// The underlying stream.
    pub fn stream(&self) -> &S {
        self.reader.get_ref()
    }

    /// Sends one request and reads its response, all within `timeout`. A
    /// body is sent as `application/json`.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
        timeout: Duration,
    ) -> Result<HttpResponse> {
        let request = format!("{method} {path}");
        if !self.reusable {
            return Err(Error::Http {
                request,
                detail: "the connection is closed".into(),
            });
        }
        let deadline = Instant::now() + timeout;
        // Until a response is complete, the connection's state is unknown.
        self.reusable = false;
        let result = self.exchange(method, path, body, deadline);
        match result {
            Ok((resp, keep)) => {
                self.reusable = keep;
                Ok(resp)
            }
            Err(detail) => Err(Error::Http { request, detail }),
        }
    }

    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
        deadline: Instant,
    ) -> Result<(HttpResponse, bool), String> {
        let body = body.unwrap_or("");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: berth\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.as_bytes());
        self.writer
            .write_all(&out)
            .and_then(|()| self.writer.flush())
            .map_err(|e| format!("writing the request: {e}"))?;

        loop {
            let status_line = self.read_line(deadline, "the status line")?;
            let status = parse_status(&status_line)?;
            let headers = self.read_headers(deadline)?;
            if (100..200).contains(&status) {
                continue;
            }
            let mut resp = HttpResponse {
                status,
                headers,
                body: String::new(),
            };
            let mut keep = !resp
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            let bytes = if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 {
                Vec::new()
            } else if resp
                .header("transfer-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
            {
                self.read_chunked(deadline)?
            } else if let Some(len) = resp.header("content-length") {
                let len: usize = len
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad Content-Length {len:?}"))?;
                if len > MAX_BODY {
                    return Err(format!("a body of {len} bytes is too large"));
                }
                self.read_exact(len, deadline)?
            } else {
                keep = false;
                self.read_to_end(deadline)?
            };
            resp.body = String::from_utf8_lossy(&bytes).into_owned();
            return Ok((resp, keep));
        }
    }

    fn read_headers(&mut self, deadline: Instant) -> Result<Vec<(String, String)>, String> {
        let mut headers = Vec::new();
        loop {
            let line = self.read_line(deadline, "a header")?;
            if line.is_empty() {
                return Ok(headers);
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            if headers.len() > 256 {
                return Err("more than 256 headers".into());
            }
        }
    }

    fn read_chunked(&mut self, deadline: Instant) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(deadline, "a chunk size")?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line(deadline, "a trailer")?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err("the chunked body is too large".into());
            }
            body.extend(self.read_exact(size, deadline)?);
            let crlf = self.read_line(deadline, "the end of a chunk")?;
            if !crlf.is_empty() {
                return Err(format!("junk {crlf:?} after a chunk"));
            }
        }
    }

    /// Reads a line and strips its CRLF (or LF).
    fn read_line(&mut self, deadline: Instant, what: &str) -> Result<String, String> {
        let mut buf = Vec::new();
        loop {
            self.arm(deadline, what)?;
            let mut limited = (&mut self.reader).take((MAX_LINE + 2 - buf.len()) as u64);
            match limited.read_until(b'\n', &mut buf) {
                Ok(0) => return Err(format!("the connection closed before {what}")),
                Ok(_) if buf.ends_with(b"\n") => {
                    buf.pop();
                    if buf.ends_with(b"\r") {
                        buf.pop();
                    }
                    return Ok(String::from_utf8_lossy(&buf).into_owned());
                }
                Ok(_) if buf.len() >= MAX_LINE => return Err(format!("{what} is too long")),
                Ok(_) => {}
                Err(e) => retryable(e, what)?,
            }
        }
    }

    fn read_exact(&mut self, len: usize, deadline: Instant) -> Result<Vec<u8>, String> {
        let mut buf = vec![0; len];
        let mut got = 0;
        while got < len {
            self.arm(deadline, "the body")?;
            match self.reader.read(&mut buf[got..]) {
                Ok(0) => return Err(format!("the connection closed after {got} of {len} bytes")),
                Ok(n) => got += n,
                Err(e) => retryable(e, "the body")?,
            }
        }
        Ok(buf)
    }

    fn read_to_end(&mut self, deadline: Instant) -> Result<Vec<u8>, String> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            self.arm(deadline, "the end of the body")?;
            match self.reader.read(&mut chunk) {
                Ok(0) => return Ok(buf),
                Ok(n) if buf.len() + n > MAX_BODY => return Err("the body is too large".into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => retryable(e, "the end of the body")?,
            }
        }
    }

    /// Sets the read timeout to what is left until `deadline`.
    fn arm(&mut self, deadline: Instant, what: &str) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("timed out waiting for {what}"));
        }
        self.reader
            .get_ref()
            .set_read_timeout_to(Some(left))
            .map_err(|e| format!("setting a read timeout: {e}"))
    }
}

/// Timeouts and interruptions are retried (the deadline check in `arm` ends
/// them); anything else ends the exchange.
fn retryable(e: io::Error, what: &str) -> Result<(), String> {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted => Ok(()),
        _ => Err(format!("reading {what}: {e}")),
    }
}

fn parse_status(line: &str) -> Result<u16, String> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {line:?}"));
    }
    parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| format!("bad status line {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake server: reads one request per canned response, writes the
    /// response, and returns the requests it saw.
    fn serve(
        server: UnixStream,
        responses: Vec<&'static str>,
    ) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let mut r = BufReader::new(server.try_clone().expect("clone"));
            let mut w = server;
            let mut seen = Vec::new();
            for resp in responses {
                let mut req = String::new();
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).expect("read") == 0 {
                        return seen;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.trim().parse().expect("len");
                    }
                    req.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).expect("body");
                req.push_str(&String::from_utf8_lossy(&body));
                seen.push(req);
                // Written in two parts to exercise partial reads.
                let (a, b) = resp.split_at(resp.len() / 2);
                w.write_all(a.as_bytes()).expect("write");
                std::thread::sleep(Duration::from_millis(20));
                w.write_all(b.as_bytes()).expect("write");
            }
            seen
        })
    }

    #[test]
    fn keep_alive_content_length_chunked_and_close() {
        let (client, server) = UnixStream::pair().expect("pair");
        let fake = serve(
            server,
            vec![
                "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nX-T: 1\r\n\r\n",
                "HTTP/1.1 204 No Content\r\n\r\n",
                "HTTP/1.0 404 Not Found\r\nConnection: close\r\n\r\nnot here",
            ],
        );
        let t = Duration::from_secs(5);
        let mut c = HttpClient::new(client).expect("client");
        let r = c.request("GET", "/v1/status", None, t).expect("first");
        assert_eq!((r.status, r.body.as_str()), (200, "{\"ok\":true}"));
        assert!(c.is_reusable());
        let r = c
            .request("POST", "/v1/echo", Some("{\"x\":1}"), t)
            .expect("second");
        assert_eq!((r.status, r.body.as_str()), (201, "{\"a\":1}"));
        let r = c.request("DELETE", "/v1/x", None, t).expect("third");
        assert_eq!((r.status, r.body.as_str()), (204, ""));
        // The last response has no length: it ends at EOF, which the fake
        // server gives by returning (dropping its socket).
        let r = c.request("GET", "/missing", None, t).expect("fourth");
        assert_eq!((r.status, r.body.as_str()), (404, "not here"));
        assert_eq!(r.header("Connection"), Some("close"));
        assert!(!c.is_reusable());
        assert!(c.request("GET", "/", None, t).is_err());
        let seen = fake.join().expect("join");
        assert_eq!(
            seen[0],
            "GET /v1/status HTTP/1.1\r\nHost: berth\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(
            seen[1],
            "POST /v1/echo HTTP/1.1\r\nHost: berth\r\nContent-Length: 7\r\n\
             Content-Type: application/json\r\n\r\n{\"x\":1}"
        );
    }

    #[test]
    fn a_silent_server_times_out_and_poisons_the_connection() {
        let (client, _server) = UnixStream::pair().expect("pair");
        let mut c = HttpClient::new(client).expect("client");
        let start = Instant::now();
        let err = c
            .request("GET", "/slow", None, Duration::from_millis(200))
            .expect_err("timeout");
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(!c.is_reusable());
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_status("SSH-2.0-OpenSSH").is_err());
        assert!(parse_status("HTTP/1.1 abc").is_err());
        assert_eq!(parse_status("HTTP/1.1 503 Busy"), Ok(503));
    }
}

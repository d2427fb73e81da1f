//! A minimal blocking HTTP/1.1 client for berth's API on its unix socket:
//! one connection per request (`Connection: close`), bodies by
//! `Content-Length`, chunked, or to the end of the stream, read as they
//! come (for `logs -f` and `events`), and the `berth-exec` upgrade.
//!
//! It is what the CLI needs and no more: berth is one static binary, so no
//! general HTTP client goes into it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The longest response head read.
const MAX_HEAD: usize = 64 * 1024;

/// What went wrong talking to berth.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// cannot connect to {path}: {source}{hint}
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: io::Error,
        /// What to check, or "".
        hint: &'static str,
    },
    /// {message}
    Api {
        /// The HTTP status.
        status: u16,
        /// berth's message.
        message: String,
        /// More lines (a manifest's errors).
        details: Vec<String>,
    },
    /// talking to berth: {0}
    Io(#[from] io::Error),
    /// bad answer from berth: {0}
    Protocol(String),
}

/// A response, its body not yet read.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The body, read as it comes.
    pub body: Body<BufReader<UnixStream>>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The whole body.
    pub fn bytes(mut self) -> Result<Vec<u8>, Error> {
        let mut b = Vec::new();
        self.body.read_to_end(&mut b)?;
        Ok(b)
    }

    /// Turns a non-2xx answer into [`Error::Api`], with berth's message.
    pub fn ok(self) -> Result<Response, Error> {
        if (200..300).contains(&self.status) || self.status == 101 {
            return Ok(self);
        }
        let status = self.status;
        let body = self.bytes()?;
        Err(api_error(status, &body))
    }
}

/// The error an answer carries: its JSON `message` (and `errors`), or its
/// text, or the bare status.
pub fn api_error(status: u16, body: &[u8]) -> Error {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = match v["message"].as_str() {
        Some(m) => m.to_string(),
        None => {
            let text = String::from_utf8_lossy(body).trim().to_string();
            if text.is_empty() {
                format!("HTTP status {status}")
            } else {
                text
            }
        }
    };
    let details = v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Error::Api {
        status,
        message,
        details,
    }
}

/// A client of the API at one socket.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
}

impl Client {
    /// A client of the socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Client {
        Client { path: path.into() }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connect(&self) -> Result<UnixStream, Error> {
        UnixStream::connect(&self.path).map_err(|source| {
            let hint = match source.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    " (is berth running? --host or $BERTH_HOST names another socket)"
                }
                io::ErrorKind::PermissionDenied => " (the API is for root)",
                _ => "",
            };
            Error::Connect {
                path: self.path.clone(),
                source,
                hint,
            }
        })
    }

    /// Sends a request and reads the response's head.
    pub fn send(
        &self,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Result<Response, Error> {
        let mut stream = self.connect()?;
        stream.write_all(&request(method, target, body, headers))?;
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader)?;
        let kind = body_kind(method, status, &headers)?;
        Ok(Response {
            status,
            headers,
            body: Body::new(reader, kind),
        })
    }

    /// A request whose answer is read whole; a non-2xx answer is an error.
    pub fn call(&self, method: &str, target: &str, body: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        self.send(method, target, body, &[])?.ok()?.bytes()
    }

    /// A request whose answer is JSON.
    pub fn json(&self, method: &str, target: &str, body: Option<&[u8]>) -> Result<Value, Error> {
        let b = self.call(method, target, body)?;
        serde_json::from_slice(&b).map_err(|e| Error::Protocol(format!("{target}: {e}")))
    }

    /// `GET target`, its body to be read as it comes.
    pub fn stream(&self, target: &str) -> Result<Body<BufReader<UnixStream>>, Error> {
        Ok(self.send("GET", target, None, &[])?.ok()?.body)
    }

    /// `POST target` asking for the `berth-exec` upgrade. Returns the
    /// connection to read frames from (with what was already buffered) and
    /// a second handle on it to write frames to.
    pub fn upgrade(
        &self,
        target: &str,
        body: &[u8],
    ) -> Result<(BufReader<UnixStream>, UnixStream), Error> {
        let r = self.send(
            "POST",
            target,
            Some(body),
            &[("Connection", "Upgrade"), ("Upgrade", "berth-exec")],
        )?;
        if r.status != 101 {
            let status = r.status;
            return Err(api_error(status, &r.bytes()?));
        }
        let reader = r.body.into_inner();
        let writer = reader.get_ref().try_clone()?;
        Ok((reader, writer))
    }
}

/// A request's bytes.
pub fn request(
    method: &str,
    target: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: berth\r\nUser-Agent: berth/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("connection"))
    {
        head.push_str("Connection: close\r\n");
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.unwrap_or_default());
    out
}

/// Percent-encodes a query value (all but unreserved characters and `:`).
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads a line of the head, without its line end.
fn head_line(r: &mut impl BufRead, budget: &mut usize) -> Result<String, Error> {
    let mut line = Vec::new();
    let n = r
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(Error::Protocol(
            "the connection closed before an answer".into(),
        ));
    }
    if n > *budget {
        return Err(Error::Protocol("the answer's head is too long".into()));
    }
    *budget -= n;
    if line.last() != Some(&b'\n') {
        return Err(Error::Protocol("the connection closed mid-answer".into()));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| Error::Protocol("the answer's head is not text".into()))
}

/// Reads a status line and headers.
pub fn read_head(r: &mut impl BufRead) -> Result<(u16, Vec<(String, String)>), Error> {
    let mut budget = MAX_HEAD;
    let status_line = head_line(r, &mut budget)?;
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next(), parts.next());
    let status = match (version, code.and_then(|c| c.parse::<u16>().ok())) {
        (Some(v), Some(c)) if v.starts_with("HTTP/1.") => c,
        _ => return Err(Error::Protocol(format!("status line {status_line:?}"))),
    };
    let mut headers = Vec::new();
    loop {
        let line = head_line(r, &mut budget)?;
        if line.is_empty() {
            return Ok((status, headers));
        }
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| Error::Protocol(format!("header line {line:?}")))?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
}

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// So many bytes left.
    Length(u64),
    /// Chunked: bytes left in the current chunk, and whether a chunk was
    /// read before (so its line end comes first).
    Chunked {
        /// Left in this chunk.
        left: u64,
        /// Whether a chunk preceded.
        after_chunk: bool,
    },
    /// Until the connection closes.
    Eof,
    /// Nothing (left).
    Done,
}

fn body_kind(method: &str, status: u16, headers: &[(String, String)]) -> Result<Kind, Error> {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    if method == "HEAD" || status == 204 || status == 304 || status == 101 || status < 200 {
        return Ok(Kind::Done);
    }
    if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        return Ok(Kind::Chunked {
            left: 0,
            after_chunk: false,
        });
    }
    match get("content-length") {
        Some(l) => l
            .parse()
            .map(Kind::Length)
            .map_err(|_| Error::Protocol(format!("content-length {l:?}"))),
        None => Ok(Kind::Eof),
    }
}

/// A response body, decoded as it is read. A read returns what has
/// arrived, so lines of a followed stream come out one by one.
#[derive(Debug)]
pub struct Body<R> {
    inner: R,
    kind: Kind,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl<R: BufRead> Body<R> {
    /// A body of `kind` read from `inner`.
    pub fn new(inner: R, kind: Kind) -> Body<R> {
        Body { inner, kind }
    }

    /// The reader, with what it buffered past the head.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        self.inner
            .by_ref()
            .take(4096)
            .read_until(b'\n', &mut line)?;
        if line.last() != Some(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stream ended mid-chunk",
            ));
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_string())
    }

    /// Reads the next chunk's size (after the previous chunk's line end).
    fn next_chunk(&mut self, after_chunk: bool) -> io::Result<u64> {
        if after_chunk && !self.line()?.is_empty() {
            return Err(bad("no line end after a chunk"));
        }
        let line = self.line()?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !self.line()?.is_empty() {}
        }
        Ok(size)
    }

    fn read_counted(&mut self, left: u64, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 && max > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed mid-answer",
            ));
        }
        Ok(n)
    }
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.kind {
                Kind::Done | Kind::Length(0) => {
                    self.kind = Kind::Done;
                    return Ok(0);
                }
                Kind::Eof => return self.inner.read(buf),
                Kind::Length(left) => {
                    let n = self.read_counted(left, buf)?;
                    self.kind = Kind::Length(left - n as u64);
                    return Ok(n);
                }
                Kind::Chunked {
                    left: 0,
                    after_chunk,
                } => {
                    self.kind = match self.next_chunk(after_chunk)? {
                        0 => Kind::Done,
                        left => Kind::Chunked {
                            left,
                            after_chunk: true,
                        },
                    };
                }
                Kind::Chunked { left, after_chunk } => {
                    let n = self.read_counted(left, buf)?;
                    self.kind = Kind::Chunked {
                        left: left - n as u64,
                        after_chunk,
                    };
                    return Ok(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed<'a> = (u16, Vec<(String, String)>, Body<&'a [u8]>);

    fn parse(raw: &[u8]) -> Parsed<'_> {
        let mut r = raw;
        let (s, h) = read_head(&mut r).unwrap();
        let k = body_kind("GET", s, &h).unwrap();
        (s, h, Body::new(r, k))
    }

    fn text(mut b: impl Read) -> String {
        let mut s = String::new();
        b.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn content_length_bodies() {
        let (s, h, b) =
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhelloEXTRA");
        assert_eq!(s, 200);
        assert_eq!(h[1], ("x-a".into(), "b".into()));
        assert_eq!(text(b), "hello");
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                    6;x=y\r\nline 1\r\n1\r\n\n\r\n0\r\nTrailer: z\r\n\r\nafter";
        let (_, _, b) = parse(raw);
        assert_eq!(text(b), "line 1\n");
    }

    #[test]
    fn reads_return_one_chunk_at_a_time() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab\n\r\n3\r\ncd\n\r\n0\r\n\r\n";
        let (_, _, mut b) = parse(raw);
        let mut buf = [0u8; 64];
        assert_eq!(b.read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"ab\n");
        assert_eq!(b.read(&mut buf).unwrap(), 3);
        assert_eq!(b.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn truncated_and_malformed_answers_are_errors() {
        let (_, _, b) = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        let mut s = String::new();
        assert!(BufReader::new(b).read_to_string(&mut s).is_err());
        let (_, _, b) = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert!(BufReader::new(b).read_to_string(&mut s).is_err());
        let mut r: &[u8] = b"SSH-2.0-x\r\n\r\n";
        assert!(matches!(read_head(&mut r), Err(Error::Protocol(_))));
        let mut r: &[u8] = b"";
        assert!(read_head(&mut r).is_err());
    }

    #[test]
    fn no_content_and_eof_bodies() {
        let (_, _, b) = parse(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(text(b), "");
        let (_, _, b) = parse(b"HTTP/1.1 200 OK\r\n\r\nall of it");
        assert_eq!(text(b), "all of it");
    }

    #[test]
    fn errors_carry_berths_message_and_details() {
        let e = api_error(404, br#"{"message":"no such container: web"}"#);
        assert_eq!(e.to_string(), "no such container: web");
        let e = api_error(400, br#"{"message":"invalid","errors":["a:1:1: x"]}"#);
        assert!(matches!(e, Error::Api { ref details, .. } if details == &["a:1:1: x"]));
        assert_eq!(api_error(502, b"").to_string(), "HTTP status 502");
    }

    #[test]
    fn requests_and_query_values() {
        let r = String::from_utf8(request("POST", "/v1/x", Some(b"{}"), &[])).unwrap();
        assert!(r.starts_with("POST /v1/x HTTP/1.1\r\nHost: berth\r\n"));
        assert!(r.contains("Content-Length: 2\r\nConnection: close\r\n\r\n{}"));
        let r = String::from_utf8(request("GET", "/", None, &[("Connection", "Upgrade")])).unwrap();
        assert!(!r.contains("close") && !r.contains("Content-Length"));
        assert_eq!(encode("2026-11-30T06:00:00Z"), "2026-11-30T06:00:00Z");
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}

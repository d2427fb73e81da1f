//! Content digests (`sha256:<64 hex>`, the only algorithm berth accepts)
//! and a reader that checks a blob's digest and size as it streams.

use std::fmt;
use std::io::{self, Read};

// ring's SHA-256, which berth already carries for TLS: sha2 (now the
// builder's only) would add its own 20 kB to the static berth.
use ring::digest::{Context, SHA256};

/// A sha256 content digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        let mut h = Context::new(&SHA256);
        h.update(bytes);
        Digest::from_hasher(h)
    }

    fn from_hasher(h: Context) -> Digest {
        let hex = h
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Digest { hex }
    }

    /// The 64 lowercase hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A digest from 64 lowercase hex digits.
    pub fn from_hex(hex: &str) -> Option<Digest> {
        (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then(
            || Digest {
                hex: hex.to_string(),
            },
        )
    }

    /// The first 12 hex digits, as `docker images` shows IDs.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl std::str::FromStr for Digest {
    type Err = String;

    /// Parses `sha256:<64 lowercase hex>`; any other algorithm is refused.
    fn from_str(s: &str) -> Result<Digest, String> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(format!(
                "invalid digest {s:?}: expected sha256:<64 hex digits>"
            ));
        };
        if alg != "sha256" {
            return Err(format!(
                "unsupported digest algorithm {alg:?} in {s:?} (berth verifies sha256 only)"
            ));
        }
        Digest::from_hex(hex).ok_or_else(|| {
            format!("invalid digest {s:?}: expected sha256:<64 lowercase hex digits>")
        })
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a stream did not match what was expected of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// More bytes than expected.
    TooLong {
        /// The size expected.
        expected: u64,
    },
    /// It ended early.
    Truncated {
        /// The size expected.
        expected: u64,
        /// The bytes read.
        actual: u64,
    },
    /// The content hashes to something else.
    Digest {
        /// The digest expected.
        expected: Digest,
        /// The digest computed.
        actual: Digest,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::TooLong { expected } => {
                write!(
                    f,
                    "it is longer than the {expected} bytes its descriptor gives"
                )
            }
            Mismatch::Truncated { expected, actual } => write!(
                f,
                "it is truncated: {actual} bytes where its descriptor gives {expected}"
            ),
            Mismatch::Digest { expected, actual } => {
                write!(f, "its content hashes to {actual}, not {expected}")
            }
        }
    }
}

impl std::error::Error for Mismatch {}

/// A reader that hashes and counts what passes through it, and refuses to
/// yield more than the expected size (when one is given) or more than a
/// limit. [`Verify::finish`] checks the digest and size once the stream
/// has been read to its end.
pub struct Verify<R> {
    inner: R,
    hasher: Context,
    read: u64,
    expected_size: Option<u64>,
    limit: u64,
    failed: Option<Mismatch>,
}

impl<R: Read> Verify<R> {
    /// Checks `inner` against `digest` and, if given, `size`; at most
    /// `limit` bytes are read either way.
    pub fn new(inner: R, size: Option<u64>, limit: u64) -> Self {
        Verify {
            inner,
            hasher: Context::new(&SHA256),
            read: 0,
            expected_size: size,
            limit,
            failed: None,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Reads what is left (at most the limit) so that the whole stream is
    /// hashed; returns how many bytes that was.
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }

    /// Drains the stream, then checks its size and digest. Returns the
    /// digest and the size.
    pub fn finish(
        mut self,
        expected: Option<&Digest>,
    ) -> io::Result<Result<(Digest, u64), Mismatch>> {
        self.drain()?;
        if let Some(m) = self.failed.take() {
            return Ok(Err(m));
        }
        if let Some(size) = self.expected_size
            && self.read != size
        {
            return Ok(Err(Mismatch::Truncated {
                expected: size,
                actual: self.read,
            }));
        }
        let actual = Digest::from_hasher(self.hasher);
        match expected {
            Some(e) if *e != actual => Ok(Err(Mismatch::Digest {
                expected: e.clone(),
                actual,
            })),
            _ => Ok(Ok((actual, self.read))),
        }
    }

    /// The digest and size of what was read, and the reader inside.
    pub fn split(self) -> (Digest, u64, R) {
        (Digest::from_hasher(self.hasher), self.read, self.inner)
    }

    /// The reader inside.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

/// The error a [`Verify`] returns when its limit is passed: an
/// `InvalidData` error carrying a [`Mismatch`] or a [`LimitExceeded`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    /// The limit.
    pub limit: u64,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "it is larger than the limit of {} bytes", self.limit)
    }
}

impl std::error::Error for LimitExceeded {}

impl<R: Read> Read for Verify<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Ask for one byte past the allowed end, to notice a stream that
        // goes on, without ever passing more than allowed on.
        let allowed = match self.expected_size {
            Some(s) => s.min(self.limit),
            None => self.limit,
        };
        let room = allowed.saturating_sub(self.read);
        let want = (buf.len() as u64).min(room.saturating_add(1)) as usize;
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > room {
            let err = match self.expected_size {
                Some(s) if s <= self.limit => {
                    let m = Mismatch::TooLong { expected: s };
                    self.failed = Some(m.clone());
                    io::Error::new(io::ErrorKind::InvalidData, m)
                }
                _ => io::Error::new(
                    io::ErrorKind::InvalidData,
                    LimitExceeded { limit: self.limit },
                ),
            };
            return Err(err);
        }
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parses_and_prints() {
        let d: Digest = format!("sha256:{HELLO}").parse().unwrap();
        assert_eq!(d, Digest::of(b"hello"));
        assert_eq!(d.to_string(), format!("sha256:{HELLO}"));
        assert_eq!(d.short(), "2cf24dba5fb0");
        for bad in ["", "sha256:", "sha256:ABC", "md5:00", HELLO] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
        let e = format!("sha512:{HELLO}").parse::<Digest>().unwrap_err();
        assert!(e.contains("unsupported digest algorithm \"sha512\""), "{e}");
    }

    #[test]
    fn verifies_digest_and_size() {
        let ok = Verify::new(&b"hello"[..], Some(5), 100);
        assert_eq!(
            ok.finish(Some(&Digest::of(b"hello"))).unwrap(),
            Ok((Digest::of(b"hello"), 5))
        );
        let short = Verify::new(&b"hell"[..], Some(5), 100);
        assert_eq!(
            short.finish(None).unwrap(),
            Err(Mismatch::Truncated {
                expected: 5,
                actual: 4
            })
        );
        let wrong = Verify::new(&b"hellp"[..], Some(5), 100);
        assert!(matches!(
            wrong.finish(Some(&Digest::of(b"hello"))).unwrap(),
            Err(Mismatch::Digest { .. })
        ));
        let mut long = Verify::new(&b"hello!"[..], Some(5), 100);
        let mut out = Vec::new();
        let e = long.read_to_end(&mut out).unwrap_err();
        assert!(e.to_string().contains("longer than the 5 bytes"), "{e}");
        assert!(out.len() <= 5);
        let mut big = Verify::new(&[0u8; 64][..], None, 10);
        let e = big.drain().unwrap_err();
        assert!(e.to_string().contains("limit of 10 bytes"), "{e}");
    }
}

//! Container output: each container's stdout and stderr pipes are read by
//! PID 1 without blocking, split into lines and shown on the console with
//! the container's name as prefix.
//!
//! A container that writes faster than berth shows its lines only slows
//! itself down (its pipe fills and its writes wait); PID 1 reads each pipe
//! in its turn, a bounded chunk at a time, so no stream can starve another
//! or the event loop.

use std::os::fd::OwnedFd;

/// The most bytes of one line shown; longer lines are cut with a marker.
pub const MAX_LINE: usize = 16 * 1024;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout.
    Out,
    /// stderr.
    Err,
}

/// Splits a byte stream into lines, keeping a partial last line for later.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Feeds bytes; returns the complete lines (without newline), each cut
    /// to [`MAX_LINE`].
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            if self.partial.len() < MAX_LINE {
                let room = MAX_LINE - self.partial.len();
                let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
                self.partial
                    .extend_from_slice(&body[..body.len().min(room)]);
            }
            if chunk.ends_with(b"\n") {
                out.push(String::from_utf8_lossy(&self.partial).into_owned());
                self.partial.clear();
            }
        }
        out
    }

    /// The unterminated rest, at end of stream.
    pub fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let s = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        Some(s)
    }
}

/// Reads one pipe until end of stream, passing the lines of each chunk read
/// to `sink` together.
pub async fn pump(fd: OwnedFd, mut sink: impl FnMut(&[String])) {
    let Ok(fd) = set_nonblocking(fd).and_then(crate::sys::async_fd) else {
        return;
    };
    let mut lines = Lines::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok(mut guard) = fd.readable().await else {
            break;
        };
        match guard
            .try_io(|f| nix::unistd::read(f.get_ref(), &mut buf).map_err(std::io::Error::from))
        {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                sink(&lines.feed(&buf[..n]));
                // Let other tasks run between chunks.
                tokio::task::yield_now().await;
            }
            Err(_would_block) => {}
        }
    }
    if let Some(rest) = lines.finish() {
        sink(&[rest]);
    }
}

fn set_nonblocking(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_retain(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_reads_and_a_partial_end() {
        let mut l = Lines::default();
        assert_eq!(l.feed(b"a\nb"), ["a"]);
        assert_eq!(l.feed(b"c\n\nd"), ["bc", ""]);
        assert_eq!(l.finish(), Some("d".into()));
        assert_eq!(l.finish(), None);
    }

    #[test]
    fn long_lines_are_cut() {
        let mut l = Lines::default();
        let long = vec![b'x'; MAX_LINE + 10];
        assert!(l.feed(&long).is_empty());
        let got = l.feed(b"yz\n");
        assert_eq!(got[0].len(), MAX_LINE);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let mut l = Lines::default();
        assert_eq!(l.feed(b"\xff ok\n"), ["\u{fffd} ok"]);
    }

    #[test]
    fn pump_reads_a_pipe_to_the_end() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&w, b"one\ntwo\nthree").unwrap();
        drop(w);
        let mut got = Vec::new();
        rt.block_on(pump(r, |l| got.extend_from_slice(l)));
        assert_eq!(got, ["one", "two", "three"]);
    }
}

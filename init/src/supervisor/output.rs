//! Container output: each container's stdout and stderr pipes are read by
//! PID 1 without blocking, split into lines and shown on the console with
//! the container's name as prefix.
//!
//! A container that writes faster than berth shows its lines only slows
//! itself down (its pipe fills and its writes wait); PID 1 reads each pipe
//! in its turn, a bounded chunk at a time, so no stream can starve another
//! or the event loop.
//!
//! The pumps of all containers share one read buffer ([`CHUNK`] bytes): a
//! pump reads into it and splits what it read into lines before it awaits
//! again, so no two pumps ever hold it at once, and an idle container costs
//! no buffer of its own.

use std::cell::RefCell;
use std::os::fd::OwnedFd;

/// The most bytes of one line shown; longer lines are cut with a marker.
pub const MAX_LINE: usize = 16 * 1024;

/// The most bytes read from a pipe at once, before the pump lets other
/// tasks run.
pub const CHUNK: usize = 64 * 1024;

thread_local! {
    /// The read buffer every pump on this thread (PID 1's event loop) uses
    /// in turn; allocated at the first read.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads once from `fd` into the shared buffer and splits the bytes into
/// `lines`: how many bytes it read, and the complete lines.
fn read_lines(fd: &OwnedFd, lines: &mut Lines) -> std::io::Result<(usize, Vec<String>)> {
    READ_BUF.with_borrow_mut(|buf| {
        if buf.len() < CHUNK {
            buf.resize(CHUNK, 0);
        }
        let n = nix::unistd::read(fd, buf)?;
        Ok((n, lines.feed(&buf[..n])))
    })
}

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
    loop {
        let Ok(mut guard) = fd.readable().await else {
            break;
        };
        match guard.try_io(|f| read_lines(f.get_ref(), &mut lines)) {
            Ok(Ok((0, _))) | Ok(Err(_)) => break,
            Ok(Ok((_, got))) => {
                sink(&got);
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

    #[test]
    fn a_chunk_at_a_time() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        // More than a chunk, in one write the pipe holds whole.
        nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4 * CHUNK as i32)).unwrap();
        let mut text = "x\n".repeat(CHUNK / 2 + 10);
        text.push_str("end\n");
        nix::unistd::write(&w, text.as_bytes()).unwrap();
        drop(w);
        let mut batches = Vec::new();
        rt.block_on(pump(r, |l| batches.push(l.len())));
        assert_eq!(batches, [CHUNK / 2, 11]);
    }

    #[test]
    fn idle_pumps_share_one_read_buffer() {
        const PUMPS: usize = 20;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let seen = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut writers = Vec::new();
        let grew = local.block_on(&rt, async {
            let before = crate::test_alloc::live_bytes();
            for _ in 0..PUMPS {
                let (r, w) = nix::unistd::pipe().unwrap();
                nix::unistd::write(&w, b"hello\n").unwrap();
                // The write end stays open: each pump then waits, idle.
                writers.push(w);
                let seen = seen.clone();
                tokio::task::spawn_local(pump(r, move |l| seen.set(seen.get() + l.len())));
            }
            while seen.get() < PUMPS {
                tokio::task::yield_now().await;
            }
            crate::test_alloc::live_bytes() - before
        });
        // Each idle pump holds its task and a partial line, no buffer: all
        // of them together far less than a chunk each.
        let grew = usize::try_from(grew).unwrap();
        assert!(
            grew < CHUNK + PUMPS * CHUNK / 4,
            "{PUMPS} idle pumps keep {grew} bytes"
        );
    }
}

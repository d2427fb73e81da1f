//! `berth exec`: the client side of the `berth-exec` upgrade.
//!
//! After the upgrade the connection carries frames, each an 8-byte header
//! `[type, 0, 0, 0, length as u32 big-endian]` and its payload
//! (docs/api.md). The session relays:
//! - stdin → `STDIN` frames (with `-i`), then `STDIN_EOF`; without `-i`,
//!   `STDIN_EOF` at once, so the command never waits for input;
//! - `STDOUT` and `STDERR` frames → our stdout and stderr, flushed as they
//!   come;
//! - the `EXIT` frame → our exit code.
//!
//! With `-t` and a terminal on stdin, that terminal is put in raw mode for
//! the session ([`RawMode`], restored when dropped, and by the signal
//! thread if SIGTERM, SIGHUP or SIGINT ends us), its size is sent at once
//! and again on each SIGWINCH (`RESIZE` frames).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::termios::{self, SetArg, Termios};

/// Frame types (docs/api.md).
pub const STDIN: u8 = 0;
/// Output, or all output with a terminal.
pub const STDOUT: u8 = 1;
/// Error output.
pub const STDERR: u8 = 2;
/// The exit code, as decimal text; the last frame.
pub const EXIT: u8 = 3;
/// A terminal size, `rows cols`.
pub const RESIZE: u8 = 4;
/// The end of stdin.
pub const STDIN_EOF: u8 = 5;

/// The largest frame read.
const MAX_FRAME: usize = 1 << 20;

/// A frame's bytes.
pub fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&[kind, 0, 0, 0]);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// Reads one frame; `None` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 8];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data)?;
    Ok(Some((header[0], data)))
}

/// Where frames to berth go: shared by the stdin relay and the signal
/// thread, one whole frame at a time.
pub type Sink = Arc<Mutex<dyn Write + Send>>;

/// Writes one frame to the sink.
pub fn send(sink: &Sink, kind: u8, data: &[u8]) -> io::Result<()> {
    let mut w = sink
        .lock()
        .map_err(|_| io::Error::other("frame writer poisoned"))?;
    w.write_all(&frame(kind, data))?;
    w.flush()
}

/// The exit code of an `EXIT` frame's text, as a process exit code: 0-255
/// as given, anything else (berth's -1 for "unknown") 255.
pub fn exit_code(text: &[u8]) -> i32 {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|c| (0..=255).contains(c))
        .unwrap_or(255)
}

/// Relays a session until berth sends the exit code, and returns it.
/// `stdin`, if given, is copied in a thread of its own; otherwise stdin is
/// closed at once.
pub fn relay(
    frames: &mut impl Read,
    sink: &Sink,
    stdin: Option<Box<dyn Read + Send>>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, super::client::Error> {
    match stdin {
        Some(mut input) => {
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match input.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if send(&sink, STDIN, &buf[..n]).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                let _ = send(&sink, STDIN_EOF, b"");
            });
        }
        None => send(sink, STDIN_EOF, b"")?,
    }
    loop {
        match read_frame(frames)? {
            None => {
                return Err(super::client::Error::Protocol(
                    "the session ended without the command's exit code".into(),
                ));
            }
            Some((STDOUT, data)) => {
                out.write_all(&data)?;
                out.flush()?;
            }
            Some((STDERR, data)) => {
                err.write_all(&data)?;
                err.flush()?;
            }
            Some((EXIT, data)) => return Ok(exit_code(&data)),
            Some(_) => {} // Unknown frames are for later versions.
        }
    }
}

/// A terminal's size as `rows cols`, if it is a terminal.
pub fn size(fd: impl AsFd) -> Option<String> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass; the
    // descriptor is borrowed for the call.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then(|| format!("{} {}", ws.ws_row, ws.ws_col))
}

/// A terminal in raw mode; dropping it restores the settings it had.
#[derive(Debug)]
pub struct RawMode<F: AsFd> {
    term: F,
    saved: Termios,
}

impl<F: AsFd> RawMode<F> {
    /// Puts `term` in raw mode (no echo, no line editing, no signals from
    /// keys: Ctrl-C goes to the command).
    pub fn enter(term: F) -> nix::Result<RawMode<F>> {
        let saved = termios::tcgetattr(&term)?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&term, SetArg::TCSANOW, &raw)?;
        Ok(RawMode { term, saved })
    }

    /// The settings to restore.
    pub fn saved(&self) -> &Termios {
        &self.saved
    }
}

impl<F: AsFd> Drop for RawMode<F> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(&self.term, SetArg::TCSANOW, &self.saved);
    }
}

/// Runs the signal thread of a terminal session: SIGWINCH sends the new
/// size; SIGTERM, SIGHUP and SIGINT restore the terminal and end the
/// process (128 + the signal). The signals are blocked in the calling
/// thread first, so every thread started after inherits the mask and only
/// this one takes them.
pub fn watch_signals(sink: Sink, saved: Termios) -> nix::Result<()> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGWINCH,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGINT,
    ] {
        set.add(s);
    }
    set.thread_block()?;
    std::thread::spawn(move || {
        loop {
            let Ok(sig) = set.wait() else {
                return;
            };
            if sig == Signal::SIGWINCH {
                if let Some(s) = size(io::stdin())
                    && send(&sink, RESIZE, s.as_bytes()).is_err()
                {
                    return;
                }
                continue;
            }
            let _ = termios::tcsetattr(io::stdin(), SetArg::TCSANOW, &saved);
            std::process::exit(128 + sig as i32);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut bytes = frame(STDOUT, b"hello");
        bytes.extend(frame(EXIT, b"3"));
        assert_eq!(&bytes[..8], &[1, 0, 0, 0, 0, 0, 0, 5]);
        let mut r = bytes.as_slice();
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((STDOUT, b"hello".to_vec()))
        );
        assert_eq!(read_frame(&mut r).unwrap(), Some((EXIT, b"3".to_vec())));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        let mut cut: &[u8] = &[1, 0, 0, 0, 0];
        assert!(read_frame(&mut cut).is_err());
        let mut huge: &[u8] = &[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut huge).is_err());
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(b"0"), 0);
        assert_eq!(exit_code(b"137"), 137);
        assert_eq!(exit_code(b"-1"), 255);
        assert_eq!(exit_code(b"x"), 255);
    }

    #[test]
    fn a_session_relays_output_and_ends_with_the_exit_code() {
        let mut from_berth = frame(STDOUT, b"out ");
        from_berth.extend(frame(STDERR, b"err"));
        from_berth.extend(frame(9, b"future"));
        from_berth.extend(frame(STDOUT, b"more"));
        from_berth.extend(frame(EXIT, b"7"));
        let written = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink: Sink = written.clone();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = relay(&mut from_berth.as_slice(), &sink, None, &mut out, &mut err).unwrap();
        assert_eq!(
            (code, out.as_slice(), err.as_slice()),
            (7, &b"out more"[..], &b"err"[..])
        );
        // Without -i, stdin ends at once.
        assert_eq!(*written.lock().unwrap(), frame(STDIN_EOF, b""));
    }

    #[test]
    fn stdin_is_framed_then_closed() {
        let written = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink: Sink = written.clone();
        // berth's side waits until stdin has ended before it exits.
        let (mut rx, tx) = std::os::unix::net::UnixStream::pair().unwrap();
        let probe = written.clone();
        let berth = std::thread::spawn(move || {
            let mut tx = tx;
            let want = [frame(STDIN, b"abc"), frame(STDIN_EOF, b"")].concat();
            while *probe.lock().unwrap() != want {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            tx.write_all(&frame(EXIT, b"0")).unwrap();
        });
        let stdin: Box<dyn Read + Send> = Box::new(&b"abc"[..]);
        let code = relay(
            &mut rx,
            &sink,
            Some(stdin),
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .unwrap();
        berth.join().unwrap();
        assert_eq!(code, 0);
    }

    #[test]
    fn a_session_cut_short_is_an_error() {
        let sink: Sink = Arc::new(Mutex::new(Vec::<u8>::new()));
        let from_berth = frame(STDOUT, b"partial");
        let r = relay(
            &mut from_berth.as_slice(),
            &sink,
            None,
            &mut Vec::new(),
            &mut Vec::new(),
        );
        assert!(r.is_err());
    }
}

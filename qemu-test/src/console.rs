//! The serial console: a reader thread copies QEMU's stdout (where `-serial
//! stdio` sends ttyS0) into an in-memory buffer and a log file as it comes,
//! and waiters block on a condition variable until what they look for shows
//! up, the console closes (QEMU exited) or their deadline passes.
//!
//! Carriage returns are dropped, so the buffer and the log hold plain
//! `\n`-separated lines. Matching works on bytes, so a marker split across
//! two reads, or printed without a newline, is still found.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::error::{Error, Result};

/// How many console lines an error message quotes.
pub const TAIL_LINES: usize = 40;

/// A log file shared by the console and stderr readers.
#[derive(Debug, Clone)]
pub(crate) struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl LogFile {
    pub(crate) fn create(path: PathBuf) -> Result<Self> {
        let file = File::create(&path).map_err(|e| Error::io("create", &path, e))?;
        Ok(LogFile {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends and flushes; a log that cannot be written is not worth
    /// failing a test over, so errors are dropped.
    pub(crate) fn write(&self, bytes: &[u8]) {
        if let Ok(mut f) = self.file.lock() {
            let _ = f.write_all(bytes);
            let _ = f.flush();
        }
    }
}

#[derive(Debug, Default)]
struct State {
    buf: Vec<u8>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A reader thread that panicked mid-append leaves consistent bytes.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The outcome of [`Console::wait_until`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wait<T> {
    /// The matcher found what it returned.
    Found(T),
    /// The console closed without a match.
    Closed,
    /// The deadline passed without a match.
    TimedOut,
}

/// A captured console (or any byte stream).
#[derive(Debug)]
pub(crate) struct Console {
    shared: Arc<Shared>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl Console {
    /// Starts a reader thread that drains `src` into the buffer and `log`.
    pub(crate) fn spawn(src: impl Read + Send + 'static, log: LogFile, name: &str) -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let reader = std::thread::Builder::new()
            .name(format!("console-{name}"))
            .spawn(move || read_loop(src, &log, &s))
            .map_err(|e| Error::io("start the console reader for", name, e))?;
        Ok(Console {
            shared,
            reader: Mutex::new(Some(reader)),
        })
    }

    /// Everything captured so far, lossily decoded.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.shared.lock().buf).into_owned()
    }

    /// Bytes captured so far.
    pub(crate) fn len(&self) -> usize {
        self.shared.lock().buf.len()
    }

    /// The last `n` lines (an unterminated last line counts).
    pub(crate) fn tail(&self, n: usize) -> String {
        tail_of(&self.shared.lock().buf, n)
    }

    /// Calls `matcher(buffer)` now and on each new chunk, until it returns a
    /// match, the console closes, or `deadline` passes.
    pub(crate) fn wait_until<T>(
        &self,
        deadline: Instant,
        matcher: impl FnMut(&[u8]) -> Option<T>,
    ) -> Wait<T> {
        Self::wait_on(&self.shared, deadline, matcher)
    }

    fn wait_on<T>(
        shared: &Shared,
        deadline: Instant,
        mut matcher: impl FnMut(&[u8]) -> Option<T>,
    ) -> Wait<T> {
        let mut st = shared.lock();
        loop {
            if let Some(found) = matcher(&st.buf) {
                return Wait::Found(found);
            }
            if st.closed {
                return Wait::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Wait::TimedOut;
            }
            st = match shared.cond.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// A follower that yields everything the console prints, from its
    /// first byte on.
    pub(crate) fn follow(&self) -> ConsoleFollower {
        ConsoleFollower {
            shared: Arc::clone(&self.shared),
            pos: 0,
        }
    }

    /// Waits (up to `deadline`) for end of file, then joins the reader.
    pub(crate) fn finish(&self, deadline: Instant) {
        let closed = matches!(self.wait_until(deadline, |_| None::<()>), Wait::Closed);
        if closed {
            let reader = self.reader.lock().ok().and_then(|mut r| r.take());
            if let Some(r) = reader {
                let _ = r.join();
            }
        }
    }
}

/// What [`ConsoleFollower::next`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Followed {
    /// Bytes the console printed since the previous call (carriage returns
    /// dropped, as in the buffer).
    Bytes(Vec<u8>),
    /// Nothing new within the timeout.
    Idle,
    /// The console closed (QEMU exited) and everything was handed out.
    Closed,
}

/// A live view of a VM's console, for streaming it somewhere as it comes
/// (`berth-vm` copies it to the terminal). Independent of the
/// [`Vm::wait_for`](crate::Vm::wait_for) cursor, and usable from any thread:
/// it holds the console's buffer, not the VM.
#[derive(Debug)]
pub struct ConsoleFollower {
    shared: Arc<Shared>,
    pos: usize,
}

impl ConsoleFollower {
    /// Waits up to `timeout` for output past what this follower already
    /// handed out, and returns it.
    pub fn next(&mut self, timeout: std::time::Duration) -> Followed {
        let pos = self.pos;
        let deadline = Instant::now() + timeout;
        let got = Console::wait_on(&self.shared, deadline, |buf| {
            (buf.len() > pos).then(|| buf[pos..].to_vec())
        });
        match got {
            Wait::Found(bytes) => {
                self.pos += bytes.len();
                Followed::Bytes(bytes)
            }
            Wait::Closed => Followed::Closed,
            Wait::TimedOut => Followed::Idle,
        }
    }
}

fn read_loop(mut src: impl Read, log: &LogFile, shared: &Shared) {
    let mut chunk = [0u8; 8192];
    loop {
        match src.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                let clean: Vec<u8> = chunk[..n].iter().copied().filter(|&b| b != b'\r').collect();
                log.write(&clean);
                shared.lock().buf.extend_from_slice(&clean);
                shared.cond.notify_all();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    shared.lock().closed = true;
    shared.cond.notify_all();
}

/// Copies QEMU's stderr into `sink` and the log (each line prefixed with
/// `[qemu] `), on a thread of its own.
pub(crate) fn spawn_stderr_reader(
    src: impl Read + Send + 'static,
    log: LogFile,
    sink: Arc<Mutex<String>>,
    name: &str,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("stderr-{name}"))
        .spawn(move || {
            let mut r = BufReader::new(src);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end();
                        log.write(format!("[qemu] {text}\n").as_bytes());
                        if let Ok(mut s) = sink.lock() {
                            s.push_str(text);
                            s.push('\n');
                        }
                    }
                }
            }
        })
        .map_err(|e| Error::io("start the stderr reader for", name, e))
}

/// The position of `needle` in `hay[from..]`, as absolute offsets.
pub(crate) fn find_from(hay: &[u8], from: usize, needle: &[u8]) -> Option<(usize, usize)> {
    let hay_tail = hay.get(from..)?;
    if needle.is_empty() {
        return Some((from, from));
    }
    hay_tail
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| (from + p, from + p + needle.len()))
}

/// The first complete line ending after `from` whose part after `from`
/// satisfies `pred`; returns its bounds (the end includes the newline).
pub(crate) fn find_line_from(
    hay: &[u8],
    from: usize,
    mut pred: impl FnMut(&str) -> bool,
) -> Option<(usize, usize)> {
    let mut start = from.min(hay.len());
    while let Some(nl) = hay[start..].iter().position(|&b| b == b'\n') {
        let end = start + nl;
        if pred(&String::from_utf8_lossy(&hay[start..end])) {
            let line_start = line_start(hay, start);
            return Some((line_start, end + 1));
        }
        start = end + 1;
    }
    None
}

/// The whole line (without its newline) around offset `at`.
pub(crate) fn line_at(hay: &[u8], at: usize) -> String {
    let start = line_start(hay, at);
    let end = hay[at.min(hay.len())..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(hay.len(), |p| at + p);
    String::from_utf8_lossy(&hay[start..end]).into_owned()
}

fn line_start(hay: &[u8], at: usize) -> usize {
    hay[..at.min(hay.len())]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1)
}

fn tail_of(buf: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(buf);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let lines: Vec<&str> = text.split('\n').collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Formats the tail of a console for an error message: a newline, a header,
/// the indented lines.
pub(crate) fn format_tail(tail: &str) -> String {
    let mut s = format!("\n--- last {TAIL_LINES} console lines ---");
    for l in tail.lines() {
        s.push_str("\n| ");
        s.push_str(l);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    fn console() -> (Console, UnixStream, PathBuf) {
        let (a, b) = UnixStream::pair().expect("pair");
        let dir = crate::paths::log_dir();
        crate::paths::create_dir_all(&dir).expect("mkdir");
        let path = dir.join(format!(
            "unit-console-{}-{}.log",
            std::process::id(),
            crate::paths::next_seq()
        ));
        let log = LogFile::create(path.clone()).expect("log");
        (Console::spawn(b, log, "unit").expect("spawn"), a, path)
    }

    #[test]
    fn finds_markers_across_chunks_and_strips_cr() {
        let (c, mut w, log) = console();
        w.write_all(b"boot\r\nMAR").expect("write");
        let deadline = Instant::now() + Duration::from_millis(100);
        assert_eq!(
            c.wait_until(deadline, |b| find_from(b, 0, b"MARKER")),
            Wait::TimedOut
        );
        w.write_all(b"KER ok\r\nnext\n").expect("write");
        let deadline = Instant::now() + Duration::from_secs(5);
        let found = c.wait_until(deadline, |b| find_from(b, 0, b"MARKER"));
        assert_eq!(found, Wait::Found((5, 11)));
        let text = c.text();
        assert_eq!(line_at(text.as_bytes(), 5), "MARKER ok");
        assert_eq!(
            find_line_from(text.as_bytes(), 11, |l| l.contains("ext")),
            Some((15, 20))
        );
        drop(w);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(c.wait_until(deadline, |_| None::<()>), Wait::Closed);
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "boot\nMARKER ok\nnext\n"
        );
        std::fs::remove_file(log).expect("rm");
    }

    #[test]
    fn a_follower_sees_every_byte_once_then_the_close() {
        let (c, mut w, log) = console();
        let mut f = c.follow();
        w.write_all(b"one\r\ntw").expect("write");
        let mut seen = Vec::new();
        while seen.len() < 6 {
            match f.next(Duration::from_secs(5)) {
                Followed::Bytes(b) => seen.extend(b),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, b"one\ntw");
        assert_eq!(f.next(Duration::from_millis(50)), Followed::Idle);
        w.write_all(b"o\n").expect("write");
        drop(w);
        assert_eq!(
            f.next(Duration::from_secs(5)),
            Followed::Bytes(b"o\n".to_vec())
        );
        assert_eq!(f.next(Duration::from_secs(5)), Followed::Closed);
        // A second follower starts from the beginning.
        assert_eq!(
            c.follow().next(Duration::from_secs(5)),
            Followed::Bytes(b"one\ntwo\n".to_vec())
        );
        std::fs::remove_file(log).expect("rm");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let buf: String = (1..=50).map(|i| format!("L{i:02}\n")).collect();
        let t = tail_of(buf.as_bytes(), 40);
        assert!(t.starts_with("L11\n"), "{t}");
        assert!(t.ends_with("L50"), "{t}");
        assert_eq!(tail_of(b"a\nb", 1), "b");
        assert!(format_tail("x\ny").ends_with("\n| x\n| y"));
    }

    #[test]
    fn find_from_respects_the_cursor() {
        let hay = b"L20\nL21\n";
        assert_eq!(find_from(hay, 0, b"L2"), Some((0, 2)));
        assert_eq!(find_from(hay, 2, b"L2"), Some((4, 6)));
        assert_eq!(find_from(hay, 6, b"L2"), None);
        assert_eq!(find_from(hay, 99, b"L2"), None);
    }
}

//! Progress reporting on stderr: one line per step, with the time since the
//! build started, and a running percentage for long byte-bound steps
//! (compression) when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Where build steps are reported. Quiet reporters print nothing.
#[derive(Debug, Clone)]
pub struct Progress {
    enabled: bool,
    tty: bool,
    start: Instant,
}

impl Progress {
    /// Reports to stderr.
    pub fn stderr() -> Self {
        Progress {
            enabled: true,
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
        }
    }

    /// Reports nothing.
    pub fn quiet() -> Self {
        Progress {
            enabled: false,
            tty: false,
            start: Instant::now(),
        }
    }

    /// Time since this reporter was made.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Reports the start of a step.
    pub fn step(&self, what: &str) {
        if self.enabled {
            eprintln!(
                "berth-image: [{:6.2}s] {what}",
                self.elapsed().as_secs_f64()
            );
        }
    }

    /// Reports a warning (always printed, even when quiet: a warning is
    /// something the user must see).
    pub fn warn(&self, what: &str) {
        eprintln!("berth-image: warning: {what}");
    }

    /// A writer that passes bytes to `inner` and, on a terminal, shows how
    /// far through `total` bytes it is.
    pub fn meter<W: Write>(&self, what: &str, total: u64, inner: W) -> Meter<W> {
        Meter {
            inner,
            what: what.to_string(),
            total: total.max(1),
            done: 0,
            last_percent: None,
            show: self.enabled && self.tty,
        }
    }
}

/// See [`Progress::meter`].
#[derive(Debug)]
pub struct Meter<W> {
    inner: W,
    what: String,
    total: u64,
    done: u64,
    last_percent: Option<u64>,
    show: bool,
}

impl<W> Meter<W> {
    /// Ends the meter's line and returns the inner writer.
    pub fn finish(self) -> W {
        if self.show && self.last_percent.is_some() {
            eprintln!();
        }
        self.inner
    }
}

impl<W: Write> Write for Meter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.done += n as u64;
        let percent = (self.done.min(self.total) * 100) / self.total;
        if self.show && self.last_percent != Some(percent) {
            self.last_percent = Some(percent);
            eprint!("\rberth-image:           {} {percent:3}%", self.what);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

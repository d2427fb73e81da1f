//! Where a container's output goes: its rotated log file (everything), the
//! console (with its name as prefix, within a budget), and remote syslog,
//! each as its manifest entry's `logging` says.
//!
//! The console is a serial line on many devices: a container that floods
//! its output must not keep PID 1 writing to it. Each container may show
//! [`CONSOLE_BURST`] lines at once and [`CONSOLE_RATE`] lines a second on
//! the console; lines beyond that still reach the file and syslog, and a
//! note says how many the console skipped.

use std::time::{Instant, SystemTime};

use berth_config::{ContainerLogging, LogFiles};

use super::files::{self, Rotating};
use super::syslog;
use crate::supervisor::output::Stream;

/// Lines a container may show on the console at once.
pub const CONSOLE_BURST: f64 = 200.0;
/// Lines a second a container may show on the console, in the long run.
pub const CONSOLE_RATE: f64 = 50.0;

/// A token bucket for console lines.
#[derive(Debug)]
struct Budget {
    tokens: f64,
    last: Instant,
    skipped: u64,
}

impl Budget {
    fn new(now: Instant) -> Budget {
        Budget {
            tokens: CONSOLE_BURST,
            last: now,
            skipped: 0,
        }
    }

    /// How many of `n` lines may be shown now.
    fn take(&mut self, now: Instant, n: usize) -> usize {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * CONSOLE_RATE).min(CONSOLE_BURST);
        let can = (self.tokens.floor() as usize).min(n);
        self.tokens -= can as f64;
        self.skipped += (n - can) as u64;
        can
    }
}

/// One container's log, kept across its restarts.
#[derive(Debug)]
pub struct ContainerLog {
    name: String,
    console: Option<Budget>,
    file: Option<Rotating>,
    syslog: bool,
    /// Its current process, for syslog's PROCID.
    pub pid: u32,
    /// Lines as stored, for `logs --follow`: a channel of
    /// [`FOLLOW_BACKLOG`] lines while anyone follows, none otherwise (an
    /// idle container keeps no backlog).
    followers: Option<tokio::sync::broadcast::Sender<String>>,
}

/// Lines a follower may fall behind by before it misses some.
pub const FOLLOW_BACKLOG: usize = 1024;

impl ContainerLog {
    /// The log of container `name`.
    pub fn new(name: &str, cfg: &ContainerLogging, files: Option<&LogFiles>) -> ContainerLog {
        ContainerLog {
            name: name.to_string(),
            console: cfg.console.then(|| Budget::new(Instant::now())),
            file: files
                .filter(|_| cfg.files)
                .map(|f| Rotating::new(&f.dir, name, f.max_size, f.max_files)),
            syslog: cfg.syslog,
            pid: 0,
            followers: None,
        }
    }

    /// Its files, oldest first (for `logs`).
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        self.file.as_ref().map(Rotating::all).unwrap_or_default()
    }

    /// New lines, as stored, as they come.
    pub fn follow(&mut self) -> tokio::sync::broadcast::Receiver<String> {
        self.followers
            .get_or_insert_with(|| tokio::sync::broadcast::channel(FOLLOW_BACKLOG).0)
            .subscribe()
    }

    /// Takes a batch of lines from one stream.
    pub fn lines(&mut self, stream: Stream, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        let tag = match stream {
            Stream::Out => "stdout",
            Stream::Err => "stderr",
        };
        // The last follower gone, its channel goes too.
        if self
            .followers
            .as_ref()
            .is_some_and(|f| f.receiver_count() == 0)
        {
            self.followers = None;
        }
        // Each line is stamped and formatted once, for the file and for
        // followers alike.
        let followed = self.followers.is_some();
        if followed || self.file.is_some() {
            let now = SystemTime::now();
            let mut buf = String::new();
            for l in lines {
                let start = buf.len();
                buf.push_str(&files::line(now, tag, l));
                if let Some(f) = self.followers.as_ref() {
                    let stored = buf[start..].trim_end_matches('\n');
                    let _ = f.send(stored.to_string());
                }
            }
            if let Some(f) = self.file.as_mut() {
                let r = f.write(buf.as_bytes());
                files::note(&self.name, f.path(), r);
            }
        }
        if self.syslog {
            let level = match stream {
                Stream::Out => syslog::Level::Info,
                Stream::Err => syslog::Level::Error,
            };
            for l in lines {
                syslog::send(&self.name, self.pid, level, l);
            }
        }
        if let Some(b) = self.console.as_mut() {
            let before = b.skipped;
            let show = b.take(Instant::now(), lines.len());
            super::container_lines(&self.name, stream, &lines[..show]);
            if before == 0 && b.skipped > 0 {
                log::warn!(
                    "{}: output faster than the console shows; skipping lines there (the log file has them)",
                    self.name
                );
            } else if b.skipped > 0 && show > 0 {
                let n = std::mem::take(&mut b.skipped);
                log::info!("{}: {n} line(s) not shown on the console", self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_budget_allows_a_burst_then_a_rate() {
        let t = Instant::now();
        let mut b = Budget::new(t);
        assert_eq!(b.take(t, 1000), 200);
        assert_eq!(b.skipped, 800);
        assert_eq!(b.take(t, 10), 0);
        assert_eq!(b.take(t + Duration::from_secs(1), 100), 50);
        // It refills to the burst, no further.
        assert_eq!(b.take(t + Duration::from_secs(100), 1000), 200);
    }

    #[test]
    fn files_get_every_line_with_time_and_stream() {
        let d = tempfile::tempdir().unwrap();
        let files = LogFiles {
            dir: d.path().to_path_buf(),
            max_size: 1 << 20,
            max_files: 2,
        };
        let cfg = ContainerLogging {
            console: false,
            files: true,
            syslog: false,
        };
        let mut log = ContainerLog::new("web", &cfg, Some(&files));
        let many: Vec<String> = (0..1000).map(|i| format!("line {i}")).collect();
        log.lines(Stream::Out, &many);
        log.lines(Stream::Err, &["oops".to_string()]);
        let text = std::fs::read_to_string(d.path().join("web.log")).unwrap();
        assert_eq!(text.lines().count(), 1001);
        let last = text.lines().last().unwrap();
        assert!(last.ends_with("Z stderr oops"), "{last}");
        assert!(text.lines().next().unwrap().ends_with("Z stdout line 0"));
    }

    #[test]
    fn followers_get_the_lines_as_stored() {
        let d = tempfile::tempdir().unwrap();
        let files = LogFiles {
            dir: d.path().to_path_buf(),
            max_size: 1 << 20,
            max_files: 2,
        };
        let cfg = ContainerLogging {
            console: false,
            files: true,
            syslog: false,
        };
        let mut log = ContainerLog::new("web", &cfg, Some(&files));
        let mut rx = log.follow();
        log.lines(Stream::Out, &["one".to_string(), "two".to_string()]);
        log.lines(Stream::Err, &["oops".to_string()]);
        let text = std::fs::read_to_string(d.path().join("web.log")).unwrap();
        let stored: Vec<&str> = text.lines().collect();
        let mut followed = Vec::new();
        while let Ok(l) = rx.try_recv() {
            followed.push(l);
        }
        assert_eq!(followed, stored);
        assert!(stored[2].ends_with("Z stderr oops"), "{text}");
        // Without a file, followers still get them.
        let mut log = ContainerLog::new("db", &cfg, None);
        let mut rx = log.follow();
        log.lines(Stream::Out, &["alone".to_string()]);
        assert!(rx.try_recv().unwrap().ends_with("Z stdout alone"));
    }

    #[test]
    fn a_backlog_only_while_followed() {
        let cfg = ContainerLogging {
            console: false,
            files: false,
            syslog: false,
        };
        let before = crate::test_alloc::live_bytes();
        let mut log = ContainerLog::new("idle", &cfg, None);
        let unfollowed = crate::test_alloc::live_bytes() - before;
        assert!(
            unfollowed < 1024,
            "an unfollowed log keeps {unfollowed} bytes"
        );
        let rx = log.follow();
        let followed = crate::test_alloc::live_bytes() - before;
        // The channel's slots, at least a pointer's worth each.
        assert!(followed > (FOLLOW_BACKLOG * 8) as isize, "{followed}");
        drop(rx);
        log.lines(Stream::Out, &["after".to_string()]);
        let left = crate::test_alloc::live_bytes() - before;
        assert!(
            left < 1024,
            "the last follower gone, the log keeps {left} bytes"
        );
        // A new follower gets the lines from then on.
        let mut rx = log.follow();
        log.lines(Stream::Out, &["again".to_string()]);
        assert!(rx.try_recv().unwrap().ends_with("Z stdout again"));
    }
}

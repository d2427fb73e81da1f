//! berth's own log records: formatted once, written to the console and, once
//! `/dev` is mounted, to `/dev/kmsg` with their level.
//!
//! Console lines look like `[    2.104] berth: boot: mounted /proc (0.3 ms)`,
//! with `WARN` or `ERROR` before the area for those levels: readable for people,
//! and a fixed prefix for the test harness. The kernel itself echoes kmsg
//! records whose level is below its console loglevel, so for those berth does
//! not write the console line too, and no line shows twice.

pub mod container;
pub mod files;
pub mod syslog;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The longest record sent to /dev/kmsg (the kernel's own limit is about 1 KiB).
const KMSG_MAX: usize = 900;

struct Sinks {
    /// /dev/kmsg, once attached.
    kmsg: Option<File>,
    /// berth.log, once configured.
    file: Option<files::Rotating>,
    /// The kernel's console loglevel: kmsg records below it reach the console
    /// through the kernel.
    kernel_echo_below: u8,
}

struct Logger {
    sinks: Mutex<Sinks>,
}

static LOGGER: Logger = Logger {
    sinks: Mutex::new(Sinks {
        kmsg: None,
        file: None,
        kernel_echo_below: 0,
    }),
};

/// Installs the logger, writing to stderr (the console for PID 1) only.
pub fn init(level: LevelFilter) {
    // A second call only changes the level.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Changes the level, e.g. once the manifest has been read.
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// The filter for a manifest's console level.
pub fn level(l: berth_config::LogLevel) -> LevelFilter {
    match l {
        berth_config::LogLevel::Error => LevelFilter::Error,
        berth_config::LogLevel::Warn => LevelFilter::Warn,
        berth_config::LogLevel::Info => LevelFilter::Info,
        berth_config::LogLevel::Debug => LevelFilter::Debug,
        berth_config::LogLevel::Trace => LevelFilter::Trace,
    }
}

/// Starts copying records to /dev/kmsg. Called once /dev and /proc are mounted.
pub fn attach_kmsg() {
    let kmsg = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open("/dev/kmsg");
    let echo = std::fs::read_to_string("/proc/sys/kernel/printk")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    // Userspace writes to /dev/kmsg are rate-limited by default; berth's
    // records are few and all worth keeping.
    let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");
    if let Ok(mut s) = LOGGER.sinks.lock() {
        s.kmsg = kmsg.ok();
        s.kernel_echo_below = echo;
    }
}

/// Starts berth's own log file (`berth.log` in the files' directory) and
/// remote syslog, as the manifest says. Runs in the event loop.
pub fn configure(l: &berth_config::Logging, hostname: &str) {
    if let Some(f) = &l.files
        && let Ok(mut s) = LOGGER.sinks.lock()
    {
        s.file = Some(files::Rotating::new(
            &f.dir,
            "berth",
            f.max_size,
            f.max_files,
        ));
    }
    if let Some(cfg) = &l.syslog {
        match syslog::start(cfg, hostname) {
            Ok(what) => log::info!("forwarding logs to syslog, {what}"),
            Err(e) => log::error!("no remote syslog: {e}"),
        }
    }
}

/// Closes berth's own log file for good (at shutdown, so that the data
/// partition it may live on can be unmounted); records still reach the
/// console and kmsg.
pub fn close_files() {
    if let Ok(mut s) = LOGGER.sinks.lock() {
        s.file = None;
    }
}

/// Seconds since boot, as the kernel stamps its own messages.
pub fn uptime() -> std::time::Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(std::time::Duration::from)
        .unwrap_or_default()
}

fn syslog_level(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The short area name for a record: `berth::boot::modules` gives `boot`, the
/// crate root gives none, and a bare target is used as it is.
fn area(target: &str) -> Option<&str> {
    match target.split("::").collect::<Vec<_>>().as_slice() {
        ["berth"] => None,
        ["berth", area, ..] => Some(area),
        [t] => Some(t),
        [.., last] => Some(last),
        [] => None,
    }
}

/// Formats a record's text after the `berth: ` prefix.
pub fn body(level: Level, target: &str, msg: &std::fmt::Arguments<'_>) -> String {
    let lvl = match level {
        Level::Error => "ERROR ",
        Level::Warn => "WARN ",
        _ => "",
    };
    match area(target) {
        Some(a) => format!("{lvl}{a}: {msg}"),
        None => format!("{lvl}{msg}"),
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let body = body(record.level(), record.target(), record.args());
        let level = syslog_level(record.level());
        if syslog::enabled() {
            let l = match record.level() {
                Level::Error => syslog::Level::Error,
                Level::Warn => syslog::Level::Warning,
                Level::Info => syslog::Level::Info,
                Level::Debug | Level::Trace => syslog::Level::Debug,
            };
            syslog::send("berth", 1, l, &body);
        }
        let Ok(mut sinks) = self.sinks.lock() else {
            return;
        };
        // The outcome is noted once the lock is released: what it leads to
        // (a full disk's report) is itself a record.
        let file_write = sinks.file.as_mut().map(|f| {
            let line = files::line(std::time::SystemTime::now(), "berth", &body);
            f.write(line.as_bytes())
                .map_err(|e| (f.path().to_path_buf(), e))
        });
        let mut echoed = false;
        if let Some(k) = sinks.kmsg.as_mut() {
            let mut line = format!("<{level}>berth: {body}");
            truncate(&mut line, KMSG_MAX);
            line.push('\n');
            echoed = k.write_all(line.as_bytes()).is_ok() && level < sinks.kernel_echo_below;
        }
        if !echoed {
            let t = uptime();
            let line = format!(
                "[{:>5}.{:03}] berth: {body}\n",
                t.as_secs(),
                t.subsec_millis()
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        drop(sinks);
        match file_write {
            Some(Ok(())) => crate::storage::full::write_ok(),
            Some(Err((path, e))) => files::note("berth", &path, Err(e)),
            None => {}
        }
    }

    fn flush(&self) {}
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Shows lines of a container's output on the console, each prefixed with
/// the container's name (stdout with `|`, stderr with `!`), in one write.
pub fn container_lines(name: &str, stream: crate::supervisor::output::Stream, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let t = uptime();
    let mark = match stream {
        crate::supervisor::output::Stream::Out => "|",
        crate::supervisor::output::Stream::Err => "!",
    };
    let mut text = String::new();
    for line in lines {
        text += &format!(
            "[{:>5}.{:03}] {name} {mark} {line}\n",
            t.as_secs(),
            t.subsec_millis()
        );
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Writes a line straight to the console, bypassing the logger's lock: for the
/// panic hook, which may run while the logger is held.
pub fn emergency(msg: &str) {
    let t = uptime();
    let line = format!(
        "[{:>5}.{:03}] berth: ERROR {msg}\n",
        t.as_secs(),
        t.subsec_millis()
    );
    // stderr's lock is re-entrant, so this works even when the panic happened
    // inside a console write on this thread.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_is_the_module_below_the_crate() {
        assert_eq!(area("berth::boot::modules"), Some("boot"));
        assert_eq!(area("berth"), None);
        assert_eq!(area("ready"), Some("ready"));
        assert_eq!(area("hyper::proto::h1"), Some("h1"));
    }

    #[test]
    fn body_marks_warnings_and_errors() {
        let b = body(Level::Warn, "berth::boot", &format_args!("no such module"));
        assert_eq!(b, "WARN boot: no such module");
        let b = body(Level::Info, "berth", &format_args!("ready in 12 ms"));
        assert_eq!(b, "ready in 12 ms");
        let b = body(Level::Error, "berth::power", &format_args!("x"));
        assert_eq!(b, "ERROR power: x");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut s = "aé".repeat(10);
        truncate(&mut s, 4);
        assert_eq!(s, "aéa");
    }
}

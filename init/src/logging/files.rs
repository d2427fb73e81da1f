//! Log files rotated by size: `NAME.log`, then `NAME.log.1` (newer) up to
//! `NAME.log.<max_files - 1>` (older). At most `max_files` files per log
//! exist, the current one included. A file survives its container's
//! restarts: it is opened for appending.
//!
//! Lines are `<RFC 3339 UTC time> <stream> <text>`. Writes are best effort:
//! a full or failing disk never stops PID 1. [`note`] reports a failure
//! once: a full disk once for all of berth's writes
//! ([`crate::storage::full`]), any other error once per file until a write
//! succeeds again. The writer reopens the file at the next write.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A rotating log file.
#[derive(Debug)]
pub struct Rotating {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    file: Option<File>,
    size: u64,
    failed: bool,
}

impl Rotating {
    /// A log at `<dir>/<name>.log`. Nothing is opened until the first write.
    pub fn new(dir: &Path, name: &str, max_size: u64, max_files: u32) -> Rotating {
        Rotating {
            path: dir.join(format!("{name}.log")),
            max_size: max_size.max(1),
            max_files: max_files.max(1),
            file: None,
            size: 0,
            failed: false,
        }
    }

    /// The current file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The files that exist, oldest first, the current one last.
    pub fn all(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = (1..self.max_files)
            .rev()
            .map(|n| self.rotated(n))
            .filter(|p| p.exists())
            .collect();
        if self.path.exists() {
            v.push(self.path.clone());
        }
        v
    }

    fn open(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("log file not open"))
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// Shifts the files: the current one becomes `.1`, the oldest beyond
    /// `max_files` is removed.
    fn rotate(&mut self) {
        self.file = None;
        self.size = 0;
        if self.max_files == 1 {
            let _ = std::fs::remove_file(&self.path);
            return;
        }
        let _ = std::fs::remove_file(self.rotated(self.max_files - 1));
        for n in (1..self.max_files - 1).rev() {
            let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
        }
        let _ = std::fs::rename(&self.path, self.rotated(1));
    }

    /// Appends already formatted lines (each ending in a newline), rotating
    /// first if they would not fit. A failure says whether it is the first
    /// since the last success, so the caller can report it once ([`note`]).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.size > 0 && self.size + bytes.len() as u64 > self.max_size {
            self.rotate();
        }
        let r = self.open().and_then(|f| f.write_all(bytes));
        match r {
            Ok(()) => {
                self.size += bytes.len() as u64;
                self.failed = false;
                Ok(())
            }
            Err(error) => {
                // Reopen next time: the file may have been removed, or the
                // disk may have room again. A partly written line is
                // already counted by the file's length when it is reopened.
                self.file = None;
                let first = !std::mem::replace(&mut self.failed, true);
                Err(WriteError { error, first })
            }
        }
    }
}

/// A failed log write.
#[derive(Debug)]
pub struct WriteError {
    /// Why.
    pub error: std::io::Error,
    /// Whether it is the first failure since the last success.
    pub first: bool,
}

/// Reports the outcome of a write to the log file at `path`: a full disk
/// through [`crate::storage::full`] (one event for all of berth's
/// writes), any other error with a warning the first time. `who` names
/// the log (a container, or berth).
pub fn note(who: &str, path: &Path, r: Result<(), WriteError>) {
    match r {
        Ok(()) => crate::storage::full::write_ok(),
        Err(e) => {
            if !crate::storage::full::write_failed(path, &e.error) && e.first {
                log::warn!("{who}: cannot write {}: {}", path.display(), e.error);
            }
        }
    }
}

/// Formats one log line.
pub fn line(at: SystemTime, stream: &str, text: &str) -> String {
    format!("{} {stream} {text}\n", rfc3339(at))
}

/// A UTC time as RFC 3339 with microseconds: `2026-11-30T05:43:12.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_015_129_553_104);
        assert_eq!(rfc3339(t), "2026-11-30T05:05:29.553104Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(rfc3339(leap).starts_with("2000-02-29T00:00:00"));
        assert_eq!(
            line(SystemTime::UNIX_EPOCH, "stdout", "hi"),
            "1970-01-01T00:00:00.000000Z stdout hi\n"
        );
    }

    #[test]
    fn rotation_keeps_at_most_max_files() {
        let d = tempfile::tempdir().unwrap();
        let mut r = Rotating::new(d.path(), "web", 100, 3);
        for i in 0..50 {
            r.write(format!("line {i:03} ..........................\n").as_bytes())
                .unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["web.log", "web.log.1", "web.log.2"]);
        for n in &names {
            assert!(
                std::fs::metadata(d.path().join(n)).unwrap().len() <= 100,
                "{n}"
            );
        }
        // The newest lines are in web.log, the next older in web.log.1.
        let cur = std::fs::read_to_string(d.path().join("web.log")).unwrap();
        assert!(cur.contains("line 049"));
        let older = std::fs::read_to_string(d.path().join("web.log.1")).unwrap();
        assert!(!older.contains("line 049"));
    }

    #[test]
    fn appends_across_reopens_like_a_restart() {
        let d = tempfile::tempdir().unwrap();
        Rotating::new(d.path(), "a", 1000, 2)
            .write(b"one\n")
            .unwrap();
        Rotating::new(d.path(), "a", 1000, 2)
            .write(b"two\n")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("a.log")).unwrap(),
            "one\ntwo\n"
        );
    }

    #[test]
    fn a_failing_directory_is_reported_once() {
        let d = tempfile::tempdir().unwrap();
        let blocker = d.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let mut r = Rotating::new(&blocker.join("sub"), "x", 100, 2);
        assert!(r.write(b"a\n").unwrap_err().first);
        assert!(!r.write(b"b\n").unwrap_err().first);
        // Once it works again, the next failure is a first one again (the
        // file is reopened after a rotation).
        std::fs::remove_file(&blocker).unwrap();
        assert!(r.write(b"c\n").is_ok());
        std::fs::remove_dir_all(&blocker).unwrap();
        std::fs::write(&blocker, "").unwrap();
        assert!(r.write(&[b'd'; 100]).unwrap_err().first);
    }
}

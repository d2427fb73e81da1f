//! A full disk, as berth's own writes meet it.
//!
//! berth's writes (its log file, the containers' log files, its state
//! files) report their outcome here. The first one that fails for want of
//! space (ENOSPC, EDQUOT) starts a *full* episode: one error line, one
//! `disk_full` event on `GET /v1/events`; the writes that fail meanwhile
//! are dropped and counted, without a line each. The first write that
//! succeeds again ends the episode: one line, one `disk_ok` event with the
//! count. Containers are not touched: they go on, and their own writes see
//! ENOSPC as on any full disk.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The state of full episodes.
#[derive(Debug)]
pub struct Tracker {
    full: AtomicBool,
    dropped: AtomicU64,
}

impl Tracker {
    /// No episode.
    pub const fn new() -> Tracker {
        Tracker {
            full: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }

    /// Takes a failed write. Returns `None` when it is not for want of
    /// space, `Some(true)` when it begins an episode.
    pub fn failed(&self, e: &std::io::Error) -> Option<bool> {
        if !is_no_space(e) {
            return None;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        Some(!self.full.swap(true, Ordering::SeqCst))
    }

    /// Takes a write that succeeded. Returns the writes dropped when it
    /// ends an episode.
    pub fn ok(&self) -> Option<u64> {
        // One load on the common path: every log line comes here.
        if !self.full.load(Ordering::Relaxed) || !self.full.swap(false, Ordering::SeqCst) {
            return None;
        }
        Some(self.dropped.swap(0, Ordering::SeqCst))
    }

    /// Whether an episode is going on.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Writes dropped in the current episode.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new()
    }
}

/// berth's episodes.
static TRACKER: Tracker = Tracker::new();
static EVENTS: Mutex<Option<tokio::sync::broadcast::Sender<String>>> = Mutex::new(None);

/// Whether `e` says the disk (or the writer's quota) is full.
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Whether a full episode is going on.
pub fn is_full() -> bool {
    TRACKER.is_full()
}

/// Writes dropped in the current episode.
pub fn dropped() -> u64 {
    TRACKER.dropped()
}

/// Where the episodes' events go (`GET /v1/events`).
pub fn set_events(tx: tokio::sync::broadcast::Sender<String>) {
    if let Ok(mut e) = EVENTS.lock() {
        *e = Some(tx);
    }
}

fn event(v: serde_json::Value) {
    if let Ok(e) = EVENTS.lock()
        && let Some(tx) = e.as_ref()
        && tx.receiver_count() > 0
    {
        let _ = tx.send(v.to_string());
    }
}

/// The `disk_full` event.
pub fn full_event(root: &Path, e: &std::io::Error) -> serde_json::Value {
    serde_json::json!({
        "time": crate::logging::files::rfc3339(std::time::SystemTime::now()),
        "event": "disk_full",
        "path": root,
        "error": e.to_string(),
    })
}

/// The `disk_ok` event.
pub fn ok_event(root: &Path, free: Option<u64>, dropped: u64) -> serde_json::Value {
    serde_json::json!({
        "time": crate::logging::files::rfc3339(std::time::SystemTime::now()),
        "event": "disk_ok",
        "path": root,
        "free_bytes": free,
        "dropped_writes": dropped,
    })
}

/// Notes that one of berth's writes to `path` failed with `e`. Returns
/// whether it was for want of space, and so is reported here (once per
/// episode): the caller then says nothing more.
pub fn write_failed(path: &Path, e: &std::io::Error) -> bool {
    match TRACKER.failed(e) {
        None => false,
        Some(false) => true,
        Some(true) => {
            let root = super::layout().root;
            log::error!(
                "{} is full ({e}, writing {}): berth drops its log lines and state changes until space is freed; containers go on",
                root.display(),
                path.display()
            );
            event(full_event(&root, e));
            true
        }
    }
}

/// Notes that one of berth's writes succeeded: ends a full episode.
pub fn write_ok() {
    let Some(dropped) = TRACKER.ok() else {
        return;
    };
    let root = super::layout().root;
    let free = super::space(&root).map(|(_, free)| free);
    log::info!(
        "{} has room again ({} MiB free); {dropped} write(s) were dropped while it was full",
        root.display(),
        free.map_or_else(|| "?".to_string(), |f| (f >> 20).to_string())
    );
    event(ok_event(&root, free, dropped));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_begins_once_and_a_success_ends_it() {
        let t = Tracker::new();
        let other = std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(t.failed(&other), None, "not a full disk");
        assert!(!t.is_full());
        assert_eq!(t.ok(), None, "nothing to end");

        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(t.failed(&full), Some(true));
        for _ in 0..99 {
            assert_eq!(t.failed(&full), Some(false));
        }
        assert!(t.is_full());
        assert_eq!(t.dropped(), 100);
        assert_eq!(t.ok(), Some(100));
        assert_eq!(t.ok(), None);
        assert!(!t.is_full());
        let quota = std::io::Error::from_raw_os_error(libc::EDQUOT);
        assert_eq!(t.failed(&quota), Some(true), "a new episode");
        assert_eq!(t.ok(), Some(1));
    }

    #[test]
    fn events_name_the_partition_and_the_dropped_writes() {
        let e = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let v = full_event(Path::new("/var/lib/berth"), &e);
        assert_eq!(v["event"], "disk_full");
        assert_eq!(v["path"], "/var/lib/berth");
        assert!(v["error"].as_str().unwrap().contains("No space left"));
        let v = ok_event(Path::new("/data"), Some(4096), 7);
        assert_eq!(v["event"], "disk_ok");
        assert_eq!(v["free_bytes"], 4096);
        assert_eq!(v["dropped_writes"], 7);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
}

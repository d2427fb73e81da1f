//! A full disk, as berth's own writes meet it.
//!
//! A *full* episode begins when one of berth's writes (its log file, the
//! containers' log files, its state files) fails for want of space
//! (ENOSPC, EDQUOT), or when the supervisor's periodic look ([`check`],
//! every [`CHECK_EVERY`]) finds less than [`FULL_BELOW`] free: appends to
//! a log file go on succeeding for a while on a full filesystem, as long
//! as they fit in the file's last block. It is reported once: one error
//! line, one `disk_full` event on `GET /v1/events`. The writes that fail
//! meanwhile are dropped and counted, without a line each. It ends when
//! there is [`ROOM_ABOVE`] free again (looked at by the periodic check and
//! after each write that succeeds during the episode): one line, one
//! `disk_ok` event with the count. Containers are not touched: they go on,
//! and their own writes see ENOSPC as on any full disk.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Free space below which the state partition counts as full.
pub const FULL_BELOW: u64 = 1 << 20;

/// Free space above which a full episode ends (more than [`FULL_BELOW`], so
/// that an episode does not flap).
pub const ROOM_ABOVE: u64 = 4 << 20;

/// How often the supervisor looks at the free space.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

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
        Some(self.begin())
    }

    /// Starts an episode; returns whether one was not already going on.
    fn begin(&self) -> bool {
        !self.full.swap(true, Ordering::SeqCst)
    }

    /// Takes the free space seen now. Returns `Some(true)` when it begins
    /// an episode, `Some(false)` when it ends one, `None` otherwise.
    pub fn space(&self, free: u64) -> Option<bool> {
        if self.is_full() {
            (free >= ROOM_ABOVE && self.full.swap(false, Ordering::SeqCst)).then_some(false)
        } else {
            (free < FULL_BELOW && self.begin()).then_some(true)
        }
    }

    /// Writes dropped in this episode (or the last), and a new count.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::SeqCst)
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
pub fn full_event(root: &Path, why: &str) -> serde_json::Value {
    serde_json::json!({
        "time": crate::logging::files::rfc3339(std::time::SystemTime::now()),
        "event": "disk_full",
        "path": root,
        "error": why,
    })
}

/// The `disk_ok` event.
pub fn ok_event(root: &Path, free: u64, dropped: u64) -> serde_json::Value {
    serde_json::json!({
        "time": crate::logging::files::rfc3339(std::time::SystemTime::now()),
        "event": "disk_ok",
        "path": root,
        "free_bytes": free,
        "dropped_writes": dropped,
    })
}

fn began(why: &str) {
    let root = super::layout().root;
    log::error!(
        "{} is full ({why}): berth drops its log lines and state changes while they cannot be written; containers go on",
        root.display(),
    );
    event(full_event(&root, why));
}

fn ended(free: u64) {
    let root = super::layout().root;
    let dropped = TRACKER.take_dropped();
    log::info!(
        "{} has room again ({} MiB free); {dropped} write(s) were dropped while it was full",
        root.display(),
        free >> 20
    );
    event(ok_event(&root, free, dropped));
}

/// Notes that one of berth's writes to `path` failed with `e`. Returns
/// whether it was for want of space, and so is reported here (once per
/// episode): the caller then says nothing more.
pub fn write_failed(path: &Path, e: &std::io::Error) -> bool {
    match TRACKER.failed(e) {
        None => false,
        Some(false) => true,
        Some(true) => {
            began(&format!("{e}, writing {}", path.display()));
            true
        }
    }
}

/// Notes that one of berth's writes succeeded: during an episode, looks
/// whether it is over.
pub fn write_ok() {
    if TRACKER.is_full() {
        check();
    }
}

/// Looks at the free space of the state partition (as berth, root, may
/// use it): begins or ends an episode. The supervisor calls it every
/// [`CHECK_EVERY`].
pub fn check() {
    let Some((_, free)) = super::space(&super::layout().root) else {
        return;
    };
    match TRACKER.space(free) {
        Some(true) => began(&format!("{} KiB free", free >> 10)),
        Some(false) => ended(free),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_begins_an_episode_once_and_room_ends_it() {
        let t = Tracker::new();
        let other = std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(t.failed(&other), None, "not a full disk");
        assert!(!t.is_full());
        assert_eq!(t.space(100 << 20), None, "nothing to end");

        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(t.failed(&full), Some(true));
        for _ in 0..99 {
            assert_eq!(t.failed(&full), Some(false));
        }
        assert!(t.is_full());
        assert_eq!(t.dropped(), 100);
        // Some room, but not enough to end it: no flapping.
        assert_eq!(t.space(2 << 20), None);
        assert!(t.is_full());
        assert_eq!(t.space(ROOM_ABOVE), Some(false));
        assert!(!t.is_full());
        assert_eq!(t.take_dropped(), 100);
        assert_eq!(t.space(ROOM_ABOVE), None);
        let quota = std::io::Error::from_raw_os_error(libc::EDQUOT);
        assert_eq!(t.failed(&quota), Some(true), "a new episode");
        assert_eq!(t.dropped(), 1);
    }

    #[test]
    fn little_free_space_begins_an_episode_before_a_write_fails() {
        let t = Tracker::new();
        assert_eq!(t.space(FULL_BELOW), None);
        assert_eq!(t.space(FULL_BELOW - 1), Some(true));
        assert_eq!(t.space(0), None, "once");
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(t.failed(&full), Some(false), "already reported");
        assert_eq!(t.space(64 << 20), Some(false));
        assert_eq!(t.take_dropped(), 1);
    }

    #[test]
    fn events_name_the_partition_and_the_dropped_writes() {
        let v = full_event(Path::new("/var/lib/berth"), "12 KiB free");
        assert_eq!(v["event"], "disk_full");
        assert_eq!(v["path"], "/var/lib/berth");
        assert_eq!(v["error"], "12 KiB free");
        let v = ok_event(Path::new("/data"), 4096, 7);
        assert_eq!(v["event"], "disk_ok");
        assert_eq!(v["free_bytes"], 4096);
        assert_eq!(v["dropped_writes"], 7);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
}

//! The fatal path: what PID 1 does instead of exiting.
//!
//! A panic (the release build aborts on panic, so the hook is the last code
//! that runs) or a fatal boot error logs its cause, syncs, waits a moment so
//! the message can be read, and then reboots, powers off or halts as the
//! manifest's `host.on_fatal` says. Reboot is the default, so a device in the
//! field recovers on its own.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use super::Action;

/// How long the fatal path waits before rebooting, so the cause can be read.
pub const DELAY: Duration = Duration::from_secs(3);

static ON_FATAL: AtomicU8 = AtomicU8::new(0);

/// Sets what the fatal path does (from the manifest).
pub fn set_action(a: Action) {
    let v = match a {
        Action::Reboot => 0,
        Action::Poweroff => 1,
        Action::Halt => 2,
    };
    ON_FATAL.store(v, Ordering::SeqCst);
}

/// What the fatal path does now.
pub fn action() -> Action {
    match ON_FATAL.load(Ordering::SeqCst) {
        1 => Action::Poweroff,
        2 => Action::Halt,
        _ => Action::Reboot,
    }
}

/// Installs the panic hook. It never returns into the runtime.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        fatal(&format!("panic{place}: {msg}"));
    }));
}

/// Logs `why` and ends the machine as configured. Never returns.
pub fn fatal(why: &str) -> ! {
    let a = action();
    crate::logging::emergency(&format!(
        "fatal: {why}; {} in {} s",
        a.as_str(),
        DELAY.as_secs()
    ));
    nix::unistd::sync();
    // The data partition, read-only if nothing writes to it any more (its
    // journal then needs no replay); containers may still run here.
    crate::storage::emergency_read_only(&crate::sys::Real);
    std::thread::sleep(DELAY);
    super::kernel_reboot(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_reboot_and_the_manifest_changes_it() {
        assert_eq!(action(), Action::Reboot);
        set_action(Action::Poweroff);
        assert_eq!(action(), Action::Poweroff);
        set_action(Action::Halt);
        assert_eq!(action(), Action::Halt);
        set_action(Action::Reboot);
        assert_eq!(action(), Action::Reboot);
    }
}

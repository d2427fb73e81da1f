//! PID 1, from start to reboot(2). Short enough to read in one sitting; each
//! stage lives in its own module.
//!
//! PID 1 never returns and never unwinds: the kernel panics when init exits.
//! Every way out goes through [`power`]: the orderly shutdown after the
//! supervisor returns, or the fatal path (panic hook, fatal boot error),
//! which logs, syncs and reboots or powers off as the manifest says.

use crate::boot::{self, switch_root};
use crate::power::{fatal, shutdown};
use crate::{logging, supervisor, sys};

/// PID 1's entry point.
pub fn main() -> ! {
    let start = logging::uptime();
    logging::init(log::LevelFilter::Info);
    fatal::install_hook();

    if switch_root::on_initramfs()
        && let Err(e) = switch_root::switch()
    {
        log::error!("cannot leave the initramfs: {e}; containers cannot use pivot_root");
    }

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fatal::fatal(&format!("cannot start the event loop: {e}")),
    };
    let local = tokio::task::LocalSet::new();
    let action = local.block_on(&runtime, async {
        let booted = boot::run(start);
        supervisor::run(booted).await
    });
    // Drop the runtime's tasks (the control channel, device watchers) before
    // unmounting, so they hold nothing open.
    drop(local);
    drop(runtime);
    shutdown::finish(&sys::Real, action)
}

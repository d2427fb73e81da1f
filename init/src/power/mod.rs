//! Power: the orderly shutdown, the fatal path, and the ACPI power button.
//!
//! Everything that ends with reboot(2) lives here, so the ways out of PID 1
//! can be read in one place.

pub mod button;
pub mod fatal;
pub mod shutdown;

use std::time::Duration;

use nix::sys::reboot::RebootMode;

/// How the machine ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Switch off.
    Poweroff,
    /// Restart.
    Reboot,
    /// Stop the CPUs and stay on.
    Halt,
}

impl Action {
    fn mode(self) -> RebootMode {
        match self {
            Action::Poweroff => RebootMode::RB_POWER_OFF,
            Action::Reboot => RebootMode::RB_AUTOBOOT,
            Action::Halt => RebootMode::RB_HALT_SYSTEM,
        }
    }

    /// The word used in logs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Poweroff => "poweroff",
            Action::Reboot => "reboot",
            Action::Halt => "halt",
        }
    }
}

impl From<berth_config::FatalAction> for Action {
    fn from(a: berth_config::FatalAction) -> Self {
        match a {
            berth_config::FatalAction::Reboot => Action::Reboot,
            berth_config::FatalAction::Poweroff => Action::Poweroff,
            berth_config::FatalAction::Halt => Action::Halt,
        }
    }
}

/// Syncs and asks the kernel to end the machine. Never returns: if reboot(2)
/// fails, PID 1 sleeps forever rather than exit (an exit is a kernel panic).
pub fn kernel_reboot(action: Action) -> ! {
    nix::unistd::sync();
    let err = match nix::sys::reboot::reboot(action.mode()) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    crate::logging::emergency(&format!(
        "power: reboot(2) for {} failed: {err}",
        action.as_str()
    ));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Makes Ctrl-Alt-Del send SIGINT to PID 1 instead of rebooting at once.
pub fn disable_cad() -> nix::Result<()> {
    nix::sys::reboot::set_cad_enabled(false)
}

//! The supervisor: PID 1's event loop after boot.
//!
//! One loop on a single-threaded runtime takes every event in turn: signals
//! (SIGCHLD feeds the [`reaper`]; SIGTERM and SIGPWR power off; SIGINT, which
//! Ctrl-Alt-Del sends, reboots), device arrivals (the control port, the power
//! button), and API commands. Nothing here sleeps in a polling loop; each
//! source wakes the loop when it has something. The loop returns the
//! [`Action`] that ends the machine; the caller then shuts down.

pub mod reaper;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use crate::api::{self, Command, Commands};
use crate::boot::Booted;
use crate::devices::{self, Uevent};
use crate::logging;
use crate::power::{Action, button, shutdown};

/// The name of the virtio-serial port that carries the API.
pub const CONTROL_PORT: &str = "berth";

/// How long shutdown may take beyond the containers' own grace.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(10);

struct Signals {
    chld: Signal,
    term: Signal,
    pwr: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            chld: signal(SignalKind::child())?,
            term: signal(SignalKind::terminate())?,
            pwr: signal(SignalKind::from_raw(libc::SIGPWR))?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// The supervisor's state.
struct Supervisor {
    booted: Booted,
    ready_at: Duration,
    reaper: reaper::Reaper,
    commands: Commands,
    /// Devices already being served or watched, by devname.
    claimed: BTreeSet<String>,
}

/// Runs the event loop until the machine must end, and returns how.
pub async fn run(booted: Booted) -> Action {
    let signals = match Signals::new() {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!("cannot install signal handlers: {e}; signals will be ignored");
            None
        }
    };
    let uevents = match devices::Listener::open() {
        Ok(l) => Some(l),
        Err(e) => {
            log::error!("cannot listen for device events: {e}");
            None
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut sup = Supervisor {
        ready_at: Duration::ZERO,
        booted,
        reaper: reaper::Reaper::default(),
        commands: tx,
        claimed: BTreeSet::new(),
    };
    for ev in devices::scan("virtio-ports")
        .into_iter()
        .chain(devices::scan("input"))
    {
        sup.device(&ev);
    }
    sup.ready();

    let Some(mut sig) = signals else {
        // Without signals, the API and devices still work.
        loop {
            tokio::select! {
                Some(c) = rx.recv() => if let Some(a) = sup.command(c) { return sup.stop(a) },
                Some(ev) = next_uevent(uevents.as_ref()) => sup.device(&ev),
            }
        }
    };
    loop {
        tokio::select! {
            _ = sig.chld.recv() => {
                let n = sup.reaper.reap();
                log::debug!("reaped {n} process(es)");
            }
            _ = sig.term.recv() => return sup.stop_because(Action::Poweroff, "SIGTERM"),
            _ = sig.pwr.recv() => return sup.stop_because(Action::Poweroff, "SIGPWR"),
            _ = sig.int.recv() => return sup.stop_because(Action::Reboot, "SIGINT (Ctrl-Alt-Del)"),
            Some(c) = rx.recv() => if let Some(a) = sup.command(c) { return sup.stop(a) },
            Some(ev) = next_uevent(uevents.as_ref()) => sup.device(&ev),
        }
    }
}

async fn next_uevent(l: Option<&devices::Listener>) -> Option<Uevent> {
    match l {
        Some(l) => match l.next().await {
            Ok(ev) => Some(ev),
            Err(e) => {
                log::error!("device events: {e}");
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

impl Supervisor {
    fn ready(&mut self) {
        self.ready_at = logging::uptime();
        let ms = self.ready_at.saturating_sub(self.booted.start).as_millis();
        log::info!(target: "berth", "ready in {ms} ms");
        if self.booted.cmdline.get("berth.crash") == Some("panic") {
            // A deliberate fatal path, for the test that proves the panic
            // hook reboots or powers off instead of panicking the kernel.
            #[allow(clippy::panic)]
            {
                panic!("berth.crash=panic on the kernel command line");
            }
        }
    }

    fn command(&mut self, c: Command) -> Option<Action> {
        match c {
            Command::Info(reply) => {
                let _ = reply.send(self.info());
                None
            }
            Command::Power(a, why) => {
                log::info!("{why}: {}", a.as_str());
                Some(a)
            }
        }
    }

    fn stop_because(&mut self, a: Action, why: &str) -> Action {
        log::info!("{why}: {}", a.as_str());
        self.stop(a)
    }

    /// Begins shutdown: arms its deadline and stops what runs.
    fn stop(&mut self, a: Action) -> Action {
        let grace = self
            .booted
            .manifest
            .as_ref()
            .map(|m| m.host.shutdown_grace)
            .unwrap_or(Duration::from_secs(30));
        shutdown::arm_deadline(a, grace + SHUTDOWN_SLACK);
        self.reaper.reap();
        a
    }

    fn device(&mut self, ev: &Uevent) {
        if ev.action != "add" && ev.action != "change" {
            return;
        }
        let Some(devname) = ev.devname.clone() else {
            return;
        };
        if self.claimed.contains(&devname) {
            return;
        }
        match ev.subsystem.as_str() {
            "virtio-ports" => {
                let name = std::fs::read_to_string(
                    Path::new("/sys/class/virtio-ports")
                        .join(&devname)
                        .join("name"),
                )
                .unwrap_or_default();
                if name.trim() != CONTROL_PORT {
                    return;
                }
                self.claimed.insert(devname.clone());
                let _ = std::fs::create_dir_all("/dev/virtio-ports");
                let _ = std::os::unix::fs::symlink(
                    format!("../{devname}"),
                    format!("/dev/virtio-ports/{CONTROL_PORT}"),
                );
                let path = Path::new("/dev").join(&devname);
                let commands = self.commands.clone();
                tokio::task::spawn_local(async move {
                    if let Err(e) = api::serve_port(&path, commands).await {
                        log::error!("control channel {}: {e}", path.display());
                    }
                });
            }
            "input" => {
                let Some(event) = devname.strip_prefix("input/") else {
                    return;
                };
                if !button::sysfs_is_power_button(event) {
                    return;
                }
                self.claimed.insert(devname.clone());
                log::debug!("watching the power button on /dev/{devname}");
                let commands = self.commands.clone();
                let event = event.to_string();
                tokio::task::spawn_local(async move {
                    match button::wait_press(&event).await {
                        Ok(()) => {
                            let _ = commands
                                .send(Command::Power(Action::Poweroff, "power button pressed"));
                        }
                        Err(e) => log::warn!("power button /dev/input/{event}: {e}"),
                    }
                });
            }
            _ => {}
        }
    }

    fn info(&self) -> Value {
        let now = logging::uptime();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |text: &str, key: &str| -> Option<u64> {
            text.lines()
                .find(|l| l.starts_with(key))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        let (manifest_ok, manifest_error) = match &self.booted.manifest {
            Ok(_) => (true, None),
            Err(e) => (false, Some(e.clone())),
        };
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "hostname": nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()),
            "uptime_ms": now.as_millis() as u64,
            "boot": {
                "pid1_start_ms": self.booted.start.as_millis() as u64,
                "ready_ms": self.ready_at.saturating_sub(self.booted.start).as_millis() as u64,
            },
            "manifest": {
                "path": self.booted.manifest_path.display().to_string(),
                "ok": manifest_ok,
                "error": manifest_error,
            },
            "cgroup_controllers": self.booted.cgroup_controllers,
            "memory": {
                "total_kib": kib(&meminfo, "MemTotal:"),
                "available_kib": kib(&meminfo, "MemAvailable:"),
            },
            "berth": {
                "rss_kib": kib(&status, "VmRSS:"),
                "orphans_reaped": self.reaper.orphans(),
            },
        })
    }
}

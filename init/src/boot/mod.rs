//! Boot: everything PID 1 does before it starts supervising.
//!
//! In order: leave the initramfs ([`switch_root`]), mount the system
//! filesystems ([`mounts`]), read the kernel command line and the manifest,
//! disable Ctrl-Alt-Del, set up cgroups ([`cgroup`]), set the hostname, load
//! kernel modules ([`modules`]) and apply sysctls ([`sysctl`]). Each step
//! logs one line with its duration. Only a missing required mount is fatal;
//! every other failure is logged and boot goes on.

pub mod cgroup;
pub mod cmdline;
pub mod modules;
pub mod mounts;
pub mod switch_root;
pub mod sysctl;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_config::Manifest;

use crate::power::{self, fatal};
use crate::sys::{Real, Sys};

pub use cmdline::Cmdline;

/// Modules containers need before the first one starts: overlayfs for
/// their roots. Loaded during boot, with the manifest's `host.modules`
/// (whose sysctls may follow).
pub const BOOT_MODULES: [&str; 1] = ["overlay"];

/// Modules berth loads beside the first containers, in a helper process so
/// PID 1 goes on: the virtio transports (PCI, and MMIO for microvm-style
/// machines) with their devices (the control channel's console, the NIC),
/// and the ACPI button with evdev so that a power button press reaches
/// berth. Probing devices is the slow part of loading them; everything that
/// uses them waits for their devices to appear (uevents, bounded waits).
pub const DEVICE_MODULES: [&str; 6] = [
    "virtio_pci",
    "virtio_mmio",
    "virtio_console",
    "virtio_net",
    "button",
    "evdev",
];

/// What boot leaves for the supervisor.
#[derive(Debug)]
pub struct Booted {
    /// When PID 1 started, as time since boot.
    pub start: Duration,
    /// The kernel command line.
    pub cmdline: Cmdline,
    /// Where the manifest was read from.
    pub manifest_path: PathBuf,
    /// The manifest, or why there is none.
    pub manifest: Result<Manifest, String>,
    /// Controllers available to containers.
    pub cgroup_controllers: Vec<String>,
}

/// Runs `f` and logs `what` with its duration.
fn step<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    log::info!("{what} ({:.1} ms)", t.elapsed().as_secs_f64() * 1e3);
    r
}

/// Boots the system. `start` is PID 1's start, as time since boot.
pub fn run(start: Duration) -> Booted {
    let sys = Real;
    log::info!(
        "berth {} starting as PID 1 at {:.3} s since boot",
        env!("CARGO_PKG_VERSION"),
        start.as_secs_f64()
    );
    step("mounted system filesystems", || mount_all(&sys));
    crate::logging::attach_kmsg();

    let cmdline = Cmdline::read();
    if let Some(level) = cmdline.get("berth.log").and_then(|l| l.parse().ok()) {
        crate::logging::set_level(level);
    }
    let manifest_path = PathBuf::from(cmdline.manifest());
    let manifest = step("read the manifest", || load_manifest(&manifest_path));
    if let Ok(m) = &manifest {
        fatal::set_action(m.host.on_fatal.into());
        if cmdline.get("berth.log").is_none() {
            crate::logging::set_level(crate::logging::level(m.host.logging.console));
        }
    }

    if let Err(e) = power::disable_cad() {
        log::warn!("cannot route Ctrl-Alt-Del to PID 1: {e}");
    }

    let cgroup_controllers = step("set up cgroups", || {
        let available = std::fs::read_to_string(Path::new(cgroup::ROOT).join("cgroup.controllers"))
            .unwrap_or_default();
        match cgroup::setup(&sys, &available) {
            Ok(out) => {
                for (c, why) in &out.unavailable {
                    log::warn!("cgroup controller {c} unavailable: {why}");
                }
                out.enabled
            }
            Err(e) => {
                log::error!("{e}; containers will run without resource limits");
                Vec::new()
            }
        }
    });

    if let Ok(Some(name)) = manifest.as_ref().map(|m| &m.host.hostname) {
        match nix::unistd::sethostname(name) {
            Ok(()) => log::info!("hostname {name}"),
            Err(e) => log::error!("cannot set hostname {name}: {e}"),
        }
    }

    step("loaded kernel modules", || {
        load_modules(manifest.as_ref().ok())
    });

    if let Some(m) = manifest
        .as_ref()
        .ok()
        .filter(|m| !m.host.sysctls.is_empty())
    {
        step("applied sysctls", || {
            for (k, v) in &m.host.sysctls {
                if let Err(e) = sysctl::apply(&sys, k, v) {
                    log::error!("{e}");
                }
            }
        });
    }

    Booted {
        start,
        cmdline,
        manifest_path,
        manifest,
        cgroup_controllers,
    }
}

fn mount_all(sys: &dyn Sys) {
    for m in mounts::plan() {
        if let Err(e) = mounts::apply(sys, &m) {
            if m.required {
                fatal::fatal(&format!("boot: {e}"));
            }
            log::error!("{e}");
        }
    }
    for (target, link) in mounts::DEV_LINKS {
        match sys.symlink(target, Path::new(link)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => log::warn!("cannot link {link} to {target}: {e}"),
        }
    }
}

fn load_manifest(path: &Path) -> Result<Manifest, String> {
    // The image store first: the manifest is checked against its images,
    // which also give containers their STOPSIGNAL and HEALTHCHECK.
    match crate::images::load_manifest(path) {
        Ok(m) => {
            log::info!(
                "manifest {}: {} container(s)",
                path.display(),
                m.containers.len()
            );
            Ok(m)
        }
        Err(e) => {
            let msg = e.to_string();
            log::error!("invalid manifest; starting no containers");
            // One record per line, so the excerpts and carets stay aligned.
            for line in msg.lines() {
                log::error!("  {line}");
            }
            Err(msg)
        }
    }
}

fn load_modules(manifest: Option<&Manifest>) {
    let dir = modules::release_dir();
    let index = modules::Index::read(&dir);
    let mut names: Vec<String> = BOOT_MODULES.iter().map(|s| s.to_string()).collect();
    if let Some(m) = manifest {
        names.extend(m.host.modules.iter().cloned());
    }
    let (loaded, errors) = modules::load_all(&dir, &index, &names);
    for e in &errors {
        log::warn!("{e}");
    }
    log::debug!("{loaded} module(s) loaded from {}", dir.display());
    let devices: Vec<String> = DEVICE_MODULES.iter().map(|s| s.to_string()).collect();
    if let Err(e) = modules::load_in_background(&dir, &index, &devices) {
        log::warn!("cannot load device modules beside boot ({e}); loading them now");
        for e in modules::load_all(&dir, &index, &devices).1 {
            log::warn!("{e}");
        }
    }
}

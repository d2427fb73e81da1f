//! Boot: everything PID 1 does before it starts supervising.
//!
//! In order: leave the initramfs ([`switch_root`]), mount the system
//! filesystems ([`mounts`]), read the kernel command line and the
//! manifest's host settings, load kernel modules ([`modules`]), mount the
//! data partition ([`crate::storage`]), read the whole manifest (checked
//! against the image store, which lives on the data partition), disable
//! Ctrl-Alt-Del, set up cgroups ([`cgroup`]), set the hostname and apply
//! sysctls ([`sysctl`]). Each step logs one line with its duration. Only a
//! missing required mount is fatal; every other failure is logged and boot
//! goes on.

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
    // The host's settings first, without the images: the data partition
    // they name holds the image store that the whole manifest is checked
    // against. An invalid manifest is reported by the full read below.
    let host = host_settings(&manifest_path);
    step("loaded kernel modules", || load_modules(host.as_ref()));
    let storage = step("set up storage", || {
        crate::storage::setup(&sys, host.as_ref().and_then(|h| h.storage.data.as_ref()))
    });
    let manifest = step("read the manifest", || load_manifest(&manifest_path));
    if let (crate::storage::State::Mounted, Ok(m)) = (storage.state, &manifest) {
        let keep = m
            .containers
            .values()
            .filter(|c| c.persist)
            .map(|c| c.name.clone())
            .collect();
        let n = crate::storage::discard_layers(&crate::storage::layout(), &keep);
        if n > 0 {
            log::info!("discarded the writable layers of {n} container(s) without persist = true");
        }
    }
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

/// The manifest's host settings, read before the image store is ready.
/// The checks that need the images are left to the full read: each image
/// is taken to give what the containers ask of it (a health check), so
/// that a manifest that is valid with its images has its data partition
/// mounted and its modules loaded. `None` when the manifest is unreadable
/// or invalid anyway.
fn host_settings(path: &Path) -> Option<berth_config::Host> {
    let text = std::fs::read_to_string(path).ok()?;
    let any_image = |_: &berth_config::ImageRef| {
        Some(berth_config::ImageFacts {
            healthcheck: true,
            ..Default::default()
        })
    };
    berth_config::parse_with_images(&text, &path.display().to_string(), &any_image)
        .ok()
        .map(|m| m.host)
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

/// The modules to load during boot and beside it, for the manifest's host
/// settings: [`BOOT_MODULES`] and `host.modules`, with the data
/// partition's filesystem (ext4 is built in); [`DEVICE_MODULES`], with the
/// disk drivers ([`crate::storage::MODULES`]) right after the transports
/// when there is a data device, so that it appears first.
pub fn module_lists(host: Option<&berth_config::Host>) -> (Vec<String>, Vec<String>) {
    let mut boot: Vec<String> = BOOT_MODULES.iter().map(|s| s.to_string()).collect();
    let mut devices: Vec<String> = DEVICE_MODULES.iter().map(|s| s.to_string()).collect();
    if let Some(h) = host {
        boot.extend(h.modules.iter().cloned());
        if let Some(d) = &h.storage.data {
            if d.fs != berth_config::Filesystem::Ext4 {
                boot.push(d.fs.as_str().to_string());
            }
            let at = devices
                .iter()
                .position(|m| m == "virtio_mmio")
                .map_or(0, |i| i + 1);
            for (i, m) in crate::storage::MODULES.iter().enumerate() {
                devices.insert(at + i, m.to_string());
            }
        }
    }
    (boot, devices)
}

fn load_modules(host: Option<&berth_config::Host>) {
    let dir = modules::release_dir();
    let index = modules::Index::read(&dir);
    let (names, devices) = module_lists(host);
    let (loaded, errors) = modules::load_all(&dir, &index, &names);
    for e in &errors {
        log::warn!("{e}");
    }
    log::debug!("{loaded} module(s) loaded from {}", dir.display());
    if let Err(e) = modules::load_in_background(&dir, &index, &devices) {
        log::warn!("cannot load device modules beside boot ({e}); loading them now");
        for e in modules::load_all(&dir, &index, &devices).1 {
            log::warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_device_brings_its_disk_driver_early_and_its_filesystem() {
        let (boot, devices) = module_lists(None);
        assert_eq!(boot, BOOT_MODULES);
        assert_eq!(devices, DEVICE_MODULES);
        let m = berth_config::parse(
            "version = 1\n[host]\nmodules = [\"veth\"]\n[host.storage]\ndata = { device = \"LABEL=d\", fs = \"xfs\" }\n",
            "t",
        )
        .unwrap();
        let (boot, devices) = module_lists(Some(&m.host));
        assert_eq!(boot, ["overlay", "veth", "xfs"]);
        assert_eq!(
            devices,
            [
                "virtio_pci",
                "virtio_mmio",
                "virtio_blk",
                "virtio_console",
                "virtio_net",
                "button",
                "evdev"
            ]
        );
        // ext4 is built in: nothing to load for it.
        let m = berth_config::parse(
            "version = 1\n[host.storage]\ndata = { device = \"/dev/vda\" }\n",
            "t",
        )
        .unwrap();
        assert_eq!(module_lists(Some(&m.host)).0, ["overlay"]);
    }

    #[test]
    fn host_settings_do_not_wait_for_the_images_checks() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("berth.toml");
        // db's health check comes from its image, which only the image
        // store (on the data partition) knows.
        std::fs::write(
            &path,
            "version = 1\n[host.storage]\ndata = { device = \"LABEL=d\" }\n\
             [containers.db]\nimage = \"db:1\"\n\
             [containers.web]\nimage = \"busybox\"\n\
             depends_on = { db = { condition = \"service_healthy\" } }\n",
        )
        .unwrap();
        let host = host_settings(&path).expect("the host settings");
        assert!(host.storage.data.is_some());
        // A manifest invalid on its own account has none.
        std::fs::write(&path, "version = 1\n[containers.web]\nimage = 3\n").unwrap();
        assert!(host_settings(&path).is_none());
    }
}

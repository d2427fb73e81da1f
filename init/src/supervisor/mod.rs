//! The supervisor: PID 1's event loop after boot.
//!
//! One loop on a single-threaded runtime takes every event in turn: signals
//! (SIGCHLD feeds the [`reaper`]; SIGTERM and SIGPWR power off; SIGINT, which
//! Ctrl-Alt-Del sends, reboots), device arrivals (the control port, the power
//! button), and API commands. Nothing here sleeps in a polling loop; each
//! source wakes the loop when it has something. The loop returns the
//! [`Action`] that ends the machine; the caller then shuts down.

pub mod containers;
pub mod machine;
pub mod output;
pub mod reaper;

pub use machine::State;

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
use crate::runtime::Runtime;

/// The name of the virtio-serial port that carries the API.
pub const CONTROL_PORT: &str = "berth";

/// How long shutdown may take beyond the containers' own grace.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(10);

/// The signals PID 1 handles; one that cannot be installed is `None` and
/// never fires (logged at start).
struct Signals {
    chld: Option<Signal>,
    term: Option<Signal>,
    pwr: Option<Signal>,
    int: Option<Signal>,
    hup: Option<Signal>,
}

impl Signals {
    fn new() -> Signals {
        let one = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!("cannot handle {name}: {e}");
                None
            }
        };
        Signals {
            chld: one(SignalKind::child(), "SIGCHLD"),
            term: one(SignalKind::terminate(), "SIGTERM"),
            pwr: one(SignalKind::from_raw(libc::SIGPWR), "SIGPWR"),
            int: one(SignalKind::interrupt(), "SIGINT"),
            hup: one(SignalKind::hangup(), "SIGHUP"),
        }
    }
}

/// The supervisor's state.
struct Supervisor {
    booted: Booted,
    ready_at: Duration,
    reaper: reaper::Reaper,
    commands: Commands,
    containers: containers::Containers,
    /// The host's interfaces.
    host_net: crate::network::host::HostNetwork,
    /// Devices already being served or watched, by devname.
    claimed: BTreeSet<String>,
}

/// Runs the event loop until the machine must end, and returns how. The
/// containers have stopped when it returns.
pub async fn run(booted: Booted) -> Action {
    let mut signals = Signals::new();
    let uevents = match devices::Listener::open() {
        Ok(l) => Some(l),
        Err(e) => {
            log::error!("cannot listen for device events: {e}");
            None
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (ctx, mut crx) = mpsc::unbounded_channel();
    let containers: Vec<berth_config::Container> = booted
        .manifest
        .as_ref()
        .map(|m| m.containers.values().cloned().collect())
        .unwrap_or_default();
    let files = booted
        .manifest
        .as_ref()
        .ok()
        .and_then(|m| m.host.logging.files.clone());
    // The bridge, if any container is on it.
    let net = match &booted.manifest {
        Ok(m) if containers.iter().any(crate::network::on_bridge) => {
            match crate::network::ContainerNet::start(
                &m.host.network,
                &containers,
                crate::storage::layout().ipam(),
            )
            .await
            {
                Ok(n) => Ok(Some(n)),
                Err(e) => {
                    log::error!("container network: {e}");
                    Err(e)
                }
            }
        }
        _ => Ok(None),
    };
    // Host interfaces: lo first, then the manifest's, static or by DHCP.
    // Containers that use the network wait until they are up (or have
    // failed, after a bounded wait).
    let host_cfg = booted
        .manifest
        .as_ref()
        .map(|m| m.host.network.clone())
        .unwrap_or_else(|_| berth_config::Network {
            interfaces: Vec::new(),
            bridge: berth_config::Bridge {
                name: berth_config::defaults::BRIDGE_NAME.into(),
                subnet: berth_config::parse_cidr(berth_config::defaults::BRIDGE_SUBNET).unwrap_or(
                    berth_config::Cidr {
                        addr: std::net::Ipv4Addr::new(10, 88, 0, 0).into(),
                        prefix: 24,
                    },
                ),
                nat: berth_config::defaults::BRIDGE_NAT,
            },
            dns: Vec::new(),
            dns_search: Vec::new(),
        });
    let (host_net, mut net_rx) = crate::network::host::HostNetwork::start(&host_cfg);
    // With no interface to wait for, nothing waits (lo comes up at once).
    let network_ready = host_cfg.interfaces.is_empty()
        || *net_rx.borrow_and_update() != crate::network::HostNetState::Configuring;
    if let Ok(m) = &booted.manifest {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        crate::logging::configure(&m.host.logging, &hostname);
    }
    let mut net_watch = !network_ready;
    let mut sup = Supervisor {
        ready_at: Duration::ZERO,
        booted,
        reaper: reaper::Reaper::default(),
        commands: tx,
        containers: containers::Containers::new(
            containers,
            Runtime::default(),
            files,
            net,
            network_ready,
            ctx,
        ),
        claimed: BTreeSet::new(),
        host_net,
    };
    crate::storage::full::set_events(sup.containers.notices());
    for ev in devices::scan("virtio-ports")
        .into_iter()
        .chain(devices::scan("input"))
    {
        sup.device(&ev);
    }
    // Children that ended before the SIGCHLD handler existed (the device
    // module loader) are collected now.
    sup.reap();
    let socket = sup
        .booted
        .manifest
        .as_ref()
        .map(|m| m.host.api.socket.clone())
        .unwrap_or_else(|_| berth_config::defaults::API_SOCKET.into());
    let commands = sup.commands.clone();
    tokio::task::spawn_local(async move {
        if let Err(e) = api::unix::serve(&socket, commands).await {
            log::error!("API socket {}: {e}", socket.display());
        }
    });
    // The remote API, with mutual TLS, if the manifest asks for it.
    if let Ok(m) = &sup.booted.manifest
        && let Some(remote) = m.host.api.remote.clone()
    {
        let commands = sup.commands.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = api::remote::serve(&remote, commands).await {
                log::error!("remote API {}: {e}", remote.listen);
            }
        });
    }
    sup.ready();
    sup.containers.start(&mut sup.reaper);
    sup.trim_heap_if_settled();

    // The kernel tells nobody when a filesystem fills up: berth looks.
    let mut space = tokio::time::interval(crate::storage::full::CHECK_EVERY);
    space.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    // Run until something asks the machine to end.
    let action = loop {
        tokio::select! {
            _ = space.tick() => crate::storage::full::check(),
            Some(()) = recv(signals.chld.as_mut()) => sup.reap(),
            Some(()) = recv(signals.term.as_mut()) => break sup.stop_because(Action::Poweroff, "SIGTERM"),
            Some(()) = recv(signals.pwr.as_mut()) => break sup.stop_because(Action::Poweroff, "SIGPWR"),
            Some(()) = recv(signals.int.as_mut()) => break sup.stop_because(Action::Reboot, "SIGINT (Ctrl-Alt-Del)"),
            Some(()) = recv(signals.hup.as_mut()) => {
                log::info!("SIGHUP: reloading the manifest");
                let _ = sup.reload(None);
            }
            Some(c) = rx.recv() => if let Some(a) = sup.command(c) { break sup.stop(a) },
            Some(ev) = crx.recv() => {
                // A start or a run ended: once no other start or stop is
                // under way, the memory they used is free; give it back.
                let ended = matches!(
                    ev,
                    machine::Event::Running { .. }
                        | machine::Event::Exited { .. }
                        | machine::Event::SpawnFailed { .. }
                );
                sup.containers.handle(ev, &mut sup.reaper);
                if ended {
                    sup.trim_heap_if_settled();
                }
            }
            Some(ev) = next_uevent(uevents.as_ref()) => sup.device(&ev),
            r = net_rx.changed(), if net_watch => {
                let state = net_rx.borrow_and_update().clone();
                match (r, state) {
                    (Ok(()), crate::network::HostNetState::Configuring) => {}
                    (Ok(()), crate::network::HostNetState::Up) => {
                        net_watch = false;
                        sup.containers.handle(machine::Event::NetworkReady, &mut sup.reaper);
                    }
                    (r, state) => {
                        net_watch = false;
                        let why = match state {
                            crate::network::HostNetState::Failed(why) => why,
                            _ => format!("{r:?}"),
                        };
                        log::warn!("host network not up ({why}); starting containers anyway");
                        sup.containers.handle(machine::Event::NetworkReady, &mut sup.reaper);
                    }
                }
            }
        }
    };

    // Stop the containers in reverse dependency order, within the host's
    // shutdown grace; then kill what is left.
    sup.containers
        .handle(machine::Event::Shutdown, &mut sup.reaper);
    let grace = sup.grace();
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    let mut killed = false;
    while !sup.containers.all_down() {
        tokio::select! {
            Some(()) = recv(signals.chld.as_mut()) => sup.reap(),
            Some(ev) = crx.recv() => sup.containers.handle(ev, &mut sup.reaper),
            Some(c) = rx.recv() => { sup.command(c); }
            () = &mut deadline, if !killed => {
                log::warn!("containers still running after {} s; killing them", grace.as_secs());
                sup.containers.handle(machine::Event::KillAll, &mut sup.reaper);
                killed = true;
            }
        }
    }
    // The network goes last: DHCP leases released, the bridge removed.
    sup.host_net.shutdown().await;
    sup.containers.shutdown_network().await;
    action
}

/// The next delivery of a signal, or never if signals are unavailable.
async fn recv(s: Option<&mut Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
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
    /// Gives the heap's free pages back once no container is starting or
    /// stopping: a fleet starting together trims once, after the last of
    /// them, not once per container while the others still allocate.
    fn trim_heap_if_settled(&self) {
        if self.containers.machine().settled() {
            crate::sys::trim_heap();
        }
    }

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
        use crate::api::{ApiError, Control};
        use hyper::StatusCode;
        let missing = |n: &str| ApiError::no_container(n);
        match c {
            Command::Info(reply) => {
                let _ = reply.send(Ok(self.info()));
            }
            Command::Containers(reply) => {
                let _ = reply.send(Ok(self.containers.list()));
            }
            Command::Inspect(name, reply) => {
                let _ = reply.send(self.containers.inspect(&name).ok_or_else(|| missing(&name)));
            }
            Command::Control(name, control, reply) => {
                let r = if self.containers.machine().unit(&name).is_none() {
                    Err(missing(&name))
                } else {
                    match control {
                        Control::Start => {
                            self.containers
                                .handle(machine::Event::Start(name.clone()), &mut self.reaper);
                            Ok(())
                        }
                        Control::Stop => {
                            self.containers
                                .handle(machine::Event::Stop(name.clone()), &mut self.reaper);
                            Ok(())
                        }
                        Control::Restart => {
                            self.containers
                                .handle(machine::Event::Restart(name.clone()), &mut self.reaper);
                            Ok(())
                        }
                        Control::Kill(sig) => {
                            if self.containers.kill(&name, sig) {
                                Ok(())
                            } else {
                                Err(ApiError::new(
                                    StatusCode::CONFLICT,
                                    format!("container {name} is not running"),
                                ))
                            }
                        }
                    }
                };
                let _ = reply.send(r);
            }
            Command::Logs(name, reply) => {
                let _ = reply.send(
                    self.containers
                        .log_source(&name)
                        .ok_or_else(|| missing(&name)),
                );
            }
            Command::Stats(Some(name), reply) => {
                let r = match self.containers.machine().unit(&name) {
                    None => Err(missing(&name)),
                    Some(_) => self.containers.stats(&name).ok_or_else(|| {
                        ApiError::new(
                            StatusCode::CONFLICT,
                            format!("container {name} is not running"),
                        )
                    }),
                };
                let _ = reply.send(r);
            }
            Command::Stats(None, reply) => {
                let names: Vec<String> =
                    self.containers.machine().units().keys().cloned().collect();
                let all: Vec<Value> = names
                    .iter()
                    .filter_map(|n| self.containers.stats(n))
                    .collect();
                let _ = reply.send(Ok(Value::Array(all)));
            }
            Command::Events(reply) => {
                let _ = reply.send(Ok(self.containers.subscribe()));
            }
            Command::Images(reply) => {
                let _ = reply.send(Ok(crate::images::Store::default().list()));
            }
            Command::PruneImages(reply) => {
                let busy = self.containers.layers_in_use();
                let done = crate::images::Store::default()
                    .gc(&Default::default(), &busy)
                    .map(|r| {
                        log::info!(
                            "images: pruned {} image(s), {} layer(s) ({} bytes), {} blob(s)",
                            r.images,
                            r.layers,
                            r.bytes,
                            r.blobs
                        );
                        serde_json::json!({
                            "images": r.images,
                            "layers": r.layers,
                            "bytes": r.bytes,
                            "blobs": r.blobs,
                        })
                    })
                    .map_err(|e| {
                        crate::api::ApiError::new(
                            hyper::StatusCode::INTERNAL_SERVER_ERROR,
                            format!("pruning images: {e}"),
                        )
                    });
                let _ = reply.send(done);
            }
            Command::Reload(text, reply) => {
                let _ = reply.send(self.reload(text));
            }
            Command::Exec(name, req, reply) => {
                let _ = reply.send(self.containers.exec(&name, req, &mut self.reaper));
            }
            Command::Metrics(reply) => {
                let _ = reply.send(Ok(self.metrics()));
            }
            Command::Power(a, why) => {
                log::info!("{why}: {}", a.as_str());
                return Some(a);
            }
        }
        None
    }

    /// Re-reads the manifest (or takes `text`) and applies the difference.
    fn reload(&mut self, text: Option<String>) -> Result<Value, crate::api::ApiError> {
        use hyper::StatusCode;
        let path = self.booted.manifest_path.clone();
        let parsed = match &text {
            Some(t) => berth_config::parse(t, "reload").map_err(|d| d.to_string()),
            None => berth_config::load(&path).map_err(|e| e.to_string()),
        };
        let m = match parsed {
            Ok(m) => m,
            Err(errors) => {
                log::error!("reload refused; nothing changes");
                for line in errors.lines() {
                    log::error!("  {line}");
                }
                let list: Vec<Value> = errors
                    .lines()
                    .filter(|l| !l.starts_with(' '))
                    .map(|l| json!(l))
                    .collect();
                return Err(crate::api::ApiError {
                    status: StatusCode::BAD_REQUEST,
                    message: "invalid manifest; nothing changed".into(),
                    details: Some(Value::Array(list)),
                });
            }
        };
        let mut host_changes = Vec::new();
        if let Ok(old) = &self.booted.manifest {
            let (a, b) = (&old.host, &m.host);
            let mut differs = |what: &str, same: bool| {
                if !same {
                    host_changes.push(what.to_string());
                }
            };
            differs("hostname", a.hostname == b.hostname);
            differs("modules", a.modules == b.modules);
            differs("sysctls", a.sysctls == b.sysctls);
            differs("on_fatal", a.on_fatal == b.on_fatal);
            differs("network", a.network == b.network);
            differs("storage", a.storage == b.storage);
            differs("logging.files", a.logging.files == b.logging.files);
            differs("logging.syslog", a.logging.syslog == b.logging.syslog);
            differs("watchdog", a.watchdog == b.watchdog);
            differs("api", a.api == b.api);
        }
        if self.booted.cmdline.get("berth.log").is_none() {
            crate::logging::set_level(crate::logging::level(m.host.logging.console));
        }
        crate::power::fatal::set_action(m.host.on_fatal.into());
        let containers: Vec<berth_config::Container> = m.containers.values().cloned().collect();
        let summary = self.containers.reload(containers, &mut self.reaper);
        log::info!(
            "reloaded: {} added, {} removed, {} changed, {} unchanged",
            summary.added.len(),
            summary.removed.len(),
            summary.changed.len(),
            summary.unchanged.len()
        );
        self.booted.manifest = Ok(m);
        Ok(json!({
            "added": summary.added,
            "removed": summary.removed,
            "changed": summary.changed,
            "unchanged": summary.unchanged,
            "host_changes_need_reboot": host_changes,
        }))
    }

    fn metrics(&self) -> String {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |text: &str, key: &str| -> u64 {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        let load: Vec<f64> = std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .filter_map(|v| v.parse().ok())
            .collect();
        let host = crate::api::metrics::HostMetrics {
            memory_total_bytes: kib(&meminfo, "MemTotal:") * 1024,
            memory_available_bytes: kib(&meminfo, "MemAvailable:") * 1024,
            load: [
                load.first().copied().unwrap_or(0.0),
                load.get(1).copied().unwrap_or(0.0),
                load.get(2).copied().unwrap_or(0.0),
            ],
            berth_rss_bytes: kib(&status, "VmRSS:") * 1024,
        };
        crate::api::metrics::render(&self.containers.metrics(), &host)
    }

    fn stop_because(&mut self, a: Action, why: &str) -> Action {
        log::info!("{why}: {}", a.as_str());
        self.stop(a)
    }

    /// How long containers get to stop at shutdown.
    fn grace(&self) -> Duration {
        self.booted
            .manifest
            .as_ref()
            .map(|m| m.host.shutdown_grace)
            .unwrap_or(berth_config::defaults::SHUTDOWN_GRACE)
    }

    /// Begins shutdown: arms its hard deadline, after which the machine
    /// ends whatever still runs.
    fn stop(&mut self, a: Action) -> Action {
        shutdown::arm_deadline(a, self.grace() + SHUTDOWN_SLACK);
        a
    }

    fn reap(&mut self) {
        let n = self.reaper.reap();
        log::trace!("reaped {n} process(es)");
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
            "network": self.host_net.status(),
            "container_network": self.containers.net_status(),
            "storage": crate::storage::info(),
            "memory": {
                "total_kib": kib(&meminfo, "MemTotal:"),
                "available_kib": kib(&meminfo, "MemAvailable:"),
            },
            "berth": {
                "rss_kib": kib(&status, "VmRSS:"),
                "orphans_reaped": self.reaper.orphans(),
                // Leak detectors: PID 1's open descriptors and mounts, and
                // the container cgroups that exist.
                "open_fds": count_dir("/proc/self/fd"),
                "mounts": std::fs::read_to_string("/proc/self/mountinfo").map_or(0, |m| m.lines().count()),
                "container_cgroups": count_dir(crate::boot::cgroup::CONTAINERS),
            },

        })
    }
}

/// How many entries a directory has (subdirectories of a cgroup, open
/// descriptors in /proc/self/fd); 0 if it cannot be read.
fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map_or(0, |d| {
        d.flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with("cgroup."))
            .filter(|e| path.starts_with("/proc") || e.file_type().is_ok_and(|t| t.is_dir()))
            .count()
    })
}

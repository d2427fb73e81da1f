//! The containers' driver: carries out the [`machine`](super::machine)'s
//! actions with the runtime, and turns what happens (setup outcomes, exits,
//! timers, health check results) back into machine events.
//!
//! Nothing here waits in line: every wait (a setup outcome, an exit, a
//! timer, a check) is its own small task on PID 1's single-threaded loop,
//! which reports back through one channel.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use berth_config::{Container, HealthTest, LogFiles};
use tokio::sync::mpsc;

use super::machine::{Action, Event, Machine, Notice};
use super::output;
use super::reaper::{Exit, Reaper};
use crate::logging::container::ContainerLog;
use crate::network::{self, ContainerNet};
use crate::runtime::{self, ExecContext, Runtime, exec};
use crate::sys::Real;

/// The most output of a health check that is kept.
const CHECK_OUTPUT: usize = 4096;

/// A container's current process.
#[derive(Debug)]
struct Live {
    pid: i32,
    cgroup: PathBuf,
    context: ExecContext,
    /// Its image's layers, which image pruning leaves alone.
    layers: Vec<PathBuf>,
    /// Whether its program runs (else berth's setup process does: PID 1 of
    /// the container's PID namespace, which ignores signals it has no
    /// handler for, so a stop signal would be lost).
    started: bool,
    /// Set when berth killed it during its setup: the setup's failure that
    /// follows is no error.
    cancelled: Rc<std::cell::Cell<bool>>,
}

/// The containers and their processes.
pub struct Containers {
    machine: Machine,
    runtime: Runtime,
    live: BTreeMap<String, Live>,
    /// Cgroups of ended runs not yet removed (the kernel releases a cgroup
    /// a moment after its last process).
    stale: BTreeMap<String, PathBuf>,
    events: mpsc::UnboundedSender<Event>,
    /// Each container's log, kept across its restarts.
    logs: BTreeMap<String, Rc<RefCell<ContainerLog>>>,
    /// The host's log file settings.
    files: Option<LogFiles>,
    /// The bridge and its address book, if any container is on it and it
    /// could be set up (else why not).
    net: Result<Option<ContainerNet>, String>,
    /// Events for API watchers, as JSON lines.
    notices: tokio::sync::broadcast::Sender<String>,
    /// The /etc/hosts entries running bridge containers were last given.
    hosts_book: Vec<(std::net::IpAddr, Vec<String>)>,
}

impl Containers {
    /// Drives `containers`; events come back on `events`' receiver.
    pub fn new(
        containers: impl IntoIterator<Item = Container>,
        runtime: Runtime,
        files: Option<LogFiles>,
        net: Result<Option<ContainerNet>, String>,
        network_ready: bool,
        events: mpsc::UnboundedSender<Event>,
    ) -> Containers {
        Containers {
            machine: Machine::new(containers, network_ready),
            runtime,
            live: BTreeMap::new(),
            stale: BTreeMap::new(),
            events,
            logs: BTreeMap::new(),
            files,
            net,
            notices: tokio::sync::broadcast::channel(1024).0,
            hosts_book: Vec::new(),
        }
    }

    /// The state machine, for status and the API.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// The pid of a container's process, if it has one.
    pub fn pid(&self, name: &str) -> Option<i32> {
        self.live.get(name).map(|l| l.pid)
    }

    /// Every container's state, as the API shows it.
    pub fn list(&self) -> serde_json::Value {
        let now = Instant::now();
        serde_json::Value::Array(
            self.machine
                .units()
                .values()
                .map(|u| self.row(u, now))
                .collect(),
        )
    }

    /// Starts what can start.
    pub fn start(&mut self, reaper: &mut Reaper) {
        let actions = self.machine.start(Instant::now());
        self.execute(actions, reaper);
    }

    /// Takes one event.
    pub fn handle(&mut self, event: Event, reaper: &mut Reaper) {
        if let Event::Exited { name, .. } = &event
            && let Some(l) = self.live.remove(name)
        {
            self.stale.insert(name.clone(), l.cgroup);
        }
        if let Event::Running { name } = &event
            && let Some(l) = self.live.get_mut(name)
        {
            l.started = true;
        }
        let actions = self.machine.handle(Instant::now(), event);
        self.execute(actions, reaper);
    }

    /// Whether every container's process has ended.
    pub fn all_down(&self) -> bool {
        self.machine.all_down()
    }

    fn execute(&mut self, actions: Vec<Action>, reaper: &mut Reaper) {
        for a in actions {
            match a {
                Action::Spawn(name) => self.spawn(&name, reaper),
                Action::Signal { name, signal } => {
                    if let Some(l) = self.live.get(&name) {
                        // A container stopped during its setup has no program
                        // to stop gracefully, and its setup process would
                        // ignore the signal: it is killed.
                        let signal = if l.started {
                            signal
                        } else {
                            log::debug!("{name}: stopped during its setup; killing it");
                            l.cancelled.set(true);
                            libc::SIGKILL
                        };
                        // SAFETY: kill(2) with a pid berth started and has not
                        // reaped yet, so it cannot name another process.
                        unsafe { libc::kill(l.pid, signal) };
                    }
                }
                Action::Timer {
                    name,
                    generation,
                    kind,
                    after,
                } => {
                    let tx = self.events.clone();
                    tokio::task::spawn_local(async move {
                        tokio::time::sleep(after).await;
                        let _ = tx.send(Event::Timer {
                            name,
                            generation,
                            kind,
                        });
                    });
                }
                Action::Check { name, generation } => self.check(&name, generation, reaper),
                Action::Cleanup(name) => self.cleanup(name),
                Action::Forget(name) => self.forget(&name),
                Action::Notify { name, notice } => {
                    self.ports(&name, &notice);
                    self.notify(&name, &notice);
                }
            }
        }
    }

    fn spawn(&mut self, name: &str, reaper: &mut Reaper) {
        let Some(unit) = self.machine.unit(name) else {
            return;
        };
        let config = unit.config.clone();
        let events = self.events.clone();
        let fail = |error: String| {
            log::error!("{name}: cannot start: {error}");
            let _ = events.send(Event::SpawnFailed {
                name: name.to_string(),
                error,
            });
        };
        let (net, attachment) = match self.network_of(&config) {
            Ok(n) => n,
            Err(e) => return fail(e),
        };
        // Published ports are part of the network's setup: in place before
        // the program runs, or it does not start. They are withdrawn when
        // the process ends, whatever the way (its Die notice).
        if attachment.is_some()
            && let Ok(Some(n)) = &mut self.net
            && let Err(e) = n.publish(&config)
        {
            return fail(format!("network: {e}"));
        }
        let launch = match self.runtime.spawn(&Real, &config, &net) {
            Ok(l) => l,
            Err(e) => return fail(e.to_string()),
        };
        let exit = reaper.watch(launch.pid);
        let tx = self.events.clone();
        let n = name.to_string();
        let cgroup = launch.cgroup.clone();
        // The setup's outcome (running, or why not) is reported before the
        // exit: a setup that fails early exits before berth has read why.
        let (settled_tx, settled) = tokio::sync::oneshot::channel::<()>();
        tokio::task::spawn_local(async move {
            let Ok(exit) = exit.await else {
                return;
            };
            let _ = settled.await;
            let oom = runtime::cgroup::oom_kills(&cgroup) > 0;
            let _ = tx.send(Event::Exited { name: n, exit, oom });
        });

        let tx = self.events.clone();
        let n = name.to_string();
        let spawned = launch.spawned;
        let pid = launch.pid;
        let cancelled = Rc::new(std::cell::Cell::new(false));
        let cancel = cancelled.clone();
        let link = self
            .net
            .as_ref()
            .ok()
            .and_then(|n| n.as_ref())
            .map(ContainerNet::link);
        tokio::task::spawn_local(async move {
            // The host side first: connect the container to the bridge,
            // then let its setup go on to exec.
            if let (Some(a), Some((nl, bridge))) = (attachment, link) {
                if let Err(e) = network::bridge::attach(&nl, &bridge, &a, pid).await {
                    // SAFETY: kill(2) on the setup process berth just made,
                    // not yet reaped.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    // A setup that failed first (and so took its network
                    // namespace away) left the real cause on the socket.
                    let error = match runtime::message::try_recv_failure(launch.sync.as_fd()) {
                        Some(f) => f.to_string(),
                        None => format!("network: {e}"),
                    };
                    if cancel.get() {
                        log::debug!("{n}: setup ended by its stop ({error})");
                    } else {
                        log::error!("{n}: cannot start: {error}");
                        let _ = tx.send(Event::SetupFailed { name: n, error });
                    }
                    let _ = settled_tx.send(());
                    return;
                }
                log::debug!("{n}: on the bridge at {}/{}", a.ip, a.prefix);
            }
            // A setup that already failed has closed its end; its failure
            // message follows on the socket.
            let _ = runtime::release(&launch.sync);
            match runtime::setup_outcome(launch.sync).await {
                None => {
                    log::debug!(
                        "{n}: program running, pid {pid}, {:.1} ms after spawn",
                        spawned.elapsed().as_secs_f64() * 1e3
                    );
                    let _ = tx.send(Event::Running { name: n });
                }
                Some(f) if cancel.get() => log::debug!("{n}: setup ended by its stop ({f})"),
                Some(f) => {
                    log::error!("{n}: cannot start: {f}");
                    let _ = tx.send(Event::SetupFailed {
                        name: n,
                        error: f.to_string(),
                    });
                }
            }
            let _ = settled_tx.send(());
        });
        let log = self
            .logs
            .entry(name.to_string())
            .or_insert_with(|| {
                Rc::new(RefCell::new(ContainerLog::new(
                    name,
                    &config.logging,
                    self.files.as_ref(),
                )))
            })
            .clone();
        log.borrow_mut().pid = pid as u32;
        for (fd, stream) in [
            (launch.stdout, output::Stream::Out),
            (launch.stderr, output::Stream::Err),
        ] {
            let log = log.clone();
            tokio::task::spawn_local(output::pump(fd, move |lines| {
                log.borrow_mut().lines(stream, lines)
            }));
        }
        self.live.insert(
            name.to_string(),
            Live {
                pid,
                cgroup: launch.cgroup,
                context: launch.context,
                layers: launch.layers,
                started: false,
                cancelled,
            },
        );
    }

    /// The layer directories running containers have mounted.
    pub fn layers_in_use(&self) -> std::collections::BTreeSet<PathBuf> {
        self.live
            .values()
            .flat_map(|l| l.layers.iter().cloned())
            .collect()
    }

    /// How `c` joins the network: its /etc/hosts entries, the namespace it
    /// shares, and its bridge attachment.
    fn network_of(
        &mut self,
        c: &Container,
    ) -> Result<(runtime::NetSpec, Option<network::bridge::Attachment>), String> {
        use berth_config::NetworkMode;
        match &c.network_mode {
            NetworkMode::Bridge => {
                let configs: Vec<Container> = self
                    .machine
                    .units()
                    .values()
                    .map(|u| u.config.clone())
                    .filter(network::on_bridge)
                    .collect();
                let (attachment, hosts) = match &mut self.net {
                    Ok(Some(n)) => (n.attachment(&c.name)?, n.hosts(&configs)),
                    Ok(None) => return Err("no container network".into()),
                    Err(e) => return Err(format!("no container network: {e}")),
                };
                if hosts != self.hosts_book {
                    // A name changed since the running ones were written.
                    self.refresh_hosts();
                }
                Ok((runtime::NetSpec { hosts, join: None }, Some(attachment)))
            }
            NetworkMode::Service(target) => match self.pid(target) {
                Some(pid) => Ok((
                    runtime::NetSpec {
                        hosts: Vec::new(),
                        join: Some(pid),
                    },
                    None,
                )),
                None => Err(format!(
                    "network_mode service:{target}: {target} is not running"
                )),
            },
            NetworkMode::Host | NetworkMode::None => Ok((runtime::NetSpec::default(), None)),
        }
    }

    /// A container's state and entry, for `inspect`.
    pub fn inspect(&self, name: &str) -> Option<serde_json::Value> {
        let u = self.machine.unit(name)?;
        let mut v = self.row(u, Instant::now());
        v["config"] = serde_json::json!({
            "command": u.config.command,
            "entrypoint": u.config.entrypoint,
            "environment": u.config.environment,
            "working_dir": u.config.working_dir,
            "user": u.config.user.as_ref().map(|u| match &u.group {
                Some(g) => format!("{}:{g}", u.user),
                None => u.user.to_string(),
            }),
            "restart": u.config.restart.to_string(),
            "network_mode": u.config.network_mode.to_string(),
            "hostname": u.config.hostname,
            "read_only": u.config.read_only,
            "privileged": u.config.privileged,
            "init": u.config.init,
            "stop_signal": u.config.stop_signal.name(),
            "stop_grace_period_ms": u.config.stop_grace_period.as_millis() as u64,
            "healthcheck": u.config.healthcheck.as_ref().map(|h| serde_json::json!({
                "test": match &h.test {
                    HealthTest::Cmd(a) => serde_json::json!(["CMD"].iter().map(|s| s.to_string()).chain(a.iter().cloned()).collect::<Vec<_>>()),
                    HealthTest::Shell(s) => serde_json::json!(["CMD-SHELL", s]),
                },
                "interval_ms": h.interval.as_millis() as u64,
                "timeout_ms": h.timeout.as_millis() as u64,
                "retries": h.retries,
            })),
            "resources": {
                "memory": u.config.resources.memory,
                "cpus": u.config.resources.cpus,
                "pids": u.config.resources.pids,
            },
            "labels": u.config.labels,
        });
        Some(v)
    }

    fn row(&self, u: &super::machine::Unit, now: Instant) -> serde_json::Value {
        let name = &u.config.name;
        let ip = match &self.net {
            Ok(Some(n)) if network::on_bridge(&u.config) => n.ip(name).map(|i| i.to_string()),
            _ => None,
        };
        serde_json::json!({
            "name": name,
            "image": u.config.image.to_string(),
            "state": u.state.as_str(),
            "health": u.health.as_str(),
            "status": u.status,
            "restarts": u.restarts,
            "pid": self.pid(name),
            "uptime_ms": u.started_at.map(|s| now.saturating_duration_since(s).as_millis() as u64),
            "exit_code": u.last_exit.as_ref().map(|e| e.exit.code()),
            "oom_killed": u.last_exit.as_ref().is_some_and(|e| e.oom),
            "ip": ip,
            "ports": u.config.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        })
    }

    /// A container's cgroup figures, if it has a process.
    pub fn stats(&self, name: &str) -> Option<serde_json::Value> {
        let l = self.live.get(name)?;
        let read = |f: &str| std::fs::read_to_string(l.cgroup.join(f)).unwrap_or_default();
        let num = |f: &str| read(f).trim().parse::<u64>().ok();
        let usage = read("cpu.stat")
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok());
        let (mut rbytes, mut wbytes) = (0u64, 0u64);
        for line in read("io.stat").lines() {
            for kv in line.split_whitespace() {
                if let Some(v) = kv.strip_prefix("rbytes=") {
                    rbytes += v.parse::<u64>().unwrap_or(0);
                } else if let Some(v) = kv.strip_prefix("wbytes=") {
                    wbytes += v.parse::<u64>().unwrap_or(0);
                }
            }
        }
        Some(serde_json::json!({
            "name": name,
            "cpu_usage_usec": usage,
            "memory_bytes": num("memory.current"),
            "memory_limit_bytes": num("memory.max"),
            "pids": num("pids.current"),
            "pids_limit": num("pids.max"),
            "io_read_bytes": rbytes,
            "io_write_bytes": wbytes,
        }))
    }

    /// Every container's figures for `/v1/metrics`.
    pub fn metrics(&self) -> Vec<crate::api::metrics::ContainerMetrics> {
        let now = Instant::now();
        self.machine
            .units()
            .values()
            .map(|u| {
                let s = self.stats(&u.config.name);
                let get = |k: &str| s.as_ref().and_then(|s| s[k].as_u64());
                crate::api::metrics::ContainerMetrics {
                    name: u.config.name.clone(),
                    cpu_seconds: get("cpu_usage_usec").map(|us| us as f64 / 1e6),
                    memory_bytes: get("memory_bytes"),
                    restarts: u.restarts,
                    healthy: u
                        .config
                        .healthcheck
                        .as_ref()
                        .map(|_| u.health == super::machine::Health::Healthy),
                    up: u.state == super::machine::State::Running,
                    uptime_seconds: u
                        .started_at
                        .map(|s| now.saturating_duration_since(s).as_secs_f64()),
                }
            })
            .collect()
    }

    /// Where a container's log is, for `logs`.
    pub fn log_source(&mut self, name: &str) -> Option<crate::api::LogSource> {
        let u = self.machine.unit(name)?;
        let cfg = u.config.logging;
        let files = self.files.clone();
        let log = self.logs.entry(name.to_string()).or_insert_with(|| {
            Rc::new(RefCell::new(ContainerLog::new(name, &cfg, files.as_ref())))
        });
        let mut log = log.borrow_mut();
        Some(crate::api::LogSource {
            files: log.files(),
            follow: log.follow(),
        })
    }

    /// Starts a command inside a running container.
    pub fn exec(
        &mut self,
        name: &str,
        req: crate::api::ExecRequest,
        reaper: &mut Reaper,
    ) -> Result<crate::api::ExecStarted, crate::api::ApiError> {
        use hyper::StatusCode;
        let l = match (self.machine.unit(name), self.live.get(name)) {
            (None, _) => return Err(crate::api::ApiError::no_container(name)),
            (Some(u), Some(l)) if u.state == super::machine::State::Running => l,
            (Some(u), _) => {
                return Err(crate::api::ApiError::new(
                    StatusCode::CONFLICT,
                    format!("container {name} is {}, not running", u.state.as_str()),
                ));
            }
        };
        let mut env = l.context.env.clone();
        env.extend(req.env);
        let target = exec::Target {
            pid: l.pid,
            cgroup: &l.cgroup,
            context: &l.context,
            env: &env,
            tty: req.tty,
        };
        let [i, o, e] = &req.stdio;
        let started =
            exec::spawn(&target, &req.cmd, [i.as_fd(), o.as_fd(), e.as_fd()]).map_err(|e| {
                crate::api::ApiError::new(StatusCode::BAD_REQUEST, format!("exec in {name}: {e}"))
            })?;
        Ok(crate::api::ExecStarted {
            exit: reaper.watch(started.pid),
            sync: started.sync,
        })
    }

    /// Sends a signal to a container's process.
    pub fn kill(&self, name: &str, signal: i32) -> bool {
        match self.live.get(name) {
            Some(l) => {
                // SAFETY: kill(2) on a pid berth started and has not reaped.
                unsafe { libc::kill(l.pid, signal) };
                true
            }
            None => false,
        }
    }

    /// Applies a reloaded manifest's containers; returns what changed.
    pub fn reload(
        &mut self,
        containers: Vec<Container>,
        reaper: &mut Reaper,
    ) -> super::machine::ReloadSummary {
        let (actions, summary) = self.machine.reload(Instant::now(), containers);
        self.execute(actions, reaper);
        self.refresh_hosts();
        summary
    }

    /// The container network's state for `/v1/system/info`: null without
    /// one, `{"error": …}` if it could not be set up.
    pub fn net_status(&self) -> serde_json::Value {
        match &self.net {
            Ok(Some(n)) => n.status(),
            Ok(None) => serde_json::Value::Null,
            Err(e) => serde_json::json!({ "error": e }),
        }
    }

    /// Removes the container network at shutdown, once every container is
    /// down.
    pub async fn shutdown_network(&self) {
        if let Ok(Some(net)) = &self.net {
            net.shutdown().await;
        }
    }

    /// New events for API watchers (`GET /v1/events`), as JSON lines.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.notices.subscribe()
    }

    /// Where events for API watchers go, for host events (a full disk).
    pub fn notices(&self) -> tokio::sync::broadcast::Sender<String> {
        self.notices.clone()
    }

    fn notify(&self, name: &str, notice: &Notice) {
        if self.notices.receiver_count() == 0 {
            return;
        }
        let time = crate::logging::files::rfc3339(std::time::SystemTime::now());
        let v = match notice {
            Notice::Start => serde_json::json!({"time": time, "container": name, "event": "start"}),
            Notice::Die { exit_code, oom } => serde_json::json!({
                "time": time, "container": name, "event": "die", "exit_code": exit_code, "oom": oom,
            }),
            Notice::Oom => serde_json::json!({"time": time, "container": name, "event": "oom"}),
            Notice::Health(h) => serde_json::json!({
                "time": time, "container": name, "event": "health_status", "health": h.as_str(),
            }),
            Notice::Restart { restarts } => serde_json::json!({
                "time": time, "container": name, "event": "restart", "restarts": restarts,
            }),
        };
        let _ = self.notices.send(v.to_string());
    }

    /// Withdraws a container's published ports when its process ends.
    fn ports(&mut self, name: &str, notice: &Notice) {
        if let (Ok(Some(net)), Notice::Die { .. }) = (&mut self.net, notice) {
            net.unpublish(name);
        }
    }

    /// Rewrites the /etc/hosts of every running bridge container when the
    /// network's names changed (a reload added, removed or renamed one).
    /// Containers added by a reload get their address now, so the others
    /// know it before they start. The files are rewritten in place: each is
    /// bind-mounted into its container.
    fn refresh_hosts(&mut self) {
        let Ok(Some(net)) = &mut self.net else {
            return;
        };
        let configs: Vec<Container> = self
            .machine
            .units()
            .values()
            .map(|u| u.config.clone())
            .filter(network::on_bridge)
            .collect();
        for c in &configs {
            if let Err(e) = net.assign(&c.name) {
                log::error!("{}: {e}", c.name);
            }
        }
        let book = net.hosts(&configs);
        if book == self.hosts_book {
            return;
        }
        for c in configs.iter().filter(|c| self.live.contains_key(&c.name)) {
            let path = self.runtime.dirs.run.join(&c.name).join("hosts");
            let text = runtime::spec::hosts_file(c, &book);
            let written = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
            match written {
                Ok(()) => log::debug!("{}: /etc/hosts rewritten", c.name),
                Err(e) => log::warn!("{}: cannot rewrite {}: {e}", c.name, path.display()),
            }
        }
        self.hosts_book = book;
    }

    /// A container a reload removed: its log, address and writable layer go.
    fn forget(&mut self, name: &str) {
        self.logs.remove(name);
        if let Ok(Some(net)) = &mut self.net {
            net.release(name);
        }
        self.runtime.remove_layer(name);
        self.refresh_hosts();
    }

    fn cleanup(&mut self, name: String) {
        let Some(cgroup) = self.stale.remove(&name) else {
            return;
        };
        if self.runtime.cleanup(&name, &cgroup) {
            return;
        }
        // Not released yet: try again shortly, a few times.
        let runtime = self.runtime.clone();
        tokio::task::spawn_local(async move {
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if runtime.cleanup(&name, &cgroup) {
                    return;
                }
            }
            log::warn!("{name}: cgroup {} not removed", cgroup.display());
        });
    }

    fn check(&mut self, name: &str, generation: u64, reaper: &mut Reaper) {
        let (Some(l), Some(unit)) = (self.live.get(name), self.machine.unit(name)) else {
            return;
        };
        let Some(h) = unit.config.healthcheck.clone() else {
            return;
        };
        let argv = match &h.test {
            HealthTest::Cmd(a) => a.clone(),
            HealthTest::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        };
        let tx = self.events.clone();
        let n = name.to_string();
        let report = move |ok: bool, why: &str| {
            if !ok {
                log::debug!("{n}: health check failed: {why}");
            }
            let _ = tx.send(Event::Health {
                name: n,
                generation,
                ok,
            });
        };
        let pipe = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
            Ok(p) => p,
            Err(e) => return report(false, &format!("pipe: {e}")),
        };
        let null: OwnedFd = match std::fs::File::open("/dev/null") {
            Ok(f) => f.into(),
            Err(e) => return report(false, &format!("/dev/null: {e}")),
        };
        let target = exec::Target {
            pid: l.pid,
            cgroup: &l.cgroup,
            context: &l.context,
            env: &l.context.env,
            tty: false,
        };
        let started = match exec::spawn(
            &target,
            &argv,
            [null.as_fd(), pipe.1.as_fd(), pipe.1.as_fd()],
        ) {
            Ok(s) => s,
            Err(e) => return report(false, &e.to_string()),
        };
        drop(pipe.1);
        let exit = reaper.watch(started.pid);
        let pid = started.pid;
        let timeout = h.timeout;
        tokio::task::spawn_local(async move {
            let mut out = String::new();
            let read = output::pump(pipe.0, |lines| {
                for line in lines {
                    if out.len() < CHECK_OUTPUT {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            });
            let run = async {
                read.await;
                exit.await
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(Ok(Exit::Code(0))) => report(true, ""),
                Ok(Ok(e)) => report(false, &format!("{e}: {}", out.trim_end())),
                Ok(Err(_)) => report(false, "lost its exit status"),
                Err(_) => {
                    // SAFETY: kill(2) on the check's pid; if it already
                    // exited unreaped it is a zombie, which ignores it.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    report(
                        false,
                        &format!("timed out after {} s", timeout.as_secs_f64()),
                    );
                }
            }
        });
    }
}

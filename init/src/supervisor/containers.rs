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
                .map(|u| {
                    serde_json::json!({
                        "name": u.config.name,
                        "image": u.config.image.to_string(),
                        "state": u.state.as_str(),
                        "health": u.health.as_str(),
                        "status": u.status,
                        "restarts": u.restarts,
                        "pid": self.pid(&u.config.name),
                        "uptime_ms": u.started_at.map(|s| now.saturating_duration_since(s).as_millis() as u64),
                        "exit_code": u.last_exit.as_ref().map(|e| e.exit.code()),
                        "oom_killed": u.last_exit.as_ref().is_some_and(|e| e.oom),
                    })
                })
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
                Action::Notify { name, notice } => self.notify(&name, &notice),
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
        let launch = match self.runtime.spawn(&Real, &config, &net) {
            Ok(l) => l,
            Err(e) => return fail(e.to_string()),
        };
        let exit = reaper.watch(launch.pid);
        let tx = self.events.clone();
        let n = name.to_string();
        let cgroup = launch.cgroup.clone();
        tokio::task::spawn_local(async move {
            let Ok(exit) = exit.await else {
                return;
            };
            let oom = runtime::cgroup::oom_kills(&cgroup) > 0;
            let _ = tx.send(Event::Exited { name: n, exit, oom });
        });

        let tx = self.events.clone();
        let n = name.to_string();
        let spawned = launch.spawned;
        let pid = launch.pid;
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
                    let _ = tx.send(Event::SetupFailed {
                        name: n,
                        error: format!("network: {e}"),
                    });
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
                Some(f) => {
                    log::error!("{n}: cannot start: {f}");
                    let _ = tx.send(Event::SetupFailed {
                        name: n,
                        error: f.to_string(),
                    });
                }
            }
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
            },
        );
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
                let net = match &mut self.net {
                    Ok(Some(n)) => n,
                    Ok(None) => return Err("no container network".into()),
                    Err(e) => return Err(format!("no container network: {e}")),
                };
                let configs: Vec<Container> = self
                    .machine
                    .units()
                    .values()
                    .map(|u| u.config.clone())
                    .filter(network::on_bridge)
                    .collect();
                let attachment = net.attachment(&c.name)?;
                Ok((
                    runtime::NetSpec {
                        hosts: net.hosts(&configs),
                        join: None,
                    },
                    Some(attachment),
                ))
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

    /// New events for API watchers (`GET /v1/events`), as JSON lines.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.notices.subscribe()
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

    /// A container a reload removed: its log, address and writable layer go.
    fn forget(&mut self, name: &str) {
        self.logs.remove(name);
        if let Ok(Some(net)) = &mut self.net {
            net.release(name);
        }
        self.runtime.remove_layer(name);
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
            ids: &l.context.ids,
            security: &l.context.security,
            env: &l.context.env,
            cwd: &l.context.cwd,
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

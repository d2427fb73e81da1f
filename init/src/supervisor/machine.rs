//! The containers' state machine: pure logic, no I/O and no clock of its own.
//!
//! Every input is an [`Event`] with the time it happened; every effect is an
//! [`Action`] for the driver ([`super::containers`]) to carry out: spawn a
//! container, send a signal, start a timer, run a health check, clean up.
//! So the rules below are unit-tested with a fake clock, deterministically.
//!
//! # States
//! `waiting` (for its dependencies) → `starting` (setup runs) → `running`
//! (the program runs; with a health check it is also `starting`, `healthy`
//! or `unhealthy`) → `exited` (done, by its restart policy), `backing-off`
//! (a restart is due after a delay), `failed` (given up), or, when asked,
//! `stopping` → `stopped`.
//!
//! # Restarts
//! `restart` has Compose's meaning: "no" never restarts; "always" and
//! "unless-stopped" restart after any exit not requested by berth;
//! "on-failure[:N]" restarts after a non-zero exit, a signal, an OOM kill,
//! a timeout or an unhealthy verdict, at most N times, then the container is
//! `failed`. A setup failure (a missing binary, a bad user) counts as an
//! exit with status 127. The delay before a restart starts at
//! [`BACKOFF_INITIAL`] and doubles on each restart up to [`BACKOFF_MAX`]; a
//! run that lasted [`STABLE`] resets it. [`CRASH_LOOP`] short runs in a row
//! are reported as a crash loop (the restarts go on, at the capped delay).
//!
//! # Health
//! Checks run every `interval` (`start_interval` during `start_period`, as
//! long as the container has not been healthy yet); failures during
//! `start_period` do not count. `retries` failures in a row make it
//! unhealthy. Unlike Docker, which only reports it, berth then restarts an
//! unhealthy container under its restart policy (stop, then start again);
//! with restart "no" it stays up, marked unhealthy.
//!
//! # Dependencies
//! A waiting container starts once each dependency meets its condition:
//! `service_started` (it has started in this boot), `service_healthy` (it
//! is running and healthy), `service_completed_successfully` (it exited 0).
//! A required dependency that can no longer meet its condition (failed,
//! or exited non-zero) leaves the container waiting, with that reason as
//! its status; an optional one is then ignored. Containers with nothing to
//! wait for start at once, in parallel.
//!
//! # Shutdown
//! Containers stop in reverse dependency order: one gets its stop signal
//! once everything that depends on it is down; independent ones stop in
//! parallel. Each gets `stop_signal`, then SIGKILL after its
//! `stop_grace_period`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_config::{Condition, Container, RestartPolicy};

use super::reaper::Exit;

/// The first delay before a restart.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// The longest delay before a restart.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run this long resets the delay and the crash-loop count.
pub const STABLE: Duration = Duration::from_secs(10);
/// Short runs in a row that make a crash loop.
pub const CRASH_LOOP: u32 = 5;

/// SIGKILL.
const SIGKILL: i32 = 9;

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for its dependencies.
    Waiting,
    /// Its setup process runs.
    Starting,
    /// Its program runs.
    Running,
    /// It exited and will not be restarted.
    Exited,
    /// It exited and will be restarted after a delay.
    BackingOff,
    /// berth gave up on it.
    Failed,
    /// It was asked to stop and has not yet.
    Stopping,
    /// It was stopped by request.
    Stopped,
}

impl State {
    /// The word shown in `ps` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Starting => "starting",
            State::Running => "running",
            State::Exited => "exited",
            State::BackingOff => "backing-off",
            State::Failed => "failed",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
        }
    }

    /// Whether a process of the container may exist.
    pub fn has_process(self) -> bool {
        matches!(self, State::Starting | State::Running | State::Stopping)
    }
}

/// A container's health, if it has a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No health check, or not running.
    None,
    /// Running, no verdict yet.
    Starting,
    /// The last check passed.
    Healthy,
    /// `retries` checks in a row failed.
    Unhealthy,
}

impl Health {
    /// The word shown in `ps` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::None => "",
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// Why berth is stopping a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// An operator asked.
    Request,
    /// The machine is shutting down.
    Shutdown,
    /// Its health check said unhealthy.
    Unhealthy,
    /// It ran past its `timeout`.
    Timeout,
    /// A reload removes or changes it.
    Reload,
    /// An operator asked for a restart.
    Restart,
}

/// How the last run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastExit {
    /// The exit status.
    pub exit: Exit,
    /// Whether the OOM killer killed in its cgroup.
    pub oom: bool,
    /// Why berth stopped it, if berth did.
    pub stopped_by: Option<StopReason>,
    /// The setup failure, if it never ran its program.
    pub setup_error: Option<String>,
}

impl LastExit {
    /// Whether this run counts as a success.
    pub fn ok(&self) -> bool {
        self.exit == Exit::Code(0)
            && !self.oom
            && self.setup_error.is_none()
            && !matches!(
                self.stopped_by,
                Some(StopReason::Unhealthy | StopReason::Timeout)
            )
    }

    /// Why it ended, for people: "exit code 1", "OOM killed", ...
    pub fn describe(&self) -> String {
        if let Some(e) = &self.setup_error {
            return format!("could not start: {e}");
        }
        let mut s = if self.oom {
            format!("OOM killed ({})", self.exit.code())
        } else {
            self.exit.to_string()
        };
        match self.stopped_by {
            Some(StopReason::Unhealthy) => s += ", stopped as unhealthy",
            Some(StopReason::Timeout) => s += ", stopped at its timeout",
            _ => {}
        }
        s
    }
}

/// One container's record.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Its manifest entry.
    pub config: Container,
    /// Its state.
    pub state: State,
    /// Its health.
    pub health: Health,
    /// Why it is in its state, for people.
    pub status: String,
    /// Restarts so far.
    pub restarts: u32,
    /// Restarts counted against on-failure's limit.
    failures: u32,
    /// Short runs in a row.
    short_runs: u32,
    /// The next restart delay.
    backoff: Duration,
    /// How its last run ended.
    pub last_exit: Option<LastExit>,
    /// When its program started, in this run.
    pub started_at: Option<Instant>,
    /// Whether it has started at all in this boot.
    pub ever_started: bool,
    /// The run's number; timers and checks of older runs are ignored.
    pub generation: u64,
    /// Failed checks in a row.
    health_failures: u32,
    /// Why berth is stopping it, while it stops.
    stop_reason: Option<StopReason>,
    /// The setup failure of the current run, until its exit arrives.
    setup_error: Option<String>,
    /// A reload's new entry, applied once the old run has stopped.
    pending: Option<Container>,
    /// A reload removes it once its run has stopped.
    removing: bool,
}

impl Unit {
    fn new(config: Container) -> Unit {
        Unit {
            config,
            state: State::Waiting,
            health: Health::None,
            status: "waiting".into(),
            restarts: 0,
            failures: 0,
            short_runs: 0,
            backoff: BACKOFF_INITIAL,
            last_exit: None,
            started_at: None,
            ever_started: false,
            generation: 0,
            health_failures: 0,
            stop_reason: None,
            setup_error: None,
            pending: None,
            removing: false,
        }
    }

    /// Takes a new manifest entry: counters reset, waiting again.
    fn replace(&mut self, config: Container) {
        let generation = self.generation;
        *self = Unit::new(config);
        // Keep counting runs, so timers of the old entry stay stale.
        self.generation = generation;
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `spawn` failed before any process existed.
    SpawnFailed {
        /// The container.
        name: String,
        /// Why.
        error: String,
    },
    /// Its setup reported a failure (its exit follows).
    SetupFailed {
        /// The container.
        name: String,
        /// Why.
        error: String,
    },
    /// Its program is running (exec happened).
    Running {
        /// The container.
        name: String,
    },
    /// Its process exited.
    Exited {
        /// The container.
        name: String,
        /// The status.
        exit: Exit,
        /// Whether the OOM killer struck in its cgroup.
        oom: bool,
    },
    /// A timer fired.
    Timer {
        /// The container.
        name: String,
        /// The run it was set for.
        generation: u64,
        /// Which timer.
        kind: TimerKind,
    },
    /// A health check finished.
    Health {
        /// The container.
        name: String,
        /// The run it checked.
        generation: u64,
        /// Whether it passed.
        ok: bool,
    },
    /// An operator asks to stop it.
    Stop(String),
    /// An operator asks to start it.
    Start(String),
    /// An operator asks to restart it (stop, then start).
    Restart(String),
    /// The machine is shutting down.
    Shutdown,
    /// Shutdown has taken too long: kill what is left.
    KillAll,
    /// The host network is up (or berth gave up waiting for it).
    NetworkReady,
}

/// The timers a container can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// Restart after the back-off delay.
    Backoff,
    /// SIGKILL after the stop grace period.
    Grace,
    /// Run the next health check.
    Health,
    /// The run's `timeout`.
    Timeout,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a run of the container.
    Spawn(String),
    /// Send a signal to the container's process.
    Signal {
        /// The container.
        name: String,
        /// The signal number.
        signal: i32,
    },
    /// Send [`Event::Timer`] after a delay.
    Timer {
        /// The container.
        name: String,
        /// The run.
        generation: u64,
        /// Which timer.
        kind: TimerKind,
        /// The delay.
        after: Duration,
    },
    /// Run the container's health check, then send [`Event::Health`].
    Check {
        /// The container.
        name: String,
        /// The run.
        generation: u64,
    },
    /// Remove the run's cgroup and runtime files.
    Cleanup(String),
    /// A reload removed the container: forget its log, address and
    /// writable layer.
    Forget(String),
    /// Something worth telling API watchers happened.
    Notify {
        /// The container.
        name: String,
        /// What.
        notice: Notice,
    },
}

/// What `GET /v1/events` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Its program started running.
    Start,
    /// Its process ended.
    Die {
        /// The shell-style exit code.
        exit_code: i32,
        /// Whether the OOM killer struck.
        oom: bool,
    },
    /// The OOM killer killed in its cgroup.
    Oom,
    /// Its health changed.
    Health(Health),
    /// A restart is due.
    Restart {
        /// Restarts so far, this one included.
        restarts: u32,
    },
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// New containers.
    pub added: Vec<String>,
    /// Containers gone from the manifest.
    pub removed: Vec<String>,
    /// Containers whose entry changed: recreated.
    pub changed: Vec<String>,
    /// Containers left as they were.
    pub unchanged: Vec<String>,
}

/// Whether a dependency lets a container start.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dep {
    Met,
    Pending(String),
    Blocked(String),
}

/// All containers.
#[derive(Debug, Default)]
pub struct Machine {
    units: BTreeMap<String, Unit>,
    shutting_down: bool,
    /// Whether containers that use the network may start.
    network_ready: bool,
}

impl Machine {
    /// A machine for these containers, all waiting. Those that use the
    /// network (bridge, host or another container's) also wait for
    /// [`Event::NetworkReady`] unless `network_ready`.
    pub fn new(containers: impl IntoIterator<Item = Container>, network_ready: bool) -> Machine {
        Machine {
            units: containers
                .into_iter()
                .map(|c| (c.name.clone(), Unit::new(c)))
                .collect(),
            shutting_down: false,
            network_ready,
        }
    }

    /// The containers, by name.
    pub fn units(&self) -> &BTreeMap<String, Unit> {
        &self.units
    }

    /// One container.
    pub fn unit(&self, name: &str) -> Option<&Unit> {
        self.units.get(name)
    }

    /// Whether no container has a process left.
    pub fn all_down(&self) -> bool {
        self.units.values().all(|u| !u.state.has_process())
    }

    /// Whether no container is between two states (starting, or stopping):
    /// every start and stop under way is done, and what it used is freed.
    pub fn settled(&self) -> bool {
        self.units
            .values()
            .all(|u| !matches!(u.state, State::Starting | State::Stopping))
    }

    /// Starts what can start now. Call once after creation.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.settle(now, &mut out);
        out
    }

    /// Takes one event; returns what to do.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::SpawnFailed { name, error } => {
                if let Some(u) = self.units.get_mut(&name) {
                    u.setup_error = Some(error);
                }
                self.ended(&name, now, Exit::Code(127), false, &mut out);
            }
            Event::SetupFailed { name, error } => {
                if let Some(u) = self.units.get_mut(&name) {
                    u.setup_error = Some(error);
                }
            }
            Event::Running { name } => self.running(&name, now, &mut out),
            Event::Exited { name, exit, oom } => self.ended(&name, now, exit, oom, &mut out),
            Event::Timer {
                name,
                generation,
                kind,
            } => self.timer(&name, generation, kind, now, &mut out),
            Event::Health {
                name,
                generation,
                ok,
            } => self.health(&name, generation, ok, now, &mut out),
            Event::Stop(name) => self.stop(&name, StopReason::Request, &mut out),
            Event::Restart(name) => {
                if let Some(u) = self.units.get_mut(&name)
                    && !self.shutting_down
                {
                    if u.state.has_process() {
                        self.stop(&name, StopReason::Restart, &mut out);
                    } else {
                        u.failures = 0;
                        u.short_runs = 0;
                        u.backoff = BACKOFF_INITIAL;
                        set(u, State::Waiting, "restart requested");
                    }
                }
            }
            Event::Start(name) => {
                if let Some(u) = self.units.get_mut(&name)
                    && !u.state.has_process()
                    && !self.shutting_down
                {
                    u.failures = 0;
                    u.short_runs = 0;
                    u.backoff = BACKOFF_INITIAL;
                    set(u, State::Waiting, "start requested");
                }
            }
            Event::Shutdown => {
                self.shutting_down = true;
                for u in self.units.values_mut() {
                    if matches!(u.state, State::Waiting | State::BackingOff) {
                        set(u, State::Stopped, "shutdown");
                    }
                }
            }
            Event::NetworkReady => self.network_ready = true,
            Event::KillAll => {
                for u in self.units.values() {
                    if u.state.has_process() {
                        out.push(Action::Signal {
                            name: u.config.name.clone(),
                            signal: SIGKILL,
                        });
                    }
                }
            }
        }
        self.settle(now, &mut out);
        out
    }

    /// Starts waiting containers whose dependencies are met, and during
    /// shutdown stops containers whose dependents are all down.
    fn settle(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.shutting_down {
            let names: Vec<String> = self
                .units
                .values()
                .filter(|u| matches!(u.state, State::Starting | State::Running))
                .map(|u| u.config.name.clone())
                .collect();
            for name in names {
                let dependents_up = self.units.values().any(|d| {
                    d.state.has_process() && d.config.dependencies().any(|(n, _)| n == name)
                });
                if !dependents_up {
                    self.stop(&name, StopReason::Shutdown, out);
                }
            }
            return;
        }
        let waiting: Vec<String> = self
            .units
            .values()
            .filter(|u| u.state == State::Waiting)
            .map(|u| u.config.name.clone())
            .collect();
        for name in waiting {
            let Some(u) = self.units.get(&name) else {
                continue;
            };
            let needs_network = u.config.network_mode != berth_config::NetworkMode::None;
            let mut verdicts: Vec<Dep> = Vec::new();
            if needs_network && !self.network_ready {
                verdicts.push(Dep::Pending("waiting for the host network".into()));
            }
            verdicts.extend(u.config.dependencies().map(|(dep, cond)| {
                let required = u.config.depends_on.get(dep).is_none_or(|d| d.required);
                self.dependency(dep, cond, required)
            }));
            let blocked = verdicts.iter().find_map(|d| match d {
                Dep::Blocked(r) => Some(r.clone()),
                _ => None,
            });
            let pending = verdicts.iter().find_map(|d| match d {
                Dep::Pending(r) => Some(r.clone()),
                _ => None,
            });
            let Some(u) = self.units.get_mut(&name) else {
                continue;
            };
            match (blocked, pending) {
                (Some(r), _) | (None, Some(r)) => {
                    if u.status != r {
                        log::info!("{name}: waiting: {r}");
                        u.status = r;
                    }
                }
                (None, None) => {
                    let _ = now;
                    spawn(u, out);
                }
            }
        }
    }

    /// Applies a reloaded manifest's containers as a difference: new ones
    /// wait to start, removed ones stop and go, changed ones stop and come
    /// back with their new entry, the others are not touched.
    pub fn reload(
        &mut self,
        now: Instant,
        containers: Vec<Container>,
    ) -> (Vec<Action>, ReloadSummary) {
        let mut out = Vec::new();
        let mut summary = ReloadSummary::default();
        let mut new: BTreeMap<String, Container> = containers
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect();
        let names: Vec<String> = self.units.keys().cloned().collect();
        for name in names {
            let Some(u) = self.units.get_mut(&name) else {
                continue;
            };
            match new.remove(&name) {
                None => {
                    summary.removed.push(name.clone());
                    if u.state.has_process() {
                        u.removing = true;
                        self.stop(&name, StopReason::Reload, &mut out);
                    } else {
                        log::info!("{name}: removed by reload");
                        self.units.remove(&name);
                        out.push(Action::Forget(name));
                    }
                }
                Some(c) if c == u.config => summary.unchanged.push(name),
                Some(c) => {
                    summary.changed.push(name.clone());
                    if u.state.has_process() {
                        u.pending = Some(c);
                        self.stop(&name, StopReason::Reload, &mut out);
                    } else {
                        u.replace(c);
                        set(u, State::Waiting, "recreated by reload");
                    }
                }
            }
        }
        for (name, c) in new {
            summary.added.push(name.clone());
            log::info!("{name}: added by reload");
            self.units.insert(name, Unit::new(c));
        }
        self.settle(now, &mut out);
        (out, summary)
    }

    fn dependency(&self, dep: &str, cond: Condition, required: bool) -> Dep {
        let Some(d) = self.units.get(dep) else {
            return if required {
                Dep::Blocked(format!("dependency {dep} does not exist"))
            } else {
                Dep::Met
            };
        };
        let gone = |why: String| {
            if required {
                Dep::Blocked(why)
            } else {
                Dep::Met
            }
        };
        let final_state = matches!(d.state, State::Failed | State::Exited | State::Stopped);
        match cond {
            Condition::ServiceStarted => {
                if d.ever_started {
                    Dep::Met
                } else if final_state {
                    gone(format!("dependency {dep} failed to start ({})", d.status))
                } else {
                    Dep::Pending(format!("waiting for {dep} to start"))
                }
            }
            Condition::ServiceHealthy => {
                if d.state == State::Running && d.health == Health::Healthy {
                    Dep::Met
                } else if final_state {
                    gone(format!(
                        "dependency {dep} is {} ({})",
                        d.state.as_str(),
                        d.status
                    ))
                } else {
                    Dep::Pending(format!("waiting for {dep} to be healthy"))
                }
            }
            Condition::ServiceCompletedSuccessfully => match (&d.state, &d.last_exit) {
                (State::Exited, Some(e)) if e.ok() => Dep::Met,
                (State::Exited | State::Failed | State::Stopped, _) => gone(format!(
                    "dependency {dep} did not complete successfully ({})",
                    d.status
                )),
                _ => Dep::Pending(format!("waiting for {dep} to complete")),
            },
        }
    }

    fn running(&mut self, name: &str, now: Instant, out: &mut Vec<Action>) {
        let Some(u) = self.units.get_mut(name) else {
            return;
        };
        if u.state != State::Starting {
            return;
        }
        u.started_at = Some(now);
        u.ever_started = true;
        u.health_failures = 0;
        let status = match &u.config.healthcheck {
            Some(h) => {
                u.health = Health::Starting;
                let first = if h.start_period > Duration::ZERO {
                    h.start_interval
                } else {
                    h.interval
                };
                out.push(timer(u, TimerKind::Health, first));
                "running, health starting"
            }
            None => "running",
        };
        set(u, State::Running, status);
        out.push(Action::Notify {
            name: name.to_string(),
            notice: Notice::Start,
        });
        if let Some(t) = u.config.timeout {
            out.push(timer(u, TimerKind::Timeout, t));
        }
    }

    fn ended(&mut self, name: &str, now: Instant, exit: Exit, oom: bool, out: &mut Vec<Action>) {
        let shutting_down = self.shutting_down;
        let Some(u) = self.units.get_mut(name) else {
            return;
        };
        let last = LastExit {
            exit,
            oom,
            stopped_by: u.stop_reason.take(),
            setup_error: u.setup_error.take(),
        };
        let ran_for = u
            .started_at
            .take()
            .map(|s| now.saturating_duration_since(s));
        u.health = Health::None;
        out.push(Action::Cleanup(name.to_string()));
        out.push(Action::Notify {
            name: name.to_string(),
            notice: Notice::Die {
                exit_code: exit.code(),
                oom,
            },
        });
        if oom {
            out.push(Action::Notify {
                name: name.to_string(),
                notice: Notice::Oom,
            });
        }
        let why = last.describe();
        let ok = last.ok();
        let stopped_by = last.stopped_by;
        u.last_exit = Some(last);

        if stopped_by == Some(StopReason::Reload) && !shutting_down {
            if u.removing {
                log::info!("{name}: removed by reload");
                self.units.remove(name);
                out.push(Action::Forget(name.to_string()));
            } else if let Some(config) = u.pending.take() {
                u.replace(config);
                set(u, State::Waiting, "recreated by reload");
            }
            return;
        }
        if stopped_by == Some(StopReason::Restart) && !shutting_down {
            u.failures = 0;
            u.short_runs = 0;
            u.backoff = BACKOFF_INITIAL;
            set(u, State::Waiting, "restart requested");
            return;
        }
        if matches!(stopped_by, Some(StopReason::Request | StopReason::Shutdown)) || shutting_down {
            set(u, State::Stopped, &why);
            return;
        }
        if ran_for.is_some_and(|d| d >= STABLE) {
            u.backoff = BACKOFF_INITIAL;
            u.short_runs = 0;
        } else {
            u.short_runs += 1;
        }
        let restart = match u.config.restart {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max_retries } => {
                if ok {
                    false
                } else if max_retries.is_none_or(|m| u.failures < m) {
                    u.failures += 1;
                    true
                } else {
                    let status = format!(
                        "{why}; gave up after {} restart{}",
                        u.failures,
                        if u.failures == 1 { "" } else { "s" }
                    );
                    set(u, State::Failed, &status);
                    return;
                }
            }
        };
        if !restart {
            let never_ran = u
                .last_exit
                .as_ref()
                .is_some_and(|e| e.setup_error.is_some());
            let state = if never_ran || (!ok && stopped_by == Some(StopReason::Timeout)) {
                State::Failed
            } else {
                State::Exited
            };
            set(u, state, &why);
            return;
        }
        let delay = u.backoff;
        u.backoff = (u.backoff * 2).min(BACKOFF_MAX);
        let mut status = format!("{why}; restart {} in {}", u.restarts + 1, fmt_delay(delay));
        if u.short_runs >= CRASH_LOOP {
            status += &format!(" (crash loop: {} short runs in a row)", u.short_runs);
        }
        set(u, State::BackingOff, &status);
        out.push(timer(u, TimerKind::Backoff, delay));
    }

    fn timer(
        &mut self,
        name: &str,
        generation: u64,
        kind: TimerKind,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let shutting_down = self.shutting_down;
        let Some(u) = self.units.get_mut(name) else {
            return;
        };
        if u.generation != generation {
            return;
        }
        match kind {
            TimerKind::Backoff if u.state == State::BackingOff && !shutting_down => {
                u.restarts += 1;
                out.push(Action::Notify {
                    name: name.to_string(),
                    notice: Notice::Restart {
                        restarts: u.restarts,
                    },
                });
                spawn(u, out);
            }
            TimerKind::Grace if u.state == State::Stopping => {
                log::warn!("{name}: still running after its grace period; killing it");
                out.push(Action::Signal {
                    name: name.to_string(),
                    signal: SIGKILL,
                });
            }
            TimerKind::Health if u.state == State::Running => out.push(Action::Check {
                name: name.to_string(),
                generation,
            }),
            TimerKind::Timeout if u.state.has_process() && u.state != State::Stopping => {
                let _ = now;
                log::warn!("{name}: ran past its timeout; stopping it");
                self.stop(name, StopReason::Timeout, out);
            }
            _ => {}
        }
    }

    fn health(
        &mut self,
        name: &str,
        generation: u64,
        ok: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(u) = self.units.get_mut(name) else {
            return;
        };
        if u.generation != generation || u.state != State::Running {
            return;
        }
        let Some(h) = u.config.healthcheck.clone() else {
            return;
        };
        let in_start_period = u
            .started_at
            .is_some_and(|s| now.saturating_duration_since(s) < h.start_period);
        let was = u.health;
        if ok {
            u.health_failures = 0;
            u.health = Health::Healthy;
        } else if !(in_start_period && was != Health::Healthy) {
            u.health_failures += 1;
            if u.health_failures >= h.retries {
                u.health = Health::Unhealthy;
            }
        }
        if u.health != was {
            out.push(Action::Notify {
                name: name.to_string(),
                notice: Notice::Health(u.health),
            });
            let status = format!("running, {}", u.health.as_str());
            log::info!(
                "{name}: health {} → {}{}",
                if was.as_str().is_empty() {
                    "none"
                } else {
                    was.as_str()
                },
                u.health.as_str(),
                if ok {
                    String::new()
                } else {
                    format!(" after {} failed check(s)", u.health_failures)
                }
            );
            u.status = status;
        }
        let next = if in_start_period && u.health != Health::Healthy {
            h.start_interval
        } else {
            h.interval
        };
        if u.health == Health::Unhealthy && u.config.restart != RestartPolicy::No {
            self.stop(name, StopReason::Unhealthy, out);
        } else {
            out.push(timer(u, TimerKind::Health, next));
        }
    }

    fn stop(&mut self, name: &str, reason: StopReason, out: &mut Vec<Action>) {
        let Some(u) = self.units.get_mut(name) else {
            return;
        };
        match u.state {
            State::Starting | State::Running => {
                u.stop_reason = Some(reason);
                let sig = u.config.stop_signal.number();
                let status = format!(
                    "{} sent ({})",
                    u.config.stop_signal.name(),
                    match reason {
                        StopReason::Request => "stop requested",
                        StopReason::Shutdown => "shutdown",
                        StopReason::Unhealthy => "unhealthy",
                        StopReason::Timeout => "timeout",
                        StopReason::Reload => "reload",
                        StopReason::Restart => "restart requested",
                    }
                );
                set(u, State::Stopping, &status);
                out.push(Action::Signal {
                    name: name.to_string(),
                    signal: sig,
                });
                let grace = u.config.stop_grace_period;
                out.push(timer(u, TimerKind::Grace, grace));
            }
            State::Waiting | State::BackingOff if reason == StopReason::Request => {
                set(u, State::Stopped, "stop requested");
            }
            _ => {}
        }
    }
}

fn spawn(u: &mut Unit, out: &mut Vec<Action>) {
    u.generation += 1;
    u.stop_reason = None;
    u.setup_error = None;
    set(u, State::Starting, "starting");
    out.push(Action::Spawn(u.config.name.clone()));
}

fn timer(u: &Unit, kind: TimerKind, after: Duration) -> Action {
    Action::Timer {
        name: u.config.name.clone(),
        generation: u.generation,
        kind,
        after,
    }
}

/// Moves a unit to a state, logging the transition and its reason.
fn set(u: &mut Unit, state: State, status: &str) {
    if u.state != state {
        log::info!(
            "{}: {} → {} ({status})",
            u.config.name,
            u.state.as_str(),
            state.as_str()
        );
    }
    u.state = state;
    u.status = status.to_string();
}

fn fmt_delay(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(toml: &str) -> Machine {
        let m = berth_config::parse(&format!("version = 1\n{toml}"), "t.toml").unwrap();
        Machine::new(m.containers.into_values(), true)
    }

    fn state(m: &Machine, n: &str) -> State {
        m.unit(n).unwrap().state
    }

    fn spawns(a: &[Action]) -> Vec<&str> {
        a.iter()
            .filter_map(|a| match a {
                Action::Spawn(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }

    fn timer_of(a: &[Action], kind: TimerKind) -> Option<(u64, Duration)> {
        a.iter().find_map(|a| match a {
            Action::Timer {
                kind: k,
                generation,
                after,
                ..
            } if *k == kind => Some((*generation, *after)),
            _ => None,
        })
    }

    fn exited(n: &str, code: i32) -> Event {
        Event::Exited {
            name: n.into(),
            exit: Exit::Code(code),
            oom: false,
        }
    }

    /// Runs a container from spawn to its exit after `ran`, returning the
    /// actions of the exit.
    fn run_once(
        m: &mut Machine,
        t: &mut Instant,
        n: &str,
        ran: Duration,
        code: i32,
    ) -> Vec<Action> {
        m.handle(*t, Event::Running { name: n.into() });
        *t += ran;
        m.handle(*t, exited(n, code))
    }

    #[test]
    fn settled_once_no_start_or_stop_is_under_way() {
        let mut m =
            machine("[containers.a]\nimage = \"busybox\"\n[containers.b]\nimage = \"busybox\"\n");
        let t = Instant::now();
        assert!(m.settled(), "nothing started yet");
        m.start(t);
        assert!(!m.settled(), "both starting");
        m.handle(t, Event::Running { name: "a".into() });
        assert!(!m.settled(), "b still starting");
        m.handle(t, Event::Running { name: "b".into() });
        assert!(m.settled(), "both running");
        m.handle(t, Event::Stop("a".into()));
        assert_eq!(state(&m, "a"), State::Stopping);
        assert!(!m.settled(), "a stopping");
        m.handle(t, exited("a", 0));
        assert!(m.settled(), "a stopped, b running");
    }

    #[test]
    fn independent_containers_start_together() {
        let mut m =
            machine("[containers.a]\nimage = \"busybox\"\n[containers.b]\nimage = \"busybox\"\n");
        let a = m.start(Instant::now());
        assert_eq!(spawns(&a), ["a", "b"]);
        assert_eq!(state(&m, "a"), State::Starting);
    }

    #[test]
    fn crash_loop_backs_off_exponentially_and_on_failure_3_gives_up_after_three() {
        let mut m = machine("[containers.w]\nimage = \"busybox\"\nrestart = \"on-failure:3\"\n");
        let mut t = Instant::now();
        m.start(t);
        let mut delays = Vec::new();
        for restart in 0..3 {
            let a = run_once(&mut m, &mut t, "w", Duration::from_millis(50), 1);
            assert_eq!(state(&m, "w"), State::BackingOff);
            assert!(a.contains(&Action::Cleanup("w".into())));
            let (generation, delay) = timer_of(&a, TimerKind::Backoff).unwrap();
            delays.push(delay);
            t += delay;
            let a = m.handle(
                t,
                Event::Timer {
                    name: "w".into(),
                    generation,
                    kind: TimerKind::Backoff,
                },
            );
            assert_eq!(spawns(&a), ["w"]);
            assert_eq!(m.unit("w").unwrap().restarts, restart + 1);
        }
        assert_eq!(
            delays,
            [
                Duration::from_millis(100),
                Duration::from_millis(200),
                Duration::from_millis(400)
            ]
        );
        let a = run_once(&mut m, &mut t, "w", Duration::from_millis(50), 1);
        assert_eq!(state(&m, "w"), State::Failed);
        assert_eq!(m.unit("w").unwrap().restarts, 3);
        assert!(spawns(&a).is_empty() && timer_of(&a, TimerKind::Backoff).is_none());
        assert_eq!(
            m.unit("w").unwrap().status,
            "exit code 1; gave up after 3 restarts"
        );
    }

    #[test]
    fn backoff_is_capped_and_reset_by_a_stable_run_and_crash_loops_are_named() {
        let mut m = machine("[containers.w]\nimage = \"busybox\"\nrestart = \"always\"\n");
        let mut t = Instant::now();
        m.start(t);
        let mut last = Duration::ZERO;
        let mut statuses = Vec::new();
        for _ in 0..12 {
            let a = run_once(&mut m, &mut t, "w", Duration::from_millis(10), 0);
            statuses.push(m.unit("w").unwrap().status.clone());
            let (generation, delay) = timer_of(&a, TimerKind::Backoff).unwrap();
            last = delay;
            t += delay;
            m.handle(
                t,
                Event::Timer {
                    name: "w".into(),
                    generation,
                    kind: TimerKind::Backoff,
                },
            );
        }
        assert_eq!(last, BACKOFF_MAX);
        // The fifth short run in a row is the first named a crash loop.
        assert!(!statuses[3].contains("crash loop"), "{}", statuses[3]);
        assert!(
            statuses[4].contains("crash loop: 5 short runs in a row"),
            "{}",
            statuses[4]
        );
        let a = run_once(&mut m, &mut t, "w", STABLE, 0);
        assert_eq!(timer_of(&a, TimerKind::Backoff).unwrap().1, BACKOFF_INITIAL);
        assert!(!m.unit("w").unwrap().status.contains("crash loop"));
    }

    #[test]
    fn always_restarts_after_a_kill_and_no_does_not() {
        let mut m = machine(
            "[containers.a]\nimage = \"busybox\"\nrestart = \"always\"\n[containers.n]\nimage = \"busybox\"\n",
        );
        let t = Instant::now();
        m.start(t);
        m.handle(t, Event::Running { name: "a".into() });
        m.handle(t, Event::Running { name: "n".into() });
        let kill = |n: &str| Event::Exited {
            name: n.into(),
            exit: Exit::Signal(9),
            oom: false,
        };
        let a = m.handle(t, kill("a"));
        assert_eq!(state(&m, "a"), State::BackingOff);
        assert!(
            m.unit("a")
                .unwrap()
                .status
                .starts_with("killed by SIGKILL (137); restart 1 in 100 ms")
        );
        assert!(timer_of(&a, TimerKind::Backoff).is_some());
        m.handle(t, kill("n"));
        assert_eq!(state(&m, "n"), State::Exited);
    }

    #[test]
    fn oom_is_reported_as_oom() {
        let mut m = machine("[containers.a]\nimage = \"busybox\"\n");
        let t = Instant::now();
        m.start(t);
        m.handle(t, Event::Running { name: "a".into() });
        m.handle(
            t,
            Event::Exited {
                name: "a".into(),
                exit: Exit::Signal(9),
                oom: true,
            },
        );
        assert_eq!(m.unit("a").unwrap().status, "OOM killed (137)");
    }

    #[test]
    fn a_dependent_waits_for_healthy() {
        let mut m = machine(
            "[containers.db]\nimage = \"busybox\"\nhealthcheck = { test = [\"CMD\", \"true\"], interval = \"1s\", retries = 2 }\n\
             [containers.web]\nimage = \"busybox\"\ndepends_on = { db = { condition = \"service_healthy\" } }\n",
        );
        let t = Instant::now();
        assert_eq!(spawns(&m.start(t)), ["db"]);
        let a = m.handle(t, Event::Running { name: "db".into() });
        assert!(spawns(&a).is_empty());
        assert_eq!(
            m.unit("web").unwrap().status,
            "waiting for db to be healthy"
        );
        let (generation, after) = timer_of(&a, TimerKind::Health).unwrap();
        assert_eq!(after, Duration::from_secs(1));
        let a = m.handle(
            t,
            Event::Timer {
                name: "db".into(),
                generation,
                kind: TimerKind::Health,
            },
        );
        assert_eq!(
            a,
            [Action::Check {
                name: "db".into(),
                generation
            }]
        );
        let a = m.handle(
            t,
            Event::Health {
                name: "db".into(),
                generation,
                ok: true,
            },
        );
        assert_eq!(spawns(&a), ["web"]);
        assert_eq!(m.unit("db").unwrap().health, Health::Healthy);
    }

    #[test]
    fn a_one_shot_gates_and_a_failing_one_keeps_the_dependent_waiting() {
        let toml = "[containers.init]\nimage = \"busybox\"\n\
                    [containers.app]\nimage = \"busybox\"\ndepends_on = { init = { condition = \"service_completed_successfully\" } }\n";
        let mut m = machine(toml);
        let t = Instant::now();
        assert_eq!(spawns(&m.start(t)), ["init"]);
        m.handle(
            t,
            Event::Running {
                name: "init".into(),
            },
        );
        let a = m.handle(t, exited("init", 0));
        assert_eq!(spawns(&a), ["app"]);
        assert_eq!(state(&m, "init"), State::Exited);

        let mut m = machine(toml);
        m.start(t);
        m.handle(
            t,
            Event::Running {
                name: "init".into(),
            },
        );
        let a = m.handle(t, exited("init", 3));
        assert!(spawns(&a).is_empty());
        assert_eq!(state(&m, "app"), State::Waiting);
        assert_eq!(
            m.unit("app").unwrap().status,
            "dependency init did not complete successfully (exit code 3)"
        );
    }

    #[test]
    fn optional_dependencies_that_fail_are_ignored() {
        let mut m = machine(
            "[containers.init]\nimage = \"busybox\"\n\
             [containers.app]\nimage = \"busybox\"\ndepends_on = { init = { condition = \"service_completed_successfully\", required = false } }\n",
        );
        let t = Instant::now();
        m.start(t);
        m.handle(
            t,
            Event::Running {
                name: "init".into(),
            },
        );
        assert_eq!(spawns(&m.handle(t, exited("init", 1))), ["app"]);
    }

    #[test]
    fn a_setup_failure_fails_a_one_shot_and_is_retried_under_on_failure() {
        let mut m = machine(
            "[containers.a]\nimage = \"busybox\"\n[containers.b]\nimage = \"busybox\"\nrestart = \"on-failure\"\n",
        );
        let t = Instant::now();
        m.start(t);
        for n in ["a", "b"] {
            m.handle(
                t,
                Event::SetupFailed {
                    name: n.into(),
                    error: "exec /x: No such file or directory".into(),
                },
            );
            m.handle(t, exited(n, 127));
        }
        assert_eq!(state(&m, "a"), State::Failed);
        assert_eq!(
            m.unit("a").unwrap().status,
            "could not start: exec /x: No such file or directory"
        );
        assert_eq!(state(&m, "b"), State::BackingOff);
        let a = m.handle(
            t,
            Event::SpawnFailed {
                name: "a".into(),
                error: "image x not found".into(),
            },
        );
        assert!(a.contains(&Action::Cleanup("a".into())));
    }

    #[test]
    fn unhealthy_containers_are_restarted_and_start_period_failures_do_not_count() {
        let mut m = machine(
            "[containers.w]\nimage = \"busybox\"\nrestart = \"always\"\n\
             healthcheck = { test = [\"CMD\", \"false\"], interval = \"1s\", retries = 2, start_period = \"10s\", start_interval = \"500ms\" }\n",
        );
        let mut t = Instant::now();
        m.start(t);
        let a = m.handle(t, Event::Running { name: "w".into() });
        let (g, first) = timer_of(&a, TimerKind::Health).unwrap();
        assert_eq!(first, Duration::from_millis(500));
        // Failures in the start period do not count.
        for _ in 0..5 {
            let a = m.handle(
                t,
                Event::Health {
                    name: "w".into(),
                    generation: g,
                    ok: false,
                },
            );
            assert_eq!(
                timer_of(&a, TimerKind::Health).unwrap().1,
                Duration::from_millis(500)
            );
        }
        assert_eq!(m.unit("w").unwrap().health, Health::Starting);
        t += Duration::from_secs(11);
        m.handle(
            t,
            Event::Health {
                name: "w".into(),
                generation: g,
                ok: false,
            },
        );
        assert_eq!(m.unit("w").unwrap().health, Health::Starting);
        let a = m.handle(
            t,
            Event::Health {
                name: "w".into(),
                generation: g,
                ok: false,
            },
        );
        assert_eq!(m.unit("w").unwrap().health, Health::Unhealthy);
        assert_eq!(state(&m, "w"), State::Stopping);
        assert!(a.contains(&Action::Signal {
            name: "w".into(),
            signal: 15
        }));
        m.handle(t, exited("w", 143));
        assert_eq!(state(&m, "w"), State::BackingOff);
        assert!(m.unit("w").unwrap().status.contains("stopped as unhealthy"));
        // Late results of the old run are ignored.
        let a = m.handle(
            t,
            Event::Health {
                name: "w".into(),
                generation: g,
                ok: true,
            },
        );
        assert!(a.is_empty());
    }

    #[test]
    fn a_one_shot_past_its_timeout_is_stopped_and_failed() {
        let mut m = machine(
            "[containers.job]\nimage = \"busybox\"\ntimeout = \"2s\"\nstop_grace_period = \"1s\"\n",
        );
        let t = Instant::now();
        m.start(t);
        let a = m.handle(t, Event::Running { name: "job".into() });
        let (g, after) = timer_of(&a, TimerKind::Timeout).unwrap();
        assert_eq!(after, Duration::from_secs(2));
        let a = m.handle(
            t,
            Event::Timer {
                name: "job".into(),
                generation: g,
                kind: TimerKind::Timeout,
            },
        );
        assert!(a.contains(&Action::Signal {
            name: "job".into(),
            signal: 15
        }));
        let a = m.handle(
            t,
            Event::Timer {
                name: "job".into(),
                generation: g,
                kind: TimerKind::Grace,
            },
        );
        assert_eq!(
            a,
            [Action::Signal {
                name: "job".into(),
                signal: 9
            }]
        );
        m.handle(
            t,
            Event::Exited {
                name: "job".into(),
                exit: Exit::Signal(9),
                oom: false,
            },
        );
        assert_eq!(state(&m, "job"), State::Failed);
        assert_eq!(
            m.unit("job").unwrap().status,
            "killed by SIGKILL (137), stopped at its timeout"
        );
    }

    #[test]
    fn shutdown_stops_in_reverse_dependency_order() {
        let mut m = machine(
            "[containers.db]\nimage = \"busybox\"\n\
             [containers.app]\nimage = \"busybox\"\ndepends_on = [\"db\"]\n\
             [containers.web]\nimage = \"busybox\"\ndepends_on = [\"app\"]\nstop_signal = \"SIGINT\"\n\
             [containers.solo]\nimage = \"busybox\"\nrestart = \"always\"\n",
        );
        let t = Instant::now();
        m.start(t);
        for n in ["db", "solo"] {
            m.handle(t, Event::Running { name: n.into() });
        }
        m.handle(t, Event::Running { name: "app".into() });
        m.handle(t, Event::Running { name: "web".into() });
        let signals = |a: &[Action]| -> Vec<(String, i32)> {
            a.iter()
                .filter_map(|a| match a {
                    Action::Signal { name, signal } => Some((name.clone(), *signal)),
                    _ => None,
                })
                .collect()
        };
        let a = m.handle(t, Event::Shutdown);
        assert_eq!(signals(&a), [("solo".into(), 15), ("web".into(), 2)]);
        let a = m.handle(t, exited("web", 0));
        assert_eq!(signals(&a), [("app".into(), 15)]);
        let a = m.handle(t, exited("solo", 0));
        assert!(signals(&a).is_empty() && timer_of(&a, TimerKind::Backoff).is_none());
        let a = m.handle(t, exited("app", 0));
        assert_eq!(signals(&a), [("db".into(), 15)]);
        assert!(!m.all_down());
        m.handle(t, exited("db", 0));
        assert!(m.all_down());
        assert_eq!(state(&m, "solo"), State::Stopped);
    }

    #[test]
    fn stop_and_start_requests() {
        let mut m = machine("[containers.a]\nimage = \"busybox\"\nrestart = \"always\"\n");
        let t = Instant::now();
        m.start(t);
        m.handle(t, Event::Running { name: "a".into() });
        let a = m.handle(t, Event::Stop("a".into()));
        assert_eq!(state(&m, "a"), State::Stopping);
        let (g, grace) = timer_of(&a, TimerKind::Grace).unwrap();
        assert_eq!(grace, Duration::from_secs(10));
        m.handle(t, exited("a", 0));
        assert_eq!(state(&m, "a"), State::Stopped);
        // A stale grace timer does nothing.
        assert!(
            m.handle(
                t,
                Event::Timer {
                    name: "a".into(),
                    generation: g,
                    kind: TimerKind::Grace
                }
            )
            .is_empty()
        );
        let a = m.handle(t, Event::Start("a".into()));
        assert_eq!(spawns(&a), ["a"]);
    }

    #[test]
    fn containers_that_use_the_network_wait_for_it() {
        let m = berth_config::parse(
            "version = 1\n[containers.net]\nimage = \"busybox\"\n[containers.offline]\nimage = \"busybox\"\nnetwork_mode = \"none\"\n",
            "t.toml",
        )
        .unwrap();
        let mut m = Machine::new(m.containers.into_values(), false);
        let t = Instant::now();
        assert_eq!(spawns(&m.start(t)), ["offline"]);
        assert_eq!(
            m.unit("net").unwrap().status,
            "waiting for the host network"
        );
        assert_eq!(spawns(&m.handle(t, Event::NetworkReady)), ["net"]);
    }

    #[test]
    fn reload_adds_removes_and_recreates_only_what_changed() {
        let mut m = machine(
            "[containers.keep]\nimage = \"busybox\"\ncommand = [\"sleep\", \"1\"]\n\
             [containers.gone]\nimage = \"busybox\"\n\
             [containers.edit]\nimage = \"busybox\"\ncommand = [\"old\"]\n",
        );
        let t = Instant::now();
        m.start(t);
        for n in ["keep", "gone", "edit"] {
            m.handle(t, Event::Running { name: n.into() });
        }
        let keep_gen = m.unit("keep").unwrap().generation;
        let new = berth_config::parse(
            "version = 1\n[containers.keep]\nimage = \"busybox\"\ncommand = [\"sleep\", \"1\"]\n\
             [containers.edit]\nimage = \"busybox\"\ncommand = [\"new\"]\n\
             [containers.fresh]\nimage = \"busybox\"\n",
            "t.toml",
        )
        .unwrap();
        let (a, summary) = m.reload(t, new.containers.into_values().collect());
        assert_eq!(
            summary,
            ReloadSummary {
                added: vec!["fresh".into()],
                removed: vec!["gone".into()],
                changed: vec!["edit".into()],
                unchanged: vec!["keep".into()],
            }
        );
        assert_eq!(spawns(&a), ["fresh"]);
        assert!(a.contains(&Action::Signal {
            name: "gone".into(),
            signal: 15
        }));
        assert!(a.contains(&Action::Signal {
            name: "edit".into(),
            signal: 15
        }));
        // Untouched: same run, still running.
        assert_eq!(m.unit("keep").unwrap().generation, keep_gen);
        assert_eq!(state(&m, "keep"), State::Running);
        // The removed one goes once stopped; the edited one comes back new.
        let a = m.handle(t, exited("gone", 143));
        assert!(a.contains(&Action::Forget("gone".into())));
        assert!(m.unit("gone").is_none());
        let a = m.handle(t, exited("edit", 143));
        assert_eq!(spawns(&a), ["edit"]);
        assert_eq!(
            m.unit("edit").unwrap().config.command,
            Some(vec!["new".to_string()])
        );
        assert_eq!(m.unit("edit").unwrap().restarts, 0);
    }

    #[test]
    fn restart_requests_stop_then_start() {
        let mut m = machine("[containers.a]\nimage = \"busybox\"\n");
        let t = Instant::now();
        m.start(t);
        m.handle(t, Event::Running { name: "a".into() });
        let a = m.handle(t, Event::Restart("a".into()));
        assert!(a.contains(&Action::Signal {
            name: "a".into(),
            signal: 15
        }));
        let a = m.handle(t, exited("a", 143));
        assert_eq!(spawns(&a), ["a"]);
    }

    #[test]
    fn events_are_notified() {
        let mut m = machine(
            "[containers.a]\nimage = \"busybox\"\nrestart = \"always\"\nhealthcheck = { test = [\"CMD\", \"true\"] }\n",
        );
        let t = Instant::now();
        m.start(t);
        let notices = |a: &[Action]| -> Vec<Notice> {
            a.iter()
                .filter_map(|a| match a {
                    Action::Notify { notice, .. } => Some(notice.clone()),
                    _ => None,
                })
                .collect()
        };
        let a = m.handle(t, Event::Running { name: "a".into() });
        assert_eq!(notices(&a), [Notice::Start]);
        let g = m.unit("a").unwrap().generation;
        let a = m.handle(
            t,
            Event::Health {
                name: "a".into(),
                generation: g,
                ok: true,
            },
        );
        assert_eq!(notices(&a), [Notice::Health(Health::Healthy)]);
        let a = m.handle(
            t,
            Event::Exited {
                name: "a".into(),
                exit: Exit::Signal(9),
                oom: true,
            },
        );
        assert_eq!(
            notices(&a),
            [
                Notice::Die {
                    exit_code: 137,
                    oom: true
                },
                Notice::Oom
            ]
        );
        let a = m.handle(
            t,
            Event::Timer {
                name: "a".into(),
                generation: g,
                kind: TimerKind::Backoff,
            },
        );
        assert_eq!(notices(&a), [Notice::Restart { restarts: 1 }]);
    }

    #[test]
    fn kill_all_reaches_every_process() {
        let mut m =
            machine("[containers.a]\nimage = \"busybox\"\n[containers.b]\nimage = \"busybox\"\n");
        let t = Instant::now();
        m.start(t);
        m.handle(t, Event::Running { name: "a".into() });
        let a = m.handle(t, Event::KillAll);
        assert_eq!(
            a,
            [
                Action::Signal {
                    name: "a".into(),
                    signal: 9
                },
                Action::Signal {
                    name: "b".into(),
                    signal: 9
                }
            ]
        );
    }
}

//! The resolved manifest: typed, validated, with every default applied
//! (see [`crate::defaults`]). Nothing here needs parsing again.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use crate::caps::{CapSpec, Capability};
pub use crate::idmap::{IdMaps, IdRange};
pub use crate::image_ref::ImageRef;
pub use crate::net::{Cidr, MacAddr};
pub use crate::ports::{PortMapping, PortRange, Protocol};
pub use crate::signal::Signal;

/// A validated manifest with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Schema version; always 1.
    pub version: u32,
    /// The host's settings.
    pub host: Host,
    /// The containers, by (normalised) name.
    pub containers: BTreeMap<String, Container>,
}

/// What berth does when PID 1 meets a fatal error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FatalAction {
    /// Reboot (the default: a device in the field recovers).
    #[default]
    Reboot,
    /// Power off.
    Poweroff,
    /// Halt, leaving the machine on for inspection.
    Halt,
}

impl FatalAction {
    /// Its name in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            FatalAction::Reboot => "reboot",
            FatalAction::Poweroff => "poweroff",
            FatalAction::Halt => "halt",
        }
    }
}

/// Host settings: `[host]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// The hostname; berth keeps the kernel's when unset.
    pub hostname: Option<String>,
    /// Extra kernel modules to load at boot.
    pub modules: Vec<String>,
    /// Sysctls to apply at boot, by dotted name.
    pub sysctls: BTreeMap<String, String>,
    /// What to do on a fatal error in PID 1.
    pub on_fatal: FatalAction,
    /// How long shutdown waits for all containers to stop before killing them.
    pub shutdown_grace: Duration,
    /// `[host.network]`.
    pub network: Network,
    /// `[host.storage]`.
    pub storage: Storage,
    /// `[host.logging]`.
    pub logging: Logging,
    /// `[host.watchdog]`; `None` when no watchdog is used.
    pub watchdog: Option<Watchdog>,
    /// `[host.api]`.
    pub api: Api,
}

/// `[host.network]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Interfaces to configure, in the order written.
    pub interfaces: Vec<Interface>,
    /// The bridge that containers with `network_mode = "bridge"` join.
    pub bridge: Bridge,
    /// Nameservers for the host (and containers on the bridge), replacing
    /// any learnt by DHCP when not empty.
    pub dns: Vec<IpAddr>,
    /// DNS search domains.
    pub dns_search: Vec<String>,
}

/// One interface: matched by name, by MAC, or by both (then both must match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The kernel's name for it, e.g. "eth0".
    pub name: Option<String>,
    /// Its MAC address.
    pub mac: Option<MacAddr>,
    /// Whether to run a DHCPv4 client on it.
    pub dhcp: bool,
    /// Static addresses, IPv4 and IPv6.
    pub addresses: Vec<Cidr>,
    /// The IPv4 default gateway.
    pub gateway4: Option<Ipv4Addr>,
    /// The IPv6 default gateway.
    pub gateway6: Option<Ipv6Addr>,
    /// Extra routes.
    pub routes: Vec<Route>,
    /// MTU; the kernel's default when unset.
    pub mtu: Option<u32>,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination network ("default" is 0.0.0.0/0 or ::/0).
    pub to: Cidr,
    /// The next hop; `None` for an on-link route.
    pub via: Option<IpAddr>,
    /// The route's metric.
    pub metric: Option<u32>,
}

/// The container bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// The bridge's interface name.
    pub name: String,
    /// Its IPv4 subnet; the bridge takes the first host address.
    pub subnet: Cidr,
    /// Whether to masquerade traffic leaving the subnet.
    pub nat: bool,
}

impl Bridge {
    /// The bridge's own address (the subnet's first host), the containers' gateway.
    pub fn gateway(&self) -> Option<IpAddr> {
        self.subnet.host(1)
    }
}

/// `[host.storage]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Storage {
    /// The persistent data device; `None` keeps data in memory.
    pub data: Option<DataDevice>,
}

/// The persistent data device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDevice {
    /// How to find it.
    pub device: DeviceRef,
    /// Its filesystem.
    pub fs: Filesystem,
    /// Where to mount it.
    pub mount: PathBuf,
}

/// A block device, found by label, UUID or path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRef {
    /// `LABEL=…`: the filesystem label.
    Label(String),
    /// `UUID=…`: the filesystem UUID.
    Uuid(String),
    /// `/dev/…`: a device path.
    Path(PathBuf),
}

impl fmt::Display for DeviceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRef::Label(l) => write!(f, "LABEL={l}"),
            DeviceRef::Uuid(u) => write!(f, "UUID={u}"),
            DeviceRef::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A filesystem type for the data device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filesystem {
    /// ext4 (the default; built into berth's kernel).
    #[default]
    Ext4,
    /// XFS.
    Xfs,
    /// Btrfs.
    Btrfs,
}

impl Filesystem {
    /// The name `mount` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "ext4",
            Filesystem::Xfs => "xfs",
            Filesystem::Btrfs => "btrfs",
        }
    }
}

/// `[host.logging]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    /// The lowest level berth prints on the console.
    pub console: LogLevel,
    /// Rotated log files; `None` when not written.
    pub files: Option<LogFiles>,
    /// Remote syslog; `None` when not sent.
    pub syslog: Option<Syslog>,
}

/// A log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    #[default]
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// Its name in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Log files with size-based rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFiles {
    /// The directory that holds them.
    pub dir: PathBuf,
    /// Rotate a file when it reaches this many bytes.
    pub max_size: u64,
    /// How many files to keep per log, the current one included.
    pub max_files: u32,
}

/// A remote syslog receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syslog {
    /// Transport.
    pub protocol: Protocol,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Message format.
    pub format: SyslogFormat,
}

/// A syslog message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyslogFormat {
    /// RFC 5424 (the default).
    #[default]
    Rfc5424,
    /// RFC 3164 (BSD).
    Rfc3164,
}

/// A hardware watchdog that berth keeps fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watchdog {
    /// The device.
    pub device: PathBuf,
    /// The timeout to program: the machine resets if berth stops feeding it
    /// for this long.
    pub timeout: Duration,
}

/// `[host.api]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    /// The local Unix socket.
    pub socket: PathBuf,
    /// An optional remote listener, always with mutual TLS.
    pub remote: Option<RemoteApi>,
}

/// A remote API listener with mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteApi {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// The CA that client certificates must chain to (PEM).
    pub client_ca: PathBuf,
}

/// One container: `[containers.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// Its name, normalised (lowercase).
    pub name: String,
    /// The image.
    pub image: ImageRef,
    /// The command, overriding the image's CMD.
    pub command: Option<Vec<String>>,
    /// The entrypoint, overriding the image's ENTRYPOINT.
    pub entrypoint: Option<Vec<String>>,
    /// Environment variables set in the manifest. They win over `env_file`.
    pub environment: BTreeMap<String, String>,
    /// Files of `KEY=value` lines, read at start (see [`crate::env_file`]).
    /// Relative paths are resolved against the manifest's directory.
    pub env_file: Vec<PathBuf>,
    /// The working directory, overriding the image's.
    pub working_dir: Option<PathBuf>,
    /// The user to run as, overriding the image's.
    pub user: Option<User>,
    /// Supplementary groups.
    pub group_add: Vec<IdOrName>,
    /// When to restart it.
    pub restart: RestartPolicy,
    /// Containers this one waits for, by name.
    pub depends_on: BTreeMap<String, Dependency>,
    /// Its health check; `None` when it has none (or it is disabled).
    /// berth fills in the image's HEALTHCHECK when the manifest has none
    /// and does not disable it.
    pub healthcheck: Option<Healthcheck>,
    /// Whether the manifest turns health checks off (`disable = true` or
    /// `test = ["NONE"]`): the image's HEALTHCHECK does not apply either.
    pub healthcheck_disabled: bool,
    /// The signal that asks it to stop: the manifest's, else the image's
    /// STOPSIGNAL (filled in by berth when it loads the image), else SIGTERM.
    pub stop_signal: Signal,
    /// Whether `stop_signal` was written in the manifest (so that an image's
    /// STOPSIGNAL does not replace it).
    pub stop_signal_set: bool,
    /// How long to wait after `stop_signal` before SIGKILL.
    pub stop_grace_period: Duration,
    /// The longest one run may last; past it berth stops the container and
    /// the run counts as failed. For one-shot tasks. `None`: no limit.
    pub timeout: Option<Duration>,
    /// Whether to run a minimal init as its PID 1 (reaps zombies, forwards signals).
    pub init: bool,
    /// Whether its root filesystem is mounted read-only.
    pub read_only: bool,
    /// Whether its writable layer (what it changes in its root filesystem)
    /// is kept across reboots on the data partition. Without it, a
    /// container starts each boot from its image, as after `docker rm`;
    /// within one boot the layer survives its restarts either way.
    pub persist: bool,
    /// tmpfs mounts.
    pub tmpfs: Vec<Tmpfs>,
    /// Bind mounts and named volumes.
    pub volumes: Vec<Volume>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// Its network namespace.
    pub network_mode: NetworkMode,
    /// Whether it shares the host's PID namespace (`pid = "host"`): it sees
    /// every process, and as root may signal them, PID 1 included. For
    /// node agents; off by default.
    pub pid_host: bool,
    /// Its hostname: the one written, or its name. `None` when it shares
    /// another namespace's (`network_mode` "host" or "service:…").
    pub hostname: Option<String>,
    /// Nameservers; the host's when empty.
    pub dns: Vec<IpAddr>,
    /// DNS search domains.
    pub dns_search: Vec<String>,
    /// Extra /etc/hosts entries, in the order written.
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// Capabilities added to the default set.
    pub cap_add: Vec<CapSpec>,
    /// Capabilities removed from the default set.
    pub cap_drop: Vec<CapSpec>,
    /// Whether it runs with all capabilities and all devices.
    pub privileged: bool,
    /// Security options.
    pub security_opt: SecurityOpt,
    /// Host devices made available to it.
    pub devices: Vec<Device>,
    /// Resource limits (setrlimit).
    pub ulimits: Vec<Ulimit>,
    /// Namespaced sysctls.
    pub sysctls: BTreeMap<String, String>,
    /// cgroup limits.
    pub resources: Resources,
    /// Size of /dev/shm.
    pub shm_size: u64,
    /// The OOM killer's score adjustment.
    pub oom_score_adj: i32,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// Where its output goes.
    pub logging: ContainerLogging,
    /// Its user namespace (`uid_map`, `gid_map`); `None`: the host's.
    pub userns: Option<IdMaps>,
}

impl Container {
    /// The containers this one must wait for: its `depends_on`, plus the
    /// container whose network it shares (`network_mode = "service:NAME"`),
    /// which is an implicit "service_started" dependency, as in Compose.
    pub fn dependencies(&self) -> impl Iterator<Item = (&str, Condition)> {
        let net = match &self.network_mode {
            NetworkMode::Service(s) if !self.depends_on.contains_key(s) => {
                Some((s.as_str(), Condition::ServiceStarted))
            }
            _ => None,
        };
        self.depends_on
            .iter()
            .map(|(n, d)| (n.as_str(), d.condition))
            .chain(net)
    }
}

/// A user or group, by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdOrName {
    /// A numeric id.
    Id(u32),
    /// A name, looked up in the image's /etc/passwd or /etc/group.
    Name(String),
}

impl fmt::Display for IdOrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdOrName::Id(n) => write!(f, "{n}"),
            IdOrName::Name(s) => f.write_str(s),
        }
    }
}

/// `user = "uid[:gid]"` or `"name[:group]"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user.
    pub user: IdOrName,
    /// The primary group; the user's own when `None`.
    pub group: Option<IdOrName>,
}

/// When a container is restarted after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    No,
    /// Always, whatever its exit status.
    Always,
    /// When it exits non-zero, at most `max_retries` times if given.
    OnFailure {
        /// The limit on restarts; unlimited when `None`.
        max_retries: Option<u32>,
    },
    /// Always, unless it was stopped by the user.
    UnlessStopped,
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::OnFailure { max_retries: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure {
                max_retries: Some(n),
            } => write!(f, "on-failure:{n}"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

/// What a dependency must reach before the dependent starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// Started (the default).
    #[default]
    ServiceStarted,
    /// Reported healthy by its health check.
    ServiceHealthy,
    /// Exited with status 0.
    ServiceCompletedSuccessfully,
}

impl Condition {
    /// Its name in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::ServiceStarted => "service_started",
            Condition::ServiceHealthy => "service_healthy",
            Condition::ServiceCompletedSuccessfully => "service_completed_successfully",
        }
    }
}

/// One entry of `depends_on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dependency {
    /// What the dependency must reach.
    pub condition: Condition,
    /// When false, the dependent starts anyway if the dependency fails to
    /// reach the condition.
    pub required: bool,
}

/// A health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// What to run.
    pub test: HealthTest,
    /// Time between checks.
    pub interval: Duration,
    /// How long one check may take.
    pub timeout: Duration,
    /// Consecutive failures that make it unhealthy.
    pub retries: u32,
    /// Failures in this time after start do not count.
    pub start_period: Duration,
    /// Time between checks during `start_period`.
    pub start_interval: Duration,
}

/// The command a health check runs in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthTest {
    /// `["CMD", args…]`: run directly.
    Cmd(Vec<String>),
    /// `["CMD-SHELL", "…"]` or a plain string: run with `/bin/sh -c`.
    Shell(String),
}

/// A tmpfs mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    /// Where to mount it.
    pub target: PathBuf,
    /// Its size limit in bytes; the kernel's default (half of RAM) when `None`.
    pub size: Option<u64>,
    /// Its root's mode; 1777 when `None`.
    pub mode: Option<u32>,
}

/// A bind mount or named volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// What to mount.
    pub source: VolumeSource,
    /// Where in the container.
    pub target: PathBuf,
    /// Whether it is mounted read-only.
    pub read_only: bool,
}

/// The source of a [`Volume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A host path (absolute; relative paths were resolved against the
    /// manifest's directory).
    Bind(PathBuf),
    /// A named volume, a directory that berth keeps on the data device.
    Named(String),
}

/// A container's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// Its own namespace, on the berth bridge (the default).
    #[default]
    Bridge,
    /// The host's namespace.
    Host,
    /// Its own namespace with only loopback.
    None,
    /// The namespace of another container, by name.
    Service(String),
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkMode::Bridge => f.write_str("bridge"),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Service(s) => write!(f, "service:{s}"),
        }
    }
}

/// `security_opt`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityOpt {
    /// Set the no_new_privs bit.
    /// `None` when not written: then on unless privileged
    /// ([`crate::defaults::no_new_privileges`]).
    pub no_new_privileges: Option<bool>,
    /// The seccomp filter.
    pub seccomp: Seccomp,
}

/// Which seccomp filter a container gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Seccomp {
    /// berth's default profile.
    #[default]
    Default,
    /// None at all.
    Unconfined,
    /// A profile file (Docker's JSON format).
    Profile(PathBuf),
}

/// A host device made available in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The device on the host.
    pub source: PathBuf,
    /// Its path in the container (the same as `source` unless given).
    pub target: PathBuf,
    /// cgroup access: read.
    pub read: bool,
    /// cgroup access: write.
    pub write: bool,
    /// cgroup access: mknod.
    pub mknod: bool,
}

/// A resource whose limit `ulimits` can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UlimitName {
    /// RLIMIT_AS.
    As,
    /// RLIMIT_CORE.
    Core,
    /// RLIMIT_CPU.
    Cpu,
    /// RLIMIT_DATA.
    Data,
    /// RLIMIT_FSIZE.
    Fsize,
    /// RLIMIT_LOCKS.
    Locks,
    /// RLIMIT_MEMLOCK.
    Memlock,
    /// RLIMIT_MSGQUEUE.
    Msgqueue,
    /// RLIMIT_NICE.
    Nice,
    /// RLIMIT_NOFILE.
    Nofile,
    /// RLIMIT_NPROC.
    Nproc,
    /// RLIMIT_RSS.
    Rss,
    /// RLIMIT_RTPRIO.
    Rtprio,
    /// RLIMIT_RTTIME.
    Rttime,
    /// RLIMIT_SIGPENDING.
    Sigpending,
    /// RLIMIT_STACK.
    Stack,
}

impl UlimitName {
    /// Every name, with its manifest spelling.
    pub const ALL: [(UlimitName, &'static str); 16] = [
        (UlimitName::As, "as"),
        (UlimitName::Core, "core"),
        (UlimitName::Cpu, "cpu"),
        (UlimitName::Data, "data"),
        (UlimitName::Fsize, "fsize"),
        (UlimitName::Locks, "locks"),
        (UlimitName::Memlock, "memlock"),
        (UlimitName::Msgqueue, "msgqueue"),
        (UlimitName::Nice, "nice"),
        (UlimitName::Nofile, "nofile"),
        (UlimitName::Nproc, "nproc"),
        (UlimitName::Rss, "rss"),
        (UlimitName::Rtprio, "rtprio"),
        (UlimitName::Rttime, "rttime"),
        (UlimitName::Sigpending, "sigpending"),
        (UlimitName::Stack, "stack"),
    ];

    /// Its manifest spelling ("nofile").
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == self)
            .map_or("", |(_, s)| s)
    }

    /// The Linux `RLIMIT_*` number for `setrlimit`.
    pub fn resource(self) -> u32 {
        match self {
            UlimitName::Cpu => 0,
            UlimitName::Fsize => 1,
            UlimitName::Data => 2,
            UlimitName::Stack => 3,
            UlimitName::Core => 4,
            UlimitName::Rss => 5,
            UlimitName::Nproc => 6,
            UlimitName::Nofile => 7,
            UlimitName::Memlock => 8,
            UlimitName::As => 9,
            UlimitName::Locks => 10,
            UlimitName::Sigpending => 11,
            UlimitName::Msgqueue => 12,
            UlimitName::Nice => 13,
            UlimitName::Rtprio => 14,
            UlimitName::Rttime => 15,
        }
    }
}

/// One rlimit. [`Ulimit::UNLIMITED`] (written -1) is RLIM_INFINITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    /// Which resource.
    pub name: UlimitName,
    /// The soft limit.
    pub soft: u64,
    /// The hard limit; at least `soft`.
    pub hard: u64,
}

impl Ulimit {
    /// RLIM_INFINITY.
    pub const UNLIMITED: u64 = u64::MAX;
}

/// cgroup limits: `[containers.NAME.resources]`. `None` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Resources {
    /// memory.max, in bytes.
    pub memory: Option<u64>,
    /// Memory plus swap, as in Docker; `None` when unset.
    pub memory_swap: Option<MemorySwap>,
    /// CPU time, in CPUs (0.5 is half of one CPU).
    pub cpus: Option<f64>,
    /// cpu.weight, 1 to 10000 (100 is the kernel's default).
    pub cpu_weight: Option<u16>,
    /// pids.max.
    pub pids: Option<u64>,
    /// io.weight, 1 to 10000 (100 is the kernel's default).
    pub io_weight: Option<u16>,
}

/// `memory_swap`: memory plus swap, or unlimited swap (-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemorySwap {
    /// Memory plus swap, in bytes (at least `memory`).
    Limit(u64),
    /// Unlimited swap.
    Unlimited,
}

/// Where a container's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerLogging {
    /// Copy its output to the console.
    pub console: bool,
    /// Write its output to the host's log files, if `host.logging.files` is set.
    pub files: bool,
    /// Send its output to remote syslog, if `host.logging.syslog` is set.
    pub syslog: bool,
}

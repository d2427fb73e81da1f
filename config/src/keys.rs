//! The keys each table of the manifest accepts. The walker rejects any
//! other key; tests check that the JSON Schema and docs/manifest.md list
//! exactly these.

/// The top level.
pub(crate) const MANIFEST: &[&str] = &["version", "host", "containers"];
/// `[host]`.
pub(crate) const HOST: &[&str] = &[
    "hostname",
    "modules",
    "sysctls",
    "on_fatal",
    "shutdown_grace",
    "network",
    "storage",
    "logging",
    "watchdog",
    "api",
];
/// `[host.network]`.
pub(crate) const NETWORK: &[&str] = &["interfaces", "bridge", "dns", "dns_search"];
/// `host.network.interfaces[]`.
pub(crate) const INTERFACE: &[&str] = &[
    "name",
    "mac",
    "dhcp",
    "addresses",
    "gateway",
    "routes",
    "mtu",
];
/// `host.network.interfaces[].routes[]`.
pub(crate) const ROUTE: &[&str] = &["to", "via", "metric"];
/// `host.network.bridge`.
pub(crate) const BRIDGE: &[&str] = &["name", "subnet", "nat"];
/// `[host.storage]`.
pub(crate) const STORAGE: &[&str] = &["data"];
/// `host.storage.data`.
pub(crate) const DATA: &[&str] = &["device", "fs", "mount"];
/// `[host.logging]`.
pub(crate) const LOGGING: &[&str] = &["console", "files", "syslog"];
/// `host.logging.files`.
pub(crate) const LOG_FILES: &[&str] = &["dir", "max_size", "max_files"];
/// `host.logging.syslog`.
pub(crate) const SYSLOG: &[&str] = &["target", "format"];
/// `[host.watchdog]`.
pub(crate) const WATCHDOG: &[&str] = &["device", "timeout"];
/// `[host.api]`.
pub(crate) const API: &[&str] = &["socket", "remote"];
/// `host.api.remote`.
pub(crate) const REMOTE_API: &[&str] = &["listen", "cert", "key", "client_ca"];
/// `[containers.NAME]`.
pub(crate) const CONTAINER: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "working_dir",
    "user",
    "group_add",
    "restart",
    "depends_on",
    "healthcheck",
    "stop_signal",
    "stop_grace_period",
    "timeout",
    "init",
    "read_only",
    "persist",
    "tmpfs",
    "volumes",
    "ports",
    "network_mode",
    "pid",
    "hostname",
    "dns",
    "dns_search",
    "extra_hosts",
    "cap_add",
    "cap_drop",
    "privileged",
    "security_opt",
    "devices",
    "ulimits",
    "sysctls",
    "resources",
    "shm_size",
    "oom_score_adj",
    "labels",
    "logging",
    "uid_map",
    "gid_map",
];
/// `containers.NAME.depends_on.OTHER` (long form).
pub(crate) const DEPENDENCY: &[&str] = &["condition", "required"];
/// `[containers.NAME.healthcheck]`.
pub(crate) const HEALTHCHECK: &[&str] = &[
    "test",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "start_interval",
    "disable",
];
/// `containers.NAME.volumes[]` (long form).
pub(crate) const VOLUME: &[&str] = &["type", "source", "target", "read_only"];
/// `containers.NAME.ports[]` (long form).
pub(crate) const PORT: &[&str] = &["target", "published", "host_ip", "protocol"];
/// `containers.NAME.ulimits.NAME` (long form).
pub(crate) const ULIMIT: &[&str] = &["soft", "hard"];
/// `[containers.NAME.resources]`.
pub(crate) const RESOURCES: &[&str] = &[
    "memory",
    "memory_swap",
    "cpus",
    "cpu_weight",
    "pids",
    "io_weight",
];
/// `containers.NAME.logging`.
pub(crate) const CONTAINER_LOGGING: &[&str] = &["console", "files", "syslog"];

/// Every table, by the name its definition has in the JSON Schema
/// (`definitions.NAME`; "manifest" is the root).
#[cfg(test)]
pub(crate) const ALL: &[(&str, &[&str])] = &[
    ("manifest", MANIFEST),
    ("host", HOST),
    ("network", NETWORK),
    ("interface", INTERFACE),
    ("route", ROUTE),
    ("bridge", BRIDGE),
    ("storage", STORAGE),
    ("data", DATA),
    ("logging", LOGGING),
    ("log_files", LOG_FILES),
    ("syslog", SYSLOG),
    ("watchdog", WATCHDOG),
    ("api", API),
    ("remote_api", REMOTE_API),
    ("container", CONTAINER),
    ("dependency", DEPENDENCY),
    ("healthcheck", HEALTHCHECK),
    ("volume", VOLUME),
    ("port", PORT),
    ("ulimit", ULIMIT),
    ("resources", RESOURCES),
    ("container_logging", CONTAINER_LOGGING),
];

/// Compose keys berth does not take, with what to write instead.
pub(crate) const COMPOSE_HINTS: &[(&str, &str)] = &[
    (
        "build",
        "berth runs prebuilt images only; build it elsewhere and set \"image\"",
    ),
    ("container_name", "the table's name is the container's name"),
    ("deploy", "use [containers.NAME.resources] for limits"),
    ("mem_limit", "use resources.memory"),
    ("memswap_limit", "use resources.memory_swap"),
    ("cpus", "use resources.cpus"),
    ("cpu_shares", "use resources.cpu_weight"),
    ("pids_limit", "use resources.pids"),
    ("networks", "use network_mode"),
    ("expose", "not needed; use ports to publish a port"),
    ("links", "not supported; use depends_on for start order"),
    ("volumes_from", "declare the volumes on each container"),
];

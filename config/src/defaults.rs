//! Every default of the manifest, in one place. docs/manifest.md lists the
//! same values (a test checks that each one appears there).

use std::time::Duration;

use crate::model::{
    Condition, ContainerLogging, FatalAction, Filesystem, LogLevel, NetworkMode, RestartPolicy,
    SyslogFormat,
};
use crate::signal::Signal;

/// The only schema version.
pub const VERSION: u32 = 1;

/// `host.on_fatal`.
pub const ON_FATAL: FatalAction = FatalAction::Reboot;
/// `host.shutdown_grace`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// `host.network.bridge.name`.
pub const BRIDGE_NAME: &str = "berth0";
/// `host.network.bridge.subnet`.
pub const BRIDGE_SUBNET: &str = "10.88.0.0/24";
/// `host.network.bridge.nat`.
pub const BRIDGE_NAT: bool = true;
/// `host.network.interfaces[].dhcp`.
pub const INTERFACE_DHCP: bool = false;

/// `host.storage.data.fs`.
pub const DATA_FS: Filesystem = Filesystem::Ext4;
/// `host.storage.data.mount`.
pub const DATA_MOUNT: &str = "/var/lib/berth";

/// `host.logging.console`.
pub const LOG_CONSOLE: LogLevel = LogLevel::Info;
/// `host.logging.files.dir`.
pub const LOG_DIR: &str = "/var/log/berth";
/// `host.logging.files.max_size`: 10 MiB.
pub const LOG_MAX_SIZE: u64 = 10 << 20;
/// `host.logging.files.max_files`.
pub const LOG_MAX_FILES: u32 = 3;
/// The port of a `host.logging.syslog.target` without one.
pub const SYSLOG_PORT: u16 = 514;
/// `host.logging.syslog.format`.
pub const SYSLOG_FORMAT: SyslogFormat = SyslogFormat::Rfc5424;

/// `host.watchdog.device`.
pub const WATCHDOG_DEVICE: &str = "/dev/watchdog";
/// `host.watchdog.timeout`.
pub const WATCHDOG_TIMEOUT: Duration = Duration::from_secs(30);

/// `host.api.socket`.
pub const API_SOCKET: &str = "/run/berth/berth.sock";

/// The tag of an image reference with neither tag nor digest.
pub const IMAGE_TAG: &str = "latest";
/// The registry of an image reference without one.
pub const IMAGE_REGISTRY: &str = "docker.io";

/// `containers.*.restart`.
pub const RESTART: RestartPolicy = RestartPolicy::No;
/// `containers.*.depends_on.*.condition`, and every entry of the list form.
pub const DEPENDS_CONDITION: Condition = Condition::ServiceStarted;
/// `containers.*.depends_on.*.required`.
pub const DEPENDS_REQUIRED: bool = true;
/// `containers.*.healthcheck.interval`.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(30);
/// `containers.*.healthcheck.timeout`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// `containers.*.healthcheck.retries`.
pub const HEALTH_RETRIES: u32 = 3;
/// `containers.*.healthcheck.start_period`.
pub const HEALTH_START_PERIOD: Duration = Duration::ZERO;
/// `containers.*.healthcheck.start_interval`.
pub const HEALTH_START_INTERVAL: Duration = Duration::from_secs(5);
/// `containers.*.stop_signal`.
pub const STOP_SIGNAL: Signal = Signal::TERM;
/// `containers.*.stop_grace_period`.
pub const STOP_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// `containers.*.init`.
pub const INIT: bool = false;
/// `containers.*.read_only`.
pub const READ_ONLY: bool = false;
/// `containers.*.persist`.
pub const PERSIST: bool = false;
/// `containers.*.privileged`.
pub const PRIVILEGED: bool = false;
/// `containers.*.network_mode`.
pub const NETWORK_MODE: NetworkMode = NetworkMode::Bridge;
/// `containers.*.shm_size`: 64 MiB, as Docker.
pub const SHM_SIZE: u64 = 64 << 20;
/// `containers.*.oom_score_adj`.
pub const OOM_SCORE_ADJ: i32 = 0;
/// `containers.*.devices` permissions when not written.
pub const DEVICE_PERMISSIONS: &str = "rwm";
/// `containers.*.security_opt`: no-new-privileges is on, except for a
/// privileged container (Docker turns it on only when asked; berth is
/// stricter by default, and "no-new-privileges:false" turns it off).
pub const fn no_new_privileges(privileged: bool) -> bool {
    !privileged
}
/// `containers.*.logging`.
pub const CONTAINER_LOGGING: ContainerLogging = ContainerLogging {
    console: true,
    files: true,
    syslog: true,
};

/// Limits checked by validation.
pub mod limits {
    use std::time::Duration;

    /// The smallest `resources.memory` (Docker's minimum is 6 MiB).
    pub const MIN_MEMORY: u64 = 6 << 20;
    /// The largest `resources.cpus`.
    pub const MAX_CPUS: f64 = 1024.0;
    /// The smallest `resources.cpus`.
    pub const MIN_CPUS: f64 = 0.01;
    /// The longest grace period (stop or shutdown).
    pub const MAX_GRACE: Duration = Duration::from_secs(3600);
    /// The shortest `containers.*.timeout`.
    pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
    /// The longest `containers.*.timeout`: one day.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);
    /// The shortest health check interval and timeout.
    pub const MIN_HEALTH_INTERVAL: Duration = Duration::from_millis(1);
    /// The longest health check interval, timeout or start period.
    pub const MAX_HEALTH_DURATION: Duration = Duration::from_secs(24 * 3600);
    /// The shortest watchdog timeout.
    pub const MIN_WATCHDOG_TIMEOUT: Duration = Duration::from_secs(1);
    /// The longest watchdog timeout.
    pub const MAX_WATCHDOG_TIMEOUT: Duration = Duration::from_secs(3600);
    /// The smallest log file size.
    pub const MIN_LOG_SIZE: u64 = 4 << 10;
    /// The longest container name.
    pub const MAX_NAME_LEN: usize = 63;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::format_duration;
    use crate::size::format_size;

    fn docs() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/manifest.md");
        std::fs::read_to_string(path).unwrap()
    }

    /// docs/manifest.md's table of defaults shows the values defined here.
    #[test]
    fn docs_list_these_defaults() {
        let q = |s: &str| format!("\"{s}\"");
        let rows = [
            ("host.on_fatal", q(ON_FATAL.as_str())),
            ("host.shutdown_grace", q(&format_duration(SHUTDOWN_GRACE))),
            ("host.network.bridge.name", q(BRIDGE_NAME)),
            ("host.network.bridge.subnet", q(BRIDGE_SUBNET)),
            ("host.network.bridge.nat", BRIDGE_NAT.to_string()),
            ("host.network.interfaces[].dhcp", INTERFACE_DHCP.to_string()),
            ("host.storage.data.fs", q(DATA_FS.as_str())),
            ("host.storage.data.mount", q(DATA_MOUNT)),
            ("host.logging.console", q(LOG_CONSOLE.as_str())),
            ("host.logging.files.dir", q(LOG_DIR)),
            ("host.logging.files.max_size", q(&format_size(LOG_MAX_SIZE))),
            ("host.logging.files.max_files", LOG_MAX_FILES.to_string()),
            ("host.logging.syslog.format", q("rfc5424")),
            ("host.watchdog.device", q(WATCHDOG_DEVICE)),
            (
                "host.watchdog.timeout",
                q(&format_duration(WATCHDOG_TIMEOUT)),
            ),
            ("host.api.socket", q(API_SOCKET)),
            ("containers.*.restart", q(&RESTART.to_string())),
            (
                "containers.*.depends_on.*.condition",
                q(DEPENDS_CONDITION.as_str()),
            ),
            (
                "containers.*.depends_on.*.required",
                DEPENDS_REQUIRED.to_string(),
            ),
            (
                "containers.*.healthcheck.interval",
                q(&format_duration(HEALTH_INTERVAL)),
            ),
            (
                "containers.*.healthcheck.timeout",
                q(&format_duration(HEALTH_TIMEOUT)),
            ),
            (
                "containers.*.healthcheck.retries",
                HEALTH_RETRIES.to_string(),
            ),
            (
                "containers.*.healthcheck.start_period",
                q(&format_duration(HEALTH_START_PERIOD)),
            ),
            (
                "containers.*.healthcheck.start_interval",
                q(&format_duration(HEALTH_START_INTERVAL)),
            ),
            ("containers.*.stop_signal", q(&STOP_SIGNAL.name())),
            (
                "containers.*.stop_grace_period",
                q(&format_duration(STOP_GRACE_PERIOD)),
            ),
            ("containers.*.init", INIT.to_string()),
            ("containers.*.read_only", READ_ONLY.to_string()),
            ("containers.*.persist", PERSIST.to_string()),
            ("containers.*.privileged", PRIVILEGED.to_string()),
            ("containers.*.network_mode", q(&NETWORK_MODE.to_string())),
            ("containers.*.shm_size", q(&format_size(SHM_SIZE))),
            ("containers.*.oom_score_adj", OOM_SCORE_ADJ.to_string()),
        ];
        let docs = docs();
        for (key, value) in rows {
            let row = format!("| `{key}` | `{value}` |");
            assert!(docs.contains(&row), "docs/manifest.md lacks the row {row}");
        }
        assert!(docs.contains(&format!(
            "| `host.logging.syslog.target` port | `{SYSLOG_PORT}` |"
        )));
        assert!(docs.contains(&format!(
            "| `containers.*.devices[]` permissions | `\"{DEVICE_PERMISSIONS}\"` |"
        )));
        assert!(docs.contains(&format!("`{IMAGE_TAG}` (registry `{IMAGE_REGISTRY}`)")));
    }

    /// docs/manifest.md documents every key the parser accepts.
    #[test]
    fn docs_list_every_key() {
        let docs = docs();
        for (table, keys) in crate::keys::ALL {
            for key in *keys {
                assert!(
                    docs.contains(&format!("`{key}`")),
                    "{table}.{key} is undocumented"
                );
            }
        }
    }
}

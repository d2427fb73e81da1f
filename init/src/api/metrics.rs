//! `GET /v1/metrics`: Prometheus text format, version 0.0.4.

use std::fmt::Write;

/// One container's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerMetrics {
    /// Its name.
    pub name: String,
    /// CPU time used, in seconds (cgroup cpu.stat usage_usec).
    pub cpu_seconds: Option<f64>,
    /// Memory used, in bytes (memory.current).
    pub memory_bytes: Option<u64>,
    /// Restarts so far.
    pub restarts: u32,
    /// `Some(true/false)` with a health check, `None` without.
    pub healthy: Option<bool>,
    /// Whether its program runs.
    pub up: bool,
    /// How long it has run, in seconds.
    pub uptime_seconds: Option<f64>,
}

/// The host's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostMetrics {
    /// MemTotal, in bytes.
    pub memory_total_bytes: u64,
    /// MemAvailable, in bytes.
    pub memory_available_bytes: u64,
    /// Load averages.
    pub load: [f64; 3],
    /// berth's own resident memory, in bytes.
    pub berth_rss_bytes: u64,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the exposition text.
pub fn render(containers: &[ContainerMetrics], host: &HostMetrics) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let label = |c: &ContainerMetrics| format!("{{container=\"{}\"}}", escape(&c.name));
    let per = |f: &dyn Fn(&ContainerMetrics) -> Option<String>| -> Vec<(String, String)> {
        containers
            .iter()
            .filter_map(|c| f(c).map(|v| (label(c), v)))
            .collect()
    };
    family(
        "berth_container_cpu_seconds_total",
        "counter",
        "CPU time used by the container's cgroup.",
        per(&|c| c.cpu_seconds.map(|v| format!("{v}"))),
    );
    family(
        "berth_container_memory_bytes",
        "gauge",
        "Memory used by the container's cgroup.",
        per(&|c| c.memory_bytes.map(|v| v.to_string())),
    );
    family(
        "berth_container_restarts_total",
        "counter",
        "Restarts of the container since boot.",
        per(&|c| Some(c.restarts.to_string())),
    );
    family(
        "berth_container_healthy",
        "gauge",
        "1 if the container's last health check passed, 0 if it is unhealthy or not yet healthy.",
        per(&|c| c.healthy.map(|h| u8::from(h).to_string())),
    );
    family(
        "berth_container_up",
        "gauge",
        "1 if the container's program runs.",
        per(&|c| Some(u8::from(c.up).to_string())),
    );
    family(
        "berth_container_uptime_seconds",
        "gauge",
        "How long the container's program has run.",
        per(&|c| c.uptime_seconds.map(|v| format!("{v}"))),
    );
    let one = |v: String| vec![(String::new(), v)];
    family(
        "berth_host_memory_total_bytes",
        "gauge",
        "The host's memory.",
        one(host.memory_total_bytes.to_string()),
    );
    family(
        "berth_host_memory_available_bytes",
        "gauge",
        "The host's available memory.",
        one(host.memory_available_bytes.to_string()),
    );
    for (i, n) in ["1", "5", "15"].iter().enumerate() {
        family(
            &format!("berth_host_load{n}"),
            "gauge",
            &format!("The host's load average over {n} minute(s)."),
            one(format!("{}", host.load[i])),
        );
    }
    family(
        "berth_rss_bytes",
        "gauge",
        "berth's own resident memory.",
        one(host.berth_rss_bytes.to_string()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_with_help_type_and_labels() {
        let c = ContainerMetrics {
            name: "web".into(),
            cpu_seconds: Some(1.5),
            memory_bytes: Some(4096),
            restarts: 2,
            healthy: Some(true),
            up: true,
            uptime_seconds: Some(30.0),
        };
        let odd = ContainerMetrics {
            name: "a\"b".into(),
            ..Default::default()
        };
        let text = render(
            &[c, odd],
            &HostMetrics {
                load: [0.5, 0.25, 0.0],
                ..Default::default()
            },
        );
        assert!(text.contains("# TYPE berth_container_cpu_seconds_total counter\n"));
        assert!(text.contains("berth_container_cpu_seconds_total{container=\"web\"} 1.5\n"));
        assert!(text.contains("berth_container_healthy{container=\"web\"} 1\n"));
        assert!(!text.contains("berth_container_healthy{container=\"a\\\"b\"}"));
        assert!(text.contains("berth_container_up{container=\"a\\\"b\"} 0\n"));
        assert!(text.contains("berth_host_load1 0.5\n"));
        // Every sample line belongs to a declared family.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{l}");
        }
    }
}

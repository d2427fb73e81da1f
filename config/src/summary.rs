//! The start order of containers and the one-screen summary `berth check`
//! prints for a valid manifest.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::duration::format_duration;
use crate::model::{Condition, HealthTest, Manifest, NetworkMode};

/// The containers in dependency levels: every container in a level
/// depends only on containers in earlier levels, so the containers of one
/// level can start in parallel. Names are sorted within a level.
///
/// Dependencies are `depends_on` plus `network_mode = "service:NAME"`.
/// On a validated manifest there are no cycles; if there were, the
/// containers caught in one would come last, in one level.
pub fn start_order(manifest: &Manifest) -> Vec<Vec<String>> {
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    let mut left: Vec<&str> = manifest.containers.keys().map(String::as_str).collect();
    while !left.is_empty() {
        let mut progressed = false;
        left.retain(|name| {
            let Some(c) = manifest.containers.get(*name) else {
                return false;
            };
            let mut l = 0;
            for (dep, _) in c.dependencies() {
                if !manifest.containers.contains_key(dep) || dep == *name {
                    continue;
                }
                match level.get(dep) {
                    Some(d) => l = l.max(d + 1),
                    None => return true,
                }
            }
            level.insert(name, l);
            progressed = true;
            false
        });
        if !progressed {
            let last = level.values().max().map_or(0, |m| m + 1);
            for name in left.drain(..) {
                level.insert(name, last);
            }
        }
    }
    let mut levels: Vec<Vec<String>> = Vec::new();
    for (name, l) in level {
        if levels.len() <= l {
            levels.resize(l + 1, Vec::new());
        }
        levels[l].push(name.to_string());
    }
    levels
}

/// A one-screen summary of a valid manifest: the host, the containers,
/// the start order and the published ports.
pub fn summary(manifest: &Manifest) -> String {
    let mut out = String::new();
    let h = &manifest.host;
    let n = manifest.containers.len();
    let _ = writeln!(
        out,
        "manifest version {}: {n} container{}",
        manifest.version,
        if n == 1 { "" } else { "s" }
    );
    let b = &h.network.bridge;
    let _ = writeln!(
        out,
        "host: {}, bridge {} {}{}, on_fatal {}",
        h.hostname.as_deref().unwrap_or("(kernel's hostname)"),
        b.name,
        b.subnet,
        if b.nat { " with NAT" } else { "" },
        h.on_fatal.as_str()
    );

    let rows: Vec<[String; 5]> = manifest
        .containers
        .values()
        .map(|c| {
            let health = match &c.healthcheck {
                None => "-".to_string(),
                Some(hc) => {
                    let kind = match hc.test {
                        HealthTest::Cmd(_) => "CMD",
                        HealthTest::Shell(_) => "CMD-SHELL",
                    };
                    format!("{kind} every {}", format_duration(hc.interval))
                }
            };
            [
                c.name.clone(),
                short_image(&c.image),
                c.restart.to_string(),
                c.network_mode.to_string(),
                health,
            ]
        })
        .collect();
    if !rows.is_empty() {
        let header = ["NAME", "IMAGE", "RESTART", "NETWORK", "HEALTH"].map(str::to_string);
        let mut widths = [0usize; 5];
        for r in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let _ = writeln!(out, "\ncontainers:");
        for r in std::iter::once(&header).chain(&rows) {
            let mut line = String::from("  ");
            for (i, (cell, w)) in r.iter().zip(widths).enumerate() {
                if i + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }

        let _ = writeln!(out, "\nstart order:");
        for (i, level) in start_order(manifest).iter().enumerate() {
            let items: Vec<String> = level
                .iter()
                .map(|name| {
                    let waits: Vec<String> = manifest
                        .containers
                        .get(name)
                        .map(|c| {
                            c.dependencies()
                                .map(|(d, cond)| match cond {
                                    Condition::ServiceStarted => format!("{d} started"),
                                    Condition::ServiceHealthy => format!("{d} healthy"),
                                    Condition::ServiceCompletedSuccessfully => {
                                        format!("{d} completed")
                                    }
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    if waits.is_empty() {
                        name.clone()
                    } else {
                        format!("{name} (after {})", waits.join(", "))
                    }
                })
                .collect();
            let _ = writeln!(out, "  {}. {}", i + 1, items.join(", "));
        }
    }

    let mut ports: Vec<String> = Vec::new();
    for c in manifest.containers.values() {
        for p in &c.ports {
            let ip = match p.host_ip {
                Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
                Some(ip) => ip.to_string(),
                None => "*".to_string(),
            };
            ports.push(format!(
                "  {ip}:{}/{} -> {}:{}",
                p.host, p.protocol, c.name, p.container
            ));
        }
        if c.network_mode == NetworkMode::Host {
            ports.push(format!("  (host network) -> {}", c.name));
        }
    }
    let _ = writeln!(out, "\npublished ports:");
    if ports.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for p in ports {
        let _ = writeln!(out, "{p}");
    }
    out
}

/// The image reference, with a digest cut to 12 hex digits to fit the screen.
fn short_image(image: &crate::model::ImageRef) -> String {
    let mut s = image.name();
    if let Some(t) = &image.tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = &image.digest {
        s.push('@');
        s.push_str(d.get(..19).unwrap_or(d));
        s.push('…');
    }
    s
}

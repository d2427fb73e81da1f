//! The resolved manifest model. Placeholder until the Manifest issue: only the
//! fields the foundation needs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::{Diagnostic, Diagnostics};

/// A validated manifest with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Schema version; always 1.
    pub version: u32,
    /// The host's settings.
    pub host: Host,
    /// The containers, by name.
    pub containers: BTreeMap<String, Container>,
}

/// What berth does when PID 1 meets a fatal error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FatalAction {
    /// Reboot after a short delay (the default: a device in the field recovers).
    #[default]
    Reboot,
    /// Power off.
    Poweroff,
    /// Halt, leaving the machine on for inspection.
    Halt,
}

/// Host settings.
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
    /// How long shutdown waits for containers in all.
    pub shutdown_grace: Duration,
}

/// One container.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// Its name.
    pub name: String,
    /// The image reference, as written.
    pub image: String,
    /// The command, overriding the image's.
    pub command: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    version: u32,
    #[serde(default)]
    host: RawHost,
    #[serde(default)]
    containers: BTreeMap<String, RawContainer>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHost {
    hostname: Option<String>,
    #[serde(default)]
    modules: Vec<String>,
    #[serde(default)]
    sysctls: BTreeMap<String, String>,
    #[serde(default)]
    on_fatal: FatalAction,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainer {
    image: String,
    command: Option<Vec<String>>,
}

pub(crate) fn parse_minimal(source: &str, origin: &str) -> Result<Manifest, Diagnostics> {
    let raw: RawManifest = toml::from_str(source).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| line_col(source, s.start))
            .unwrap_or((1, 1));
        Diagnostics {
            errors: vec![Diagnostic {
                origin: origin.to_string(),
                line,
                column,
                message: e.message().to_string(),
            }],
        }
    })?;
    Ok(Manifest {
        version: raw.version,
        host: Host {
            hostname: raw.host.hostname,
            modules: raw.host.modules,
            sysctls: raw.host.sysctls,
            on_fatal: raw.host.on_fatal,
            shutdown_grace: Duration::from_secs(30),
        },
        containers: raw
            .containers
            .into_iter()
            .map(|(name, c)| {
                let c = Container {
                    name: name.clone(),
                    image: c.image,
                    command: c.command,
                };
                (name, c)
            })
            .collect(),
    })
}

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

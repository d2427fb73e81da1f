//! Container images: an OCI layer store (see docs/images.md).
//!
//! A container's `image` names an image of the [`Store`] (`name[:tag]`,
//! `name@sha256:…`). [`Store::resolve`] turns it into an [`Image`]: an
//! ordered list of read-only directories (overlay lower layers, top first)
//! and its config's defaults. Images arrive in the store:
//! - pre-unpacked by the image builder into the initramfs
//!   ([`SHIPPED`], a read-only root of the store);
//! - as OCI layouts or docker-save archives that the builder ships as they
//!   are ([`IMPORT_DIR`]) and berth imports at boot into [`store_root`],
//!   verifying every blob and unpacking each layer once ([`store`],
//!   [`unpack`]); later also from the data disk, and from a registry puller
//!   implementing [`berth_image::oci::Source`].
//!
//! [`load_manifest`] is how boot reads the manifest: it prepares the store
//! first, checks the manifest with what the images say (their
//! HEALTHCHECKs), and fills each container's STOPSIGNAL and HEALTHCHECK
//! from its image where the manifest leaves them out.

pub mod shift;
pub mod store;
pub mod unpack;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_config::{HealthTest, Healthcheck, ImageFacts, ImageRef, Manifest, defaults};
use berth_image::oci::spec::{HealthConfig, RunConfig};

pub use store::{GcReport, Imported, Store, Summary};

/// The writable store, under berth's state root (the data partition).
pub fn store_root() -> PathBuf {
    crate::storage::layout().images()
}
/// The store the image builder ships, pre-unpacked, in the initramfs.
pub const SHIPPED: &str = "/usr/lib/berth/store";
/// Images the builder ships as archives, imported at boot.
pub const IMPORT_DIR: &str = "/usr/lib/berth/import";

/// Why an image cannot be used or stored.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// image {image} not found in the store (it has: {known})
    NotFound {
        /// The reference.
        image: String,
        /// The names the store has.
        known: String,
    },
    /// image {image}: that digest belongs to {names}, another repository
    DigestName {
        /// The reference.
        image: String,
        /// The names of the image with that digest.
        names: String,
    },
    /// image {image}: cannot read its config {path}: {detail}
    Config {
        /// The image.
        image: String,
        /// The config blob.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// image {image}: layer {layer} is missing from the store
    MissingLayer {
        /// The image.
        image: String,
        /// The layer's DiffID.
        layer: String,
    },
    /// {0}
    Source(#[from] berth_image::oci::SourceError),
    /// {archive}: image {image}: layer blob {blob} refused: {source}
    Layer {
        /// Where the image came from.
        archive: String,
        /// The image.
        image: String,
        /// The blob (digest, or path in a docker-save archive).
        blob: String,
        /// Why.
        source: Box<unpack::UnpackError>,
    },
    /// image store: cannot {op} {path}: {detail}
    Store {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// The defaults an image gives its containers (OCI image config names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// ENTRYPOINT.
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    pub cmd: Option<Vec<String>>,
    /// ENV, as `KEY=value`.
    pub env: Vec<String>,
    /// WORKDIR.
    pub working_dir: Option<String>,
    /// USER.
    pub user: Option<String>,
    /// STOPSIGNAL.
    pub stop_signal: Option<String>,
    /// EXPOSE, as `80/tcp`. berth publishes only the manifest's `ports`:
    /// these are listed for people and tools.
    pub exposed_ports: Vec<String>,
    /// HEALTHCHECK.
    pub healthcheck: Option<HealthConfig>,
    /// VOLUME.
    pub volumes: Vec<String>,
}

impl Config {
    /// The defaults from an image config's `config`.
    pub fn from_oci(c: Option<&RunConfig>) -> Config {
        let Some(c) = c else {
            return Config::default();
        };
        Config {
            entrypoint: c.entrypoint.clone(),
            cmd: c.cmd.clone(),
            env: c.env.clone().unwrap_or_default(),
            working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
            user: c.user.clone().filter(|u| !u.is_empty()),
            stop_signal: c.stop_signal.clone().filter(|s| !s.is_empty()),
            exposed_ports: c
                .exposed_ports
                .iter()
                .flat_map(|m| m.keys().cloned())
                .collect(),
            healthcheck: c.healthcheck.clone(),
            volumes: c.volumes.iter().flat_map(|m| m.keys().cloned()).collect(),
        }
    }

    /// The image's health check in the manifest's terms: `None` when it has
    /// none or disables it (`["NONE"]`). Zero durations take berth's
    /// defaults, as Docker's take its own.
    pub fn health(&self) -> Option<Healthcheck> {
        let h = self.healthcheck.as_ref()?;
        let test = match h.test.first().map(String::as_str) {
            Some("CMD") if h.test.len() > 1 => HealthTest::Cmd(h.test[1..].to_vec()),
            Some("CMD-SHELL") if h.test.len() == 2 => HealthTest::Shell(h.test[1].clone()),
            _ => return None,
        };
        let dur = |ns: u64, default: Duration| {
            if ns == 0 {
                default
            } else {
                Duration::from_nanos(ns).max(Duration::from_millis(1))
            }
        };
        Some(Healthcheck {
            test,
            interval: dur(h.interval, defaults::HEALTH_INTERVAL),
            timeout: dur(h.timeout, defaults::HEALTH_TIMEOUT),
            retries: if h.retries == 0 {
                defaults::HEALTH_RETRIES
            } else {
                h.retries
            },
            start_period: if h.start_period == 0 {
                defaults::HEALTH_START_PERIOD
            } else {
                Duration::from_nanos(h.start_period)
            },
            start_interval: dur(h.start_interval, defaults::HEALTH_START_INTERVAL),
        })
    }
}

/// An image ready to be a container's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The reference, canonical.
    pub reference: String,
    /// Read-only layers, top first.
    pub lowers: Vec<PathBuf>,
    /// Its defaults.
    pub config: Config,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(store_root()).with_shipped(SHIPPED)
    }
}

impl Store {
    /// What the manifest's checks need to know about an image.
    pub fn facts(&self, r: &ImageRef) -> Option<ImageFacts> {
        let image = self.resolve(r).ok()?;
        Some(ImageFacts {
            writable_paths: image.config.volumes.iter().map(PathBuf::from).collect(),
            healthcheck: image.config.health().is_some(),
        })
    }
}

/// Fills in, for each container, what its image gives and the manifest
/// leaves out: STOPSIGNAL (unless `stop_signal` is written) and HEALTHCHECK
/// (unless the manifest has a health check or disables it). Containers
/// whose image is missing are left alone (they fail at start, naming it).
pub fn apply_image_defaults(manifest: &mut Manifest, store: &Store) {
    for c in manifest.containers.values_mut() {
        let Ok(image) = store.resolve(&c.image) else {
            continue;
        };
        if !c.stop_signal_set
            && let Some(s) = &image.config.stop_signal
        {
            match berth_config::parse_signal(s) {
                Ok(sig) => c.stop_signal = sig,
                Err(e) => log::warn!(
                    "{}: image {}: STOPSIGNAL {s:?}: {e}",
                    c.name,
                    image.reference
                ),
            }
        }
        if c.healthcheck.is_none() && !c.healthcheck_disabled {
            c.healthcheck = image.config.health();
        }
    }
}

/// Prepares the store at boot: fixes up the shipped layers and imports the
/// archives in [`IMPORT_DIR`] (each removed once imported, to give its
/// memory back). Failures are logged, naming the image and blob; the store
/// stays consistent.
pub fn prepare(store: &Store, import_dir: &Path) {
    let t = Instant::now();
    match store.apply_fixups() {
        Ok(0) => {}
        Ok(n) => log::debug!("images: fixed up {n} shipped layer(s)"),
        Err(e) => log::error!("images: {e}"),
    }
    let Ok(entries) = std::fs::read_dir(import_dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_none_or(|e| e != "name"))
        .collect();
    paths.sort();
    for p in paths {
        let name_file = PathBuf::from(format!("{}.name", p.display()));
        let default_name = std::fs::read_to_string(&name_file)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let one = Instant::now();
        match store.import_path(&p, default_name) {
            Ok(done) => {
                for i in done {
                    log::info!(
                        "images: imported {} from {}: {} layer(s) unpacked ({:.1} MiB), {} shared ({:.0} ms)",
                        i.image,
                        p.display(),
                        i.unpacked,
                        i.bytes as f64 / 1048576.0,
                        i.shared,
                        one.elapsed().as_secs_f64() * 1e3
                    );
                    if i.skipped_devices > 0 {
                        log::warn!(
                            "images: {}: {} device node(s) skipped",
                            i.image,
                            i.skipped_devices
                        );
                    }
                }
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                let _ = std::fs::remove_file(&name_file);
            }
            Err(e) => log::error!("images: {e}"),
        }
    }
    log::debug!(
        "images: store ready in {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
}

/// One line per image, for the console at boot (until `berth images`).
pub fn summary_lines(store: &Store) -> Vec<String> {
    store
        .summaries()
        .into_iter()
        .map(|s| {
            format!(
                "{} {} {:.1} MiB, {} layer(s){}",
                if s.names.is_empty() {
                    "<none>".to_string()
                } else {
                    s.names.join(", ")
                },
                s.id.short(),
                s.size as f64 / 1048576.0,
                s.layers,
                if s.shipped { ", built in" } else { "" }
            )
        })
        .collect()
}

/// Reads the manifest at boot: prepares the default store, parses and
/// checks the manifest with what its images say, and fills in the image
/// defaults ([`apply_image_defaults`]).
pub fn load_manifest(path: &Path) -> Result<Manifest, berth_config::LoadError> {
    let store = Store::default();
    let t = Instant::now();
    prepare(&store, Path::new(IMPORT_DIR));
    for line in summary_lines(&store) {
        log::info!("image {line}");
    }
    log::info!("images ready ({:.1} ms)", t.elapsed().as_secs_f64() * 1e3);
    let bytes = std::fs::read(path).map_err(|source| berth_config::LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let origin = path.display().to_string();
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse_manifest(text, &origin, &store),
        Err(_) => berth_config::parse_bytes(&bytes, &origin),
    }
    .map_err(berth_config::LoadError::Invalid)
}

/// Parses and checks a manifest with what `store`'s images say, and fills
/// in the image defaults ([`apply_image_defaults`]): for a reload.
pub fn parse_manifest(
    text: &str,
    origin: &str,
    store: &Store,
) -> Result<Manifest, berth_config::Diagnostics> {
    let facts = |r: &ImageRef| store.facts(r);
    let mut manifest = berth_config::parse_with_images(text, origin, &facts)?;
    apply_image_defaults(&mut manifest, store);
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_healthcheck_in_manifest_terms() {
        let c = |test: &[&str]| Config {
            healthcheck: Some(HealthConfig {
                test: test.iter().map(|s| s.to_string()).collect(),
                interval: 2_000_000_000,
                ..HealthConfig::default()
            }),
            ..Config::default()
        };
        let h = c(&["CMD-SHELL", "true"]).health().unwrap();
        assert_eq!(h.test, HealthTest::Shell("true".into()));
        assert_eq!(h.interval, Duration::from_secs(2));
        assert_eq!(h.timeout, defaults::HEALTH_TIMEOUT);
        assert_eq!(h.retries, defaults::HEALTH_RETRIES);
        let h = c(&["CMD", "/bin/check", "-q"]).health().unwrap();
        assert_eq!(
            h.test,
            HealthTest::Cmd(vec!["/bin/check".into(), "-q".into()])
        );
        assert!(c(&["NONE"]).health().is_none());
        assert!(c(&[]).health().is_none());
        assert!(Config::default().health().is_none());
    }
}

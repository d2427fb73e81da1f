//! The layer store: content-addressed layers, unpacked once, shared by every
//! image and container; image records naming them; import, resolution and
//! garbage collection. The format is [`berth_image::oci::store`]'s.
//!
//! A store has one writable root (`/var/lib/berth/images`) and any number of
//! read-only shipped roots (the image builder's pre-unpacked store in the
//! initramfs, `/usr/lib/berth/store`). Lookups search the writable root
//! first; imports skip layers any root already has; garbage collection
//! touches the writable root only.
//!
//! Consistency: a layer is unpacked into `tmp/`, verified (blob and DiffID),
//! synced, and only then renamed to `layers/<hex>`; an image record is
//! written (temporary file, rename) after all its layers are in place. A
//! failed or interrupted import leaves at most unreferenced layers and
//! `tmp/` leftovers, which [`Store::gc`] removes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_config::{IdMaps, ImageRef};
use berth_image::oci::spec::ImageConfig;
use berth_image::oci::store::{self as fmt, ImageRecord, LayerRecord};
use berth_image::oci::{self, Archive, Digest, ImageSpec, Layer, Limits, Source};

use super::shift;
use super::unpack::{self, Options};
use super::{Config, Error, Image};

/// Where shifted copies of layers live in the writable root.
pub const SHIFTED: &str = "shifted";

/// A summary of one image, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Its names.
    pub names: Vec<String>,
    /// Its id.
    pub id: Digest,
    /// Bytes of file data in its layers.
    pub size: u64,
    /// Its layers.
    pub layers: usize,
    /// Whether it is in a shipped (read-only) root.
    pub shipped: bool,
}

/// What one image import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The image's names (or its id when it has none).
    pub image: String,
    /// Layers unpacked now.
    pub unpacked: usize,
    /// Layers the store already had.
    pub shared: usize,
    /// Bytes of file data unpacked now.
    pub bytes: u64,
    /// Bytes of blobs read.
    pub blob_bytes: u64,
    /// Device nodes skipped.
    pub skipped_devices: u64,
}

/// What garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Image records without a name, removed.
    pub images: usize,
    /// Layers removed.
    pub layers: usize,
    /// Bytes of file data in them.
    pub bytes: u64,
    /// Blobs removed.
    pub blobs: usize,
}

/// The image store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    shipped: Vec<PathBuf>,
    /// Bounds on what an image may make berth read and write.
    pub limits: Limits,
    /// How layers are unpacked.
    pub unpack: Options,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Removes a directory tree of the store, never following a symlink.
fn remove_tree(p: &Path) -> Result<(), Error> {
    unpack::remove_dir_all(p).map_err(|e| Error::Store {
        op: "remove",
        path: p.to_path_buf(),
        detail: e.to_string(),
    })
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Store {
        op,
        path: path.to_path_buf(),
        detail: source.to_string(),
    }
}

impl Store {
    /// A store whose writable root is `root`, with no shipped roots.
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store {
            root: root.into(),
            shipped: Vec::new(),
            limits: Limits::default(),
            unpack: Options::default(),
        }
    }

    /// Adds a read-only shipped root.
    pub fn with_shipped(mut self, dir: impl Into<PathBuf>) -> Store {
        self.shipped.push(dir.into());
        self
    }

    /// The writable root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn roots(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.root.as_path()).chain(self.shipped.iter().map(PathBuf::as_path))
    }

    /// Every image record: the writable root's first; a shipped record
    /// with an id an earlier root also has adds its names to that one (an
    /// image imported at boot may be one the builder shipped under other
    /// names).
    pub fn records(&self) -> Vec<(PathBuf, ImageRecord)> {
        let mut out: Vec<(PathBuf, ImageRecord)> = Vec::new();
        for root in self.roots() {
            let dir = root.join(fmt::IMAGES);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            for f in files {
                let Ok(bytes) = std::fs::read(&f) else {
                    continue;
                };
                match serde_json::from_slice::<ImageRecord>(&bytes) {
                    Ok(r) => match out.iter_mut().find(|(_, o)| o.id == r.id) {
                        Some((_, o)) => {
                            for n in r.names {
                                if !o.names.contains(&n) {
                                    o.names.push(n);
                                }
                            }
                        }
                        None => out.push((root.to_path_buf(), r)),
                    },
                    Err(e) => log::warn!("image store: ignoring {}: {e}", f.display()),
                }
            }
        }
        out
    }

    /// Finds the record `r` names.
    pub fn find(&self, r: &ImageRef) -> Result<(PathBuf, ImageRecord), Error> {
        let records = self.records();
        let wanted = oci::canonical(r);
        if let Some(d) = &r.digest {
            let repo = oci::source::repository(&wanted).to_string();
            for (root, rec) in records.iter() {
                let hit = rec.id.to_string() == *d
                    || rec.manifest.as_ref().is_some_and(|m| m.to_string() == *d)
                    || rec.config.to_string() == *d;
                if !hit {
                    continue;
                }
                let named = rec.names.is_empty()
                    || rec.names.iter().any(|n| oci::source::repository(n) == repo);
                if !named {
                    return Err(Error::DigestName {
                        image: r.to_string(),
                        names: rec.names.join(", "),
                    });
                }
                return Ok((root.clone(), rec.clone()));
            }
        } else if let Some((root, rec)) =
            records.iter().find(|(_, rec)| rec.names.contains(&wanted))
        {
            return Ok((root.clone(), rec.clone()));
        }
        let mut known: Vec<String> = records.iter().flat_map(|(_, r)| r.names.clone()).collect();
        known.sort();
        Err(Error::NotFound {
            image: r.to_string(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        })
    }

    /// The config of a record.
    pub fn config_of(&self, root: &Path, rec: &ImageRecord) -> Result<ImageConfig, Error> {
        let path = root.join(fmt::BLOBS).join(rec.config.hex());
        let bytes = std::fs::read(&path).map_err(|e| Error::Config {
            image: display(rec),
            path: path.clone(),
            detail: e.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Config {
            image: display(rec),
            path,
            detail: e.to_string(),
        })
    }

    /// The directory of a layer, in whichever root has it.
    pub fn layer_dir(&self, diff_id: &Digest) -> Option<PathBuf> {
        self.roots()
            .map(|r| r.join(fmt::LAYERS).join(diff_id.hex()))
            .find(|p| p.is_dir())
    }

    fn layer_record(&self, diff_id: &Digest) -> Option<LayerRecord> {
        self.roots()
            .map(|r| r.join(fmt::LAYERS).join(format!("{}.json", diff_id.hex())))
            .find_map(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Finds an image, ready to be a container's root: its layers (top
    /// first) and its config.
    pub fn resolve(&self, r: &ImageRef) -> Result<Image, Error> {
        let (root, rec) = self.find(r)?;
        let config = self.config_of(&root, &rec)?;
        let mut lowers = Vec::new();
        for d in rec.layers.iter().rev() {
            let dir = self.layer_dir(d).ok_or_else(|| Error::MissingLayer {
                image: r.to_string(),
                layer: d.to_string(),
            })?;
            lowers.push(dir);
        }
        if lowers.is_empty() {
            // An image without layers is an empty root: overlay needs a
            // lower directory all the same.
            let empty = self.root.join("empty");
            std::fs::create_dir_all(&empty).map_err(io_err("create", &empty))?;
            lowers.push(empty);
        }
        let reference = match &r.digest {
            Some(_) => r.to_string(),
            None => oci::canonical(r),
        };
        Ok(Image {
            reference,
            lowers,
            config: Config::from_oci(config.config.as_ref()),
        })
    }

    /// A copy of the layer directory `layer` owned by the host ids `maps`
    /// gives the container's ids (see [`super::shift`]), for a container
    /// in a user namespace. Made on first use, in `tmp/` then renamed to
    /// `shifted/<layer>.<map key>` in the writable root once synced, so an
    /// interrupted copy is never used; later calls return it at once.
    pub fn shifted(&self, layer: &Path, maps: &IdMaps) -> Result<PathBuf, Error> {
        let layer_name = layer
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = format!("{layer_name}.{}", shift::map_key(maps));
        let dir = self.root.join(SHIFTED);
        let dest = dir.join(&name);
        if dest.is_dir() {
            return Ok(dest);
        }
        let tmp_root = self.root.join(fmt::TMP);
        let tmp = tmp_root.join(format!("shift-{name}"));
        if tmp.exists() {
            remove_tree(&tmp)?;
        }
        for d in [&tmp_root, &dir] {
            std::fs::create_dir_all(d).map_err(io_err("create", d))?;
        }
        shift::copy_tree(layer, &tmp, maps).map_err(|(path, e)| Error::Store {
            op: "copy with shifted owners",
            path,
            detail: e.to_string(),
        })?;
        crate::sys::syncfs(&tmp).map_err(io_err("sync", &tmp))?;
        std::fs::rename(&tmp, &dest).map_err(io_err("rename", &tmp))?;
        crate::sys::fsync_dir(&dir).map_err(io_err("sync", &dir))?;
        Ok(dest)
    }

    /// Every image with its size, sorted by first name.
    pub fn summaries(&self) -> Vec<Summary> {
        let mut out: Vec<Summary> = self
            .records()
            .into_iter()
            .map(|(root, rec)| Summary {
                size: rec
                    .layers
                    .iter()
                    .filter_map(|d| self.layer_record(d))
                    .map(|l| l.size)
                    .sum(),
                layers: rec.layers.len(),
                shipped: root != self.root,
                names: rec.names,
                id: rec.id,
            })
            .collect();
        out.sort_by(|a, b| a.names.first().cmp(&b.names.first()));
        out
    }

    /// Every image, for `GET /v1/images` (docs/api.md): `reference` (its
    /// first name), `names`, `id`, `layers`, `size_bytes` (file data in its
    /// layers; a layer shared by several images counts in each),
    /// `exposed_ports`, and `built_in` for images the image builder shipped.
    pub fn list(&self) -> serde_json::Value {
        let out: Vec<serde_json::Value> = self
            .summaries()
            .into_iter()
            .map(|s| {
                let exposed = self
                    .records()
                    .into_iter()
                    .find(|(_, r)| r.id == s.id)
                    .and_then(|(root, r)| self.config_of(&root, &r).ok())
                    .map(|c| Config::from_oci(c.config.as_ref()).exposed_ports)
                    .unwrap_or_default();
                serde_json::json!({
                    "reference": s.names.first().cloned().unwrap_or_else(|| format!("@{}", s.id)),
                    "names": s.names,
                    "id": s.id.to_string(),
                    "layers": s.layers,
                    "size_bytes": s.size,
                    "exposed_ports": exposed,
                    "built_in": s.shipped,
                })
            })
            .collect();
        serde_json::Value::Array(out)
    }

    fn ensure_dirs(&self) -> Result<(), Error> {
        for d in [fmt::IMAGES, fmt::BLOBS, fmt::LAYERS, fmt::TMP] {
            let p = self.root.join(d);
            std::fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        Ok(())
    }

    fn tmp_path(&self, what: &str) -> PathBuf {
        self.root.join(fmt::TMP).join(format!(
            "{what}.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Writes `bytes` at `path` through a temporary file in `tmp/`, fsync,
    /// a rename and an fsync of the directory, as [`crate::sys::write_atomic`]
    /// does beside the file.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let tmp = self.tmp_path("file");
        let r = (|| {
            let mut f = std::fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
            f.write_all(bytes).map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("sync", &tmp))?;
            std::fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
            let dir = path.parent().unwrap_or(&self.root);
            crate::sys::fsync_dir(dir).map_err(io_err("sync", dir))
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }

    /// Imports the images of the OCI layout or docker-save archive at
    /// `path`; `default_name` names images its layout names by tag only.
    pub fn import_path(
        &self,
        path: &Path,
        default_name: Option<String>,
    ) -> Result<Vec<Imported>, Error> {
        let archive = Archive::open(path)?.with_default_name(default_name);
        self.import(&archive)
    }

    /// Imports every image of `source`: verifies and unpacks the layers the
    /// store lacks, then records the image under its names (a name another
    /// image had moves to this one).
    pub fn import(&self, source: &dyn Source) -> Result<Vec<Imported>, Error> {
        self.ensure_dirs()?;
        let images = source.images(&self.limits)?;
        let mut out = Vec::new();
        for spec in &images {
            out.push(self.import_one(source, spec)?);
        }
        Ok(out)
    }

    fn import_one(&self, source: &dyn Source, spec: &ImageSpec) -> Result<Imported, Error> {
        let image = spec.display_name();
        let mut done = Imported {
            image: if spec.names.is_empty() {
                image.clone()
            } else {
                spec.names.join(", ")
            },
            unpacked: 0,
            shared: 0,
            bytes: 0,
            blob_bytes: 0,
            skipped_devices: 0,
        };
        let mut seen = BTreeSet::new();
        for layer in &spec.layers {
            if self.layer_dir(&layer.diff_id).is_some() || !seen.insert(layer.diff_id.clone()) {
                done.shared += 1;
                continue;
            }
            let (record, stats) =
                self.unpack_layer(source, layer)
                    .map_err(|source_err| Error::Layer {
                        archive: source.describe(),
                        image: image.clone(),
                        blob: layer.location.to_string(),
                        source: Box::new(source_err),
                    })?;
            done.unpacked += 1;
            done.bytes += record.size;
            done.blob_bytes += stats.1;
            done.skipped_devices += stats.0.skipped_devices;
        }
        let blobs = self.root.join(fmt::BLOBS);
        self.write_atomic(&blobs.join(spec.config.hex()), &spec.config_json)?;
        if let (Some(m), Some(json)) = (&spec.manifest, &spec.manifest_json) {
            self.write_atomic(&blobs.join(m.hex()), json)?;
        }
        let id = spec.id();
        let mut names = spec.names.clone();
        // Names move: take them from any other image of the writable root.
        for (root, mut other) in self.records() {
            if root != self.root {
                continue;
            }
            if other.id == id {
                for n in &other.names {
                    if !names.contains(n) {
                        names.push(n.clone());
                    }
                }
                continue;
            }
            let before = other.names.len();
            other.names.retain(|n| !spec.names.contains(n));
            if other.names.len() != before {
                self.save_record(&other)?;
            }
        }
        names.sort();
        let record = ImageRecord {
            id,
            names,
            manifest: spec.manifest.clone(),
            config: spec.config.clone(),
            layers: spec.layers.iter().map(|l| l.diff_id.clone()).collect(),
            source: source.describe(),
        };
        self.save_record(&record)?;
        Ok(done)
    }

    fn save_record(&self, record: &ImageRecord) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
        let path = self
            .root
            .join(fmt::IMAGES)
            .join(format!("{}.json", record.id.hex()));
        self.write_atomic(&path, &bytes)
    }

    /// Unpacks one layer into `tmp/`, verifies it, and renames it into
    /// place. Returns its record, and the unpack stats with the blob size.
    fn unpack_layer(
        &self,
        source: &dyn Source,
        layer: &oci::LayerSpec,
    ) -> Result<(LayerRecord, (unpack::Stats, u64)), unpack::UnpackError> {
        let tmp = self.tmp_path(layer.diff_id.hex());
        let sys_err = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |e: std::io::Error| unpack::UnpackError::Sys {
                path: p,
                op,
                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            }
        };
        std::fs::create_dir(&tmp).map_err(sys_err("create", &tmp))?;
        let result = (|| {
            let blob = source.open_layer(layer).map_err(|e| {
                unpack::UnpackError::Layer(oci::LayerError::Io(std::io::Error::other(
                    e.to_string(),
                )))
            })?;
            let mut l = Layer::open(blob, layer.size, self.limits.layer)?;
            let stats = unpack::unpack(&mut l, &tmp, &self.unpack)?;
            let verified = l.finish(layer.digest.as_ref(), Some(&layer.diff_id))?;
            Ok::<_, unpack::UnpackError>((stats, verified))
        })();
        let (stats, verified) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = unpack::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let record = LayerRecord {
            diff_id: layer.diff_id.clone(),
            blob: Some(verified.blob.clone()),
            size: stats.bytes,
            entries: stats.entries,
            fixups: Default::default(),
        };
        let layers = self.root.join(fmt::LAYERS);
        let json = layers.join(format!("{}.json", layer.diff_id.hex()));
        let dest = layers.join(layer.diff_id.hex());
        let save = (|| {
            self.write_atomic(&json, &serde_json::to_vec(&record).unwrap_or_default())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let d = std::fs::File::open(&tmp)?;
            nix::unistd::syncfs(d.as_fd()).map_err(std::io::Error::from)?;
            std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            std::fs::rename(&tmp, &dest)?;
            crate::sys::fsync_dir(&layers)
        })();
        if let Err(e) = save {
            let _ = unpack::remove_dir_all(&tmp);
            if !dest.is_dir() {
                return Err(sys_err("rename into place", &dest)(e));
            }
        }
        Ok((record, (stats, verified.blob_size)))
    }

    /// Removes images without a name (unless their id is in `keep`), then
    /// every layer and blob of the writable root that no image uses and
    /// that is not in `busy` (layer directories a running container has
    /// mounted, whatever became of its image's name), and `tmp/`.
    pub fn gc(&self, keep: &BTreeSet<Digest>, busy: &BTreeSet<PathBuf>) -> Result<GcReport, Error> {
        let mut report = GcReport::default();
        let mut used_layers: BTreeSet<String> = BTreeSet::new();
        let mut used_blobs: BTreeSet<String> = BTreeSet::new();
        for (root, rec) in self.records() {
            if root == self.root && rec.names.is_empty() && !keep.contains(&rec.id) {
                let p = self
                    .root
                    .join(fmt::IMAGES)
                    .join(format!("{}.json", rec.id.hex()));
                std::fs::remove_file(&p).map_err(io_err("remove", &p))?;
                report.images += 1;
                continue;
            }
            used_layers.extend(rec.layers.iter().map(|d| d.hex().to_string()));
            used_blobs.insert(rec.config.hex().to_string());
            if let Some(m) = &rec.manifest {
                used_blobs.insert(m.hex().to_string());
            }
        }
        let layers = self.root.join(fmt::LAYERS);
        if let Ok(entries) = std::fs::read_dir(&layers) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let hex = name.trim_end_matches(".json");
                if used_layers.contains(hex) || busy.contains(&layers.join(hex)) {
                    continue;
                }
                let p = e.path();
                if name.ends_with(".json") {
                    if let Some(r) = std::fs::read(&p)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<LayerRecord>(&b).ok())
                    {
                        report.bytes += r.size;
                    }
                    std::fs::remove_file(&p).map_err(io_err("remove", &p))?;
                } else {
                    remove_tree(&p)?;
                    report.layers += 1;
                }
            }
        }
        // Shifted copies go with their layer, unless a container has them
        // mounted.
        let shifted = self.root.join(SHIFTED);
        if let Ok(entries) = std::fs::read_dir(&shifted) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let hex = name.split('.').next().unwrap_or_default();
                let p = e.path();
                if used_layers.contains(hex) || busy.contains(&p) {
                    continue;
                }
                remove_tree(&p)?;
                report.layers += 1;
            }
        }
        let blobs = self.root.join(fmt::BLOBS);
        if let Ok(entries) = std::fs::read_dir(&blobs) {
            for e in entries.flatten() {
                if !used_blobs.contains(e.file_name().to_string_lossy().as_ref()) {
                    let p = e.path();
                    std::fs::remove_file(&p).map_err(io_err("remove", &p))?;
                    report.blobs += 1;
                }
            }
        }
        let tmp = self.root.join(fmt::TMP);
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    let _ = unpack::remove_dir_all(&p);
                } else {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        Ok(report)
    }

    /// Applies what the initramfs could not carry to the shipped roots'
    /// layers (opaque directories, extended attributes, FIFOs, set-id
    /// modes), once: a `<hex>.fixed` marker records it. Returns how many
    /// layers were fixed.
    pub fn apply_fixups(&self) -> Result<usize, Error> {
        let mut n = 0;
        for root in &self.shipped {
            let layers = root.join(fmt::LAYERS);
            let Ok(entries) = std::fs::read_dir(&layers) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                let Some(hex) = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".json"))
                else {
                    continue;
                };
                let marker = layers.join(format!("{hex}.fixed"));
                if marker.exists() {
                    continue;
                }
                let bytes = std::fs::read(&p).map_err(io_err("read", &p))?;
                let rec: LayerRecord =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Store {
                        op: "parse",
                        path: p.clone(),
                        detail: e.to_string(),
                    })?;
                if rec.fixups.is_empty() {
                    continue;
                }
                let dir = layers.join(hex);
                unpack::apply_fixups(&dir, &rec.fixups, &self.unpack).map_err(|e| {
                    Error::Store {
                        op: "fix up",
                        path: dir.clone(),
                        detail: e.to_string(),
                    }
                })?;
                std::fs::write(&marker, b"").map_err(io_err("write", &marker))?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// A record's name for messages.
fn display(rec: &ImageRecord) -> String {
    rec.names
        .first()
        .cloned()
        .unwrap_or_else(|| format!("@{}", rec.id))
}

/// Layer directories by DiffID, for tests and tools.
pub fn layer_dirs(store: &Store) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for root in store.roots() {
        if let Ok(entries) = std::fs::read_dir(root.join(fmt::LAYERS)) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    out.entry(e.file_name().to_string_lossy().into_owned())
                        .or_insert_with(|| e.path());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(root: &Path, id: &Digest, names: &[&str]) {
        let rec = ImageRecord {
            id: id.clone(),
            names: names.iter().map(|n| n.to_string()).collect(),
            manifest: Some(id.clone()),
            config: Digest::of(b"config"),
            layers: Vec::new(),
            source: String::new(),
        };
        let dir = root.join(fmt::IMAGES);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{}.json", id.hex())),
            serde_json::to_vec(&rec).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn one_image_in_two_roots_answers_to_the_names_of_both() {
        let t = tempfile::tempdir().unwrap();
        let (writable, shipped) = (t.path().join("w"), t.path().join("s"));
        let id = Digest::of(b"manifest");
        record(&writable, &id, &["example/skopeo:1.0"]);
        record(&shipped, &id, &["umoci:app", "example/skopeo:1.0"]);
        record(&shipped, &Digest::of(b"other"), &["umoci:base"]);
        let store = Store::new(&writable).with_shipped(&shipped);
        let records = store.records();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].0, writable);
        assert_eq!(records[0].1.names, ["example/skopeo:1.0", "umoci:app"]);
        for name in ["umoci:app", "example/skopeo:1.0", "umoci:base"] {
            assert!(store.find(&name.parse().unwrap()).is_ok(), "{name}");
        }
        let e = store.find(&"umoci:gone".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("umoci:app"), "{e}");
    }
}

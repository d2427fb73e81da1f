//! Container images in the initramfs.
//!
//! The builder collects images from two places: built in (`busybox:latest`,
//! made from the host's static Debian busybox into an OCI image by
//! [`busybox_image`]) and `--image PATH` (an OCI layout, a tar of one, or a
//! `docker save` archive). Every blob is verified with the same code berth
//! uses ([`crate::oci`]): digests and sizes of indexes, manifests, configs
//! and layers, DiffIDs of the uncompressed layers.
//!
//! Each image goes into the initramfs one of two ways ([`Ship`]):
//! - **unpacked** (the default): the layers are unpacked at build time into
//!   berth's store format under `/usr/lib/berth/store` ([`STORE_DIR`]; see
//!   `berth_image::oci::store`), each layer once however many images share
//!   it. Boot then costs nothing but the initramfs copy. What cpio cannot
//!   carry (opaque directories and other extended attributes, FIFOs, set-id
//!   bits the boot copy drops) goes into the layer's record as fixups, which
//!   berth applies at boot. Hard links become copies.
//! - **archive** (`--import PATH`): the file goes in as it is, under
//!   `/usr/lib/berth/import`, and berth verifies and unpacks it at boot, as
//!   it will for images from the data disk.
//!
//! A container whose image is neither built in nor given is an error that
//! names the container.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_config::{ImageFacts, ImageRef};

use crate::cpio::{self, Archive, CpioError, Data};
use crate::elf::{ElfError, check_static_executable};
use crate::oci::layer::{Compression, Kind};
use crate::oci::spec::RunConfig;
use crate::oci::store::{self as fmt, Fixups, ImageRecord, LayerRecord};
use crate::oci::write::{self, ImageBuild, Tree};
use crate::oci::{Archive as OciArchive, Digest, ImageSpec, Layer, Limits, Source, SourceError};

/// Where the pre-unpacked store lives in the initramfs.
pub const STORE_DIR: &str = "usr/lib/berth/store";
/// Where archives to import at boot go.
pub const IMPORT_DIR: &str = "usr/lib/berth/import";

/// `PATH` as container images usually set it.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why an image could not be embedded.
#[derive(Debug, displaydoc::Display, thiserror::Error)]
pub enum ImageError {
    /// container {container:?} uses image {image:?}, which is neither built in (busybox:latest) nor given with --image
    Unknown {
        /// The container's name.
        container: String,
        /// The image reference as written.
        image: String,
    },
    /// cannot read {path}: {source}
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// {path} cannot serve as the busybox image: {source} (install busybox-static: scripts/install-deps)
    Busybox {
        /// The busybox binary.
        path: PathBuf,
        /// Why not.
        source: ElfError,
    },
    /// cannot list busybox's applets with `{path} --list-full`: {reason}
    Applets {
        /// The busybox binary.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// cannot add image {image} to the initramfs: {source}
    Archive {
        /// The image.
        image: String,
        /// The archive's error.
        source: CpioError,
    },
    /// {0}
    Source(#[from] SourceError),
    /// {archive}: image {image}: layer blob {blob} refused: {why}
    Layer {
        /// The source.
        archive: String,
        /// The image.
        image: String,
        /// The blob.
        blob: String,
        /// Why.
        why: String,
    },
    /// {0}
    Write(#[from] write::WriteError),
    /// --image {path}: {why}
    Input {
        /// The input.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Where built-in container images take their files from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// A statically linked busybox (Debian's busybox-static: `/bin/busybox`).
    pub busybox: PathBuf,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            busybox: PathBuf::from("/bin/busybox"),
        }
    }
}

/// How an image goes into the initramfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ship {
    /// Unpacked at build time into the shipped store.
    #[default]
    Unpacked,
    /// As the archive it is, imported by berth at boot.
    Archive,
}

/// An image source given to the builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInput {
    /// An OCI layout (directory or tar) or a `docker save` archive.
    pub path: PathBuf,
    /// A name: a repository (`app`) names images the layout names by tag
    /// only; a full reference (`app:1.0`) names a single-image archive.
    pub name: Option<String>,
    /// How it goes in.
    pub ship: Ship,
}

impl ImageInput {
    /// Parses `[NAME=]PATH`.
    pub fn parse(arg: &str, ship: Ship) -> ImageInput {
        match arg.split_once('=') {
            Some((name, path)) if !name.contains('/') || !Path::new(path).exists() => ImageInput {
                path: PathBuf::from(path),
                name: Some(name.to_string()),
                ship,
            },
            _ => ImageInput {
                path: PathBuf::from(arg),
                name: None,
                ship,
            },
        }
    }
}

/// The applets of the busybox at `path`, as root-relative paths
/// (`usr/bin/wget`), from `busybox --list-full`.
fn applets(path: &Path) -> Result<Vec<String>, ImageError> {
    let err = |reason: String| ImageError::Applets {
        path: path.to_path_buf(),
        reason,
    };
    let out = Command::new(path)
        .arg("--list-full")
        .output()
        .map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let list = String::from_utf8(out.stdout).map_err(|_| err("output is not UTF-8".into()))?;
    let mut applets: Vec<String> = list
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if applets.is_empty() {
        return Err(err("it lists no applets".into()));
    }
    applets.sort();
    applets.dedup();
    Ok(applets)
}

/// The target of a relative symlink at `link` (a path relative to the
/// root) that points to the root-relative `target`.
pub fn relative_target(link: &str, target: &str) -> String {
    let link_dir: Vec<&str> = link.split('/').collect();
    let link_dir = &link_dir[..link_dir.len() - 1];
    let target: Vec<&str> = target.split('/').collect();
    let common = link_dir
        .iter()
        .zip(&target)
        .take_while(|(a, b)| a == b)
        .count()
        .min(target.len() - 1);
    let mut out = "../".repeat(link_dir.len() - common);
    out.push_str(&target[common..].join("/"));
    out
}

/// The busybox root filesystem: the static binary, a symlink per applet,
/// minimal `/etc` files and the usual empty directories.
pub fn busybox_tree(busybox: &Path) -> Result<Tree, ImageError> {
    let data = std::fs::read(busybox).map_err(|source| ImageError::Read {
        path: busybox.to_path_buf(),
        source,
    })?;
    check_static_executable(&data).map_err(|source| ImageError::Busybox {
        path: busybox.to_path_buf(),
        source,
    })?;
    let mut t = Tree::new();
    t.file("bin/busybox", 0o755, write::Data::Bytes(data))?;
    for applet in applets(busybox)? {
        if applet == "bin/busybox" {
            continue;
        }
        t.symlink(&applet, &relative_target(&applet, "bin/busybox"))?;
    }
    let text = |s: &str| write::Data::Bytes(s.as_bytes().to_vec());
    t.file(
        "etc/passwd",
        0o644,
        text(concat!(
            "root:x:0:0:root:/root:/bin/sh\n",
            "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n",
            "bin:x:2:2:bin:/bin:/bin/false\n",
            "sys:x:3:3:sys:/dev:/bin/false\n",
            "nobody:x:65534:65534:nobody:/home:/bin/false\n",
        )),
    )?;
    t.file(
        "etc/group",
        0o644,
        text(concat!(
            "root:x:0:\n",
            "daemon:x:1:\n",
            "bin:x:2:\n",
            "sys:x:3:\n",
            "tty:x:5:\n",
            "users:x:100:\n",
            "nogroup:x:65534:\n",
        )),
    )?;
    // berth writes or bind-mounts these per container; they exist as targets.
    for f in ["hosts", "resolv.conf", "hostname"] {
        t.file(&format!("etc/{f}"), 0o644, text(""))?;
    }
    for (d, mode) in [
        ("proc", 0o755),
        ("sys", 0o755),
        ("dev", 0o755),
        ("tmp", 0o1777),
        ("run", 0o755),
        ("root", 0o700),
        ("var/tmp", 0o1777),
        ("home", 0o755),
    ] {
        t.dir(d, mode)?;
    }
    Ok(t)
}

/// The built-in `busybox:latest` as an OCI image (one layer).
pub fn busybox_image(
    sources: &Sources,
    compression: Compression,
    created: u64,
) -> Result<write::Built, ImageError> {
    let tree = busybox_tree(&sources.busybox)?;
    let layer = write::layer_blob(tree.to_tar(created)?, compression)?;
    Ok(ImageBuild {
        layers: vec![(layer, "berth-image: busybox-static".into())],
        config: RunConfig {
            cmd: Some(vec!["sh".into()]),
            env: Some(vec![DEFAULT_PATH.into()]),
            working_dir: Some("/".into()),
            ..RunConfig::default()
        },
        created,
    }
    .finish()?)
}

/// An in-memory [`Source`] over images the builder made.
#[derive(Debug)]
pub struct Built {
    name: String,
    image: write::Built,
}

impl Source for Built {
    fn describe(&self) -> String {
        format!("built-in {}", self.name)
    }

    fn images(&self, limits: &Limits) -> Result<Vec<ImageSpec>, SourceError> {
        let dir = tempfile::tempdir().map_err(|source| SourceError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        // Through a layout, so that the built image is read back and
        // verified by the same code as any other.
        let mut layout = write::Layout::open(dir.path()).map_err(|e| SourceError::Invalid {
            archive: self.describe(),
            what: "layout".into(),
            why: e.to_string(),
        })?;
        layout
            .add(&self.name, &self.image)
            .map_err(|e| SourceError::Invalid {
                archive: self.describe(),
                what: "layout".into(),
                why: e.to_string(),
            })?;
        let mut images = OciArchive::open(dir.path())?.images(limits)?;
        for i in &mut images {
            i.names = vec![self.name.clone()];
        }
        Ok(images)
    }

    fn open_layer(
        &self,
        layer: &crate::oci::LayerSpec,
    ) -> Result<crate::oci::source::BlobReader<'_>, SourceError> {
        let d = layer
            .digest
            .clone()
            .unwrap_or_else(|| layer.diff_id.clone());
        match self.image.blobs.get(&d) {
            Some(b) => Ok(Box::new(std::io::Cursor::new(b.as_slice()))),
            None => Err(SourceError::Invalid {
                archive: self.describe(),
                what: d.to_string(),
                why: "no such blob".into(),
            }),
        }
    }
}

/// One image collected for the initramfs.
struct Collected {
    source: usize,
    spec: ImageSpec,
    ship: Ship,
}

/// The images of one build: collected, checked, then embedded.
pub struct ImageSet {
    sources: Vec<(Box<dyn Source>, PathBuf)>,
    images: Vec<Collected>,
    limits: Limits,
    builtin: Sources,
    created: u64,
}

impl std::fmt::Debug for ImageSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSet")
            .field("images", &self.names())
            .finish_non_exhaustive()
    }
}

/// What facts an image config gives the manifest's checks.
pub fn facts_of(spec: &ImageSpec) -> ImageFacts {
    let c = spec.config_parsed.config.clone().unwrap_or_default();
    let health = c
        .healthcheck
        .as_ref()
        .and_then(|h| h.test.first())
        .is_some_and(|t| t == "CMD" || t == "CMD-SHELL");
    ImageFacts {
        writable_paths: c
            .volumes
            .iter()
            .flat_map(|v| v.keys().map(PathBuf::from))
            .collect(),
        healthcheck: health,
    }
}

impl ImageSet {
    /// An empty set; built-in images come from `builtin`, stamped `created`.
    pub fn new(builtin: &Sources, created: u64) -> ImageSet {
        ImageSet {
            sources: Vec::new(),
            images: Vec::new(),
            limits: Limits::default(),
            builtin: builtin.clone(),
            created,
        }
    }

    /// Reads and verifies the metadata of an `--image` input.
    pub fn add_input(&mut self, input: &ImageInput) -> Result<(), ImageError> {
        let (default_name, full) = match &input.name {
            Some(n) => {
                let r: ImageRef = n.parse().map_err(|why| ImageError::Input {
                    path: input.path.clone(),
                    why,
                })?;
                let tagged = n.rsplit('/').next().is_some_and(|last| last.contains(':'))
                    || r.digest.is_some();
                if tagged {
                    (None, Some(crate::oci::canonical(&r)))
                } else {
                    (Some(r.name()), None)
                }
            }
            None => (None, None),
        };
        let archive = OciArchive::open(&input.path)?.with_default_name(default_name);
        let mut specs = archive.images(&self.limits)?;
        if let Some(full) = full {
            match specs.as_mut_slice() {
                [only] => {
                    if !only.names.contains(&full) {
                        only.names.insert(0, full);
                    }
                }
                _ => {
                    return Err(ImageError::Input {
                        path: input.path.clone(),
                        why: format!(
                            "it holds {} images; a full reference names one",
                            specs.len()
                        ),
                    });
                }
            }
        }
        for s in &specs {
            if s.names.is_empty() {
                return Err(ImageError::Input {
                    path: input.path.clone(),
                    why: format!(
                        "image {} has no name (its layout names it by tag only, or not at all): give one, --image NAME=PATH",
                        s.display_name()
                    ),
                });
            }
        }
        let idx = self.sources.len();
        self.sources.push((Box::new(archive), input.path.clone()));
        for spec in specs {
            self.images.push(Collected {
                source: idx,
                spec,
                ship: input.ship,
            });
        }
        Ok(())
    }

    fn find(&self, r: &ImageRef) -> Option<&Collected> {
        let wanted = crate::oci::canonical(r);
        self.images.iter().find(|c| match &r.digest {
            Some(d) => {
                c.spec
                    .manifest
                    .as_ref()
                    .is_some_and(|m| m.to_string() == *d)
                    || c.spec.config.to_string() == *d
            }
            None => c.spec.names.contains(&wanted),
        })
    }

    fn is_builtin(r: &ImageRef) -> bool {
        r.digest.is_none() && crate::oci::canonical(r) == "busybox:latest"
    }

    /// What the manifest's checks may know about `r`.
    pub fn facts(&self, r: &ImageRef) -> Option<ImageFacts> {
        if let Some(c) = self.find(r) {
            return Some(facts_of(&c.spec));
        }
        Self::is_builtin(r).then(ImageFacts::default)
    }

    /// Makes sure `container`'s image `r` is in the set (building a
    /// built-in one on first use).
    pub fn require(&mut self, container: &str, r: &ImageRef) -> Result<(), ImageError> {
        if self.find(r).is_some() {
            return Ok(());
        }
        if !Self::is_builtin(r) {
            return Err(ImageError::Unknown {
                container: container.to_string(),
                image: r.to_string(),
            });
        }
        let image = busybox_image(&self.builtin, Compression::None, self.created)?;
        let built = Built {
            name: "busybox:latest".into(),
            image,
        };
        let specs = built.images(&self.limits)?;
        let idx = self.sources.len();
        self.sources
            .push((Box::new(built), PathBuf::from("built-in")));
        for spec in specs {
            self.images.push(Collected {
                source: idx,
                spec,
                ship: Ship::Unpacked,
            });
        }
        Ok(())
    }

    /// The names of the images, first name each.
    pub fn names(&self) -> Vec<String> {
        self.images.iter().map(|c| c.spec.display_name()).collect()
    }

    /// Adds every image to `archive`: unpacked into the shipped store, or
    /// as an archive to import at boot.
    pub fn embed(&self, archive: &mut Archive) -> Result<(), ImageError> {
        let mut layers_done: BTreeSet<Digest> = BTreeSet::new();
        let mut shipped_sources: BTreeSet<usize> = BTreeSet::new();
        // One image given twice (a layout and an archive of it) gets one
        // record with the names of both.
        let mut names: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for c in self.images.iter().filter(|c| c.ship == Ship::Unpacked) {
            let all = names.entry(c.spec.id()).or_default();
            for n in &c.spec.names {
                if !all.contains(n) {
                    all.push(n.clone());
                }
            }
        }
        for c in &self.images {
            let (source, path) = &self.sources[c.source];
            match c.ship {
                Ship::Unpacked => {
                    let names = names.get(&c.spec.id()).cloned().unwrap_or_default();
                    self.embed_unpacked(archive, source.as_ref(), c, names, &mut layers_done)?
                }
                Ship::Archive => {
                    // Verify the layers now too, for an early error.
                    for l in &c.spec.layers {
                        verify_layer(source.as_ref(), &c.spec, l, &self.limits)?;
                    }
                    if shipped_sources.insert(c.source) {
                        ship_archive(archive, path, c.source, &c.spec)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn embed_unpacked(
        &self,
        archive: &mut Archive,
        source: &dyn Source,
        c: &Collected,
        names: Vec<String>,
        done: &mut BTreeSet<Digest>,
    ) -> Result<(), ImageError> {
        let spec = &c.spec;
        let image = spec.display_name();
        let cpio_err = |source| ImageError::Archive {
            image: image.clone(),
            source,
        };
        for l in &spec.layers {
            if !done.insert(l.diff_id.clone()) {
                continue;
            }
            let (tree, record) = unpack_to_tree(source, spec, l, &self.limits)?;
            let base = format!("{STORE_DIR}/{}/{}", fmt::LAYERS, l.diff_id.hex());
            archive.add_dir(&base, 0o755).map_err(cpio_err)?;
            for (path, node) in tree {
                let mut e = cpio::Entry::new(node.kind, node.mode);
                e.uid = node.uid;
                e.gid = node.gid;
                archive
                    .add(&format!("{base}/{path}"), e)
                    .map_err(cpio_err)?;
            }
            let json = serde_json::to_vec(&record).unwrap_or_default();
            archive
                .add_file(&format!("{base}.json"), 0o644, Data::Bytes(json))
                .map_err(cpio_err)?;
        }
        let blobs = format!("{STORE_DIR}/{}", fmt::BLOBS);
        let config_path = format!("{blobs}/{}", spec.config.hex());
        if !archive.contains(&config_path) {
            archive
                .add_file(&config_path, 0o644, Data::Bytes(spec.config_json.clone()))
                .map_err(cpio_err)?;
        }
        if let (Some(m), Some(json)) = (&spec.manifest, &spec.manifest_json) {
            let p = format!("{blobs}/{}", m.hex());
            if !archive.contains(&p) {
                archive
                    .add_file(&p, 0o644, Data::Bytes(json.clone()))
                    .map_err(cpio_err)?;
            }
        }
        let id = spec.id();
        let record = ImageRecord {
            id: id.clone(),
            names,
            manifest: spec.manifest.clone(),
            config: spec.config.clone(),
            layers: spec.layers.iter().map(|l| l.diff_id.clone()).collect(),
            source: source.describe(),
        };
        let p = format!("{STORE_DIR}/{}/{}.json", fmt::IMAGES, id.hex());
        if !archive.contains(&p) {
            archive
                .add_file(
                    &p,
                    0o644,
                    Data::Bytes(serde_json::to_vec_pretty(&record).unwrap_or_default()),
                )
                .map_err(cpio_err)?;
        }
        Ok(())
    }
}

/// Puts an archive (or layout directory) as it is under [`IMPORT_DIR`].
fn ship_archive(
    archive: &mut Archive,
    path: &Path,
    n: usize,
    spec: &ImageSpec,
) -> Result<(), ImageError> {
    let base = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let base = base.replace(
        |c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)),
        "_",
    );
    let dest = format!("{IMPORT_DIR}/{n:02}-{base}");
    let cpio_err = |source| ImageError::Archive {
        image: spec.display_name(),
        source,
    };
    if path.is_dir() {
        let mut stack = vec![(path.to_path_buf(), dest.clone())];
        while let Some((host, at)) = stack.pop() {
            archive.add_dir(&at, 0o755).map_err(cpio_err)?;
            let entries = std::fs::read_dir(&host).map_err(|source| ImageError::Read {
                path: host.clone(),
                source,
            })?;
            for e in entries.flatten() {
                let p = e.path();
                let name = format!("{at}/{}", e.file_name().to_string_lossy());
                if p.is_dir() {
                    stack.push((p, name));
                } else {
                    archive
                        .add_file(&name, 0o644, Data::file(&p).map_err(cpio_err)?)
                        .map_err(cpio_err)?;
                }
            }
        }
    } else {
        archive
            .add_file(&dest, 0o644, Data::file(path).map_err(cpio_err)?)
            .map_err(cpio_err)?;
    }
    // The names the builder settled (a name given on the command line
    // included) travel with the archive: berth names bare-tagged images
    // with the repository in `<dest>.name`.
    if let Some(first) = spec.names.first() {
        let repo = crate::oci::source::repository(first).to_string();
        archive
            .add_file(
                &format!("{dest}.name"),
                0o644,
                Data::Bytes(repo.into_bytes()),
            )
            .map_err(cpio_err)?;
    }
    Ok(())
}

fn layer_err(
    source: &dyn Source,
    spec: &ImageSpec,
    l: &crate::oci::LayerSpec,
    why: String,
) -> ImageError {
    ImageError::Layer {
        archive: source.describe(),
        image: spec.display_name(),
        blob: l.location.to_string(),
        why,
    }
}

/// Reads a layer to its end and checks its digests.
fn verify_layer(
    source: &dyn Source,
    spec: &ImageSpec,
    l: &crate::oci::LayerSpec,
    limits: &Limits,
) -> Result<(), ImageError> {
    let err = |why: String| layer_err(source, spec, l, why);
    let blob = source.open_layer(l)?;
    let mut layer = Layer::open(blob, l.size, limits.layer).map_err(|e| err(e.to_string()))?;
    while layer
        .next_entry()
        .map_err(|e| err(e.to_string()))?
        .is_some()
    {}
    layer
        .finish(l.digest.as_ref(), Some(&l.diff_id))
        .map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// A node of a layer unpacked in memory.
#[derive(Debug, Clone)]
struct Node {
    kind: cpio::Kind,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Unpacks a layer in memory, with the rules berth's unpacker applies on
/// disk: later entries replace earlier ones, a whiteout for a name this
/// layer has is dropped, no path may pass through a symlink, hard links
/// must point into the layer. Returns the tree and the layer's record.
fn unpack_to_tree(
    source: &dyn Source,
    spec: &ImageSpec,
    l: &crate::oci::LayerSpec,
    limits: &Limits,
) -> Result<(BTreeMap<String, Node>, LayerRecord), ImageError> {
    let err = |why: String| layer_err(source, spec, l, why);
    let blob = source.open_layer(l)?;
    let mut layer = Layer::open(blob, l.size, limits.layer).map_err(|e| err(e.to_string()))?;
    let mut tree: BTreeMap<String, Node> = BTreeMap::new();
    let mut fixups = Fixups::default();
    let mut entries = 0u64;
    let dir = |mode| Node {
        kind: cpio::Kind::Dir,
        mode,
        uid: 0,
        gid: 0,
    };
    while let Some(e) = layer.next_entry().map_err(|e| err(e.to_string()))? {
        entries += 1;
        let path = e
            .path
            .to_str()
            .ok_or_else(|| err(format!("entry {:?}: not UTF-8, which the initramfs cannot hold (ship it with --import)", e.path)))?
            .to_string();
        // Parents: directories, made if missing; never a symlink.
        let mut parent = String::new();
        for c in Path::new(&path).parent().into_iter().flat_map(|p| p.iter()) {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(&c.to_string_lossy());
            match tree.get(&parent).map(|n| &n.kind) {
                None => {
                    tree.insert(parent.clone(), dir(0o755));
                }
                Some(cpio::Kind::Dir) => {}
                Some(cpio::Kind::Symlink(_)) => {
                    return Err(err(format!(
                        "entry {path:?}: its path passes through a symlink (refused: a layer may not reach through links)"
                    )));
                }
                Some(_) => return Err(err(format!("entry {path:?}: a parent is not a directory"))),
            }
        }
        let remove_subtree = |tree: &mut BTreeMap<String, Node>, p: &str| {
            let prefix = format!("{p}/");
            tree.retain(|k, _| k != p && !k.starts_with(&prefix));
        };
        let node = |kind| Node {
            kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
        };
        let allowed_xattrs = |fixups: &mut Fixups| {
            for (name, value) in &e.xattrs {
                if name.starts_with(b"user.") || name == b"security.capability" {
                    fixups.xattrs.push((
                        path.clone(),
                        String::from_utf8_lossy(name).into_owned(),
                        fmt::to_hex(value),
                    ));
                }
            }
        };
        match &e.kind {
            Kind::Dir => {
                match tree.get_mut(&path) {
                    Some(n) if matches!(n.kind, cpio::Kind::Dir) => {
                        n.mode = e.mode;
                        n.uid = e.uid;
                        n.gid = e.gid;
                    }
                    _ => {
                        remove_subtree(&mut tree, &path);
                        tree.insert(path.clone(), node(cpio::Kind::Dir));
                    }
                }
                allowed_xattrs(&mut fixups);
            }
            Kind::File { size } => {
                let mut data = Vec::with_capacity((*size).min(1 << 24) as usize);
                (&mut layer)
                    .take(*size)
                    .read_to_end(&mut data)
                    .map_err(|e| err(layer.data_error(e).to_string()))?;
                remove_subtree(&mut tree, &path);
                tree.insert(path.clone(), node(cpio::Kind::File(Data::Bytes(data))));
                if e.mode & 0o7000 != 0 {
                    fixups.modes.push((path.clone(), e.mode));
                }
                allowed_xattrs(&mut fixups);
            }
            Kind::Symlink(t) => {
                remove_subtree(&mut tree, &path);
                let t = t
                    .to_str()
                    .ok_or_else(|| err(format!("entry {path:?}: symlink target not UTF-8")))?;
                tree.insert(path.clone(), node(cpio::Kind::Symlink(t.to_string())));
            }
            Kind::Link(target) => {
                let t = target.to_string_lossy().into_owned();
                let mut tp = String::new();
                for c in Path::new(&t).parent().into_iter().flat_map(|p| p.iter()) {
                    if !tp.is_empty() {
                        tp.push('/');
                    }
                    tp.push_str(&c.to_string_lossy());
                    if matches!(tree.get(&tp).map(|n| &n.kind), Some(cpio::Kind::Symlink(_))) {
                        return Err(err(format!(
                            "entry {path:?}: hard link target {t:?} passes through a symlink"
                        )));
                    }
                }
                let Some(target_node) = tree.get(&t).cloned() else {
                    return Err(err(format!(
                        "entry {path:?}: hard link target {t:?} is not in this layer"
                    )));
                };
                if matches!(target_node.kind, cpio::Kind::Dir) {
                    return Err(err(format!(
                        "entry {path:?}: hard link target {t:?} is a directory"
                    )));
                }
                remove_subtree(&mut tree, &path);
                // cpio here has no hard links: a copy.
                tree.insert(path.clone(), target_node);
            }
            Kind::Char { .. } | Kind::Block { .. } => {
                // Device nodes are skipped, as berth's default policy does.
            }
            Kind::Fifo => {
                remove_subtree(&mut tree, &path);
                fixups.fifos.push((path.clone(), e.mode, e.uid, e.gid));
            }
            Kind::Whiteout => {
                if !tree.contains_key(&path) {
                    tree.insert(
                        path.clone(),
                        Node {
                            kind: cpio::Kind::CharDevice { major: 0, minor: 0 },
                            mode: 0,
                            uid: 0,
                            gid: 0,
                        },
                    );
                }
            }
            Kind::Opaque => {
                if !path.is_empty()
                    && !matches!(tree.get(&path).map(|n| &n.kind), Some(cpio::Kind::Dir))
                {
                    remove_subtree(&mut tree, &path);
                    tree.insert(path.clone(), dir(0o755));
                }
                fixups.opaque.push(path.clone());
            }
        }
    }
    let v = layer
        .finish(l.digest.as_ref(), Some(&l.diff_id))
        .map_err(|e| err(e.to_string()))?;
    // FIFOs replaced later by something else are no FIFOs.
    fixups.fifos.retain(|(p, ..)| !tree.contains_key(p));
    let size = tree
        .values()
        .map(|n| match &n.kind {
            cpio::Kind::File(d) => d.len(),
            _ => 0,
        })
        .sum();
    Ok((
        tree,
        LayerRecord {
            diff_id: l.diff_id.clone(),
            blob: Some(v.blob),
            size,
            entries,
            fixups,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::Kind as CKind;

    #[test]
    fn relative_symlink_targets() {
        assert_eq!(
            relative_target("usr/bin/wget", "bin/busybox"),
            "../../bin/busybox"
        );
        assert_eq!(
            relative_target("sbin/init", "bin/busybox"),
            "../bin/busybox"
        );
        assert_eq!(relative_target("bin/sh", "bin/busybox"), "busybox");
        assert_eq!(relative_target("linuxrc", "bin/busybox"), "bin/busybox");
        assert_eq!(relative_target("bin/x/y", "bin/busybox"), "../busybox");
    }

    #[test]
    fn unknown_images_name_the_container() {
        let mut set = ImageSet::new(&Sources::default(), 0);
        let err = set
            .require("web", &"nginx:1.25".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "container \"web\" uses image \"nginx:1.25\", which is neither built in \
             (busybox:latest) nor given with --image"
        );
    }

    #[test]
    fn refuses_a_dynamic_busybox() {
        let sources = Sources {
            busybox: PathBuf::from("/bin/ls"),
        };
        let mut set = ImageSet::new(&sources, 0);
        let err = set.require("c", &"busybox".parse().unwrap()).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::Busybox {
                    source: ElfError::Dynamic,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn inputs_parse() {
        let i = ImageInput::parse("app=/tmp/x.tar", Ship::Unpacked);
        assert_eq!(i.name.as_deref(), Some("app"));
        assert_eq!(i.path, Path::new("/tmp/x.tar"));
        let i = ImageInput::parse("/tmp/x.tar", Ship::Archive);
        assert_eq!(i.name, None);
    }

    /// The real busybox-static (scripts/install-deps installs it).
    #[test]
    fn busybox_is_embedded_unpacked_once() {
        let sources = Sources::default();
        let mut set = ImageSet::new(&sources, 0);
        set.require("one", &"busybox".parse().unwrap()).unwrap();
        set.require("two", &"docker.io/library/busybox:latest".parse().unwrap())
            .unwrap();
        assert_eq!(set.names(), ["busybox:latest"]);
        let mut a = Archive::new();
        set.embed(&mut a).unwrap();
        let entries: BTreeMap<&str, &crate::cpio::Entry> = a.iter().collect();
        let layers: Vec<&&str> = entries
            .keys()
            .filter(|p| p.starts_with("usr/lib/berth/store/layers/") && p.ends_with(".json"))
            .collect();
        assert_eq!(layers.len(), 1);
        let root = layers[0].trim_end_matches(".json");
        let get = |p: &str| {
            *entries
                .get(format!("{root}/{p}").as_str())
                .unwrap_or_else(|| panic!("{p}"))
        };
        assert!(matches!(get("bin/busybox").kind, CKind::File(_)));
        assert_eq!(get("bin/busybox").mode, 0o755);
        assert!(matches!(&get("bin/sh").kind, CKind::Symlink(t) if t == "busybox"));
        assert!(matches!(&get("usr/bin/wget").kind, CKind::Symlink(t) if t == "../../bin/busybox"));
        assert_eq!(get("tmp").mode, 0o1777);
        let images: Vec<&&str> = entries
            .keys()
            .filter(|p| p.starts_with("usr/lib/berth/store/images/"))
            .collect();
        assert_eq!(images.len(), 1);
        let CKind::File(Data::Bytes(json)) = &entries[*images[0]].kind else {
            panic!()
        };
        let rec: ImageRecord = serde_json::from_slice(json).unwrap();
        assert_eq!(rec.names, ["busybox:latest"]);
        // The same inputs give the same image.
        let mut again = ImageSet::new(&sources, 0);
        again.require("x", &"busybox".parse().unwrap()).unwrap();
        assert_eq!(again.images[0].spec.manifest, set.images[0].spec.manifest);
    }
}

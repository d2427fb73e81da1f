//! Where images come from: an OCI image layout (a directory, or a tar of
//! one) or a `docker save` archive, read through one [`Source`] interface.
//! A registry puller is another implementation of [`Source`]: it lists the
//! images it fetched ([`Source::images`]) and opens layer blobs by
//! descriptor ([`Source::open_layer`]); verification stays with the caller.
//!
//! [`Archive::images`] reads and verifies everything but the layers: the
//! index, nested indexes (a multi-platform index selects linux/amd64), each
//! manifest and config, each against its descriptor's sha256 and size. A
//! layer is verified as it is read ([`super::layer::Layer`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use berth_config::ImageRef;

use super::Limits;
use super::digest::{Digest, Verify};
use super::spec::{self, Descriptor, DockerEntry, ImageConfig, Index, Manifest, Platform};
use super::tar::{self, TarLimits};

/// Why images cannot be read from a source.
#[derive(Debug, displaydoc::Display, thiserror::Error)]
pub enum SourceError {
    /// cannot read {path}: {source}
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// {path} is not an OCI image layout or a docker-save archive: {why}
    NotAnImage {
        /// The source.
        path: PathBuf,
        /// Why not.
        why: String,
    },
    /// {archive}: {what}: {why}
    Invalid {
        /// The source.
        archive: String,
        /// The document or member.
        what: String,
        /// What is wrong.
        why: String,
    },
    /// {archive}: image {image}: blob {blob}: {why}
    Blob {
        /// The source.
        archive: String,
        /// The image (its name, or its manifest digest).
        image: String,
        /// The blob (its digest, or its path in the archive).
        blob: String,
        /// What is wrong.
        why: String,
    },
    /// {archive}: image {image}: {why}
    Image {
        /// The source.
        archive: String,
        /// The image.
        image: String,
        /// What is wrong.
        why: String,
    },
}

/// Where a layer blob is found in its source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// By digest (`blobs/sha256/<hex>` in a layout, or from a registry).
    Digest(Digest),
    /// By path in a `docker save` archive (`<id>/layer.tar`).
    Path(String),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Digest(d) => write!(f, "{d}"),
            Location::Path(p) => write!(f, "{p}"),
        }
    }
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    /// Where its blob is.
    pub location: Location,
    /// The blob's digest, when the source gives one.
    pub digest: Option<Digest>,
    /// The blob's size, when the source gives one.
    pub size: Option<u64>,
    /// The sha256 of its uncompressed tar, from the config.
    pub diff_id: Digest,
    /// Its media type as given (informational: the compression is told
    /// from the content).
    pub media_type: String,
}

/// An image: verified manifest and config, and where its layers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Canonical references naming it (see [`canonical`]); may be empty.
    pub names: Vec<String>,
    /// The manifest's digest (OCI sources).
    pub manifest: Option<Digest>,
    /// The manifest as stored, for sources that have one.
    pub manifest_json: Option<Vec<u8>>,
    /// The config's digest: the image ID.
    pub config: Digest,
    /// The config as stored.
    pub config_json: Vec<u8>,
    /// The config, parsed.
    pub config_parsed: ImageConfig,
    /// Layers, bottom first.
    pub layers: Vec<LayerSpec>,
}

impl ImageSpec {
    /// Its id in a store: the manifest's digest, or the config's when it
    /// has no manifest (docker-save archives).
    pub fn id(&self) -> Digest {
        self.manifest.clone().unwrap_or_else(|| self.config.clone())
    }

    /// A name for messages: its first name, else its digest.
    pub fn display_name(&self) -> String {
        match (self.names.first(), &self.manifest) {
            (Some(n), _) => n.clone(),
            (None, Some(m)) => format!("@{m}"),
            (None, None) => format!("@{}", self.config),
        }
    }
}

/// A source of images.
pub trait Source {
    /// Names the source in messages (its path, its registry URL).
    fn describe(&self) -> String;
    /// Its images, with manifests and configs verified.
    fn images(&self, limits: &Limits) -> Result<Vec<ImageSpec>, SourceError>;
    /// Opens a layer's blob, as stored (compressed or not), unverified.
    fn open_layer(&self, layer: &LayerSpec) -> Result<Box<dyn Read + Send + '_>, SourceError>;
}

/// A canonical reference: `name:tag` (or `name@digest`), with Docker
/// Hub's implicit `docker.io/` and `library/` dropped, so that `busybox`,
/// `library/busybox:latest` and `docker.io/library/busybox:latest` are one
/// name: `busybox:latest`.
pub fn canonical(r: &ImageRef) -> String {
    let name = r.name();
    let name = name
        .strip_prefix("docker.io/")
        .or_else(|| name.strip_prefix("index.docker.io/"))
        .unwrap_or(&name);
    let name = name.strip_prefix("library/").unwrap_or(name);
    match (&r.tag, &r.digest) {
        (Some(t), _) => format!("{name}:{t}"),
        (None, Some(d)) => format!("{name}@{d}"),
        (None, None) => format!("{name}:latest"),
    }
}

/// The repository part of a canonical reference (`busybox`).
pub fn repository(canonical: &str) -> &str {
    let end = canonical
        .rfind('@')
        .or_else(|| {
            let slash = canonical.rfind('/').map_or(0, |i| i + 1);
            canonical[slash..].rfind(':').map(|i| slash + i)
        })
        .unwrap_or(canonical.len());
    &canonical[..end]
}

/// A blob's bytes, as a source streams them.
pub type BlobReader<'a> = Box<dyn Read + Send + 'a>;

/// What an archive's files are: a directory, or members of a tar file.
#[derive(Debug)]
enum Files {
    Dir(PathBuf),
    Tar {
        file: File,
        /// Regular members by normalised path: (offset of data, size).
        members: BTreeMap<String, (u64, u64)>,
        /// Symlink and hard-link members: path to target path.
        links: BTreeMap<String, String>,
    },
}

/// An OCI image layout or a `docker save` archive on disk.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    files: Files,
    /// The repository given to images whose layout names them by tag only
    /// (`org.opencontainers.image.ref.name` = `latest`, as umoci writes).
    default_name: Option<String>,
}

/// Reads a member of a tar file by offset.
struct Member<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Member<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(left) as usize;
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn normalise_member(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    let mut out: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

impl Archive {
    /// Opens `path`: a directory holding an OCI layout, or a tar file of an
    /// OCI layout or of a `docker save`.
    pub fn open(path: &Path) -> Result<Archive, SourceError> {
        let io_err = |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io_err)?;
        let files = if meta.is_dir() {
            Files::Dir(path.to_path_buf())
        } else {
            let file = File::open(path).map_err(io_err)?;
            let mut head = [0u8; 4];
            let n = file.read_at(&mut head, 0).map_err(io_err)?;
            if super::layer::sniff(&head[..n]) != super::layer::Compression::None {
                return Err(SourceError::NotAnImage {
                    path: path.to_path_buf(),
                    why: "it is compressed; decompress it first (docker save and skopeo write plain tar)".into(),
                });
            }
            let mut r = tar::Reader::new(
                Member {
                    file: &file,
                    pos: 0,
                    end: meta.len(),
                },
                TarLimits::default(),
            );
            let mut members = BTreeMap::new();
            let mut links = BTreeMap::new();
            loop {
                let h = match r.next_header() {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(e) => {
                        return Err(SourceError::NotAnImage {
                            path: path.to_path_buf(),
                            why: e.to_string(),
                        });
                    }
                };
                let name = normalise_member(&h.path);
                match h.kind {
                    tar::Type::File => {
                        members.insert(name, (r.offset(), h.size));
                    }
                    tar::Type::Symlink => {
                        let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                        let target = if h.link.first() == Some(&b'/') {
                            normalise_member(&h.link)
                        } else {
                            let mut joined = dir.as_bytes().to_vec();
                            joined.push(b'/');
                            joined.extend_from_slice(&h.link);
                            normalise_member(&joined)
                        };
                        links.insert(name, target);
                    }
                    tar::Type::Link => {
                        links.insert(name, normalise_member(&h.link));
                    }
                    _ => {}
                }
            }
            Files::Tar {
                file,
                members,
                links,
            }
        };
        Ok(Archive {
            path: path.to_path_buf(),
            files,
            default_name: None,
        })
    }

    /// Names images that the layout names by tag only: they become
    /// `name:tag`.
    pub fn with_default_name(mut self, name: Option<String>) -> Self {
        self.default_name = name;
        self
    }

    fn archive(&self) -> String {
        self.path.display().to_string()
    }

    /// Opens a file of the archive by its path inside it; `None` if absent.
    fn open_file(&self, name: &str) -> Result<Option<(BlobReader<'_>, u64)>, SourceError> {
        match &self.files {
            Files::Dir(dir) => {
                let p = dir.join(name);
                match File::open(&p) {
                    Ok(f) => {
                        let len = f
                            .metadata()
                            .map_err(|source| SourceError::Io {
                                path: p.clone(),
                                source,
                            })?
                            .len();
                        Ok(Some((Box::new(f), len)))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(SourceError::Io { path: p, source }),
                }
            }
            Files::Tar {
                file,
                members,
                links,
            } => {
                let mut name = name.to_string();
                for _ in 0..16 {
                    if let Some(&(offset, size)) = members.get(&name) {
                        return Ok(Some((
                            Box::new(Member {
                                file,
                                pos: offset,
                                end: offset + size,
                            }),
                            size,
                        )));
                    }
                    match links.get(&name) {
                        Some(t) => name = t.clone(),
                        None => return Ok(None),
                    }
                }
                Ok(None)
            }
        }
    }

    fn has(&self, name: &str) -> bool {
        match &self.files {
            Files::Dir(dir) => dir.join(name).is_file(),
            Files::Tar { members, links, .. } => {
                members.contains_key(name) || links.contains_key(name)
            }
        }
    }

    /// Reads a small file (JSON) whole, at most `limit` bytes.
    fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>, SourceError> {
        let invalid = |why: String| SourceError::Invalid {
            archive: self.archive(),
            what: name.to_string(),
            why,
        };
        let (r, size) = self
            .open_file(name)?
            .ok_or_else(|| invalid("missing".into()))?;
        if size > limit {
            return Err(invalid(format!("{size} bytes, over the limit of {limit}")));
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.take(limit)
            .read_to_end(&mut buf)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(buf)
    }

    /// Reads a blob whole and checks it against its descriptor.
    fn read_blob(
        &self,
        image: &str,
        desc: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, SourceError> {
        let err = |why: String| SourceError::Blob {
            archive: self.archive(),
            image: image.to_string(),
            blob: desc.digest.to_string(),
            why,
        };
        if desc.size > limit {
            return Err(err(format!(
                "its descriptor gives {} bytes, over the limit of {limit} for a {}",
                desc.size, desc.media_type
            )));
        }
        let name = format!("blobs/sha256/{}", desc.digest.hex());
        let (r, _) = self
            .open_file(&name)?
            .ok_or_else(|| err(format!("missing from the archive ({name})")))?;
        let mut v = Verify::new(r, Some(desc.size), limit);
        let mut buf = Vec::with_capacity(desc.size as usize);
        v.read_to_end(&mut buf).map_err(|e| err(e.to_string()))?;
        match v
            .finish(Some(&desc.digest))
            .map_err(|e| err(e.to_string()))?
        {
            Ok(_) => Ok(buf),
            Err(m) => Err(err(m.to_string())),
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        bytes: &[u8],
    ) -> Result<T, SourceError> {
        serde_json::from_slice(bytes).map_err(|e| SourceError::Invalid {
            archive: self.archive(),
            what: what.to_string(),
            why: format!("invalid JSON: {e}"),
        })
    }

    /// Names from an index entry's annotations.
    fn names_of(&self, desc: &Descriptor) -> Result<Vec<String>, SourceError> {
        let full = desc.annotations.get(spec::ANNOTATION_CONTAINERD_NAME);
        let refname = desc.annotations.get(spec::ANNOTATION_REF_NAME);
        let text = match (full, refname) {
            (Some(f), _) => f.clone(),
            // A full reference (skopeo writes `example/app:1.0`).
            (None, Some(r)) if r.contains(':') || r.contains('/') => r.clone(),
            // A tag alone (umoci writes `latest`).
            (None, Some(tag)) => match &self.default_name {
                Some(name) => format!("{name}:{tag}"),
                None => return Ok(Vec::new()),
            },
            (None, None) => match &self.default_name {
                Some(name) => name.clone(),
                None => return Ok(Vec::new()),
            },
        };
        let r: ImageRef = text.parse().map_err(|why| SourceError::Invalid {
            archive: self.archive(),
            what: "index.json".into(),
            why,
        })?;
        Ok(vec![canonical(&r)])
    }

    fn oci_images(&self, limits: &Limits) -> Result<Vec<ImageSpec>, SourceError> {
        let layout = self.read_small("oci-layout", limits.max_json)?;
        let layout: serde_json::Value = self.parse("oci-layout", &layout)?;
        if layout["imageLayoutVersion"] != "1.0.0" {
            return Err(SourceError::Invalid {
                archive: self.archive(),
                what: "oci-layout".into(),
                why: format!(
                    "imageLayoutVersion {} (berth reads 1.0.0)",
                    layout["imageLayoutVersion"]
                ),
            });
        }
        let index = self.read_small("index.json", limits.max_json)?;
        let index: Index = self.parse("index.json", &index)?;
        let mut out: Vec<ImageSpec> = Vec::new();
        for desc in &index.manifests {
            let names = self.names_of(desc)?;
            let label = names
                .first()
                .cloned()
                .unwrap_or_else(|| format!("@{}", desc.digest));
            let (manifest_desc, manifest) = self.select(&label, desc, limits, 0)?;
            let mut image = self.image_of(&label, &manifest_desc, &manifest, limits)?;
            image.names = names;
            // One manifest listed twice (two tags): one image, both names.
            if let Some(same) = out.iter_mut().find(|i| i.manifest == image.manifest) {
                for n in image.names {
                    if !same.names.contains(&n) {
                        same.names.push(n);
                    }
                }
            } else {
                out.push(image);
            }
        }
        Ok(out)
    }

    /// Follows `desc` down nested indexes to the linux/amd64 manifest.
    fn select(
        &self,
        image: &str,
        desc: &Descriptor,
        limits: &Limits,
        depth: u32,
    ) -> Result<(Descriptor, Manifest), SourceError> {
        let image_err = |why: String| SourceError::Image {
            archive: self.archive(),
            image: image.to_string(),
            why,
        };
        if depth > 4 {
            return Err(image_err("indexes nested more than 4 deep".into()));
        }
        let bytes = self.read_blob(image, desc, limits.max_json)?;
        let what = format!("blob {}", desc.digest);
        match desc.media_type.as_str() {
            spec::MEDIA_INDEX | spec::MEDIA_DOCKER_LIST => {
                let index: Index = self.parse(&what, &bytes)?;
                let is_amd64 = |p: &Option<Platform>| {
                    p.as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                };
                let chosen = index
                    .manifests
                    .iter()
                    .find(|d| is_amd64(&d.platform))
                    .or_else(|| {
                        // One manifest without a platform: take it (the
                        // config's platform is checked next).
                        match index.manifests.as_slice() {
                            [only] if only.platform.is_none() => Some(only),
                            _ => None,
                        }
                    });
                match chosen {
                    Some(d) => self.select(image, d, limits, depth + 1),
                    None => {
                        let have: Vec<String> = index
                            .manifests
                            .iter()
                            .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                            .collect();
                        Err(image_err(format!(
                            "no linux/amd64 image in its index (it has: {})",
                            if have.is_empty() {
                                "no platforms".to_string()
                            } else {
                                have.join(", ")
                            }
                        )))
                    }
                }
            }
            spec::MEDIA_MANIFEST | spec::MEDIA_DOCKER_MANIFEST => {
                let m: Manifest = self.parse(&what, &bytes)?;
                Ok((desc.clone(), m))
            }
            other => Err(image_err(format!(
                "{} is a {other:?}, not an image manifest or index",
                desc.digest
            ))),
        }
    }

    fn image_of(
        &self,
        image: &str,
        desc: &Descriptor,
        manifest: &Manifest,
        limits: &Limits,
    ) -> Result<ImageSpec, SourceError> {
        let image_err = |why: String| SourceError::Image {
            archive: self.archive(),
            image: image.to_string(),
            why,
        };
        let config_json = self.read_blob(image, &manifest.config, limits.max_json)?;
        let config: ImageConfig =
            self.parse(&format!("config {}", manifest.config.digest), &config_json)?;
        check_config(&config, manifest.layers.len(), limits).map_err(image_err)?;
        let mut layers = Vec::new();
        for (d, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            check_layer_descriptor(d).map_err(|why| SourceError::Blob {
                archive: self.archive(),
                image: image.to_string(),
                blob: d.digest.to_string(),
                why,
            })?;
            layers.push(LayerSpec {
                location: Location::Digest(d.digest.clone()),
                digest: Some(d.digest.clone()),
                size: Some(d.size),
                diff_id: diff_id.clone(),
                media_type: d.media_type.clone(),
            });
        }
        Ok(ImageSpec {
            names: Vec::new(),
            manifest: Some(desc.digest.clone()),
            manifest_json: Some(self.read_blob(image, desc, limits.max_json)?),
            config: manifest.config.digest.clone(),
            config_json,
            config_parsed: config,
            layers,
        })
    }

    fn docker_images(&self, limits: &Limits) -> Result<Vec<ImageSpec>, SourceError> {
        let bytes = self.read_small("manifest.json", limits.max_json)?;
        let entries: Vec<DockerEntry> = self.parse("manifest.json", &bytes)?;
        let mut out = Vec::new();
        for e in entries {
            let mut names = Vec::new();
            for t in e.repo_tags.iter().flatten() {
                let r: ImageRef = t.parse().map_err(|why| SourceError::Invalid {
                    archive: self.archive(),
                    what: "manifest.json".into(),
                    why,
                })?;
                names.push(canonical(&r));
            }
            let label = names.first().cloned().unwrap_or_else(|| e.config.clone());
            let blob_err = |blob: &str, why: String| SourceError::Blob {
                archive: self.archive(),
                image: label.clone(),
                blob: blob.to_string(),
                why,
            };
            let config_path = normalise_member(e.config.as_bytes());
            let stem = config_path
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .trim_end_matches(".json");
            let expected = Digest::from_hex(stem).ok_or_else(|| {
                blob_err(
                    &config_path,
                    "its name is not its sha256, so it cannot be verified".into(),
                )
            })?;
            let config_json = self.read_small(&config_path, limits.max_json)?;
            let actual = Digest::of(&config_json);
            if actual != expected {
                return Err(blob_err(
                    &config_path,
                    format!("its content hashes to {actual}, not {expected}"),
                ));
            }
            let config: ImageConfig = self.parse(&config_path, &config_json)?;
            check_config(&config, e.layers.len(), limits).map_err(|why| SourceError::Image {
                archive: self.archive(),
                image: label.clone(),
                why,
            })?;
            let mut layers = Vec::new();
            for (path, diff_id) in e.layers.iter().zip(&config.rootfs.diff_ids) {
                let path = normalise_member(path.as_bytes());
                let (_, size) = self
                    .open_file(&path)?
                    .ok_or_else(|| blob_err(&path, "missing from the archive".into()))?;
                let digest = path
                    .strip_prefix("blobs/sha256/")
                    .and_then(Digest::from_hex);
                layers.push(LayerSpec {
                    location: Location::Path(path),
                    // A layer named by digest is checked against it; any
                    // other is checked against its DiffID alone.
                    digest,
                    size: Some(size),
                    diff_id: diff_id.clone(),
                    media_type: "application/vnd.docker.image.rootfs.diff.tar".into(),
                });
            }
            out.push(ImageSpec {
                names,
                manifest: None,
                manifest_json: None,
                config: expected,
                config_json,
                config_parsed: config,
                layers,
            });
        }
        Ok(out)
    }
}

/// Checks a config against its manifest: the platform, and one DiffID
/// per layer.
fn check_config(config: &ImageConfig, layers: usize, limits: &Limits) -> Result<(), String> {
    let os_ok = config.os.is_empty() || config.os == "linux";
    let arch_ok = config.architecture.is_empty() || config.architecture == "amd64";
    if !os_ok || !arch_ok {
        return Err(format!(
            "it is for {}/{}; berth runs linux/amd64 images",
            config.os, config.architecture
        ));
    }
    if config.rootfs.diff_ids.len() != layers {
        return Err(format!(
            "its manifest lists {layers} layers but its config {} DiffIDs",
            config.rootfs.diff_ids.len()
        ));
    }
    if layers > limits.max_layers {
        return Err(format!(
            "{layers} layers, over the limit of {} (the overlay mount's options must fit in a page)",
            limits.max_layers
        ));
    }
    Ok(())
}

/// Checks that a descriptor is a layer berth can unpack from the source.
fn check_layer_descriptor(d: &Descriptor) -> Result<(), String> {
    if !d.urls.is_empty()
        || d.media_type.contains("nondistributable")
        || d.media_type.contains("foreign")
    {
        return Err("a non-distributable layer (berth fetches nothing from its urls)".into());
    }
    let ok = matches!(
        d.media_type.as_str(),
        spec::MEDIA_LAYER
            | spec::MEDIA_LAYER_GZIP
            | spec::MEDIA_LAYER_ZSTD
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd"
    );
    if ok {
        Ok(())
    } else {
        Err(format!(
            "media type {:?} is not an image layer",
            d.media_type
        ))
    }
}

impl Source for Archive {
    fn describe(&self) -> String {
        self.archive()
    }

    fn images(&self, limits: &Limits) -> Result<Vec<ImageSpec>, SourceError> {
        if self.has("manifest.json") {
            self.docker_images(limits)
        } else if self.has("oci-layout") {
            self.oci_images(limits)
        } else {
            Err(SourceError::NotAnImage {
                path: self.path.clone(),
                why: "it has neither oci-layout nor manifest.json".into(),
            })
        }
    }

    fn open_layer(&self, layer: &LayerSpec) -> Result<Box<dyn Read + Send + '_>, SourceError> {
        let name = match &layer.location {
            Location::Digest(d) => format!("blobs/sha256/{}", d.hex()),
            Location::Path(p) => p.clone(),
        };
        match self.open_file(&name)? {
            Some((r, _)) => Ok(r),
            None => Err(SourceError::Invalid {
                archive: self.archive(),
                what: name,
                why: "missing from the archive".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names() {
        let c = |s: &str| canonical(&s.parse().unwrap());
        assert_eq!(c("busybox"), "busybox:latest");
        assert_eq!(c("docker.io/library/busybox:1.36"), "busybox:1.36");
        assert_eq!(c("library/busybox"), "busybox:latest");
        assert_eq!(c("example/app:1.0"), "example/app:1.0");
        assert_eq!(c("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(repository("localhost:5000/app:1"), "localhost:5000/app");
        assert_eq!(repository("busybox:latest"), "busybox");
        assert_eq!(repository("a/b@sha256:00"), "a/b");
    }

    #[test]
    fn member_paths_normalise() {
        assert_eq!(normalise_member(b"./blobs//sha256/x"), "blobs/sha256/x");
        assert_eq!(normalise_member(b"a/../b"), "b");
        assert_eq!(normalise_member(b"../../etc/passwd"), "etc/passwd");
    }
}

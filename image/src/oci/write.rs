//! Writing OCI images, deterministically: a [`Tree`] of files becomes a
//! layer (a tar with sorted entries, fixed times and owners, gzip without
//! name or time), layers and a config become an image, and images go into
//! an OCI image layout ([`Layout`]) where each blob is stored once. Same
//! inputs, same bytes, same digests.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::layer::Compression;
use super::spec::{self, Descriptor, History, ImageConfig, Index, Manifest, RootFs, RunConfig};

/// Why an image could not be written.
#[derive(Debug, displaydoc::Display, thiserror::Error)]
pub enum WriteError {
    /// cannot {action} {path}: {source}
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// {path}: {why}
    Tree {
        /// The path.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// {0}
    Source(#[from] super::source::SourceError),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// In memory.
    Bytes(Vec<u8>),
    /// A host file, read when the layer is written.
    Host(PathBuf),
}

/// What a tree node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file.
    File(Data),
    /// A symbolic link.
    Symlink(String),
    /// A hard link to another path of the tree.
    Link(String),
}

/// One node with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// What it is.
    pub node: Node,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A filesystem tree to make a layer of. Paths are relative, `/`-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, TreeEntry>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `path` is in the tree.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_matches('/'))
    }

    /// Every path with its entry, sorted by path (parents included).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TreeEntry)> {
        self.entries.iter().map(|(p, e)| (p.as_str(), e))
    }

    /// Adds (or replaces) `path`, with root-owned 0755 parents as needed.
    pub fn insert(&mut self, path: &str, entry: TreeEntry) -> Result<(), WriteError> {
        let path = path.trim_matches('/');
        if path.is_empty()
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(WriteError::Tree {
                path: path.to_string(),
                why: "not a clean relative path".into(),
            });
        }
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            let parent = &path[..end];
            match self.entries.get(parent) {
                Some(TreeEntry {
                    node: Node::Dir, ..
                }) => {}
                Some(_) => {
                    return Err(WriteError::Tree {
                        path: path.to_string(),
                        why: format!("its parent {parent} is not a directory"),
                    });
                }
                None => {
                    self.entries.insert(
                        parent.to_string(),
                        TreeEntry {
                            node: Node::Dir,
                            mode: 0o755,
                            uid: 0,
                            gid: 0,
                        },
                    );
                }
            }
            end += 1;
        }
        self.entries.insert(path.to_string(), entry);
        Ok(())
    }

    /// Adds a root-owned directory.
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<(), WriteError> {
        self.insert(path, entry(Node::Dir, mode))
    }

    /// Adds a root-owned file.
    pub fn file(&mut self, path: &str, mode: u32, data: Data) -> Result<(), WriteError> {
        self.insert(path, entry(Node::File(data), mode))
    }

    /// Adds a symlink.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), WriteError> {
        self.insert(path, entry(Node::Symlink(target.to_string()), 0o777))
    }

    /// Adds the host directory `dir` under `prefix` ("" for the root):
    /// files, directories and symlinks with their modes; hard links kept;
    /// every owner root. Other file types are refused.
    pub fn add_host_dir(&mut self, dir: &Path, prefix: &str) -> Result<(), WriteError> {
        use std::os::unix::fs::MetadataExt;
        let mut seen: BTreeMap<(u64, u64), String> = BTreeMap::new();
        let mut stack = vec![(dir.to_path_buf(), prefix.trim_matches('/').to_string())];
        while let Some((host, at)) = stack.pop() {
            let mut names: Vec<_> = std::fs::read_dir(&host)
                .map_err(io_err("read directory", &host))?
                .collect::<Result<_, _>>()
                .map_err(io_err("read directory", &host))?;
            names.sort_by_key(|e| e.file_name());
            for e in names {
                let name = e.file_name();
                let name = name.to_str().ok_or_else(|| WriteError::Tree {
                    path: e.path().display().to_string(),
                    why: "not UTF-8".into(),
                })?;
                let path = if at.is_empty() {
                    name.to_string()
                } else {
                    format!("{at}/{name}")
                };
                let host_path = e.path();
                let meta =
                    std::fs::symlink_metadata(&host_path).map_err(io_err("stat", &host_path))?;
                let mode = meta.mode() & 0o7777;
                let ft = meta.file_type();
                if ft.is_dir() {
                    self.insert(&path, entry(Node::Dir, mode))?;
                    stack.push((host_path, path));
                } else if ft.is_symlink() {
                    let t =
                        std::fs::read_link(&host_path).map_err(io_err("read link", &host_path))?;
                    let t = t.to_str().ok_or_else(|| WriteError::Tree {
                        path: path.clone(),
                        why: "symlink target not UTF-8".into(),
                    })?;
                    self.insert(&path, entry(Node::Symlink(t.to_string()), 0o777))?;
                } else if ft.is_file() {
                    let key = (meta.dev(), meta.ino());
                    let node = match seen.get(&key) {
                        Some(first) if meta.nlink() > 1 => Node::Link(first.clone()),
                        _ => {
                            seen.insert(key, path.clone());
                            Node::File(Data::Host(host_path))
                        }
                    };
                    self.insert(&path, entry(node, mode))?;
                } else {
                    return Err(WriteError::Tree {
                        path,
                        why: "only files, directories and symlinks can be added".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Entries in tar order: parents before children, components sorted.
    fn sorted(&self) -> Vec<(&String, &TreeEntry)> {
        let mut v: Vec<_> = self.entries.iter().collect();
        v.sort_by(|a, b| tar_order(a.0, b.0));
        v
    }

    /// The regular file at `path`: its entry and data.
    fn regular(&self, path: &str) -> Option<(&TreeEntry, &Data)> {
        match self.entries.get(path) {
            Some(
                e @ TreeEntry {
                    node: Node::File(d),
                    ..
                },
            ) => Some((e, d)),
            _ => None,
        }
    }

    /// For each file that has hard links to it, the path of its group (the
    /// file and the links) that comes first in tar order. A tar hard link
    /// can only name a member before it, and the order a tree is filled in
    /// (a host directory walked depth first, say) need not be tar order.
    /// A link to anything but a regular file of the tree is an error.
    fn link_leaders<'a>(
        &'a self,
        sorted: &[(&'a String, &'a TreeEntry)],
    ) -> Result<BTreeMap<&'a str, &'a str>, WriteError> {
        let mut leaders: BTreeMap<&str, &str> = BTreeMap::new();
        for (path, e) in sorted {
            let Node::Link(target) = &e.node else {
                continue;
            };
            if self.regular(target).is_none() {
                return Err(WriteError::Tree {
                    path: (*path).clone(),
                    why: format!("a hard link to {target}, which is not a file of the tree"),
                });
            }
            // In tar order, the first link seen comes before the other
            // links; the file itself may come before it.
            let first = leaders.entry(target.as_str()).or_insert(path.as_str());
            if tar_order(target, first).is_lt() {
                *first = target.as_str();
            }
        }
        Ok(leaders)
    }

    /// The tree as a tar archive, every time `mtime`. Of each hard-link
    /// group, the member that comes first carries the file's data and
    /// metadata; the others are links to it.
    pub fn to_tar(&self, mtime: u64) -> Result<Vec<u8>, WriteError> {
        let mut out = Vec::new();
        let sorted = self.sorted();
        let leaders = self.link_leaders(&sorted)?;
        for (path, e) in &sorted {
            let (flag, link, file): (u8, &str, Option<(&TreeEntry, &Data)>) = match &e.node {
                Node::Dir => (b'5', "", None),
                Node::Symlink(t) => (b'2', t.as_str(), None),
                Node::Link(t) => match leaders.get(t.as_str()) {
                    Some(first) if *first == path.as_str() => (b'0', "", self.regular(t)),
                    Some(first) => (b'1', *first, None),
                    None => (b'1', t.as_str(), None),
                },
                Node::File(d) => match leaders.get(path.as_str()) {
                    Some(first) if *first != path.as_str() => (b'1', *first, None),
                    _ => (b'0', "", Some((*e, d))),
                },
            };
            let (e, data) = match file {
                Some((file, Data::Bytes(b))) => (file, Some(b.clone())),
                Some((file, Data::Host(p))) => {
                    let mut b = Vec::new();
                    std::fs::File::open(p)
                        .and_then(|mut f| f.read_to_end(&mut b))
                        .map_err(io_err("read", p))?;
                    (file, Some(b))
                }
                None => (*e, None),
            };
            let name = if matches!(e.node, Node::Dir) {
                format!("{path}/")
            } else {
                (*path).clone()
            };
            write_member(&mut out, &name, link, flag, e, data.as_deref(), mtime);
        }
        out.extend_from_slice(&[0u8; 1024]);
        Ok(out)
    }
}

/// Tar order: by path components, so a directory's entries follow it.
fn tar_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

fn entry(node: Node, mode: u32) -> TreeEntry {
    TreeEntry {
        node,
        mode,
        uid: 0,
        gid: 0,
    }
}

fn pad_to_block(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

fn write_header(
    out: &mut Vec<u8>,
    name: &[u8],
    link: &[u8],
    flag: u8,
    e: &TreeEntry,
    size: u64,
    mtime: u64,
) {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    h[100..108].copy_from_slice(format!("{:07o}\0", e.mode & 0o7777).as_bytes());
    h[108..116].copy_from_slice(format!("{:07o}\0", e.uid.min(0o7777777)).as_bytes());
    h[116..124].copy_from_slice(format!("{:07o}\0", e.gid.min(0o7777777)).as_bytes());
    h[124..136].copy_from_slice(format!("{:011o}\0", size.min(0o77777777777)).as_bytes());
    h[136..148].copy_from_slice(format!("{:011o}\0", mtime.min(0o77777777777)).as_bytes());
    h[156] = flag;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[329..337].copy_from_slice(b"0000000\0");
    h[337..345].copy_from_slice(b"0000000\0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = len.to_string().len() + rest;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn write_member(
    out: &mut Vec<u8>,
    name: &str,
    link: &str,
    flag: u8,
    e: &TreeEntry,
    data: Option<&[u8]>,
    mtime: u64,
) {
    let size = data.map_or(0, |d| d.len() as u64);
    let mut pax = Vec::new();
    if name.len() > 100 {
        pax.extend(pax_record("path", name.as_bytes()));
    }
    if link.len() > 100 {
        pax.extend(pax_record("linkpath", link.as_bytes()));
    }
    if size > 0o77777777777 {
        pax.extend(pax_record("size", size.to_string().as_bytes()));
    }
    if !pax.is_empty() {
        let meta = entry(Node::File(Data::Bytes(Vec::new())), 0o644);
        write_header(out, b"PaxHeader", b"", b'x', &meta, pax.len() as u64, mtime);
        out.extend_from_slice(&pax);
        pad_to_block(out);
    }
    write_header(out, name.as_bytes(), link.as_bytes(), flag, e, size, mtime);
    if let Some(d) = data {
        out.extend_from_slice(d);
        pad_to_block(out);
    }
}

/// A layer ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// The blob, as stored.
    pub bytes: Vec<u8>,
    /// Its descriptor.
    pub descriptor: Descriptor,
    /// The uncompressed tar's digest.
    pub diff_id: Digest,
}

/// Compresses a tar into a layer blob.
pub fn layer_blob(tar: Vec<u8>, compression: Compression) -> Result<LayerBlob, WriteError> {
    let diff_id = Digest::of(&tar);
    let enc_err = |source| WriteError::Io {
        action: "compress",
        path: PathBuf::from("layer"),
        source,
    };
    let (bytes, media) = match compression {
        Compression::None => (tar, spec::MEDIA_LAYER),
        Compression::Gzip => {
            // No name, no time: the same tar gives the same bytes.
            let mut gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::new(6));
            gz.write_all(&tar).map_err(enc_err)?;
            (gz.finish().map_err(enc_err)?, spec::MEDIA_LAYER_GZIP)
        }
        Compression::Zstd => (
            zstd::encode_all(&tar[..], 3).map_err(enc_err)?,
            spec::MEDIA_LAYER_ZSTD,
        ),
    };
    Ok(LayerBlob {
        descriptor: Descriptor {
            media_type: media.to_string(),
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
        },
        bytes,
        diff_id,
    })
}

/// RFC 3339 for seconds since the epoch (UTC), without a date library.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An image being assembled: its layers (bottom first) and defaults.
#[derive(Debug, Clone, Default)]
pub struct ImageBuild {
    /// Layers, bottom first, with what made each (for `history`).
    pub layers: Vec<(LayerBlob, String)>,
    /// The container defaults.
    pub config: RunConfig,
    /// The creation time, seconds since the epoch.
    pub created: u64,
}

/// A finished image: its blobs and the manifest's descriptor.
#[derive(Debug, Clone)]
pub struct Built {
    /// The manifest's descriptor.
    pub manifest: Descriptor,
    /// Every blob: digest to bytes (config, manifest, layers).
    pub blobs: BTreeMap<Digest, Vec<u8>>,
    /// The config's digest (the image ID).
    pub config: Digest,
}

impl ImageBuild {
    /// Makes the config and manifest.
    pub fn finish(&self) -> Result<Built, WriteError> {
        let created = rfc3339(self.created);
        let config = ImageConfig {
            created: Some(created.clone()),
            architecture: "amd64".into(),
            os: "linux".into(),
            config: Some(self.config.clone()),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: self.layers.iter().map(|(l, _)| l.diff_id.clone()).collect(),
            },
            history: self
                .layers
                .iter()
                .map(|(_, by)| History {
                    created: Some(created.clone()),
                    created_by: Some(by.clone()),
                    empty_layer: false,
                })
                .collect(),
        };
        let config_bytes = json(&config);
        let config_desc = descriptor(spec::MEDIA_CONFIG, &config_bytes);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(spec::MEDIA_MANIFEST.into()),
            config: config_desc.clone(),
            layers: self
                .layers
                .iter()
                .map(|(l, _)| l.descriptor.clone())
                .collect(),
            annotations: BTreeMap::new(),
        };
        let manifest_bytes = json(&manifest);
        let manifest_desc = descriptor(spec::MEDIA_MANIFEST, &manifest_bytes);
        let mut blobs = BTreeMap::new();
        for (l, _) in &self.layers {
            blobs.insert(l.descriptor.digest.clone(), l.bytes.clone());
        }
        blobs.insert(config_desc.digest.clone(), config_bytes);
        blobs.insert(manifest_desc.digest.clone(), manifest_bytes);
        Ok(Built {
            manifest: manifest_desc,
            blobs,
            config: config_desc.digest,
        })
    }
}

/// A document's JSON bytes (serde_json cannot fail on these types).
fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn descriptor(media: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media.to_string(),
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        urls: Vec::new(),
        annotations: BTreeMap::new(),
        platform: None,
    }
}

/// An OCI image layout directory being written.
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    index: Index,
}

impl Layout {
    /// Opens the layout in `dir`, creating it if needed; images already in
    /// it stay.
    pub fn open(dir: &Path) -> Result<Layout, WriteError> {
        std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(io_err("create", dir))?;
        let index_path = dir.join("index.json");
        let index = match std::fs::read(&index_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| WriteError::Tree {
                path: index_path.display().to_string(),
                why: e.to_string(),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Index {
                schema_version: 2,
                media_type: Some(spec::MEDIA_INDEX.into()),
                manifests: Vec::new(),
                annotations: BTreeMap::new(),
            },
            Err(e) => return Err(io_err("read", &index_path)(e)),
        };
        Ok(Layout {
            dir: dir.to_path_buf(),
            index,
        })
    }

    /// Writes a blob unless it is there already.
    pub fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), WriteError> {
        let path = self.dir.join("blobs/sha256").join(digest.hex());
        if path.is_file() {
            return Ok(());
        }
        write_atomic(&path, bytes)
    }

    /// Adds an image under `reference` (written as the
    /// `org.opencontainers.image.ref.name` annotation, a full reference as
    /// skopeo writes it), replacing an image of the same name.
    pub fn add(&mut self, reference: &str, image: &Built) -> Result<(), WriteError> {
        for (d, b) in &image.blobs {
            self.put_blob(d, b)?;
        }
        let mut desc = image.manifest.clone();
        desc.annotations
            .insert(spec::ANNOTATION_REF_NAME.into(), reference.to_string());
        self.index.manifests.retain(|m| {
            m.annotations
                .get(spec::ANNOTATION_REF_NAME)
                .map(String::as_str)
                != Some(reference)
        });
        self.index.manifests.push(desc);
        self.index.manifests.sort_by(|a, b| {
            a.annotations
                .get(spec::ANNOTATION_REF_NAME)
                .cmp(&b.annotations.get(spec::ANNOTATION_REF_NAME))
        });
        self.save()
    }

    fn save(&self) -> Result<(), WriteError> {
        write_atomic(
            &self.dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let bytes = serde_json::to_vec(&self.index).unwrap_or_default();
        write_atomic(&self.dir.join("index.json"), &bytes)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err("create a temporary file in", dir))?;
    tmp.write_all(bytes).map_err(io_err("write", path))?;
    crate::persist(tmp, path).map_err(io_err("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Archive, Limits, Source};

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    fn build(content: &[u8]) -> Built {
        let mut t = Tree::new();
        t.file("etc/motd", 0o644, Data::Bytes(content.to_vec()))
            .unwrap();
        t.symlink("bin/sh", "busybox").unwrap();
        let long = format!("{}/f", "d".repeat(120));
        t.file(&long, 0o600, Data::Bytes(b"x".to_vec())).unwrap();
        let l = layer_blob(t.to_tar(0).unwrap(), Compression::Gzip).unwrap();
        ImageBuild {
            layers: vec![(l, "test".into())],
            config: RunConfig {
                cmd: Some(vec!["sh".into()]),
                ..RunConfig::default()
            },
            created: 0,
        }
        .finish()
        .unwrap()
    }

    /// The layer's entries in order, with each regular file's data.
    fn members(tar: Vec<u8>) -> Vec<(String, crate::oci::layer::Kind, u32, Vec<u8>)> {
        let len = tar.len() as u64;
        let mut l =
            crate::oci::Layer::open(Box::new(&tar[..]), Some(len), Default::default()).unwrap();
        let mut out = Vec::new();
        while let Some(e) = l.next_entry().unwrap() {
            let mut data = Vec::new();
            if matches!(e.kind, crate::oci::layer::Kind::File { .. }) {
                l.read_to_end(&mut data).unwrap();
            }
            out.push((e.path.display().to_string(), e.kind, e.mode, data));
        }
        out
    }

    #[test]
    fn a_hard_link_group_starts_with_its_first_member_in_tar_order() {
        use crate::oci::layer::Kind;
        // The file sorts after both links to it: "a/l" and "m" < "z".
        let mut t = Tree::new();
        t.file("z", 0o640, Data::Bytes(b"shared".to_vec())).unwrap();
        t.insert("m", entry(Node::Link("z".into()), 0o640)).unwrap();
        t.insert("a/l", entry(Node::Link("z".into()), 0o640))
            .unwrap();
        t.file("b", 0o644, Data::Bytes(b"alone".to_vec())).unwrap();
        let got = members(t.to_tar(0).unwrap());
        let want = [
            ("a", Kind::Dir, 0o755, &b""[..]),
            ("a/l", Kind::File { size: 6 }, 0o640, b"shared"),
            ("b", Kind::File { size: 5 }, 0o644, b"alone"),
            ("m", Kind::Link("a/l".into()), 0o640, b""),
            ("z", Kind::Link("a/l".into()), 0o640, b""),
        ];
        let want: Vec<_> = want
            .into_iter()
            .map(|(p, k, m, d)| (p.to_string(), k, m, d.to_vec()))
            .collect();
        assert_eq!(got, want);

        // The file first: written as before, the links name it.
        let mut t = Tree::new();
        t.file("a", 0o600, Data::Bytes(b"x".to_vec())).unwrap();
        t.insert("b", entry(Node::Link("a".into()), 0o600)).unwrap();
        let got = members(t.to_tar(0).unwrap());
        assert_eq!(got[0].1, Kind::File { size: 1 });
        assert_eq!(got[1].1, Kind::Link("a".into()));

        // A link to something that is not a file of the tree is refused.
        let mut t = Tree::new();
        t.dir("d", 0o755).unwrap();
        t.insert("l", entry(Node::Link("d".into()), 0o644)).unwrap();
        assert!(t.to_tar(0).is_err());
        let mut t = Tree::new();
        t.insert("l", entry(Node::Link("nowhere".into()), 0o644))
            .unwrap();
        assert!(t.to_tar(0).is_err());
    }

    #[test]
    fn a_host_directory_walked_out_of_tar_order_keeps_its_hard_links() {
        use std::os::unix::fs::PermissionsExt;
        // The walk meets "z" (at the top) before "a/l", which tar order
        // puts first.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("z"), b"shared").unwrap();
        std::fs::set_permissions(dir.path().join("z"), std::fs::Permissions::from_mode(0o604))
            .unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::hard_link(dir.path().join("z"), dir.path().join("a/l")).unwrap();
        let mut t = Tree::new();
        t.add_host_dir(dir.path(), "").unwrap();
        let got = members(t.to_tar(0).unwrap());
        let kinds: Vec<_> = got.iter().map(|m| (m.0.as_str(), &m.1, m.2)).collect();
        assert_eq!(
            kinds[1..],
            [
                ("a/l", &crate::oci::layer::Kind::File { size: 6 }, 0o604),
                ("z", &crate::oci::layer::Kind::Link("a/l".into()), 0o604),
            ]
        );
        assert_eq!(got[1].3, b"shared");
    }

    #[test]
    fn deterministic_and_readable() {
        let a = build(b"hello");
        let b = build(b"hello");
        assert_eq!(a.manifest.digest, b.manifest.digest);
        assert_ne!(a.manifest.digest, build(b"other").manifest.digest);

        let dir = tempfile::tempdir().unwrap();
        let mut layout = Layout::open(dir.path()).unwrap();
        layout.add("example/app:1.0", &a).unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let images = archive.images(&Limits::default()).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].names, ["example/app:1.0"]);
        assert_eq!(images[0].manifest.as_ref(), Some(&a.manifest.digest));
        let mut l = crate::oci::Layer::open(
            archive.open_layer(&images[0].layers[0]).unwrap(),
            images[0].layers[0].size,
            Default::default(),
        )
        .unwrap();
        let mut paths = Vec::new();
        while let Some(e) = l.next_entry().unwrap() {
            paths.push(e.path.display().to_string());
        }
        l.finish(
            images[0].layers[0].digest.as_ref(),
            Some(&images[0].layers[0].diff_id),
        )
        .unwrap();
        assert_eq!(paths[0], "bin");
        assert!(paths.contains(&format!("{}/f", "d".repeat(120))));
    }
}

//! Container images as berth finds them: each image is an ordered list of
//! read-only directories (overlay lower layers, top first) and its config
//! (the OCI image config's defaults: Entrypoint, Cmd, Env, WorkingDir, User).
//!
//! For now the store is what the image builder embedded in the initramfs:
//! `/usr/lib/berth/images/<name>/<tag>/{rootfs/,config.json}`, where the name
//! drops Docker Hub's `docker.io/` and `library/` prefixes. The layer store
//! of OCI images replaces it behind the same [`Store::resolve`].

use std::path::{Path, PathBuf};

use berth_config::ImageRef;
use serde::Deserialize;

/// Where the image builder puts images.
pub const BUILTIN: &str = "/usr/lib/berth/images";

/// Why an image cannot be used.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// image {image} not found (looked in {path})
    NotFound {
        /// The reference.
        image: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// image {image}: cannot read its config {path}: {detail}
    Config {
        /// The reference.
        image: String,
        /// The config file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// The defaults an image gives its containers (OCI image config names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
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

/// The images berth can run.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(BUILTIN)
    }
}

/// The directory of a reference under the store: `<name>/<tag>`, with
/// Docker Hub's implicit prefixes dropped (`docker.io/library/busybox`,
/// `library/busybox` and `busybox` are one image).
pub fn dir_name(r: &ImageRef) -> PathBuf {
    let name = r.name();
    let name = name.strip_prefix("docker.io/").unwrap_or(&name);
    let name = name.strip_prefix("library/").unwrap_or(name);
    Path::new(name).join(r.tag.as_deref().unwrap_or("latest"))
}

impl Store {
    /// Every image, for `GET /v1/images`.
    pub fn list(&self) -> serde_json::Value {
        let mut out = Vec::new();
        for name in walk_dirs(&self.root, 4) {
            let rootfs = name.join("rootfs");
            if rootfs.is_dir() {
                let rel = name.strip_prefix(&self.root).unwrap_or(&name);
                let mut parts: Vec<String> = rel
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                let tag = parts.pop().unwrap_or_default();
                out.push(serde_json::json!({
                    "reference": format!("{}:{tag}", parts.join("/")),
                    "layers": 1,
                    "size_bytes": du(&rootfs),
                }));
            }
        }
        serde_json::Value::Array(out)
    }

    /// A store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    /// Finds an image.
    pub fn resolve(&self, r: &ImageRef) -> Result<Image, Error> {
        let dir = self.root.join(dir_name(r));
        let rootfs = dir.join("rootfs");
        if !rootfs.is_dir() {
            return Err(Error::NotFound {
                image: r.to_string(),
                path: rootfs,
            });
        }
        let cfg_path = dir.join("config.json");
        let config = match std::fs::read(&cfg_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Config {
                image: r.to_string(),
                path: cfg_path.clone(),
                detail: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => {
                return Err(Error::Config {
                    image: r.to_string(),
                    path: cfg_path,
                    detail: e.to_string(),
                });
            }
        };
        Ok(Image {
            reference: r.to_string(),
            lowers: vec![rootfs],
            config,
        })
    }
}

/// Directories under `root`, down to `depth` levels.
fn walk_dirs(root: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if depth == 0 {
        return out;
    }
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == "rootfs") {
                continue;
            }
            out.push(p.clone());
            out.extend(walk_dirs(&p, depth - 1));
        }
    }
    out
}

/// Bytes used by the regular files under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => total += du(&e.path()),
            Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
            _ => {}
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> ImageRef {
        s.parse().unwrap()
    }

    #[test]
    fn hub_prefixes_are_one_name() {
        for s in [
            "busybox",
            "busybox:latest",
            "library/busybox",
            "docker.io/library/busybox:latest",
        ] {
            assert_eq!(dir_name(&r(s)), Path::new("busybox/latest"), "{s}");
        }
        assert_eq!(
            dir_name(&r("ghcr.io/org/app:1.2")),
            Path::new("ghcr.io/org/app/1.2")
        );
    }

    #[test]
    fn resolves_rootfs_and_config() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("busybox/latest");
        std::fs::create_dir_all(img.join("rootfs")).unwrap();
        std::fs::write(
            img.join("config.json"),
            r#"{"Cmd":["sh"],"Env":["PATH=/bin"],"WorkingDir":"/"}"#,
        )
        .unwrap();
        let got = Store::new(d.path()).resolve(&r("busybox")).unwrap();
        assert_eq!(got.lowers, [img.join("rootfs")]);
        assert_eq!(got.config.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(got.config.env, ["PATH=/bin"]);
        let e = Store::new(d.path()).resolve(&r("nginx:1")).unwrap_err();
        assert!(e.to_string().starts_with("image nginx:1 not found"), "{e}");
    }
}

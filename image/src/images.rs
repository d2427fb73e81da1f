//! Container images carried in the initramfs.
//!
//! Each image a manifest names is unpacked under
//! `/usr/lib/berth/images/<name>/<tag>/`:
//! ```text
//! rootfs/         the root filesystem, ready to be an overlay's lower layer
//! config.json     its defaults, with OCI image-config field names:
//!                 {"Cmd":[...],"Env":[...],"WorkingDir":"/"}
//! ```
//! `<name>` is the repository path without Docker Hub's implicit
//! `docker.io/` and `library/` prefixes, and `<tag>` defaults to `latest`:
//! `busybox`, `busybox:latest` and `docker.io/library/busybox:latest` all
//! live in `busybox/latest/`. berth finds an image by the same rule.
//!
//! Today the only source is built in: `busybox:latest`, made from the
//! host's statically linked Debian busybox. A later source (OCI layers from
//! a registry or a local layout) is another arm of [`embed`] that fills
//! `rootfs/` and returns an [`ImageConfig`].

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::cpio::{Archive, CpioError, Data};
use crate::elf::{ElfError, check_static_executable};

/// Where images live in the initramfs.
pub const IMAGES_DIR: &str = "usr/lib/berth/images";

/// Why an image could not be embedded.
#[derive(Debug, displaydoc::Display, thiserror::Error)]
pub enum ImageError {
    /// container {container:?} uses image {image:?}, which berth cannot embed yet (the only image built in is busybox:latest)
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
}

/// Where built-in images take their files from.
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

/// An image reference reduced to where berth stores the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    /// Repository path without Docker Hub's implicit prefixes: `busybox`.
    pub name: String,
    /// The tag: `latest` unless given. A digest is kept as `sha256:...`.
    pub tag: String,
}

impl Reference {
    /// Parses a reference as Docker does (`[registry/]path[:tag][@digest]`).
    pub fn parse(reference: &str) -> Reference {
        let (rest, digest) = match reference.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (reference, None),
        };
        // A ':' after the last '/' starts the tag (one before is a port).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        let name = name.strip_prefix("docker.io/").unwrap_or(name);
        let name = name.strip_prefix("index.docker.io/").unwrap_or(name);
        let name = name.strip_prefix("library/").unwrap_or(name);
        Reference {
            name: name.to_string(),
            tag: digest.or(tag).unwrap_or("latest").to_string(),
        }
    }

    /// The image's directory in the initramfs: `usr/lib/berth/images/<name>/<tag>`.
    pub fn dir(&self) -> String {
        format!("{IMAGES_DIR}/{}/{}", self.name, self.tag)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// An image's defaults, with OCI image-config field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// The default command.
    pub cmd: Vec<String>,
    /// The default environment, `NAME=value`.
    pub env: Vec<String>,
    /// The default working directory.
    pub working_dir: String,
}

/// `PATH` as container images usually set it.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Adds the image `reference`, which `container` uses, to `archive` (once:
/// an image already there is left alone). Returns where it went.
pub fn embed(
    archive: &mut Archive,
    container: &str,
    reference: &str,
    sources: &Sources,
) -> Result<Reference, ImageError> {
    let r = Reference::parse(reference);
    let dir = r.dir();
    if archive.contains(&dir) {
        return Ok(r);
    }
    let config = match (r.name.as_str(), r.tag.as_str()) {
        ("busybox", "latest") => busybox(archive, &format!("{dir}/rootfs"), &sources.busybox)
            .map_err(|e| e.in_image(&r))?,
        _ => {
            return Err(ImageError::Unknown {
                container: container.to_string(),
                image: reference.to_string(),
            });
        }
    };
    let mut json = serde_json::to_vec(&config).unwrap_or_default();
    json.push(b'\n');
    archive
        .add_file(&format!("{dir}/config.json"), 0o644, Data::Bytes(json))
        .map_err(|source| ImageError::Archive {
            image: r.to_string(),
            source,
        })?;
    Ok(r)
}

impl ImageError {
    fn in_image(self, r: &Reference) -> Self {
        match self {
            ImageError::Archive { source, .. } => ImageError::Archive {
                image: r.to_string(),
                source,
            },
            e => e,
        }
    }
}

impl From<CpioError> for ImageError {
    fn from(source: CpioError) -> Self {
        ImageError::Archive {
            image: String::new(),
            source,
        }
    }
}

/// The target of a relative symlink at `link` (a path relative to the
/// root) that points to the root-relative `target`.
fn relative_target(link: &str, target: &str) -> String {
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

/// Fills `rootfs` with the busybox image: the static binary, a symlink per
/// applet, minimal `/etc` files and the usual empty directories.
fn busybox(archive: &mut Archive, rootfs: &str, busybox: &Path) -> Result<ImageConfig, ImageError> {
    let data = std::fs::read(busybox).map_err(|source| ImageError::Read {
        path: busybox.to_path_buf(),
        source,
    })?;
    check_static_executable(&data).map_err(|source| ImageError::Busybox {
        path: busybox.to_path_buf(),
        source,
    })?;
    archive.add_dir(rootfs, 0o755)?;
    archive.add_file(&format!("{rootfs}/bin/busybox"), 0o755, Data::Bytes(data))?;
    for applet in applets(busybox)? {
        if applet == "bin/busybox" {
            continue;
        }
        let link = format!("{rootfs}/{applet}");
        // Applet paths come from the binary: a bad one is an error, not a
        // path outside the rootfs (the archive refuses `..`).
        archive.add_symlink(&link, &relative_target(&applet, "bin/busybox"))?;
    }
    let text = |s: &str| Data::Bytes(s.as_bytes().to_vec());
    archive.add_file(
        &format!("{rootfs}/etc/passwd"),
        0o644,
        text(concat!(
            "root:x:0:0:root:/root:/bin/sh\n",
            "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n",
            "bin:x:2:2:bin:/bin:/bin/false\n",
            "sys:x:3:3:sys:/dev:/bin/false\n",
            "nobody:x:65534:65534:nobody:/home:/bin/false\n",
        )),
    )?;
    archive.add_file(
        &format!("{rootfs}/etc/group"),
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
        archive.add_file(&format!("{rootfs}/etc/{f}"), 0o644, text(""))?;
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
        archive.add_dir(&format!("{rootfs}/{d}"), mode)?;
    }
    Ok(ImageConfig {
        cmd: vec!["sh".into()],
        env: vec![DEFAULT_PATH.into()],
        working_dir: "/".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::Kind;

    #[test]
    fn references_map_to_directories() {
        for r in [
            "busybox",
            "busybox:latest",
            "library/busybox",
            "docker.io/library/busybox:latest",
            "index.docker.io/library/busybox",
        ] {
            assert_eq!(
                Reference::parse(r).dir(),
                "usr/lib/berth/images/busybox/latest",
                "{r}"
            );
        }
        let r = Reference::parse("registry.local:5000/team/app:v1.2");
        assert_eq!(
            (r.name.as_str(), r.tag.as_str()),
            ("registry.local:5000/team/app", "v1.2")
        );
        let r = Reference::parse("registry.local:5000/app");
        assert_eq!(r.tag, "latest");
        let r = Reference::parse("alpine@sha256:abcd");
        assert_eq!((r.name.as_str(), r.tag.as_str()), ("alpine", "sha256:abcd"));
    }

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
    fn config_json_uses_oci_field_names() {
        let c = ImageConfig {
            cmd: vec!["sh".into()],
            env: vec![DEFAULT_PATH.into()],
            working_dir: "/".into(),
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"Cmd":["sh"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/"}"#
        );
    }

    #[test]
    fn unknown_images_name_the_container() {
        let mut a = Archive::new();
        let err = embed(&mut a, "web", "nginx:1.25", &Sources::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "container \"web\" uses image \"nginx:1.25\", which berth cannot embed yet \
             (the only image built in is busybox:latest)"
        );
        assert!(a.is_empty());
    }

    #[test]
    fn refuses_a_dynamic_busybox() {
        let mut a = Archive::new();
        let sources = Sources {
            busybox: PathBuf::from("/bin/ls"),
        };
        let err = embed(&mut a, "c", "busybox", &sources).unwrap_err();
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

    /// The real busybox-static (scripts/install-deps installs it).
    #[test]
    fn busybox_rootfs_layout() {
        let sources = Sources::default();
        let data =
            std::fs::read(&sources.busybox).expect("no /bin/busybox: run scripts/install-deps");
        check_static_executable(&data).expect("/bin/busybox is not static: install busybox-static");
        let mut a = Archive::new();
        embed(&mut a, "one", "busybox", &sources).unwrap();
        let n = a.len();
        // A second container with the same image adds nothing.
        embed(&mut a, "two", "docker.io/library/busybox:latest", &sources).unwrap();
        assert_eq!(a.len(), n);

        let root = "usr/lib/berth/images/busybox/latest/rootfs";
        let entries: std::collections::BTreeMap<&str, &crate::cpio::Entry> = a.iter().collect();
        let get = |p: &str| {
            *entries
                .get(format!("{root}/{p}").as_str())
                .unwrap_or_else(|| panic!("{p}"))
        };
        assert!(matches!(get("bin/busybox").kind, Kind::File(_)));
        assert_eq!(get("bin/busybox").mode, 0o755);
        assert!(matches!(&get("bin/sh").kind, Kind::Symlink(t) if t == "busybox"));
        assert!(matches!(&get("usr/bin/wget").kind, Kind::Symlink(t) if t == "../../bin/busybox"));
        assert!(matches!(&get("sbin/init").kind, Kind::Symlink(t) if t == "../bin/busybox"));
        assert_eq!(get("tmp").mode, 0o1777);
        assert_eq!(get("var/tmp").mode, 0o1777);
        for d in ["proc", "sys", "dev", "run", "root", "home"] {
            assert!(matches!(get(d).kind, Kind::Dir), "{d}");
        }
        let Kind::File(Data::Bytes(passwd)) = &get("etc/passwd").kind else {
            panic!()
        };
        let passwd = String::from_utf8_lossy(passwd);
        assert!(passwd.starts_with("root:x:0:0:"));
        assert!(passwd.contains("\nnobody:x:65534:65534:"));
        for f in ["etc/group", "etc/hosts", "etc/resolv.conf", "etc/hostname"] {
            assert!(matches!(get(f).kind, Kind::File(_)), "{f}");
        }
        let config = entries["usr/lib/berth/images/busybox/latest/config.json"];
        let Kind::File(Data::Bytes(json)) = &config.kind else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert_eq!(v["Cmd"], serde_json::json!(["sh"]));
        assert_eq!(v["WorkingDir"], "/");
        // Every applet symlink resolves to bin/busybox.
        let links = entries
            .iter()
            .filter(|(p, e)| p.starts_with(root) && matches!(e.kind, Kind::Symlink(_)))
            .count();
        assert!(links > 200, "only {links} applet links");
        for (p, e) in &entries {
            if let Kind::Symlink(t) = &e.kind {
                let dir = Path::new(p).parent().unwrap();
                let mut resolved = Vec::new();
                for c in dir.join(t).components() {
                    match c {
                        std::path::Component::ParentDir => {
                            resolved.pop();
                        }
                        c => resolved.push(c.as_os_str().to_string_lossy().into_owned()),
                    }
                }
                assert_eq!(
                    resolved.join("/"),
                    format!("{root}/bin/busybox"),
                    "{p} -> {t}"
                );
            }
        }
    }
}

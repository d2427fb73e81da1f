//! `berth-image oci`: OCI images made by the builder itself, from
//! berth's busybox, from host directories, or from Debian packages (a
//! dynamically linked program gets the shared libraries it needs, found
//! from its ELF `DT_NEEDED` entries). One layer per `--busybox`, `--dir`
//! or `--deb`, in order; the same layer in two images is one blob in the
//! layout. Deterministic: same inputs and `SOURCE_DATE_EPOCH`, same
//! digests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::elf::Elf;
use crate::images::{DEFAULT_PATH, ImageError, Sources, busybox_tree};
use crate::oci::layer::Compression;
use crate::oci::spec::{HealthConfig, RunConfig};
use crate::oci::write::{self, Data, ImageBuild, Layout, Tree};

/// Where one layer's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerFrom {
    /// berth's busybox image.
    Busybox,
    /// A host directory (owners become root).
    Dir(PathBuf),
    /// A Debian package, with the shared libraries its programs need.
    Deb(String),
}

/// What `berth-image oci` builds.
#[derive(Debug, Clone)]
pub struct OciOptions {
    /// The layout to write into (created or extended).
    pub out: PathBuf,
    /// The image's reference in the layout (`example/app:1.0`).
    pub reference: String,
    /// Layers, bottom first.
    pub layers: Vec<LayerFrom>,
    /// Container defaults.
    pub config: RunConfig,
    /// Layer compression.
    pub compression: Compression,
    /// Timestamps (seconds since the epoch).
    pub created: u64,
    /// The busybox to use.
    pub sources: Sources,
    /// berth's cache (Debian packages are kept in `<cache>/debs`).
    pub cache: PathBuf,
}

/// Builds the image and adds it to the layout. Returns the manifest digest.
pub fn build(opts: &OciOptions) -> Result<String, ImageError> {
    let mut layers = Vec::new();
    for from in &opts.layers {
        let (tree, by) = match from {
            LayerFrom::Busybox => (
                busybox_tree(&opts.sources.busybox)?,
                "busybox-static".to_string(),
            ),
            LayerFrom::Dir(d) => {
                let mut t = Tree::new();
                t.add_host_dir(d, "")?;
                (
                    t,
                    format!(
                        "directory {}",
                        d.file_name().unwrap_or_default().to_string_lossy()
                    ),
                )
            }
            LayerFrom::Deb(pkg) => (deb_tree(pkg, &opts.cache)?, format!("Debian package {pkg}")),
        };
        let tar = tree.to_tar(opts.created)?;
        layers.push((
            write::layer_blob(tar, opts.compression)?,
            format!("berth-image: {by}"),
        ));
    }
    let built = ImageBuild {
        layers,
        config: opts.config.clone(),
        created: opts.created,
    }
    .finish()?;
    let mut layout = Layout::open(&opts.out)?;
    layout.add(&opts.reference, &built)?;
    Ok(built.manifest.digest.to_string())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), ImageError> {
    let out = cmd.output().map_err(|source| ImageError::Read {
        path: PathBuf::from(what),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ImageError::Input {
            path: PathBuf::from(what),
            why: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// Downloads (once, into the cache) and unpacks a Debian package; returns
/// its tree.
pub fn fetch_deb(pkg: &str, cache: &Path) -> Result<PathBuf, ImageError> {
    if pkg.is_empty()
        || !pkg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.:=~".contains(c))
    {
        return Err(ImageError::Input {
            path: PathBuf::from(pkg),
            why: "not a Debian package name".into(),
        });
    }
    let dir = cache.join("debs").join(pkg.replace([':', '='], "_"));
    let tree = dir.join("tree");
    if tree.is_dir() {
        return Ok(tree);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Read { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let tmp = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(&dir)
        .map_err(io(&dir))?;
    let download = || {
        let mut c = Command::new("apt-get");
        c.args(["download", "-q", pkg]).current_dir(tmp.path());
        c
    };
    if run(&mut download(), &format!("apt-get download {pkg}")).is_err() {
        run(
            Command::new("apt-get").args(["update", "-qq"]),
            "apt-get update",
        )?;
        run(&mut download(), &format!("apt-get download {pkg}"))?;
    }
    let deb = std::fs::read_dir(tmp.path())
        .map_err(io(tmp.path()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| ImageError::Input {
            path: PathBuf::from(pkg),
            why: "apt-get download left no .deb".into(),
        })?;
    let unpacked = tmp.path().join("tree");
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
        "dpkg-deb -x",
    )?;
    std::fs::rename(&unpacked, &tree).map_err(io(&tree))?;
    Ok(tree)
}

/// Where shared libraries are looked for on the host (Debian's multiarch
/// directories first).
const LIB_DIRS: [&str; 4] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib",
];

/// The `DT_NEEDED` names and the interpreter of an ELF file, if it is one.
fn needed(data: &[u8]) -> Option<(Vec<String>, Option<String>)> {
    let elf = Elf::parse(data).ok()?;
    let interp = elf.section(".interp").ok().flatten().map(|b| {
        String::from_utf8_lossy(b)
            .trim_end_matches('\0')
            .to_string()
    });
    let dynamic = elf.section(".dynamic").ok().flatten()?;
    let dynstr = elf.section(".dynstr").ok().flatten()?;
    let mut out = Vec::new();
    for chunk in dynamic.chunks_exact(16) {
        let tag = i64::from_le_bytes(chunk[..8].try_into().ok()?);
        let val = u64::from_le_bytes(chunk[8..].try_into().ok()?);
        if tag == 0 {
            break;
        }
        if tag == 1 {
            let s = dynstr.get(usize::try_from(val).ok()?..)?;
            let end = s.iter().position(|b| *b == 0)?;
            out.push(String::from_utf8_lossy(&s[..end]).into_owned());
        }
    }
    Some((out, interp))
}

/// A Debian package's files, plus the shared libraries (and the dynamic
/// loader) its ELF files need, from the host's library directories.
pub fn deb_tree(pkg: &str, cache: &Path) -> Result<Tree, ImageError> {
    let root = fetch_deb(pkg, cache)?;
    let mut t = Tree::new();
    t.add_host_dir(&root, "")?;
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut interps: BTreeSet<String> = BTreeSet::new();
    let mut queue: Vec<PathBuf> = Vec::new();
    walk_files(&root, &mut queue);
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    while let Some(f) = queue.pop() {
        let Ok(data) = std::fs::read(&f) else {
            continue;
        };
        let Some((libs, interp)) = needed(&data) else {
            continue;
        };
        interps.extend(interp);
        for lib in libs {
            if !wanted.insert(lib.clone()) {
                continue;
            }
            let host = LIB_DIRS
                .iter()
                .map(|d| Path::new(d).join(&lib))
                .find(|p| p.is_file())
                .ok_or_else(|| ImageError::Input {
                    path: f.clone(),
                    why: format!("needs {lib}, which is not in {}", LIB_DIRS.join(", ")),
                })?;
            let real = std::fs::canonicalize(&host).map_err(|source| ImageError::Read {
                path: host.clone(),
                source,
            })?;
            queue.push(real.clone());
            found.insert(lib, real);
        }
    }
    for (lib, host) in found {
        let at = format!("lib/x86_64-linux-gnu/{lib}");
        if !t.contains(&at) {
            t.file(&at, 0o755, Data::Host(host))?;
        }
    }
    for interp in interps {
        let at = interp.trim_start_matches('/').to_string();
        if t.contains(&at) {
            continue;
        }
        let host = std::fs::canonicalize(&interp).map_err(|source| ImageError::Read {
            path: PathBuf::from(&interp),
            source,
        })?;
        t.file(&at, 0o755, Data::Host(host))?;
    }
    Ok(t)
}

fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            walk_files(&e.path(), out);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

/// Parses a `--healthcheck` value: `CMD-SHELL:command` or `CMD:arg,arg`.
pub fn parse_healthcheck(s: &str, interval: Option<u64>) -> Option<HealthConfig> {
    let test = match s.split_once(':') {
        Some(("CMD-SHELL", cmd)) => vec!["CMD-SHELL".to_string(), cmd.to_string()],
        Some(("CMD", args)) => std::iter::once("CMD".to_string())
            .chain(args.split(',').map(str::to_string))
            .collect(),
        _ if s == "NONE" => vec!["NONE".to_string()],
        _ => return None,
    };
    Some(HealthConfig {
        test,
        interval: interval.unwrap_or(0),
        ..HealthConfig::default()
    })
}

/// The config the CLI starts from: busybox's PATH.
pub fn default_config() -> RunConfig {
    RunConfig {
        env: Some(vec![DEFAULT_PATH.into()]),
        ..RunConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_needed_libraries_of_a_dynamic_program() {
        let data = std::fs::read("/bin/ls").unwrap();
        let (libs, interp) = needed(&data).unwrap();
        assert!(libs.iter().any(|l| l.starts_with("libc.so")), "{libs:?}");
        assert_eq!(interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        let busybox = std::fs::read("/bin/busybox").unwrap();
        assert!(needed(&busybox).is_none_or(|(l, _)| l.is_empty()));
    }

    #[test]
    fn healthcheck_flags() {
        let h = parse_healthcheck("CMD-SHELL:wget -q -O- localhost", Some(1)).unwrap();
        assert_eq!(h.test, ["CMD-SHELL", "wget -q -O- localhost"]);
        let h = parse_healthcheck("CMD:/bin/true,-x", None).unwrap();
        assert_eq!(h.test, ["CMD", "/bin/true", "-x"]);
        assert!(parse_healthcheck("bogus", None).is_none());
    }
}

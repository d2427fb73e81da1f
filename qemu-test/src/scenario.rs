//! The scenario fixture: what every QEMU scenario of berth starts from, so a
//! scenario is a manifest, a boot and its assertions.
//!
//! ```no_run
//! use std::time::Duration;
//! use berth_qemu_test::scenario;
//!
//! # fn main() -> berth_qemu_test::Result<()> {
//! let manifest = r#"
//! version = 1
//! [containers.hello]
//! image = "busybox:latest"
//! command = ["sleep", "3600"]
//! "#;
//! // Builds (or reuses) the image, boots it, waits for `berth: ready`.
//! let vm = scenario::boot("hello", manifest, |c| c.append("berth.log=debug"))?;
//! let (status, body) = vm.http("GET", "/v1/ping", None, Duration::from_secs(10))?;
//! assert_eq!((status, body.as_str()), (200, r#"{"ok":true}"#));
//! scenario::power_off(&vm)?;
//! # Ok(())
//! # }
//! ```
//!
//! - [`berth_binary`]: the static berth under test: `$BERTH_BIN` if set,
//!   else built by `scripts/build-berth`, once per process, so `cargo test
//!   -p berth-qemu-test` needs no set-up beyond `scripts/install-deps`.
//! - [`build_image`], [`build_image_with`] and [`build_image_with_images`]:
//!   a manifest (and extra files, and container images) into a bootable image with [`berth_image::build`] (zstd level 3, well
//!   under a second once the kernel is cached). Images are cached in
//!   `<target>/qemu-images/<key>/`, where the key hashes everything that
//!   goes in: the manifest, the extra files, berth's bytes, the pinned
//!   kernel and the running executable (which embeds the image builder).
//!   Each is built in a temporary directory and renamed into place, so tests
//!   in parallel threads or processes never see half an image; entries
//!   unused for [`CACHE_MAX_AGE`] are pruned.
//! - [`boot`], [`boot_image`], [`launch_image`]: a [`Vm`] on the harness's
//!   default machine (microvm), with the image's kernel command line merged
//!   into the harness's ([`Image::vm_config`]), after `tweak`; `boot*` wait
//!   for [`READY`].
//! - [`Image::from_dir`]: any image directory, such as
//!   `scripts/build-image`'s output, which `berth-vm` boots.
//! - [`berth_problems`], [`power_off`]: small helpers most scenarios need.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use berth_image::images::{ImageInput, Ship};
use berth_image::{BuildOptions, ExtraFile};

use crate::config::{Boot, VmConfig};
use crate::error::{Error, Result};
use crate::paths;
use crate::vm::Vm;

/// The line berth prints once it has booted: `berth: ready in N ms`.
pub const READY: &str = "berth: ready";

/// How long a boot, a shutdown or a reboot may take. Generous: a TCG boot
/// takes 3-5 s, but two run at once on two cores shared with builds.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long an HTTP request over the control channel may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// The environment variable naming a prebuilt static berth to test.
pub const BERTH_BIN_ENV: &str = "BERTH_BIN";

/// Cached images unused for this long are removed (on the next cache miss).
pub const CACHE_MAX_AGE: Duration = Duration::from_secs(3 * 24 * 3600);

/// Bumped when the cache's layout or key changes.
const CACHE_VERSION: &str = "berth-qemu-images/1";

/// The file in a cache entry whose mtime says when it was last used.
const STAMP: &str = "last-used";

/// A bootable image: what `berth_image::build` or `scripts/build-image`
/// writes into an output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The kernel.
    pub vmlinuz: PathBuf,
    /// The initramfs, berth as its `/init`.
    pub initramfs: PathBuf,
    /// The kernel command line the image asks for (`OUTDIR/cmdline`).
    pub cmdline: String,
}

impl Image {
    /// The image in `dir`: `vmlinuz`, `initramfs.img` and `cmdline`.
    pub fn from_dir(dir: &Path) -> Result<Image> {
        let vmlinuz = dir.join("vmlinuz");
        let initramfs = dir.join("initramfs.img");
        let cmdline_path = dir.join("cmdline");
        for (what, p) in [("kernel", &vmlinuz), ("initramfs", &initramfs)] {
            if !p.is_file() {
                return Err(Error::MissingFile {
                    what,
                    path: p.clone(),
                });
            }
        }
        let cmdline = std::fs::read_to_string(&cmdline_path)
            .map_err(|e| Error::io("read", &cmdline_path, e))?
            .trim()
            .to_owned();
        Ok(Image {
            vmlinuz,
            initramfs,
            cmdline,
        })
    }

    /// A VM configuration named `name` that boots this image: the harness's
    /// base command line with the image's own arguments added (those not
    /// already there), on the harness's default machine.
    pub fn vm_config(&self, name: &str) -> VmConfig {
        let config = VmConfig::kernel(name, &self.vmlinuz).initrd(&self.initramfs);
        let merged = match config.boot() {
            Boot::Kernel { cmdline, .. } => merge_cmdline(cmdline, &self.cmdline),
            Boot::Efi { .. } => return config,
        };
        config.cmdline(&merged)
    }
}

/// `base` followed by each argument of `extra` that `base` lacks.
pub fn merge_cmdline(base: &str, extra: &str) -> String {
    let mut out: Vec<&str> = base.split_whitespace().collect();
    for arg in extra.split_whitespace() {
        if !out.contains(&arg) {
            out.push(arg);
        }
    }
    out.join(" ")
}

/// The repository's root (the workspace this crate was built in).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_owned()
}

/// The static berth to put in images: `$BERTH_BIN` if set, else the one
/// `scripts/build-berth` builds (run once per process; cargo makes later
/// runs cheap when nothing changed).
pub fn berth_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os(BERTH_BIN_ENV).filter(|v| !v.is_empty()) {
        let bin = std::path::absolute(PathBuf::from(&bin))
            .map_err(|e| Error::io("resolve", PathBuf::from(&bin), e))?;
        if !bin.is_file() {
            return Err(Error::MissingFile {
                what: "berth binary ($BERTH_BIN)",
                path: bin,
            });
        }
        return Ok(bin);
    }
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let script = repo_root().join("scripts/build-berth");
    BUILT
        .get_or_init(|| run_build_berth(&script))
        .clone()
        .map_err(|detail| Error::BuildBerth { script, detail })
}

fn run_build_berth(script: &Path) -> std::result::Result<PathBuf, String> {
    let out = Command::new(script)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("{}:\n{}", out.status, tail.join("\n")));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| format!("it printed no path; its stderr:\n{stderr}"))?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("it printed {}, which is no file", path.display()))
    }
}

/// `<target>/qemu-images`: the image cache.
pub fn images_dir() -> PathBuf {
    paths::target_dir().join("qemu-images")
}

/// Builds (or takes from the cache) the image of `manifest` for the
/// scenario `name`. See the module documentation.
pub fn build_image(name: &str, manifest: &str) -> Result<Image> {
    build_image_with(name, manifest, &[])
}

/// Like [`build_image`], with `extra` files added to the initramfs (say, a
/// second, broken manifest that `berth.manifest=` then points at: the
/// builder refuses to embed an invalid manifest as the main one).
pub fn build_image_with(name: &str, manifest: &str, extra: &[ExtraFile]) -> Result<Image> {
    build_image_with_images(name, manifest, extra, &[])
}

/// Like [`build_image_with`], with container images given to the builder
/// (`--image` or `--import`: OCI layouts or docker-save archives). Their
/// contents are part of the cache key.
pub fn build_image_with_images(
    name: &str,
    manifest: &str,
    extra: &[ExtraFile],
    images: &[ImageInput],
) -> Result<Image> {
    let berth = berth_binary()?;
    let berth_bytes = std::fs::read(&berth).map_err(|e| Error::io("read", &berth, e))?;
    let mut key_extra = extra.to_vec();
    for (i, input) in images.iter().enumerate() {
        key_extra.push(ExtraFile {
            path: format!(
                "image-input-{i}:{}:{:?}",
                input.name.as_deref().unwrap_or(""),
                input.ship
            ),
            contents: tree_bytes(&input.path),
            mode: 0,
        });
    }
    let key = cache_key(manifest, &key_extra, &berth_bytes);
    let root = images_dir();
    let dir = root.join(&key);
    if dir.is_dir() {
        touch(&dir);
        return Image::from_dir(&dir);
    }
    paths::create_dir_all(&root)?;
    prune(&root);
    let tmp = root.join(format!(
        ".tmp-{key}-{}-{}",
        std::process::id(),
        paths::next_seq()
    ));
    let built = build_into(name, manifest, extra, images, &berth, &tmp);
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    touch(&tmp);
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        // Another test built the same image first: use theirs.
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.is_dir() {
            return Err(Error::io("rename into place", &dir, e));
        }
    }
    Image::from_dir(&dir)
}

fn build_into(
    name: &str,
    manifest: &str,
    extra: &[ExtraFile],
    images: &[ImageInput],
    berth: &Path,
    dir: &Path,
) -> Result<()> {
    paths::create_dir_all(dir)?;
    let manifest_path = dir.join("manifest.toml");
    std::fs::write(&manifest_path, manifest).map_err(|e| Error::io("write", &manifest_path, e))?;
    let mut opts = BuildOptions::new(&manifest_path, dir, berth);
    opts.extra_files = extra.to_vec();
    opts.images = images.to_vec();
    berth_image::build(&opts).map_err(|e| Error::BuildImage {
        name: name.to_owned(),
        dir: dir.to_owned(),
        detail: e.to_string(),
    })?;
    Ok(())
}

/// A file's bytes, or a directory's files (paths and bytes, sorted), for
/// the cache key.
fn tree_bytes(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for e in entries {
            out.extend_from_slice(e.to_string_lossy().as_bytes());
            out.extend(tree_bytes(&e));
        }
    } else if let Ok(b) = std::fs::read(path) {
        out.extend((b.len() as u64).to_le_bytes());
        out.extend(b);
    }
    out
}

/// An image input for [`build_image_with_images`]: unpacked into the
/// initramfs by the builder.
pub fn image(path: impl Into<PathBuf>, name: Option<&str>) -> ImageInput {
    ImageInput {
        path: path.into(),
        name: name.map(str::to_owned),
        ship: Ship::Unpacked,
    }
}

/// An image input shipped as an archive and imported by berth at boot.
pub fn import(path: impl Into<PathBuf>, name: Option<&str>) -> ImageInput {
    ImageInput {
        path: path.into(),
        name: name.map(str::to_owned),
        ship: Ship::Archive,
    }
}

/// The cache key: a hash of every input of the build, as 32 hex digits.
fn cache_key(manifest: &str, extra: &[ExtraFile], berth: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(CACHE_VERSION.as_bytes());
    field(manifest.as_bytes());
    for f in extra {
        field(f.path.as_bytes());
        field(&f.mode.to_le_bytes());
        field(&f.contents);
    }
    field(berth);
    field(berth_image::kernel::PACKAGE_VERSION.as_bytes());
    field(berth_image::DEFAULT_CMDLINE.as_bytes());
    // The image builder is linked into this executable: a new build of it
    // (a changed builder) makes new images.
    field(&executable_identity().to_le_bytes());
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The running executable's size and mtime, hashed; 0 if unknown.
fn executable_identity() -> u64 {
    let Ok(meta) = std::env::current_exe().and_then(std::fs::metadata) else {
        return 0;
    };
    let mut h = DefaultHasher::new();
    meta.len().hash(&mut h);
    if let Ok(t) = meta.modified()
        && let Ok(d) = t.duration_since(SystemTime::UNIX_EPOCH)
    {
        d.as_nanos().hash(&mut h);
    }
    h.finish()
}

/// Marks a cache entry as used now.
fn touch(dir: &Path) {
    let _ = std::fs::write(dir.join(STAMP), b"");
}

/// Removes cache entries unused for [`CACHE_MAX_AGE`], and temporary
/// directories a killed build left (older than an hour). Best effort.
fn prune(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let now = SystemTime::now();
    let age = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default()
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_tmp = entry.file_name().to_string_lossy().starts_with(".tmp-");
        let stale = if is_tmp {
            age(&path) > Duration::from_secs(3600)
        } else {
            age(&path.join(STAMP)) > CACHE_MAX_AGE
        };
        if stale {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Launches `image` as the VM `name`, with `tweak` applied to its
/// configuration ([`Image::vm_config`]); does not wait for anything.
pub fn launch_image(
    name: &str,
    image: &Image,
    tweak: impl FnOnce(VmConfig) -> VmConfig,
) -> Result<Vm> {
    Vm::launch(&tweak(image.vm_config(name)))
}

/// Launches `image` and waits for [`READY`]; the console cursor is then
/// just past it.
pub fn boot_image(
    name: &str,
    image: &Image,
    tweak: impl FnOnce(VmConfig) -> VmConfig,
) -> Result<Vm> {
    let vm = launch_image(name, image, tweak)?;
    vm.wait_for(READY, BOOT_TIMEOUT)?;
    Ok(vm)
}

/// Builds the image of `manifest` (see [`build_image`]), launches it as
/// the VM `name` with `tweak` applied, and waits for [`READY`].
pub fn boot(name: &str, manifest: &str, tweak: impl FnOnce(VmConfig) -> VmConfig) -> Result<Vm> {
    let image = build_image(name, manifest)?;
    boot_image(name, &image, tweak)
}

/// berth's own warning and error lines in `console` (`berth: WARN ...`,
/// `berth: ERROR ...`), in order.
pub fn berth_problems(console: &str) -> Vec<String> {
    console
        .lines()
        .filter(|l| l.contains("berth: WARN ") || l.contains("berth: ERROR "))
        .map(str::to_owned)
        .collect()
}

/// Asks berth to power off through the API (`POST /v1/system/poweroff`) and
/// waits for QEMU to exit.
pub fn power_off(vm: &Vm) -> Result<ExitStatus> {
    let (status, body) = vm.http("POST", "/v1/system/poweroff", None, HTTP_TIMEOUT)?;
    if status != 202 {
        return Err(Error::Http {
            request: "POST /v1/system/poweroff".into(),
            detail: format!("status {status}: {body}"),
        });
    }
    vm.wait_exit(BOOT_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_the_base_and_adds_only_new_arguments() {
        assert_eq!(
            merge_cmdline(
                "console=ttyS0 panic=-1 quiet",
                "console=ttyS0 quiet panic=-1 printk.devkmsg=on"
            ),
            "console=ttyS0 panic=-1 quiet printk.devkmsg=on"
        );
        assert_eq!(merge_cmdline("a", ""), "a");
        assert_eq!(merge_cmdline("", "b  c"), "b c");
    }

    #[test]
    fn the_image_command_line_joins_the_harness_one() {
        let image = Image {
            vmlinuz: "/k".into(),
            initramfs: "/i".into(),
            cmdline: "console=ttyS0 quiet panic=-1 printk.devkmsg=on".into(),
        };
        let config = image.vm_config("x").append("berth.log=debug");
        match config.boot() {
            Boot::Kernel {
                cmdline, initrd, ..
            } => {
                assert_eq!(
                    cmdline,
                    &format!("{} printk.devkmsg=on berth.log=debug", crate::BASE_CMDLINE)
                );
                assert_eq!(initrd.as_deref(), Some(Path::new("/i")));
            }
            Boot::Efi { .. } => panic!("a kernel boot"),
        }
    }

    #[test]
    fn the_key_covers_every_input() {
        let extra = |c: &str| ExtraFile {
            path: "/etc/x".into(),
            contents: c.as_bytes().to_vec(),
            mode: 0o644,
        };
        let base = cache_key("m", &[], b"berth");
        assert_eq!(base.len(), 32);
        assert_eq!(base, cache_key("m", &[], b"berth"));
        assert_ne!(base, cache_key("m2", &[], b"berth"));
        assert_ne!(base, cache_key("m", &[], b"berth2"));
        assert_ne!(base, cache_key("m", &[extra("a")], b"berth"));
        assert_ne!(
            cache_key("m", &[extra("a")], b"berth"),
            cache_key("m", &[extra("b")], b"berth")
        );
        // Fields are length-prefixed: moving a byte across them changes it.
        assert_ne!(cache_key("mb", &[], b"erth"), base);
    }

    #[test]
    fn problems_are_berth_warnings_and_errors_only() {
        let console = "[ 1.0] berth: boot: ok\n[ 1.1] berth: WARN boot: module x: not found\n\
                       [ 1.2] web ! ERROR from a container\n[ 1.3] berth: ERROR api: bad\n";
        assert_eq!(
            berth_problems(console),
            [
                "[ 1.1] berth: WARN boot: module x: not found",
                "[ 1.3] berth: ERROR api: bad"
            ]
        );
    }
}

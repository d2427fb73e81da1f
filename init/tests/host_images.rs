//! The image store on the host, as root: layers unpacked by berth and
//! mounted as overlay lower directories must show the same tree as umoci's
//! unpack of the same image (whiteouts, opaque directories, hard links,
//! symlinks, modes, owners, xattrs); what only root can do (owners, device
//! nodes, capabilities) is kept or refused by policy; hostile archives
//! write nothing outside the store. (Import throughput against `umoci
//! unpack` is measured by `scripts/bench`: `berth-hostbench unpack`.)
//!
//! Skipped (with a note) when not root or when umoci is missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth::images::Store;
use berth::images::unpack::DevicePolicy;
use berth_image::oci::Digest;
use berth_image::oci::layer::Compression;
use berth_image::oci::spec::RunConfig;
use berth_image::oci::write::{self, ImageBuild, Layout};

fn root_and_umoci() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return false;
    }
    if Command::new("umoci").arg("--version").output().is_err() {
        eprintln!("skipped: needs umoci (scripts/install-deps)");
        return false;
    }
    true
}

/// A tar under construction, with every member type and PAX records.
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    #[allow(clippy::too_many_arguments)]
    fn raw(
        &mut self,
        flag: u8,
        path: &str,
        link: &str,
        mode: u32,
        uid: u32,
        data: &[u8],
        dev: (u32, u32),
        pax: &[(&str, &[u8])],
    ) -> &mut Self {
        if !pax.is_empty() {
            let mut body = Vec::new();
            for (k, v) in pax {
                let rest = format!(" {k}=").len() + v.len() + 1;
                let mut len = rest + 1;
                while len.to_string().len() + rest != len {
                    len = len.to_string().len() + rest;
                }
                body.extend_from_slice(format!("{len} {k}=").as_bytes());
                body.extend_from_slice(v);
                body.push(b'\n');
            }
            self.raw(b'x', "PaxHeader", "", 0o644, 0, &body, (0, 0), &[]);
        }
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        h[100..108].copy_from_slice(format!("{mode:07o}\0").as_bytes());
        h[108..116].copy_from_slice(format!("{uid:07o}\0").as_bytes());
        h[116..124].copy_from_slice(format!("{uid:07o}\0").as_bytes());
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"14000000000\0");
        h[156] = flag;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[329..337].copy_from_slice(format!("{:07o}\0", dev.0).as_bytes());
        h[337..345].copy_from_slice(format!("{:07o}\0", dev.1).as_bytes());
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.0.extend_from_slice(&h);
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }
    fn dir(&mut self, p: &str, mode: u32) -> &mut Self {
        self.raw(b'5', p, "", mode, 0, b"", (0, 0), &[])
    }
    fn file(&mut self, p: &str, d: &[u8]) -> &mut Self {
        self.raw(b'0', p, "", 0o644, 0, d, (0, 0), &[])
    }
    fn symlink(&mut self, p: &str, t: &str) -> &mut Self {
        self.raw(b'2', p, t, 0o777, 0, b"", (0, 0), &[])
    }
    fn hardlink(&mut self, p: &str, t: &str) -> &mut Self {
        self.raw(b'1', p, t, 0o644, 0, b"", (0, 0), &[])
    }
    fn finish(&self) -> Vec<u8> {
        let mut v = self.0.clone();
        v.extend_from_slice(&[0u8; 1024]);
        v
    }
}

/// Writes an image of `layers` (tars, bottom first) into a layout.
fn layout_of(
    dir: &Path,
    reference: &str,
    layers: Vec<Vec<u8>>,
    compression: Compression,
) -> Digest {
    let layers = layers
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            (
                write::layer_blob(t, compression).unwrap(),
                format!("layer {i}"),
            )
        })
        .collect();
    let built = ImageBuild {
        layers,
        config: RunConfig {
            cmd: Some(vec!["sh".into()]),
            ..RunConfig::default()
        },
        created: 0,
    }
    .finish()
    .unwrap();
    Layout::open(dir).unwrap().add(reference, &built).unwrap();
    built.manifest.digest
}

/// Three layers that exercise whiteouts, opaque directories, replacement,
/// hard links, symlinks, modes, owners and user xattrs.
fn tricky_layers() -> Vec<Vec<u8>> {
    let mut l1 = Tar::default();
    l1.dir("etc/", 0o755)
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .file("etc/gone", b"deleted by layer 2\n")
        .dir("var/", 0o755)
        .dir("var/lib/", 0o755)
        .file("var/lib/old1", b"1")
        .file("var/lib/old2", b"2")
        .dir("var/lib/sub/", 0o700)
        .file("var/lib/sub/deep", b"deep")
        .file("data", b"shared data\n")
        .hardlink("data-link", "data")
        .symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
        .raw(b'0', "suid", "", 0o4755, 0, b"#!/bin/sh\n", (0, 0), &[])
        .raw(b'0', "owned", "", 0o640, 1234, b"mine", (0, 0), &[])
        .raw(
            b'0',
            "tagged",
            "",
            0o644,
            0,
            b"x",
            (0, 0),
            &[("SCHILY.xattr.user.color", b"blue")],
        )
        .dir("dir-to-file/", 0o755)
        .file("dir-to-file/child", b"c")
        .file("file-to-dir", b"f");
    let mut l2 = Tar::default();
    l2.file("etc/.wh.gone", b"")
        .dir("var/lib/", 0o755)
        .file("var/lib/.wh..wh..opq", b"")
        .file("var/lib/new", b"new")
        .file("dir-to-file", b"now a file")
        .dir("file-to-dir/", 0o751)
        .file("file-to-dir/x", b"x")
        .file(".wh.data-link", b"")
        .file("added", b"in layer 2");
    let mut l3 = Tar::default();
    l3.file(".wh.added", b"")
        .file("etc/gone", b"back in layer 3\n")
        .raw(
            b'0',
            "etc/passwd",
            "",
            0o600,
            0,
            b"root:x:0:0::/root:/bin/ash\n",
            (0, 0),
            &[],
        );
    vec![l1.finish(), l2.finish(), l3.finish()]
}

/// What a tree holds, by path: type, mode, owner, and content digest,
/// link target or device numbers, and user xattrs.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = m.file_type();
            let what = if ft.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_file() {
                let mut b = Vec::new();
                std::fs::File::open(&p)
                    .unwrap()
                    .read_to_end(&mut b)
                    .unwrap();
                format!("file {} mtime {}", Digest::of(&b).short(), m.mtime())
            } else if ft.is_char_device() {
                format!("char {}", m.rdev())
            } else if ft.is_block_device() {
                format!("block {}", m.rdev())
            } else if ft.is_fifo() {
                "fifo".into()
            } else {
                "other".into()
            };
            let mode = if ft.is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            out.insert(
                rel,
                format!(
                    "{what} mode {mode:o} owner {}:{} xattrs {:?}",
                    m.uid(),
                    m.gid(),
                    user_xattrs(&p)
                ),
            );
        }
    }
    out
}

fn user_xattrs(p: &Path) -> Vec<(String, String)> {
    xattrs(p)
        .into_iter()
        .filter(|(name, _)| name.starts_with("user."))
        .map(|(name, v)| (name, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// Every extended attribute of `p` (not following a symlink), by name.
fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: `c` is NUL-terminated and `names` is a live buffer of the
    // length given.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
    {
        let cname = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 4096];
        // SAFETY: both strings are NUL-terminated and `v` is live.
        let len =
            unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        v.truncate(len.max(0) as usize);
        out.push((String::from_utf8_lossy(name).into_owned(), v));
    }
    out
}

/// Mounts `lowers` (top first) as a read-only overlay at `at`.
struct Overlay(PathBuf);

impl Overlay {
    fn mount(lowers: &[PathBuf], empty: &Path, at: &Path) -> Overlay {
        std::fs::create_dir_all(at).unwrap();
        let mut all: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        all.push(empty.display().to_string());
        nix::mount::mount(
            Some("overlay"),
            at,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(format!("lowerdir={}", all.join(":")).as_str()),
        )
        .unwrap();
        Overlay(at.to_path_buf())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bundle.join("rootfs")
}

fn store_in(dir: &Path) -> Store {
    let mut s = Store::new(dir.join("store"));
    s.unpack.chown = true;
    s
}

#[test]
fn whiteouts_and_metadata_match_umoci() {
    if !root_and_umoci() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    // umoci looks images up by ref.name: a plain tag here.
    layout_of(&layout, "tricky", tricky_layers(), Compression::Gzip);
    let theirs = umoci_unpack(&layout, "tricky", &t.path().join("bundle"));

    let store = store_in(t.path());
    let done = store
        .import_path(&layout, Some("test/tricky".into()))
        .unwrap();
    assert_eq!(done[0].unpacked, 3);
    let image = store
        .resolve(&"test/tricky:tricky".parse().unwrap())
        .unwrap();
    assert_eq!(image.lowers.len(), 3);
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let ours_dir = t.path().join("merged");
    let _m = Overlay::mount(&image.lowers, &empty, &ours_dir);

    let mut ours = snapshot(&ours_dir);
    let mut theirs = snapshot(&theirs);
    // The root directory's own entry differs by construction (umoci makes
    // it, berth's runtime gives the overlay its own); not compared.
    ours.remove("");
    theirs.remove("");
    assert_eq!(ours, theirs, "berth's overlay and umoci's unpack differ");
    // The cases, spelled out.
    assert!(!ours.contains_key("etc/gone") || ours["etc/gone"].contains("file"));
    assert!(!ours.contains_key("data-link"));
    assert!(!ours.contains_key("added"));
    assert!(!ours.contains_key("var/lib/old1") && ours.contains_key("var/lib/new"));
    assert!(ours["suid"].contains("mode 4755"), "{}", ours["suid"]);
    assert!(
        ours["owned"].contains("owner 1234:1234"),
        "{}",
        ours["owned"]
    );
    assert!(ours["tagged"].contains("user.color"), "{}", ours["tagged"]);
}

#[test]
fn an_image_made_by_umoci_matches_its_own_unpack() {
    if !root_and_umoci() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let src = t.path().join("src");
    for d in ["bin", "etc/conf.d", "usr/share/doc"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", src.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", src.join("bin/sh")).unwrap();
    std::fs::write(src.join("etc/conf.d/a"), "a").unwrap();
    std::fs::write(src.join("usr/share/doc/readme"), "doc").unwrap();
    let run = |args: &[&str], extra: &[&Path]| {
        let out = Command::new("umoci")
            .args(args)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let img = |tag: &str| format!("{}:{tag}", layout.display());
    run(&["init", "--layout"], &[&layout]);
    run(&["new", "--image", &img("v1")], &[]);
    run(&["insert", "--image", &img("v1")], &[&src, Path::new("/")]);
    let bundle = t.path().join("b");
    run(&["unpack", "--image", &img("v1")], &[&bundle]);
    std::fs::remove_dir_all(bundle.join("rootfs/usr/share/doc")).unwrap();
    std::fs::remove_file(bundle.join("rootfs/etc/conf.d/a")).unwrap();
    std::fs::write(bundle.join("rootfs/etc/conf.d/b"), "b").unwrap();
    run(&["repack", "--image", &img("v2")], &[&bundle]);
    let theirs = umoci_unpack(&layout, "v2", &t.path().join("b2"));

    let store = store_in(t.path());
    store.import_path(&layout, Some("umoci".into())).unwrap();
    let image = store.resolve(&"umoci:v2".parse().unwrap()).unwrap();
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let merged = t.path().join("merged");
    let _m = Overlay::mount(&image.lowers, &empty, &merged);
    let mut ours = snapshot(&merged);
    let mut theirs = snapshot(&theirs);
    ours.remove("");
    theirs.remove("");
    assert_eq!(ours, theirs);
    assert!(!ours.contains_key("usr/share/doc") && ours.contains_key("etc/conf.d/b"));
    // v1 and v2 share their first layer: one directory.
    let v1 = store.resolve(&"umoci:v1".parse().unwrap()).unwrap();
    assert_eq!(v1.lowers.last(), image.lowers.last());
}

#[test]
fn root_only_metadata_follows_policy() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut l = Tar::default();
    l.raw(b'3', "dev/null", "", 0o666, 0, b"", (1, 3), &[])
        .raw(b'4', "dev/sda", "", 0o660, 0, b"", (8, 0), &[])
        .raw(b'6', "pipe", "", 0o600, 42, b"", (0, 0), &[])
        .raw(
            b'0',
            "ping",
            "",
            0o755,
            0,
            b"\x7fELF",
            (0, 0),
            &[
                ("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
                ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ],
        );
    let layer = l.finish();
    for policy in [DevicePolicy::Skip, DevicePolicy::Keep] {
        let t = tempfile::tempdir().unwrap();
        let layout = t.path().join("layout");
        layout_of(
            &layout,
            "dev/test:1",
            vec![layer.clone()],
            Compression::Zstd,
        );
        let mut store = store_in(t.path());
        store.unpack.devices = policy;
        let done = store.import_path(&layout, None).unwrap();
        let image = store.resolve(&"dev/test:1".parse().unwrap()).unwrap();
        let dir = &image.lowers[0];
        match policy {
            DevicePolicy::Skip => {
                assert_eq!(done[0].skipped_devices, 2);
                assert!(!dir.join("dev/sda").exists());
            }
            DevicePolicy::Keep => {
                let m = std::fs::symlink_metadata(dir.join("dev/sda")).unwrap();
                assert!(m.file_type().is_block_device());
                assert_eq!(m.rdev(), nix::sys::stat::makedev(8, 0));
                assert_eq!(m.mode() & 0o7777, 0o660);
            }
        }
        let pipe = std::fs::symlink_metadata(dir.join("pipe")).unwrap();
        assert!(pipe.file_type().is_fifo());
        assert_eq!(pipe.uid(), 42);
        // File capabilities are kept; overlay's own attributes never.
        let caps = Command::new("getfattr")
            .args(["-d", "-m", "-", "-e", "hex"])
            .arg(dir.join("ping"))
            .output();
        if let Ok(out) = caps {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("security.capability"), "{text}");
            assert!(!text.contains("trusted.overlay"), "{text}");
        }
    }
}

#[test]
fn hostile_layers_write_nothing_outside_the_store() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "untouched").unwrap();
    let o = outside.display().to_string();
    let cases: Vec<(&str, Tar)> = vec![
        ("traversal", {
            let mut l = Tar::default();
            l.file("../../outside/new", b"x");
            l
        }),
        ("absolute", {
            let mut l = Tar::default();
            l.file(&format!("{o}/new"), b"x");
            l
        }),
        ("symlink out", {
            let mut l = Tar::default();
            l.symlink("out", &o).file("out/new", b"x");
            l
        }),
        ("symlink swapped in", {
            let mut l = Tar::default();
            l.dir("d/", 0o755).symlink("d", &o).file("d/new", b"x");
            l
        }),
        ("hard link out", {
            let mut l = Tar::default();
            l.symlink("out", &o).hardlink("stolen", "out/secret");
            l
        }),
        ("hard link up", {
            let mut l = Tar::default();
            l.hardlink("stolen", "../outside/secret");
            l
        }),
        ("whiteout through a symlink", {
            let mut l = Tar::default();
            l.symlink("out", &o).file("out/.wh.secret", b"");
            l
        }),
        ("opaque through a symlink", {
            let mut l = Tar::default();
            l.symlink("out", &o).file("out/.wh..wh..opq", b"");
            l
        }),
    ];
    for (what, layer) in cases {
        let layout = t.path().join(format!("layout-{what}"));
        layout_of(&layout, "evil:1", vec![layer.finish()], Compression::Gzip);
        let store = store_in(&t.path().join(format!("s-{what}")));
        let err = match store.import_path(&layout, None) {
            Ok(done) => panic!("{what}: imported: {done:?}"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("image evil:1: layer blob sha256:"),
            "{what}: {err}"
        );
        let names: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "{what} wrote outside");
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"untouched");
        let xattrs = user_xattrs(&outside);
        assert!(xattrs.is_empty(), "{what}");
        // Nothing half-done is left in the store.
        let root = store.root();
        assert_eq!(
            std::fs::read_dir(root.join("layers")).unwrap().count(),
            0,
            "{what}"
        );
        assert_eq!(
            std::fs::read_dir(root.join("tmp")).unwrap().count(),
            0,
            "{what}"
        );
        assert_eq!(
            std::fs::read_dir(root.join("images")).unwrap().count(),
            0,
            "{what}"
        );
    }
}

#[test]
fn prune_removes_what_nothing_uses_and_spares_running_layers() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let layer = |name: &str, data: &[u8]| {
        let mut l = Tar::default();
        l.file(name, data);
        l.finish()
    };
    let (l1, l2) = (t.path().join("l1"), t.path().join("l2"));
    let base = layer("base", b"shared");
    layout_of(
        &l1,
        "app:1",
        vec![base.clone(), layer("v", b"one")],
        Compression::Gzip,
    );
    layout_of(
        &l2,
        "app:1",
        vec![base, layer("v", b"two")],
        Compression::Gzip,
    );
    let store = store_in(&t.path().join("s"));
    let app = "app:1".parse().unwrap();
    store.import_path(&l1, None).unwrap();
    let old = store.resolve(&app).unwrap();
    // app:1 now names the second image; the first keeps no name.
    store.import_path(&l2, None).unwrap();
    let new = store.resolve(&app).unwrap();
    assert_ne!(old.lowers[0], new.lowers[0]);
    assert_eq!(old.lowers[1], new.lowers[1]);

    // A container still runs from the old image: its layers stay.
    let busy: std::collections::BTreeSet<PathBuf> = old.lowers.iter().cloned().collect();
    let none = std::collections::BTreeSet::new();
    let r = store.gc(&none, &busy).unwrap();
    assert_eq!((r.images, r.layers), (1, 0), "{r:?}");
    assert!(old.lowers.iter().all(|p| p.is_dir()));
    // Once it has stopped, its own layer goes; the shared one stays, and
    // the named image still resolves.
    let r = store.gc(&none, &std::collections::BTreeSet::new()).unwrap();
    assert_eq!((r.images, r.layers), (0, 1), "{r:?}");
    assert!(!old.lowers[0].exists());
    assert!(new.lowers.iter().all(|p| p.is_dir()));
    assert_eq!(store.resolve(&app).unwrap().lowers, new.lowers);
    let r = store.gc(&none, &std::collections::BTreeSet::new()).unwrap();
    assert_eq!((r.images, r.layers, r.blobs), (0, 0, 0), "{r:?}");

    // Shifted copies (containers in a user namespace) go with their layer,
    // unless a container has one mounted.
    let range = berth_config::IdRange {
        container: 0,
        host: 100000,
        size: 65536,
    };
    let maps = berth_config::IdMaps {
        uid: vec![range],
        gid: vec![range],
    };
    let kept = store.shifted(&new.lowers[0], &maps).unwrap();
    assert_eq!(store.shifted(&new.lowers[0], &maps).unwrap(), kept);
    assert_eq!(std::fs::read(kept.join("v")).unwrap(), b"two");
    let orphan = |n: char| {
        let p = store
            .root()
            .join("shifted")
            .join(format!("{}.0123456789ab", n.to_string().repeat(64)));
        std::fs::create_dir_all(p.join("etc")).unwrap();
        p
    };
    let (gone, mounted) = (orphan('a'), orphan('b'));
    let busy: std::collections::BTreeSet<PathBuf> = [mounted.clone()].into();
    let r = store.gc(&none, &busy).unwrap();
    assert_eq!(r.layers, 1, "{r:?}");
    assert!(!gone.exists() && mounted.is_dir() && kept.is_dir());
}

/// A shifted copy (a container in a user namespace) keeps everything a
/// layer holds but its owners, which move by the map: hard links stay
/// links, whiteouts stay whiteouts, the opaque marker and other extended
/// attributes stay, set-id bits survive the chown, file capabilities are
/// rewritten for the namespace's root, and unmapped owners become 65534.
#[test]
fn shifted_copies_keep_the_layer_and_move_its_owners() {
    use berth::images::shift::copy_tree;
    use berth_config::{IdMaps, IdRange};
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("layer");
    std::fs::create_dir_all(src.join("dir/sub")).unwrap();
    std::fs::write(src.join("dir/file"), "data").unwrap();
    std::fs::hard_link(src.join("dir/file"), src.join("link")).unwrap();
    std::os::unix::fs::symlink("dir/file", src.join("sym")).unwrap();
    std::fs::write(src.join("suid"), "x").unwrap();
    std::fs::write(src.join("far"), "x").unwrap();
    std::os::unix::fs::lchown(src.join("dir/file"), Some(1000), Some(50)).unwrap();
    std::os::unix::fs::lchown(src.join("far"), Some(70000), Some(70000)).unwrap();
    std::os::unix::fs::lchown(src.join("sym"), Some(7), Some(7)).unwrap();
    nix::sys::stat::mknod(
        &src.join("gone"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
    nix::unistd::mkfifo(
        &src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    let setx = |p: &Path, name: &str, value: &[u8]| {
        let p = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        let n = std::ffi::CString::new(name).unwrap();
        // SAFETY: NUL-terminated strings and a valid buffer.
        let rc = unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(rc, 0, "{name}: {}", std::io::Error::last_os_error());
    };
    setx(&src.join("dir/sub"), "trusted.overlay.opaque", b"y");
    setx(&src.join("dir/file"), "user.note", b"kept");
    // v2 capability: CAP_NET_RAW, effective.
    let mut cap = 0x0200_0001u32.to_le_bytes().to_vec();
    cap.extend_from_slice(&(1u32 << 13).to_le_bytes());
    cap.extend_from_slice(&[0; 12]);
    setx(&src.join("suid"), "security.capability", &cap);
    std::fs::set_permissions(
        src.join("suid"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();

    let r = |host| IdRange {
        container: 0,
        host,
        size: 65536,
    };
    let maps = IdMaps {
        uid: vec![r(100000)],
        gid: vec![r(200000)],
    };
    let dst = d.path().join("shifted");
    copy_tree(&src, &dst, &maps).unwrap();

    let md = |p: &str| std::fs::symlink_metadata(dst.join(p)).unwrap();
    let ids = |p: &str| (md(p).uid(), md(p).gid());
    assert_eq!(ids(""), (100000, 200000));
    assert_eq!(ids("dir/file"), (101000, 200050));
    assert_eq!(ids("sym"), (100007, 200007));
    assert_eq!(ids("far"), (65534, 65534), "unmapped owners");
    assert_eq!(md("link").ino(), md("dir/file").ino(), "hard link kept");
    assert_eq!(std::fs::read_to_string(dst.join("link")).unwrap(), "data");
    assert_eq!(
        std::fs::read_link(dst.join("sym")).unwrap(),
        Path::new("dir/file")
    );
    assert!(md("gone").file_type().is_char_device() && md("gone").rdev() == 0);
    assert!(md("fifo").file_type().is_fifo());
    assert_eq!(md("fifo").mode() & 0o7777, 0o640);
    assert_eq!(md("suid").mode() & 0o7777, 0o4755, "set-uid survives chown");
    let getx = |p: &str, name: &str| -> Option<Vec<u8>> {
        xattrs(&dst.join(p))
            .into_iter()
            .find_map(|(n, v)| (n == name).then_some(v))
    };
    assert_eq!(
        getx("dir/sub", "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(getx("dir/file", "user.note").as_deref(), Some(&b"kept"[..]));
    let cap = getx("suid", "security.capability").expect("capability kept");
    assert_eq!(cap.len(), 24, "v3");
    assert_eq!(&cap[20..24], &100000u32.to_le_bytes(), "root id shifted");
    assert_eq!(
        md("dir/file").modified().unwrap(),
        std::fs::symlink_metadata(src.join("dir/file"))
            .unwrap()
            .modified()
            .unwrap()
    );
}

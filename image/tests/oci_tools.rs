//! Images written by `berth-image oci`, read by tools berth did not write:
//! skopeo inspects them and copies them out (which checks every blob
//! against its digest), and umoci unpacks them (as root) into a tree that
//! must be exactly what the builder was given: paths, types, modes,
//! owners, times, symlink targets, contents and hard links, with a second
//! layer's whiteout applied. (The other direction, images made by umoci
//! imported by berth, is init/tests/host_images.rs.) Needs skopeo and
//! umoci (scripts/install-deps); the umoci part needs root and is skipped,
//! with a note, without it.

// Test helpers, not production code: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// `SOURCE_DATE_EPOCH` for every build: every member's time.
const EPOCH: i64 = 1_700_000_000;
const CREATED: &str = "2023-11-14T22:13:20Z";
const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Runs a tool that must succeed; its stdout.
fn tool(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run scripts/install-deps)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// `berth-image oci LAYOUT --ref REFERENCE ARGS...`, the command users
/// run; the manifest digest it prints.
fn berth_image_oci(layout: &Path, reference: &str, args: &[&str]) -> String {
    let cache = layout.with_extension("cache");
    let out = tool(
        Command::new(env!("CARGO_BIN_EXE_berth-image"))
            .arg("oci")
            .arg(layout)
            .args(["--ref", reference])
            .args(args)
            .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
            .env("BERTH_CACHE", &cache),
    );
    let out = String::from_utf8(out).unwrap();
    let (name, digest) = out.trim().split_once(' ').unwrap();
    assert_eq!(name, reference);
    digest.to_string()
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

/// Everything skopeo says about the image `reference` of `layout`, checked
/// against what berth-image wrote (read here with serde_json, not with
/// berth's reader): the manifest's bytes, digest and media type, the
/// config's platform, the layers' digests and diff IDs. `skopeo copy` to a
/// `dir:` checks every blob's digest on the way. Returns the manifest.
fn check_with_skopeo(layout: &Path, reference: &str, digest: &str, scratch: &Path) -> Value {
    let transport = format!("oci:{}:{reference}", layout.display());

    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap())
        .expect("index.json is JSON");
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == reference)
        .unwrap_or_else(|| panic!("{reference} is not in index.json: {index}"));
    assert_eq!(entry["digest"], digest);
    assert_eq!(entry["mediaType"], MEDIA_MANIFEST);

    let raw = tool(Command::new("skopeo").args(["inspect", "--raw", &transport]));
    assert_eq!(sha256(&raw), digest, "the manifest skopeo read");
    assert_eq!(raw, blob(layout, digest));
    assert_eq!(entry["size"], raw.len());
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MEDIA_MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], MEDIA_CONFIG);

    let config_raw =
        tool(Command::new("skopeo").args(["inspect", "--config", "--raw", &transport]));
    assert_eq!(sha256(&config_raw), manifest["config"]["digest"]);
    assert_eq!(manifest["config"]["size"], config_raw.len());
    let config: Value = serde_json::from_slice(&config_raw).unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["rootfs"]["type"], "layers");

    let layers = manifest["layers"].as_array().unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len());
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let bytes = blob(layout, layer["digest"].as_str().unwrap());
        assert_eq!(sha256(&bytes), layer["digest"]);
        assert_eq!(layer["size"], bytes.len());
        let mut tar = Vec::new();
        match layer["mediaType"].as_str().unwrap() {
            "application/vnd.oci.image.layer.v1.tar" => tar.clone_from(&bytes),
            "application/vnd.oci.image.layer.v1.tar+gzip" => {
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_end(&mut tar)
                    .unwrap();
            }
            "application/vnd.oci.image.layer.v1.tar+zstd" => {
                tar = zstd::decode_all(&bytes[..]).unwrap();
            }
            other => panic!("layer media type {other}"),
        }
        assert_eq!(&sha256(&tar), diff_id, "a layer's diff ID");
    }

    let inspect: Value =
        serde_json::from_slice(&tool(Command::new("skopeo").args(["inspect", &transport])))
            .unwrap();
    assert_eq!(inspect["Digest"], digest);
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Created"], CREATED);
    let digests: Vec<&Value> = layers.iter().map(|l| &l["digest"]).collect();
    assert_eq!(
        inspect["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        digests
    );
    assert_eq!(inspect["Env"], config["config"]["Env"]);

    // A copy reads every blob and checks it against its digest.
    let copy = scratch.join(reference.replace(['/', ':'], "_"));
    tool(
        Command::new("skopeo")
            .args(["copy", "--quiet", &transport])
            .arg(format!("dir:{}", copy.display())),
    );
    assert_eq!(std::fs::read(copy.join("manifest.json")).unwrap(), raw);
    for l in layers {
        let hex = l["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        assert_eq!(sha256(&std::fs::read(copy.join(hex)).unwrap()), l["digest"]);
    }
    manifest
}

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(PathBuf),
}

/// Permission bits, shown in octal when a comparison fails.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Mode(u32);

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0o{:o}", self.0)
    }
}

/// A path's type and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: Kind,
    mode: Mode,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// A tree: relative path to node, and its groups of hard-linked files.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fs {
    nodes: BTreeMap<String, Node>,
    links: BTreeSet<BTreeSet<String>>,
}

/// Reads the tree under `root` (not `root` itself) from the filesystem.
fn scan(root: &Path) -> Fs {
    fn walk(
        dir: &Path,
        at: &str,
        nodes: &mut BTreeMap<String, Node>,
        inodes: &mut BTreeMap<(u64, u64), BTreeSet<String>>,
    ) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let path = if at.is_empty() {
                name
            } else {
                format!("{at}/{name}")
            };
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let kind = if meta.is_dir() {
                walk(&e.path(), &path, nodes, inodes);
                Kind::Dir
            } else if meta.is_symlink() {
                Kind::Symlink(std::fs::read_link(e.path()).unwrap())
            } else if meta.is_file() {
                inodes
                    .entry((meta.dev(), meta.ino()))
                    .or_default()
                    .insert(path.clone());
                Kind::File(std::fs::read(e.path()).unwrap())
            } else {
                panic!("{}: an unexpected file type", e.path().display());
            };
            let node = Node {
                kind,
                mode: Mode(meta.mode() & 0o7777),
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: meta.mtime(),
            };
            nodes.insert(path, node);
        }
    }
    let mut fs = Fs::default();
    let mut inodes = BTreeMap::new();
    walk(root, "", &mut fs.nodes, &mut inodes);
    fs.links = inodes.into_values().filter(|g| g.len() > 1).collect();
    fs
}

/// What the builder was asked for: the host directories given as
/// `--dir` layers, bottom first, as the image's tree. Owners become root
/// and every time `EPOCH`; a `.wh.NAME` file deletes NAME (and what is
/// under it) from the layers below.
fn expected_from_dirs(dirs: &[&Path]) -> Fs {
    let mut fs = Fs::default();
    for dir in dirs {
        let layer = scan(dir);
        for (path, mut node) in layer.nodes {
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", &path));
            if let Some(gone) = name.strip_prefix(".wh.") {
                let gone = if parent.is_empty() {
                    gone.to_string()
                } else {
                    format!("{parent}/{gone}")
                };
                let under = format!("{gone}/");
                let deleted = |p: &String| *p == gone || p.starts_with(&under);
                fs.nodes.retain(|p, _| !deleted(p));
                fs.links = std::mem::take(&mut fs.links)
                    .into_iter()
                    .map(|g| g.into_iter().filter(|p| !deleted(p)).collect())
                    .filter(|g: &BTreeSet<String>| g.len() > 1)
                    .collect();
                continue;
            }
            node.uid = 0;
            node.gid = 0;
            node.mtime = EPOCH;
            fs.nodes.insert(path, node);
        }
        fs.links.extend(layer.links);
    }
    fs
}

/// `umoci unpack` of `reference`: the bundle's rootfs as read back, and
/// its runtime config.
fn umoci_unpack(layout: &Path, reference: &str, bundle: &Path) -> (Fs, Value) {
    tool(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{reference}", layout.display()))
            .arg(bundle),
    );
    let config = serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap())
        .expect("umoci's config.json");
    (scan(&bundle.join("rootfs")), config)
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn file(root: &Path, path: &str, mode: u32, contents: &[u8]) {
    let p = root.join(path);
    std::fs::write(&p, contents).unwrap();
    set_mode(&p, mode);
}

fn dir(root: &Path, path: &str, mode: u32) {
    let p = root.join(path);
    std::fs::create_dir(&p).unwrap();
    set_mode(&p, mode);
}

/// The bottom layer: every kind of file the builder takes from a host
/// directory, in an order where a depth-first walk and tar order differ.
fn lower_layer(root: &Path) {
    set_mode(root, 0o755);
    dir(root, "bin", 0o755);
    file(root, "bin/tool", 0o755, b"#!/bin/sh\necho tool\n");
    file(root, "bin/suid", 0o4755, b"setuid");
    file(root, "bin/sgid", 0o2711, b"setgid");
    dir(root, "etc", 0o755);
    file(root, "etc/secret", 0o600, b"hunter2\n");
    file(root, "etc/group-readable", 0o640, b"g\n");
    file(root, "etc/read-only-empty", 0o444, b"");
    file(root, "etc/gone", 0o644, b"deleted by the upper layer\n");
    file(root, "etc/kept", 0o644, b"kept\n");
    dir(root, "etc/gone-dir", 0o755);
    file(
        root,
        "etc/gone-dir/inside",
        0o644,
        b"deleted with its directory\n",
    );
    // Owned by someone else on the host: root's in the image.
    std::os::unix::fs::chown(root.join("etc/kept"), Some(1000), Some(1000)).unwrap();
    dir(root, "empty", 0o700);
    dir(root, "tmp", 0o1777);
    dir(root, "usr", 0o755);
    dir(root, "usr/bin", 0o755);
    std::os::unix::fs::symlink("../../bin/tool", root.join("usr/bin/tool")).unwrap();
    std::os::unix::fs::symlink("/etc/secret", root.join("absolute")).unwrap();
    std::os::unix::fs::symlink("nowhere", root.join("dangling")).unwrap();
    // Hard links: "z" at the top is met first by a depth-first walk, but
    // "a/hard" comes first in tar order; "bin/tool2" shares a directory.
    file(root, "z", 0o640, b"one inode, three names\n");
    dir(root, "a", 0o755);
    std::fs::hard_link(root.join("z"), root.join("a/hard")).unwrap();
    std::fs::hard_link(root.join("z"), root.join("usr/z")).unwrap();
    std::fs::hard_link(root.join("bin/tool"), root.join("bin/tool2")).unwrap();
    // Names and link targets past the 100 bytes of a ustar header.
    let long = "long-directory-name-".repeat(6);
    dir(root, &long, 0o755);
    file(root, &format!("{long}/file"), 0o644, b"long\n");
    std::os::unix::fs::symlink(
        format!("/{long}/file"),
        root.join("symlink-with-a-long-target"),
    )
    .unwrap();
}

/// The upper layer: whiteouts for a file and a directory of the lower one,
/// a new file, a replaced file.
fn upper_layer(root: &Path) {
    set_mode(root, 0o755);
    dir(root, "etc", 0o755);
    file(root, "etc/.wh.gone", 0o644, b"");
    file(root, "etc/.wh.gone-dir", 0o644, b"");
    file(root, "etc/new", 0o600, b"added by the upper layer\n");
    file(root, "etc/secret", 0o400, b"replaced\n");
}

#[test]
fn a_directory_image_passes_skopeo_and_umoci() {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    std::fs::create_dir(&lower).unwrap();
    std::fs::create_dir(&upper).unwrap();
    lower_layer(&lower);
    upper_layer(&upper);
    let layout = t.path().join("layout");
    let reference = "example/app:1.0";
    let digest = berth_image_oci(
        &layout,
        reference,
        &[
            "--dir",
            lower.to_str().unwrap(),
            "--dir",
            upper.to_str().unwrap(),
            "--cmd",
            "/bin/tool",
            "--env",
            "GREETING=hello",
            "--workdir",
            "/etc",
        ],
    );
    let manifest = check_with_skopeo(&layout, reference, &digest, t.path());
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);

    if !is_root() {
        eprintln!("skipped umoci unpack: needs root");
        return;
    }
    let (unpacked, config) = umoci_unpack(&layout, reference, &t.path().join("bundle"));
    let expected = expected_from_dirs(&[&lower, &upper]);
    // The model itself: the whiteouts and the hard links are there to test.
    assert!(!expected.nodes.contains_key("etc/gone"));
    assert!(!expected.nodes.contains_key("etc/gone-dir/inside"));
    assert_eq!(expected.links.len(), 2, "{:?}", expected.links);
    for (path, node) in &expected.nodes {
        assert_eq!(
            unpacked.nodes.get(path),
            Some(node),
            "{path} in umoci's unpack"
        );
    }
    assert_eq!(
        unpacked.nodes.keys().collect::<Vec<_>>(),
        expected.nodes.keys().collect::<Vec<_>>()
    );
    assert_eq!(unpacked.links, expected.links, "hard-link groups");

    assert_eq!(config["process"]["args"], serde_json::json!(["/bin/tool"]));
    assert_eq!(config["process"]["cwd"], "/etc");
    let env = config["process"]["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e == "GREETING=hello"), "{env:?}");
}

/// `path` (a symlink at `link`, relative to the root) resolved lexically.
fn resolve(link: &str, target: &Path) -> String {
    let mut out: Vec<String> = if target.is_absolute() {
        Vec::new()
    } else {
        link.split('/')
            .map(String::from)
            .collect::<Vec<_>>()
            .split_last()
            .unwrap()
            .1
            .to_vec()
    };
    for c in target.components() {
        match c {
            Component::Normal(n) => out.push(n.to_str().unwrap().to_string()),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out.join("/")
}

/// The tree `berth-image oci --busybox` makes its layer of
/// (`images::busybox_tree` over the default busybox), in this file's terms:
/// every member's time is `EPOCH`.
fn expected_busybox() -> BTreeMap<String, Node> {
    use berth_image::oci::write::{Data, Node as TreeNode};
    let busybox = berth_image::Sources::default().busybox;
    let tree = berth_image::images::busybox_tree(&busybox)
        .unwrap_or_else(|e| panic!("{e} (busybox-static: scripts/install-deps)"));
    tree.iter()
        .map(|(path, e)| {
            let kind = match &e.node {
                TreeNode::Dir => Kind::Dir,
                TreeNode::File(Data::Bytes(b)) => Kind::File(b.clone()),
                TreeNode::File(Data::Host(p)) => Kind::File(std::fs::read(p).unwrap()),
                TreeNode::Symlink(t) => Kind::Symlink(PathBuf::from(t)),
                TreeNode::Link(t) => panic!("{path}: a hard link to {t} in busybox's tree"),
            };
            let node = Node {
                kind,
                mode: Mode(e.mode),
                uid: e.uid,
                gid: e.gid,
                mtime: EPOCH,
            };
            (path.to_string(), node)
        })
        .collect()
}

/// The applets `busybox --list-full` names (relative paths), but busybox.
fn busybox_applets() -> BTreeSet<String> {
    let list = tool(Command::new("/bin/busybox").arg("--list-full"));
    let applets: BTreeSet<String> = String::from_utf8(list)
        .unwrap()
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && l != "bin/busybox")
        .collect();
    assert!(applets.contains("bin/sh"), "{applets:?}");
    applets
}

#[test]
fn the_busybox_image_passes_skopeo_and_umoci() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    // Two images in one layout; each layer compression the builder offers.
    // umoci 0.4.7 (Debian 12) refuses zstd layers ("blob is not correct
    // mediatype"), which OCI added in image-spec 1.1: skopeo only for that.
    let mut digests = BTreeMap::new();
    for (reference, compression) in [
        ("busybox:latest", "gzip"),
        ("busybox:plain", "none"),
        ("busybox:zstd", "zstd"),
    ] {
        let digest = berth_image_oci(
            &layout,
            reference,
            &["--busybox", "--layer-compression", compression],
        );
        let manifest = check_with_skopeo(&layout, reference, &digest, t.path());
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
        digests.insert(reference, digest);
    }
    assert_eq!(
        digests.values().collect::<BTreeSet<_>>().len(),
        3,
        "one manifest per compression: {digests:?}"
    );

    if !is_root() {
        eprintln!("skipped umoci unpack: needs root");
        return;
    }
    let want = expected_busybox();
    let applets = busybox_applets();
    for reference in ["busybox:latest", "busybox:plain"] {
        let bundle = t
            .path()
            .join(format!("bundle-{}", reference.replace(':', "-")));
        let (got, _) = umoci_unpack(&layout, reference, &bundle);
        assert!(got.links.is_empty(), "{:?}", got.links);
        for a in &applets {
            let Some(Node {
                kind: Kind::Symlink(target),
                mode: Mode(0o777),
                uid: 0,
                gid: 0,
                mtime: EPOCH,
            }) = got.nodes.get(a)
            else {
                panic!("{reference}: applet {a} is not a root-owned symlink");
            };
            assert_eq!(resolve(a, target), "bin/busybox", "{a} -> {target:?}");
        }
        for (path, node) in &want {
            assert_eq!(got.nodes.get(path), Some(node), "{path} in {reference}");
        }
        assert_eq!(
            got.nodes.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
    }
}

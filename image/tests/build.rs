//! Whole builds with the real pinned kernel (fetched into berth's cache on
//! first use), read back with independent tools: GNU cpio lists and extracts
//! the archive. `/bin/busybox` (busybox-static) stands in for a static berth.
//! Needs scripts/install-deps.

// Test helpers, not production code: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_image::{BuildOptions, BuildReport, Compression, Error, ExtraFile};

const MANIFEST: &str = r#"version = 1

[host]
modules = ["no_such_module", "ext4", "nf-conntrack", "dummy"]

[containers.web]
image = "busybox:latest"

[containers.shell]
image = "docker.io/library/busybox"
"#;

const STATIC_BINARY: &str = "/bin/busybox";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(manifest: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.toml"), manifest).unwrap();
        Fixture { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn options(&self, out: &str) -> BuildOptions {
        let mut o = BuildOptions::new(self.path("manifest.toml"), self.path(out), STATIC_BINARY);
        o.compression = Compression::FAST;
        o.mtime = Some(0);
        o
    }
}

fn build(o: &BuildOptions) -> BuildReport {
    berth_image::build(o).unwrap_or_else(|e| panic!("build failed: {e}"))
}

fn decompress(path: &Path) -> Vec<u8> {
    let data = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(&data[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
    } else if data.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(&data[..])
            .read_to_end(&mut out)
            .unwrap();
    } else {
        out = data;
    }
    out
}

/// Runs GNU cpio with `args` on `archive`, returning stdout.
fn cpio(args: &[&str], archive: &[u8], dir: &Path) -> Vec<u8> {
    let mut child = Command::new("cpio")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cpio is not installed: run scripts/install-deps");
    let mut stdin = child.stdin.take().unwrap();
    let data = archive.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "cpio {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn two_builds_from_the_same_inputs_are_byte_identical() {
    let f = Fixture::new(MANIFEST);
    let a = build(&f.options("a"));
    // Same contents through other paths, with other file times: the output
    // must not change.
    std::fs::copy(STATIC_BINARY, f.path("berth-copy")).unwrap();
    std::fs::write(f.path("manifest2.toml"), MANIFEST).unwrap();
    let mut o = f.options("b");
    o.berth = f.path("berth-copy");
    o.manifest = f.path("manifest2.toml");
    let b = build(&o);
    for name in ["initramfs.img", "vmlinuz", "cmdline"] {
        let x = std::fs::read(f.path("a").join(name)).unwrap();
        let y = std::fs::read(f.path("b").join(name)).unwrap();
        assert!(x == y, "{name} differs between two builds");
    }
    assert_eq!(a.initramfs_size, b.initramfs_size);
    // The fixed time is really what is written: another one changes bytes.
    let mut o = f.options("c");
    o.mtime = Some(1_700_000_000);
    build(&o);
    assert_ne!(
        std::fs::read(f.path("a/initramfs.img")).unwrap(),
        std::fs::read(f.path("c/initramfs.img")).unwrap()
    );
}

/// The shipping compression (zstd -19), built twice at once.
#[test]
fn release_compression_is_reproducible_too() {
    let f = Fixture::new(MANIFEST);
    let opts: Vec<BuildOptions> = ["r1", "r2"]
        .iter()
        .map(|out| {
            let mut o = f.options(out);
            o.compression = Compression::RELEASE;
            o
        })
        .collect();
    std::thread::scope(|s| {
        for o in &opts {
            s.spawn(|| build(o));
        }
    });
    let x = std::fs::read(f.path("r1/initramfs.img")).unwrap();
    let y = std::fs::read(f.path("r2/initramfs.img")).unwrap();
    assert!(x == y, "zstd -19 output differs between two builds");
    assert_eq!(decompress(&f.path("r1/initramfs.img")), {
        build(&f.options("fast"));
        decompress(&f.path("fast/initramfs.img"))
    });
}

#[test]
fn initramfs_layout_read_back_by_gnu_cpio() {
    let f = Fixture::new(MANIFEST);
    let r = build(&f.options("out"));
    let archive = decompress(&r.initramfs);
    assert_eq!(archive.len() as u64, r.cpio_size);

    let listing = String::from_utf8(cpio(
        &["-itv", "--quiet", "--numeric-uid-gid"],
        &archive,
        f.dir.path(),
    ))
    .unwrap();
    let lines: Vec<Vec<&str>> = listing
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len() as u64, r.entries);
    // Name is the 9th field (10th for device nodes: "5, 1" is two words).
    let name = |l: &Vec<&str>| if l[0].starts_with('c') { l[9] } else { l[8] }.to_string();
    let names: Vec<String> = lines.iter().map(name).collect();
    let find = |n: &str| {
        lines
            .iter()
            .find(|l| name(l) == n)
            .unwrap_or_else(|| panic!("{n} not in initramfs:\n{listing}"))
    };

    // Every entry: root-owned, fixed time; every parent listed before its
    // children; paths sorted component by component.
    for l in &lines {
        assert_eq!((l[2], l[3]), ("0", "0"), "{l:?}");
        assert!(l.contains(&"1970"), "{l:?}");
    }
    for (i, n) in names.iter().enumerate() {
        if let Some((parent, _)) = n.rsplit_once('/') {
            let p = names.iter().position(|x| x == parent).unwrap_or(usize::MAX);
            assert!(p < i, "{n} listed before its parent {parent}");
        }
    }
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| a.split('/').cmp(b.split('/')));
    assert_eq!(names, sorted);

    assert_eq!(find("init")[0], "-rwxr-xr-x");
    assert_eq!(
        find("dev/console")[..6],
        ["crw-------", "1", "0", "0", "5,", "1"]
    );
    assert_eq!(find("etc/berth/manifest.toml")[0], "-rw-r--r--");
    let modules = format!("lib/modules/{}", berth_image::kernel::RELEASE);
    for p in [
        "modules.dep",
        "modules.builtin",
        "modules.softdep",
        "kernel/fs/overlayfs/overlay.ko",
    ] {
        find(&format!("{modules}/{p}"));
    }
    // The manifest's modules: dummy is a module, nf-conntrack arrives as a
    // dependency anyway, ext4 is built in, no_such_module is reported.
    find(&format!("{modules}/kernel/drivers/net/dummy.ko"));
    assert!(
        r.modules.contains(&"dummy".to_string()) && r.modules.contains(&"nf_conntrack".to_string())
    );
    assert_eq!(r.builtin_modules, ["ext4"]);
    assert_eq!(r.missing_modules, ["no_such_module"]);
    let kos = names.iter().filter(|n| n.ends_with(".ko")).count();
    assert_eq!(kos, r.modules.len());

    // busybox, pre-unpacked into the shipped store: one layer, its record,
    // the image record and its config.
    assert_eq!(r.images, ["busybox:latest"]);
    let store = "usr/lib/berth/store";
    let layer_records: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with(&format!("{store}/layers/")) && n.ends_with(".json"))
        .collect();
    assert_eq!(layer_records.len(), 1, "{layer_records:?}");
    let image = layer_records[0].trim_end_matches(".json").to_string();
    assert_eq!(find(&format!("{image}/bin/busybox"))[0], "-rwxr-xr-x");
    assert_eq!(find(&format!("{image}/tmp"))[0], "drwxrwxrwt");
    let sh = find(&format!("{image}/bin/sh"));
    assert_eq!((sh[0], sh[sh.len() - 1]), ("lrwxrwxrwx", "busybox"));
    let records: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with(&format!("{store}/images/")) && n.ends_with(".json"))
        .collect();
    assert_eq!(records.len(), 1);

    // Contents, extracted by cpio: berth (static), manifest, modules.dep.
    let get = |p: &str| cpio(&["-i", "--quiet", "--to-stdout", p], &archive, f.dir.path());
    let init = get("init");
    assert_eq!(init, std::fs::read(STATIC_BINARY).unwrap());
    assert_eq!(berth_image::elf::check_static_executable(&init), Ok(()));
    assert_eq!(get("etc/berth/manifest.toml"), MANIFEST.as_bytes());
    let dep = String::from_utf8(get(&format!("{modules}/modules.dep"))).unwrap();
    assert_eq!(dep.lines().count(), r.modules.len());
    let virtio_net = dep
        .lines()
        .find(|l| l.starts_with("kernel/drivers/net/virtio_net.ko:"))
        .unwrap();
    assert!(
        virtio_net.ends_with(" kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko"),
        "{virtio_net}"
    );
    let record: serde_json::Value = serde_json::from_slice(&get(records[0])).unwrap();
    assert_eq!(record["names"], serde_json::json!(["busybox:latest"]));
    let config: serde_json::Value = serde_json::from_slice(&get(&format!(
        "{store}/blobs/sha256/{}",
        record["config"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
    )))
    .unwrap();
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));

    // The other outputs.
    assert_eq!(
        std::fs::read(&r.vmlinuz).unwrap(),
        std::fs::read(&r.kernel.vmlinuz).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(&r.cmdline).unwrap(),
        "console=ttyS0 quiet panic=-1 printk.devkmsg=on\n"
    );
    // No temporary files left behind.
    let mut left: Vec<_> = std::fs::read_dir(f.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["cmdline", "initramfs.img", "vmlinuz"]);
}

#[test]
fn every_compression_carries_the_same_archive() {
    let f = Fixture::new(MANIFEST);
    let mut archives = Vec::new();
    for (out, c) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip { level: 1 }),
        ("zstd", Compression::FAST),
    ] {
        let mut o = f.options(out);
        o.compression = c;
        archives.push(decompress(&build(&o).initramfs));
    }
    assert!(archives.windows(2).all(|w| w[0] == w[1]));
    assert!(archives[0].starts_with(b"070701"));
}

#[test]
fn extra_files_are_added() {
    let f = Fixture::new(MANIFEST);
    let mut o = f.options("out");
    o.extra_files.push(ExtraFile {
        path: "/etc/berth/scenario".into(),
        contents: b"hello\n".to_vec(),
        mode: 0o600,
    });
    let r = build(&o);
    let archive = decompress(&r.initramfs);
    assert_eq!(
        cpio(
            &["-i", "--quiet", "--to-stdout", "etc/berth/scenario"],
            &archive,
            f.dir.path()
        ),
        b"hello\n"
    );
    // A clash with the builder's own files is an error, not a silent overwrite.
    o.extra_files[0].path = "/init".into();
    let err = berth_image::build(&o).unwrap_err();
    assert!(matches!(err, Error::Extra { .. }), "{err}");
}

#[test]
fn refuses_a_dynamically_linked_berth() {
    let f = Fixture::new(MANIFEST);
    let mut o = f.options("out");
    o.berth = PathBuf::from("/bin/ls");
    let err = berth_image::build(&o).unwrap_err().to_string();
    assert!(
        err.starts_with("/bin/ls cannot be berth's /init: dynamically linked"),
        "{err}"
    );
    assert!(!f.path("out/initramfs.img").exists());

    o.berth = f.path("manifest.toml");
    let err = berth_image::build(&o).unwrap_err().to_string();
    assert!(
        err.contains("manifest.toml cannot be berth's /init: not an ELF file"),
        "{err}"
    );

    o.berth = f.path("missing");
    let err = berth_image::build(&o).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("cannot read {}", f.path("missing").display())),
        "{err}"
    );
}

#[test]
fn unknown_images_are_refused_naming_the_container() {
    let f = Fixture::new("version = 1\n[containers.db]\nimage = \"postgres:16\"\n");
    let err = berth_image::build(&f.options("out"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("container \"db\" uses image \"postgres:16\""),
        "{err}"
    );
}

#[test]
fn invalid_manifests_are_refused() {
    let f = Fixture::new("version = 1\n[host]\nmodules = 3\n");
    let err = berth_image::build(&f.options("out")).unwrap_err();
    assert!(matches!(err, Error::Manifest(_)), "{err}");
    assert!(err.to_string().contains("manifest.toml:3:"), "{err}");
}

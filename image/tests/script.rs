//! `scripts/build-image`, end to end, twice: it builds berth statically,
//! builds the image builder, and must give byte-identical outputs (the
//! flashable `disk.img` too, through `--disk --disk-size`) whose `/init` is
//! the static berth. Slow the first time (a release build of
//! berth); later runs reuse cargo's cache.

// Test helpers, not production code: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

fn run_script(root: &Path, manifest: &Path, out: &Path) {
    let output = Command::new(root.join("scripts/build-image"))
        .arg(manifest)
        .arg(out)
        // zstd -19 (the default) costs ~20 s a run; the level's own
        // reproducibility is tested in tests/build.rs.
        .args(["--disk", "--disk-size", "96M", "--compression", "zstd:3"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scripts/build-image failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `/init` inside an initramfs.img, extracted by GNU cpio.
fn extract_init(initramfs: &Path) -> Vec<u8> {
    let data = std::fs::read(initramfs).unwrap();
    let mut archive = Vec::new();
    zstd::stream::read::Decoder::new(&data[..])
        .unwrap()
        .read_to_end(&mut archive)
        .unwrap();
    let mut child = Command::new("cpio")
        .args(["-i", "--quiet", "--to-stdout", "init"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cpio is not installed: run scripts/install-deps");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &archive));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Where scripts/build-berth put berth: as that script does,
/// `$BERTH_STATIC_TARGET_DIR` (relative to the repository root) if set and
/// not empty, else `target/static`.
fn static_berth(root: &Path) -> PathBuf {
    let dir = std::env::var_os("BERTH_STATIC_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| root.join("target/static"), |d| root.join(d));
    dir.join("x86_64-unknown-linux-gnu/release/berth")
}

#[test]
fn two_script_runs_give_identical_bytes_and_a_static_init() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.toml");
    std::fs::write(
        &manifest,
        "version = 1\n[host]\nmodules = [\"no_such_module\"]\n\
         [containers.hello]\nimage = \"busybox:latest\"\n",
    )
    .unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_script(root, &manifest, &a);
    run_script(root, &manifest, &b);
    // Identical inputs are the premise: if berth's sources were edited
    // between the two runs (a shared work tree), the second run rebuilt
    // berth; build again until two runs see the same berth.
    for _ in 0..3 {
        if extract_init(&a.join("initramfs.img")) == extract_init(&b.join("initramfs.img")) {
            break;
        }
        eprintln!("berth changed between the two runs (init/ edited meanwhile?); building again");
        run_script(root, &manifest, &a);
        run_script(root, &manifest, &b);
    }
    for name in ["vmlinuz", "initramfs.img", "cmdline", "disk.img"] {
        let x = std::fs::read(a.join(name)).unwrap();
        let y = std::fs::read(b.join(name)).unwrap();
        assert!(
            x == y,
            "{name} differs between two scripts/build-image runs"
        );
    }

    let disk = std::fs::read(a.join("disk.img")).unwrap();
    assert_eq!(disk.len(), 96 << 20);
    let gpt = berth_image::disk::gpt::Gpt::parse(&disk).unwrap();
    assert_eq!(gpt.layout.partitions.len(), 2);

    // The /init inside is the statically built berth.
    let init = extract_init(&a.join("initramfs.img"));
    let berth_path = static_berth(root);
    let berth = std::fs::read(&berth_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", berth_path.display()));
    assert!(init == berth, "/init is not {}", berth_path.display());
    assert_eq!(berth_image::elf::check_static_executable(&init), Ok(()));
}

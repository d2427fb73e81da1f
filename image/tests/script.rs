//! `scripts/build-image`, end to end, twice: it builds berth statically,
//! builds the image builder, and must give byte-identical outputs whose
//! `/init` is the static berth. Slow the first time (a release build of
//! berth); later runs reuse cargo's cache.

// Test helpers, not production code: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::Path;
use std::process::Command;

fn run_script(root: &Path, manifest: &Path, out: &Path) {
    let output = Command::new(root.join("scripts/build-image"))
        .arg(manifest)
        .arg(out)
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
    for name in ["vmlinuz", "initramfs.img", "cmdline"] {
        let x = std::fs::read(a.join(name)).unwrap();
        let y = std::fs::read(b.join(name)).unwrap();
        assert!(
            x == y,
            "{name} differs between two scripts/build-image runs"
        );
    }

    // The /init inside is the statically built berth.
    let data = std::fs::read(a.join("initramfs.img")).unwrap();
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
    let berth =
        std::fs::read(root.join("target/static/x86_64-unknown-linux-gnu/release/berth")).unwrap();
    assert!(out.stdout == berth, "/init is not target/static/.../berth");
    assert_eq!(
        berth_image::elf::check_static_executable(&out.stdout),
        Ok(())
    );
}

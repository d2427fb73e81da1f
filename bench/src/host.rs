//! The rows measured on the host: sizes, instruction counts under
//! callgrind, image unpack against umoci.

use std::path::Path;
use std::process::Command;

use berth_image::{BuildOptions, Compression};
use serde_json::{Value, json};

use crate::guest::bench_lines;
use crate::stats::{Samples, round};
use crate::{Error, Result};

fn size(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| Error::new(format!("stat {}: {e}", path.display())))
}

/// The static binary, and the example image built as `scripts/build-image`
/// builds it (zstd level 19).
pub fn sizes(berth: &Path, example: &Path, out: &Path) -> Result<Value> {
    let dir = out.join("example");
    let mut opts = BuildOptions::new(example, &dir, berth);
    opts.compression = Compression::RELEASE;
    let report = berth_image::build(&opts)
        .map_err(|e| Error::new(format!("build {}: {e}", example.display())))?;
    Ok(json!({
        "berth_bytes": size(berth)?,
        "example": example.display().to_string(),
        "kernel_bytes": report.vmlinuz_size,
        "initramfs_bytes": report.initramfs_size,
        "initramfs_cpio_bytes": report.cpio_size,
        "image_bytes": report.vmlinuz_size + report.initramfs_size,
        "compression": report.compression.to_string(),
        "modules": report.modules.len(),
        "linuxkit_published_mb": {"base": 35, "ultra_minimal": 13},
    }))
}

/// Runs `args` under callgrind (with `toggle`, if any, as
/// `--toggle-collect`) and returns the instructions it counted.
fn callgrind(args: &[&str], toggle: Option<&str>, out: &Path) -> Result<u64> {
    let file = out.join("callgrind.out");
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()));
    if let Some(t) = toggle {
        cmd.arg(format!("--toggle-collect={t}"));
    }
    let o = cmd
        .args(args)
        .output()
        .map_err(|e| Error::new(format!("valgrind: {e}")))?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        return Err(Error::new(format!(
            "valgrind {args:?}: {}: {stderr}",
            o.status
        )));
    }
    let _ = std::fs::remove_file(&file);
    stderr
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("Collected :")?;
            rest.trim().replace(',', "").parse().ok()
        })
        .ok_or_else(|| Error::new(format!("no count from callgrind: {stderr}")))
}

/// Instruction counts: `berth check` of the full example (the whole
/// process), manifest parsing alone, and one container's spawn path on
/// the host, each `runs` times (they should agree to the instruction).
pub fn instructions(
    berth: &Path,
    hostbench: &Path,
    full: &Path,
    out: &Path,
    runs: usize,
) -> Result<Value> {
    let full_s = full.display().to_string();
    let berth_s = berth.display().to_string();
    let hb = hostbench.display().to_string();
    // The store is made natively: valgrind 3.19 cannot run berth's unpack
    // (openat2).
    let store = out.join("hostbench-store");
    let _ = std::fs::remove_dir_all(&store);
    std::fs::create_dir_all(&store)
        .map_err(|e| Error::new(format!("create {}: {e}", store.display())))?;
    let store_s = store.display().to_string();
    let o = Command::new(hostbench)
        .args(["prepare", &store_s])
        .output()
        .map_err(|e| Error::new(format!("{hb}: {e}")))?;
    if !o.status.success() {
        return Err(Error::new(format!(
            "berth-hostbench prepare: {}",
            String::from_utf8_lossy(&o.stderr)
        )));
    }
    let mut rows = serde_json::Map::new();
    let cases: [(&str, Vec<&str>, Option<&str>, &str); 3] = [
        (
            "check_full_toml",
            vec![&berth_s, "check", &full_s],
            None,
            "`berth check examples/full.toml`: the whole static release binary, start to exit",
        ),
        (
            "parse_full_toml",
            vec![&hb, "parse", &full_s, "1"],
            Some("*parse_once*"),
            "`berth_config::parse` of examples/full.toml alone",
        ),
        (
            "spawn_true",
            vec![&hb, "spawn", &berth_s, &store_s, "1", "--to-clone3"],
            Some("*spawn_once*"),
            "`berth::runtime` starting a busybox container, up to clone3: the spec, user, seccomp filter, cgroup with limits, runtime files (valgrind 3.19 runs neither clone3 nor openat2, so the count stops at clone3, and the image's /etc/passwd reads as missing)",
        ),
    ];
    for (name, args, toggle, what) in cases {
        let mut counts = Vec::new();
        for _ in 0..runs {
            counts.push(callgrind(&args, toggle, out)?);
        }
        let (lo, hi) = (
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
        );
        let spread = if lo > 0 {
            (hi - lo) as f64 / lo as f64 * 100.0
        } else {
            0.0
        };
        crate::log(&format!("callgrind {name}: {counts:?}"));
        rows.insert(
            name.into(),
            json!({"what": what, "instructions": counts, "spread_percent": round(spread, 3)}),
        );
    }
    let _ = std::fs::remove_dir_all(&store);
    Ok(Value::Object(rows))
}

/// Image import+unpack by berth's store against `umoci unpack`.
pub fn unpack(hostbench: &Path, rounds: usize) -> Result<Value> {
    let o = Command::new(hostbench)
        .args(["unpack", &rounds.to_string()])
        .output()
        .map_err(|e| Error::new(format!("{}: {e}", hostbench.display())))?;
    if !o.status.success() {
        return Err(Error::new(format!(
            "berth-hostbench unpack: {}",
            String::from_utf8_lossy(&o.stderr)
        )));
    }
    let lines = bench_lines(&String::from_utf8_lossy(&o.stdout));
    let image = lines
        .iter()
        .find(|l| l.kind == "unpack_image")
        .ok_or_else(|| Error::new("no unpack_image line"))?;
    let mib = image.num("mib")?;
    let (mut berth, mut umoci) = (Samples::new(), Samples::new());
    for l in lines.iter().filter(|l| l.kind == "unpack") {
        berth.push(l.num("berth_s")?);
        umoci.push(l.num("umoci_s")?);
    }
    Ok(json!({
        "image_mib": mib,
        "files": image.num("files")?,
        "layers": 3,
        "berth_s": berth.json(3),
        "umoci_s": umoci.json(3),
        "berth_mib_s": round(mib / berth.median(), 0),
        "umoci_mib_s": round(mib / umoci.median(), 0),
    }))
}

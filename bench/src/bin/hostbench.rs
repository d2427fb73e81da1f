//! `berth-hostbench`: the measurements of `scripts/bench` that run berth's
//! code on the host, in this process.
//!
//! ```text
//! berth-hostbench parse FILE N    parse the manifest FILE N times (callgrind
//!                                 counts `parse_once`)
//! berth-hostbench prepare DIR     import a busybox image into a store in DIR
//! berth-hostbench spawn BERTH DIR N [--to-clone3]
//!                                 start a busybox container running /bin/true
//!                                 through berth::runtime N times, as root,
//!                                 with DIR's store (callgrind counts
//!                                 `spawn_once`); BERTH is the static berth,
//!                                 a container's init. --to-clone3: under
//!                                 valgrind, which runs neither clone3 nor
//!                                 openat2 (3.19), the spawn ends at clone3's
//!                                 ENOSYS; that end is expected
//! berth-hostbench unpack ROUNDS   import+unpack a 64 MiB, 3-layer gzip image
//!                                 with berth's store and with `umoci unpack`,
//!                                 ROUNDS times each, as root
//! ```
//!
//! Results are lines `BENCH ...` on stdout. Built with the `bench-tools`
//! profile (release code, symbols kept) so that callgrind's
//! `--toggle-collect=*parse_once*` and `*spawn_once*` find the functions.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use berth::images::Store;
use berth::runtime::{Launch, NetSpec, Runtime, message, spec::StateDirs};
use berth::sys::Real;
use berth_image::oci::layer::Compression;
use berth_image::oci::spec::RunConfig;
use berth_image::oci::write::{self, ImageBuild, Layout};
use berth_image::ocibuild;

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let num = |s: &str| s.parse::<usize>().map_err(|_| format!("bad number {s:?}"));
    let result = match args.as_slice() {
        ["parse", file, n] => num(n).and_then(|n| parse(file, n)),
        ["prepare", dir] => busybox_store(Path::new(dir)).map(drop),
        ["spawn", berth, dir, n] => num(n).and_then(|n| spawn(Path::new(berth), Path::new(dir), n, false)),
        ["spawn", berth, dir, n, "--to-clone3"] => {
            num(n).and_then(|n| spawn(Path::new(berth), Path::new(dir), n, true))
        }
        ["unpack", rounds] => num(rounds).and_then(unpack),
        _ => Err("usage: berth-hostbench parse FILE N | prepare DIR | spawn BERTH DIR N [--to-clone3] | unpack ROUNDS".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-hostbench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

// ---- manifest parsing ---------------------------------------------------------

#[inline(never)]
fn parse_once(text: &str, origin: &str) -> usize {
    match berth_config::parse(std::hint::black_box(text), origin) {
        Ok(m) => m.containers.len(),
        Err(_) => 0,
    }
}

fn parse(file: &str, n: usize) -> Result<()> {
    let text = std::fs::read_to_string(file).map_err(io(file))?;
    let start = Instant::now();
    let mut containers = 0;
    for _ in 0..n {
        containers = parse_once(&text, file);
    }
    let each = start.elapsed().as_secs_f64() / n.max(1) as f64;
    if containers == 0 {
        return Err(format!("{file}: not a valid manifest with containers"));
    }
    println!("BENCH parse containers={containers} us={:.1}", each * 1e6);
    Ok(())
}

// ---- the spawn path -----------------------------------------------------------

/// berth's busybox image (`berth-image oci --busybox`: static busybox, a
/// symlink per applet, minimal `/etc`) written to `dir/layout` as
/// `busybox:latest` and imported into a store (`dir/images`), as berth
/// imports any image.
fn busybox_store(dir: &Path) -> Result<Store> {
    let layout = dir.join("layout");
    let mut config = ocibuild::default_config();
    config.cmd = Some(vec!["sh".into()]);
    ocibuild::build(&ocibuild::OciOptions {
        out: layout.clone(),
        reference: "busybox:latest".into(),
        layers: vec![ocibuild::LayerFrom::Busybox],
        config,
        compression: Compression::None,
        created: 0,
        sources: berth_image::Sources::default(),
        cache: dir.join("cache"),
    })
    .map_err(|e| e.to_string())?;
    let store = Store::new(dir.join("images"));
    store
        .import_path(&layout, None)
        .map_err(|e| e.to_string())?;
    Ok(store)
}

/// One container through berth's runtime, from spawn to its exit and
/// cleanup: what PID 1 does for a container, less the event loop.
#[inline(never)]
fn spawn_once(runtime: &Runtime, c: &berth_config::Container) -> Result<i32> {
    let launch = runtime
        .spawn(&Real, c, &NetSpec::default())
        .map_err(|e| e.to_string())?;
    let _ = berth::runtime::release(&launch.sync);
    let Launch {
        pid, sync, cgroup, ..
    } = launch;
    let failure = read_failure(sync);
    let mut status = 0;
    // SAFETY: waitpid on the child this process just made.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    for _ in 0..100 {
        if runtime.cleanup(&c.name, &cgroup) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    match failure {
        Some(f) => Err(f.to_string()),
        None => Ok(status),
    }
}

fn read_failure(fd: OwnedFd) -> Option<message::Failure> {
    let mut buf = vec![0u8; message::MAX];
    let mut f = std::fs::File::from(fd);
    let n = f.read(&mut buf).unwrap_or(0);
    message::decode(&buf[..n])
}

fn spawn(berth: &Path, dir: &Path, n: usize, to_clone3: bool) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("spawn needs root".into());
    }
    let store = Store::new(dir.join("images"));
    let cgroups = cgroup_parent()?;
    let runtime = Runtime {
        dirs: StateDirs {
            run: dir.join("run"),
            containers: dir.join("containers"),
            volumes: dir.join("volumes"),
        },
        store,
        cgroups: cgroups.clone(),
        resolv_conf: "/etc/resolv.conf".into(),
        init_binary: berth.to_path_buf(),
    };
    let src = "version = 1\n[containers.c]\nimage = \"busybox\"\ncommand = [\"true\"]\nnetwork_mode = \"none\"\n";
    let m = berth_config::parse(src, "bench.toml").map_err(|e| e.to_string())?;
    let c = m
        .containers
        .get("c")
        .ok_or("the manifest has no container c")?;
    let mut times = Vec::new();
    let mut result = Ok(());
    for _ in 0..n {
        let start = Instant::now();
        match spawn_once(&runtime, c) {
            Ok(0) => times.push(start.elapsed().as_secs_f64() * 1e6),
            Ok(status) => {
                result = Err(format!("the container's wait status was {status}"));
                break;
            }
            Err(e) if to_clone3 && e.contains("clone3") => {
                println!("BENCH spawn ended at clone3: {e}");
                break;
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let _ = std::fs::remove_dir(&cgroups);
    result?;
    if times.is_empty() {
        return Ok(());
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    println!("BENCH spawn runs={n} median_us={median:.0}");
    Ok(())
}

/// A cgroup v2 directory for the containers: the host's unified hierarchy
/// (at /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host).
fn cgroup_parent() -> Result<PathBuf> {
    for root in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if Path::new(root).join("cgroup.procs").exists() {
            // A fixed name: the paths berth writes are then the same from
            // run to run, and so are the instructions counted.
            let dir = Path::new(root).join("berth-hostbench");
            std::fs::create_dir_all(&dir).map_err(io(dir.display()))?;
            return Ok(dir);
        }
    }
    Err("no cgroup v2 hierarchy on this host".into())
}

// ---- image unpack against umoci ---------------------------------------------------

/// Deterministic file contents, about half compressible.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        out.extend_from_slice(&b[..4]);
        out.extend_from_slice(b"text");
    }
    out.truncate(len);
    out
}

/// An image of ordinary size: 64 MiB in 2049 files, 3 gzip layers.
/// Returns (layout, MiB, files).
fn bench_image(dir: &Path) -> Result<(PathBuf, f64, usize)> {
    let mut layers = Vec::new();
    let mut total = 0usize;
    let mut files = 0;
    for l in 0..3u64 {
        let mut tree = write::Tree::new();
        for i in 0..683u64 {
            let len = 4096 + ((i * 7919) % 61440) as usize;
            total += len;
            files += 1;
            tree.file(
                &format!("l{l}/d{}/f{i}", i % 32),
                0o644,
                write::Data::Bytes(content(l * 1000 + i, len)),
            )
            .map_err(|e| e.to_string())?;
        }
        let tar = tree.to_tar(0).map_err(|e| e.to_string())?;
        layers.push((
            write::layer_blob(tar, Compression::Gzip).map_err(|e| e.to_string())?,
            format!("layer {l}"),
        ));
    }
    let built = ImageBuild {
        layers,
        config: RunConfig::default(),
        created: 0,
    }
    .finish()
    .map_err(|e| e.to_string())?;
    let layout = dir.join("layout");
    Layout::open(&layout)
        .and_then(|mut l| l.add("bench", &built))
        .map_err(|e| e.to_string())?;
    Ok((layout, total as f64 / 1048576.0, files))
}

fn unpack(rounds: usize) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("unpack needs root (owners are kept, as berth keeps them)".into());
    }
    let dir = tempfile::tempdir().map_err(io("temporary directory"))?;
    let (layout, mib, files) = bench_image(dir.path())?;
    println!("BENCH unpack_image mib={mib:.1} files={files} layers=3");
    for round in 0..rounds {
        let bundle = dir.path().join(format!("bundle-{round}"));
        let start = Instant::now();
        let out = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:bench", layout.display()))
            .arg(&bundle)
            .output()
            .map_err(io("umoci"))?;
        let umoci = start.elapsed().as_secs_f64();
        if !out.status.success() {
            return Err(format!(
                "umoci unpack: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let _ = std::fs::remove_dir_all(&bundle);

        let mut store = Store::new(dir.path().join(format!("store-{round}")));
        store.unpack.chown = true;
        let start = Instant::now();
        store
            .import_path(&layout, Some("bench".into()))
            .map_err(|e| e.to_string())?;
        let berth = start.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(dir.path().join(format!("store-{round}")));
        println!("BENCH unpack berth_s={berth:.3} umoci_s={umoci:.3}");
    }
    Ok(())
}

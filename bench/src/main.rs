//! `berth-bench`: berth against its peers, side by side, in one run.
//! `scripts/bench` builds what it needs and runs it:
//!
//! ```text
//! berth-bench --berth STATIC_BERTH --guest GUEST_HELPER --hostbench HOSTBENCH
//!             [--out DIR] [--json FILE] [--md FILE] [--boots N] [--starts N]
//!             [--idle-secs N] [--only SECTION,...]
//! berth-bench --render-only [--json FILE] [--md FILE]
//! ```
//!
//! `--render-only` writes the Markdown again from the JSON, measuring
//! nothing (after a change to `render`).
//!
//! Sections, in the order they run: `size`, `boot`, `start`, `ports`,
//! `scale` (memory with 0/10/100 idle containers, and 200 containers),
//! `callgrind`, `unpack`; `memory` alone is the quick part of `scale`:
//! memory with 0 and 10 idle containers. It writes `bench/results.json` (every sample)
//! and `docs/benchmarks.md` (the tables, made from the JSON) from one run.
//!
//! Where the code is:
//! - `images`: the guest images (berth's, and the busybox+crun baseline);
//! - `oci`: the OCI configs crun and runc get, equivalent to berth's;
//! - `boot`: the boot row;
//! - `guest`: the rows measured in berth's main guest;
//! - `host`: sizes, callgrind counts, image unpack;
//! - `render`: the Markdown;
//! - `stats`: medians and percentiles.
//!
//! The guest side is `bench/guest` (`berth-bench-guest`); the host side of
//! callgrind and unpack is `src/bin/hostbench.rs` (`berth-hostbench`).

mod boot;
mod guest;
mod host;
mod images;
mod oci;
mod render;
mod stats;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::{Value, json};

/// An error, as a message.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    /// An error saying `msg`.
    pub fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<berth_qemu_test::Error> for Error {
    fn from(e: berth_qemu_test::Error) -> Self {
        Error(e.to_string())
    }
}

/// The bench's result type.
pub type Result<T> = std::result::Result<T, Error>;

fn started() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// A progress line on stderr, with the time since the start.
pub fn log(msg: &str) {
    let s = started().elapsed().as_secs();
    eprintln!("bench [{:2}:{:02}] {msg}", s / 60, s % 60);
}

#[derive(Debug)]
struct Args {
    berth: PathBuf,
    guest: PathBuf,
    hostbench: PathBuf,
    out: PathBuf,
    json: PathBuf,
    md: PathBuf,
    boots: usize,
    starts: usize,
    idle_secs: usize,
    only: Option<Vec<String>>,
    render_only: bool,
}

const SECTIONS: [&str; 8] = [
    "size",
    "boot",
    "start",
    "ports",
    "memory",
    "scale",
    "callgrind",
    "unpack",
];

const USAGE: &str = "usage: berth-bench --berth PATH --guest PATH --hostbench PATH [--out DIR] \
[--json FILE] [--md FILE] [--boots N] [--starts N] [--idle-secs N] [--only SECTION,...]
       berth-bench --render-only [--json FILE] [--md FILE]";

fn parse_args() -> std::result::Result<Args, String> {
    let root = berth_qemu_test::scenario::repo_root();
    let mut a = Args {
        berth: PathBuf::new(),
        guest: PathBuf::new(),
        hostbench: PathBuf::new(),
        out: berth_qemu_test::paths::target_dir().join("bench"),
        json: root.join("bench/results.json"),
        md: root.join("docs/benchmarks.md"),
        boots: 5,
        starts: 20,
        idle_secs: 10,
        only: None,
        render_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|_| format!("bad number {v:?}"));
        match flag.as_str() {
            "--berth" => a.berth = value()?.into(),
            "--guest" => a.guest = value()?.into(),
            "--hostbench" => a.hostbench = value()?.into(),
            "--out" => a.out = value()?.into(),
            "--json" => a.json = value()?.into(),
            "--md" => a.md = value()?.into(),
            "--boots" => a.boots = num(value()?)?,
            "--starts" => a.starts = num(value()?)?,
            "--idle-secs" => a.idle_secs = num(value()?)?,
            "--only" => {
                let v = value()?;
                let list: Vec<String> = v.split(',').map(str::to_owned).collect();
                if let Some(bad) = list.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
                    return Err(format!("unknown section {bad:?}; sections: {SECTIONS:?}"));
                }
                a.only = Some(list);
            }
            "--render-only" => a.render_only = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.render_only {
        return Ok(a);
    }
    for (what, p) in [
        ("--berth", &a.berth),
        ("--guest", &a.guest),
        ("--hostbench", &a.hostbench),
    ] {
        if !p.is_file() {
            return Err(format!("{what}: no file at {:?}\n{USAGE}", p));
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    started();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let result = if args.render_only {
        render_only(&args)
    } else {
        run(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn proc_field(file: &str, key: &str) -> String {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default()
}

/// Where and on what this run happens.
fn meta(root: &Path) -> Value {
    let root_s = root.display().to_string();
    let git = |args: &[&str]| {
        let mut a = vec!["-C", root_s.as_str()];
        a.extend_from_slice(args);
        command_line("git", &a)
    };
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let mem_kib: f64 = proc_field("/proc/meminfo", "MemTotal")
        .trim_end_matches(" kB")
        .parse()
        .unwrap_or(0.0);
    let qemu = std::env::var("BERTH_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into());
    json!({
        "date": command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        "commit": git(&["rev-parse", "--short=12", "HEAD"]),
        "commit_subject": git(&["log", "-1", "--format=%s"]),
        "dirty": dirty,
        "cpu": proc_field("/proc/cpuinfo", "model name"),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory_gib": stats::round(mem_kib / 1048576.0, 1),
        "host_kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "load_at_start": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "guest_kernel": berth_image::kernel::RELEASE,
        "qemu": command_line(&qemu, &["--version"]).lines().next().unwrap_or("").to_owned(),
        "machine": "microvm, 1 vCPU, 512 MiB (1 GiB for the main guest)",
        "crun": command_line(images::CRUN, &["--version"]).lines().next().unwrap_or("").to_owned(),
        "runc": command_line(images::RUNC, &["--version"]).lines().next().unwrap_or("").to_owned(),
        "valgrind": command_line("valgrind", &["--version"]),
        "umoci": command_line("umoci", &["--version"]),
    })
}

fn run(a: &Args) -> Result<()> {
    let root = berth_qemu_test::scenario::repo_root();
    let wants = |s: &str| a.only.as_ref().is_none_or(|o| o.iter().any(|x| x == s));
    std::fs::create_dir_all(&a.out)
        .map_err(|e| Error::new(format!("create {}: {e}", a.out.display())))?;
    let mut results = serde_json::Map::new();
    results.insert("meta".into(), meta(&root));
    let inputs = images::Inputs {
        berth: a.berth.clone(),
        guest: a.guest.clone(),
        out: a.out.clone(),
    };

    if wants("size") {
        log("size: building examples/demo.toml as scripts/build-image does");
        let v = host::sizes(&a.berth, &root.join("examples/demo.toml"), &a.out)?;
        results.insert("size".into(), v);
    }

    let mut accel = None;
    if wants("boot") {
        log("boot: building berth's boot image and the busybox+crun baseline");
        let b = images::berth_boot(&inputs)?;
        let l = images::baseline(&inputs)?;
        accel = Some(accelerator(&b)?);
        let v = boot::run(&b, &l, a.boots)?;
        results.insert("boot".into(), v);
    }

    if wants("start") || wants("ports") || wants("memory") || wants("scale") {
        log("main guest: building and booting berth's main bench image");
        let image = images::berth_main(&inputs)?;
        let g = guest::Guest::boot(&image)?;
        accel = Some(if g.vm().kvm() { "kvm" } else { "tcg" }.to_owned());
        log("main guest: ready");
        if wants("start") {
            log(&format!(
                "start: {} rounds of berth, crun, runc, unshare",
                a.starts
            ));
            results.insert("start".into(), guest::starts(&g, a.starts)?);
        }
        if wants("ports") {
            log("ports: published port against host networking");
            results.insert("ports".into(), guest::ports(&g, 32, 100, 3)?);
        }
        if wants("scale") {
            log("memory and scale: 0, 10, 100 idle containers, then 200");
            let (memory, scale) = guest::fleets(&g, a.idle_secs)?;
            results.insert("memory".into(), memory);
            results.insert("scale".into(), scale);
        } else if wants("memory") {
            log("memory: 0 and 10 idle containers");
            results.insert("memory".into(), guest::memory(&g)?);
        }
        let berth_lines: Vec<String> = g
            .vm()
            .console()
            .lines()
            .filter(|l| l.contains("berth: WARN") || l.contains("berth: ERROR"))
            .map(str::to_owned)
            .collect();
        results.insert("main_guest_problems".into(), json!(berth_lines));
    }

    if wants("callgrind") {
        log("callgrind: instruction counts");
        let v = host::instructions(
            &a.berth,
            &a.hostbench,
            &root.join("examples/full.toml"),
            &a.out,
            2,
        )?;
        results.insert("callgrind".into(), v);
    }

    if wants("unpack") {
        log("unpack: berth's image store against umoci");
        results.insert("unpack".into(), host::unpack(&a.hostbench, 3)?);
    }

    if let (Some(acc), Some(m)) = (accel, results.get_mut("meta")) {
        m["accelerator"] = json!(acc);
    }
    let mut v = Value::Object(results);
    v["goals"] = render::goals(&v);
    v["meta"]["elapsed_s"] = json!(started().elapsed().as_secs());
    v["meta"]["load_at_end"] = json!(
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let json_text = serde_json::to_string_pretty(&v).map_err(|e| Error::new(e.to_string()))?;
    write(&a.json, &(json_text + "\n"))?;
    write(&a.md, &render::markdown(&v))?;
    log(&format!(
        "wrote {} and {}",
        a.json.display(),
        a.md.display()
    ));
    Ok(())
}

/// Writes the Markdown from the JSON of an earlier run.
fn render_only(a: &Args) -> Result<()> {
    let text = std::fs::read_to_string(&a.json)
        .map_err(|e| Error::new(format!("read {}: {e}", a.json.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::new(format!("{}: {e}", a.json.display())))?;
    write(&a.md, &render::markdown(&v))?;
    log(&format!(
        "wrote {} from {}",
        a.md.display(),
        a.json.display()
    ));
    Ok(())
}

/// The accelerator a bench VM gets ("kvm" where the harness's probe found
/// KVM working, else "tcg").
fn accelerator(image: &berth_qemu_test::scenario::Image) -> Result<String> {
    let vm = berth_qemu_test::scenario::launch_image("bench-accel", image, |c| c)?;
    Ok(if vm.kvm() { "kvm" } else { "tcg" }.to_owned())
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::new(format!("create {}: {e}", dir.display())))?;
    }
    std::fs::write(path, text).map_err(|e| Error::new(format!("write {}: {e}", path.display())))
}

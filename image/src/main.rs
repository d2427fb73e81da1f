//! `berth-image`: the image builder's command line.
//!
//! ```text
//! berth-image build MANIFEST OUTDIR --berth PATH [--cmdline "..."]
//!                   [--compression zstd:19|zstd:3|gzip:9|none]
//!                   [--file PATH_IN_IMAGE=HOST_FILE]...   (mode from the host file)
//! berth-image kernel        fetch the pinned kernel into the cache; print its paths
//! ```
//! Errors are one line on stderr, naming what failed and where; the exit
//! status is then 1 (2 for a usage error).

use std::path::PathBuf;
use std::process::ExitCode;

use berth_image::{BuildOptions, Compression, ExtraFile, Progress, kernel};

const USAGE: &str = "usage:
  berth-image build MANIFEST OUTDIR --berth PATH [--cmdline \"...\"] [--compression zstd:LEVEL|gzip:LEVEL|none]
                    [--file PATH_IN_IMAGE=HOST_FILE]...
  berth-image kernel";

fn parse_compression(s: &str) -> Option<Compression> {
    match s.split_once(':') {
        None if s == "none" => Some(Compression::None),
        None if s == "zstd" => Some(Compression::RELEASE),
        None if s == "gzip" => Some(Compression::Gzip { level: 9 }),
        Some(("zstd", l)) => l.parse().ok().map(|level| Compression::Zstd { level }),
        Some(("gzip", l)) => l.parse().ok().map(|level| Compression::Gzip { level }),
        _ => None,
    }
}

fn extra_file(path: &str, host: &str) -> Result<ExtraFile, String> {
    use std::os::unix::fs::PermissionsExt;
    let err = |e: std::io::Error| format!("cannot read {host}: {e}");
    let mode = std::fs::metadata(host).map_err(err)?.permissions().mode() & 0o7777;
    let contents = std::fs::read(host).map_err(err)?;
    Ok(ExtraFile {
        path: path.to_string(),
        contents,
        mode,
    })
}

/// A failed command: a usage error (exit 2) or a failed build (exit 1).
enum Failure {
    Usage(String),
    Failed(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Usage(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Self {
        Failure::Usage(s.to_string())
    }
}

fn build(args: &[String]) -> Result<(), Failure> {
    let mut positional = Vec::new();
    let mut berth = None;
    let mut cmdline = None;
    let mut compression = Compression::RELEASE;
    let mut extra_files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().cloned().ok_or(format!("{flag} needs a value"));
        match a.as_str() {
            "--berth" => berth = Some(PathBuf::from(value("--berth")?)),
            "--cmdline" => cmdline = Some(value("--cmdline")?),
            "--compression" => {
                let v = value("--compression")?;
                compression = parse_compression(&v).ok_or(format!("unknown compression {v:?}"))?;
            }
            "--file" => {
                let v = value("--file")?;
                let (path, host) = v
                    .split_once('=')
                    .ok_or(format!("--file {v:?}: expected PATH_IN_IMAGE=HOST_FILE"))?;
                extra_files.push(extra_file(path, host).map_err(Failure::Failed)?);
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}").into()),
            _ => positional.push(a.clone()),
        }
    }
    let [manifest, out_dir] = positional.as_slice() else {
        return Err("build needs MANIFEST and OUTDIR".into());
    };
    let berth = berth.ok_or("build needs --berth PATH")?;
    let mut opts = BuildOptions::new(manifest, out_dir, berth);
    if let Some(c) = cmdline {
        opts.cmdline = c;
    }
    opts.compression = compression;
    opts.extra_files = extra_files;
    opts.verbose = true;
    let report =
        berth_image::build(&opts).map_err(|e| Failure::Failed(format!("build failed: {e}")))?;
    println!("{report}");
    Ok(())
}

fn kernel() -> Result<(), Failure> {
    let failed = |e: kernel::KernelError| Failure::Failed(e.to_string());
    let cache = kernel::cache_dir().map_err(failed)?;
    let k = kernel::ensure_with(&cache, &Progress::stderr()).map_err(failed)?;
    println!("version     {}", k.version);
    println!("vmlinuz     {}", k.vmlinuz.display());
    println!("modules_dir {}", k.modules_dir.display());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => build(&args[1..]),
        Some("kernel") if args.len() == 1 => kernel(),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("berth-image: {e}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(e)) => {
            eprintln!("berth-image: {e}");
            ExitCode::FAILURE
        }
    }
}

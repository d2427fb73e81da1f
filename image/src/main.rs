//! `berth-image`: the image builder's command line.
//!
//! ```text
//! berth-image build MANIFEST OUTDIR --berth PATH [--cmdline "..."]
//!                   [--compression zstd:19|zstd:3|gzip:9|none]
//!                   [--file PATH_IN_IMAGE=HOST_FILE]...   (mode from the host file)
//!                   [--image [NAME=]PATH]...   (OCI layout, dir or tar, or docker-save
//!                                               archive: unpacked into the initramfs)
//!                   [--import [NAME=]PATH]...  (the same, shipped as is: berth
//!                                               verifies and unpacks it at boot)
//!                   [--disk] [--disk-size SIZE] [--boot-loader PATH]
//!                                              (also OUTDIR/disk.img, a flashable
//!                                               GPT disk: see berth_image::disk)
//! berth-image oci OUTDIR --ref NAME:TAG (--busybox | --dir DIR | --deb PACKAGE)...
//!                   [--entrypoint ARG]... [--cmd ARG]... [--env K=V]... [--workdir DIR]
//!                   [--user USER] [--expose PORT/PROTO]... [--stop-signal SIG]
//!                   [--healthcheck CMD-SHELL:command|CMD:arg,arg] [--health-interval SECS]
//!                   [--layer-compression gzip|zstd|none]
//!                   build an OCI image into the layout OUTDIR (one layer per source)
//! berth-image kernel        fetch the pinned kernel into the cache; print its paths
//! ```
//! Errors are one line on stderr, naming what failed and where; the exit
//! status is then 1 (2 for a usage error).

use std::path::PathBuf;
use std::process::ExitCode;

use berth_image::images::{ImageInput, Ship};
use berth_image::ocibuild::{self, LayerFrom, OciOptions};
use berth_image::{BuildOptions, Compression, DiskRequest, ExtraFile, Progress, disk, kernel};

const USAGE: &str = "usage:
  berth-image build MANIFEST OUTDIR --berth PATH [--cmdline \"...\"] [--compression zstd:LEVEL|gzip:LEVEL|none]
                    [--file PATH_IN_IMAGE=HOST_FILE]... [--image [NAME=]PATH]... [--import [NAME=]PATH]...
                    [--disk] [--disk-size SIZE (default 256M)] [--boot-loader PATH (systemd-bootx64.efi)]
  berth-image oci OUTDIR --ref NAME:TAG (--busybox | --dir DIR | --deb PACKAGE)...
                  [--entrypoint ARG]... [--cmd ARG]... [--env K=V]... [--workdir DIR] [--user USER]
                  [--expose PORT/PROTO]... [--stop-signal SIG] [--healthcheck CMD-SHELL:command|CMD:a,b]
                  [--health-interval SECS] [--layer-compression gzip|zstd|none]
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
    let mut images = Vec::new();
    let mut disk_request: Option<DiskRequest> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().cloned().ok_or(format!("{flag} needs a value"));
        match a.as_str() {
            "--disk" => {
                disk_request.get_or_insert_with(DiskRequest::default);
            }
            "--disk-size" => {
                let v = value("--disk-size")?;
                let size = disk::parse_size(&v).map_err(|e| e.to_string())?;
                disk_request.get_or_insert_with(DiskRequest::default).size = size;
            }
            "--boot-loader" => {
                let v = value("--boot-loader")?;
                disk_request
                    .get_or_insert_with(DiskRequest::default)
                    .boot_loader = PathBuf::from(v);
            }
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
            "--image" => images.push(ImageInput::parse(&value("--image")?, Ship::Unpacked)),
            "--import" => images.push(ImageInput::parse(&value("--import")?, Ship::Archive)),
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
    opts.images = images;
    opts.disk = disk_request;
    opts.verbose = true;
    let report =
        berth_image::build(&opts).map_err(|e| Failure::Failed(format!("build failed: {e}")))?;
    println!("{report}");
    Ok(())
}

fn oci(args: &[String]) -> Result<(), Failure> {
    let mut positional = Vec::new();
    let mut reference = None;
    let mut layers = Vec::new();
    let mut config = ocibuild::default_config();
    let mut compression = berth_image::oci::layer::Compression::Gzip;
    let mut health = None;
    let mut interval = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().cloned().ok_or(format!("{flag} needs a value"));
        match a.as_str() {
            "--ref" => reference = Some(value("--ref")?),
            "--busybox" => layers.push(LayerFrom::Busybox),
            "--dir" => layers.push(LayerFrom::Dir(PathBuf::from(value("--dir")?))),
            "--deb" => layers.push(LayerFrom::Deb(value("--deb")?)),
            "--entrypoint" => config
                .entrypoint
                .get_or_insert_with(Vec::new)
                .push(value("--entrypoint")?),
            "--cmd" => config
                .cmd
                .get_or_insert_with(Vec::new)
                .push(value("--cmd")?),
            "--env" => {
                let v = value("--env")?;
                let env = config.env.get_or_insert_with(Vec::new);
                let key = v.split('=').next().unwrap_or_default().to_string();
                env.retain(|e| e.split('=').next() != Some(key.as_str()));
                env.push(v);
            }
            "--workdir" => config.working_dir = Some(value("--workdir")?),
            "--user" => config.user = Some(value("--user")?),
            "--stop-signal" => config.stop_signal = Some(value("--stop-signal")?),
            "--expose" => {
                config
                    .exposed_ports
                    .get_or_insert_with(Default::default)
                    .insert(value("--expose")?, serde_json::json!({}));
            }
            "--healthcheck" => health = Some(value("--healthcheck")?),
            "--health-interval" => {
                let v = value("--health-interval")?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("--health-interval {v:?}: seconds"))?;
                interval = Some(secs * 1_000_000_000);
            }
            "--layer-compression" => {
                compression = match value("--layer-compression")?.as_str() {
                    "gzip" => berth_image::oci::layer::Compression::Gzip,
                    "zstd" => berth_image::oci::layer::Compression::Zstd,
                    "none" => berth_image::oci::layer::Compression::None,
                    other => return Err(format!("unknown layer compression {other:?}").into()),
                }
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}").into()),
            _ => positional.push(a.clone()),
        }
    }
    let [out] = positional.as_slice() else {
        return Err("oci needs OUTDIR".into());
    };
    let reference = reference.ok_or("oci needs --ref NAME:TAG")?;
    reference
        .parse::<berth_config::ImageRef>()
        .map_err(|e| Failure::Usage(format!("--ref: {e}")))?;
    if layers.is_empty() {
        return Err("oci needs at least one --busybox, --dir or --deb".into());
    }
    if let Some(h) = health {
        config.healthcheck = Some(ocibuild::parse_healthcheck(&h, interval).ok_or(format!(
            "--healthcheck {h:?}: expected CMD-SHELL:command or CMD:arg,arg"
        ))?);
    }
    let created = berth_image::source_date_epoch().map_err(|e| Failure::Failed(e.to_string()))?;
    let cache = kernel::cache_dir().map_err(|e| Failure::Failed(e.to_string()))?;
    let opts = OciOptions {
        out: PathBuf::from(out),
        reference: reference.clone(),
        layers,
        config,
        compression,
        created: u64::from(created),
        sources: berth_image::Sources::default(),
        cache,
    };
    let digest = ocibuild::build(&opts).map_err(|e| Failure::Failed(format!("oci: {e}")))?;
    println!("{reference} {digest}");
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
        Some("oci") => oci(&args[1..]),
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

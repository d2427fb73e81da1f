//! The bench's guest images, all on the same pinned kernel:
//!
//! - [`berth_boot`]: berth with one busybox container whose first program
//!   prints the guest's uptime (the boot row);
//! - [`baseline`]: the LinuxKit-style baseline, a busybox `sh` init that
//!   leaves the initramfs for a tmpfs (as LinuxKit's init and berth do),
//!   makes berth's mounts, loads the modules berth loads, and starts the
//!   same container with Debian's crun (copied in with its libraries);
//! - [`berth_main`]: berth with a privileged `tools` container from which
//!   the guest helper runs crun, runc and unshare in the host's namespaces,
//!   berth's probe containers, and the TCP sinks of the port row.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_image::cpio::{Archive, Data};
use berth_image::{BuildOptions, Compression, ExtraFile, Progress};
use berth_qemu_test::scenario::Image;

use crate::oci::{self, LIB};
use crate::{Error, Result};

/// The host's statically linked busybox (Debian's busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";
/// crun and runc, as Debian installs them.
pub const CRUN: &str = "/usr/bin/crun";
/// runc.
pub const RUNC: &str = "/usr/sbin/runc";

/// The guest port of the published-port sink, and the host-mode sink's.
pub const SINK_BRIDGE_PORT: u16 = 9001;
/// The host-mode sink's port.
pub const SINK_HOST_PORT: u16 = 9002;
/// The port the tools container takes bench commands on.
pub const TOOLS_PORT: u16 = 9100;

/// Inputs every image needs.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The static berth.
    pub berth: PathBuf,
    /// The static guest helper (`berth-bench-guest`).
    pub guest: PathBuf,
    /// Where images are written.
    pub out: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::new(format!("read {}: {e}", path.display())))
}

fn extra(path: &str, contents: Vec<u8>, mode: u32) -> ExtraFile {
    ExtraFile {
        path: path.to_owned(),
        contents,
        mode,
    }
}

/// A program and the shared libraries `ldd` names for it, each at its own
/// path (the guest's root has no /lib otherwise).
pub fn with_libraries(program: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|e| Error::new(format!("ldd {program}: {e}")))?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "ldd {program}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut files = vec![(program.to_owned(), read(Path::new(program))?)];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libx.so.1 => /lib/x86_64-linux-gnu/libx.so.1 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/'))
            && !files.iter().any(|(q, _)| q == p)
        {
            files.push((p.to_owned(), read(Path::new(p))?));
        }
    }
    Ok(files)
}

fn build(
    name: &str,
    manifest: &str,
    extra_files: Vec<ExtraFile>,
    inputs: &Inputs,
) -> Result<Image> {
    let dir = inputs.out.join(name);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::new(format!("create {}: {e}", dir.display())))?;
    let manifest_path = dir.join("manifest.toml");
    std::fs::write(&manifest_path, manifest)
        .map_err(|e| Error::new(format!("write {}: {e}", manifest_path.display())))?;
    let mut opts = BuildOptions::new(&manifest_path, &dir, &inputs.berth);
    opts.extra_files = extra_files;
    berth_image::build(&opts).map_err(|e| Error::new(format!("build the {name} image: {e}")))?;
    Image::from_dir(&dir).map_err(Error::from)
}

fn helper(inputs: &Inputs) -> Result<ExtraFile> {
    Ok(extra(&format!("{LIB}/guest"), read(&inputs.guest)?, 0o755))
}

/// The manifest of the boot row: one container whose first program
/// prints `BENCH-MARK exec <uptime ns>`.
pub fn boot_manifest() -> String {
    format!(
        "version = 1\n{}",
        oci::berth_container("first", r#"["/bench/guest", "mark", "exec"]"#)
    )
}

/// berth's boot image.
pub fn berth_boot(inputs: &Inputs) -> Result<Image> {
    build(
        "berth-boot",
        &boot_manifest(),
        vec![helper(inputs)?],
        inputs,
    )
}

/// The containers of the main image, before any idle ones.
pub fn main_manifest() -> String {
    let mut m = String::from(
        r#"version = 1

[host]
on_fatal = "poweroff"

[host.network]
interfaces = [{ name = "eth0", dhcp = true }]

# The bench's tools: the guest helper takes berth-bench's commands on a
# port (forwarded from the host's 127.0.0.1 only), joins PID 1's namespaces
# and runs crun, runc and unshare as a process of the host would.
[containers.tools]
image = "busybox:latest"
command = ["/bench/guest", "serve", "9100"]
privileged = true
pid = "host"
network_mode = "host"
stop_signal = "SIGKILL"
volumes = ["/usr/lib/berth-bench:/bench:ro"]
"#,
    );
    m.push_str(&oci::berth_container(
        "probe-exec",
        r#"["/bench/guest", "stamp", "/out/stamp"]"#,
    ));
    m.push_str(&oci::berth_container("probe-true", r#"["true"]"#));
    m.push_str(&format!(
        r#"
[containers.sink-bridge]
image = "busybox:latest"
command = ["/bench/guest", "sink", "{p}"]
volumes = ["/usr/lib/berth-bench:/bench:ro"]
ports = ["{SINK_BRIDGE_PORT}:{p}"]
restart = "always"

[containers.sink-host]
image = "busybox:latest"
command = ["/bench/guest", "sink", "{SINK_HOST_PORT}"]
volumes = ["/usr/lib/berth-bench:/bench:ro"]
network_mode = "host"
restart = "always"
"#,
        p = 9000
    ));
    m
}

/// The main manifest with `n` idle containers `idle-0`...
pub fn fleet_manifest(n: usize) -> String {
    let mut m = main_manifest();
    for i in 0..n {
        m.push_str(&format!(
            "\n[containers.idle-{i}]\nimage = \"busybox:latest\"\ncommand = [\"sleep\", \"100000000\"]\nstop_signal = \"SIGKILL\"\n"
        ));
    }
    m
}

/// The sizes of idle fleets the main image carries manifests for.
pub const FLEETS: [usize; 4] = [0, 10, 100, 200];

/// berth's main bench image.
pub fn berth_main(inputs: &Inputs) -> Result<Image> {
    let mut files = vec![
        helper(inputs)?,
        extra(&format!("{LIB}/busybox"), read(Path::new(BUSYBOX))?, 0o755),
    ];
    for program in [CRUN, RUNC] {
        for (path, bytes) in with_libraries(program)? {
            if !files.iter().any(|f| f.path == path) {
                files.push(extra(&path, bytes, 0o755));
            }
        }
    }
    let root = "/run/bench/rootfs";
    for runtime in ["crun", "runc"] {
        for (metric, args) in [
            ("exec", vec!["/bench/guest", "stamp", "/out/stamp"]),
            ("true", vec!["/bin/true"]),
        ] {
            let cfg = oci::config(
                &args,
                root,
                &format!("/berth/containers/bench-{runtime}-{metric}"),
            );
            files.push(extra(
                &format!("{LIB}/oci/{runtime}-{metric}.json"),
                cfg.to_string().into_bytes(),
                0o644,
            ));
        }
    }
    for n in FLEETS {
        files.push(extra(
            &format!("{LIB}/fleet-{n}.toml"),
            fleet_manifest(n).into_bytes(),
            0o644,
        ));
    }
    build("berth-main", &main_manifest(), files, inputs)
}

/// The modules berth loads at boot, with their dependencies, in an order
/// insmod takes: (boot modules, device modules).
pub fn boot_modules() -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let a = berth_qemu_test::artifacts()?;
    let boot = a.modules_with_deps(&berth::boot::BOOT_MODULES)?;
    let devices: Vec<PathBuf> = a
        .modules_with_deps(&berth::boot::DEVICE_MODULES)?
        .into_iter()
        .filter(|m| !boot.contains(m))
        .collect();
    Ok((boot, devices))
}

/// The baseline's first stage: LinuxKit's init leaves the initramfs for a
/// tmpfs too, since pivot_root cannot move the initramfs.
const BASELINE_INIT: &str = r#"#!/bin/sh
/usr/lib/berth-bench/guest mark pid1
mount -t tmpfs -o mode=0755 tmpfs /newroot
cp -a /bin /containers /etc /init2 /lib /lib64 /usr /newroot/
mkdir /newroot/dev /newroot/proc /newroot/sys /newroot/run /newroot/tmp
exec switch_root /newroot /init2
"#;

/// The baseline's second stage: berth's boot mounts, its cgroup layout,
/// its modules (the device modules beside the container start, as berth
/// loads them), then the container with crun.
fn baseline_init2(boot: &[PathBuf], devices: &[PathBuf]) -> String {
    let insmod = |m: &PathBuf| {
        let f = m
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("insmod /lib/modules/{f}\n")
    };
    let mut s = String::from(
        r#"#!/bin/sh
/usr/lib/berth-bench/guest mark switched
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 shm /dev/shm
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 /sys/fs/cgroup
for c in cpu cpuset io memory pids; do echo +$c > /sys/fs/cgroup/cgroup.subtree_control; done
/usr/lib/berth-bench/guest mark mounted
"#,
    );
    for m in boot {
        s.push_str(&insmod(m));
    }
    s.push_str("(\n");
    for m in devices {
        s.push_str("  ");
        s.push_str(&insmod(m));
    }
    s.push_str(
        r#") &
/usr/lib/berth-bench/guest mark ready
mkdir -p /run/bench/out
crun run --bundle /containers/first first
/usr/lib/berth-bench/guest mark done
wait
dmesg | grep -m1 'Run /init as init process'
poweroff -f
"#,
    );
    s
}

fn arch<T>(r: std::result::Result<T, berth_image::cpio::CpioError>) -> Result<T> {
    r.map_err(|e| Error::new(format!("baseline initramfs: {e}")))
}

/// The baseline: the pinned kernel and an initramfs of busybox, crun with
/// its libraries, the modules, the guest helper and the container.
pub fn baseline(inputs: &Inputs) -> Result<Image> {
    let (boot, devices) = boot_modules()?;
    let dir = inputs.out.join("baseline");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::new(format!("create {}: {e}", dir.display())))?;
    let mut a = Archive::new();
    arch(a.add_file("bin/busybox", 0o755, Data::Bytes(read(Path::new(BUSYBOX))?)))?;
    for applet in [
        "sh",
        "mount",
        "mkdir",
        "cp",
        "switch_root",
        "insmod",
        "echo",
        "cat",
        "dmesg",
        "grep",
        "poweroff",
    ] {
        arch(a.add_symlink(&format!("bin/{applet}"), "busybox"))?;
    }
    for d in ["dev", "proc", "sys", "run", "tmp", "newroot", "etc"] {
        arch(a.add_dir(d, 0o755))?;
    }
    arch(a.add_char_device("dev/console", 0o600, 5, 1))?;
    arch(a.add_file(
        "init",
        0o755,
        Data::Bytes(BASELINE_INIT.as_bytes().to_vec()),
    ))?;
    arch(a.add_file(
        "init2",
        0o755,
        Data::Bytes(baseline_init2(&boot, &devices).into_bytes()),
    ))?;
    arch(a.add_file(
        &format!("{LIB}/guest"),
        0o755,
        Data::Bytes(read(&inputs.guest)?),
    ))?;
    for (path, bytes) in with_libraries(CRUN)? {
        arch(a.add_file(&path, 0o755, Data::Bytes(bytes)))?;
    }
    for m in boot.iter().chain(&devices) {
        let name = m
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        arch(a.add_file(&format!("lib/modules/{name}"), 0o644, Data::Bytes(read(m)?)))?;
    }
    let cfg = oci::config(
        &["/bench/guest", "mark", "exec"],
        "/containers/first/rootfs",
        "/containers/first",
    );
    arch(a.add_file(
        "containers/first/config.json",
        0o644,
        Data::Bytes(cfg.to_string().into_bytes()),
    ))?;
    let root = "containers/first/rootfs";
    arch(a.add_file(
        &format!("{root}/bin/busybox"),
        0o755,
        Data::Bytes(read(Path::new(BUSYBOX))?),
    ))?;
    for applet in ["sh", "true", "sleep"] {
        arch(a.add_symlink(&format!("{root}/bin/{applet}"), "busybox"))?;
    }
    for d in ["proc", "sys", "dev", "tmp", "etc", "bench", "out"] {
        arch(a.add_dir(&format!("{root}/{d}"), 0o755))?;
    }
    let initramfs = dir.join("initramfs.img");
    berth_image::initramfs::write(&a, &initramfs, Compression::FAST, 0, &Progress::quiet())
        .map_err(|e| Error::new(format!("write {}: {e}", initramfs.display())))?;
    let kernel = berth_qemu_test::artifacts()?.kernel;
    let vmlinuz = dir.join("vmlinuz");
    std::fs::copy(&kernel, &vmlinuz)
        .map_err(|e| Error::new(format!("copy {}: {e}", kernel.display())))?;
    std::fs::write(
        dir.join("cmdline"),
        format!("{}\n", berth_image::DEFAULT_CMDLINE),
    )
    .map_err(|e| Error::new(format!("write cmdline: {e}")))?;
    Image::from_dir(&dir).map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_valid() {
        for text in [boot_manifest(), main_manifest(), fleet_manifest(3)] {
            if let Err(e) = berth_config::parse(&text, "bench.toml") {
                panic!("{e}\n{text}");
            }
        }
        let m = berth_config::parse(&fleet_manifest(200), "f.toml").expect("valid");
        assert_eq!(m.containers.len(), 205);
    }

    #[test]
    fn the_baseline_loads_device_modules_beside_the_start() {
        let s = baseline_init2(
            &[PathBuf::from("/m/overlay.ko")],
            &[PathBuf::from("/m/evdev.ko")],
        );
        let overlay = s.find("insmod /lib/modules/overlay.ko\n").expect("overlay");
        let evdev = s.find("  insmod /lib/modules/evdev.ko\n").expect("evdev");
        let crun = s.find("crun run").expect("crun");
        assert!(overlay < evdev && evdev < crun);
        assert!(s.contains(") &\n"));
    }
}

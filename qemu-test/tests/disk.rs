//! The flashable disk image boots under UEFI (issue 6): `disk.img` as the
//! VM's only drive, Debian's OVMF as firmware (code read-only in pflash,
//! a private copy of its variables), and no `-kernel`: the firmware starts
//! systemd-boot from the ESP, which starts the kernel with berth's
//! initramfs. The example image (`examples/demo.toml`, with a small
//! container added that prints the kernel's command line) reaches
//! `berth: ready` this way and serves its page.
//!
//! Under TCG OVMF is slow: 20-45 s from QEMU's start to `ready` here
//! (see `berth_qemu_test::efi_disk`), so the waits are
//! [`EFI_BOOT_TIMEOUT`] (300 s).

// Helpers outside `#[test]` functions fail their test by panicking, as the
// tests themselves do (clippy.toml allows it inside tests only).
#![allow(clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use berth_image::DEFAULT_CMDLINE;
use berth_qemu_test::efi_disk::{
    EFI_BOOT_TIMEOUT, SCENARIO_DISK_SIZE, ScratchDisk, boot_disk, build_disk,
};
use berth_qemu_test::scenario::{self, HTTP_TIMEOUT, READY, berth_problems};
use berth_qemu_test::{HostFwd, UserNet, Vm, free_local_port};
use serde_json::Value;

/// Added to the demo's manifest: prints the kernel's command line.
const IDLE: &str = r#"
[containers.idle]
image = "busybox:latest"
command = ["sh", "-c", "echo \"cmdline: $(cat /proc/cmdline)\"; exec sleep 3600"]
init = true
"#;

fn get_json(vm: &Vm, path: &str) -> Value {
    let (status, body) = vm.http("GET", path, None, HTTP_TIMEOUT).expect(path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// The console up to `ready`, and QEMU's command line: no `-kernel`.
fn check_efi_boot(vm: &Vm) -> String {
    let cmd = vm.command_line();
    assert!(!cmd.contains("-kernel"), "{cmd}");
    assert!(cmd.contains("if=pflash"), "{cmd}");
    let console = vm.console();
    let ready = console.find(READY).expect("ready was seen");
    // OVMF's boot manager started the disk: that line comes before the
    // kernel's.
    let firmware = console
        .find("BdsDxe: starting Boot")
        .unwrap_or_else(|| panic!("no OVMF boot line before ready:\n{console}"));
    assert!(firmware < ready, "{console}");
    console[..ready].to_owned()
}

/// One OVMF boot for all the checks: under TCG the firmware is most of a
/// disk boot's 20-45 s, so the small manifest's container (`idle`, which
/// prints the kernel's command line) rides along in the demo's boot.
#[test]
fn the_demo_boots_from_disk_img_under_ovmf_without_a_kernel_option_and_serves_its_page() {
    let demo = scenario::repo_root().join("examples/demo.toml");
    let demo = std::fs::read_to_string(&demo).expect("examples/demo.toml");
    let manifest = format!("{demo}\n{IDLE}");
    let template = build_disk("efi-demo", &manifest, SCENARIO_DISK_SIZE).expect("disk image");
    let disk = ScratchDisk::copy_of(&template, "efi-demo").expect("copy");
    let port = free_local_port().expect("port");
    let started = Instant::now();
    let vm = boot_disk("efi-demo", &disk, |c| {
        c.network(UserNet::new().hostfwd(HostFwd::tcp(port, 8080)))
    })
    .expect("boot the demo from disk.img");
    eprintln!(
        "disk.img under OVMF: ready {:.1} s after QEMU started",
        started.elapsed().as_secs_f64()
    );
    let console = check_efi_boot(&vm);
    assert_eq!(
        berth_problems(&console),
        Vec::<String>::new(),
        "warnings or errors up to ready:\n{console}"
    );
    // The kernel got the loader entry's command line, the image's own,
    // after the `initrd=` that systemd-boot puts first for the entry's
    // initrd line.
    let line = vm
        .wait_for("cmdline: ", EFI_BOOT_TIMEOUT)
        .expect("the container prints /proc/cmdline");
    assert!(
        line.trim_end().ends_with(&format!(
            "cmdline: initrd=\\berth\\initramfs.img {DEFAULT_CMDLINE}"
        )),
        "{line:?}"
    );
    let info = get_json(&vm, "/v1/system/info");
    assert_eq!(info["manifest"]["ok"], true, "{info:#}");
    assert_eq!(info["hostname"], "berth-demo", "{info:#}");
    let containers = get_json(&vm, "/v1/containers");
    assert!(containers.to_string().contains("idle"), "{containers:#}");
    // web publishes 8080:80 on the host's eth0: through QEMU's forward to
    // the guest's 8080, once setup has run and httpd is up.
    let deadline = Instant::now() + EFI_BOOT_TIMEOUT;
    loop {
        let last = match http_get(port) {
            Ok(body) if body.contains("hello from berth") => break,
            Ok(body) => body,
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "no page from the demo's web: {last}\n{}",
            vm.console_tail(40)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    scenario::power_off(&vm).expect("power off");
    assert_eq!(vm.shutdown_reason().as_deref(), Some("guest-shutdown"));
}

/// `GET /` on 127.0.0.1:`port`, the whole response.
fn http_get(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

//! berth's boot, power and failure paths under QEMU (Foundation, issue 2).
//! Each scenario boots a real image built from a small manifest by the
//! [`scenario`] fixture and fails if the behaviour it names breaks:
//!
//! - power off through SIGTERM to PID 1, and through the ACPI power button;
//! - an invalid manifest, and a missing one: a clear error, a host that
//!   stays up and answers;
//! - a reboot through the API, down in order and up again;
//! - a boot step that fails (an unknown module): a warning, and a boot that
//!   still reaches ready with its containers;
//! - the fatal path (`berth.crash=panic`): power-off or reboot as
//!   configured, never a kernel panic;
//! - the demo manifest boots clean, with the cgroup controllers delegated;
//! - the `/init` in a built image is a statically linked executable;
//! - the static berth carries no unwind tables (it aborts on panic), and
//!   the functions of init/hot-functions.txt come first in its `.text`.
//!
//! (That two builds give byte-identical images, and that `/init` is the
//! static berth, is `image/tests/script.rs`, through `scripts/build-image`.)

// Helpers outside `#[test]` functions fail their test by panicking, as the
// tests themselves do (clippy.toml allows it inside tests only).
#![allow(clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_image::ExtraFile;
use berth_qemu_test::scenario::{
    self, BOOT_TIMEOUT, HTTP_TIMEOUT, READY, berth_problems, build_image, build_image_with,
};
use berth_qemu_test::{UserNet, Vm};
use serde_json::Value;

/// The line berth prints last, just before reboot(2), in an orderly
/// shutdown.
const UNMOUNTED: &str = "berth: power: unmounted ";

/// One container that keeps running, so shutdowns have something to stop.
/// With `init = true`, its `sleep` gets the stop signal (a bare `sleep` as
/// a PID namespace's init ignores SIGTERM and would be killed only after
/// the 10 s grace period).
const IDLE: &str = r#"
version = 1
[containers.idle]
image = "busybox:latest"
command = ["sleep", "3600"]
init = true
"#;

/// `GET path` over the control channel, as JSON; panics unless 200.
fn get_json(vm: &Vm, path: &str) -> Value {
    let (status, body) = vm.http("GET", path, None, HTTP_TIMEOUT).expect(path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// QEMU exits by itself with status 0 and `reason`, after an orderly
/// unmount and without a kernel panic.
fn assert_orderly_exit(vm: &Vm, reason: &str) {
    let exit = vm.wait_exit(BOOT_TIMEOUT).expect("QEMU exits by itself");
    let console = vm.console();
    let tail = vm.console_tail(40);
    assert!(exit.success(), "QEMU exited with {exit}:\n{tail}");
    assert_eq!(
        vm.shutdown_reason().as_deref(),
        Some(reason),
        "shutdown reason:\n{tail}"
    );
    assert!(
        console.contains(UNMOUNTED),
        "no orderly unmount line:\n{tail}"
    );
    assert!(!console.contains("Kernel panic"), "a kernel panic:\n{tail}");
}

/// The container `name` was stopped before the filesystems were unmounted
/// (in the last boot on the console).
fn assert_stopped_before_unmount(vm: &Vm, name: &str) {
    let console = vm.console();
    let boot = console.rfind("starting as PID 1").unwrap_or(0);
    let console = &console[boot..];
    let stopped = console.find(&format!("berth: supervisor: {name}: stopping → stopped"));
    let unmounted = console.find(UNMOUNTED);
    assert!(
        matches!((stopped, unmounted), (Some(s), Some(u)) if s < u),
        "{name} not stopped before the unmount:\n{console}"
    );
}

/// The console from its start up to the first `berth: ready` line.
fn console_until_ready(vm: &Vm) -> String {
    let console = vm.console();
    let end = console
        .find(READY)
        .map_or(console.len(), |i| i + READY.len());
    console[..end].to_owned()
}

// ---- (a) power off ------------------------------------------------------

#[test]
fn sigterm_to_pid_1_powers_off_in_order() {
    let manifest = r#"
version = 1
[containers.idle]
image = "busybox:latest"
command = ["sleep", "3600"]
init = true

[containers.killer]
image = "busybox:latest"
pid = "host"
restart = "no"
command = ["sh", "-c", "sleep 1; kill -TERM 1"]
"#;
    let vm = scenario::boot("sigterm", manifest, |c| c).expect("boot");
    vm.wait_for("berth: supervisor: SIGTERM: poweroff", BOOT_TIMEOUT)
        .expect("berth takes SIGTERM as a power-off");
    vm.wait_for(UNMOUNTED, BOOT_TIMEOUT).expect("unmount");
    assert_orderly_exit(&vm, "guest-shutdown");
    assert_stopped_before_unmount(&vm, "idle");
}

#[test]
fn the_acpi_power_button_powers_off_in_order() {
    let vm = scenario::boot("powerdown", IDLE, |c| c).expect("boot");
    vm.wait_for_line("idle running", BOOT_TIMEOUT, |l| {
        l.contains("idle: starting → running")
    })
    .expect("idle runs");
    // A press is only seen once berth has the button's device open (it
    // watches devices as they appear, so maybe not right at ready): press
    // until it is seen, and say so if it took more than one.
    let mut presses = 0;
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        vm.system_powerdown().expect("system_powerdown");
        presses += 1;
        match vm.wait_for("power button pressed: poweroff", Duration::from_secs(3)) {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => panic!("never seen: {e}"),
            Err(_) => {}
        }
    }
    if presses > 1 {
        eprintln!("the power button needed {presses} presses after ready");
    }
    assert_orderly_exit(&vm, "guest-shutdown");
    assert_stopped_before_unmount(&vm, "idle");
}

// ---- (b) invalid and missing manifests -----------------------------------

#[test]
fn an_invalid_manifest_is_reported_with_its_position_and_the_host_stays_up() {
    let broken =
        "version = 1\n\n[containers.web]\nimage = \"busybox:latest\"\nrestart = \"sometimes\"\n";
    let path = "/etc/berth/broken.toml";
    // What berth-config says about it on the host is what the guest must
    // show: file:line:column.
    let diag = match berth_config::parse(broken, path) {
        Err(d) => d.errors[0].clone(),
        Ok(_) => panic!("the broken manifest parses"),
    };
    assert_eq!(diag.line, 5, "{diag:?}");
    let position = format!("{path}:{}:{}", diag.line, diag.column);

    // The builder refuses an invalid main manifest, so the broken one rides
    // along as an extra file and the command line points berth at it.
    let extra = ExtraFile {
        path: path.into(),
        contents: broken.as_bytes().to_vec(),
        mode: 0o644,
    };
    let image = build_image_with("bad-manifest", IDLE, &[extra]).expect("image");
    let vm = scenario::boot_image("bad-manifest", &image, |c| {
        c.append(&format!("berth.manifest={path}"))
    })
    .expect("berth reaches ready even so");

    let console = console_until_ready(&vm);
    assert!(
        console.contains("berth: ERROR boot: invalid manifest; starting no containers"),
        "{console}"
    );
    let error_lines: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("berth: ERROR boot:"))
        .collect();
    assert!(
        error_lines.iter().any(|l| l.contains(&position)),
        "no {position} among {error_lines:#?}"
    );
    assert!(
        error_lines.iter().any(|l| l.contains("restart")),
        "the error names the key: {error_lines:#?}"
    );
    assert_host_up_with_manifest_error(&vm, path, &position);
    assert!(
        !vm.console().contains("idle: starting"),
        "no containers start"
    );
}

#[test]
fn a_missing_manifest_is_reported_and_the_host_stays_up() {
    let image = build_image("no-manifest", IDLE).expect("image");
    let vm = scenario::boot_image("no-manifest", &image, |c| {
        c.append("berth.manifest=/nope.toml")
    })
    .expect("berth reaches ready even so");
    let console = console_until_ready(&vm);
    assert!(
        console.contains("berth: ERROR boot: invalid manifest; starting no containers"),
        "{console}"
    );
    assert!(
        console
            .lines()
            .any(|l| l.contains("berth: ERROR boot:") && l.contains("/nope.toml")),
        "the error names the file:\n{console}"
    );
    assert_host_up_with_manifest_error(&vm, "/nope.toml", "/nope.toml");
}

/// The API answers, and `/v1/system/info` reports the manifest at `path`
/// as invalid, its error mentioning `needle`.
fn assert_host_up_with_manifest_error(vm: &Vm, path: &str, needle: &str) {
    assert_eq!(get_json(vm, "/v1/ping"), serde_json::json!({"ok": true}));
    let info = get_json(vm, "/v1/system/info");
    let m = &info["manifest"];
    assert_eq!(m["path"], path, "{info:#}");
    assert_eq!(m["ok"], false, "{info:#}");
    let error = m["error"].as_str().unwrap_or_default();
    assert!(error.contains(needle), "{needle} not in {info:#}");
}

// ---- (c) reboot ----------------------------------------------------------

#[test]
fn a_reboot_request_goes_down_in_order_and_comes_up_again() {
    let vm = scenario::boot("reboot", IDLE, |c| c.no_reboot(false)).expect("boot");
    let (status, body) = vm
        .http("POST", "/v1/system/reboot", None, HTTP_TIMEOUT)
        .expect("reboot request");
    assert_eq!(status, 202, "{body}");
    vm.wait_for("requested through the API: reboot", BOOT_TIMEOUT)
        .expect("berth takes the request");
    let line = vm
        .wait_for(UNMOUNTED, BOOT_TIMEOUT)
        .expect("orderly unmount");
    assert!(line.contains("reboot"), "{line}");
    assert_stopped_before_unmount(&vm, "idle");
    vm.wait_for(READY, BOOT_TIMEOUT)
        .expect("a second boot reaches ready");
    assert!(
        vm.exit_status().is_none(),
        "QEMU stays up across the reboot"
    );
    let console = vm.console();
    assert!(!console.contains("Kernel panic"), "{}", vm.console_tail(40));
    assert_eq!(console.matches("starting as PID 1").count(), 2, "{console}");

    // The API answers on the new boot.
    let info = wait_for_api(&vm);
    assert_eq!(info["manifest"]["ok"], true, "{info:#}");
    let events = vm.qmp_events();
    assert!(events.iter().any(|e| e["event"] == "RESET"), "{events:?}");

    let exit = scenario::power_off(&vm).expect("power off");
    assert!(exit.success(), "{exit}");
    assert_eq!(vm.shutdown_reason().as_deref(), Some("guest-shutdown"));
}

/// `/v1/system/info` once the API answers again after a reboot.
fn wait_for_api(vm: &Vm) -> Value {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        match vm.http("GET", "/v1/system/info", None, Duration::from_secs(5)) {
            Ok((200, body)) => return serde_json::from_str(&body).expect("JSON"),
            other if Instant::now() > deadline => panic!("API after reboot: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

// ---- (d) a failing boot step ---------------------------------------------

#[test]
fn an_unknown_module_is_a_warning_and_the_boot_goes_on() {
    let manifest = r#"
version = 1
[host]
modules = ["no_such_module"]

[containers.idle]
image = "busybox:latest"
command = ["sleep", "3600"]
init = true
"#;
    let vm = scenario::boot("bad-module", manifest, |c| c).expect("boot reaches ready");
    let console = console_until_ready(&vm);
    assert!(
        console.contains(
            "berth: WARN boot: module no_such_module: not found in modules.dep or modules.builtin"
        ),
        "{console}"
    );
    assert_eq!(
        berth_problems(&console).len(),
        1,
        "only that warning: {:#?}",
        berth_problems(&console)
    );
    vm.wait_for_line("idle running", BOOT_TIMEOUT, |l| {
        l.contains("idle: starting → running")
    })
    .expect("the container runs");
    assert_eq!(get_json(&vm, "/v1/system/info")["manifest"]["ok"], true);
}

// ---- (e) the fatal path --------------------------------------------------

#[test]
fn a_panic_in_pid_1_powers_off_when_configured_so() {
    let manifest = r#"
version = 1
[host]
on_fatal = "poweroff"

[containers.idle]
image = "busybox:latest"
command = ["sleep", "3600"]
init = true
"#;
    let vm = scenario::boot("panic-poweroff", manifest, |c| {
        c.append("berth.crash=panic")
    })
    .expect("boot");
    let line = vm
        .wait_for("berth: ERROR fatal: panic at ", BOOT_TIMEOUT)
        .expect("the fatal line");
    assert!(line.contains("; poweroff in 3 s"), "{line}");
    let exit = vm.wait_exit(BOOT_TIMEOUT).expect("QEMU exits by itself");
    assert!(exit.success(), "{exit}");
    assert_eq!(
        vm.shutdown_reason().as_deref(),
        Some("guest-shutdown"),
        "{}",
        vm.console_tail(20)
    );
    assert!(
        !vm.console().contains("Kernel panic"),
        "{}",
        vm.console_tail(40)
    );
}

#[test]
fn a_panic_in_pid_1_reboots_by_default_never_panicking_the_kernel() {
    // no_reboot (the harness's default) turns the guest's reboot into
    // QEMU's exit, with reason guest-reset.
    let vm = scenario::boot("panic-reboot", IDLE, |c| c.append("berth.crash=panic")).expect("boot");
    let line = vm
        .wait_for("berth: ERROR fatal: panic at ", BOOT_TIMEOUT)
        .expect("the fatal line");
    assert!(line.contains("; reboot in 3 s"), "{line}");
    let exit = vm.wait_exit(BOOT_TIMEOUT).expect("QEMU exits by itself");
    assert!(exit.success(), "{exit}");
    assert_eq!(
        vm.shutdown_reason().as_deref(),
        Some("guest-reset"),
        "{}",
        vm.console_tail(20)
    );
    // A kernel panic would end QEMU the same way: only its absence tells
    // berth's reboot from the kernel's.
    assert!(
        !vm.console().contains("Kernel panic"),
        "{}",
        vm.console_tail(40)
    );
}

// ---- the demo, and the image itself --------------------------------------

#[test]
fn the_demo_boots_clean_with_cgroup_controllers_delegated() {
    let demo = scenario::repo_root().join("examples/demo.toml");
    let manifest = std::fs::read_to_string(&demo).expect("examples/demo.toml");
    // A NIC, as scripts/run gives it, for the manifest's eth0.
    let vm = scenario::boot("demo", &manifest, |c| c.network(UserNet::new())).expect("boot");
    let console = console_until_ready(&vm);
    assert_eq!(
        berth_problems(&console),
        Vec::<String>::new(),
        "warnings or errors up to ready:\n{console}"
    );
    let info = get_json(&vm, "/v1/system/info");
    let controllers: Vec<&str> = info["cgroup_controllers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for c in ["cpu", "memory", "pids", "io"] {
        assert!(controllers.contains(&c), "no {c} in {info:#}");
    }
    assert_eq!(info["manifest"]["ok"], true, "{info:#}");
    assert_eq!(info["hostname"], "berth-demo", "{info:#}");
}

#[test]
fn the_init_in_a_built_image_is_statically_linked() {
    let image = build_image("static", IDLE).expect("image");
    let compressed = std::fs::read(&image.initramfs).expect("read initramfs");
    let mut archive = Vec::new();
    zstd::stream::read::Decoder::new(&compressed[..])
        .expect("zstd")
        .read_to_end(&mut archive)
        .expect("decompress");
    let mut cpio = Command::new("cpio")
        .args(["-i", "--quiet", "--to-stdout", "init"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cpio (scripts/install-deps)");
    let mut stdin = cpio.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&archive));
    let out = cpio.wait_with_output().expect("cpio");
    writer.join().expect("writer").expect("feed cpio");
    assert!(out.status.success() && !out.stdout.is_empty(), "{out:?}");

    let dir = std::env::temp_dir().join(format!("berth-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let init = dir.join("init");
    std::fs::write(&init, &out.stdout).expect("write init");
    let file = Command::new("file").arg(&init).output().expect("file(1)");
    let _ = std::fs::remove_dir_all(&dir);
    let what = String::from_utf8_lossy(&file.stdout);
    assert!(what.contains("ELF 64-bit"), "{what}");
    assert!(what.contains("statically linked"), "{what}");
    assert!(!what.contains("interpreter"), "{what}");
    assert_eq!(
        out.stdout,
        std::fs::read(scenario::berth_binary().expect("berth")).expect("berth"),
        "/init is the berth under test"
    );
}

#[test]
fn the_static_berth_carries_no_unwind_tables() {
    // It aborts on panic (the fatal tests above show its hook still runs),
    // so nothing reads unwind tables: scripts/build-berth links them out.
    let berth = std::fs::read(scenario::berth_binary().expect("berth")).expect("read berth");
    let elf = berth_image::elf::Elf::parse(&berth).expect("berth is ELF64");
    let has = |name: &str| elf.section(name).expect("section headers").is_some();
    assert!(has(".text"), "berth has a .text section");
    for gone in [".eh_frame", ".eh_frame_hdr", ".gcc_except_table"] {
        assert!(!has(gone), "{gone} in berth");
    }
}

#[test]
fn the_static_berth_has_its_hot_functions_first_in_text() {
    // scripts/build-berth writes the link map beside the binary.
    let berth = scenario::berth_binary().expect("berth");
    let map_path = berth.with_file_name("berth.map");
    let map = std::fs::read_to_string(&map_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (built by scripts/build-berth?)",
            map_path.display()
        )
    });
    let (start, funcs) = berth_qemu_test::layout::text_layout(&map).expect("a .text in the map");
    let list_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../init/hot-functions.txt");
    let list = std::fs::read_to_string(list_path).expect("init/hot-functions.txt");
    let hot: Vec<&str> = list
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // The boot path alone runs a couple of thousand functions: a list cut
    // short would otherwise pass the checks below vacuously.
    assert!(
        hot.len() >= 1000,
        "init/hot-functions.txt lists {} functions: run scripts/profile-layout",
        hot.len()
    );
    let found: Vec<(u64, u64)> = hot.iter().filter_map(|f| funcs.get(*f).copied()).collect();
    // Names change as the code does (a renamed function, a new version of
    // a crate): a list that no longer names the code lays nothing out.
    assert!(
        found.len() * 10 >= hot.len() * 9,
        "only {} of the {} functions in init/hot-functions.txt are in berth: \
         run scripts/profile-layout",
        found.len(),
        hot.len()
    );
    // Together at the start: within their own size of it, give or take
    // what cannot move (glibc's objects keep their functions together).
    let size: u64 = found.iter().map(|(_, s)| s).sum();
    let bound = start + size + size / 4;
    let within = found.iter().filter(|(a, s)| a + s <= bound).count();
    assert!(
        within * 100 >= found.len() * 95,
        "{within} of {} hot functions within {:#x}..{bound:#x}",
        found.len(),
        start
    );
}

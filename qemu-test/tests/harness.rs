//! The harness's self-tests: real QEMU boots of a busybox initramfs, each
//! checking one promise of the library. They fail if the harness breaks.
//!
//! Two tests re-run this binary as a child process (`child_vm_panics`,
//! `child_vm_aborts`, ignored unless `BERTH_QEMU_CHILD` is set) to prove that
//! a test that panics or aborts mid-boot leaves no QEMU behind.

// The helpers outside `#[test]` functions fail their test by panicking, as
// the tests themselves do (clippy.toml allows it inside tests only).
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_qemu_test::accel::{PROBE_TIMEOUT, probe_kvm};
use berth_qemu_test::{
    Accel, Artifacts, Error, HostFwd, HttpClient, Initramfs, Machine, SocketNet, TempInitramfs,
    UserNet, Vm, VmConfig, artifacts, free_local_port,
};

/// Generous: TCG boots take 3-5 s, but two run at once on two shared cores.
const BOOT: Duration = Duration::from_secs(120);

const CHILD_ENV: &str = "BERTH_QEMU_CHILD";

/// Both virtio transports, so the tests run on any machine type
/// (`BERTH_QEMU_MACHINE=microvm` has no PCI).
const VIRTIO_PCI: &str = "virtio_pci";
const VIRTIO_MMIO: &str = "virtio_mmio";

/// Shell helpers every test script can use.
const HELPERS: &str = r#"
cr=$(printf '\r')
# Sets PORT to the device of the virtio-serial port named "berth".
find_port() {
  PORT=
  for p in /sys/class/virtio-ports/*; do
    [ "$(cat $p/name 2>/dev/null)" = berth ] && PORT=/dev/${p##*/}
  done
  [ -n "$PORT" ] || { echo "no berth port"; ls /sys/class/virtio-ports; }
}
"#;

fn kit() -> Artifacts {
    artifacts().expect("the test kernel (BERTH_TEST_KERNEL)")
}

fn modules(kit: &Artifacts, names: &[&str]) -> Vec<PathBuf> {
    kit.modules_with_deps(names).expect("kernel modules")
}

/// Builds an initramfs running `script` (after [`HELPERS`]) with `mods`
/// loaded, and launches it with `tweak` applied to the config.
fn boot(
    name: &str,
    script: &str,
    mods: &[&str],
    tweak: impl FnOnce(VmConfig) -> VmConfig,
) -> (Vm, TempInitramfs) {
    let kit = kit();
    let initramfs =
        Initramfs::busybox(&format!("{HELPERS}\n{script}")).modules(modules(&kit, mods));
    let initrd = TempInitramfs::build(name, &initramfs).expect("initramfs");
    let config = tweak(VmConfig::kernel(name, &kit.kernel).initrd(initrd.path()));
    let vm = Vm::launch(&config).expect("launch");
    (vm, initrd)
}

/// The pids of live processes whose command line has `arg` as an argument.
fn processes_with_arg(arg: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

fn wait_no_process_with_arg(arg: &str, within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let left = processes_with_arg(arg);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn boots_to_a_marker_and_powers_off_with_status_0() {
    let script = r#"
echo HARNESS-READY
find_port
# The port reads EOF while the host side is not connected: poll.
until [ "$(head -c 1 $PORT 2>/dev/null)" = x ]; do sleep 0.1; done
echo GOT-BYTE
poweroff -f
"#;
    let (vm, _initrd) = boot(
        "poweroff",
        script,
        &[VIRTIO_PCI, VIRTIO_MMIO, "virtio_console"],
        |c| c,
    );
    assert!(
        !vm.kvm(),
        "KVM does not work on this machine; the harness must pick TCG"
    );
    let line = vm.wait_for("HARNESS-READY", BOOT).expect("marker");
    assert_eq!(line, "HARNESS-READY");
    let status = vm.qmp("query-status", None).expect("query-status");
    assert_eq!(status["status"], "running", "{status}");
    vm.channel()
        .expect("channel")
        .write_all(b"x")
        .expect("write to the port");
    vm.wait_for("GOT-BYTE", BOOT)
        .expect("the guest read the byte");
    let exit = vm.wait_exit(BOOT).expect("QEMU exits after poweroff");
    assert!(exit.success(), "{exit:?}");
    assert_eq!(vm.shutdown_reason().as_deref(), Some("guest-shutdown"));
    assert!(vm.console().contains("HARNESS-READY\n"));
}

#[test]
fn wait_for_moves_a_cursor_and_its_timeout_quotes_the_console() {
    let script = r#"
i=1
while [ $i -le 50 ]; do printf 'L%02d\n' $i; i=$((i+1)); done
echo ALL-PRINTED
sleep 600
"#;
    let (vm, _initrd) = boot("timeout", script, &[], |c| c);
    vm.wait_for("ALL-PRINTED", BOOT).expect("marker");
    // The cursor is past everything: an old line is not found again...
    let start = Instant::now();
    let err = vm
        .wait_for("L20", Duration::from_secs(2))
        .expect_err("L20 was before the cursor");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    let msg = err.to_string();
    assert!(matches!(err, Error::Timeout { .. }), "{msg}");
    // ...and the error quotes the last 40 lines, and the log's path.
    assert!(msg.contains("| ALL-PRINTED"), "{msg}");
    assert!(msg.contains("| L50"), "{msg}");
    assert!(msg.contains("| L12"), "{msg}");
    assert!(!msg.contains("| L05"), "{msg}");
    assert!(msg.contains(&vm.log_path().display().to_string()), "{msg}");
    // From the start, matches advance one by one.
    vm.rewind();
    assert_eq!(vm.wait_for("L2", BOOT).expect("L20"), "L20");
    assert_eq!(vm.wait_for("L2", BOOT).expect("L21"), "L21");
    let line = vm
        .wait_for_line("a line ending in 5", BOOT, |l| l.ends_with('5'))
        .expect("L25");
    assert_eq!(line, "L25");
    // A failed wait keeps the log, even though this test passes.
    let log = vm.log_path().to_owned();
    drop(vm);
    let kept = std::fs::read_to_string(&log).expect("the log was kept");
    assert!(kept.contains("L50\nALL-PRINTED\n"), "{kept}");
    std::fs::remove_file(log).expect("clean up");
}

#[test]
fn the_log_is_written_as_it_comes_and_deleted_when_the_test_passes() {
    let (vm, _initrd) = boot("passlog", "echo PASS-MARKER; sleep 600", &[], |c| c);
    vm.wait_for("PASS-MARKER", BOOT).expect("marker");
    let log = vm.log_path().to_owned();
    assert!(
        log.starts_with(berth_qemu_test::paths::log_dir()),
        "{log:?}"
    );
    let name = log.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(
        name.starts_with(&format!("passlog-{}-", std::process::id())) && name.ends_with(".log"),
        "{name}"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.starts_with("# "), "the command line heads the log");
    assert!(text.contains("PASS-MARKER\n"), "{text}");
    let runtime = vm.runtime_dir().to_owned();
    assert!(runtime.join("qmp.sock").exists());
    drop(vm);
    assert!(!log.exists(), "a passing test's log is deleted");
    assert!(!runtime.exists(), "the sockets are removed");
}

/// What a child test process reports about its VM.
#[derive(Debug, Default)]
struct ChildReport {
    pid: u32,
    unique: String,
    log: PathBuf,
    runtime: PathBuf,
    stdout: String,
    stderr: String,
    success: bool,
}

fn run_child(test: &str, mode: &str) -> ChildReport {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args([test, "--exact", "--include-ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_ENV, mode)
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut r = ChildReport {
        success: out.status.success(),
        ..ChildReport::default()
    };
    for line in stdout.lines() {
        if let Some(rest) = line.split_once("CHILD-VM ").map(|(_, r)| r) {
            for kv in rest.split(' ') {
                match kv.split_once('=') {
                    Some(("pid", v)) => r.pid = v.parse().expect("pid"),
                    Some(("unique", v)) => r.unique = v.to_owned(),
                    Some(("log", v)) => r.log = PathBuf::from(v),
                    Some(("runtime", v)) => r.runtime = PathBuf::from(v),
                    _ => {}
                }
            }
        }
    }
    assert!(
        r.pid != 0,
        "the child did not report its VM:\n{stdout}\n{stderr}"
    );
    r.stdout = stdout;
    r.stderr = stderr;
    r
}

/// Run by `a_panicking_test_leaves_no_qemu_and_keeps_its_log`.
#[test]
#[ignore = "a child process of another test"]
fn child_vm_panics() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let (vm, _initrd) = boot(
        "child-panic",
        "echo CHILD-INIT-STARTED; sleep 600",
        &[],
        |c| c,
    );
    println!(
        "CHILD-VM pid={} unique={} log={} runtime={}",
        vm.pid(),
        vm.unique_name(),
        vm.log_path().display(),
        vm.runtime_dir().display()
    );
    vm.wait_for("CHILD-INIT-STARTED", BOOT).expect("marker");
    panic!("the child test fails while its VM runs");
}

/// Run by `an_aborting_test_leaves_no_qemu`.
#[test]
#[ignore = "a child process of another test"]
fn child_vm_aborts() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let (vm, _initrd) = boot(
        "child-abort",
        "echo CHILD-INIT-STARTED; sleep 600",
        &[],
        |c| c,
    );
    println!(
        "CHILD-VM pid={} unique={} log={} runtime={}",
        vm.pid(),
        vm.unique_name(),
        vm.log_path().display(),
        vm.runtime_dir().display()
    );
    // Mid-boot: the kernel is still starting. No destructor runs on abort.
    std::thread::sleep(Duration::from_millis(500));
    std::process::abort();
}

#[test]
fn a_panicking_test_leaves_no_qemu_and_keeps_its_log() {
    let r = run_child("child_vm_panics", "panic");
    assert!(!r.success, "the child test must fail:\n{}", r.stdout);
    assert!(
        r.stdout.contains("the child test fails while its VM runs")
            || r.stderr.contains("the child test fails while its VM runs"),
        "the child failed for another reason:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    let left = wait_no_process_with_arg(&r.unique, Duration::from_secs(5));
    assert!(left.is_empty(), "orphan QEMU {left:?} ({})", r.unique);
    assert!(
        !Path::new(&format!("/proc/{}", r.pid)).exists()
            || processes_with_arg(&r.unique).is_empty()
    );
    assert!(
        !r.runtime.exists(),
        "runtime dir {:?} left behind",
        r.runtime
    );
    let log = std::fs::read_to_string(&r.log).expect("a failed test's log is kept");
    assert!(log.contains("CHILD-INIT-STARTED"), "{log}");
    assert!(
        r.stderr.contains(&format!("kept at {}", r.log.display())),
        "the kept log's path is printed:\n{}",
        r.stderr
    );
    std::fs::remove_file(&r.log).expect("clean up");
}

/// In-process, so `PR_SET_PDEATHSIG` cannot be what kills QEMU: the
/// process lives on, and only `Drop` during unwinding can.
#[test]
fn a_panic_unwinding_through_a_vm_kills_its_qemu() {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let (vm, _initrd) = boot("unwind", "echo UNWIND-UP; sleep 600", &[], |c| c);
        tx.send((vm.unique_name().to_owned(), vm.log_path().to_owned()))
            .expect("send");
        assert_eq!(processes_with_arg(vm.unique_name()), [vm.pid()]);
        vm.wait_for("UNWIND-UP", BOOT).expect("marker");
        panic!("unwinding through the VM");
    });
    assert!(thread.join().is_err(), "the thread panicked");
    let (unique, log) = rx.recv().expect("the thread reported its VM");
    assert!(
        processes_with_arg(&unique).is_empty(),
        "Drop must have killed and reaped {unique}"
    );
    let text = std::fs::read_to_string(&log).expect("a panicking test's log is kept");
    assert!(text.contains("UNWIND-UP"), "{text}");
    std::fs::remove_file(log).expect("clean up");
}

#[test]
fn an_aborting_test_leaves_no_qemu() {
    let r = run_child("child_vm_aborts", "abort");
    assert!(!r.success, "the child must die of SIGABRT");
    // Nothing in the child cleaned up: only PR_SET_PDEATHSIG can have
    // killed its QEMU.
    let left = wait_no_process_with_arg(&r.unique, Duration::from_secs(5));
    assert!(left.is_empty(), "orphan QEMU {left:?} ({})", r.unique);
    // Nor did it remove its files: do it here.
    let _ = std::fs::remove_file(&r.log);
    let _ = std::fs::remove_dir_all(&r.runtime);
    let child_pid = r.unique.rsplit('-').nth(1).expect("pid in the unique name");
    let scratch = berth_qemu_test::paths::target_dir().join("qemu-test");
    for f in std::fs::read_dir(scratch).expect("scratch dir").flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("child-abort-{child_pid}-")) {
            let _ = std::fs::remove_file(f.path());
        }
    }
}

#[test]
fn http_round_trips_over_the_virtio_serial_channel() {
    let script = r#"
find_port
exec 3<>$PORT
echo SERVING $PORT
n=0
while true; do
  # EOF while the host is not connected: poll until it is.
  if ! read -r line <&3; then sleep 0.1; continue; fi
  line=${line%$cr}
  set -- $line
  method=$1 path=$2 len=0
  while read -r h <&3; do
    h=${h%$cr}
    [ -z "$h" ] && break
    case "$h" in Content-Length:*) len=$((${h#*:} + 0));; esac
  done
  body=null
  [ "$len" -gt 0 ] && body=$(dd bs=1 count=$len <&3 2>/dev/null)
  n=$((n+1))
  if [ "$path" = /chunked ]; then
    printf 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n' >&3
  else
    resp="{\"n\":$n,\"method\":\"$method\",\"path\":\"$path\",\"body\":$body}"
    printf 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' ${#resp} "$resp" >&3
  fi
done
"#;
    let (vm, _initrd) = boot(
        "http",
        script,
        &[VIRTIO_PCI, VIRTIO_MMIO, "virtio_console"],
        |c| c,
    );
    let line = vm.wait_for("SERVING", BOOT).expect("server up");
    assert!(line.contains("/dev/vport"), "{line}");
    let t = Duration::from_secs(30);
    let (status, body) = vm.http("GET", "/v1/status", None, t).expect("GET");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["n"], 1);
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/v1/status");
    assert!(v["body"].is_null());
    let (status, body) = vm
        .http("POST", "/v1/echo", Some(r#"{"x":[1,2]}"#), t)
        .expect("POST");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    // n counts requests on one kept-alive connection.
    assert_eq!(v["n"], 2);
    assert_eq!(v["body"]["x"][1], 2);
    let r = vm
        .http_response("GET", "/chunked", None, t)
        .expect("chunked");
    assert_eq!((r.status, r.body.as_str()), (200, "hello, world"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let (_, body) = vm.http("GET", "/again", None, t).expect("GET");
    assert!(body.contains("\"n\":4"), "{body}");
}

/// The pids' listening TCP sockets, as (address, port) from /proc.
fn listening_sockets(pid: u32) -> Vec<(String, u16)> {
    let mut inodes = BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(i) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(i.to_owned());
            }
        }
    }
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).expect("net");
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            // local_address is col 1, st col 3, inode col 9.
            if cols.len() > 9 && cols[3] == "0A" && inodes.contains(cols[9]) {
                let (addr, port) = cols[1].split_once(':').expect("addr:port");
                let port = u16::from_str_radix(port, 16).expect("port");
                let addr = if addr.len() == 8 {
                    let n = u32::from_str_radix(addr, 16).expect("ipv4");
                    std::net::Ipv4Addr::from(n.swap_bytes()).to_string()
                } else {
                    format!("ipv6:{addr}")
                };
                out.push((addr, port));
            }
        }
    }
    out
}

#[test]
fn forwards_listen_on_loopback_only_and_reach_the_guest() {
    let script = r#"
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
mkdir -p /www
echo hello-from-guest > /www/index.html
httpd -p 80 -h /www
echo HTTPD-UP
sleep 600
"#;
    let fwd_port = free_local_port().expect("port");
    let lan_port = free_local_port().expect("port");
    let (vm, _initrd) = boot(
        "hostfwd",
        script,
        &[VIRTIO_PCI, VIRTIO_MMIO, "virtio_net"],
        |c| {
            c.network(UserNet::new().hostfwd(HostFwd::tcp(fwd_port, 80)))
                .network(SocketNet::listen(lan_port))
        },
    );
    let mut listening = listening_sockets(vm.pid());
    listening.sort();
    let mut want = vec![
        ("127.0.0.1".to_owned(), fwd_port),
        ("127.0.0.1".to_owned(), lan_port),
    ];
    want.sort();
    assert_eq!(
        listening, want,
        "QEMU listens on loopback, on these ports only"
    );
    vm.wait_for("HTTPD-UP", BOOT).expect("httpd");
    // Through the forward, with the same client the channel uses.
    let stream = TcpStream::connect(("127.0.0.1", fwd_port)).expect("connect");
    let mut client = HttpClient::new(stream).expect("client");
    let r = client
        .request("GET", "/index.html", None, Duration::from_secs(30))
        .expect("GET through hostfwd");
    assert_eq!((r.status, r.body.as_str()), (200, "hello-from-guest\n"));
}

#[test]
fn a_socket_lan_links_two_guests_and_disks_attach() {
    // No addresses are configured: bringing a link up makes its kernel send
    // IPv6 link-local multicast (DAD, router solicitations, MLD), and a
    // promiscuous NIC counts the other guest's frames. None of it touches
    // the host's network stack: QEMU tunnels it over one loopback TCP
    // connection between the two QEMUs.
    let script = r#"
ip link set lo up
ip link set eth0 promisc on up
echo "MAC $(cat /sys/class/net/eth0/address)"
while [ "$(cat /sys/class/net/eth0/statistics/rx_packets)" -eq 0 ]; do sleep 0.2; done
echo LAN-RX
[ -e /dev/vda ] && echo "DISK $(head -c 12 /dev/vda)"
sleep 600
"#;
    let port = free_local_port().expect("port");
    let dir = berth_qemu_test::paths::target_dir().join("qemu-test");
    std::fs::create_dir_all(&dir).expect("scratch");
    let disk = dir.join(format!("lan-disk-{}.img", std::process::id()));
    let mut image = b"DISK-MARKER!".to_vec();
    image.resize(1 << 20, 0);
    std::fs::write(&disk, image).expect("disk image");
    let mods = &[VIRTIO_PCI, VIRTIO_MMIO, "virtio_net", "virtio_blk"];
    let (a, _ia) = boot("lan-a", script, mods, |c| {
        c.network(SocketNet::listen(port))
    });
    let (b, _ib) = boot("lan-b", script, mods, |c| {
        c.network(SocketNet::connect(port))
            .disk(berth_qemu_test::Disk::raw(&disk).read_only())
    });
    let mac_a = a.wait_for("MAC ", BOOT).expect("mac");
    let mac_b = b.wait_for("MAC ", BOOT).expect("mac");
    assert_ne!(mac_a, mac_b, "each VM gets a MAC of its own");
    for vm in [&a, &b] {
        vm.wait_for("LAN-RX", BOOT)
            .expect("frames from the other guest");
    }
    assert_eq!(b.wait_for("DISK", BOOT).expect("disk"), "DISK DISK-MARKER!");
    // B's QEMU is connected to A's, over loopback.
    let tcp = std::fs::read_to_string(format!("/proc/{}/net/tcp", b.pid())).expect("tcp");
    let needle = format!("0100007F:{port:04X} 01");
    assert!(tcp.contains(&needle), "{needle} in\n{tcp}");
    drop((a, b));
    std::fs::remove_file(disk).expect("clean up");
}

#[test]
fn the_kvm_probe_decides_quickly() {
    let kit = kit();
    let qemu = Path::new("qemu-system-x86_64");
    let report = probe_kvm(qemu, &kit.kernel, PROBE_TIMEOUT);
    assert!(
        report.elapsed < PROBE_TIMEOUT + Duration::from_secs(3),
        "{report:?}"
    );
    eprintln!("KVM probe: {report:?}");
    if report.kvm_works {
        // Where KVM works, the verdict must be true: boot under KVM.
        let initramfs = Initramfs::busybox("echo KVM-BOOT");
        let initrd = TempInitramfs::build("kvm", &initramfs).expect("initramfs");
        let vm = Vm::launch(
            &VmConfig::kernel("kvm", &kit.kernel)
                .initrd(initrd.path())
                .accel(Accel::Kvm),
        )
        .expect("launch");
        vm.wait_for("KVM-BOOT", Duration::from_secs(30))
            .expect("KVM boot");
    } else {
        // Here /dev/kvm exists but KVM guests hang: the verdict is TCG, and
        // launching with the default accelerator must follow it.
        let initrd =
            TempInitramfs::build("probe", &Initramfs::busybox("sleep 600")).expect("initramfs");
        let vm = Vm::launch(&VmConfig::kernel("probe", &kit.kernel).initrd(initrd.path()))
            .expect("launch");
        if std::env::var_os(berth_qemu_test::accel::ACCEL_ENV).is_none() {
            assert!(!vm.kvm());
            assert!(
                vm.command_line().contains("-accel tcg"),
                "{}",
                vm.command_line()
            );
        }
    }
}

#[test]
fn system_powerdown_arrives_as_an_acpi_power_button_press() {
    let script = r#"
for d in /sys/class/input/event*; do
  grep -q "Power Button" $d/device/name 2>/dev/null && EV=/dev/input/${d##*/}
done
[ -n "$EV" ] || { echo "NO-POWER-BUTTON"; cat /proc/bus/input/devices; }
# One input_event is 24 bytes on x86_64: block until a key event comes.
(dd if=$EV bs=24 count=1 of=/dev/null 2>/dev/null; echo POWER-BUTTON-PRESSED; poweroff -f) &
sleep 1
echo ARMED $EV
wait
"#;
    let (vm, _initrd) = boot("powerdown", script, &["button", "evdev"], |c| c);
    let line = vm.wait_for("ARMED", BOOT).expect("armed");
    assert!(line.contains("/dev/input/event"), "{line}");
    // evdev only delivers to readers that have it open: press again until
    // the guest saw it.
    let deadline = Instant::now() + BOOT;
    while !vm.console().contains("POWER-BUTTON-PRESSED") {
        assert!(Instant::now() < deadline, "{}", vm.console_tail(40));
        vm.system_powerdown().expect("system_powerdown");
        std::thread::sleep(Duration::from_secs(2));
    }
    let exit = vm.wait_exit(BOOT).expect("exit");
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn with_reboots_allowed_the_guest_comes_up_again() {
    let script = r#"
echo BOOTED-$(cut -c1-8 /proc/sys/kernel/random/boot_id)
find_port
# A byte "r" from the host makes the guest reboot itself.
until [ "$(head -c 1 $PORT 2>/dev/null)" = r ]; do sleep 0.1; done
echo REBOOTING
reboot -f
"#;
    let (vm, _initrd) = boot(
        "reboot",
        script,
        &[VIRTIO_PCI, VIRTIO_MMIO, "virtio_console"],
        |c| c.no_reboot(false),
    );
    let first = vm.wait_for("BOOTED-", BOOT).expect("first boot");
    vm.channel()
        .expect("channel")
        .write_all(b"r")
        .expect("write");
    vm.wait_for("REBOOTING", BOOT).expect("reboot");
    let second = vm.wait_for("BOOTED-", BOOT).expect("second boot");
    assert_ne!(first, second, "a new boot id");
    vm.system_reset().expect("system_reset");
    let third = vm
        .wait_for("BOOTED-", BOOT)
        .expect("third boot, after system_reset");
    assert_ne!(second, third);
    assert!(vm.exit_status().is_none());
    vm.qmp("query-status", None).expect("collect events");
    let events = vm.qmp_events();
    assert!(events.iter().any(|e| e["event"] == "RESET"), "{events:?}");
}

#[test]
fn a_kernel_panic_ends_qemu_and_fails_waits_at_once() {
    let (vm, _initrd) = boot("panic", "echo ABOUT-TO-PANIC; exit 3", &[], |c| c);
    vm.wait_for("ABOUT-TO-PANIC", BOOT).expect("marker");
    let start = Instant::now();
    let err = vm
        .wait_for("NEVER-PRINTED", Duration::from_secs(300))
        .expect_err("QEMU exits");
    assert!(
        start.elapsed() < BOOT,
        "the wait ended with QEMU, not its timeout"
    );
    assert!(matches!(err, Error::ConsoleClosed { .. }), "{err}");
    assert!(err.to_string().contains("Kernel panic"), "{err}");
    let exit = vm.wait_exit(BOOT).expect("QEMU exited");
    assert!(
        exit.success(),
        "-no-reboot turns the panic reboot into exit 0: {exit:?}"
    );
    // Exit status 0 as for a power-off; the SHUTDOWN reason tells them apart.
    assert_eq!(vm.shutdown_reason().as_deref(), Some("guest-reset"));
    let log = vm.log_path().to_owned();
    drop(vm);
    std::fs::remove_file(log).expect("the failed wait kept the log");
}

#[test]
fn launch_fails_clearly_on_missing_files_and_bad_qemu() {
    let kit = kit();
    let err =
        Vm::launch(&VmConfig::kernel("missing", "/nonexistent/vmlinuz")).expect_err("no kernel");
    assert_eq!(
        err.to_string(),
        "the kernel /nonexistent/vmlinuz does not exist"
    );
    // No QEMU binary: a spawn error naming it, and no log left behind.
    let err = Vm::launch(
        &VmConfig::kernel("noqemu", &kit.kernel)
            .accel(Accel::Tcg)
            .qemu_binary("/nonexistent/qemu"),
    )
    .expect_err("no QEMU");
    assert!(
        err.to_string()
            .starts_with("could not start /nonexistent/qemu"),
        "{err}"
    );
    let prefix = format!("noqemu-{}-", std::process::id());
    let left: Vec<_> = std::fs::read_dir(berth_qemu_test::paths::log_dir())
        .expect("log dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // QEMU refuses the machine: the error carries its stderr.
    let cfg = VmConfig::kernel("badqemu", &kit.kernel)
        .accel(Accel::Tcg)
        .memory_mib(u32::MAX);
    let err = Vm::launch(&cfg).expect_err("QEMU cannot start");
    let msg = err.to_string();
    assert!(msg.contains("[qemu] "), "QEMU's stderr is quoted: {msg}");
    let Error::QemuExited { log, .. } = err else {
        panic!("{msg}")
    };
    std::fs::remove_file(log).expect("the log of a failed launch is kept");
}

/// Measures time to `/init` per machine type; run with
/// `cargo test -p berth-qemu-test --test harness boot_timings -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn boot_timings() {
    let kit = kit();
    let initramfs =
        Initramfs::busybox("echo INIT-UP $(cut -d' ' -f1 /proc/uptime); poweroff -f").modules(
            modules(&kit, &["virtio_pci", "virtio_mmio", "virtio_console"]),
        );
    let initrd = TempInitramfs::build("timings", &initramfs).expect("initramfs");
    let runs: usize = std::env::var("BERTH_TIMING_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let machines = [
        (Machine::Q35, 1),
        (Machine::Pc, 1),
        (Machine::Microvm, 1),
        (Machine::Q35, 2),
    ];
    // Rounds outside, machines inside: load from other work on the host
    // then falls on every machine type alike.
    let mut results = vec![(Vec::new(), Vec::new(), 0); machines.len()];
    for _ in 0..runs {
        for (i, (machine, smp)) in machines.iter().enumerate() {
            let cfg = VmConfig::kernel("timing", &kit.kernel)
                .initrd(initrd.path())
                .machine(*machine)
                .smp(*smp)
                .accel(Accel::Tcg);
            let start = Instant::now();
            let vm = Vm::launch(&cfg).expect("launch");
            let (walls, uptimes, hangs) = &mut results[i];
            match vm.wait_for("INIT-UP", Duration::from_secs(30)) {
                Ok(line) => {
                    walls.push(start.elapsed().as_millis());
                    uptimes.push(line.trim_start_matches("INIT-UP ").to_owned());
                }
                Err(_) => *hangs += 1,
            }
            // A hang is data here, not a failure: drop the log.
            let log = vm.log_path().to_owned();
            drop(vm);
            let _ = std::fs::remove_file(log);
        }
    }
    for ((machine, smp), (walls, uptimes, hangs)) in machines.iter().zip(results) {
        let mut sorted = walls.clone();
        sorted.sort();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
        println!(
            "TIMING {machine:?} smp={smp}: median {median} ms, walls {walls:?} ms, \
             uptime at /init {uptimes:?} s, hangs {hangs}/{runs}"
        );
    }
}

//! The QEMU harness: boots a berth image (or any kernel and initramfs) under
//! QEMU, watches its serial console, and drives it through QMP and a
//! virtio-serial control channel. Nothing it starts outlives the test.
//!
//! ```no_run
//! use std::time::Duration;
//! use berth_qemu_test::{HostFwd, UserNet, Vm, VmConfig, artifacts, free_local_port};
//!
//! # fn main() -> berth_qemu_test::Result<()> {
//! let kernel = artifacts()?.kernel;
//! let port = free_local_port()?;
//! let vm = Vm::launch(
//!     &VmConfig::kernel("smoke", kernel)
//!         .initrd("target/berth-initrd.cpio")
//!         .append("berth.debug=1")
//!         .network(UserNet::new().hostfwd(HostFwd::tcp(port, 80))),
//! )?;
//! vm.wait_for("berth: ready", Duration::from_secs(60))?;
//! let (status, body) = vm.http("GET", "/v1/status", None, Duration::from_secs(10))?;
//! assert_eq!(status, 200, "{body}");
//! vm.system_powerdown()?;
//! vm.wait_exit(Duration::from_secs(30))?;
//! # Ok(())
//! # }
//! ```
//!
//! # Modules
//! - [`config`] — [`VmConfig`] and its parts; renders QEMU's command line.
//!   Networks take ports, never addresses: the host side is always
//!   127.0.0.1, and user networks always have `restrict=on`.
//! - [`vm`] — [`Vm`], the running QEMU: launch, console waits, exit, QMP,
//!   control channel, teardown.
//! - `console` — the serial console reader, in-memory buffer and log file.
//! - `qmp` — the QMP client (greeting, `qmp_capabilities`, events kept aside).
//! - `spawn` — starts QEMU tied to the test process (`PR_SET_PDEATHSIG`).
//! - [`http`] — the minimal HTTP/1.1 client for berth's API.
//! - [`accel`] — TCG or KVM, with a short cached KVM probe.
//! - [`ports`] — [`free_local_port()`](ports::free_local_port).
//! - [`artifacts`](mod@artifacts) — the kernel under test ([`artifacts()`]).
//! - [`initramfs`] — a busybox initramfs for self-tests and helper guests.
//! - [`layout`] — berth's code layout: the functions that run, from QEMU's
//!   record of translated code (`scripts/profile-layout`).
//! - [`paths`] — the target directory, log directory, runtime directories.
//! - [`scenario`] — the fixture every berth scenario starts from: the static
//!   berth, cached images built from a manifest, boot to `berth: ready`.
//! - [`efi_disk`] — the same from a flashable `disk.img` under OVMF
//!   ([`VmConfig::ovmf`]): cached disk images, scratch copies, boot.
//!
//! The binary `berth-vm` (`src/bin/berth-vm.rs`) boots an image directory
//! for a person at a terminal, streaming the console
//! ([`Vm::console_follow`]); `scripts/run` uses it.
//!
//! # Console and logs
//! QEMU's `-serial stdio` goes into a pipe that a thread drains into memory
//! and into `<target>/qemu-logs/<name>-<pid>-<n>.log` (its first line is
//! QEMU's command line, prefixed `#`; QEMU's stderr lines follow with a
//! `[qemu]` prefix). When the [`Vm`] drops, the log is deleted if the test
//! passed, and kept, with its path printed to stderr, if the thread is
//! panicking, if any harness call on the VM returned an error, if
//! [`Vm::keep_log`] was called, or if `BERTH_QEMU_KEEP_LOGS=1`.
//!
//! [`Vm::wait_for`] keeps a cursor: each wait only sees output after the
//! previous match ([`Vm::rewind`] goes back to the start). A timeout error
//! quotes the last 40 console lines and the log's path; if QEMU exits
//! first, the wait fails at once instead of running out its timeout.
//!
//! # Machine
//! `-machine microvm -accel tcg -m 512 -smp 1 -nodefaults -no-user-config
//! -display none`, `-serial stdio`, QMP on a unix socket, a virtio-serial
//! controller with the port `berth` on another unix socket, NICs with their
//! own MACs (and, on PCI machines, `romfile=`: no iPXE ROM). `-no-reboot` is
//! on by default ([`VmConfig::no_reboot`]): a guest reboot, or a kernel panic
//! (the base command line has `panic=-1`), then ends QEMU; a reboot test
//! turns it off. A guest power-off always ends QEMU, with status 0.
//!
//! Measured here (QEMU 7.2 TCG, Debian cloud kernel 6.1, 512 MiB, busybox
//! initramfs loading virtio modules; this crate's `boot_timings` test, which
//! interleaves the machine types round by round, on 2 cores shared with
//! other engineers' builds): wall time from spawning QEMU to the first line
//! `/init` prints, median (range), and the guest's uptime then.
//!
//! | machine | smp | light load (10 rounds) | heavy load, ~3 (5 rounds) | guest uptime at `/init`, light |
//! | --- | --- | --- | --- | --- |
//! | microvm | 1 | 3.4 s (2.9–4.2) | 4.2 s (2.9–5.3) | 2.1–3.3 s |
//! | q35 | 1 | 4.0 s (2.8–4.5) | 6.0 s (4.1–8.1) | 2.2–3.3 s |
//! | pc | 1 | 4.1 s (3.1–4.8) | 6.0 s (5.2–7.6) | 2.3–3.7 s |
//! | q35 | 2 | 3.6 s (2.8–4.1) | 5.4 s (4.2–6.6) | 2.3–3.1 s |
//!
//! So microvm is the default for kernel boots ([`Machine`]); q35 for EFI
//! boots; `BERTH_QEMU_MACHINE=q35` (or `pc`) runs a whole suite on another
//! machine, and the self-tests pass on all three. All three deliver
//! `system_powerdown` as an ACPI "Power Button" input event (with the
//! `button` and `evdev` modules) and support guest reboots. microvm needs
//! `virtio_mmio` in the guest instead of `virtio_pci`. For microvm the
//! harness appends `reboot=t` ([`config::MICROVM_CMDLINE`]): with the
//! kernel's default reboot method, 2 guest reboots of 6 hung after "reboot:
//! machine restart"; by triple fault, 8 of 8 came back. Under TCG it also
//! appends `tsc_early_khz=2000000 tsc=reliable`
//! ([`config::MICROVM_TCG_CMDLINE`]): without it the kernel fails to
//! calibrate the TSC against the PIT on a loaded host (microvm has no HPET
//! or PM timer) and hangs, in 5 boots of 5 here. With both, 0 of the 30
//! microvm boots timed above hung. `-smp 2` gains little and doubles the
//! CPU that two parallel tests take from two cores, so the default stays 1.
//!
//! # QMP and the control channel
//! [`Vm::launch`] returns once QMP has greeted and negotiated. [`Vm::qmp`]
//! runs any command; [`Vm::system_powerdown`], [`Vm::system_reset`] and
//! [`Vm::quit`] wrap the common ones. Events are kept
//! ([`Vm::qmp_events`]); [`Vm::shutdown_reason`] tells a guest power-off
//! (`guest-shutdown`) from a reboot or kernel panic under `-no-reboot`
//! (`guest-reset`), which both end QEMU with status 0.
//!
//! The virtio-serial port `berth` is the control channel: [`Vm::http`]
//! speaks HTTP/1.1 over it (one kept-alive connection per VM, reconnected
//! after an error), and [`Vm::channel`] hands out the raw stream. See
//! [`Vm::channel`] for what the guest side sees while the host is away.
//!
//! # Accelerator
//! TCG by default. KVM only with `BERTH_QEMU_ACCEL=kvm`, [`Accel::Kvm`], or
//! when a 3-second probe boots the kernel under KVM and sees output (cached
//! per process and per host boot in `<target>/qemu-logs/kvm-probe`). Here
//! `/dev/kvm` exists but KVM guests hang, so the probe says TCG.
//!
//! # Teardown
//! No orphan QEMU: `Drop for Vm` SIGKILLs and reaps QEMU and removes the
//! runtime directory; QEMU is started with `PR_SET_PDEATHSIG(SIGKILL)` from a
//! spawner thread that lives as long as the process, so QEMU also dies when
//! the test process aborts or is killed. The harness's tests prove both.

pub mod accel;
pub mod artifacts;
pub mod config;
mod console;
pub mod efi_disk;
mod error;
pub mod http;
pub mod initramfs;
pub mod layout;
pub mod paths;
pub mod ports;
mod qmp;
pub mod scenario;
mod spawn;
pub mod vm;

pub use artifacts::{Artifacts, artifacts};
pub use config::{
    Accel, BASE_CMDLINE, Boot, Disk, GuestFwd, HostFwd, Mac, Machine, Network, OVMF_CODE,
    OVMF_VARS, Proto, SocketNet, UserNet, VmConfig,
};
pub use console::{ConsoleFollower, Followed};
pub use error::{Error, Result};
pub use http::{HttpClient, HttpResponse, HttpStream};
pub use initramfs::{Initramfs, TempInitramfs};
pub use ports::free_local_port;
pub use vm::Vm;

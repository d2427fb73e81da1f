//! `berth-vm`: boots a berth image under QEMU for a person at a terminal.
//!
//! ```text
//! berth-vm run OUTDIR [--forward HOSTPORT:GUESTPORT]... [--append ARGS]
//! ```
//!
//! OUTDIR is an image directory (`vmlinuz`, `initramfs.img`, `cmdline`), as
//! `scripts/build-image` writes it. The serial console streams to stdout as
//! it comes. The first Ctrl-C presses the ACPI power button (QMP
//! `system_powerdown`): berth stops its containers in order and powers off,
//! and QEMU exits. A second Ctrl-C kills QEMU. SIGTERM counts as Ctrl-C.
//! QEMU runs in a process group of its own, so the terminal's SIGINT reaches
//! only this program; it still dies with it (the harness ties it).
//!
//! Forwards listen on 127.0.0.1 only: the harness takes ports, never
//! addresses. The guest always gets one NIC (a restricted user network),
//! so a manifest's `eth0` exists. A guest reboot restarts the guest.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use berth_qemu_test::scenario::Image;
use berth_qemu_test::{Followed, HostFwd, UserNet, Vm};

const USAGE: &str = "usage: berth-vm run OUTDIR [--forward HOSTPORT:GUESTPORT]... [--append ARGS]";

/// Why berth-vm could not run the image.
#[derive(Debug, displaydoc::Display, thiserror::Error)]
enum CliError {
    /// {0}
    Usage(String),
    /// cannot boot the image in {dir}: {source}
    Boot {
        /// The image directory.
        dir: PathBuf,
        /// The harness's error.
        source: Box<berth_qemu_test::Error>,
    },
    /// cannot {action} for Ctrl-C: {source}
    Signals {
        /// What failed.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    dir: PathBuf,
    forwards: Vec<(u16, u16)>,
    append: Vec<String>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&args) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("berth-vm: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth-vm: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the arguments after the program name; `Ok(None)` asks for help.
fn parse_args(args: &[String]) -> Result<Option<Args>, CliError> {
    let usage = |m: &str| CliError::Usage(m.to_owned());
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("run") => {}
        Some("-h" | "--help" | "help") => return Ok(None),
        Some(other) => return Err(usage(&format!("unknown command {other:?}"))),
        None => return Err(usage("no command")),
    }
    let mut dir = None;
    let mut forwards = Vec::new();
    let mut append = Vec::new();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--forward" | "-p" => {
                let v = it.next().ok_or_else(|| usage("--forward needs a value"))?;
                forwards.push(parse_forward(v).ok_or_else(|| {
                    usage(&format!(
                        "--forward {v:?}: expected HOSTPORT:GUESTPORT, ports 1-65535"
                    ))
                })?);
            }
            "--append" => {
                let v = it.next().ok_or_else(|| usage("--append needs a value"))?;
                append.push(v.clone());
            }
            "-h" | "--help" => return Ok(None),
            s if s.starts_with('-') => return Err(usage(&format!("unknown option {s:?}"))),
            s if dir.is_none() => dir = Some(PathBuf::from(s)),
            s => return Err(usage(&format!("unexpected argument {s:?}"))),
        }
    }
    let dir = dir.ok_or_else(|| usage("no image directory"))?;
    Ok(Some(Args {
        dir,
        forwards,
        append,
    }))
}

/// `HOSTPORT:GUESTPORT`, both non-zero.
fn parse_forward(s: &str) -> Option<(u16, u16)> {
    let (h, g) = s.split_once(':')?;
    let h: u16 = h.trim().parse().ok()?;
    let g: u16 = g.trim().parse().ok()?;
    (h != 0 && g != 0).then_some((h, g))
}

fn run(args: &Args) -> Result<ExitCode, CliError> {
    // Before any thread exists, so that every thread (the harness's too)
    // inherits the mask and only the waiter below takes these signals.
    let signals = watch_signals()?;

    let boot_error = |source| CliError::Boot {
        dir: args.dir.clone(),
        source: Box::new(source),
    };
    let image = Image::from_dir(&args.dir).map_err(boot_error)?;
    let mut net = UserNet::new();
    for &(h, g) in &args.forwards {
        net = net.hostfwd(HostFwd::tcp(h, g));
    }
    let mut config = image
        .vm_config("run")
        .network(net)
        .no_reboot(false)
        .own_process_group(true);
    for a in &args.append {
        config = config.append(a);
    }
    let machine = config.machine_type();
    let vm = Vm::launch(&config).map_err(boot_error)?;
    let machine = format!("{machine:?}").to_lowercase();
    eprintln!("{}", banner(args, &machine, vm.kvm()));

    let mut follower = vm.console_follow();
    let streamer = std::thread::spawn(move || {
        let mut out = std::io::stdout();
        loop {
            match follower.next(Duration::from_secs(1)) {
                Followed::Bytes(b) => {
                    let _ = out.write_all(&b);
                    let _ = out.flush();
                }
                Followed::Idle => {}
                Followed::Closed => break,
            }
        }
    });

    let status = supervise(&vm, &signals);
    let _ = streamer.join();
    let reason = vm.shutdown_reason();
    let clean = status.success() && reason.as_deref() == Some("guest-shutdown");
    eprintln!(
        "berth-vm: QEMU exited ({status}; {})",
        reason.as_deref().unwrap_or("killed")
    );
    if !clean {
        // Drop prints the kept log's path.
        vm.keep_log();
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The one line that says how to quit and what is forwarded.
fn banner(args: &Args, machine: &str, kvm: bool) -> String {
    let forwards = if args.forwards.is_empty() {
        "no ports forwarded".to_owned()
    } else {
        let list: Vec<String> = args
            .forwards
            .iter()
            .map(|(h, g)| format!("127.0.0.1:{h} -> guest :{g}"))
            .collect();
        format!("forwarding {}", list.join(", "))
    };
    format!(
        "berth-vm: booting {} ({}, {machine}); Ctrl-C powers off in order, \
         a second Ctrl-C kills QEMU; {forwards}",
        args.dir.display(),
        if kvm { "KVM" } else { "TCG" },
    )
}

/// Waits for QEMU to exit, turning the first Ctrl-C into the power button
/// and the second into SIGKILL.
fn supervise(vm: &Vm, signals: &Receiver<i32>) -> std::process::ExitStatus {
    let mut presses = 0;
    loop {
        if let Some(status) = vm.exit_status() {
            return status;
        }
        match signals.recv_timeout(Duration::from_millis(100)) {
            Ok(_) => {
                presses += 1;
                if presses == 1 {
                    eprintln!(
                        "\nberth-vm: pressing the power button (berth powers off in order); \
                         Ctrl-C again kills QEMU"
                    );
                    if let Err(e) = vm.system_powerdown() {
                        eprintln!("berth-vm: system_powerdown: {e}");
                    }
                } else {
                    eprintln!("\nberth-vm: killing QEMU");
                    if let Some(status) = vm.kill() {
                        return status;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
    }
}

/// Blocks SIGINT and SIGTERM in this thread (and so in every thread
/// started after), and starts a thread that takes them with `sigwait` and
/// sends their numbers.
fn watch_signals() -> Result<Receiver<i32>, CliError> {
    let set = signal_set(&[libc::SIGINT, libc::SIGTERM]);
    // SAFETY: `set` is an initialised signal set; the old mask is not asked
    // for (null is allowed).
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(CliError::Signals {
            action: "block SIGINT",
            source: std::io::Error::from_raw_os_error(rc),
        });
    }
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is initialised and `sig` is a valid place for
                // the result; the signals are blocked in every thread.
                let rc = unsafe { libc::sigwait(&set, &mut sig) };
                if rc == 0 && tx.send(sig).is_err() {
                    break;
                }
            }
        })
        .map_err(|source| CliError::Signals {
            action: "start a thread to wait",
            source,
        })?;
    Ok(rx)
}

/// A signal set holding `signals`.
fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, and sigemptyset initialises it below
    // before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in signals {
        // SAFETY: `set` is initialised and `s` is a valid signal number.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Result<Option<Args>, CliError> {
        parse_args(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_run_with_forwards_and_appends() {
        let a = args(&[
            "run",
            "out/run",
            "--forward",
            "8080:80",
            "-p",
            "2222:22",
            "--append",
            "berth.log=debug",
        ])
        .expect("valid")
        .expect("not help");
        assert_eq!(
            a,
            Args {
                dir: "out/run".into(),
                forwards: vec![(8080, 80), (2222, 22)],
                append: vec!["berth.log=debug".into()],
            }
        );
        let b = banner(&a, "Microvm", false);
        assert!(b.contains("Ctrl-C powers off"), "{b}");
        assert!(
            b.contains("127.0.0.1:8080 -> guest :80, 127.0.0.1:2222 -> guest :22"),
            "{b}"
        );
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for bad in [
            &["run"][..],
            &["start", "x"],
            &["run", "x", "--forward", "0:80"],
            &["run", "x", "--forward", "8080"],
            &["run", "x", "--forward", "0.0.0.0:8080:80"],
            &["run", "x", "y"],
            &["run", "x", "--bogus"],
            &[],
        ] {
            assert!(matches!(args(bad), Err(CliError::Usage(_))), "{bad:?}");
        }
        assert!(matches!(args(&["--help"]), Ok(None)));
    }
}

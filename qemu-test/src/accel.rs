//! Choosing the accelerator: TCG unless KVM is known to work.
//!
//! On this project's machines `/dev/kvm` exists but KVM guests hang (nested
//! virtualisation): they spin and never print. So [`Accel::Auto`] means TCG,
//! unless `BERTH_QEMU_ACCEL=kvm` forces KVM, `BERTH_QEMU_ACCEL=tcg` forces TCG,
//! or a short probe — boot the kernel under KVM and see `Linux version` on
//! the console within [`PROBE_TIMEOUT`] — succeeds. The verdict is cached for
//! the process, and across processes in `<target>/qemu-logs/kvm-probe`, keyed
//! by the host's boot id, so a test run pays for the probe at most once per
//! host boot.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::Accel;
use crate::error::{Error, Result};
use crate::spawn::spawn_tied;

/// How long the probe waits for the kernel's first words under KVM.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The environment variable that overrides [`Accel::Auto`].
pub const ACCEL_ENV: &str = "BERTH_QEMU_ACCEL";

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// Whether the kernel printed under KVM in time.
    pub kvm_works: bool,
    /// How long the probe took.
    pub elapsed: Duration,
    /// Why, in words.
    pub reason: String,
}

/// Decides whether to use KVM, given the configured choice, the value of
/// `BERTH_QEMU_ACCEL` and a probe to run only when it matters.
pub fn decide(requested: Accel, env: Option<&str>, probe: impl FnOnce() -> bool) -> Result<bool> {
    match requested {
        Accel::Tcg => return Ok(false),
        Accel::Kvm => return Ok(true),
        Accel::Auto => {}
    }
    match env.map(str::trim) {
        None | Some("") | Some("auto") => Ok(probe()),
        Some("tcg") => Ok(false),
        Some("kvm") => Ok(true),
        Some(other) => Err(Error::AccelEnv(other.to_owned())),
    }
}

/// Resolves `requested` for a VM that boots `kernel` (`None`: an EFI boot,
/// which is never probed) with the QEMU binary `qemu`.
pub(crate) fn resolve(requested: Accel, qemu: &Path, kernel: Option<&Path>) -> Result<bool> {
    let env = std::env::var(ACCEL_ENV).ok();
    decide(requested, env.as_deref(), || match kernel {
        Some(k) => kvm_works_cached(qemu, k),
        None => false,
    })
}

/// The probe's verdict, from the process cache, else the file cache, else a
/// fresh probe (whose verdict then fills both).
pub fn kvm_works_cached(qemu: &Path, kernel: &Path) -> bool {
    static VERDICT: OnceLock<bool> = OnceLock::new();
    *VERDICT.get_or_init(|| {
        let file = cache_file();
        let boot_id = boot_id();
        if let Some(v) = read_cache(&file, &boot_id) {
            return v;
        }
        let report = probe_kvm(qemu, kernel, PROBE_TIMEOUT);
        eprintln!(
            "berth-qemu-test: KVM probe: {} ({}, {:?}); using {}",
            if report.kvm_works {
                "works"
            } else {
                "unusable"
            },
            report.reason,
            report.elapsed,
            if report.kvm_works { "KVM" } else { "TCG" },
        );
        write_cache(&file, &boot_id, report.kvm_works);
        report.kvm_works
    })
}

/// Boots `kernel` under KVM and reports whether it printed `Linux version`
/// within `timeout`. Never takes much longer than `timeout`: QEMU is killed
/// as soon as the verdict is known.
pub fn probe_kvm(qemu: &Path, kernel: &Path, timeout: Duration) -> ProbeReport {
    let start = Instant::now();
    let report = |kvm_works: bool, reason: String| ProbeReport {
        kvm_works,
        elapsed: start.elapsed(),
        reason,
    };
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return report(false, format!("cannot open /dev/kvm: {e}"));
    }
    let mut cmd = Command::new(qemu);
    cmd.args(["-name", "berth-kvm-probe", "-no-user-config", "-nodefaults"])
        .args(["-display", "none", "-accel", "kvm", "-m", "128"])
        .args(["-serial", "stdio", "-no-reboot", "-kernel"])
        .arg(kernel)
        .args(["-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = match spawn_tied(cmd) {
        Ok(c) => c,
        Err(e) => return report(false, format!("cannot start {}: {e}", qemu.display())),
    };
    let (tx, rx) = mpsc::channel();
    if let Some(mut out) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = out.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&chunk[..n]);
                if seen.windows(13).any(|w| w == b"Linux version") {
                    let _ = tx.send(true);
                    return;
                }
            }
            let _ = tx.send(false);
        });
    }
    let verdict = rx.recv_timeout(timeout);
    let _ = child.kill();
    let _ = child.wait();
    match verdict {
        Ok(true) => report(true, "the kernel printed under KVM".into()),
        Ok(false) => report(false, "QEMU exited without kernel output".into()),
        Err(_) => report(false, format!("no kernel output within {timeout:?}")),
    }
}

fn cache_file() -> PathBuf {
    crate::paths::log_dir().join("kvm-probe")
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn read_cache(file: &Path, boot_id: &str) -> Option<bool> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut lines = text.lines();
    if lines.next()? != format!("boot_id={boot_id}") {
        return None;
    }
    match lines.next()? {
        "verdict=kvm" => Some(true),
        "verdict=tcg" => Some(false),
        _ => None,
    }
}

/// Writes atomically (temp file and rename), since processes race here.
fn write_cache(file: &Path, boot_id: &str, kvm: bool) {
    let Some(dir) = file.parent() else { return };
    if crate::paths::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!("kvm-probe.{}", std::process::id()));
    let verdict = if kvm { "kvm" } else { "tcg" };
    if std::fs::write(&tmp, format!("boot_id={boot_id}\nverdict={verdict}\n")).is_ok() {
        let _ = std::fs::rename(&tmp, file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_choices_never_probe() {
        let boom = || panic!("must not probe");
        assert_eq!(decide(Accel::Tcg, Some("kvm"), boom).ok(), Some(false));
        assert_eq!(decide(Accel::Kvm, None, boom).ok(), Some(true));
        assert_eq!(decide(Accel::Auto, Some("tcg"), boom).ok(), Some(false));
        assert_eq!(decide(Accel::Auto, Some("kvm"), boom).ok(), Some(true));
        assert!(matches!(
            decide(Accel::Auto, Some("hvf"), boom),
            Err(Error::AccelEnv(v)) if v == "hvf"
        ));
    }

    #[test]
    fn auto_follows_the_probe() {
        assert_eq!(decide(Accel::Auto, None, || true).ok(), Some(true));
        assert_eq!(
            decide(Accel::Auto, Some("auto"), || false).ok(),
            Some(false)
        );
    }

    #[test]
    fn cache_is_keyed_by_boot_id() {
        let dir = crate::paths::log_dir();
        let file = dir.join(format!("kvm-probe-unit-{}", std::process::id()));
        write_cache(&file, "abc", true);
        assert_eq!(read_cache(&file, "abc"), Some(true));
        assert_eq!(read_cache(&file, "other"), None);
        write_cache(&file, "abc", false);
        assert_eq!(read_cache(&file, "abc"), Some(false));
        let _ = std::fs::remove_file(file);
    }
}

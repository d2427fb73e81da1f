//! The harness's one error type. Each variant's doc comment is its message
//! (`displaydoc`), and every variant that concerns a file carries its path, so
//! a failed test says which VM, which socket, which log to look at.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// What can go wrong while building, booting or driving a VM.
///
/// `Debug` prints the same text as `Display`, so that a test's
/// `.expect("...")` shows the console tail as lines, not as one escaped
/// string.
#[derive(displaydoc::Display, thiserror::Error)]
pub enum Error {
    /// the {what} {path} does not exist
    MissingFile {
        /// What the file is for ("kernel", "initrd", ...).
        what: &'static str,
        /// The path that was expected.
        path: PathBuf,
    },
    /// could not {action} {path}: {source}
    Io {
        /// What was being done ("create", "read", "connect to", ...).
        action: &'static str,
        /// The file, directory or socket.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// could not start {program}: {source}
    Spawn {
        /// The program that did not start.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// invalid VM configuration: {0}
    Config(String),
    /// invalid BERTH_QEMU_ACCEL={0:?}: expected "auto", "tcg" or "kvm"
    AccelEnv(String),
    /// QEMU for {name} exited ({status}) before {waiting_for} (console log: {log}); its stderr:{stderr}
    QemuExited {
        /// The VM's name.
        name: String,
        /// The console log file (kept, since the VM failed).
        log: PathBuf,
        /// QEMU's exit status.
        status: ExitStatus,
        /// What the harness was waiting for.
        waiting_for: String,
        /// QEMU's stderr so far, indented, starting with a newline.
        stderr: String,
    },
    /// timed out after {after:?} waiting for {what} on {name} (console log: {log}){tail}
    Timeout {
        /// The VM's name.
        name: String,
        /// What was awaited (a pattern, an exit, a response).
        what: String,
        /// How long the harness waited.
        after: Duration,
        /// The console log file (kept, since the VM failed).
        log: PathBuf,
        /// The last console lines, starting with a newline.
        tail: String,
    },
    /// the console of {name} closed ({status}) before {what} appeared (console log: {log}){tail}
    ConsoleClosed {
        /// The VM's name.
        name: String,
        /// What was awaited.
        what: String,
        /// QEMU's exit status, or "still running" when only the pipe closed.
        status: String,
        /// The console log file (kept, since the VM failed).
        log: PathBuf,
        /// The last console lines, starting with a newline.
        tail: String,
    },
    /// QMP command {command} failed: {class}: {desc}
    QmpCommand {
        /// The command that QEMU refused.
        command: String,
        /// QMP's error class.
        class: String,
        /// QMP's error description.
        desc: String,
    },
    /// QMP protocol error on {path}: {detail}
    QmpProtocol {
        /// The QMP socket.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// HTTP exchange {request} failed: {detail}
    Http {
        /// The request line ("GET /v1/status").
        request: String,
        /// What was wrong.
        detail: String,
    },
    /// could not run {program} to build {path}: {detail}
    Tool {
        /// The external tool (cpio, modinfo).
        program: &'static str,
        /// The file being built or read.
        path: PathBuf,
        /// Its stderr or exit status.
        detail: String,
    },
    /// could not provide the pinned test kernel: {0}
    KernelFetch(String),
    /// no kernel module {module} under {dir}
    MissingModule {
        /// The module's name.
        module: String,
        /// The modules directory searched.
        dir: PathBuf,
    },
    /// could not build berth with {script}: {detail}
    BuildBerth {
        /// `scripts/build-berth`, or where `$BERTH_BIN` pointed.
        script: PathBuf,
        /// Its exit status and the end of its stderr.
        detail: String,
    },
    /// could not build the image for scenario {name} in {dir}: {detail}
    BuildImage {
        /// The scenario.
        name: String,
        /// The output directory the build wrote to.
        dir: PathBuf,
        /// The image builder's error.
        detail: String,
    },
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Error {
    /// Wraps an I/O error with what was being done and to which path.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The harness's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

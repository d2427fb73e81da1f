//! A running VM: QEMU, its console, its QMP connection and its control
//! channel, torn down on drop.
//!
//! Teardown is guaranteed three ways: [`Vm`]'s `Drop` SIGKILLs and reaps
//! QEMU (this runs when a test returns, fails with an error, or panics and
//! unwinds); QEMU carries `PR_SET_PDEATHSIG(SIGKILL)`, so it dies with the
//! test process even when that aborts or is killed (forked by a spawner
//! thread that lives as long as the process, see the crate documentation);
//! and the per-VM runtime directory (sockets) is removed on drop.

use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::{Boot, CONTROL_SOCKET, EFI_VARS, QMP_SOCKET, VmConfig};
use crate::console::{self, Console, LogFile, TAIL_LINES, Wait};
use crate::error::{Error, Result};
use crate::http::{HttpClient, HttpResponse};
use crate::paths::{self, RuntimeDir};
use crate::qmp::Qmp;

/// How long [`Vm::launch`] waits for QEMU's QMP socket.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a QMP command may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Vm::channel`] and [`Vm::http`] retry connecting to the socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Vm::wait_for`] waits for the rest of a matched line.
pub const LINE_GRACE: Duration = Duration::from_secs(2);

/// Set to `1` to keep every console log, passed or failed.
pub const KEEP_LOGS_ENV: &str = "BERTH_QEMU_KEEP_LOGS";

/// A running QEMU. All methods take `&self`, so one thread can wait on the
/// console while another drives QMP or the control channel.
#[derive(Debug)]
pub struct Vm {
    name: String,
    unique: String,
    kvm: bool,
    args: Vec<OsString>,
    qemu: PathBuf,
    child: Mutex<Child>,
    console: Console,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Mutex<Option<JoinHandle<()>>>,
    log: LogFile,
    keep_log: AtomicBool,
    cursor: Mutex<usize>,
    qmp: Mutex<Option<Qmp>>,
    http: Mutex<Option<HttpClient<UnixStream>>>,
    // Dropped last: the sockets live here.
    runtime: RuntimeDir,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Vm {
    /// Starts QEMU for `config` and returns once its QMP socket answers.
    /// The guest is booting by then; wait for it with [`Vm::wait_for`].
    pub fn launch(config: &VmConfig) -> Result<Vm> {
        config.validate()?;
        let kernel = match config.boot() {
            Boot::Kernel { kernel, .. } => Some(kernel.as_path()),
            Boot::Efi { .. } => None,
        };
        let kvm = crate::accel::resolve(config.accel, &config.qemu, kernel)?;
        let pid = std::process::id();
        let seq = paths::next_seq();
        let name = config.name().to_owned();
        let unique = format!("berth-{name}-{pid}-{seq}");
        let runtime = RuntimeDir::create(&format!("{pid}-{seq}"))?;
        if let Boot::Efi {
            vars: Some(template),
            ..
        } = config.boot()
        {
            // The firmware writes its variables: each VM gets its own copy.
            let copy = runtime.path().join(EFI_VARS);
            std::fs::copy(template, &copy).map_err(|e| Error::io("copy", template, e))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io("chmod", &copy, e))?;
        }
        let mac_seed = ((pid & 0xffff) << 8) | (seq as u32 & 0xff);
        let args = config.qemu_args(runtime.path(), kvm, &unique, mac_seed);

        let log_dir = paths::log_dir();
        paths::create_dir_all(&log_dir)?;
        let log = LogFile::create(log_dir.join(format!("{name}-{pid}-{seq}.log")))?;
        let mut header = format!("# {}", config.qemu.display());
        for a in &args {
            header.push(' ');
            header.push_str(&a.to_string_lossy());
        }
        header.push('\n');
        log.write(header.as_bytes());

        let mut cmd = Command::new(&config.qemu);
        if config.own_process_group {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match crate::spawn::spawn_tied(cmd) {
            Ok(c) => c,
            Err(source) => {
                // Nothing ran: the log holds only the command line.
                let _ = std::fs::remove_file(log.path());
                return Err(Error::Spawn {
                    program: config.qemu.clone(),
                    source,
                });
            }
        };
        let stdout = child.stdout.take();
        let stderr_pipe = child.stderr.take();
        // From here on, a failure drops `child` inside a Vm or kills it here.
        let console = match stdout.map(|s| Console::spawn(s, log.clone(), &unique)) {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Config("QEMU's stdout was not captured".into()));
            }
        };
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_reader = stderr_pipe.and_then(|p| {
            console::spawn_stderr_reader(p, log.clone(), Arc::clone(&stderr), &unique).ok()
        });
        let vm = Vm {
            name,
            unique,
            kvm,
            args,
            qemu: config.qemu.clone(),
            child: Mutex::new(child),
            console,
            stderr,
            stderr_reader: Mutex::new(stderr_reader),
            log,
            keep_log: AtomicBool::new(false),
            cursor: Mutex::new(0),
            qmp: Mutex::new(None),
            http: Mutex::new(None),
            runtime,
        };
        let qmp_path = vm.runtime.path().join(QMP_SOCKET);
        let qmp = vm
            .connect_socket(&qmp_path, STARTUP_TIMEOUT, "QMP")
            .and_then(|stream| Qmp::handshake(stream, &qmp_path, QMP_TIMEOUT))
            .map_err(|e| vm.startup_error(e, &qmp_path))?;
        *lock(&vm.qmp) = Some(qmp);
        Ok(vm)
    }

    /// QEMU may create its QMP socket and then exit (a bad option value):
    /// then the error to report is QEMU's, with its stderr.
    fn startup_error(&self, e: Error, qmp_path: &Path) -> Error {
        if matches!(e, Error::QemuExited { .. }) {
            return self.failed(e);
        }
        match self.poll_exit(Instant::now() + Duration::from_secs(2)) {
            Some(status) => {
                self.failed(self.exited(status, &format!("QMP at {}", qmp_path.display())))
            }
            None => self.failed(e),
        }
    }

    fn exited(&self, status: ExitStatus, waiting_for: &str) -> Error {
        // Let the stderr reader catch QEMU's last words.
        self.join_stderr(Instant::now() + Duration::from_secs(2));
        let stderr = lock(&self.stderr)
            .lines()
            .map(|l| format!("\n  [qemu] {l}"))
            .collect();
        Error::QemuExited {
            name: self.unique.clone(),
            log: self.log.path().to_owned(),
            status,
            waiting_for: waiting_for.to_owned(),
            stderr,
        }
    }

    // ---- identity -------------------------------------------------------

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The machine-unique name, `berth-<name>-<pid>-<n>`, also QEMU's
    /// `-name` (so it shows in QEMU's command line in `/proc`).
    pub fn unique_name(&self) -> &str {
        &self.unique
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        lock(&self.child).id()
    }

    /// Whether QEMU runs under KVM (else TCG).
    pub fn kvm(&self) -> bool {
        self.kvm
    }

    /// QEMU's command line, for messages.
    pub fn command_line(&self) -> String {
        let mut s = self.qemu.to_string_lossy().into_owned();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// The console log file (`<target>/qemu-logs/<name>-<pid>-<n>.log`).
    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// The directory holding the QMP and control sockets.
    pub fn runtime_dir(&self) -> &Path {
        self.runtime.path()
    }

    /// Keeps the console log after drop even if the test passes.
    pub fn keep_log(&self) {
        self.keep_log.store(true, Ordering::Relaxed);
    }

    // ---- console ---------------------------------------------------------

    /// Everything the console printed so far.
    pub fn console(&self) -> String {
        self.console.text()
    }

    /// A live view of the console from its first byte, for streaming it as
    /// it comes (see [`ConsoleFollower`](crate::ConsoleFollower)). It does
    /// not move the [`Vm::wait_for`] cursor.
    pub fn console_follow(&self) -> crate::ConsoleFollower {
        self.console.follow()
    }

    /// The last `n` console lines.
    pub fn console_tail(&self, n: usize) -> String {
        self.console.tail(n)
    }

    /// QEMU's stderr so far.
    pub fn qemu_stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// Waits until `pattern` appears in the console output after the cursor
    /// (the end of the previous match), moves the cursor past it, and returns
    /// the line it is on, without its newline. Fails at once if QEMU exits
    /// first, or after `timeout` with the recent console lines.
    ///
    /// The line is returned once complete, or as far as it got if its newline
    /// does not follow within [`LINE_GRACE`] (a prompt, say).
    pub fn wait_for(&self, pattern: &str, timeout: Duration) -> Result<String> {
        let mut cursor = lock(&self.cursor);
        let from = *cursor;
        let needle = pattern.as_bytes();
        let deadline = Instant::now() + timeout;
        let found = self
            .console
            .wait_until(deadline, |buf| console::find_from(buf, from, needle));
        let (start, end) = self.found(found, &format!("{pattern:?}"), timeout)?;
        *cursor = end;
        let grace = deadline.min(Instant::now() + LINE_GRACE);
        let line = match self.console.wait_until(grace, |buf| {
            buf[end..]
                .contains(&b'\n')
                .then(|| console::line_at(buf, start))
        }) {
            Wait::Found(line) => line,
            Wait::Closed | Wait::TimedOut => {
                console::line_at(self.console.text().as_bytes(), start)
            }
        };
        Ok(line)
    }

    /// Waits until a complete console line after the cursor satisfies `pred`
    /// (which sees the part of the line after the cursor), moves the cursor
    /// past that line and returns it. `what` describes it for errors.
    pub fn wait_for_line(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<String> {
        let mut cursor = lock(&self.cursor);
        let from = *cursor;
        let found = self.console.wait_until(Instant::now() + timeout, |buf| {
            console::find_line_from(buf, from, &mut pred)
                .map(|(start, end)| (end, console::line_at(buf, start)))
        });
        let (end, line) = self.found(found, what, timeout)?;
        *cursor = end;
        Ok(line)
    }

    /// Moves the console cursor back to the start, so the next wait also
    /// considers output already matched.
    pub fn rewind(&self) {
        *lock(&self.cursor) = 0;
    }

    /// Moves the console cursor to the end of the output so far, so the next
    /// wait only considers what comes after now.
    pub fn skip_console(&self) {
        *lock(&self.cursor) = self.console.len();
    }

    fn found<T>(&self, w: Wait<T>, what: &str, timeout: Duration) -> Result<T> {
        match w {
            Wait::Found(t) => Ok(t),
            Wait::TimedOut => Err(self.failed(Error::Timeout {
                name: self.unique.clone(),
                what: what.to_owned(),
                after: timeout,
                log: self.log.path().to_owned(),
                tail: console::format_tail(&self.console.tail(TAIL_LINES)),
            })),
            Wait::Closed => {
                // The console closes as QEMU exits: give it a moment.
                let status = self
                    .poll_exit(Instant::now() + Duration::from_secs(2))
                    .map_or_else(|| "QEMU still running".to_owned(), |s| s.to_string());
                Err(self.failed(Error::ConsoleClosed {
                    name: self.unique.clone(),
                    what: what.to_owned(),
                    status,
                    log: self.log.path().to_owned(),
                    tail: console::format_tail(&self.console.tail(TAIL_LINES)),
                }))
            }
        }
    }

    /// Marks the log as worth keeping and passes the error on.
    fn failed(&self, e: Error) -> Error {
        self.keep_log();
        e
    }

    // ---- process ---------------------------------------------------------

    /// QEMU's exit status, if it has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        lock(&self.child).try_wait().ok().flatten()
    }

    /// Waits for QEMU to exit (a guest power-off, or a reboot or panic with
    /// `no_reboot`), then for the console to drain.
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        match self.poll_exit(deadline) {
            Some(status) => {
                self.console.finish(Instant::now() + Duration::from_secs(5));
                Ok(status)
            }
            None => Err(self.failed(Error::Timeout {
                name: self.unique.clone(),
                what: "QEMU to exit".into(),
                after: timeout,
                log: self.log.path().to_owned(),
                tail: console::format_tail(&self.console.tail(TAIL_LINES)),
            })),
        }
    }

    fn poll_exit(&self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(s) = self.exit_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills QEMU now (SIGKILL) and reaps it. Drop does this too.
    pub fn kill(&self) -> Option<ExitStatus> {
        let mut child = lock(&self.child);
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        let _ = child.kill();
        child.wait().ok()
    }

    // ---- QMP -------------------------------------------------------------

    /// Runs a QMP command and returns its `return` value.
    pub fn qmp(&self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut guard = lock(&self.qmp);
        let Some(q) = guard.as_mut() else {
            return Err(self.failed(Error::QmpProtocol {
                path: self.runtime.path().join(QMP_SOCKET),
                detail: "the QMP connection is closed".into(),
            }));
        };
        match q.execute(command, arguments, QMP_TIMEOUT) {
            Ok(v) => Ok(v),
            Err(e) => {
                if !matches!(e, Error::QmpCommand { .. }) {
                    // The stream may be mid-message: it is of no further use.
                    *guard = None;
                }
                Err(self.failed(e))
            }
        }
    }

    /// The asynchronous QMP events QEMU has sent so far (`RESET`,
    /// `POWERDOWN`, `SHUTDOWN`, ...), in order. Reads what is pending first;
    /// after QEMU exited, that is everything it sent.
    pub fn qmp_events(&self) -> Vec<Value> {
        let mut guard = lock(&self.qmp);
        match guard.as_mut() {
            Some(q) => {
                q.drain_events(Duration::from_millis(50));
                q.events().to_vec()
            }
            None => Vec::new(),
        }
    }

    /// Why the guest stopped, from QEMU's last `SHUTDOWN` event:
    /// `"guest-shutdown"` for a guest power-off, `"guest-reset"` for a guest
    /// reboot or a kernel panic under `-no-reboot` (both exit QEMU with
    /// status 0, so this tells them apart), `"host-qmp-quit"`,
    /// `"host-qmp-system-reset"`, ... `None` if there was none (yet).
    pub fn shutdown_reason(&self) -> Option<String> {
        self.qmp_events()
            .iter()
            .rev()
            .find(|e| e["event"] == "SHUTDOWN")
            .and_then(|e| e["data"]["reason"].as_str().map(str::to_owned))
    }

    /// Presses the ACPI power button (QMP `system_powerdown`).
    pub fn system_powerdown(&self) -> Result<()> {
        self.qmp("system_powerdown", None).map(drop)
    }

    /// Resets the machine (QMP `system_reset`). With `no_reboot` (the
    /// default), QEMU exits instead of resetting.
    pub fn system_reset(&self) -> Result<()> {
        self.qmp("system_reset", None).map(drop)
    }

    /// Asks QEMU to quit (QMP `quit`) and waits for it to exit.
    pub fn quit(&self) -> Result<ExitStatus> {
        match self.qmp("quit", None) {
            // QEMU may close the socket before its reply arrives.
            Ok(_) | Err(Error::Io { .. }) => {}
            Err(e) => return Err(e),
        }
        self.wait_exit(QMP_TIMEOUT)
    }

    // ---- control channel -------------------------------------------------

    /// The control channel: a connection to the virtio-serial port `berth`
    /// (in the guest: `/dev/vportNpM`, named in
    /// `/sys/class/virtio-ports/*/name`). There is one connection per VM,
    /// shared with [`Vm::http`]; this returns a clone of its handle.
    ///
    /// What the guest sees (Linux `virtio_console`): while no host
    /// connection exists, `read` on the port returns 0 (EOF) at once rather
    /// than blocking (seen here; the driver's source also reports `POLLHUP`
    /// from `poll` then). So a guest server must treat EOF as "host not
    /// connected (yet)" and wait, by `poll` or by retrying after a pause,
    /// instead of exiting; the self-tests retry every 100 ms. Bytes the host
    /// writes while the guest has the port closed stay queued (QEMU stops
    /// reading the socket) until the guest opens it.
    pub fn channel(&self) -> Result<UnixStream> {
        let mut guard = lock(&self.http);
        let client = self.http_client(&mut guard)?;
        client
            .stream()
            .try_clone()
            .map_err(|e| self.failed(Error::io("clone", self.control_socket(), e)))
    }

    /// Sends an HTTP/1.1 request over the control channel and returns the
    /// status and body. The connection is kept alive and reused; after an
    /// error or `Connection: close` the next request reconnects (which the
    /// guest sees as a hang-up and a new connection on its port).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        timeout: Duration,
    ) -> Result<(u16, String)> {
        self.http_response(method, path, body, timeout)
            .map(|r| (r.status, r.body))
    }

    /// Like [`Vm::http`], with the response's headers.
    pub fn http_response(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        timeout: Duration,
    ) -> Result<HttpResponse> {
        let mut guard = lock(&self.http);
        let client = self.http_client(&mut guard)?;
        let result = client.request(method, path, body, timeout);
        if !client.is_reusable() {
            *guard = None;
        }
        result.map_err(|e| self.failed(e))
    }

    fn http_client<'a>(
        &self,
        guard: &'a mut MutexGuard<'_, Option<HttpClient<UnixStream>>>,
    ) -> Result<&'a mut HttpClient<UnixStream>> {
        if guard.is_none() {
            let path = self.control_socket();
            let stream = self
                .connect_socket(&path, CONNECT_TIMEOUT, "the control channel")
                .map_err(|e| self.failed(e))?;
            let client = HttpClient::new(stream)
                .map_err(|e| self.failed(Error::io("clone", path.clone(), e)))?;
            **guard = Some(client);
        }
        guard
            .as_mut()
            .ok_or_else(|| Error::Config("unreachable: the control connection was just set".into()))
    }

    fn control_socket(&self) -> PathBuf {
        self.runtime.path().join(CONTROL_SOCKET)
    }

    /// Connects to one of QEMU's server sockets, retrying while QEMU starts;
    /// fails at once if QEMU exits.
    fn connect_socket(&self, path: &Path, timeout: Duration, what: &str) -> Result<UnixStream> {
        let deadline = Instant::now() + timeout;
        loop {
            match UnixStream::connect(path) {
                Ok(s) => return Ok(s),
                Err(e) => {
                    if let Some(status) = self.exit_status() {
                        return Err(self.exited(status, &format!("{what} at {}", path.display())));
                    }
                    if Instant::now() >= deadline {
                        return Err(Error::io("connect to", path, e));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    fn join_stderr(&self, deadline: Instant) {
        let mut guard = lock(&self.stderr_reader);
        while guard.as_ref().is_some_and(|h| !h.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if guard.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(h) = guard.take()
        {
            let _ = h.join();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
        *lock(&self.http) = None;
        *lock(&self.qmp) = None;
        // QEMU is gone, so its pipes are at EOF; the bound only guards
        // against an fd leaked into some other child.
        let deadline = Instant::now() + Duration::from_secs(5);
        self.console.finish(deadline);
        self.join_stderr(deadline);
        let keep = std::thread::panicking()
            || self.keep_log.load(Ordering::Relaxed)
            || std::env::var_os(KEEP_LOGS_ENV).is_some_and(|v| v != "0" && !v.is_empty());
        if keep {
            eprintln!(
                "berth-qemu-test: console log of {} kept at {}",
                self.unique,
                self.log.path().display()
            );
        } else {
            let _ = std::fs::remove_file(self.log.path());
        }
    }
}

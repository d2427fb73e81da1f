//! Serving the API on a virtio-serial port.
//!
//! A port is one byte stream that the host side connects to and leaves.
//! While no host is connected, a read returns 0 and poll reports a hang-up
//! that never clears, which an event loop would see as "readable" forever.
//! So when a read returns 0 the port is *parked*: taken out of the event
//! loop until the kernel sends SIGIO, which it does when the host connects
//! and when data arrives (the port has O_ASYNC set, owned by PID 1). Then it
//! is registered again and read. A read of 0 is never an end of stream for
//! HTTP: the guest driver can report the host as gone even while its bytes
//! are arriving (the connect message and the data travel on separate
//! queues), so one HTTP connection lives on across host reconnects. A
//! request cut off by a host that left is answered with 400 when the next
//! bytes arrive, and a new connection starts. Nothing polls in a loop.
//! For the same reason streams (exec, followed logs, events) are refused
//! here with a 400 that says where to get them: a stream never sees its
//! client leave, and would hold the channel for good.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::Commands;

enum State {
    /// In the event loop.
    Live(AsyncFd<File>),
    /// Out of it, until the next SIGIO.
    Parked(File),
    /// Between the two (only while switching).
    Moving,
}

struct Inner {
    state: State,
    sigio: Signal,
}

/// A non-blocking port, shared by successive HTTP connections. (hyper wants
/// upgradable connections to be `Send`; the lock is never contended, PID 1
/// has one thread.)
#[derive(Clone)]
struct Port(Arc<Mutex<Inner>>);

impl Port {
    fn inner(&self) -> std::io::Result<std::sync::MutexGuard<'_, Inner>> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("control port state poisoned"))
    }
}

impl Inner {
    /// The live descriptor, waiting for SIGIO first if parked.
    fn live(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<&AsyncFd<File>>> {
        if let State::Parked(_) = self.state {
            ready!(self.sigio.poll_recv(cx));
            if let State::Parked(file) = std::mem::replace(&mut self.state, State::Moving) {
                self.state = State::Live(crate::sys::async_fd(file)?);
            }
        }
        match &self.state {
            State::Live(fd) => Poll::Ready(Ok(fd)),
            _ => Poll::Ready(Err(std::io::Error::other("control port lost"))),
        }
    }

    /// Registers the port with the event loop again. tokio never clears a
    /// "closed" readiness once seen, and the port reports a hang-up while
    /// no host is connected; after the host comes back that stale flag
    /// would make the port look ready forever, and every read or write
    /// would return `EAGAIN` in a loop that holds PID 1. A new
    /// registration starts from the port's present state.
    fn refresh(&mut self) -> std::io::Result<()> {
        if let State::Live(fd) = std::mem::replace(&mut self.state, State::Moving) {
            self.state = State::Live(crate::sys::async_fd(fd.into_inner())?);
        }
        Ok(())
    }

    fn park(&mut self) {
        if let State::Live(fd) = std::mem::replace(&mut self.state, State::Moving) {
            self.state = State::Parked(fd.into_inner());
        }
    }
}

impl AsyncRead for Port {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut inner = self.inner()?;
        loop {
            let fd = ready!(inner.live(cx))?;
            let mut guard = ready!(fd.poll_read_ready(cx))?;
            let stale = guard.ready().is_read_closed();
            let unfilled = buf.initialize_unfilled();
            let read = guard.try_io(|f| f.get_ref().read(unfilled));
            drop(guard);
            match read {
                Ok(Ok(0)) => inner.park(),
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) if stale => inner.refresh()?,
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for Port {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut inner = self.inner()?;
        loop {
            let fd = ready!(inner.live(cx))?;
            let mut guard = ready!(fd.poll_write_ready(cx))?;
            let stale = guard.ready().is_write_closed();
            let written = guard.try_io(|f| f.get_ref().write(data));
            drop(guard);
            match written {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) if stale => inner.refresh()?,
                Err(_would_block) => {}
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // The port outlives one connection: nothing to shut.
        Poll::Ready(Ok(()))
    }
}

/// Opens the port with SIGIO routed to this process.
fn open(path: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)?;
    let pid = std::process::id() as libc::pid_t;
    // SAFETY: fcntl(F_SETOWN) on a descriptor this function owns, with an
    // integer argument.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETOWN, pid) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let flags = OFlag::from_bits_retain(fcntl(&file, FcntlArg::F_GETFL)?);
    fcntl(&file, FcntlArg::F_SETFL(flags | OFlag::O_ASYNC))?;
    Ok(file)
}

/// Serves the API on the port at `path` until it fails to open or vanishes.
pub async fn serve_port(path: &Path, commands: Commands) -> std::io::Result<()> {
    // Listen for SIGIO before the port can send one.
    let sigio = signal(SignalKind::io())?;
    let file = open(path)?;
    // Live at first: the first read tells whether a host is there.
    let port = Port(Arc::new(Mutex::new(Inner {
        state: State::Live(crate::sys::async_fd(file)?),
        sigio,
    })));
    log::info!("control channel on {}", path.display());
    loop {
        let commands = commands.clone();
        let service = service_fn(move |req| super::handle_port(req, commands.clone()));
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(port.clone()), service)
            .with_upgrades();
        if let Err(e) = conn.await {
            log::debug!("control channel connection ended: {e}");
            // Back off a little, so a port that fails every read cannot
            // keep PID 1 busy.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    /// A pty master reports a hang-up while its slave is closed and clears
    /// it when the slave is opened again: the port's situation when its
    /// host comes back. A read must then wait for data, not spin (a spin
    /// starved the request's own work: the control channel stopped
    /// answering).
    #[test]
    fn a_hang_up_that_clears_is_waited_out_not_spun_on() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let got = rt.block_on(async {
                let pty = nix::pty::openpty(None, None).unwrap();
                let slave_path = nix::unistd::ttyname(&pty.slave).unwrap();
                drop(pty.slave);
                let master = File::from(pty.master);
                let flags = OFlag::from_bits_retain(fcntl(&master, FcntlArg::F_GETFL).unwrap());
                fcntl(&master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
                let mut port = Port(Arc::new(Mutex::new(Inner {
                    state: State::Live(crate::sys::async_fd(master).unwrap()),
                    sigio: signal(SignalKind::io()).unwrap(),
                })));
                // The event loop sees the hang-up; then the "host" comes.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let mut slave = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NOCTTY)
                    .open(&slave_path)
                    .unwrap();
                let mut buf = [0u8; 16];
                // As in hyper's connection task: the read is polled first,
                // then the request's other work (here a reply due in 50 ms).
                // A read spinning on stale readiness eats the task's whole
                // budget every time, and that reply would never arrive.
                let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = reply_tx.send(());
                });
                let first = tokio::time::timeout(Duration::from_secs(3), async {
                    tokio::select! {
                        biased;
                        r = port.read(&mut buf) => format!("read {r:?}"),
                        _ = reply_rx => "reply".to_string(),
                    }
                })
                .await;
                assert_eq!(first.as_deref(), Ok("reply"));
                slave.write_all(b"hello\n").unwrap();
                let n = tokio::time::timeout(Duration::from_secs(5), port.read(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                buf[..n].to_vec()
            });
            let _ = tx.send(got);
        });
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the port spun on a stale hang-up instead of waiting");
        assert!(got.starts_with(b"hello"), "{got:?}");
    }
}

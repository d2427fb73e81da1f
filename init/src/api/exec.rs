//! `POST /v1/containers/NAME/exec`: a command in a running container, run to
//! its end (a JSON answer), or interactive over an upgraded connection that
//! carries framed stdin, stdout, stderr, terminal sizes and the exit code
//! (docs/api.md has the frame format).

use std::os::fd::{AsRawFd, OwnedFd};

use bytes::Bytes;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::{ApiError, Body, Command, Commands, ask, full};
use crate::supervisor::reaper::Exit;

/// The most output kept of a command run to its end, per stream.
const MAX_OUTPUT: usize = 1 << 20;

/// Frame types (docs/api.md).
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const EXIT: u8 = 3;
const RESIZE: u8 = 4;
const STDIN_EOF: u8 = 5;

/// What the supervisor needs to start the command.
#[derive(Debug)]
pub struct ExecRequest {
    /// The program and its arguments.
    pub cmd: Vec<String>,
    /// Extra environment, `K=V`.
    pub env: Vec<String>,
    /// Whether stdin is a terminal (make it the controlling terminal).
    pub tty: bool,
    /// Its stdin, stdout and stderr.
    pub stdio: [OwnedFd; 3],
}

/// A started command.
#[derive(Debug)]
pub struct ExecStarted {
    /// Its exit, from the reaper.
    pub exit: oneshot::Receiver<Exit>,
    /// End-of-stream once it runs, or its setup failure.
    pub sync: OwnedFd,
}

#[derive(Deserialize)]
struct Body_ {
    cmd: Vec<String>,
    #[serde(default)]
    tty: bool,
    #[serde(default)]
    env: Vec<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ApiError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("pipe: {e}")))
}

fn nonblocking(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_retain(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    crate::sys::async_fd(fd)
}

async fn read_some(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut g = fd.readable().await?;
        match g.try_io(|f| nix::unistd::read(f.get_ref(), buf).map_err(std::io::Error::from)) {
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0), // a pty's end
            Ok(r) => return r,
            Err(_would_block) => {}
        }
    }
}

async fn write_all(fd: &AsyncFd<OwnedFd>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut g = fd.writable().await?;
        match g.try_io(|f| nix::unistd::write(f.get_ref(), data).map_err(std::io::Error::from)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}

/// Sends the request and waits until the command runs (or fails to).
async fn start(
    name: &str,
    req: ExecRequest,
    commands: &Commands,
) -> Result<oneshot::Receiver<Exit>, ApiError> {
    let n = name.to_string();
    let started = ask(commands, |r| Command::Exec(n, req, r)).await?;
    if let Some(f) = crate::runtime::setup_outcome(started.sync).await {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("exec in {name}: {f}"),
        ));
    }
    Ok(started.exit)
}

/// Answers an exec request.
pub async fn respond(
    name: &str,
    body: &[u8],
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    commands: &Commands,
) -> Result<Response<Body>, ApiError> {
    let b: Body_ = serde_json::from_slice(body).map_err(|e| bad(format!("exec request: {e}")))?;
    if b.cmd.is_empty() {
        return Err(bad("exec request: cmd is empty"));
    }
    match on_upgrade {
        None => run_to_end(name, b, commands).await,
        Some(up) => interactive(name, b, up, commands).await,
    }
}

async fn run_to_end(name: &str, b: Body_, commands: &Commands) -> Result<Response<Body>, ApiError> {
    let null: OwnedFd = std::fs::File::open("/dev/null")
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("/dev/null: {e}")))?
        .into();
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let exit = start(
        name,
        ExecRequest {
            cmd: b.cmd,
            env: b.env,
            tty: false,
            stdio: [null, out_w, err_w],
        },
        commands,
    )
    .await?;
    let collect = |fd: OwnedFd| async move {
        let mut out = Vec::new();
        let Ok(fd) = nonblocking(fd) else {
            return out;
        };
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = read_some(&fd, &mut buf).await {
            if n == 0 {
                break;
            }
            if out.len() < MAX_OUTPUT {
                out.extend_from_slice(&buf[..n.min(MAX_OUTPUT - out.len())]);
            }
        }
        out
    };
    let (stdout, stderr) = tokio::join!(collect(out_r), collect(err_r));
    let code = exit.await.map(Exit::code).unwrap_or(-1);
    let v = serde_json::json!({
        "exit_code": code,
        "stdout": String::from_utf8_lossy(&stdout),
        "stderr": String::from_utf8_lossy(&stderr),
    });
    Ok(super::reply(StatusCode::OK, &v))
}

async fn interactive(
    name: &str,
    b: Body_,
    up: hyper::upgrade::OnUpgrade,
    commands: &Commands,
) -> Result<Response<Body>, ApiError> {
    // (our end for stdin, our ends for stdout and stderr), and the stdio the
    // command gets.
    let (input, outputs, stdio): (OwnedFd, Vec<(u8, OwnedFd)>, [OwnedFd; 3]) = if b.tty {
        // The container's PID 1, whose devpts the terminal comes from.
        let n = name.to_string();
        let pid = ask(commands, |r| Command::Inspect(n, r))
            .await
            .ok()
            .and_then(|v| v["pid"].as_u64());
        let (master, slave) = pty(pid)?;
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("dup: {e}")))
        };
        let master2 = dup(&master)?;
        let s1 = dup(&slave)?;
        let s2 = dup(&slave)?;
        (master, vec![(STDOUT, master2)], [slave, s1, s2])
    } else {
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        (
            in_w,
            vec![(STDOUT, out_r), (STDERR, err_r)],
            [in_r, out_w, err_w],
        )
    };
    let exit = start(
        name,
        ExecRequest {
            cmd: b.cmd,
            env: b.env,
            tty: b.tty,
            stdio,
        },
        commands,
    )
    .await?;
    tokio::task::spawn_local(async move {
        let Ok(upgraded) = up.await else {
            return;
        };
        session(TokioIo::new(upgraded), input, outputs, exit, b.tty).await;
    });
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    r.headers_mut().insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static("berth-exec"),
    );
    Ok(r)
}

/// A pseudo-terminal (master, slave) in the devpts of the container whose
/// PID 1 is `pid`, so that the command finds its terminal's name
/// (`/dev/pts/N`) as `tty` and `ps` look for it; in berth's own devpts if
/// that fails (or the container has none).
fn pty(pid: Option<u64>) -> Result<(OwnedFd, OwnedFd), ApiError> {
    if let Some(pair) = pid.and_then(|p| container_pty(p).ok()) {
        return Ok(pair);
    }
    let pty = nix::pty::openpty(None, None)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("openpty: {e}")))?;
    Ok((pty.master, pty.slave))
}

fn container_pty(pid: u64) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("/proc/{pid}/root/dev/pts/ptmx"))?
        .into();
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer we pass; `master`
    // is a pty master this function owns.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor of
    // the master's slave, or -1.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((master, slave))
}

fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&[kind, 0, 0, 0]);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// Relays between the client's frames and the command's descriptors until
/// the command ends; then sends its exit code.
async fn session<S>(
    io: S,
    input: OwnedFd,
    outputs: Vec<(u8, OwnedFd)>,
    exit: oneshot::Receiver<Exit>,
    tty: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    // Readers of the command's output: each sends frames until its end.
    let mut readers = Vec::new();
    for (kind, fd) in outputs {
        let tx = out_tx.clone();
        readers.push(tokio::task::spawn_local(async move {
            let Ok(fd) = nonblocking(fd) else {
                return;
            };
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = read_some(&fd, &mut buf).await {
                if n == 0 || tx.send(frame(kind, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(out_tx);
    let raw_input = input.as_raw_fd();
    let mut input = nonblocking(input).ok();
    // The client's frames: stdin, resizes, end of stdin.
    let client = async {
        let mut header = [0u8; 8];
        loop {
            if rd.read_exact(&mut header).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if len > 1 << 20 {
                return;
            }
            let mut data = vec![0u8; len];
            if rd.read_exact(&mut data).await.is_err() {
                return;
            }
            match header[0] {
                STDIN => {
                    if let Some(fd) = &input
                        && write_all(fd, &data).await.is_err()
                    {
                        input = None;
                    }
                }
                STDIN_EOF if !tty => input = None,
                RESIZE if tty && input.is_some() => resize(raw_input, &data),
                _ => {}
            }
        }
    };
    tokio::pin!(client);
    // A client that left is done: its future must not be polled again.
    let mut client_left = false;
    let mut exit = std::pin::pin!(exit);
    let mut code = None;
    loop {
        tokio::select! {
            f = out_rx.recv() => match f {
                Some(f) => {
                    if wr.write_all(&f).await.is_err() {
                        break;
                    }
                }
                // Every output has ended: only the exit is left.
                None => {
                    if code.is_none() {
                        code = Some((&mut exit).await.map(Exit::code).unwrap_or(-1));
                    }
                    break;
                }
            },
            e = &mut exit, if code.is_none() => {
                code = Some(e.map(Exit::code).unwrap_or(-1));
                // A pty never reports the end of output while the master is
                // open: with a terminal, the exit ends the session.
                if tty {
                    break;
                }
            }
            () = &mut client, if !client_left => client_left = true,
        }
    }
    // Let what is still buffered out, briefly.
    while let Ok(f) = out_rx.try_recv() {
        let _ = wr.write_all(&f).await;
    }
    for r in readers {
        r.abort();
    }
    let code = code.unwrap_or(-1);
    let _ = wr
        .write_all(&frame(EXIT, code.to_string().as_bytes()))
        .await;
    let _ = wr.shutdown().await;
}

/// Applies a "rows cols" resize to the terminal.
fn resize(fd: i32, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut it = text
        .split_whitespace()
        .filter_map(|n| n.parse::<u16>().ok());
    let (Some(rows), Some(cols)) = (it.next(), it.next()) else {
        return;
    };
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize we pass; `fd` is the pty master
    // the session owns.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_an_eight_byte_header() {
        assert_eq!(frame(EXIT, b"42"), [3, 0, 0, 0, 0, 0, 0, 2, b'4', b'2']);
        assert_eq!(frame(STDOUT, b"").len(), 8);
    }
}

//! The API on a TCP listener with mutual TLS (`host.api.remote`), for
//! fleets: off by default; when on, every client must present a
//! certificate that chains to `client_ca`, or the handshake fails and the
//! client never reaches the router.
//!
//! - TLS 1.3 only, by rustls with the `ring` provider (no aws-lc: it needs
//!   cmake and would double the TLS code in a static binary).
//! - Client certificates are required and verified by
//!   [`WebPkiClientVerifier`] against the CA file alone (no system roots).
//! - Each accepted connection is its own task: the handshake is bounded by
//!   [`HANDSHAKE_TIMEOUT`], request heads by hyper's header-read timeout,
//!   and at most [`MAX_CONNECTIONS`] are open at once; a client past that
//!   is closed at once. The same router ([`super::handle`]) serves the
//!   decrypted stream, upgrades (exec) included.
//! - A refused client is logged as one warning line, rate-limited to
//!   [`BURST`] lines per [`WINDOW`]; what was held back is counted in the
//!   next line.
//! - The socket is bound with `IP_FREEBIND`, so a listener on an address
//!   that DHCP has not assigned yet starts at once and takes connections
//!   as soon as the address exists, with no waiting loop.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_config::RemoteApi;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::Commands;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Remote connections open at once; more are closed on arrival.
pub const MAX_CONNECTIONS: usize = 64;
/// The period over which refusal warnings are counted.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Refusal warnings logged per [`WINDOW`].
pub const BURST: u32 = 5;

/// Why the remote listener cannot start.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// {what} {path}: {source}
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong with it.
        source: rustls::pki_types::pem::Error,
    },
    /// {what} {path}: no certificate in it
    NoCertificate {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
    },
    /// client CA {path}: {source}
    ClientCa {
        /// Its path.
        path: PathBuf,
        /// Why rustls refused it.
        source: rustls::Error,
    },
    /// client certificate verifier: {0}
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// TLS configuration: {0}
    Tls(#[from] rustls::Error),
    /// listen on {addr}: {source}
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = |source| Error::Pem {
        what,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(Error::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The server's TLS configuration: its certificate and key, TLS 1.3, and
/// client certificates required and checked against `client_ca`.
pub fn server_config(cfg: &RemoteApi) -> Result<rustls::ServerConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in certificates("client CA", &cfg.client_ca)? {
        roots.add(ca).map_err(|source| Error::ClientCa {
            path: cfg.client_ca.clone(),
            source,
        })?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let chain = certificates("certificate", &cfg.cert)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|source| Error::Pem {
        what: "key",
        path: cfg.key.clone(),
        source,
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A TCP listener on `addr`, bound even before the address exists.
fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| Error::Listen { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    if addr.is_ipv4() {
        socket.set_freebind_v4(true).map_err(err)?;
    } else {
        socket.set_freebind_v6(true).map_err(err)?;
    }
    socket.set_nonblocking(true).map_err(err)?;
    socket.set_cloexec(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(128).map_err(err)?;
    tokio::net::TcpListener::from_std(socket.into()).map_err(err)
}

/// Counts refusals and says which to log: at most [`BURST`] per [`WINDOW`].
#[derive(Debug)]
pub struct RateLimit {
    start: Instant,
    logged: u32,
    held: u64,
}

impl RateLimit {
    /// A limit whose first window starts at `now`.
    pub fn new(now: Instant) -> RateLimit {
        RateLimit {
            start: now,
            logged: 0,
            held: 0,
        }
    }

    /// Whether a refusal at `now` is logged: `Some(n)` with the number of
    /// refusals held back since the last logged one, or `None` to hold
    /// this one back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if now.saturating_duration_since(self.start) >= WINDOW {
            self.start = now;
            self.logged = 0;
        }
        if self.logged >= BURST {
            self.held += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.held))
    }
}

fn refused(limit: &RefCell<RateLimit>, peer: SocketAddr, why: &dyn std::fmt::Display) {
    let Some(held) = limit.borrow_mut().allow(Instant::now()) else {
        return;
    };
    if held > 0 {
        log::warn!("remote API: refused {peer}: {why} ({held} more refused, not logged)");
    } else {
        log::warn!("remote API: refused {peer}: {why}");
    }
}

/// Counts a live connection for as long as it lives.
struct Live(Rc<Cell<usize>>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// Serves the API on `cfg.listen` with mutual TLS until the listener
/// fails. The certificate files are read once, here.
pub async fn serve(cfg: &RemoteApi, commands: Commands) -> Result<(), Error> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(cfg)?));
    let listener = listen(cfg.listen)?;
    log::info!(
        "remote API on {} (mutual TLS, clients of {})",
        cfg.listen,
        cfg.client_ca.display()
    );
    let limit = Rc::new(RefCell::new(RateLimit::new(Instant::now())));
    let live = Rc::new(Cell::new(0usize));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and the like: back off, never spin or die.
                log::warn!("remote API: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if live.get() >= MAX_CONNECTIONS {
            refused(&limit, peer, &"too many connections");
            continue;
        }
        live.set(live.get() + 1);
        let guard = Live(live.clone());
        let (acceptor, commands, limit) = (acceptor.clone(), commands.clone(), limit.clone());
        tokio::task::spawn_local(async move {
            let _guard = guard;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return refused(&limit, peer, &e),
                Err(_) => return refused(&limit, peer, &"TLS handshake timed out"),
            };
            let service = service_fn(move |req| super::handle(req, commands.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                log::debug!("remote API connection from {peer}: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_in_bursts_and_counted_when_held_back() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(t0);
        for _ in 0..BURST {
            assert_eq!(l.allow(t0), Some(0));
        }
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(2)), None);
        // A new window: the first line says how many were held back.
        assert_eq!(l.allow(t0 + WINDOW), Some(2));
        assert_eq!(l.allow(t0 + WINDOW), Some(0));
    }

    #[test]
    fn missing_files_are_named() {
        let cfg = RemoteApi {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            client_ca: "/nonexistent/ca.pem".into(),
        };
        let e = server_config(&cfg).unwrap_err().to_string();
        assert!(e.starts_with("client CA /nonexistent/ca.pem: "), "{e}");
    }
}

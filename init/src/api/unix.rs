//! The API on the local unix socket (`/run/berth/berth.sock` by default):
//! mode 0600, so only root reaches it. Each connection is its own task.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::Commands;

/// Serves the API on `path` until the listener fails.
pub async fn serve(path: &Path, commands: Commands) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket left by an earlier run (or a re-exec) is in the way.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    log::info!("API on {}", path.display());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and the like: back off, never spin or die.
                log::warn!("API socket: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let commands = commands.clone();
        tokio::task::spawn_local(async move {
            let service = service_fn(move |req| super::handle(req, commands.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                log::debug!("API connection: {e}");
            }
        });
    }
}

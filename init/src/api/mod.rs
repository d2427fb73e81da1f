//! berth's HTTP/1.1 JSON API, in the manner of the Docker Engine API, with
//! versioned paths (`/v1/...`).
//!
//! It is served on the virtio-serial port named `berth` (the control channel
//! a hypervisor or test harness uses); the local unix socket comes with the
//! CLI. Handlers never block PID 1: they send a [`Command`] to the
//! supervisor and await its answer.

mod port;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

pub use port::serve_port;

use crate::power::Action;

/// The largest request body berth reads.
const MAX_BODY: usize = 1 << 20;

/// What the API asks of the supervisor.
#[derive(Debug)]
pub enum Command {
    /// System information, as JSON.
    Info(oneshot::Sender<Value>),
    /// The containers and their states, as JSON.
    Containers(oneshot::Sender<Value>),
    /// Shut down and end the machine, for the reason given.
    Power(Action, &'static str),
}

/// The sending side the API holds.
pub type Commands = mpsc::UnboundedSender<Command>;

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut text = body.to_string();
    text.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Full<Bytes>> {
    reply(status, json!({ "message": message.to_string() }))
}

/// Routes one request.
pub async fn handle(
    req: Request<Incoming>,
    commands: Commands,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    // Read (and bound) the body even where it is unused, so the connection
    // stays in step.
    let _body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body: {e}"),
            ));
        }
    };
    let path = parts.uri.path();
    Ok(route(&parts.method, path, &commands).await)
}

async fn route(method: &Method, path: &str, commands: &Commands) -> Response<Full<Bytes>> {
    match (method, path) {
        (&Method::GET, "/v1/ping") => reply(StatusCode::OK, json!({ "ok": true })),
        (&Method::GET, "/v1/system/info") => ask(commands, Command::Info).await,
        (&Method::GET, "/v1/containers") => ask(commands, Command::Containers).await,
        (&Method::POST, "/v1/system/poweroff") => power(commands, Action::Poweroff),
        (&Method::POST, "/v1/system/reboot") => power(commands, Action::Reboot),
        (
            _,
            "/v1/ping"
            | "/v1/system/info"
            | "/v1/containers"
            | "/v1/system/poweroff"
            | "/v1/system/reboot",
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} not allowed on {path}"),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {method} {path}"),
        ),
    }
}

/// Asks the supervisor and answers with what it says.
async fn ask(
    commands: &Commands,
    make: impl FnOnce(oneshot::Sender<Value>) -> Command,
) -> Response<Full<Bytes>> {
    let (tx, rx) = oneshot::channel();
    if commands.send(make(tx)).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "berth is shutting down");
    }
    match rx.await {
        Ok(v) => reply(StatusCode::OK, v),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "berth is shutting down"),
    }
}

fn power(commands: &Commands, action: Action) -> Response<Full<Bytes>> {
    match commands.send(Command::Power(action, "requested through the API")) {
        Ok(()) => reply(StatusCode::ACCEPTED, json!({ "action": action.as_str() })),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "berth is shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response<Full<Bytes>>) -> (StatusCode, Value) {
        let status = r.status();
        let b = r.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&b).unwrap())
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn ping_unknown_paths_and_wrong_methods() {
        rt().block_on(async {
            let (tx, _rx) = mpsc::unbounded_channel();
            let (s, v) = body(route(&Method::GET, "/v1/ping", &tx).await).await;
            assert_eq!((s, v), (StatusCode::OK, json!({"ok": true})));
            let (s, v) = body(route(&Method::GET, "/v2/nope", &tx).await).await;
            assert_eq!(s, StatusCode::NOT_FOUND);
            assert_eq!(v["message"], "no such endpoint: GET /v2/nope");
            let (s, _) = body(route(&Method::GET, "/v1/system/reboot", &tx).await).await;
            assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
        });
    }

    #[test]
    fn power_requests_reach_the_supervisor() {
        rt().block_on(async {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let (s, v) = body(route(&Method::POST, "/v1/system/reboot", &tx).await).await;
            assert_eq!(s, StatusCode::ACCEPTED);
            assert_eq!(v["action"], "reboot");
            assert!(matches!(
                rx.try_recv(),
                Ok(Command::Power(Action::Reboot, _))
            ));
        });
    }

    #[test]
    fn info_is_answered_by_the_supervisor_or_refused_when_gone() {
        rt().block_on(async {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let answer = tokio::spawn(async move {
                if let Some(Command::Info(reply)) = rx.recv().await {
                    let _ = reply.send(json!({"version": "x"}));
                }
            });
            let (s, v) = body(route(&Method::GET, "/v1/system/info", &tx).await).await;
            assert_eq!((s, v["version"].clone()), (StatusCode::OK, json!("x")));
            answer.await.unwrap();
            let (s, _) = body(route(&Method::GET, "/v1/system/info", &tx).await).await;
            assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        });
    }
}

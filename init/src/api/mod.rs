//! berth's HTTP/1.1 JSON API, in the manner of the Docker Engine API, with
//! versioned paths (`/v1/...`); docs/api.md is its reference.
//!
//! It is served on the local unix socket ([`unix`]), on the virtio-serial
//! port named `berth` ([`port`], the channel a hypervisor or test harness
//! uses), and optionally on a mutual-TLS TCP listener. Handlers never block
//! PID 1: they send a [`Command`] to the supervisor and await its answer;
//! streams (logs, events, exec) run as their own tasks.

mod exec;
mod logs;
pub mod metrics;
mod port;
pub mod remote;
pub mod unix;

use std::convert::Infallible;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use exec::{ExecRequest, ExecStarted};
pub use port::serve_port;

use crate::power::Action;

/// The largest request body berth reads.
const MAX_BODY: usize = 1 << 20;

/// A response body: whole, or streamed.
pub type Body = BoxBody<Bytes, Infallible>;

/// An answer that is an error, with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
    /// More, for the client (e.g. a manifest's errors).
    pub details: Option<Value>,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            details: None,
        }
    }

    /// 404 for a container that does not exist.
    pub fn no_container(name: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("no such container: {name}"))
    }
}

/// Where the supervisor's answer goes.
pub type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// A request to change a container's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Start it.
    Start,
    /// Stop it, and keep it stopped.
    Stop,
    /// Stop it, then start it.
    Restart,
    /// Send it a signal.
    Kill(i32),
}

/// Where a container's log comes from.
#[derive(Debug)]
pub struct LogSource {
    /// Its files, oldest first.
    pub files: Vec<PathBuf>,
    /// New lines as they are written.
    pub follow: broadcast::Receiver<String>,
}

/// What the API asks of the supervisor.
#[derive(Debug)]
pub enum Command {
    /// System information.
    Info(Reply<Value>),
    /// Every container's state.
    Containers(Reply<Value>),
    /// One container's state and entry.
    Inspect(String, Reply<Value>),
    /// Start, stop, restart or signal a container.
    Control(String, Control, Reply<()>),
    /// A container's log.
    Logs(String, Reply<LogSource>),
    /// cgroup statistics of one container, or all.
    Stats(Option<String>, Reply<Value>),
    /// The stream of events.
    Events(Reply<broadcast::Receiver<String>>),
    /// The images.
    Images(Reply<Value>),
    /// Remove unnamed images and the layers and blobs nothing uses.
    PruneImages(Reply<Value>),
    /// Re-read the manifest (or take this one) and apply the difference.
    Reload(Option<String>, Reply<Value>),
    /// Run a command in a container.
    Exec(String, ExecRequest, Reply<ExecStarted>),
    /// Prometheus metrics.
    Metrics(Reply<String>),
    /// Shut down and end the machine, for the reason given.
    Power(Action, &'static str),
}

/// The sending side the API holds.
pub type Commands = mpsc::UnboundedSender<Command>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn reply(status: StatusCode, body: &Value) -> Response<Body> {
    let mut text = body.to_string();
    text.push('\n');
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(e: ApiError) -> Response<Body> {
    let mut body = json!({ "message": e.message });
    if let Some(d) = e.details {
        body["errors"] = d;
    }
    reply(e.status, &body)
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// Sends a command and waits for its answer.
async fn ask<T>(
    commands: &Commands,
    make: impl FnOnce(Reply<T>) -> Command,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    let gone = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "berth is shutting down");
    commands.send(make(tx)).map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?
}

/// The query string's value for `key`.
fn query<'a>(q: Option<&'a str>, key: &str) -> Option<&'a str> {
    q?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })
}

/// Whether a query flag is on (`1`, `true`, or present without a value).
fn flag(q: Option<&str>, key: &str) -> bool {
    matches!(query(q, key), Some("" | "1" | "true"))
}

/// Whether a request asks for a stream that outlives its response head:
/// an exec session, a followed log, the event stream.
fn is_stream(method: &Method, path: &str, q: Option<&str>, upgrade: bool) -> bool {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    upgrade
        || (method == Method::GET
            && match segments.as_slice() {
                ["", "v1", "events"] => true,
                ["", "v1", "containers", _, "logs"] => flag(q, "follow"),
                _ => false,
            })
        || (method == Method::POST
            && matches!(segments.as_slice(), ["", "v1", "containers", _, "exec"]))
}

/// Routes one request from the control channel: as [`handle`], except
/// streams. The channel is one byte stream with no end-of-connection a
/// stream could see (see [`port`]), so a stream would hold it for good.
pub async fn handle_port(
    req: Request<Incoming>,
    commands: Commands,
) -> Result<Response<Body>, Infallible> {
    let upgrade = req.headers().contains_key(hyper::header::UPGRADE);
    if is_stream(req.method(), req.uri().path(), req.uri().query(), upgrade) {
        return Ok(error(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{} {} is a stream, which the control channel does not carry (it would hold the channel): use the API socket in the guest or the remote API",
                req.method(),
                req.uri().path()
            ),
        )));
    }
    handle(req, commands).await
}

/// Routes one request.
pub async fn handle(
    mut req: Request<Incoming>,
    commands: Commands,
) -> Result<Response<Body>, Infallible> {
    let upgrade = req
        .headers()
        .get(hyper::header::UPGRADE)
        .is_some_and(|v| v == "berth-exec");
    let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body: {e}"),
            )));
        }
    };
    let path = parts.uri.path().to_string();
    let q = parts.uri.query();
    let r = route(&parts.method, &path, q, body, on_upgrade, &commands).await;
    Ok(r.unwrap_or_else(error))
}

async fn route(
    method: &Method,
    path: &str,
    q: Option<&str>,
    body: Bytes,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    commands: &Commands,
) -> Result<Response<Body>, ApiError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let get = method == Method::GET;
    let post = method == Method::POST;
    let wrong = || {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} not allowed on {path}"),
        )
    };
    match segments.as_slice() {
        ["", "v1", "ping"] if get => Ok(reply(StatusCode::OK, &json!({ "ok": true }))),
        ["", "v1", "system", "info"] if get => {
            Ok(reply(StatusCode::OK, &ask(commands, Command::Info).await?))
        }
        ["", "v1", "containers"] if get => Ok(reply(
            StatusCode::OK,
            &ask(commands, Command::Containers).await?,
        )),
        ["", "v1", "containers", name] if get => {
            let n = name.to_string();
            Ok(reply(
                StatusCode::OK,
                &ask(commands, |r| Command::Inspect(n, r)).await?,
            ))
        }
        [
            "",
            "v1",
            "containers",
            name,
            action @ ("start" | "stop" | "restart" | "kill"),
        ] if post => {
            let control = match *action {
                "start" => Control::Start,
                "stop" => Control::Stop,
                "restart" => Control::Restart,
                _ => Control::Kill(parse_signal(query(q, "signal").unwrap_or("SIGKILL"))?),
            };
            let n = name.to_string();
            ask(commands, |r| Command::Control(n, control, r)).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        ["", "v1", "containers", name, "logs"] if get => {
            let n = name.to_string();
            let source = ask(commands, |r| Command::Logs(n, r)).await?;
            logs::respond(source, q)
        }
        ["", "v1", "containers", name, "stats"] if get => {
            let n = name.to_string();
            Ok(reply(
                StatusCode::OK,
                &ask(commands, |r| Command::Stats(Some(n), r)).await?,
            ))
        }
        ["", "v1", "stats"] if get => Ok(reply(
            StatusCode::OK,
            &ask(commands, |r| Command::Stats(None, r)).await?,
        )),
        ["", "v1", "containers", name, "exec"] if post => {
            exec::respond(name, &body, on_upgrade, commands).await
        }
        ["", "v1", "events"] if get => {
            let rx = ask(commands, Command::Events).await?;
            Ok(logs::stream_lines(rx, "application/x-ndjson"))
        }
        ["", "v1", "images"] if get => Ok(reply(
            StatusCode::OK,
            &ask(commands, Command::Images).await?,
        )),
        ["", "v1", "images", "prune"] if post => Ok(reply(
            StatusCode::OK,
            &ask(commands, Command::PruneImages).await?,
        )),
        ["", "v1", "metrics"] if get => {
            let text = ask(commands, Command::Metrics).await?;
            let mut r = Response::new(full(text));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            Ok(r)
        }
        ["", "v1", "system", "reload"] if post => {
            let text = if body.is_empty() {
                None
            } else {
                Some(String::from_utf8(body.to_vec()).map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "the manifest in the body is not UTF-8",
                    )
                })?)
            };
            Ok(reply(
                StatusCode::OK,
                &ask(commands, |r| Command::Reload(text, r)).await?,
            ))
        }
        ["", "v1", "system", action @ ("poweroff" | "reboot")] if post => {
            let a = if *action == "poweroff" {
                Action::Poweroff
            } else {
                Action::Reboot
            };
            commands
                .send(Command::Power(a, "requested through the API"))
                .map_err(|_| {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "berth is shutting down")
                })?;
            Ok(reply(
                StatusCode::ACCEPTED,
                &json!({ "action": a.as_str() }),
            ))
        }
        [
            "",
            "v1",
            "ping" | "containers" | "stats" | "events" | "images" | "metrics",
        ]
        | [
            "",
            "v1",
            "system",
            "info" | "reload" | "poweroff" | "reboot",
        ]
        | ["", "v1", "containers", _]
        | ["", "v1", "images", "prune"]
        | [
            "",
            "v1",
            "containers",
            _,
            "start" | "stop" | "restart" | "kill" | "logs" | "stats" | "exec",
        ] => Err(wrong()),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {method} {path}"),
        )),
    }
}

/// A signal by name (`SIGTERM`, `TERM`) or number.
fn parse_signal(s: &str) -> Result<i32, ApiError> {
    let bad = || ApiError::new(StatusCode::BAD_REQUEST, format!("unknown signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|s| s as i32)
            .map_err(|_| bad());
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response<Body>) -> (StatusCode, Value) {
        let status = r.status();
        let b = r.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    async fn call(method: Method, path: &str, tx: &Commands) -> (StatusCode, Value) {
        let (p, q) = path
            .split_once('?')
            .map_or((path, None), |(p, q)| (p, Some(q)));
        match route(&method, p, q, Bytes::new(), None, tx).await {
            Ok(r) => body(r).await,
            Err(e) => body(error(e)).await,
        }
    }

    #[test]
    fn ping_unknown_paths_and_wrong_methods() {
        rt().block_on(async {
            let (tx, _rx) = mpsc::unbounded_channel();
            assert_eq!(
                call(Method::GET, "/v1/ping", &tx).await,
                (StatusCode::OK, json!({"ok": true}))
            );
            let (s, v) = call(Method::GET, "/v2/nope", &tx).await;
            assert_eq!(s, StatusCode::NOT_FOUND);
            assert_eq!(v["message"], "no such endpoint: GET /v2/nope");
            assert_eq!(
                call(Method::GET, "/v1/system/reboot", &tx).await.0,
                StatusCode::METHOD_NOT_ALLOWED
            );
            assert_eq!(
                call(Method::DELETE, "/v1/containers/web", &tx).await.0,
                StatusCode::METHOD_NOT_ALLOWED
            );
        });
    }

    #[test]
    fn power_requests_reach_the_supervisor() {
        rt().block_on(async {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let (s, v) = call(Method::POST, "/v1/system/reboot", &tx).await;
            assert_eq!(s, StatusCode::ACCEPTED);
            assert_eq!(v["action"], "reboot");
            assert!(matches!(
                rx.try_recv(),
                Ok(Command::Power(Action::Reboot, _))
            ));
        });
    }

    #[test]
    fn control_requests_carry_the_container_and_signal() {
        rt().block_on(async {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let answer = tokio::task::spawn(async move {
                let mut seen = Vec::new();
                while let Some(c) = rx.recv().await {
                    if let Command::Control(n, c, r) = c {
                        seen.push((n.clone(), c));
                        let _ = r.send(if n == "ghost" {
                            Err(ApiError::no_container(&n))
                        } else {
                            Ok(())
                        });
                    }
                }
                seen
            });
            assert_eq!(
                call(Method::POST, "/v1/containers/web/kill?signal=TERM", &tx)
                    .await
                    .0,
                StatusCode::NO_CONTENT
            );
            assert_eq!(
                call(Method::POST, "/v1/containers/web/stop", &tx).await.0,
                StatusCode::NO_CONTENT
            );
            let (s, v) = call(Method::POST, "/v1/containers/ghost/start", &tx).await;
            assert_eq!(
                (s, v["message"].as_str()),
                (StatusCode::NOT_FOUND, Some("no such container: ghost"))
            );
            let (s, v) = call(Method::POST, "/v1/containers/web/kill?signal=SIGNOPE", &tx).await;
            assert_eq!(
                (s, v["message"].as_str()),
                (StatusCode::BAD_REQUEST, Some("unknown signal \"SIGNOPE\""))
            );
            drop(tx);
            assert_eq!(
                answer.await.unwrap(),
                [
                    ("web".to_string(), Control::Kill(15)),
                    ("web".into(), Control::Stop),
                    ("ghost".into(), Control::Start)
                ]
            );
        });
    }

    #[test]
    fn a_gone_supervisor_is_503() {
        rt().block_on(async {
            let (tx, rx) = mpsc::unbounded_channel();
            drop(rx);
            assert_eq!(
                call(Method::GET, "/v1/system/info", &tx).await.0,
                StatusCode::SERVICE_UNAVAILABLE
            );
        });
    }

    #[test]
    fn queries() {
        assert_eq!(query(Some("a=1&follow&tail=5"), "tail"), Some("5"));
        assert!(flag(Some("a=1&follow&tail=5"), "follow"));
        assert!(!flag(Some("follow=0"), "follow"));
        let (get, post) = (Method::GET, Method::POST);
        assert!(is_stream(&get, "/v1/events", None, false));
        assert!(is_stream(
            &get,
            "/v1/containers/web/logs",
            Some("follow=1&tail=2"),
            false
        ));
        assert!(!is_stream(
            &get,
            "/v1/containers/web/logs",
            Some("tail=2"),
            false
        ));
        assert!(is_stream(&post, "/v1/containers/web/exec", None, false));
        assert!(is_stream(&post, "/v1/anything", None, true));
        assert!(!is_stream(&get, "/v1/containers", None, false));
        assert!(!is_stream(&post, "/v1/containers/web/restart", None, false));
        assert_eq!(query(None, "x"), None);
    }
}

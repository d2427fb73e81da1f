//! `GET /v1/containers/NAME/logs` and `GET /v1/events`: streamed bodies fed
//! by a task, so a large log or a slow client never holds up PID 1.

use std::io::Read;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use tokio::sync::{broadcast, mpsc};

use super::{ApiError, Body, LogSource, flag, query};

/// Chunks buffered for a slow client before the feeding task waits.
const BUFFERED: usize = 64;

/// A streamed body and the sender that feeds it.
fn channel_body(content_type: &'static str) -> (mpsc::Sender<Bytes>, Response<Body>) {
    let (tx, rx) = mpsc::channel::<Bytes>(BUFFERED);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    (tx, r)
}

/// A body of lines from a broadcast, until the client leaves. Lines the
/// client was too slow for are replaced by a note.
pub fn stream_lines(
    mut rx: broadcast::Receiver<String>,
    content_type: &'static str,
) -> Response<Body> {
    let (tx, r) = channel_body(content_type);
    tokio::task::spawn_local(async move {
        follow(&mut rx, &tx).await;
    });
    r
}

async fn follow(rx: &mut broadcast::Receiver<String>, tx: &mpsc::Sender<Bytes>) {
    loop {
        let line = match rx.recv().await {
            Ok(l) => l,
            Err(broadcast::error::RecvError::Lagged(n)) => format!("... {n} lines dropped"),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if tx.send(Bytes::from(line + "\n")).await.is_err() {
            return; // The client left.
        }
    }
}

/// The cut-off for `since`: RFC 3339 as stored, or Unix seconds.
fn since_key(s: &str) -> Option<String> {
    if let Ok(secs) = s.parse::<u64>() {
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        return Some(crate::logging::files::rfc3339(t));
    }
    // YYYY-MM-DDTHH:MM:SS[.fraction]Z, made the stored width (six digits
    // of fraction) so it compares as text.
    let body = s.strip_suffix('Z')?;
    let (secs, frac) = body.split_once('.').unwrap_or((body, ""));
    let ok = secs.len() == 19
        && secs.as_bytes()[4] == b'-'
        && secs.as_bytes()[10] == b'T'
        && frac.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| format!("{secs}.{:0<6.6}Z", frac))
}

/// Which lines of stored text to send.
pub fn select(
    text: &str,
    since: Option<&str>,
    tail: Option<usize>,
    stdout: bool,
    stderr: bool,
) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| since.is_none_or(|s| l.get(..s.len()).is_some_and(|t| t >= s)))
        .filter(|l| {
            let stream = l.split(' ').nth(1);
            (stdout && stream == Some("stdout")) || (stderr && stream == Some("stderr"))
        })
        .map(str::to_string)
        .collect();
    if let Some(n) = tail {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    lines
}

/// Answers a logs request.
pub fn respond(source: LogSource, q: Option<&str>) -> Result<Response<Body>, ApiError> {
    let tail = match query(q, "tail") {
        None | Some("all") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("tail must be a number or \"all\", not {n:?}"),
            )
        })?),
    };
    let since = match query(q, "since") {
        None => None,
        Some(s) => Some(since_key(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("since must be RFC 3339 or Unix seconds, not {s:?}"),
            )
        })?),
    };
    let both = query(q, "stdout").is_none() && query(q, "stderr").is_none();
    let stdout = both || flag(q, "stdout");
    let stderr = both || flag(q, "stderr");
    let follow_on = flag(q, "follow");
    let LogSource {
        files,
        follow: mut rx,
    } = source;
    let (tx, r) = channel_body("text/plain; charset=utf-8");
    tokio::task::spawn_local(async move {
        // Stored lines, oldest file first; each file is read in one go (a
        // few MiB at most) and the loop yields between files.
        let mut text = String::new();
        for f in &files {
            let mut s = String::new();
            if std::fs::File::open(f)
                .and_then(|mut h| h.read_to_string(&mut s))
                .is_ok()
            {
                text.push_str(&s);
            }
            tokio::task::yield_now().await;
        }
        for chunk in select(&text, since.as_deref(), tail, stdout, stderr).chunks(256) {
            let mut b = chunk.join("\n");
            b.push('\n');
            if tx.send(Bytes::from(b)).await.is_err() {
                return;
            }
        }
        if follow_on {
            loop {
                let line = match rx.recv().await {
                    Ok(l) => l,
                    Err(broadcast::error::RecvError::Lagged(n)) => format!("... {n} lines dropped"),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let keep = select(&line, since.as_deref(), None, stdout, stderr);
                if keep.is_empty() && !line.starts_with("... ") {
                    continue;
                }
                if tx.send(Bytes::from(line + "\n")).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-11-30T06:00:00.000000Z stdout one\n\
                       2026-11-30T06:00:01.000000Z stderr two\n\
                       2026-11-30T06:00:02.000000Z stdout three\n";

    #[test]
    fn tail_since_and_streams() {
        assert_eq!(select(LOG, None, Some(2), true, true).len(), 2);
        assert!(select(LOG, None, Some(2), true, true)[1].ends_with("three"));
        let since = since_key("2026-11-30T06:00:01Z").unwrap();
        let got = select(LOG, Some(&since), None, true, true);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(select(LOG, None, None, false, true).len(), 1);
        assert_eq!(select(LOG, None, Some(0), true, true).len(), 0);
        assert_eq!(
            since_key("1796018400").unwrap(),
            "2026-11-30T06:00:00.000000Z"
        );
        assert_eq!(since_key("yesterday"), None);
    }
}

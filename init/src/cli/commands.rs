//! The commands that talk to berth: each parses its arguments, makes its
//! requests through the [`Client`], and prints a table or JSON.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::args::{Opt, Parsed, flag, parse, valued};
use super::client::Client;
use super::exec::{self, Sink};
use super::table::{self, Table};
use super::{Error, Globals, Io, UsageError};

fn usage(text: &str) -> Error {
    UsageError(format!("usage: berth {text}")).into()
}

/// Parses a command's arguments; `--json` and `--host` after the command
/// override the global ones.
fn parse_cmd(
    args: &[String],
    opts: &[Opt],
    stop_at_first: bool,
    g: &mut Globals,
) -> Result<Parsed, Error> {
    let p = parse(args, opts, stop_at_first)?;
    if p.has("json") {
        g.json = true;
    }
    if let Some(h) = p.value("host") {
        g.host = h.into();
    }
    Ok(p)
}

/// The one argument `NAME`, or a usage error.
fn one_name(p: &Parsed, text: &str) -> Result<String, Error> {
    match p.args.as_slice() {
        [n] => Ok(n.clone()),
        _ => Err(usage(text)),
    }
}

fn pretty(io: &mut Io<'_>, v: &Value) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    writeln!(io.out, "{text}")?;
    Ok(())
}

/// Runs `cmd` with its arguments.
pub fn run(cmd: &str, args: &[String], mut g: Globals, io: &mut Io<'_>) -> Result<i32, Error> {
    match cmd {
        "ps" => {
            let p = parse_cmd(args, &[], false, &mut g)?;
            if !p.args.is_empty() {
                return Err(usage("ps"));
            }
            ps(&Client::new(&g.host), g.json, io)
        }
        "inspect" => {
            let p = parse_cmd(args, &[], false, &mut g)?;
            let name = one_name(&p, "inspect NAME")?;
            let v = Client::new(&g.host).json("GET", &format!("/v1/containers/{name}"), None)?;
            pretty(io, &v)?;
            Ok(0)
        }
        "logs" => logs(args, g, io),
        "exec" => exec(args, g, io),
        "start" | "stop" | "restart" | "kill" => control(cmd, args, g, io),
        "stats" => {
            let p = parse_cmd(args, &[], false, &mut g)?;
            let target = match p.args.as_slice() {
                [] => "/v1/stats".to_string(),
                [n] => format!("/v1/containers/{n}/stats"),
                _ => return Err(usage("stats [NAME]")),
            };
            let v = Client::new(&g.host).json("GET", &target, None)?;
            if g.json {
                pretty(io, &v)?;
            } else {
                stats_table(&v, io)?;
            }
            Ok(0)
        }
        "events" => {
            let p = parse_cmd(args, &[], false, &mut g)?;
            if !p.args.is_empty() {
                return Err(usage("events"));
            }
            let body = Client::new(&g.host).stream("/v1/events")?;
            each_line(body, |line| {
                if g.json {
                    writeln!(io.out, "{line}")?;
                } else {
                    writeln!(io.out, "{}", event_line(line))?;
                }
                io.out.flush()?;
                Ok(())
            })?;
            Ok(0)
        }
        "images" => {
            let p = parse_cmd(args, &[], false, &mut g)?;
            if p.args.len() == 1 && p.args[0] == "prune" {
                let v = Client::new(&g.host).json("POST", "/v1/images/prune", None)?;
                if g.json {
                    pretty(io, &v)?;
                } else {
                    writeln!(
                        io.out,
                        "removed {} image(s), {} layer(s) ({}), {} blob(s)",
                        v["images"],
                        v["layers"],
                        table::bytes(&v["bytes"]),
                        v["blobs"]
                    )?;
                }
                return Ok(0);
            }
            if !p.args.is_empty() {
                return Err(usage("images"));
            }
            let v = Client::new(&g.host).json("GET", "/v1/images", None)?;
            if g.json {
                pretty(io, &v)?;
            } else {
                let mut t = Table::new(&["REFERENCE", "LAYERS", "SIZE"]);
                for i in v.as_array().into_iter().flatten() {
                    t.row(vec![
                        table::cell(&i["reference"]),
                        table::cell(&i["layers"]),
                        table::bytes(&i["size_bytes"]),
                    ]);
                }
                io.out.write_all(t.render().as_bytes())?;
            }
            Ok(0)
        }
        "info" => {
            let p = parse_cmd(args, &[], false, &mut g)?;
            if !p.args.is_empty() {
                return Err(usage("info"));
            }
            pretty(
                io,
                &Client::new(&g.host).json("GET", "/v1/system/info", None)?,
            )?;
            Ok(0)
        }
        "metrics" => {
            let p = parse_cmd(args, &[], false, &mut g)?;
            if !p.args.is_empty() {
                return Err(usage("metrics"));
            }
            let text = Client::new(&g.host).call("GET", "/v1/metrics", None)?;
            io.out.write_all(&text)?;
            Ok(0)
        }
        "reload" => reload(args, g, io),
        "poweroff" | "reboot" => {
            let p = parse_cmd(args, &[], false, &mut g)?;
            if !p.args.is_empty() {
                return Err(usage(cmd));
            }
            let v = Client::new(&g.host).json("POST", &format!("/v1/system/{cmd}"), Some(b""))?;
            if g.json {
                pretty(io, &v)?;
            } else {
                writeln!(io.out, "{cmd}: on its way")?;
            }
            Ok(0)
        }
        other => Err(UsageError(format!("unknown command {other}")).into()),
    }
}

/// The `ps` table's rows, from `GET /v1/containers`.
pub fn ps_table(v: &Value) -> String {
    let mut t = Table::new(&[
        "NAME", "IMAGE", "STATE", "STATUS", "RESTARTS", "PID", "UPTIME", "IP", "PORTS",
    ]);
    for c in v.as_array().into_iter().flatten() {
        t.row(vec![
            table::cell(&c["name"]),
            table::cell(&c["image"]),
            table::cell(&c["state"]),
            table::cell(&c["status"]),
            table::cell(&c["restarts"]),
            table::cell(&c["pid"]),
            table::duration_ms(&c["uptime_ms"]),
            table::cell(&c["ip"]),
            table::cell(&c["ports"]),
        ]);
    }
    t.render()
}

fn ps(client: &Client, json: bool, io: &mut Io<'_>) -> Result<i32, Error> {
    let v = client.json("GET", "/v1/containers", None)?;
    if json {
        pretty(io, &v)?;
    } else {
        io.out.write_all(ps_table(&v).as_bytes())?;
    }
    Ok(0)
}

fn stats_table(v: &Value, io: &mut Io<'_>) -> Result<(), Error> {
    let mut t = Table::new(&[
        "NAME", "CPU", "MEMORY", "LIMIT", "PIDS", "IO-READ", "IO-WRITE",
    ]);
    let rows: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        one => vec![one],
    };
    for s in rows {
        t.row(vec![
            table::cell(&s["name"]),
            table::cpu(&s["cpu_usage_usec"]),
            table::bytes(&s["memory_bytes"]),
            match &s["memory_limit_bytes"] {
                Value::Null => "max".into(),
                l => table::bytes(l),
            },
            table::cell(&s["pids"]),
            table::bytes(&s["io_read_bytes"]),
            table::bytes(&s["io_write_bytes"]),
        ]);
    }
    io.out.write_all(t.render().as_bytes())?;
    Ok(())
}

/// An event for people: `TIME CONTAINER EVENT key=value...`.
pub fn event_line(line: &str) -> String {
    let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(line) else {
        return line.to_string();
    };
    let mut take = |k: &str| m.remove(k).map_or_else(|| "-".into(), |v| table::cell(&v));
    let mut out = format!("{} {} {}", take("time"), take("container"), take("event"));
    for (k, v) in m {
        out.push_str(&format!(" {k}={}", table::cell(&v)));
    }
    out
}

/// Calls `f` with each line of `body` as it arrives, without its line end.
fn each_line(body: impl Read, mut f: impl FnMut(&str) -> Result<(), Error>) -> Result<(), Error> {
    let mut r = BufReader::new(body);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = r
            .read_until(b'\n', &mut buf)
            .map_err(super::client::Error::Io)?;
        if n == 0 {
            return Ok(());
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        f(&String::from_utf8_lossy(&buf))?;
    }
}

const LOGS_USAGE: &str = "logs [-f] [-t] [--tail N] [--since TIME] NAME";

fn logs(args: &[String], mut g: Globals, io: &mut Io<'_>) -> Result<i32, Error> {
    const OPTS: &[Opt] = &[
        flag(Some('f'), "follow"),
        flag(Some('t'), "timestamps"),
        valued(Some('n'), "tail"),
        valued(None, "since"),
    ];
    let p = parse_cmd(args, OPTS, false, &mut g)?;
    let name = one_name(&p, LOGS_USAGE)?;
    let mut q = Vec::new();
    if p.has("follow") {
        q.push("follow=1".to_string());
    }
    if let Some(n) = p.value("tail") {
        if n != "all" && n.parse::<usize>().is_err() {
            return Err(UsageError(format!("--tail takes a number or \"all\", not {n:?}")).into());
        }
        q.push(format!("tail={}", super::client::encode(n)));
    }
    if let Some(s) = p.value("since") {
        q.push(format!("since={}", super::client::encode(s)));
    }
    let mut target = format!("/v1/containers/{name}/logs");
    if !q.is_empty() {
        target = format!("{target}?{}", q.join("&"));
    }
    let body = Client::new(&g.host).stream(&target)?;
    let stamps = p.has("timestamps");
    each_line(body, |line| {
        write_log_line(line, g.json, stamps, io)?;
        Ok(())
    })?;
    Ok(0)
}

/// One stored log line (`TIME STREAM TEXT`) for people: the text, to
/// stdout or stderr as the container wrote it, after its time with `-t`;
/// or as JSON.
pub fn write_log_line(line: &str, json: bool, stamps: bool, io: &mut Io<'_>) -> Result<(), Error> {
    let mut parts = line.splitn(3, ' ');
    let (time, stream, text) = match (parts.next(), parts.next(), parts.next()) {
        (Some(t), Some(s @ ("stdout" | "stderr")), text) => (t, s, text.unwrap_or("")),
        // "... N lines dropped", or anything unexpected: a note.
        _ => {
            if json {
                writeln!(io.out, "{}", json!({ "note": line }))?;
            } else {
                writeln!(io.err, "berth: {line}")?;
            }
            return Ok(());
        }
    };
    if json {
        writeln!(
            io.out,
            "{}",
            json!({ "time": time, "stream": stream, "text": text })
        )?;
        io.out.flush()?;
        return Ok(());
    }
    let w: &mut dyn Write = if stream == "stderr" {
        &mut *io.err
    } else {
        &mut *io.out
    };
    if stamps {
        writeln!(w, "{time} {text}")?;
    } else {
        writeln!(w, "{text}")?;
    }
    w.flush()?;
    Ok(())
}

fn control(cmd: &str, args: &[String], mut g: Globals, io: &mut Io<'_>) -> Result<i32, Error> {
    let opts: &[Opt] = if cmd == "kill" {
        &[valued(Some('s'), "signal")]
    } else {
        &[]
    };
    let p = parse_cmd(args, opts, false, &mut g)?;
    if p.args.is_empty() {
        return Err(usage(&if cmd == "kill" {
            "kill [-s SIGNAL] NAME...".to_string()
        } else {
            format!("{cmd} NAME...")
        }));
    }
    let query = p
        .value("signal")
        .map(|s| format!("?signal={}", super::client::encode(s)))
        .unwrap_or_default();
    let client = Client::new(&g.host);
    let mut failed = 0;
    for name in &p.args {
        let target = format!("/v1/containers/{name}/{cmd}{query}");
        match client.call("POST", &target, Some(b"")) {
            Ok(_) => writeln!(io.out, "{name}")?,
            Err(e) => {
                super::report(&Error::Client(e), io.err);
                failed += 1;
            }
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

fn reload(args: &[String], mut g: Globals, io: &mut Io<'_>) -> Result<i32, Error> {
    let p = parse_cmd(args, &[], false, &mut g)?;
    let body = match p.args.as_slice() {
        [] => Vec::new(),
        [file] => std::fs::read(file).map_err(|source| Error::File {
            path: file.into(),
            source,
        })?,
        _ => return Err(usage("reload [FILE]")),
    };
    let v = Client::new(&g.host).json("POST", "/v1/system/reload", Some(&body))?;
    if g.json {
        pretty(io, &v)?;
    } else {
        io.out.write_all(reload_summary(&v).as_bytes())?;
    }
    Ok(0)
}

/// A reload's answer for people: one line per kind of change.
pub fn reload_summary(v: &Value) -> String {
    let list = |k: &str| {
        let names: Vec<String> = v[k]
            .as_array()
            .into_iter()
            .flatten()
            .map(table::cell)
            .collect();
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(", ")
        }
    };
    let mut out = String::new();
    for k in ["added", "removed", "changed", "unchanged"] {
        out.push_str(&format!("{k}: {}\n", list(k)));
    }
    if v["host_changes_need_reboot"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        out.push_str(&format!(
            "host changes at the next boot: {}\n",
            list("host_changes_need_reboot")
        ));
    }
    out
}

const EXEC_USAGE: &str = "exec [-i] [-t] [-e K=V]... NAME CMD...";

fn exec(args: &[String], mut g: Globals, io: &mut Io<'_>) -> Result<i32, Error> {
    const OPTS: &[Opt] = &[
        flag(Some('i'), "interactive"),
        flag(Some('t'), "tty"),
        valued(Some('e'), "env"),
    ];
    let p = parse_cmd(args, OPTS, true, &mut g)?;
    let (name, cmd) = match p.args.split_first() {
        Some((n, cmd)) if !cmd.is_empty() => (n.clone(), cmd.to_vec()),
        _ => return Err(usage(EXEC_USAGE)),
    };
    let (interactive, tty) = (p.has("interactive"), p.has("tty"));
    let body = json!({ "cmd": cmd, "tty": tty, "env": p.values("env"), "stdin": interactive });
    let body = body.to_string();
    let target = format!("/v1/containers/{name}/exec");
    let client = Client::new(&g.host);
    if g.json {
        // Run to the end; the answer has the output and the code.
        let v = client.json("POST", &target, Some(body.as_bytes()))?;
        pretty(io, &v)?;
        return Ok(v["exit_code"]
            .as_i64()
            .map_or(255, |c| exec::exit_code(c.to_string().as_bytes())));
    }
    let (mut frames, writer) = client.upgrade(&target, body.as_bytes())?;
    let sink: Sink = Arc::new(Mutex::new(writer));
    let stdin = std::io::stdin();
    let terminal = tty && stdin.is_terminal();
    if terminal && let Some(size) = exec::size(&stdin) {
        exec::send(&sink, exec::RESIZE, size.as_bytes()).map_err(super::client::Error::Io)?;
    }
    // Raw mode only when our keys go to the command.
    let raw = if terminal && interactive {
        let raw = exec::RawMode::enter(std::io::stdin())
            .map_err(|e| Error::Failed(format!("terminal: {e}")))?;
        exec::watch_signals(sink.clone(), raw.saved().clone())
            .map_err(|e| Error::Failed(format!("signals: {e}")))?;
        Some(raw)
    } else {
        None
    };
    let input: Option<Box<dyn Read + Send>> = interactive.then(|| Box::new(stdin) as _);
    let code = exec::relay(&mut frames, &sink, input, io.out, io.err);
    drop(raw);
    Ok(code?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_shows_each_state_with_dashes_for_blanks() {
        let v = json!([
            {"name": "web", "image": "busybox:latest", "state": "running", "status": "running, healthy",
             "restarts": 0, "pid": 123, "uptime_ms": 52000, "ip": "10.88.0.2", "ports": ["8080:80/tcp"]},
            {"name": "job", "image": "busybox:latest", "state": "exited", "status": "exit code 0",
             "restarts": 0, "pid": null, "uptime_ms": null, "ip": null, "ports": []}
        ]);
        assert_eq!(
            ps_table(&v),
            "NAME   IMAGE            STATE     STATUS             RESTARTS   PID   UPTIME   IP          PORTS\n\
             web    busybox:latest   running   running, healthy   0          123   52s      10.88.0.2   8080:80/tcp\n\
             job    busybox:latest   exited    exit code 0        0          -     -        -           -\n"
        );
    }

    #[test]
    fn events_for_people() {
        assert_eq!(
            event_line(
                r#"{"time":"2026-11-30T06:41:22.123456Z","container":"job","event":"die","exit_code":137,"oom":true}"#
            ),
            "2026-11-30T06:41:22.123456Z job die exit_code=137 oom=true"
        );
        assert_eq!(event_line("not json"), "not json");
    }

    #[test]
    fn log_lines_go_to_their_stream() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io {
            out: &mut out,
            err: &mut err,
        };
        for l in [
            "2026-11-30T06:00:00.000000Z stdout hello world",
            "2026-11-30T06:00:01.000000Z stderr oops",
            "... 3 lines dropped",
            "2026-11-30T06:00:02.000000Z stdout ",
        ] {
            write_log_line(l, false, false, &mut io).unwrap();
        }
        write_log_line("2026-11-30T06:00:03.000000Z stdout t", false, true, &mut io).unwrap();
        write_log_line("2026-11-30T06:00:04.000000Z stdout j", true, false, &mut io).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "hello world\n\n2026-11-30T06:00:03.000000Z t\n\
             {\"stream\":\"stdout\",\"text\":\"j\",\"time\":\"2026-11-30T06:00:04.000000Z\"}\n"
        );
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "oops\nberth: ... 3 lines dropped\n"
        );
    }

    #[test]
    fn reload_summaries() {
        let v = json!({"added": ["new"], "removed": [], "changed": ["web"], "unchanged": ["db", "cache"],
                       "host_changes_need_reboot": []});
        assert_eq!(
            reload_summary(&v),
            "added: new\nremoved: -\nchanged: web\nunchanged: db, cache\n"
        );
        let v = json!({"host_changes_need_reboot": ["api"]});
        assert!(reload_summary(&v).ends_with("host changes at the next boot: api\n"));
    }
}

//! The rows measured in one boot of berth's main bench image: container
//! start against crun, runc and the unshare floor; berth's memory with 0,
//! 10 and 100 idle containers; 200 containers; published-port throughput
//! against host networking.
//!
//! The timing loops run inside the guest (the guest helper, from the
//! privileged `tools` container, in PID 1's namespaces); this side starts
//! them through berth's exec API and reads their `BENCH` lines.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use berth_qemu_test::scenario::{self, Image};
use berth_qemu_test::{HostFwd, UserNet, Vm, free_local_port};
use serde_json::{Value, json};

use crate::images::{SINK_BRIDGE_PORT, SINK_HOST_PORT, TOOLS_PORT};
use crate::stats::{Samples, round};
use crate::{Error, Result, log};

/// The guest's memory: room for 200 containers.
const MEMORY_MIB: u32 = 1024;
/// How long one in-guest command may run.
const EXEC_TIMEOUT: Duration = Duration::from_secs(1200);

/// A parsed `BENCH kind key=value...` line.
#[derive(Debug, Clone)]
pub struct Line {
    /// Its kind.
    pub kind: String,
    /// Its fields.
    pub fields: Vec<(String, String)>,
}

impl Line {
    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A field as a number.
    pub fn num(&self, key: &str) -> Result<f64> {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::new(format!("no number {key} in BENCH {}", self.kind)))
    }
}

/// The `BENCH` lines of `text`.
pub fn bench_lines(text: &str) -> Vec<Line> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("BENCH "))
        .map(|l| {
            let mut words = l.split_whitespace();
            let kind = words.next().unwrap_or("").to_owned();
            let fields = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            Line { kind, fields }
        })
        .collect()
}

/// The main VM and how to reach its sinks.
pub struct Guest {
    vm: Vm,
    bridge_port: u16,
    host_port: u16,
    tools_port: u16,
}

impl Guest {
    /// Boots the main image and waits until berth is ready and its
    /// containers run.
    pub fn boot(image: &Image) -> Result<Guest> {
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 3 {
            let p = free_local_port()?;
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let (bridge_port, host_port, tools_port) = (ports[0], ports[1], ports[2]);
        let vm = scenario::boot_image("bench-main", image, |c| {
            c.memory_mib(MEMORY_MIB).network(
                UserNet::new()
                    .hostfwd(HostFwd::tcp(bridge_port, SINK_BRIDGE_PORT))
                    .hostfwd(HostFwd::tcp(host_port, SINK_HOST_PORT))
                    .hostfwd(HostFwd::tcp(tools_port, TOOLS_PORT)),
            )
        })?;
        let guest = Guest {
            vm,
            bridge_port,
            host_port,
            tools_port,
        };
        guest.wait_running(
            &["tools", "sink-bridge", "sink-host"],
            Duration::from_secs(120),
        )?;
        Ok(guest)
    }

    /// The VM.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    fn get_json(&self, path: &str) -> Result<Value> {
        let (status, body) = self.vm.http("GET", path, None, scenario::HTTP_TIMEOUT)?;
        if status != 200 {
            return Err(Error::new(format!("GET {path}: {status} {body}")));
        }
        serde_json::from_str(&body).map_err(|e| Error::new(format!("GET {path}: {e}: {body}")))
    }

    /// Waits until each of `names` is running.
    fn wait_running(&self, names: &[&str], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let list = self.get_json("/v1/containers")?;
            let running = |n: &str| {
                list.as_array()
                    .is_some_and(|a| a.iter().any(|c| c["name"] == n && c["state"] == "running"))
            };
            if names.iter().all(|n| running(n)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::new(format!(
                    "not all of {names:?} run: {list}\n{}",
                    self.vm.console_tail(30)
                )));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Runs a command of the guest helper in the tools container (it
    /// serves them on a port that QEMU forwards from 127.0.0.1) and returns
    /// its `BENCH` lines.
    pub fn helper(&self, args: &[&str]) -> Result<Vec<Line>> {
        let line = args.join(" ");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut s = loop {
            match TcpStream::connect(("127.0.0.1", self.tools_port)) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    return Err(Error::new(format!("the tools container's port: {e}")));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        };
        let err = |e: std::io::Error| Error::new(format!("{line}: {e}"));
        s.set_read_timeout(Some(EXEC_TIMEOUT)).map_err(err)?;
        s.write_all(format!("{line}\n").as_bytes()).map_err(err)?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(err)?;
        let status = out
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("BENCH-EXIT "))
            .and_then(|c| c.trim().parse::<i32>().ok());
        if status != Some(0) {
            return Err(Error::new(format!(
                "guest helper {line:?}: {status:?}: {out}\n{}",
                self.vm.console_tail(20)
            )));
        }
        Ok(bench_lines(&out))
    }

    /// berth's RSS as berth reports it (`/v1/system/info`), in KiB.
    fn api_rss_kib(&self) -> Result<f64> {
        let info = self.get_json("/v1/system/info")?;
        info["berth"]["rss_kib"]
            .as_f64()
            .ok_or_else(|| Error::new(format!("no rss_kib in {info}")))
    }
}

/// Container start: `rounds` samples of each runtime and metric.
pub fn starts(g: &Guest, rounds: usize) -> Result<Value> {
    let lines = g.helper(&["starts", &rounds.to_string()])?;
    let mut out = serde_json::Map::new();
    for runtime in ["berth", "crun", "runc", "unshare"] {
        let mut r = serde_json::Map::new();
        for metric in ["exec", "true"] {
            let mut s = Samples::new();
            for l in lines.iter().filter(|l| {
                l.kind == "start"
                    && l.get("runtime") == Some(runtime)
                    && l.get("metric") == Some(metric)
            }) {
                s.push(l.num("us")? / 1e3);
            }
            if s.is_empty() {
                return Err(Error::new(format!("no samples of {runtime} {metric}")));
            }
            r.insert(format!("{metric}_ms"), s.json(2));
        }
        out.insert(runtime.into(), Value::Object(r));
    }
    Ok(Value::Object(out))
}

fn one<'a>(lines: &'a [Line], kind: &str) -> Result<&'a Line> {
    lines
        .iter()
        .find(|l| l.kind == kind)
        .ok_or_else(|| Error::new(format!("no BENCH {kind} line")))
}

/// Reloads to the fleet of `n` idle containers (from `from`), waiting
/// until the new ones run; returns the helper's `fleet` line.
fn fleet(g: &Guest, n: usize, from: usize) -> Result<Line> {
    let manifest = format!("/usr/lib/berth-bench/fleet-{n}.toml");
    let starts = n.saturating_sub(from).to_string();
    let lines = g.helper(&["fleet", &manifest, "idle-", &starts])?;
    Ok(one(&lines, "fleet")?.clone())
}

/// PID 1's memory: `{rss_kib, pss_kib, api_rss_kib}`, after a settling pause.
fn memory_now(g: &Guest) -> Result<Value> {
    std::thread::sleep(Duration::from_secs(2));
    let lines = g.helper(&["mem"])?;
    let m = one(&lines, "mem")?;
    Ok(json!({
        "rss_kib": m.num("rss_kib")?,
        "pss_kib": m.num("pss_kib")?,
        "private_kib": m.num("private_kib")?,
        "anon_kib": m.num("anon_kib")?,
        "api_rss_kib": g.api_rss_kib()?,
    }))
}

/// Memory with 0 and 10 idle containers (the 10 are left running).
pub fn memory(g: &Guest) -> Result<Value> {
    Ok(Value::Object(idle_memory(g, &[10])?))
}

/// Memory with 0 idle containers, then with each count of `counts` in
/// turn, the fleet grown by manifest reloads.
fn idle_memory(g: &Guest, counts: &[usize]) -> Result<serde_json::Map<String, Value>> {
    let mut memory = serde_json::Map::new();
    memory.insert("idle_0".into(), memory_now(g)?);
    log("memory: 0 idle containers measured");
    let mut from = 0;
    for &n in counts {
        let f = fleet(g, n, from)?;
        from = n;
        log(&format!(
            "memory: {n} idle containers running after {:.0} ms",
            f.num("all_ms")?
        ));
        memory.insert(format!("idle_{n}"), memory_now(g)?);
    }
    Ok(memory)
}

/// Memory with 0, 10 and 100 idle containers, then 200 containers: the
/// time until all run, berth's CPU while they idle, a restart storm.
pub fn fleets(g: &Guest, idle_secs: usize) -> Result<(Value, Value)> {
    let mut memory = idle_memory(g, &[10, 100])?;
    let from = 100;
    // Back to none (SIGKILL stops them at once), then 200 from nothing.
    fleet(g, 0, from)?;
    std::thread::sleep(Duration::from_secs(3));
    let f = fleet(g, 200, 0)?;
    let all_ms = f.num("all_ms")?;
    log(&format!(
        "scale: 200 containers running after {all_ms:.0} ms"
    ));
    let mem200 = memory_now(g)?;
    let cpu = g.helper(&["cpu", &idle_secs.to_string()])?;
    let cpu = one(&cpu, "cpu")?;
    let (cpu_ms, wall_ms) = (cpu.num("cpu_ms")?, cpu.num("wall_ms")?);
    log(&format!(
        "scale: berth used {cpu_ms:.0} ms of CPU in {wall_ms:.0} ms of idling"
    ));
    let storm = g.helper(&["storm", "idle-", "200"])?;
    let storm = one(&storm, "storm")?;
    log(&format!(
        "scale: restart storm of 200: all running again after {:.0} ms",
        storm.num("all_ms")?
    ));
    let scale = json!({
        "containers": 200,
        "all_running_ms": round(all_ms, 0),
        "reload_answer_ms": round(f.num("answer_ms")?, 0),
        "memory": mem200,
        "idle_cpu_ms": cpu_ms,
        "idle_wall_ms": wall_ms,
        "idle_cpu_percent": round(cpu_ms / wall_ms * 100.0, 3),
        "storm_posted_ms": round(storm.num("posted_ms")?, 0),
        "storm_all_running_ms": round(storm.num("all_ms")?, 0),
    });
    // Last, berth with no container at all (the tools container too goes):
    // RSS as berth reports it.
    let (status, body) = g.vm.http(
        "POST",
        "/v1/system/reload",
        Some("version = 1\n"),
        Duration::from_secs(300),
    )?;
    if status != 200 {
        return Err(Error::new(format!("reload to nothing: {status} {body}")));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while g
        .get_json("/v1/containers")?
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        if Instant::now() > deadline {
            return Err(Error::new("containers still listed after a reload to none"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(2));
    memory.insert("none_api_rss_kib".into(), json!(g.api_rss_kib()?));
    Ok((Value::Object(memory), scale))
}

/// Sends `bytes` to the sink at `port` and waits for its count: seconds.
fn push(port: u16, bytes: usize) -> Result<f64> {
    let chunk = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| Error::new(format!("connect 127.0.0.1:{port}: {e}")))?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        s.write_all(&chunk[..n])
            .map_err(|e| Error::new(format!("send to {port}: {e}")))?;
        left -= n;
    }
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| Error::new(format!("shutdown {port}: {e}")))?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count)
        .map_err(|e| Error::new(format!("read the count from {port}: {e}")))?;
    let got = u64::from_be_bytes(count);
    if got != bytes as u64 {
        return Err(Error::new(format!(
            "the sink on {port} got {got} of {bytes} bytes"
        )));
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Waits until the sink at `port` answers through QEMU's forward.
fn wait_sink(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match push(port, 1) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Published port against host networking: MB/s of `mib` MiB pushes and
/// connections per second, `rounds` times each, alternating.
pub fn ports(g: &Guest, mib: usize, conns: usize, rounds: usize) -> Result<Value> {
    let targets = [("published", g.bridge_port), ("host", g.host_port)];
    for (_, port) in targets {
        wait_sink(port)?;
    }
    let mut mbps = [Samples::new(), Samples::new()];
    let mut cps = [Samples::new(), Samples::new()];
    for _ in 0..rounds {
        for (i, (_, port)) in targets.iter().enumerate() {
            let secs = push(*port, mib << 20)?;
            mbps[i].push(mib as f64 * 1.048576 / secs);
            let start = Instant::now();
            for _ in 0..conns {
                push(*port, 1)?;
            }
            cps[i].push(conns as f64 / start.elapsed().as_secs_f64());
        }
    }
    let mut out = serde_json::Map::new();
    for (i, (name, _)) in targets.iter().enumerate() {
        out.insert(
            (*name).into(),
            json!({"throughput_mb_s": mbps[i].json(1), "connections_per_s": cps[i].json(1)}),
        );
    }
    out.insert("transfer_mib".into(), json!(mib));
    out.insert("connections_per_round".into(), json!(conns));
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_parse() {
        let l = bench_lines(
            "noise\nBENCH start runtime=crun metric=exec us=1234\n  BENCH mem rss_kib=10\n",
        );
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].kind, "start");
        assert_eq!(l[0].get("runtime"), Some("crun"));
        assert_eq!(l[0].num("us").ok(), Some(1234.0));
        assert_eq!(l[1].num("rss_kib").ok(), Some(10.0));
    }
}

//! The boot row: guest uptime at PID 1's start, at ready and at the first
//! container's exec, for berth and for the baseline, boot after boot.

use std::time::Duration;

use berth_qemu_test::scenario::{self, Image};
use serde_json::{Value, json};

use crate::stats::Samples;
use crate::{Error, Result, log};

/// How long one bench boot may take.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// One boot, as guest uptime in ms.
#[derive(Debug, Clone, Default)]
pub struct Boot {
    /// PID 1's first instruction (berth) or first command (baseline).
    pub pid1: f64,
    /// berth's `ready`; the baseline's point just before `crun run`.
    pub ready: f64,
    /// The container's first program.
    pub exec: f64,
    /// Where the time goes, in order: (name, ms).
    pub phases: Vec<(String, f64)>,
    /// berth's RSS just after the boot (KiB), from its API.
    pub rss_kib: Option<f64>,
}

/// The number after `marker` on the console, as ms of uptime (the guest
/// helper prints nanoseconds).
fn mark_ms(console: &str, marker: &str) -> Option<f64> {
    let pat = format!("BENCH-MARK {marker} ");
    let i = console.find(&pat)? + pat.len();
    let ns: f64 = console[i..].split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e6)
}

/// The number just before `suffix` on the first line containing `prefix`.
fn number_between(console: &str, prefix: &str, suffix: &str) -> Option<f64> {
    let line = console.lines().find(|l| {
        l.find(prefix)
            .is_some_and(|i| l[i + prefix.len()..].contains(suffix))
    })?;
    let rest = &line[line.find(prefix)? + prefix.len()..];
    rest[..rest.find(suffix)?].trim().parse().ok()
}

/// The uptime (ms) berth stamped on its line containing `text`.
fn berth_time(console: &str, text: &str) -> Option<f64> {
    let line = console
        .lines()
        .find(|l| l.contains(text) && l.contains("berth: "))?;
    let stamp = line.strip_prefix('[')?.split(']').next()?;
    Some(stamp.trim().parse::<f64>().ok()? * 1e3)
}

/// berth's boot steps, in order: its lines `[uptime] berth: <step> (<ms> ms)`,
/// as (step, uptime at its start in ms, ms).
fn berth_steps(console: &str) -> Vec<(String, f64, f64)> {
    let mut steps = Vec::new();
    for line in console.lines() {
        let Some(i) = line.find("berth: ") else {
            continue;
        };
        let text = &line[i + "berth: ".len()..];
        let Some(open) = text.rfind(" (") else {
            continue;
        };
        let Some(ms) = text[open + 2..].strip_suffix(" ms)") else {
            continue;
        };
        let at = line
            .strip_prefix('[')
            .and_then(|l| l.split(']').next())
            .and_then(|t| t.trim().parse::<f64>().ok());
        if let (Ok(ms), Some(at)) = (ms.parse::<f64>(), at) {
            steps.push((text[..open].to_owned(), at * 1e3 - ms, ms));
        }
    }
    steps
}

/// Boots berth's boot image once.
pub fn berth(image: &Image, n: usize) -> Result<Boot> {
    let vm = scenario::launch_image(&format!("bench-boot-berth-{n}"), image, |c| c)?;
    vm.wait_for("BENCH-MARK exec ", BOOT_TIMEOUT)?;
    vm.rewind();
    vm.wait_for(scenario::READY, BOOT_TIMEOUT)?;
    let console = vm.console();
    let pid1 = number_between(&console, "starting as PID 1 at ", " s since boot")
        .ok_or_else(|| Error::new("berth printed no start time"))?
        * 1e3;
    let ready = number_between(&console, "ready in ", " ms")
        .ok_or_else(|| Error::new("berth printed no ready time"))?;
    let exec = mark_ms(&console, "exec").ok_or_else(|| Error::new("no exec mark"))?;
    let ready = pid1 + ready;
    // Where the time goes: what berth logs, and the spans between.
    let steps = berth_steps(&console);
    let mut phases = Vec::new();
    if let Some((_, first_start, _)) = steps.first() {
        phases.push((
            "span: leave the initramfs (bind it as the root)".to_owned(),
            first_start - pid1,
        ));
    }
    for (name, _, ms) in &steps {
        if !name.starts_with("network:") {
            phases.push((format!("step: {name}"), *ms));
        }
    }
    let starting = berth_time(&console, "first: waiting → starting");
    let running = berth_time(&console, "first: starting → running");
    if let Some(t) = starting {
        phases.push((
            "span: ready → the container's start begins".to_owned(),
            t - ready,
        ));
        phases.push((
            "span: the container's start → its exec".to_owned(),
            exec - t,
        ));
    }
    if let Some(t) = running {
        phases.push((
            "span: its exec → berth logs it running".to_owned(),
            t - exec,
        ));
    }
    let rss_kib = match vm.http("GET", "/v1/system/info", None, scenario::HTTP_TIMEOUT) {
        Ok((200, body)) => serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["berth"]["rss_kib"].as_f64()),
        Ok((status, body)) => {
            log(&format!("boot: GET /v1/system/info: {status} {body}"));
            None
        }
        Err(e) => {
            log(&format!("boot: GET /v1/system/info: {e}"));
            None
        }
    };
    drop(vm);
    Ok(Boot {
        pid1,
        ready,
        exec,
        phases,
        rss_kib,
    })
}

/// Boots the baseline once.
pub fn baseline(image: &Image, n: usize) -> Result<Boot> {
    let vm = scenario::launch_image(&format!("bench-boot-baseline-{n}"), image, |c| c)?;
    vm.wait_for("BENCH-MARK done ", BOOT_TIMEOUT)?;
    // Its last words: the kernel's "Run /init" line, then power-off.
    let _ = vm.wait_for("Run /init as init process", Duration::from_secs(20));
    let console = vm.console();
    let m = |k: &str| mark_ms(&console, k).ok_or_else(|| Error::new(format!("no {k} mark")));
    // PID 1's start: when the kernel ran /init (the shell's first command
    // comes later, by the shell's own start-up).
    let pid1 = number_between(&console, "[", "] Run /init as init process")
        .ok_or_else(|| Error::new("the baseline printed no \"Run /init\" line"))?
        * 1e3;
    let (ready, exec) = (m("ready")?, m("exec")?);
    let mut phases = vec![(
        "span: sh starts and runs its first command".to_owned(),
        m("pid1")? - pid1,
    )];
    for (name, from, to) in [
        (
            "span: leave the initramfs (copy into a tmpfs, switch_root)",
            "pid1",
            "switched",
        ),
        ("span: mounts and cgroups", "switched", "mounted"),
        (
            "span: load overlay, start the device modules",
            "mounted",
            "ready",
        ),
        ("span: crun run → the container's exec", "ready", "exec"),
    ] {
        phases.push((name.to_owned(), m(to)? - m(from)?));
    }
    drop(vm);
    Ok(Boot {
        pid1,
        ready,
        exec,
        phases,
        rss_kib: None,
    })
}

/// Summaries of boots of one kind.
pub fn summary(boots: &[Boot]) -> Value {
    let col = |f: &dyn Fn(&Boot) -> f64| Samples(boots.iter().map(f).collect()).json(1);
    let mut names: Vec<&String> = Vec::new();
    for b in boots {
        for (name, _) in &b.phases {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let phases: Vec<Value> = names
        .iter()
        .map(|name| {
            let s = Samples(
                boots
                    .iter()
                    .filter_map(|b| b.phases.iter().find(|(n, _)| n == *name).map(|(_, v)| *v))
                    .collect(),
            );
            json!({"name": name, "ms": s.json(1)})
        })
        .collect();
    let rss = Samples(boots.iter().filter_map(|b| b.rss_kib).collect());
    json!({
        "rss_kib_after_boot": if rss.is_empty() { Value::Null } else { rss.json(0) },
        "uptime_pid1_ms": col(&|b| b.pid1),
        "uptime_ready_ms": col(&|b| b.ready),
        "uptime_exec_ms": col(&|b| b.exec),
        "pid1_to_ready_ms": col(&|b| b.ready - b.pid1),
        "pid1_to_exec_ms": col(&|b| b.exec - b.pid1),
        "phases": phases,
    })
}

/// Boots each `rounds` times, alternating, so that a slow spell of the
/// host hits both alike.
pub fn run(berth_image: &Image, baseline_image: &Image, rounds: usize) -> Result<Value> {
    let (mut b, mut l) = (Vec::new(), Vec::new());
    for n in 0..rounds {
        let x = berth(berth_image, n)?;
        log(&format!(
            "boot {}/{rounds}: berth PID 1 at {:.0} ms, exec at {:.0} ms (+{:.0})",
            n + 1,
            x.pid1,
            x.exec,
            x.exec - x.pid1
        ));
        b.push(x);
        let y = baseline(baseline_image, n)?;
        log(&format!(
            "boot {}/{rounds}: baseline PID 1 at {:.0} ms, exec at {:.0} ms (+{:.0})",
            n + 1,
            y.pid1,
            y.exec,
            y.exec - y.pid1
        ));
        l.push(y);
    }
    let ratio = Samples(b.iter().map(|x| x.exec - x.pid1).collect()).median()
        / Samples(l.iter().map(|x| x.exec - x.pid1).collect()).median();
    Ok(json!({
        "rounds": rounds,
        "berth": summary(&b),
        "baseline": summary(&l),
        "ratio_pid1_to_exec": crate::stats::round(ratio, 3),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_parsing() {
        let c = "[    0.9] berth: boot: berth 0.1.0 starting as PID 1 at 1.234 s since boot\n\
                 [    1.0] berth: boot: mounted system filesystems (1.5 ms)\n\
                 [    1.2] berth: ready in 321 ms\n\
                 [    1.25] berth: supervisor: first: waiting → starting (starting)\n\
                 [    1.3] first | BENCH-MARK exec 1600000000\n";
        assert_eq!(
            number_between(c, "starting as PID 1 at ", " s since boot"),
            Some(1.234)
        );
        assert_eq!(number_between(c, "ready in ", " ms"), Some(321.0));
        assert_eq!(mark_ms(c, "exec"), Some(1600.0));
        let steps = berth_steps(c);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].0, "boot: mounted system filesystems");
        assert!((steps[0].1 - 998.5).abs() < 1e-9);
        assert_eq!(berth_time(c, "first: waiting → starting"), Some(1250.0));
        assert_eq!(
            number_between(
                "[    2.778980] Run /init as init process",
                "[",
                "] Run /init"
            ),
            Some(2.77898)
        );
    }
}

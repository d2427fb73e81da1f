//! The supervisor in a real guest: restart policies and back-off, health-
//! gated dependencies, one-shot tasks, unhealthy restarts, ordered and
//! bounded shutdown, output floods and log rotation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use berth_qemu_test::Vm;
use berth_qemu_test::scenario::{self, BOOT_TIMEOUT, HTTP_TIMEOUT};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

fn containers(vm: &Vm) -> Vec<Value> {
    let (status, body) = vm
        .http("GET", "/v1/containers", None, HTTP_TIMEOUT)
        .unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn container(vm: &Vm, name: &str) -> Value {
    containers(vm)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// Waits until `pred` holds for the named container.
fn wait_until(vm: &Vm, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let c = container(vm, name);
        if pred(&c) {
            return c;
        }
        assert!(Instant::now() < deadline, "{name} never {what}: {c:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits until the console has `text` anywhere, and returns that line.
fn wait_console(vm: &Vm, text: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(l) = vm.console().lines().find(|l| l.contains(text)) {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "never saw {text:?}:\n{}",
            vm.console_tail(40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The position of the first console line containing `text`.
fn position(console: &str, text: &str) -> usize {
    console
        .lines()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no line with {text:?} in:\n{console}"))
}

const LIFECYCLE: &str = r#"
version = 1
[host]
on_fatal = "poweroff"

[containers.crasher]
image = "busybox:latest"
command = ["sh", "-c", "echo crashing; exit 3"]
restart = "on-failure:3"

[containers.victim]
image = "busybox:latest"
command = ["nc", "-l", "-p", "1234"]
restart = "always"

[containers.killer]
image = "busybox:latest"
pid = "host"
command = ["sh", "-c", "sleep 3; kill -9 $(pidof nc); echo killed"]

[containers.db]
image = "busybox:latest"
command = ["sh", "-c", "sleep 3; touch /tmp/ready; exec sleep 600"]
healthcheck = { test = ["CMD", "test", "-f", "/tmp/ready"], interval = "1s", retries = 1, start_period = "20s", start_interval = "1s" }

[containers.app]
image = "busybox:latest"
command = ["sleep", "600"]
depends_on = { db = { condition = "service_healthy" } }

[containers.setup-ok]
image = "busybox:latest"
command = ["sh", "-c", "echo setting up; sleep 1"]
timeout = "20s"

[containers.gated]
image = "busybox:latest"
command = ["sleep", "600"]
depends_on = { setup-ok = { condition = "service_completed_successfully" } }

[containers.setup-bad]
image = "busybox:latest"
command = ["sh", "-c", "exit 2"]

[containers.stuck]
image = "busybox:latest"
command = ["sleep", "600"]
depends_on = { setup-bad = { condition = "service_completed_successfully" } }

[containers.sick]
image = "busybox:latest"
command = ["sleep", "600"]
init = true
restart = "always"
healthcheck = { test = ["CMD-SHELL", "exit 1"], interval = "1s", retries = 2 }
"#;

#[test]
fn restarts_backoff_dependencies_one_shots_and_health() {
    let vm = scenario::boot("supervisor-lifecycle", LIFECYCLE, |c| c).unwrap();

    // on-failure:3: three restarts with a growing delay, then failed.
    let c = wait_until(&vm, "crasher", "failed", |c| c["state"] == "failed");
    assert_eq!(c["restarts"], 3);
    assert_eq!(c["status"], "exit code 3; gave up after 3 restarts");
    let console = vm.console();
    let a = position(
        &console,
        "crasher: running → backing-off (exit code 3; restart 1 in 100 ms)",
    );
    let b = position(
        &console,
        "crasher: running → backing-off (exit code 3; restart 2 in 200 ms)",
    );
    let d = position(
        &console,
        "crasher: running → backing-off (exit code 3; restart 3 in 400 ms)",
    );
    assert!(a < b && b < d);
    assert_eq!(console.matches("crasher | crashing").count(), 4);

    // always: back after kill -9.
    let v = wait_until(&vm, "victim", "restarted", |c| {
        c["restarts"] == 1 && c["state"] == "running"
    });
    assert!(v["pid"].is_u64());
    assert!(
        vm.console().contains(
            "victim: running → backing-off (killed by SIGKILL (137); restart 1 in 100 ms)"
        )
    );

    // A dependent starts only after its dependency reports healthy.
    wait_until(&vm, "app", "running", |c| c["state"] == "running");
    let console = vm.console();
    assert!(
        position(&console, "db: health starting → healthy")
            < position(&console, "app: waiting → starting"),
        "app started before db was healthy"
    );

    // A one-shot gates a service; a failing one keeps it waiting, saying why.
    wait_until(&vm, "gated", "running", |c| c["state"] == "running");
    assert_eq!(container(&vm, "setup-ok")["state"], "exited");
    let stuck = wait_until(&vm, "stuck", "blocked", |c| {
        c["status"] == "dependency setup-bad did not complete successfully (exit code 2)"
    });
    assert_eq!(stuck["state"], "waiting");

    // An unhealthy container is restarted.
    let sick = wait_until(&vm, "sick", "restarted as unhealthy", |c| {
        c["restarts"].as_u64().unwrap() >= 1
    });
    assert!(sick["restarts"].as_u64().unwrap() >= 1);
    assert!(
        vm.console()
            .contains("sick: running → stopping (SIGTERM sent (unhealthy))")
    );
    assert!(vm.console().contains(
        "sick: stopping → backing-off (exit code 143, stopped as unhealthy; restart 1 in 100 ms)"
    ));

    scenario::power_off(&vm).unwrap();
}

const SHUTDOWN: &str = r#"
version = 1
[host]
on_fatal = "poweroff"
shutdown_grace = "20s"

[containers.db]
image = "busybox:latest"
command = ["sh", "-c", "trap 'echo db got TERM; exit 0' TERM; echo db up; while :; do sleep 1; done"]

[containers.web]
image = "busybox:latest"
depends_on = ["db"]
command = ["sh", "-c", "trap 'echo web got TERM; sleep 1; echo web done; exit 0' TERM; echo web up; while :; do sleep 1; done"]

[containers.stubborn]
image = "busybox:latest"
stop_grace_period = "2s"
command = ["sh", "-c", "trap '' TERM; echo stubborn up; while :; do sleep 1; done"]
"#;

#[test]
fn shutdown_stops_in_reverse_order_and_kills_the_stubborn() {
    let vm = scenario::boot("supervisor-shutdown", SHUTDOWN, |c| c).unwrap();
    for line in ["db | db up", "web | web up", "stubborn | stubborn up"] {
        wait_console(&vm, line);
    }
    let t = Instant::now();
    let (status, _) = vm
        .http("POST", "/v1/system/poweroff", None, HTTP_TIMEOUT)
        .unwrap();
    assert_eq!(status, 202);
    let exit = vm.wait_exit(BOOT_TIMEOUT).unwrap();
    assert!(exit.success());
    // Bounded: the stubborn one is killed at its grace period.
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "shutdown took {:?}",
        t.elapsed()
    );
    let console = vm.console();
    // web depends on db: web gets SIGTERM and finishes first.
    let web = position(&console, "web | web got TERM");
    let web_done = position(&console, "web | web done");
    let db = position(&console, "db | db got TERM");
    assert!(web < web_done && web_done < db, "order:\n{console}");
    assert!(console.contains("stubborn: still running after its grace period; killing it"));
    // What the handlers wrote came out before berth unmounted.
    assert!(db < position(&console, "berth: power: unmounted"));
    assert!(!console.contains("Kernel panic"));
}

const FLOOD: &str = r#"
version = 1
[host]
on_fatal = "poweroff"
[host.logging]
files = { max_size = "64KiB", max_files = 3 }

[containers.flood]
image = "busybox:latest"
command = ["sh", "-c", "yes 'flooding the console with a line of text'"]

[containers.checked]
image = "busybox:latest"
command = ["sleep", "600"]
healthcheck = { test = ["CMD", "true"], interval = "1s", retries = 1 }

[containers.lister]
image = "busybox:latest"
volumes = ["/var/log/berth:/logs:ro"]
command = ["sh", "-c", "sleep 15; echo files=$(ls /logs | grep -c '^flood.log'); ls -l /logs"]
"#;

#[test]
fn a_flood_delays_no_one_and_log_files_rotate() {
    let vm = scenario::boot("supervisor-flood", FLOOD, |c| c).unwrap();
    // The checked container turns healthy despite the flood, and the API
    // answers promptly.
    wait_until(&vm, "checked", "healthy", |c| c["health"] == "healthy");
    for _ in 0..5 {
        let t = Instant::now();
        let (status, _) = vm.http("GET", "/v1/ping", None, HTTP_TIMEOUT).unwrap();
        assert_eq!(status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "ping took {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(container(&vm, "checked")["health"], "healthy");
    // The console skipped what it could not show, and said so.
    wait_console(&vm, "flood: output faster than the console shows");
    // Rotation kept at most max_files files for the flood.
    let line = wait_console(&vm, "lister | files=");
    let n: u32 = line.rsplit('=').next().unwrap().trim().parse().unwrap();
    assert!((2..=3).contains(&n), "{line}");
    scenario::power_off(&vm).unwrap();
}

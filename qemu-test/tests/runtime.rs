//! The container runtime in a real guest (pure cgroup v2): isolation,
//! Docker's security defaults, limits, and what a failed or finished
//! container leaves behind. Each test boots one VM that runs several
//! containers at once, so the suite stays short.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use berth_qemu_test::Vm;
use berth_qemu_test::scenario::{self, HTTP_TIMEOUT};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

fn json(vm: &Vm, path: &str) -> Value {
    let (status, body) = vm.http("GET", path, None, HTTP_TIMEOUT).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn container(vm: &Vm, name: &str) -> Value {
    json(vm, "/v1/containers")
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
        .clone()
}

/// Waits until every named container has reached one of `states`.
fn wait_states(vm: &Vm, names: &[&str], states: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let all = json(vm, "/v1/containers");
        let done = names.iter().all(|n| {
            all.as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == *n && states.iter().any(|s| c["state"] == *s))
        });
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "containers not {states:?} in time: {all:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until the console has `text` anywhere (not only after the last
/// match, unlike `Vm::wait_for`).
fn wait_console(vm: &Vm, text: &str) {
    let deadline = Instant::now() + WAIT;
    while !vm.console().contains(text) {
        assert!(
            Instant::now() < deadline,
            "never saw {text:?}:\n{}",
            vm.console_tail(40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The console lines a container printed, without berth's prefix.
fn output(vm: &Vm, name: &str) -> Vec<String> {
    let marker = format!(" {name} | ");
    vm.console()
        .lines()
        .filter_map(|l| l.split_once(&marker).map(|(_, rest)| rest.to_string()))
        .collect()
}

const ISOLATION: &str = r#"
version = 1
[host]
on_fatal = "poweroff"

[containers.ns]
image = "busybox:latest"
hostname = "inside"
command = ["sh", "-c", "echo pid=$$; echo host=$(hostname); echo procs=$(ls /proc | grep -c '^[0-9]')"]

[containers.caps]
image = "busybox:latest"
cap_drop = ["CHOWN"]
command = ["sh", "-c", "touch /tmp/f; chown 1 /tmp/f 2>/dev/null || echo chown-denied; mkdir -p /mnt; mount -t tmpfs none /mnt 2>/dev/null || echo mount-denied"]

[containers.seccomp]
image = "busybox:latest"
command = ["sh", "-c", "unshare -U true 2>&1; echo unshare=$?"]

[containers.unconfined]
image = "busybox:latest"
security_opt = ["seccomp=unconfined"]
command = ["sh", "-c", "unshare -U true 2>&1; echo unshare=$?"]

[containers.masked]
image = "busybox:latest"
command = ["sh", "-c", "echo kcore=$(wc -c < /proc/kcore); echo firmware=$(ls /sys/firmware | wc -l); echo 1 > /proc/sys/kernel/domainname 2>/dev/null; echo procsys=$?; touch /sys/x 2>/dev/null; echo sys=$?"]

[containers.ro]
image = "busybox:latest"
read_only = true
tmpfs = ["/scratch"]
command = ["sh", "-c", "touch /x 2>/dev/null; echo root=$?; touch /scratch/y; echo scratch=$?"]

[containers.share1]
image = "busybox:latest"
command = ["sh", "-c", "grep -o 'lowerdir=[^,]*' /proc/self/mountinfo | head -1"]

[containers.share2]
image = "busybox"
command = ["sh", "-c", "grep -o 'lowerdir=[^,]*' /proc/self/mountinfo | head -1"]

[containers.missing]
image = "busybox:latest"
command = ["/no/such/program"]

[containers.writer]
image = "busybox:latest"
volumes = ["/var/lib/berth/shared:/data"]
command = ["sh", "-c", "echo written-by-writer > /data/hello"]

[containers.reader]
image = "busybox:latest"
volumes = ["/var/lib/berth/shared:/in:ro"]
depends_on = { writer = { condition = "service_completed_successfully" } }
command = ["sh", "-c", "cat /in/hello; touch /in/z 2>/dev/null; echo ro=$?"]

# A user namespace: root inside is host uid 100000. Lowering oom_score_adj
# and raising the hard nofile limit past berth's own need the host's
# namespace: berth sets them from outside. The health check runs through
# berth exec's path, which must join the user namespace too.
[containers.userns]
image = "busybox:latest"
uid_map = "0:100000:65536"
oom_score_adj = -500
ulimits = { nofile = { soft = 1024, hard = 1048576 } }
volumes = ["userns-vol:/vol"]
command = ["sh", "-c", "echo uid=$(id -u); echo map $(cat /proc/self/uid_map); echo oom=$(cat /proc/self/oom_score_adj); echo hard=$(ulimit -Hn); echo made > /made && echo root=$(stat -c %u /made); touch /vol/x; echo vol=$?; touch /sys/fs/cgroup/x 2>/dev/null; echo cgroup=$?; echo ready; exec sleep 600"]
healthcheck = { test = "grep -q 100000 /proc/self/uid_map && test $(id -u) = 0", interval = "1s" }
stop_signal = "SIGKILL"
"#;

#[test]
fn isolation_security_defaults_and_cleanup() {
    let vm = scenario::boot("runtime-isolation", ISOLATION, |c| c).unwrap();
    let all = [
        "ns",
        "caps",
        "seccomp",
        "unconfined",
        "masked",
        "ro",
        "share1",
        "share2",
        "writer",
        "reader",
    ];
    wait_states(&vm, &all, &["exited"]);
    wait_states(&vm, &["missing"], &["failed"]);
    wait_console(&vm, " userns | ready");

    // Its own PID namespace (it is PID 1 and sees only itself and its
    // children) and its own hostname.
    let ns = output(&vm, "ns");
    assert_eq!(ns[0], "pid=1");
    assert_eq!(ns[1], "host=inside");
    let procs: u32 = ns[2].strip_prefix("procs=").unwrap().parse().unwrap();
    assert!(procs <= 4, "sees {procs} processes: {ns:?}");

    // A dropped capability is gone; one never granted too.
    assert_eq!(output(&vm, "caps"), ["chown-denied", "mount-denied"]);

    // The default seccomp filter makes unshare(CLONE_NEWUSER) fail with
    // EPERM; without the filter the same call works.
    let sec = output(&vm, "seccomp").join("\n");
    assert!(
        sec.contains("Operation not permitted") && sec.contains("unshare=1"),
        "{sec}"
    );
    assert_eq!(output(&vm, "unconfined").last().unwrap(), "unshare=0");

    // Masked paths read empty; read-only paths refuse writes.
    assert_eq!(
        output(&vm, "masked"),
        ["kcore=0", "firmware=0", "procsys=1", "sys=1"]
    );
    assert_eq!(output(&vm, "ro"), ["root=1", "scratch=0"]);

    // Two containers of one image use the same read-only layer.
    let (a, b) = (output(&vm, "share1"), output(&vm, "share2"));
    assert!(
        a[0].starts_with("lowerdir=/usr/lib/berth/store/layers/"),
        "{a:?}"
    );
    assert_eq!(a, b);

    // A bind volume's writes are on the host: another container sees them.
    assert_eq!(output(&vm, "reader"), ["written-by-writer", "ro=1"]);

    // A user namespace: root inside, host uid 100000 outside, with the
    // limits only the host's namespace could set.
    let u: Vec<String> = output(&vm, "userns")
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        u,
        [
            "uid=0",
            "map 0 100000 65536",
            "oom=-500",
            "hard=1048576",
            "root=0",
            "vol=0",
            "cgroup=1",
            "ready"
        ]
    );
    let deadline = Instant::now() + WAIT;
    while container(&vm, "userns")["health"] != "healthy" {
        assert!(
            Instant::now() < deadline,
            "the user namespace's health check never passed: {:#}",
            container(&vm, "userns")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Stopped, it leaves no mount behind in berth's namespace either (its
    // root was mounted there); counted below with the rest.
    let (status, body) = vm
        .http("POST", "/v1/containers/userns/stop", None, HTTP_TIMEOUT)
        .unwrap();
    assert!(status < 300, "{status} {body}");
    wait_states(&vm, &["userns"], &["stopped"]);

    // A missing binary: a clear error naming the container, the step and
    // the path, and nothing left behind.
    let m = container(&vm, "missing");
    assert_eq!(
        m["status"],
        "could not start: exec /no/such/program: No such file or directory"
    );
    assert!(vm.console().contains("berth: ERROR supervisor: missing: cannot start: exec /no/such/program: No such file or directory"));
    let info = json(&vm, "/v1/system/info");
    assert_eq!(info["berth"]["container_cgroups"], 0, "{info:#}");
    let mounts_now = info["berth"]["mounts"].as_u64().unwrap();
    assert!(mounts_now < 20, "PID 1 holds {mounts_now} mounts: {info:#}");

    scenario::power_off(&vm).unwrap();
}

const LIMITS: &str = r#"
version = 1
[host]
on_fatal = "poweroff"

[containers.oom]
image = "busybox:latest"
command = ["sh", "-c", "echo hogging; tail /dev/zero"]
[containers.oom.resources]
memory = "32MiB"

[containers.forkbomb]
image = "busybox:latest"
stop_grace_period = "1s"
command = ["sh", "-c", "mkfifo /tmp/hold; bomb() { bomb | bomb & }; bomb 2>/dev/null; while :; do read x < /tmp/hold; done 2>/dev/null"]
[containers.forkbomb.resources]
pids = 20

[containers.monitor]
image = "busybox:latest"
volumes = ["/sys/fs/cgroup:/cg:ro"]
command = ["sh", "-c", "sleep 8; cd /cg/berth/containers/forkbomb; read cur < pids.current; read max < pids.max; read ev < pids.events; echo pids.current=$cur; echo pids.max=$max; echo events=$ev"]

[containers.knobs]
image = "busybox:latest"
command = ["sh", "-c", "echo memory=$(cat /sys/fs/cgroup/memory.max); echo swap=$(cat /sys/fs/cgroup/memory.swap.max); echo cpu=$(cat /sys/fs/cgroup/cpu.max); echo weight=$(cat /sys/fs/cgroup/cpu.weight)"]
[containers.knobs.resources]
memory = "64MiB"
cpus = 0.5
cpu_weight = 200
"#;

#[test]
fn cgroup_limits_oom_and_a_fork_bomb() {
    let vm = scenario::boot("runtime-limits", LIMITS, |c| c).unwrap();
    wait_states(&vm, &["oom", "knobs"], &["exited"]);

    // The OOM kill is reported as OOM, not as a bare SIGKILL.
    let oom = container(&vm, "oom");
    assert_eq!(oom["oom_killed"], true, "{oom:#}");
    assert_eq!(oom["exit_code"], 137);
    assert_eq!(oom["status"], "OOM killed (137)");
    wait_console(&vm, "oom: running → exited (OOM killed (137))");

    // Limits are where the kernel reads them.
    assert_eq!(
        output(&vm, "knobs"),
        [
            "memory=67108864",
            "swap=0",
            "cpu=50000 100000",
            "weight=200"
        ]
    );

    // pids.max stops a fork bomb, and the host stays responsive.
    wait_console(&vm, "monitor | events=");
    let bomb = output(&vm, "monitor");
    let current: u32 = bomb[0]
        .strip_prefix("pids.current=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(current <= 20, "{bomb:?}");
    // The kernel refused forks at the limit.
    let refused: u32 = bomb[2]
        .strip_prefix("events=max ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused > 0, "{bomb:?}");
    let t = Instant::now();
    let (status, _) = vm.http("GET", "/v1/ping", None, HTTP_TIMEOUT).unwrap();
    assert_eq!(status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "ping took {:?}",
        t.elapsed()
    );
    assert_eq!(bomb[1], "pids.max=20");
    assert_eq!(container(&vm, "forkbomb")["state"], "running");

    scenario::power_off(&vm).unwrap();
}

#[test]
fn a_hundred_containers_leave_no_fds_mounts_or_cgroups_behind() {
    let mut manifest = String::from(
        "version = 1\n[host]\non_fatal = \"poweroff\"\n\
         [containers.gate]\nimage = \"busybox:latest\"\ncommand = [\"sleep\", \"4\"]\n",
    );
    let names: Vec<String> = (0..100).map(|i| format!("c{i:03}")).collect();
    for n in &names {
        manifest += &format!(
            "[containers.{n}]\nimage = \"busybox:latest\"\ncommand = [\"true\"]\n\
             depends_on = {{ gate = {{ condition = \"service_completed_successfully\" }} }}\n"
        );
    }
    let vm = scenario::boot("runtime-hundred", &manifest, |c| c).unwrap();
    // While the gate sleeps: PID 1's baseline, with one container running.
    let before = json(&vm, "/v1/system/info")["berth"].clone();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_states(&vm, &refs, &["exited"]);
    // The last cgroups are released a little after the last exit: poll
    // until all is back (or the wait runs out), then check.
    let settled = |after: &Value| {
        after["container_cgroups"] == 0
            && after["open_fds"].as_u64() <= before["open_fds"].as_u64()
            && after["mounts"] == before["mounts"]
    };
    let deadline = Instant::now() + WAIT;
    let mut after = json(&vm, "/v1/system/info")["berth"].clone();
    while !settled(&after) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = json(&vm, "/v1/system/info")["berth"].clone();
    }
    assert_eq!(after["container_cgroups"], 0, "{after:#}");
    assert!(
        after["open_fds"].as_u64().unwrap() <= before["open_fds"].as_u64().unwrap(),
        "descriptors leaked: before {before:#}, after {after:#}"
    );
    assert_eq!(after["mounts"], before["mounts"], "mounts leaked");
    scenario::power_off(&vm).unwrap();
}

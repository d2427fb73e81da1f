//! The OCI runtime configs that crun and runc run the bench's containers
//! with: the isolation berth gives a container by default, written out for
//! an OCI runtime.
//!
//! - namespaces: mount, PID, UTS, IPC, cgroup and network (a network
//!   namespace with loopback only, as berth's `network_mode = "none"`);
//! - a cgroup with limits (64 MiB of memory, half a CPU, 100 pids), under
//!   berth's own `containers` cgroup where they run in berth's guest;
//! - seccomp: berth's default allow-list (Docker's), read from berth's
//!   source, every other call failing with EPERM (berth also filters some
//!   calls by argument, which this leaves out);
//! - Docker's 14 capabilities, no_new_privs, Docker's masked and read-only
//!   paths, and the device rule `runc spec` writes (deny all: runc and crun
//!   then allow the default devices).

use serde_json::{Value, json};

/// berth's seccomp allow-list is private to berth; its source is the
/// single place it is written, so the bench reads it from there.
const SECCOMP_SOURCE: &str = include_str!("../../init/src/runtime/security/seccomp/default.rs");

/// The names in `pub const ALLOWED: &[&str] = &[ ... ];` of berth's source.
pub fn allowed_syscalls() -> Vec<String> {
    let Some(start) = SECCOMP_SOURCE.find("pub const ALLOWED: &[&str] = &[") else {
        return Vec::new();
    };
    let body = &SECCOMP_SOURCE[start..];
    let end = body.find("];").unwrap_or(body.len());
    body[..end]
        .lines()
        .skip(1)
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix('"')?;
            Some(l[..l.find('"')?].to_owned())
        })
        .collect()
}

/// The namespace flags clone(2) may not carry (berth's and Docker's
/// `CLONE_NAMESPACES`).
const CLONE_NAMESPACES: u64 = 0x7e02_0000;

/// berth's default profile as OCI rules, for a container with Docker's
/// capabilities: the allow-list, `chroot` (CAP_SYS_CHROOT), `socket` (berth
/// refuses a few address families; allowed whole here), `personality` for
/// berth's personas, `clone` without namespace flags, `clone3` failing
/// with ENOSYS.
fn seccomp_rules() -> Value {
    let mut names = allowed_syscalls();
    names.extend(["chroot".to_owned(), "socket".to_owned()]);
    let eq = |index: u32, value: u64| json!({"index": index, "value": value, "op": "SCMP_CMP_EQ"});
    let mut rules = vec![json!({"names": names, "action": "SCMP_ACT_ALLOW"})];
    for persona in [0u64, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff] {
        rules.push(
            json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [eq(0, persona)]}),
        );
    }
    rules.push(json!({
        "names": ["clone"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": CLONE_NAMESPACES, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
    }));
    rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}));
    Value::Array(rules)
}

/// Docker's default capabilities (berth's default set).
pub const CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
];

/// The memory limit of every bench container, in bytes.
pub const MEMORY_LIMIT: u64 = 64 << 20;
/// The pids limit.
pub const PIDS_LIMIT: u64 = 100;
/// The CPU limit: `CPU_QUOTA_US` per 100 ms.
pub const CPU_QUOTA_US: u64 = 50_000;

/// Where the bench's files are in every guest.
pub const LIB: &str = "/usr/lib/berth-bench";
/// Where containers write their stamps (bound at `/out`).
pub const OUT: &str = "/run/bench/out";

/// A config.json: `args` in the busybox tree at `root`, in the cgroup
/// `cgroups_path` (relative to the cgroup2 root).
pub fn config(args: &[&str], root: &str, cgroups_path: &str) -> Value {
    let caps: Vec<&str> = CAPS.to_vec();
    let bind = |dst: &str, src: &str, mode: &str| {
        json!({"destination": dst, "type": "bind", "source": src,
               "options": ["rbind", "nosuid", "nodev", mode]})
    };
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
            ],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true,
        },
        "root": {"path": root, "readonly": false},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            bind("/bench", LIB, "ro"),
            bind("/out", OUT, "rw"),
        ],
        "linux": {
            "resources": {
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {"limit": MEMORY_LIMIT},
                "cpu": {"quota": CPU_QUOTA_US, "period": 100_000},
                "pids": {"limit": PIDS_LIMIT},
            },
            "cgroupsPath": cgroups_path,
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"},
            ],
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": seccomp_rules(),
            },
            "maskedPaths": [
                "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    })
}

/// The berth manifest entry with the same isolation and limits, for a
/// container running `command` (TOML array syntax).
pub fn berth_container(name: &str, command: &str) -> String {
    format!(
        r#"
[containers.{name}]
image = "busybox:latest"
command = {command}
network_mode = "none"
volumes = ["{LIB}:/bench:ro", "{OUT}:/out"]
resources = {{ memory = "{MEMORY_LIMIT}", cpus = {cpus}, pids = {PIDS_LIMIT} }}
"#,
        cpus = CPU_QUOTA_US as f64 / 100_000.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_is_read_from_berth() {
        let names = allowed_syscalls();
        assert!(names.len() > 250, "{}", names.len());
        for n in ["read", "write", "execve", "exit_group", "wait4"] {
            assert!(names.iter().any(|x| x == n), "{n}");
        }
        assert!(!names.iter().any(|x| x == "mount" || x == "clone"));
    }

    #[test]
    fn the_manifest_entry_parses() {
        let text = format!("version = 1\n{}", berth_container("probe", r#"["true"]"#));
        let m = berth_config::parse(&text, "t.toml").expect("valid");
        let c = &m.containers["probe"];
        assert_eq!(c.resources.memory, Some(MEMORY_LIMIT));
        assert_eq!(c.resources.pids, Some(PIDS_LIMIT));
    }
}

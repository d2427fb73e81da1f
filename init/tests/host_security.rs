//! Host tests of a container's security settings, as root: each test starts
//! a process the way berth's child does (`Security::apply_before_exec` just
//! before exec, here from `Command::pre_exec`), execs a busybox applet or
//! this test binary as a probe, and checks what the kernel says.
//!
//! `pre_exec` runs between fork and exec in this multi-threaded test
//! process, where only async-signal-safe work is allowed. That holds here:
//! the seccomp program is compiled before the fork, and the apply path makes
//! raw system calls only (no allocation, no lock, no glibc setxid
//! broadcast). The probe runs in a private mount namespace, so a mount that
//! succeeds stays out of the host's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use berth::runtime::security::caps::{self, CapPlan, CapSet};
use berth::runtime::security::seccomp::{self, Profile};
use berth::runtime::security::{ApplyError, Security};
use berth::runtime::user::{self, Ids};
use berth_config::{Container, IdOrName, User};

const BUSYBOX: &str = "/bin/busybox";
/// Docker's default capabilities, as /proc shows them.
const DOCKER_DEFAULT_CAPS: u64 = 0xa804_25fb;
const PROBE_ENV: &str = "BERTH_SECURITY_PROBE";

fn require_root() {
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "host_security tests must run as root (they set capabilities, uids and seccomp filters)"
    );
}

fn container(extra: &str) -> Container {
    let src = format!("version = 1\n[containers.t]\nimage = \"busybox:latest\"\n{extra}\n");
    match berth_config::parse(&src, "test.toml") {
        Ok(m) => match m.containers.get("t") {
            Some(c) => c.clone(),
            None => panic!("no container in {src}"),
        },
        Err(d) => panic!("{d:?}"),
    }
}

fn security(c: &Container, uid: u32) -> Security {
    Security::for_container(c, uid).expect("security settings")
}

fn root() -> Ids {
    Ids {
        uid: 0,
        gid: 0,
        additional_gids: vec![],
        home: None,
    }
}

/// A private mount namespace for the child, then the security settings.
fn prepare(sec: &Security, ids: &Ids) -> io::Result<()> {
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: static NUL-terminated strings and null pointers as mount(2)
    // allows for a propagation change.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    sec.apply_before_exec(ids).map_err(io::Error::from)
}

fn run_program(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    sec: &Security,
    ids: &Ids,
) -> Output {
    let sec = sec.clone();
    let ids = ids.clone();
    let mut cmd = Command::new(program);
    cmd.args(args).envs(env.iter().copied());
    // SAFETY: the closure only makes system calls (see the module doc).
    unsafe {
        cmd.pre_exec(move || prepare(&sec, &ids));
    }
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("{program} {args:?}: {e}"),
    }
}

fn busybox(sec: &Security, ids: &Ids, args: &[&str]) -> Output {
    run_program(BUSYBOX, args, &[], sec, ids)
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The child's /proc/self/status, as fields.
fn status(sec: &Security, ids: &Ids) -> BTreeMap<String, String> {
    let o = busybox(sec, ids, &["cat", "/proc/self/status"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn hex(fields: &BTreeMap<String, String>, key: &str) -> u64 {
    match fields.get(key).map(|v| u64::from_str_radix(v, 16)) {
        Some(Ok(n)) => n,
        other => panic!("{key}: {other:?}"),
    }
}

fn field<'a>(fields: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    fields.get(key).map_or("<missing>", String::as_str)
}

/// This process's bounding set: what "every capability" can be here.
fn own_bounding() -> u64 {
    caps::own_bounding(caps::kernel_last_cap()).0
}

#[test]
fn default_plan_shows_in_proc_status() {
    require_root();
    let sec = security(&container(""), 0);
    let s = status(&sec, &root());
    assert_eq!(hex(&s, "CapBnd"), DOCKER_DEFAULT_CAPS);
    assert_eq!(hex(&s, "CapPrm"), DOCKER_DEFAULT_CAPS);
    assert_eq!(hex(&s, "CapEff"), DOCKER_DEFAULT_CAPS);
    assert_eq!(hex(&s, "CapInh"), 0);
    assert_eq!(hex(&s, "CapAmb"), 0);
    assert_eq!(field(&s, "NoNewPrivs"), "1");
    assert_eq!(field(&s, "Seccomp"), "2");
    assert_eq!(field(&s, "Uid"), "0\t0\t0\t0");
    assert_eq!(field(&s, "Groups"), "");
}

#[test]
fn dropped_chown_is_really_gone() {
    require_root();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("f");
    std::fs::write(&file, "x").expect("write");
    let path = file.to_string_lossy().to_string();
    let uid_of = |p: &Path| std::fs::metadata(p).map(|m| m.uid()).unwrap_or(u32::MAX);

    let dropped = security(&container("cap_drop = [\"CHOWN\"]"), 0);
    let s = status(&dropped, &root());
    assert_eq!(hex(&s, "CapEff"), DOCKER_DEFAULT_CAPS & !1);
    assert_eq!(hex(&s, "CapBnd"), DOCKER_DEFAULT_CAPS & !1);
    let o = busybox(&dropped, &root(), &["chown", "1", &path]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Operation not permitted"), "{}", text(&o));
    assert_eq!(uid_of(&file), 0);

    // The same call with the default set works: the drop made the difference.
    let default = security(&container(""), 0);
    let o = busybox(&default, &root(), &["chown", "1", &path]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(uid_of(&file), 1);
}

#[test]
fn mount_needs_cap_sys_admin() {
    require_root();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let target = dir.path().to_string_lossy().to_string();
    let mount = ["mount", "-t", "tmpfs", "none", target.as_str()];

    // Default: refused by the filter and by the missing capability alike.
    // (busybox says "permission denied (are you root?)" for EPERM.)
    let o = busybox(&security(&container(""), 0), &root(), &mount);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("permission denied"), "{}", text(&o));

    // No filter, default capabilities: still refused, for want of CAP_SYS_ADMIN.
    let unconfined = security(&container("security_opt = [\"seccomp=unconfined\"]"), 0);
    assert!(unconfined.seccomp.is_none());
    let o = busybox(&unconfined, &root(), &mount);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("permission denied"), "{}", text(&o));

    // With CAP_SYS_ADMIN, the default filter lets mount through (as
    // Docker's does), and it works (in the child's own mount namespace).
    let admin = security(&container("cap_add = [\"SYS_ADMIN\"]"), 0);
    let o = busybox(&admin, &root(), &mount);
    assert!(o.status.success(), "{}", text(&o));
}

/// A system call with plain arguments: 0, or its errno.
fn raw(nr: libc::c_long, a: [usize; 5]) -> i32 {
    // SAFETY: the probe passes integers, null pointers and static strings
    // only, to calls that cannot touch this process's memory.
    let rc = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4]) };
    if rc == -1 {
        io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    }
}

/// The probe: run in a child under a filter, it makes system calls and
/// prints `probe NAME=ERRNO` (0 for success). Without the variable it does
/// nothing, so it passes as an ordinary test.
#[test]
fn probe() {
    if std::env::var_os(PROBE_ENV).is_none() {
        return;
    }
    let mut results: Vec<(&str, i32)> = Vec::new();
    // clone3 with no arguments: EINVAL from the kernel if it gets there.
    results.push(("clone3", raw(libc::SYS_clone3, [0; 5])));
    // clone with CLONE_NEWUSER|CLONE_FS: EINVAL from the kernel.
    let flags = (libc::CLONE_NEWUSER | libc::CLONE_FS | libc::SIGCHLD) as usize;
    results.push(("clone_newuser", raw(libc::SYS_clone, [flags, 0, 0, 0, 0])));
    // personality: the query, then ADDR_NO_RANDOMIZE.
    results.push((
        "personality_query",
        raw(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0]),
    ));
    results.push((
        "personality_norandom",
        raw(libc::SYS_personality, [0x0004_0000, 0, 0, 0, 0]),
    ));
    // mount on a missing directory: ENOENT from the kernel.
    let (src, target, fstype) = (c"none", c"/nonexistent/berth-probe", c"tmpfs");
    let mount = [
        src.as_ptr() as usize,
        target.as_ptr() as usize,
        fstype.as_ptr() as usize,
        0,
        0,
    ];
    results.push(("mount", raw(libc::SYS_mount, mount)));
    // unshare(CLONE_NEWUSER): allowed to anyone by the kernel.
    results.push((
        "unshare_user",
        raw(
            libc::SYS_unshare,
            [libc::CLONE_NEWUSER as usize, 0, 0, 0, 0],
        ),
    ));
    // Socket families (the sockets are left to the exit).
    let sock = |family: libc::c_int| {
        raw(
            libc::SYS_socket,
            [family as usize, libc::SOCK_DGRAM as usize, 0, 0, 0],
        )
    };
    results.push(("socket_inet", sock(libc::AF_INET)));
    results.push(("socket_vsock", sock(libc::AF_VSOCK)));
    results.push(("socket_alg", sock(libc::AF_ALG)));
    // A child process: libc tries clone3, gets ENOSYS, falls back to clone.
    let spawn = Command::new(BUSYBOX).arg("true").status().map_or_else(
        |e| e.raw_os_error().unwrap_or(-1),
        |s| if s.success() { 0 } else { -2 },
    );
    results.push(("spawn", spawn));
    for (name, e) in results {
        println!("probe {name}={e}");
    }
}

fn run_probe(sec: &Security, ids: &Ids) -> BTreeMap<String, i32> {
    let exe = std::env::current_exe().expect("the test binary");
    let exe = exe.to_string_lossy().to_string();
    let o = run_program(
        &exe,
        &["--exact", "probe", "--nocapture", "--test-threads=1"],
        &[(PROBE_ENV, "1")],
        sec,
        ids,
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let results: BTreeMap<String, i32> = out
        .lines()
        // The first result follows libtest's "test probe ... " on its line.
        .filter_map(|l| l.rfind("probe ").map(|i| &l[i + "probe ".len()..]))
        .filter_map(|l| l.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect();
    assert!(results.contains_key("spawn"), "{}", text(&o));
    results
}

#[test]
fn default_filter_blocks_what_docker_blocks() {
    require_root();
    let r = run_probe(&security(&container(""), 0), &root());
    let want = [
        ("clone3", libc::ENOSYS),
        ("clone_newuser", libc::EPERM),
        ("personality_query", 0),
        ("personality_norandom", libc::EPERM),
        ("mount", libc::EPERM),
        ("unshare_user", libc::EPERM),
        ("socket_inet", 0),
        ("socket_vsock", libc::EPERM),
        ("socket_alg", libc::EPERM),
        ("spawn", 0),
    ];
    for (name, e) in want {
        assert_eq!(r.get(name), Some(&e), "{name} in {r:?}");
    }
}

#[test]
fn without_the_filter_the_kernel_decides() {
    require_root();
    // The same probe, unconfined: the calls reach the kernel, which answers
    // otherwise. So the EPERMs above are the filter's.
    let sec = security(&container("security_opt = [\"seccomp=unconfined\"]"), 0);
    let r = run_probe(&sec, &root());
    assert_eq!(r.get("clone3"), Some(&libc::EINVAL), "{r:?}");
    assert_eq!(r.get("clone_newuser"), Some(&libc::EINVAL), "{r:?}");
    assert_eq!(r.get("personality_norandom"), Some(&0), "{r:?}");
    // No CAP_SYS_ADMIN: the kernel refuses too, but after looking at the path.
    assert_ne!(r.get("mount"), Some(&libc::ENOSYS), "{r:?}");
    // 0, or EINVAL when libtest has started a thread: the kernel's answer.
    assert!(
        matches!(r.get("unshare_user"), Some(&0 | &libc::EINVAL)),
        "{r:?}"
    );
    assert_ne!(r.get("socket_vsock"), Some(&libc::EPERM), "{r:?}");
}

#[test]
fn cap_sys_admin_opens_mount_and_clone3_in_the_filter() {
    require_root();
    let sec = security(&container("cap_add = [\"SYS_ADMIN\"]"), 0);
    let r = run_probe(&sec, &root());
    assert_eq!(r.get("mount"), Some(&libc::ENOENT), "{r:?}");
    assert_eq!(r.get("clone3"), Some(&libc::EINVAL), "{r:?}");
    assert!(
        matches!(r.get("unshare_user"), Some(&0 | &libc::EINVAL)),
        "{r:?}"
    );
    assert_eq!(r.get("clone_newuser"), Some(&libc::EINVAL), "{r:?}");
    // Still blocked: not a matter of capabilities.
    assert_eq!(r.get("socket_vsock"), Some(&libc::EPERM), "{r:?}");
    assert_eq!(r.get("personality_norandom"), Some(&libc::EPERM), "{r:?}");
}

#[test]
fn nobody_has_no_effective_capabilities() {
    require_root();
    let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    let group = "root:x:0:\nnogroup:x:65534:\nextra:x:1234:nobody\n";
    let nobody = User {
        user: IdOrName::Name("nobody".into()),
        group: None,
    };
    let ids = user::resolve(Some(&nobody), &[IdOrName::Id(4321)], passwd, group).expect("resolve");
    assert_eq!(ids.uid, 65534);
    let sec = security(&container("user = \"nobody\""), ids.uid);
    let s = status(&sec, &ids);
    assert_eq!(field(&s, "Uid"), "65534\t65534\t65534\t65534");
    assert_eq!(field(&s, "Gid"), "65534\t65534\t65534\t65534");
    assert_eq!(field(&s, "Groups"), "1234 4321");
    assert_eq!(hex(&s, "CapEff"), 0);
    assert_eq!(hex(&s, "CapPrm"), 0);
    assert_eq!(hex(&s, "CapInh"), 0);
    assert_eq!(hex(&s, "CapAmb"), 0);
    assert_eq!(hex(&s, "CapBnd"), DOCKER_DEFAULT_CAPS);
    assert_eq!(field(&s, "NoNewPrivs"), "1");
    assert_eq!(field(&s, "Seccomp"), "2");
}

#[test]
fn privileged_has_everything_and_no_filter() {
    require_root();
    let sec = security(&container("privileged = true"), 0);
    assert!(!sec.no_new_privs);
    assert!(sec.seccomp.is_none());
    let s = status(&sec, &root());
    let all = own_bounding();
    assert_eq!(hex(&s, "CapBnd"), all);
    assert_eq!(hex(&s, "CapEff"), all);
    assert_eq!(hex(&s, "CapPrm"), all);
    assert_eq!(hex(&s, "CapInh"), 0);
    assert_eq!(field(&s, "NoNewPrivs"), "0");
    assert_eq!(field(&s, "Seccomp"), "0");
}

#[test]
fn unconfined_keeps_no_new_privs() {
    require_root();
    let sec = security(&container("security_opt = [\"seccomp=unconfined\"]"), 0);
    let s = status(&sec, &root());
    assert_eq!(field(&s, "Seccomp"), "0");
    assert_eq!(field(&s, "NoNewPrivs"), "1");
    assert_eq!(hex(&s, "CapEff"), DOCKER_DEFAULT_CAPS);
}

#[test]
fn filter_loads_before_the_capabilities_go_when_no_new_privs_is_off() {
    require_root();
    // Not a plan berth makes today (privileged has no filter), but the
    // order must hold: without no_new_privs, loading needs CAP_SYS_ADMIN,
    // which the default set lacks, so loading it last would fail (EACCES).
    let plan = caps::plan(&[], &[], false, 0);
    assert!(!plan.effective.contains(21));
    let program = seccomp::compile(&Profile::default_profile(), &plan).expect("compile");
    let sec = Security {
        caps: plan,
        no_new_privs: false,
        seccomp: Some(Arc::new(program)),
    };
    let s = status(&sec, &root());
    assert_eq!(field(&s, "NoNewPrivs"), "0");
    assert_eq!(field(&s, "Seccomp"), "2");
    assert_eq!(hex(&s, "CapEff"), DOCKER_DEFAULT_CAPS);
}

#[test]
fn a_profile_file_is_applied() {
    require_root();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let profile = dir.path().join("profile.json");
    let json = r#"{
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat", "no_such_call"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
        ]
    }"#;
    std::fs::write(&profile, json).expect("write");
    let sec = security(
        &container(&format!(
            "security_opt = [\"seccomp={}\"]",
            profile.display()
        )),
        0,
    );
    let target = dir.path().join("made").to_string_lossy().to_string();
    let o = busybox(&sec, &root(), &["mkdir", &target]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Permission denied"), "{}", text(&o));
    assert!(!Path::new(&target).exists());
    // Everything else is allowed.
    let o = busybox(&sec, &root(), &["true"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_failed_step_reaches_the_parent_with_its_errno() {
    require_root();
    // An ambient capability needs to be inheritable too: raising it fails.
    let plan = CapPlan {
        ambient: CapSet(1),
        ..caps::plan(&[], &[], false, 0)
    };
    let sec = Security {
        caps: plan,
        no_new_privs: true,
        seccomp: None,
    };
    let mut cmd = Command::new(BUSYBOX);
    cmd.arg("true");
    let ids = root();
    // SAFETY: the closure only makes system calls (see the module doc).
    unsafe {
        cmd.pre_exec(move || match sec.apply_before_exec(&ids) {
            Err(e @ ApplyError::Caps(caps::Error::Ambient { cap: 0, .. })) => Err(e.into()),
            Err(_) => Err(io::Error::from_raw_os_error(libc::EPROTO)),
            Ok(()) => Ok(()),
        });
    }
    let err = cmd.status().err();
    assert_eq!(err.and_then(|e| e.raw_os_error()), Some(libc::EPERM));
}

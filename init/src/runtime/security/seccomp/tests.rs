//! Tests of profiles and the compiler, through a BPF interpreter that runs
//! the programs as the kernel would, and a reference evaluator that reads
//! the profile directly.

use std::path::Path;

use super::bpf::{AUDIT_ARCH_X86_64, Data, run};
use super::*;

const ALLOW: u32 = 0x7fff_0000;
const KILL_PROCESS: u32 = 0x8000_0000;
fn errno(e: i32) -> u32 {
    0x0005_0000 | e as u32
}
const EPERM: i32 = libc::EPERM;
const ENOSYS: i32 = libc::ENOSYS;

const CAP_SYS_ADMIN: u8 = 21;
const CAP_SYS_PTRACE: u8 = 19;
const CAP_SYS_BOOT: u8 = 22;
const CAP_SYS_MODULE: u8 = 16;

const CLONE_NEWUSER: u64 = 0x1000_0000;
const CLONE_NEWNS: u64 = 0x0002_0000;
const CLONE_NEWTIME: u64 = 0x80;
/// What glibc's fork() passes.
const FORK_FLAGS: u64 = 0x0120_0011; // CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD
/// What pthread_create passes.
const THREAD_FLAGS: u64 = 0x003d_0f00;

fn nr(name: &str) -> u32 {
    match syscall_number(name) {
        Some(n) => n,
        None => panic!("no call {name}"),
    }
}

fn data(nr: u32, args: &[u64]) -> Data {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    Data {
        nr,
        arch: AUDIT_ARCH_X86_64,
        args: a,
    }
}

fn compiled(profile: &Profile, caps: &[u8]) -> BpfProgram {
    match compile_for(profile, CapSet::from_numbers(caps), (6, 1)) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn default_for(caps: &[u8]) -> BpfProgram {
    compiled(&Profile::default_profile(), caps)
}

fn call(p: &BpfProgram, name: &str, args: &[u64]) -> u32 {
    run(p.instructions(), &data(nr(name), args))
}

/// What the profile says about `d`, read directly: the first applicable
/// rule whose comparisons hold (with runc's reading of repeated indexes),
/// else the default; then berth's fixed rules for arch and numbers.
fn reference(profile: &Profile, caps: CapSet, kernel: (u32, u32), d: &Data) -> u32 {
    if d.arch != AUDIT_ARCH_X86_64 || (0x4000_0000..u32::MAX).contains(&d.nr) {
        return KILL_PROCESS;
    }
    if d.nr != u32::MAX && d.nr > known_max() && profile.default_action != Action::Allow {
        return errno(ENOSYS);
    }
    let holds = |a: &Arg| {
        let v = d.args[usize::from(a.index)];
        match a.op {
            Op::Eq => v == a.value,
            Op::Ne => v != a.value,
            Op::Lt => v < a.value,
            Op::Le => v <= a.value,
            Op::Gt => v > a.value,
            Op::Ge => v >= a.value,
            Op::MaskedEq(m) => v & m == a.value,
        }
    };
    for r in &profile.rules {
        let applies = caps.intersect(r.includes.caps) == r.includes.caps
            && r.includes.min_kernel.is_none_or(|v| kernel >= v)
            && caps.intersect(r.excludes.caps).is_empty()
            && r.excludes.min_kernel.is_none_or(|v| kernel < v);
        if !applies || !r.syscalls.contains(&d.nr) {
            continue;
        }
        let repeated = r
            .args
            .iter()
            .enumerate()
            .any(|(i, a)| r.args[..i].iter().any(|b| b.index == a.index));
        let matched = if repeated {
            r.args.iter().any(holds)
        } else {
            r.args.iter().all(holds)
        };
        if matched {
            return r.action.ret();
        }
    }
    profile.default_action.ret()
}

/// Values around the interesting points of `v`, across the 32-bit halves.
fn around(v: u64) -> Vec<u64> {
    let mut out = vec![
        0,
        1,
        v,
        v.wrapping_add(1),
        v.wrapping_sub(1),
        v ^ (1 << 32),
        v ^ 1,
        v | 0xffff_ffff,
        v & 0xffff_ffff_0000_0000,
        v & 0xffff_ffff,
        (v & 0xffff_ffff) | (1 << 40),
        0xffff_ffff,
        0x1_0000_0000,
        u64::MAX,
    ];
    out.sort_unstable();
    out.dedup();
    out
}

/// Checks a program against the reference for every call number berth
/// knows (and a few it does not), with argument values around each value
/// the profile compares with.
fn check_against_reference(profile: &Profile, caps: CapSet) {
    let program = match compile_for(profile, caps, (6, 1)) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let mut values: Vec<u64> = profile
        .rules
        .iter()
        .flat_map(|r| r.args.iter())
        .flat_map(|a| around(a.value))
        .collect();
    values.extend(around(0));
    values.sort_unstable();
    values.dedup();
    let mut numbers: Vec<u32> = syscalls::SYSCALLS.iter().map(|(_, n)| *n).collect();
    numbers.extend([
        400,
        known_max() + 1,
        1000,
        0x3fff_ffff,
        0x4000_0000,
        0x4000_0001,
    ]);
    numbers.extend([0xffff_fffe, u32::MAX]);
    for n in numbers {
        // Arguments matter only to calls with comparisons.
        let compared = profile
            .rules
            .iter()
            .any(|r| !r.args.is_empty() && r.syscalls.contains(&n));
        let values: &[u64] = if compared { &values } else { &[0, u64::MAX] };
        for i in 0..6u8 {
            for v in values {
                let mut d = data(n, &[]);
                d.args[usize::from(i)] = *v;
                let got = run(program.instructions(), &d);
                let want = reference(profile, caps, (6, 1), &d);
                assert_eq!(got, want, "call {n} arg{i}={v:#x}, caps {caps:?}");
            }
        }
    }
    for arch in [0x4000_0003 /* i386 */, 0, u32::MAX] {
        let d = Data {
            arch,
            ..data(nr("read"), &[])
        };
        assert_eq!(run(program.instructions(), &d), KILL_PROCESS);
    }
}

#[test]
fn every_name_of_the_default_profile_is_an_x86_64_call() {
    let names = default::ALLOWED
        .iter()
        .chain(default::CAP_GATED.iter().flat_map(|(_, n)| n.iter()));
    for n in names {
        assert!(syscall_number(n).is_some(), "{n}");
    }
    assert_eq!(syscall_name(0), Some("read"));
    assert_eq!(syscall_number("open_tree_attr"), Some(467));
}

#[test]
fn default_profile_decisions() {
    let p = default_for(&[]);
    let cases: &[(&str, &[u64], u32)] = &[
        ("read", &[], ALLOW),
        ("write", &[1, 0, 5], ALLOW),
        ("execve", &[], ALLOW),
        ("capset", &[], ALLOW),
        ("setresuid", &[], ALLOW),
        ("arch_prctl", &[], ALLOW),
        ("ptrace", &[], ALLOW),
        ("mount", &[], errno(EPERM)),
        ("umount2", &[], errno(EPERM)),
        ("unshare", &[CLONE_NEWNS], errno(EPERM)),
        ("setns", &[], errno(EPERM)),
        ("pivot_root", &[], errno(EPERM)),
        ("reboot", &[], errno(EPERM)),
        ("init_module", &[], errno(EPERM)),
        ("kexec_load", &[], errno(EPERM)),
        ("keyctl", &[], errno(EPERM)),
        ("add_key", &[], errno(EPERM)),
        ("io_uring_setup", &[], errno(EPERM)),
        ("userfaultfd", &[], errno(EPERM)),
        ("kcmp", &[], errno(EPERM)),
        ("bpf", &[], errno(EPERM)),
        ("clone", &[FORK_FLAGS], ALLOW),
        ("clone", &[THREAD_FLAGS], ALLOW),
        ("clone", &[FORK_FLAGS | CLONE_NEWUSER], errno(EPERM)),
        ("clone", &[CLONE_NEWNS], errno(EPERM)),
        ("clone", &[CLONE_NEWTIME | FORK_FLAGS], ALLOW),
        ("clone3", &[], errno(ENOSYS)),
        ("personality", &[0], ALLOW),
        ("personality", &[8], ALLOW),
        ("personality", &[0x20008], ALLOW),
        ("personality", &[0xffff_ffff], ALLOW),
        ("personality", &[0x0040_0000], errno(EPERM)), // READ_IMPLIES_EXEC
        ("personality", &[0x0004_0000], errno(EPERM)), // ADDR_NO_RANDOMIZE
        ("personality", &[0x1_0000_0000], errno(EPERM)),
        ("socket", &[libc::AF_UNIX as u64], ALLOW),
        ("socket", &[libc::AF_INET as u64, 1, 0], ALLOW),
        ("socket", &[libc::AF_INET6 as u64], ALLOW),
        ("socket", &[libc::AF_NETLINK as u64], ALLOW),
        ("socket", &[libc::AF_PACKET as u64], ALLOW),
        ("socket", &[libc::AF_VSOCK as u64], errno(EPERM)),
        ("socket", &[libc::AF_ALG as u64], errno(EPERM)),
        ("socket", &[12], errno(EPERM)), // AF_DECnet
        ("socket", &[46], errno(EPERM)), // AF_MAX
        ("socket", &[(1 << 32) | 2], errno(EPERM)),
        ("socket", &[0], ALLOW), // AF_UNSPEC: the kernel refuses it itself
    ];
    for (name, args, want) in cases {
        assert_eq!(call(&p, name, args), *want, "{name}({args:x?})");
    }
    // chroot goes with CAP_SYS_CHROOT, which Docker's default set has.
    assert_eq!(call(&p, "chroot", &[]), errno(EPERM));
    let chroot = default_for(&[18]);
    assert_eq!(call(&chroot, "chroot", &[]), ALLOW);
}

#[test]
fn numbers_outside_the_table() {
    let p = default_for(&[]);
    let run_nr = |n: u32| run(p.instructions(), &data(n, &[]));
    // The x32 ABI.
    assert_eq!(run_nr(nr("read") | 0x4000_0000), KILL_PROCESS);
    assert_eq!(run_nr(0x4000_0000 + 512), KILL_PROCESS);
    // Newer than berth's table: ENOSYS, so libc falls back.
    assert_eq!(run_nr(known_max() + 1), errno(ENOSYS));
    assert_eq!(run_nr(0x3fff_ffff), errno(ENOSYS));
    // A hole in the table, and -1: the default.
    assert_eq!(run_nr(400), errno(EPERM));
    assert_eq!(run_nr(u32::MAX), errno(EPERM));
    // Another architecture.
    let i386 = Data {
        arch: 0x4000_0003,
        ..data(3, &[])
    };
    assert_eq!(run(p.instructions(), &i386), KILL_PROCESS);
}

#[test]
fn capabilities_open_their_calls() {
    let admin = default_for(&[CAP_SYS_ADMIN]);
    assert_eq!(call(&admin, "mount", &[]), ALLOW);
    assert_eq!(call(&admin, "umount2", &[]), ALLOW);
    assert_eq!(call(&admin, "unshare", &[CLONE_NEWUSER]), ALLOW);
    assert_eq!(call(&admin, "setns", &[]), ALLOW);
    assert_eq!(call(&admin, "clone", &[CLONE_NEWUSER]), ALLOW);
    assert_eq!(call(&admin, "clone3", &[]), ALLOW);
    assert_eq!(call(&admin, "kcmp", &[]), errno(EPERM));
    assert_eq!(call(&admin, "pivot_root", &[]), errno(EPERM));

    let ptrace = default_for(&[CAP_SYS_PTRACE]);
    assert_eq!(call(&ptrace, "kcmp", &[]), ALLOW);
    assert_eq!(call(&ptrace, "pidfd_getfd", &[]), ALLOW);
    assert_eq!(call(&ptrace, "mount", &[]), errno(EPERM));

    assert_eq!(call(&default_for(&[CAP_SYS_BOOT]), "reboot", &[]), ALLOW);
    let module = default_for(&[CAP_SYS_MODULE]);
    assert_eq!(call(&module, "finit_module", &[]), ALLOW);
    assert_eq!(call(&module, "kexec_load", &[]), errno(EPERM));
}

#[test]
fn default_profile_matches_the_reference() {
    let profile = Profile::default_profile();
    for caps in [
        CapSet::EMPTY,
        super::super::caps::DEFAULT,
        CapSet::from_numbers(&[CAP_SYS_ADMIN]),
        CapSet::up_to(40),
    ] {
        check_against_reference(&profile, caps);
    }
}

#[test]
fn default_program_is_compact() {
    let p = default_for(&[]);
    // A binary search over about 150 intervals, and the argument checks.
    assert!(p.len() < 600, "{} instructions", p.len());
    let all = default_for(&(0..=40).collect::<Vec<u8>>());
    assert!(all.len() < 600, "{} instructions", all.len());
}

fn rule(names: &[&str], action: Action, args: Vec<Arg>) -> Rule {
    Rule {
        syscalls: names.iter().map(|n| nr(n)).collect(),
        action,
        args,
        includes: Condition::default(),
        excludes: Condition::default(),
    }
}

fn arg(index: u8, op: Op, value: u64) -> Arg {
    Arg { index, op, value }
}

#[test]
fn every_operator_on_64_bit_values() {
    let big = 0x0000_0001_0000_0005;
    let mut rules = Vec::new();
    let ops = [
        ("read", Op::Eq),
        ("write", Op::Ne),
        ("open", Op::Lt),
        ("close", Op::Le),
        ("stat", Op::Gt),
        ("fstat", Op::Ge),
    ];
    for (name, op) in ops {
        for (i, v) in [0, 5, 0xffff_ffff, big, u64::MAX].into_iter().enumerate() {
            let i = i as u8;
            rules.push(rule(
                &[name],
                Action::Errno(100 + u32::from(i)),
                vec![arg(i, op, v)],
            ));
        }
    }
    rules.push(rule(
        &["lseek"],
        Action::Trap,
        vec![arg(
            1,
            Op::MaskedEq(0xff00_0000_00ff_0000),
            0x1200_0000_0034_0000,
        )],
    ));
    rules.push(rule(
        &["lseek"],
        Action::Log,
        vec![arg(2, Op::MaskedEq(0xf0), 0x30)],
    ));
    rules.push(rule(
        &["lseek"],
        Action::KillThread,
        vec![arg(3, Op::MaskedEq(0xf0), 0x1)],
    ));
    rules.push(rule(
        &["mmap"],
        Action::Trace(7),
        vec![arg(0, Op::Eq, 1), arg(1, Op::Gt, big), arg(5, Op::Ne, 0)],
    ));
    for default_action in [Action::Allow, Action::Errno(1), Action::KillProcess] {
        let profile = Profile {
            default_action,
            rules: rules.clone(),
            skipped: vec![],
        };
        check_against_reference(&profile, CapSet::EMPTY);
    }
}

#[test]
fn repeated_argument_index_means_either_as_in_runc() {
    let profile = Profile {
        default_action: Action::Errno(1),
        rules: vec![rule(
            &["socket"],
            Action::Allow,
            vec![arg(0, Op::Eq, 1), arg(0, Op::Eq, 2)],
        )],
        skipped: vec![],
    };
    let p = compiled(&profile, &[]);
    assert_eq!(call(&p, "socket", &[1]), ALLOW);
    assert_eq!(call(&p, "socket", &[2]), ALLOW);
    assert_eq!(call(&p, "socket", &[3]), errno(1));
}

#[test]
fn first_matching_rule_wins() {
    let profile = Profile {
        default_action: Action::Errno(1),
        rules: vec![
            rule(&["read"], Action::Errno(5), vec![arg(0, Op::Eq, 3)]),
            rule(&["read"], Action::Allow, vec![]),
            rule(&["read"], Action::KillProcess, vec![]),
        ],
        skipped: vec![],
    };
    let p = compiled(&profile, &[]);
    assert_eq!(call(&p, "read", &[3]), errno(5));
    assert_eq!(call(&p, "read", &[4]), ALLOW);
}

#[test]
fn far_jumps_in_a_large_program() {
    // Every other call with a rule and an action of its own: well over 255
    // instructions between the search and most blocks.
    let rules: Vec<Rule> = syscalls::SYSCALLS
        .iter()
        .step_by(2)
        .map(|(name, n)| {
            rule(
                &[name],
                Action::Errno(n % 4000),
                vec![arg(0, Op::Eq, u64::from(*n)), arg(1, Op::Ge, 1 << 33)],
            )
        })
        .collect();
    let profile = Profile {
        default_action: Action::Allow,
        rules,
        skipped: vec![],
    };
    let p = compiled(&profile, &[]);
    assert!(p.len() > 2000, "{}", p.len());
    for (_, n) in syscalls::SYSCALLS.iter().step_by(2) {
        let hit = data(*n, &[u64::from(*n), 1 << 33]);
        assert_eq!(run(p.instructions(), &hit), errno(*n as i32 % 4000));
        let miss = data(*n, &[u64::from(*n), 1 << 32]);
        assert_eq!(run(p.instructions(), &miss), ALLOW);
    }
}

#[test]
fn too_long_is_an_error() {
    let rules: Vec<Rule> = syscalls::SYSCALLS
        .iter()
        .map(|(name, n)| {
            rule(
                &[name],
                Action::Errno(*n),
                (0..6).map(|i| arg(i, Op::Ge, 1 << 40)).collect(),
            )
        })
        .collect();
    let profile = Profile {
        default_action: Action::Allow,
        rules,
        skipped: vec![],
    };
    assert!(matches!(
        compile_for(&profile, CapSet::EMPTY, (6, 1)),
        Err(Error::TooLong(n)) if n > MAX_INSNS
    ));
}

#[test]
fn min_kernel_conditions() {
    let mut r = rule(&["read"], Action::Allow, vec![]);
    r.includes.min_kernel = Some((6, 2));
    let mut w = rule(&["write"], Action::Allow, vec![]);
    w.excludes.min_kernel = Some((6, 2));
    let profile = Profile {
        default_action: Action::Errno(1),
        rules: vec![r, w],
        skipped: vec![],
    };
    for (kernel, read, write) in [((6, 1), errno(1), ALLOW), ((6, 2), ALLOW, errno(1))] {
        let p = match compile_for(&profile, CapSet::EMPTY, kernel) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(call(&p, "read", &[]), read, "{kernel:?}");
        assert_eq!(call(&p, "write", &[]), write, "{kernel:?}");
    }
    assert_eq!(parse_kernel_version("6.1.0-50-cloud-amd64"), Some((6, 1)));
    assert_eq!(parse_kernel_version("4.8"), Some((4, 8)));
    assert_eq!(parse_kernel_version("5"), Some((5, 0)));
    assert_eq!(parse_kernel_version("x"), None);
    assert!(kernel_version() >= (3, 0));
}

const PROFILE_JSON: &str = r#"{
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
    ],
    "syscalls": [
        {"names": ["read", "write", "no_such_call", "chown32"], "action": "SCMP_ACT_ALLOW", "args": []},
        {"name": "close", "action": "SCMP_ACT_ALLOW", "args": null},
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["gettid"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["kill"], "action": "SCMP_ACT_TRAP"},
        {"names": ["tkill"], "action": "SCMP_ACT_KILL"},
        {"names": ["tgkill"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["uname"], "action": "SCMP_ACT_LOG"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
         "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["reboot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_NO_SUCH"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        {"names": ["set_tls", "arm_only_call"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm", "arm64"]}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 12, "op": "SCMP_CMP_LT"}]},
        {"names": ["brk"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_NE"},
                  {"index": 2, "value": 3, "op": "SCMP_CMP_LE"},
                  {"index": 3, "value": 3, "op": "SCMP_CMP_GE"},
                  {"index": 4, "value": 3, "op": "SCMP_CMP_GT"}]}
    ],
    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "listenerPath": ""
}"#;

fn parsed(text: &str) -> Profile {
    match Profile::from_json(Path::new("/p.json"), text) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn reads_a_docker_profile() {
    let profile = parsed(PROFILE_JSON);
    assert_eq!(profile.default_action, Action::Errno(1));
    // Unknown names are skipped (and only those of rules that apply on amd64).
    assert_eq!(profile.skipped, ["no_such_call", "chown32"]);
    // The arm rule and the rule needing an unknown capability are dropped.
    assert!(
        profile
            .rules
            .iter()
            .all(|r| !r.syscalls.contains(&nr("reboot")))
    );
    assert_eq!(profile.rules.len(), 15);

    let p = compiled(&profile, &[]);
    for (name, args, want) in [
        ("read", vec![], ALLOW),
        ("write", vec![], ALLOW),
        ("close", vec![], ALLOW),
        ("getpid", vec![], errno(ENOSYS)),
        ("gettid", vec![], errno(EPERM)),
        ("kill", vec![], 0x0003_0000),
        ("tkill", vec![], 0),
        ("tgkill", vec![], KILL_PROCESS),
        ("uname", vec![], 0x7ffc_0000),
        ("personality", vec![8], ALLOW),
        ("personality", vec![0], errno(1)),
        ("clone", vec![FORK_FLAGS], ALLOW),
        ("clone", vec![CLONE_NEWUSER], errno(1)),
        ("mount", vec![], errno(1)),
        ("reboot", vec![], errno(1)),
        ("ptrace", vec![], ALLOW),
        ("arch_prctl", vec![], ALLOW),
        ("socket", vec![2], ALLOW),
        ("socket", vec![40], errno(1)),
        ("brk", vec![0, 9, 3, 3, 4], ALLOW),
        ("brk", vec![0, 10, 3, 3, 4], errno(1)),
        ("brk", vec![0, 9, 4, 3, 4], errno(1)),
        ("brk", vec![0, 9, 3, 2, 4], errno(1)),
        ("brk", vec![0, 9, 3, 3, 3], errno(1)),
    ] {
        assert_eq!(call(&p, name, &args), want, "{name}({args:?})");
    }
    let admin = compiled(&profile, &[CAP_SYS_ADMIN]);
    assert_eq!(call(&admin, "mount", &[]), ALLOW);
    assert_eq!(call(&admin, "clone", &[FORK_FLAGS]), errno(1));
    check_against_reference(&profile, CapSet::EMPTY);
    check_against_reference(&profile, CapSet::from_numbers(&[CAP_SYS_ADMIN]));
}

#[test]
fn refuses_bad_profiles() {
    let bad = |text: &str, want: &str| match Profile::from_json(Path::new("/p.json"), text) {
        Ok(_) => panic!("accepted {text}"),
        Err(e) => assert!(e.to_string().contains(want), "{e} for {text}"),
    };
    bad("{", "invalid seccomp profile /p.json");
    bad(r#"{"syscalls": []}"#, "defaultAction");
    bad(
        r#"{"defaultAction": "SCMP_ACT_NOPE"}"#,
        "unknown action \"SCMP_ACT_NOPE\"",
    );
    bad(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#, "not supported");
    bad(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_AARCH64"]}"#,
        "does not cover x86_64",
    );
    bad(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
        "argument index 6",
    );
    bad(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}"#,
        "unknown operator",
    );
    match Profile::from_file(Path::new("/nonexistent/profile.json")) {
        Err(Error::Read { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_profile_that_allows_by_default_still_blocks_x32() {
    let profile = parsed(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO"}]}"#,
    );
    let p = compiled(&profile, &[]);
    assert_eq!(call(&p, "mount", &[]), errno(EPERM));
    assert_eq!(call(&p, "read", &[]), ALLOW);
    // The x32 number of mount must not slip past the deny list.
    assert_eq!(
        run(p.instructions(), &data(nr("mount") | 0x4000_0000, &[])),
        KILL_PROCESS
    );
    // Past the table: allowed, as everything else.
    assert_eq!(run(p.instructions(), &data(known_max() + 1, &[])), ALLOW);
}

#[test]
fn cache_compiles_once_per_profile_and_caps() {
    use super::super::caps::plan_for_kernel;
    let mut cache = Cache::default();
    let profile = Profile::default_profile();
    let root = plan_for_kernel(&[], &[], false, 0, 40, CapSet(u64::MAX));
    let user = plan_for_kernel(&[], &[], false, 1000, 40, CapSet(u64::MAX));
    let privileged = plan_for_kernel(&[], &[], true, 0, 40, CapSet(u64::MAX));
    let a = cache.get(&profile, &root).unwrap_or_else(|e| panic!("{e}"));
    let b = cache.get(&profile, &user).unwrap_or_else(|e| panic!("{e}"));
    let c = cache
        .get(&profile, &privileged)
        .unwrap_or_else(|e| panic!("{e}"));
    // Same bounding set: the same program.
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(cache.len(), 2);
}

//! berth's default profile: Docker's default seccomp profile (moby's
//! `profiles/seccomp`), for x86_64, written out as a Rust table.
//!
//! What it does, as Docker's:
//! - every call not listed fails with EPERM;
//! - [`ALLOWED`]: the calls any container may make (Docker's main list,
//!   less the names that are not x86_64 calls, plus arch_prctl and
//!   modify_ldt, which Docker allows on amd64, and ptrace,
//!   process_vm_readv and process_vm_writev, which Docker allows on kernels
//!   from 4.8 on);
//! - socket(2) for every address family except those Docker blocks:
//!   AF_ALG (the kernel crypto API), AF_VSOCK (host/guest sockets: a
//!   container on berth's VM must not reach the hypervisor), and families
//!   the kernel no longer has;
//! - personality(2) only for the personas 0 (PER_LINUX), 0x8 (UNAME26),
//!   0x20000 (PER_LINUX32), 0x20008 and 0xffffffff (the query);
//! - clone(2) without namespace flags, and clone3(2) failing with ENOSYS so
//!   that libc falls back to clone (seccomp cannot look inside clone3's
//!   struct), unless the container has CAP_SYS_ADMIN;
//! - more calls with each capability that makes them meaningful
//!   ([`CAP_GATED`]): CAP_SYS_ADMIN gives mount, umount2, unshare, setns,
//!   bpf, clone and clone3 with any flags, and more; CAP_SYS_PTRACE gives
//!   kcmp, pidfd_getfd, process_madvise; CAP_SYS_MODULE the module calls;
//!   and so on.
//!
//! Left out: the rules for other architectures (ppc64le, arm, s390, riscv),
//! and the i386 and x32 variants of every call (berth filters x86_64 only).

use super::{Action, Arg, Condition, Op, Profile, Rule, syscall_number};
use crate::runtime::security::caps::CapSet;

/// Calls every container may make.
pub const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "clock_adjtime",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_requeue",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "write",
    "writev",
    // Allowed on amd64 only, by an `includes.arches` rule in Docker's.
    "arch_prctl",
    "modify_ldt",
    // Allowed from kernel 4.8 on, where ptrace checks seccomp again after a
    // tracer changes the call; berth's kernel is newer.
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
];

/// The address families socket(2) accepts: AF_UNIX (1) to AF_ROSE (11),
/// then each one Docker allows. Left out: AF_DECnet (12), AF_ECONET (19),
/// AF_ATMSVC (20), AF_IRDA (23), AF_WANPIPE (25), AF_ISDN (34) and AF_CAIF
/// (37), gone from the kernel; AF_ALG (38) and AF_VSOCK (40), blocked.
pub const SOCKET_FAMILIES_BELOW: u64 = 12;
/// See [`SOCKET_FAMILIES_BELOW`].
pub const SOCKET_FAMILIES: &[u64] = &[
    13, // AF_NETBEUI
    14, // AF_SECURITY
    15, // AF_KEY
    16, // AF_NETLINK
    17, // AF_PACKET
    18, // AF_ASH
    21, // AF_RDS
    22, // AF_SNA
    24, // AF_PPPOX
    26, // AF_LLC
    27, // AF_IB
    28, // AF_MPLS
    29, // AF_CAN
    30, // AF_TIPC
    31, // AF_BLUETOOTH
    32, // AF_IUCV
    33, // AF_RXRPC
    35, // AF_PHONET
    36, // AF_IEEE802154
    39, // AF_NFC
    41, // AF_KCM
    42, // AF_QIPCRTR
    43, // AF_SMC
    44, // AF_XDP
    45, // AF_MCTP
];

/// The personas personality(2) accepts.
pub const PERSONAS: &[u64] = &[0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// The namespace flags clone(2) may not carry without CAP_SYS_ADMIN:
/// CLONE_NEWNS, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET and NEWCGROUP.
pub const CLONE_NAMESPACES: u64 =
    0x0002_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000 | 0x0200_0000;

/// Calls allowed with a capability, by capability number.
pub const CAP_GATED: &[(u8, &[&str])] = &[
    // CAP_DAC_READ_SEARCH
    (2, &["open_by_handle_at"]),
    // CAP_SYS_ADMIN
    (
        21,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount2",
            "unshare",
        ],
    ),
    // CAP_SYS_BOOT
    (22, &["reboot"]),
    // CAP_SYS_CHROOT
    (18, &["chroot"]),
    // CAP_SYS_MODULE
    (16, &["delete_module", "init_module", "finit_module"]),
    // CAP_SYS_PACCT
    (20, &["acct"]),
    // CAP_SYS_PTRACE
    (
        19,
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    // CAP_SYS_RAWIO
    (17, &["iopl", "ioperm"]),
    // CAP_SYS_TIME
    (25, &["settimeofday", "clock_settime"]),
    // CAP_SYS_TTY_CONFIG
    (26, &["vhangup"]),
    // CAP_SYS_NICE
    (
        23,
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    // CAP_SYSLOG
    (34, &["syslog"]),
    // CAP_BPF
    (39, &["bpf"]),
    // CAP_PERFMON
    (38, &["perf_event_open"]),
];

const CAP_SYS_ADMIN: u8 = 21;

fn numbers(names: &[&str]) -> Vec<u32> {
    // Every name here is an x86_64 call (a unit test checks it).
    names.iter().filter_map(|n| syscall_number(n)).collect()
}

fn allow(names: &[&str], args: Vec<Arg>) -> Rule {
    Rule {
        syscalls: numbers(names),
        action: Action::Allow,
        args,
        includes: Condition::default(),
        excludes: Condition::default(),
    }
}

fn arg0(op: Op, value: u64) -> Vec<Arg> {
    vec![Arg {
        index: 0,
        op,
        value,
    }]
}

/// The profile.
pub fn profile() -> Profile {
    let sys_admin = Condition {
        caps: CapSet::from_numbers(&[CAP_SYS_ADMIN]),
        min_kernel: None,
    };
    let mut rules = vec![allow(ALLOWED, vec![])];
    rules.push(allow(&["socket"], arg0(Op::Lt, SOCKET_FAMILIES_BELOW)));
    rules.extend(
        SOCKET_FAMILIES
            .iter()
            .map(|f| allow(&["socket"], arg0(Op::Eq, *f))),
    );
    rules.extend(
        PERSONAS
            .iter()
            .map(|p| allow(&["personality"], arg0(Op::Eq, *p))),
    );
    for (cap, names) in CAP_GATED {
        rules.push(Rule {
            includes: Condition {
                caps: CapSet::from_numbers(&[*cap]),
                min_kernel: None,
            },
            ..allow(names, vec![])
        });
    }
    rules.push(Rule {
        excludes: sys_admin.clone(),
        ..allow(&["clone"], arg0(Op::MaskedEq(CLONE_NAMESPACES), 0))
    });
    rules.push(Rule {
        syscalls: numbers(&["clone3"]),
        action: Action::Errno(libc::ENOSYS as u32),
        args: vec![],
        includes: Condition::default(),
        excludes: sys_admin,
    });
    Profile {
        default_action: Action::Errno(libc::EPERM as u32),
        rules,
        skipped: vec![],
    }
}

//! Seccomp: the filter a container's process gets, compiled in PID 1 and
//! loaded by the child just before exec.
//!
//! A [`Profile`] is rules over system calls, in the shape of Docker's JSON
//! profiles: berth's default ([`Profile::default_profile`], equivalent to
//! Docker's default profile on x86_64) or a file in Docker's format
//! ([`Profile::from_json`], for `security_opt = ["seccomp=/path.json"]`).
//! Some rules apply only when the container has a capability (or lacks
//! one), so [`compile`] takes the container's [`CapPlan`] and writes a BPF
//! program for exactly that container; [`Cache`] keeps the programs by
//! (profile, bounding set), so PID 1 compiles each one once. [`apply`] only
//! hands the precompiled program to the kernel: one system call, no
//! allocation, safe between fork and exec.
//!
//! berth writes the BPF itself ([`bpf`]): the `seccompiler` crate allows one
//! action per filter (Docker's profile needs ALLOW and ERRNO(ENOSYS) side by
//! side, and a profile file any mix), cannot block x32 calls, keeps its
//! syscall table private, and its `apply_filter` always sets no_new_privs.
//! The generator is about 300 lines and is checked here by an interpreter
//! and on the host by the kernel itself.
//!
//! Only x86_64 is filtered: calls through the i386 ABI (`int 0x80`) and the
//! x32 ABI kill the process. (Docker allows both ABIs, by their own call
//! numbers; berth's images are x86_64.)

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Errno;
use super::caps::{CapPlan, CapSet};

mod bpf;
mod default;
mod json;
mod syscalls;

pub use bpf::{Insn, MAX_INSNS};

/// A compiled filter: classic BPF for seccomp(2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BpfProgram(Vec<Insn>);

impl BpfProgram {
    /// Its instructions.
    pub fn instructions(&self) -> &[Insn] {
        &self.0
    }

    /// Its length in instructions.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has no instruction (never, for a compiled program).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the kernel does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Let it run.
    Allow,
    /// Fail it with this errno.
    Errno(u32),
    /// Kill the thread (SCMP_ACT_KILL, SCMP_ACT_KILL_THREAD).
    KillThread,
    /// Kill the process.
    KillProcess,
    /// Send SIGSYS.
    Trap,
    /// Let it run and log it.
    Log,
    /// Notify a ptrace tracer with this value (ENOSYS without one).
    Trace(u32),
}

impl Action {
    /// The filter's return value (SECCOMP_RET_*).
    pub fn ret(self) -> u32 {
        const DATA: u32 = 0xffff;
        match self {
            Action::Allow => 0x7fff_0000,
            Action::Errno(e) => 0x0005_0000 | (e & DATA),
            Action::KillThread => 0,
            Action::KillProcess => 0x8000_0000,
            Action::Trap => 0x0003_0000,
            Action::Log => 0x7ffc_0000,
            Action::Trace(v) => 0x7ff0_0000 | (v & DATA),
        }
    }
}

/// A comparison of a call's argument with a value (64-bit, unsigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// `arg == value`.
    Eq,
    /// `arg != value`.
    Ne,
    /// `arg < value`.
    Lt,
    /// `arg <= value`.
    Le,
    /// `arg > value`.
    Gt,
    /// `arg >= value`.
    Ge,
    /// `arg & mask == value`.
    MaskedEq(u64),
}

/// One argument comparison of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Arg {
    /// The argument's index, 0 to 5.
    pub index: u8,
    /// The comparison.
    pub op: Op,
    /// The value compared with.
    pub value: u64,
}

/// When a rule applies (Docker's `includes` and `excludes`; a rule whose
/// arches leave out x86_64 is dropped when the profile is read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Condition {
    /// Capabilities, checked against the container's bounding set: in
    /// `includes` all are needed, in `excludes` any one excludes.
    pub caps: CapSet,
    /// A kernel version `(major, minor)`: in `includes` the kernel must be
    /// at least this, in `excludes` older.
    pub min_kernel: Option<(u32, u32)>,
}

/// Calls and what happens to them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// The call numbers (x86_64).
    pub syscalls: Vec<u32>,
    /// The action when the arguments match.
    pub action: Action,
    /// Comparisons, all of which must hold (but see [`compile`] on repeated
    /// indexes).
    pub args: Vec<Arg>,
    /// Applies only when this holds (nothing: always).
    pub includes: Condition,
    /// Applies only when this does not hold (nothing: always).
    pub excludes: Condition,
}

/// A seccomp profile.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Profile {
    /// The action for calls no rule matches.
    pub default_action: Action,
    /// The rules, in order: for one call, the first that matches wins.
    pub rules: Vec<Rule>,
    /// Names in the profile that are not x86_64 calls, skipped.
    pub skipped: Vec<String>,
}

/// Why a profile could not be read or compiled.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// cannot read seccomp profile {path}: {source}
    Read {
        /// The profile's path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// invalid seccomp profile {path}: {source}
    Json {
        /// The profile's path.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
    /// invalid seccomp profile {path}: {message}
    Invalid {
        /// The profile's path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// the seccomp filter is too long: {0} instructions, the kernel takes at most 4096
    TooLong(usize),
}

/// The number of an x86_64 call by name.
pub fn syscall_number(name: &str) -> Option<u32> {
    syscalls::SYSCALLS
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .and_then(|i| syscalls::SYSCALLS.get(i))
        .map(|(_, nr)| *nr)
}

/// The name of an x86_64 call by number.
pub fn syscall_name(nr: u32) -> Option<&'static str> {
    syscalls::SYSCALLS
        .iter()
        .find(|(_, n)| *n == nr)
        .map(|(name, _)| *name)
}

/// The highest call number berth knows.
fn known_max() -> u32 {
    syscalls::SYSCALLS
        .iter()
        .map(|(_, nr)| *nr)
        .max()
        .unwrap_or(0)
}

impl Profile {
    /// berth's default profile: Docker's, on x86_64 (see [`default`]).
    pub fn default_profile() -> Profile {
        default::profile()
    }

    /// Reads a profile in Docker's JSON format. Calls unknown on x86_64 are
    /// skipped with a warning, as Docker does (its profile names calls of
    /// every architecture).
    pub fn from_json(path: &Path, text: &str) -> Result<Profile, Error> {
        let profile = json::parse(text).map_err(|e| match e {
            json::Error::Json(source) => Error::Json {
                path: path.to_path_buf(),
                source,
            },
            json::Error::Invalid(message) => Error::Invalid {
                path: path.to_path_buf(),
                message,
            },
        })?;
        if !profile.skipped.is_empty() {
            log::warn!(
                "seccomp profile {}: skipping {} calls unknown on x86_64: {}",
                path.display(),
                profile.skipped.len(),
                profile.skipped.join(", ")
            );
        }
        Ok(profile)
    }

    /// Reads a profile file in Docker's JSON format.
    pub fn from_file(path: &Path) -> Result<Profile, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Profile::from_json(path, &text)
    }
}

/// The running kernel's `(major, minor)`, from uname; (0, 0) if unreadable.
pub fn kernel_version() -> (u32, u32) {
    let release = nix::sys::utsname::uname()
        .ok()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_kernel_version(&release).unwrap_or((0, 0))
}

/// `(major, minor)` of "6.1.0-50-cloud-amd64" or "4.8".
pub fn parse_kernel_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// Compiles `profile` for a container with the capabilities of `plan`, on
/// the running kernel.
///
/// A rule applies when its `includes` hold and its `excludes` do not, with
/// the capabilities checked against the *bounding* set (as Docker does, so
/// a non-root user with CAP_SYS_ADMIN in its bounding set gets the calls
/// that go with it). Within a rule all comparisons must hold, except that a
/// rule comparing the same argument twice is taken as one alternative per
/// comparison (runc's behaviour, which Docker profiles are written for).
pub fn compile(profile: &Profile, plan: &CapPlan) -> Result<BpfProgram, Error> {
    compile_for(profile, plan.bounding, kernel_version())
}

/// [`compile`] for a bounding set and a kernel version.
pub fn compile_for(
    profile: &Profile,
    bounding: CapSet,
    kernel: (u32, u32),
) -> Result<BpfProgram, Error> {
    let applies = |r: &Rule| {
        let inc = &r.includes;
        let exc = &r.excludes;
        bounding.intersect(inc.caps) == inc.caps
            && inc.min_kernel.is_none_or(|v| kernel >= v)
            && bounding.intersect(exc.caps).is_empty()
            && exc.min_kernel.is_none_or(|v| kernel < v)
    };
    let mut calls: BTreeMap<u32, Vec<bpf::Check>> = BTreeMap::new();
    for rule in profile.rules.iter().filter(|r| applies(r)) {
        let repeated = rule
            .args
            .iter()
            .enumerate()
            .any(|(i, a)| rule.args[..i].iter().any(|b| b.index == a.index));
        let alternatives: Vec<Vec<Arg>> = if repeated {
            rule.args.iter().map(|a| vec![*a]).collect()
        } else {
            vec![rule.args.clone()]
        };
        for nr in &rule.syscalls {
            let checks = calls.entry(*nr).or_default();
            for args in &alternatives {
                // After an unconditional rule, later ones are unreachable.
                if checks.last().is_some_and(|c| c.args.is_empty()) {
                    break;
                }
                checks.push(bpf::Check {
                    args: args.clone(),
                    action: rule.action,
                });
            }
        }
    }
    // A call whose only rule repeats the default needs no block.
    calls.retain(|_, checks| !checks.iter().all(|c| c.action == profile.default_action));
    bpf::generate(profile.default_action, &calls, known_max())
        .map(BpfProgram)
        .map_err(Error::TooLong)
}

/// Loads `program` into the calling thread with seccomp(2)
/// (SECCOMP_SET_MODE_FILTER). Without no_new_privs set, the caller needs
/// CAP_SYS_ADMIN. Makes one system call and allocates nothing.
pub fn apply(program: &BpfProgram) -> Result<(), Errno> {
    #[repr(C)]
    struct SockFprog {
        len: libc::c_ushort,
        filter: *const Insn,
    }
    let prog = SockFprog {
        len: u16::try_from(program.0.len()).unwrap_or(u16::MAX),
        filter: program.0.as_ptr(),
    };
    // SAFETY: `prog` is a `struct sock_fprog` whose pointer and length
    // describe `program`'s instructions (`Insn` is `struct sock_filter`),
    // alive across the call; the kernel copies them and writes nothing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_uint,
            std::ptr::from_ref(&prog),
        )
    };
    if rc == -1 { Err(Errno::last()) } else { Ok(()) }
}

/// Compiled programs by (profile, bounding set), so PID 1 compiles each
/// distinct filter once; the child gets an `Arc` to it.
#[derive(Debug, Default)]
pub struct Cache {
    programs: HashMap<(Profile, CapSet), Arc<BpfProgram>>,
}

impl Cache {
    /// The program of `profile` for a container with `plan`, compiled on
    /// first use.
    pub fn get(&mut self, profile: &Profile, plan: &CapPlan) -> Result<Arc<BpfProgram>, Error> {
        let key = (profile.clone(), plan.bounding);
        if let Some(p) = self.programs.get(&key) {
            return Ok(Arc::clone(p));
        }
        let program = Arc::new(compile(profile, plan)?);
        self.programs.insert(key, Arc::clone(&program));
        Ok(program)
    }

    /// How many programs it holds.
    pub fn len(&self) -> usize {
        self.programs.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.programs.is_empty()
    }
}

#[cfg(test)]
mod tests;

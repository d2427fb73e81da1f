//! Docker's JSON seccomp profiles (`security_opt = ["seccomp=/path.json"]`).
//!
//! Read: `defaultAction` and `defaultErrnoRet`; `architectures` or
//! `archMap` (only to check that x86_64 is covered); `syscalls[]` with
//! `names` (or the old `name`), `action`, `errnoRet`, `args[]` (`index`,
//! `value`, `valueTwo`, `op`) and `includes`/`excludes` (`caps`, `arches`,
//! `minKernel`). Actions: SCMP_ACT_ALLOW, ERRNO, KILL, KILL_THREAD,
//! KILL_PROCESS, TRAP, LOG and TRACE; ERRNO and TRACE without `errnoRet`
//! return EPERM, as with runc. Operators: SCMP_CMP_EQ, NE, LT, LE, GT, GE
//! and MASKED_EQ (`value` is the mask, `valueTwo` the value).
//!
//! Not supported: SCMP_ACT_NOTIFY (there is no seccomp agent), and `flags`
//! and `listenerPath`, which are ignored. A rule whose `includes.arches`
//! leave out "amd64", or whose `excludes.arches` name it, never applies and
//! is dropped; its names are not looked up. Names that are not x86_64 calls
//! (Docker's own profile names the calls of every architecture) are skipped.

use serde::Deserialize;

use super::{Action, Arg, Condition, Op, Profile, Rule, parse_kernel_version, syscall_number};
use crate::runtime::security::caps::CapSet;

/// Why a profile is invalid.
#[derive(Debug)]
pub(super) enum Error {
    /// Not JSON of the right shape.
    Json(serde_json::Error),
    /// A value berth does not accept.
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonProfile {
    default_action: String,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<String>>,
    arch_map: Option<Vec<JsonArch>>,
    syscalls: Option<Vec<JsonSyscall>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonArch {
    architecture: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSyscall {
    name: Option<String>,
    names: Option<Vec<String>>,
    action: String,
    errno_ret: Option<u32>,
    args: Option<Vec<JsonArg>>,
    includes: Option<JsonFilter>,
    excludes: Option<JsonFilter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonFilter {
    caps: Option<Vec<String>>,
    arches: Option<Vec<String>>,
    min_kernel: Option<String>,
}

/// Docker's name for x86_64 in `includes.arches` (Go's GOARCH).
const GOARCH: &str = "amd64";
const NATIVE: &str = "SCMP_ARCH_X86_64";

fn action(name: &str, errno: Option<u32>) -> Result<Action, Error> {
    let eperm = libc::EPERM as u32;
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(errno.unwrap_or(eperm)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_TRACE" => Action::Trace(errno.unwrap_or(eperm)),
        "SCMP_ACT_NOTIFY" => {
            return Err(Error::Invalid(
                "SCMP_ACT_NOTIFY is not supported: berth has no seccomp agent".into(),
            ));
        }
        other => return Err(Error::Invalid(format!("unknown action {other:?}"))),
    })
}

fn arg(a: &JsonArg) -> Result<Arg, Error> {
    let index = u8::try_from(a.index)
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| Error::Invalid(format!("argument index {} is not 0 to 5", a.index)))?;
    let (op, value) = match a.op.as_str() {
        "SCMP_CMP_EQ" => (Op::Eq, a.value),
        "SCMP_CMP_NE" => (Op::Ne, a.value),
        "SCMP_CMP_LT" => (Op::Lt, a.value),
        "SCMP_CMP_LE" => (Op::Le, a.value),
        "SCMP_CMP_GT" => (Op::Gt, a.value),
        "SCMP_CMP_GE" => (Op::Ge, a.value),
        "SCMP_CMP_MASKED_EQ" => (Op::MaskedEq(a.value), a.value_two),
        other => return Err(Error::Invalid(format!("unknown operator {other:?}"))),
    };
    Ok(Arg { index, op, value })
}

/// The capability set named by `names` ("CAP_SYS_ADMIN" or "SYS_ADMIN"),
/// and whether any name is unknown.
fn caps(names: &[String]) -> (CapSet, bool) {
    let mut set = CapSet::EMPTY;
    let mut unknown = false;
    for n in names {
        let upper = n.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        match berth_config::Capability::all().find(|c| c.name() == full) {
            Some(c) => set = set.with(c),
            None => unknown = true,
        }
    }
    (set, unknown)
}

fn min_kernel(f: &JsonFilter) -> Result<Option<(u32, u32)>, Error> {
    f.min_kernel
        .as_deref()
        .map(|v| {
            parse_kernel_version(v)
                .ok_or_else(|| Error::Invalid(format!("invalid minKernel {v:?}")))
        })
        .transpose()
}

/// Parses a profile (see the module doc).
pub(super) fn parse(text: &str) -> Result<Profile, Error> {
    let p: JsonProfile = serde_json::from_str(text).map_err(Error::Json)?;
    let default_action = action(&p.default_action, p.default_errno_ret)?;

    let listed: Vec<&str> = match (&p.architectures, &p.arch_map) {
        (Some(a), Some(m)) if !a.is_empty() && !m.is_empty() => {
            return Err(Error::Invalid(
                "both architectures and archMap are set".into(),
            ));
        }
        (Some(a), _) if !a.is_empty() => a.iter().map(String::as_str).collect(),
        (_, Some(m)) if !m.is_empty() => m.iter().map(|a| a.architecture.as_str()).collect(),
        _ => vec![],
    };
    if !listed.is_empty() && !listed.contains(&NATIVE) {
        return Err(Error::Invalid(format!(
            "it does not cover x86_64 ({NATIVE}): {}",
            listed.join(", ")
        )));
    }

    let mut rules = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for s in p.syscalls.unwrap_or_default() {
        let includes = s.includes.unwrap_or_default();
        let excludes = s.excludes.unwrap_or_default();
        let inc_arches = includes.arches.as_deref().unwrap_or_default();
        let exc_arches = excludes.arches.as_deref().unwrap_or_default();
        if (!inc_arches.is_empty() && !inc_arches.iter().any(|a| a == GOARCH))
            || exc_arches.iter().any(|a| a == GOARCH)
        {
            continue;
        }
        let (inc_caps, inc_unknown) = caps(includes.caps.as_deref().unwrap_or_default());
        if inc_unknown {
            // Needs a capability no container can have.
            continue;
        }
        // An unknown capability in `excludes` is never held: ignored.
        let (exc_caps, _) = caps(excludes.caps.as_deref().unwrap_or_default());

        let mut names = s.names.unwrap_or_default();
        if let Some(n) = s.name {
            names.push(n);
        }
        let mut syscalls = Vec::new();
        for n in names {
            match syscall_number(&n) {
                Some(nr) => syscalls.push(nr),
                None if !skipped.contains(&n) => skipped.push(n),
                None => {}
            }
        }
        let args = s
            .args
            .unwrap_or_default()
            .iter()
            .map(arg)
            .collect::<Result<Vec<_>, _>>()?;
        let action = action(&s.action, s.errno_ret)?;
        if syscalls.is_empty() {
            continue;
        }
        rules.push(Rule {
            syscalls,
            action,
            args,
            includes: Condition {
                caps: inc_caps,
                min_kernel: min_kernel(&includes)?,
            },
            excludes: Condition {
                caps: exc_caps,
                min_kernel: min_kernel(&excludes)?,
            },
        });
    }
    Ok(Profile {
        default_action,
        rules,
        skipped,
    })
}

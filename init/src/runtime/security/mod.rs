//! Capabilities, no_new_privs and seccomp for containers.
//!
//! PID 1 builds a container's [`Security`] before it forks
//! ([`Security::for_container`]): the capability plan ([`caps::plan`]), the
//! no_new_privs decision, and the seccomp program, compiled once per
//! distinct (profile, capabilities) and shared through an `Arc`. The child,
//! after its namespaces, mounts and pivot_root and just before exec, calls
//! [`Security::apply_before_exec`], which only makes system calls (nothing
//! is read, parsed, compiled or allocated there), in this order:
//!
//! 1. **drop the bounding set** to the plan's (PR_CAPBSET_DROP needs
//!    CAP_SETPCAP, which the child has only while it is still root with
//!    PID 1's capabilities), and before seccomp is loaded (pitfall 3);
//! 2. **seccomp, if no_new_privs is off**: without no_new_privs, loading a
//!    filter needs CAP_SYS_ADMIN, so it must happen before the capabilities
//!    go; the filter then has to allow the calls of steps 3 to 5 (Docker's
//!    profile does);
//! 3. **identity** ([`caps::set_ids`]): PR_SET_KEEPCAPS, setgroups,
//!    setresgid, setresuid (the group calls first: they need CAP_SETGID,
//!    which a non-root uid no longer has), PR_SET_KEEPCAPS off;
//! 4. **capabilities**: capset(2) for the permitted, effective and
//!    inheritable sets, then the ambient set cleared and raised (after the
//!    uid change, which clears the effective set of a non-root uid);
//! 5. **no_new_privs** (PR_SET_NO_NEW_PRIVS): from here on, exec can never
//!    grant privileges (setuid binaries, file capabilities);
//! 6. **seccomp, if no_new_privs is on**: last, just before exec, so that
//!    as few calls as possible run under the filter before the container's
//!    program does (pitfall 3).
//!
//! berth differs from Docker on purpose in one point: **no_new_privs is on
//! by default**, and off for a `privileged` container; `security_opt`
//! "no-new-privileges:true" or ":false" decides either way. Docker sets it only with
//! `--security-opt no-new-privileges`. The cost: setuid binaries (`su`,
//! `sudo`, a setuid `ping`) and file capabilities do not raise privileges
//! inside a container. The gain: a compromised process cannot gain
//! privileges through exec, and the default seccomp filter is loaded after
//! everything else.
//!
//! `privileged` means: every capability, no seccomp filter (as in Docker,
//! where `--privileged` disables seccomp even with a profile given), and no
//! no_new_privs.

use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};

use berth_config::{Container, Seccomp};
use serde::{Deserialize, Serialize};

use crate::runtime::user::Ids;

pub mod caps;
pub mod seccomp;

pub use caps::{CapPlan, CapSet};
pub use seccomp::BpfProgram;

/// An errno, serializable, shown as "EPERM: Operation not permitted".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's errno.
    pub fn last() -> Errno {
        Errno(nix::errno::Errno::last_raw())
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        nix::errno::Errno::from_raw(self.0).fmt(f)
    }
}

/// Why a container's security settings could not be prepared (in PID 1).
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// {0}
    Seccomp(seccomp::Error),
}

/// A failed step of [`Security::apply_before_exec`] (in the child). Plain
/// data, so the child can send it to PID 1 as it is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, displaydoc::Display,
)]
pub enum ApplyError {
    /// {0}
    Caps(caps::Error),
    /// cannot set no_new_privs: {0}
    NoNewPrivs(Errno),
    /// cannot load the seccomp filter: {0}
    Seccomp(Errno),
}

impl ApplyError {
    /// The step that failed, in words.
    pub fn step(&self) -> &'static str {
        match self {
            ApplyError::Caps(e) => e.step(),
            ApplyError::NoNewPrivs(_) => "no_new_privs",
            ApplyError::Seccomp(_) => "seccomp",
        }
    }

    /// The errno of the failed call.
    pub fn errno(&self) -> i32 {
        match *self {
            ApplyError::Caps(e) => e.errno(),
            ApplyError::NoNewPrivs(e) | ApplyError::Seccomp(e) => e.0,
        }
    }
}

impl From<caps::Error> for ApplyError {
    fn from(e: caps::Error) -> Self {
        ApplyError::Caps(e)
    }
}

impl From<ApplyError> for std::io::Error {
    /// The errno alone (what `Command::pre_exec` can carry).
    fn from(e: ApplyError) -> Self {
        std::io::Error::from_raw_os_error(e.errno())
    }
}

/// A container's capabilities, no_new_privs and seccomp program, ready for
/// the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// The capability sets.
    pub caps: CapPlan,
    /// Whether to set no_new_privs.
    pub no_new_privs: bool,
    /// The seccomp program; `None` for no filter.
    pub seccomp: Option<Arc<BpfProgram>>,
}

/// PID 1's compiled programs (see [`seccomp::Cache`]).
static CACHE: LazyLock<Mutex<seccomp::Cache>> = LazyLock::new(Mutex::default);

impl Security {
    /// The settings of `container` running as `uid` (see the module doc),
    /// with the seccomp program from PID 1's process-wide cache.
    pub fn for_container(container: &Container, uid: u32) -> Result<Security, Error> {
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        Security::for_container_with(container, uid, &mut cache)
    }

    /// [`Security::for_container`] with a cache of the caller's.
    pub fn for_container_with(
        container: &Container,
        uid: u32,
        cache: &mut seccomp::Cache,
    ) -> Result<Security, Error> {
        let privileged = container.privileged;
        let plan = caps::plan(&container.cap_add, &container.cap_drop, privileged, uid);
        let profile = match &container.security_opt.seccomp {
            _ if privileged => None,
            Seccomp::Unconfined => None,
            Seccomp::Default => Some(seccomp::Profile::default_profile()),
            Seccomp::Profile(path) => {
                Some(seccomp::Profile::from_file(path).map_err(Error::Seccomp)?)
            }
        };
        let seccomp = profile
            .map(|p| cache.get(&p, &plan))
            .transpose()
            .map_err(Error::Seccomp)?;
        Ok(Security {
            caps: plan,
            no_new_privs: container
                .security_opt
                .no_new_privileges
                .unwrap_or(berth_config::defaults::no_new_privileges(privileged)),
            seccomp,
        })
    }

    /// Applies these settings to the calling process and switches it to
    /// `ids`, in the order of the module doc. Call it in the child, as root
    /// with PID 1's capabilities, as the last thing before exec. It makes
    /// system calls only and allocates nothing, so it may run between fork
    /// and exec.
    pub fn apply_before_exec(&self, ids: &Ids) -> Result<(), ApplyError> {
        caps::drop_bounding(&self.caps)?;
        if !self.no_new_privs
            && let Some(program) = &self.seccomp
        {
            seccomp::apply(program).map_err(ApplyError::Seccomp)?;
        }
        caps::set_ids(ids, &self.caps)?;
        if self.no_new_privs {
            set_no_new_privs().map_err(ApplyError::NoNewPrivs)?;
            if let Some(program) = &self.seccomp {
                seccomp::apply(program).map_err(ApplyError::Seccomp)?;
            }
        }
        Ok(())
    }
}

/// Sets the calling thread's no_new_privs bit.
pub fn set_no_new_privs() -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
    if rc == -1 { Err(Errno::last()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(extra: &str) -> Container {
        let src = format!("version = 1\n[containers.t]\nimage = \"busybox:latest\"\n{extra}\n");
        match berth_config::parse(&src, "test.toml") {
            Ok(m) => match m.containers.get("t") {
                Some(c) => c.clone(),
                None => panic!("no container"),
            },
            Err(d) => panic!("{d:?}"),
        }
    }

    fn security(extra: &str, uid: u32, cache: &mut seccomp::Cache) -> Security {
        match Security::for_container_with(&container(extra), uid, cache) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn decisions_per_container() {
        let mut cache = seccomp::Cache::default();
        let default = security("", 0, &mut cache);
        assert!(default.no_new_privs);
        assert!(default.seccomp.is_some());
        assert!(default.caps.effective.contains(0));

        let user = security("user = \"1000\"", 1000, &mut cache);
        assert!(user.caps.effective.is_empty());
        // Same bounding set: the same program, compiled once.
        assert!(matches!(
            (&default.seccomp, &user.seccomp),
            (Some(a), Some(b)) if Arc::ptr_eq(a, b)
        ));
        assert_eq!(cache.len(), 1);

        let unconfined = security("security_opt = [\"seccomp=unconfined\"]", 0, &mut cache);
        assert!(unconfined.no_new_privs);
        assert!(unconfined.seccomp.is_none());

        // privileged: no filter even with a profile, no no_new_privs…
        let privileged = security("privileged = true", 0, &mut cache);
        assert!(!privileged.no_new_privs);
        assert!(privileged.seccomp.is_none());
        let with_profile = security(
            "privileged = true\nsecurity_opt = [\"seccomp=/nonexistent.json\"]",
            0,
            &mut cache,
        );
        assert!(with_profile.seccomp.is_none());
        // …unless asked for.
        let nnp = security(
            "privileged = true\nsecurity_opt = [\"no-new-privileges\"]",
            0,
            &mut cache,
        );
        assert!(nnp.no_new_privs);

        let missing = Security::for_container_with(
            &container("security_opt = [\"seccomp=/nonexistent/profile.json\"]"),
            0,
            &mut cache,
        );
        match missing {
            Err(e) => assert!(
                e.to_string()
                    .starts_with("cannot read seccomp profile /nonexistent/profile.json"),
                "{e}"
            ),
            Ok(s) => panic!("{s:?}"),
        }
    }

    #[test]
    fn apply_errors_travel_as_data() {
        let errors = [
            ApplyError::Caps(caps::Error::DropBounding {
                cap: 21,
                errno: Errno(libc::EPERM),
            }),
            ApplyError::Caps(caps::Error::SetUid {
                uid: 1000,
                errno: Errno(libc::EAGAIN),
            }),
            ApplyError::NoNewPrivs(Errno(libc::EINVAL)),
            ApplyError::Seccomp(Errno(libc::EACCES)),
        ];
        for e in errors {
            let json = serde_json::to_string(&e).unwrap_or_default();
            let back: Result<ApplyError, _> = serde_json::from_str(&json);
            assert_eq!(back.ok(), Some(e), "{json}");
        }
        let e = errors[0];
        assert_eq!(e.step(), "drop bounding capabilities");
        assert_eq!(e.errno(), libc::EPERM);
        assert_eq!(
            e.to_string(),
            "cannot drop capability 21 from the bounding set: EPERM: Operation not permitted"
        );
        assert_eq!(errors[1].step(), "setresuid");
        assert_eq!(
            errors[3].to_string(),
            "cannot load the seccomp filter: EACCES: Permission denied"
        );
        assert_eq!(
            std::io::Error::from(errors[2]).raw_os_error(),
            Some(libc::EINVAL)
        );
    }
}

//! Capabilities: which ones a container gets ([`plan`]), and the calls that
//! give them to the child ([`drop_bounding`], [`set_keepcaps`], [`set`],
//! [`set_ids`]).
//!
//! The plan follows Docker (moby's `caps.TweakCapabilities` and its spec
//! options, after CVE-2022-24769):
//! - the default set is Docker's 14 capabilities ([`DEFAULT`]);
//! - `cap_add`/`cap_drop` tweak it in moby's order: `ALL` in `cap_add` means
//!   every capability minus the ones named in `cap_drop`; else `ALL` in
//!   `cap_drop` means exactly the ones in `cap_add`; else the default set
//!   minus `cap_drop`, plus `cap_add` (so a capability both added and dropped
//!   is kept, as in Docker);
//! - `privileged` means every capability the running kernel knows;
//! - the inheritable set is always empty (the CVE fix: with inheritable
//!   capabilities, a non-root process could regain them by exec'ing a file
//!   with inheritable file capabilities);
//! - uid 0 gets the set as bounding, permitted and effective; any other uid
//!   gets it as bounding only, with empty permitted, effective and ambient
//!   sets, so a non-root process holds no capability unless it execs a file
//!   with file capabilities (as `docker run --user` does);
//! - capabilities the running kernel does not know are left out of every
//!   set (the kernel would refuse them).
//!
//! The calls make raw system calls only, allocate nothing, and so may run in
//! a child between fork and exec.

use std::fmt;

use berth_config::{CapSpec, Capability};
use serde::{Deserialize, Serialize};

use super::Errno;
use crate::runtime::user::Ids;

/// The highest capability number berth knows (CAP_CHECKPOINT_RESTORE).
pub const LAST_KNOWN: u8 = 40;

/// Docker's default capabilities, by number.
pub const DEFAULT: CapSet = CapSet::from_numbers(&[
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    13, // NET_RAW
    18, // SYS_CHROOT
    27, // MKNOD
    29, // AUDIT_WRITE
    31, // SETFCAP
]);

/// A set of capabilities, as the kernel's 64-bit mask (bit n is capability n).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CapSet(pub u64);

impl CapSet {
    /// No capability.
    pub const EMPTY: CapSet = CapSet(0);

    /// The set of these capability numbers (each below 64).
    pub const fn from_numbers(numbers: &[u8]) -> CapSet {
        let mut bits = 0u64;
        let mut i = 0;
        while i < numbers.len() {
            bits |= 1 << numbers[i];
            i += 1;
        }
        CapSet(bits)
    }

    /// Every capability from 0 to `last`.
    pub const fn up_to(last: u8) -> CapSet {
        if last >= 63 {
            CapSet(u64::MAX)
        } else {
            CapSet((1u64 << (last + 1)) - 1)
        }
    }

    /// Whether it holds capability `n`.
    pub const fn contains(self, n: u8) -> bool {
        n < 64 && self.0 & (1 << n) != 0
    }

    /// Whether it holds `cap`.
    pub fn has(self, cap: Capability) -> bool {
        self.contains(cap.number())
    }

    /// It with `cap` added.
    pub fn with(self, cap: Capability) -> CapSet {
        CapSet(self.0 | (1 << cap.number()))
    }

    /// It without `cap`.
    pub fn without(self, cap: Capability) -> CapSet {
        CapSet(self.0 & !(1 << cap.number()))
    }

    /// The capabilities in both.
    pub const fn intersect(self, other: CapSet) -> CapSet {
        CapSet(self.0 & other.0)
    }

    /// Whether it is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Its capability numbers, ascending.
    pub fn numbers(self) -> impl Iterator<Item = u8> {
        (0..64u8).filter(move |n| self.contains(*n))
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The names when berth knows them, as /proc's hex otherwise.
        let names: Vec<String> = self
            .numbers()
            .map(|n| {
                Capability::all()
                    .find(|c| c.number() == n)
                    .map_or_else(|| format!("cap_{n}"), |c| c.name())
            })
            .collect();
        write!(f, "{:#018x} {names:?}", self.0)
    }
}

/// The five capability sets a container's process starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CapPlan {
    /// The bounding set: what the process and its children can ever have.
    pub bounding: CapSet,
    /// The permitted set.
    pub permitted: CapSet,
    /// The effective set.
    pub effective: CapSet,
    /// The inheritable set (always empty in berth's plans).
    pub inheritable: CapSet,
    /// The ambient set (always empty in berth's plans).
    pub ambient: CapSet,
}

impl CapPlan {
    /// Every set the same: `set` (the ambient set empty).
    fn root(set: CapSet) -> CapPlan {
        CapPlan {
            bounding: set,
            permitted: set,
            effective: set,
            inheritable: CapSet::EMPTY,
            ambient: CapSet::EMPTY,
        }
    }
}

/// The highest capability the running kernel knows, from
/// /proc/sys/kernel/cap_last_cap ([`LAST_KNOWN`] when it cannot be read).
pub fn kernel_last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok())
        .filter(|n| *n < 64)
        .unwrap_or(LAST_KNOWN)
}

/// The capabilities the calling process can still pass on: those of its
/// bounding set, up to `last_cap` (PR_CAPBSET_READ for each).
pub fn own_bounding(last_cap: u8) -> CapSet {
    (0..=last_cap.min(63)).fold(CapSet::EMPTY, |set, cap| {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
        if rc == 1 {
            CapSet(set.0 | 1 << cap)
        } else {
            set
        }
    })
}

/// The capability plan of a container (see the module doc), for the running
/// kernel and what PID 1 itself holds.
pub fn plan(cap_add: &[CapSpec], cap_drop: &[CapSpec], privileged: bool, uid: u32) -> CapPlan {
    let last = kernel_last_cap();
    plan_for_kernel(cap_add, cap_drop, privileged, uid, last, own_bounding(last))
}

/// [`plan`] for a kernel whose highest capability is `last_cap`, from a
/// process whose bounding set is `own`. "Every capability" (`privileged`,
/// `cap_add = ["ALL"]`) means those of the kernel that `own` holds, as a
/// nested or restricted berth cannot give more than it has; a capability
/// named alone stays in the plan even when `own` lacks it, so that the
/// container fails to start (capset: EPERM) rather than run without it.
pub fn plan_for_kernel(
    cap_add: &[CapSpec],
    cap_drop: &[CapSpec],
    privileged: bool,
    uid: u32,
    last_cap: u8,
    own: CapSet,
) -> CapPlan {
    let kernel = CapSet::up_to(last_cap);
    let all = kernel.intersect(own);
    let add_all = cap_add.contains(&CapSpec::All);
    let drop_all = cap_drop.contains(&CapSpec::All);
    let ones = |specs: &[CapSpec]| {
        specs.iter().fold(CapSet::EMPTY, |s, c| match c {
            CapSpec::One(c) => s.with(*c),
            CapSpec::All => s,
        })
    };
    let set = if privileged {
        all
    } else if add_all {
        CapSet(all.0 & !ones(cap_drop).0)
    } else if drop_all {
        ones(cap_add)
    } else {
        CapSet((DEFAULT.0 & !ones(cap_drop).0) | ones(cap_add).0)
    }
    .intersect(kernel);

    let mut plan = CapPlan::root(set);
    if uid != 0 {
        plan.permitted = CapSet::EMPTY;
        plan.effective = CapSet::EMPTY;
    }
    plan
}

/// A failed capability or identity call, with the errno.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, displaydoc::Display,
)]
pub enum Error {
    /// cannot drop capability {cap} from the bounding set: {errno}
    DropBounding {
        /// The capability's number.
        cap: u8,
        /// The error.
        errno: Errno,
    },
    /// cannot set PR_SET_KEEPCAPS: {errno}
    KeepCaps {
        /// The error.
        errno: Errno,
    },
    /// cannot set the supplementary groups: {errno}
    SetGroups {
        /// The error.
        errno: Errno,
    },
    /// cannot set gid {gid}: {errno}
    SetGid {
        /// The gid.
        gid: u32,
        /// The error.
        errno: Errno,
    },
    /// cannot set uid {uid}: {errno}
    SetUid {
        /// The uid.
        uid: u32,
        /// The error.
        errno: Errno,
    },
    /// cannot set the permitted, effective and inheritable capabilities: {errno}
    Capset {
        /// The error.
        errno: Errno,
    },
    /// cannot set the ambient capabilities (capability {cap}): {errno}
    Ambient {
        /// The capability's number; 255 while clearing the set.
        cap: u8,
        /// The error.
        errno: Errno,
    },
}

impl Error {
    /// The step that failed, in words.
    pub fn step(&self) -> &'static str {
        match self {
            Error::DropBounding { .. } => "drop bounding capabilities",
            Error::KeepCaps { .. } => "keep capabilities",
            Error::SetGroups { .. } => "setgroups",
            Error::SetGid { .. } => "setresgid",
            Error::SetUid { .. } => "setresuid",
            Error::Capset { .. } => "capset",
            Error::Ambient { .. } => "ambient capabilities",
        }
    }

    /// The errno of the failed call.
    pub fn errno(&self) -> i32 {
        match *self {
            Error::DropBounding { errno, .. }
            | Error::KeepCaps { errno }
            | Error::SetGroups { errno }
            | Error::SetGid { errno, .. }
            | Error::SetUid { errno, .. }
            | Error::Capset { errno }
            | Error::Ambient { errno, .. } => errno.0,
        }
    }
}

/// The result of a raw call: `Err(errno)` when it returned -1.
fn check(rc: libc::c_long) -> Result<(), Errno> {
    if rc == -1 { Err(Errno::last()) } else { Ok(()) }
}

fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only; the options used here
    // (CAPBSET_READ/DROP, KEEPCAPS, CAP_AMBIENT, NO_NEW_PRIVS) read no memory.
    let rc = unsafe { libc::prctl(option, arg2, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) };
    check(rc.into())
}

fn prctl3(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: as in `prctl`: integer arguments only.
    let rc = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0) };
    check(rc.into())
}

/// Removes from the calling thread's bounding set every capability that
/// is not in `plan.bounding`, up to the kernel's last one (past it,
/// PR_CAPBSET_DROP fails with EINVAL, which ends the loop: no file is read).
/// Needs CAP_SETPCAP, so it runs while the process is still root with all
/// its capabilities.
pub fn drop_bounding(plan: &CapPlan) -> Result<(), Error> {
    for cap in 0..64u8 {
        if plan.bounding.contains(cap) {
            continue;
        }
        match prctl(libc::PR_CAPBSET_DROP, cap.into()) {
            Ok(()) => {}
            Err(Errno(libc::EINVAL)) if cap > 0 => break,
            Err(errno) => return Err(Error::DropBounding { cap, errno }),
        }
    }
    Ok(())
}

/// Sets or clears PR_SET_KEEPCAPS: when set, a change from uid 0 to another
/// uid keeps the permitted set (the effective set is still cleared), so the
/// capabilities of the plan can be set after it.
pub fn set_keepcaps(on: bool) -> Result<(), Error> {
    prctl(libc::PR_SET_KEEPCAPS, on.into()).map_err(|errno| Error::KeepCaps { errno })
}

/// capset(2)'s header and data, version 3 (two 32-bit words per set).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets the permitted, effective and inheritable sets of the calling thread
/// with capset(2), then makes the ambient set exactly `plan.ambient` (clear,
/// then raise each). Runs after the uid change.
pub fn set(plan: &CapPlan) -> Result<(), Error> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |set: CapSet, i: u32| (set.0 >> (32 * i)) as u32;
    let data = [0, 1].map(|i| CapData {
        effective: word(plan.effective, i),
        permitted: word(plan.permitted, i),
        inheritable: word(plan.inheritable, i),
    });
    // SAFETY: the header and the two data structs are the layout capset(2)
    // takes for version 3, and live across the call; the kernel only reads
    // them (and may write the header's version, which is ours to write).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            std::ptr::from_mut(&mut header),
            data.as_ptr(),
        )
    };
    check(rc).map_err(|errno| Error::Capset { errno })?;

    let ambient = |op: libc::c_int, cap: u8| {
        prctl3(libc::PR_CAP_AMBIENT, op as libc::c_ulong, cap.into())
            .map_err(|errno| Error::Ambient { cap, errno })
    };
    // CLEAR_ALL takes no capability; 255 marks it in the error.
    prctl3(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    )
    .map_err(|errno| Error::Ambient { cap: 255, errno })?;
    for cap in plan.ambient.numbers() {
        ambient(libc::PR_CAP_AMBIENT_RAISE, cap)?;
    }
    Ok(())
}

/// Switches the calling process to `ids` and then gives it the capabilities
/// of `plan`. The bounding set must already be dropped ([`drop_bounding`]).
/// In order:
/// 1. PR_SET_KEEPCAPS on, so the uid change keeps the permitted set;
/// 2. setgroups(2) with the supplementary groups (needs CAP_SETGID, so
///    before the uid change);
/// 3. setresgid(2) to the gid (also needs CAP_SETGID);
/// 4. setresuid(2) to the uid: from here on a non-root process has an empty
///    effective set;
/// 5. PR_SET_KEEPCAPS off again (exec would clear it anyway);
/// 6. capset(2) to the plan's permitted, effective and inheritable sets:
///    lowering needs no capability, and the permitted set kept in 1 allows
///    raising the effective set to it;
/// 7. the ambient set cleared, then raised to the plan's.
pub fn set_ids(ids: &Ids, plan: &CapPlan) -> Result<(), Error> {
    set_keepcaps(true)?;
    // Raw system calls, not glibc's wrappers: those broadcast the change to
    // every thread glibc believes the process has (its "setxid" signal),
    // and a child made by a raw clone inherits the parent's list of
    // threads. Credentials are per thread in Linux, and the child has one.
    // SAFETY: the pointer and length describe `ids.additional_gids`, a live
    // slice of u32 (gid_t) that the kernel only reads.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_setgroups,
            ids.additional_gids.len(),
            ids.additional_gids.as_ptr(),
        )
    };
    check(rc).map_err(|errno| Error::SetGroups { errno })?;
    // SAFETY: setresgid takes integers only.
    let rc = unsafe { libc::syscall(libc::SYS_setresgid, ids.gid, ids.gid, ids.gid) };
    check(rc).map_err(|errno| Error::SetGid {
        gid: ids.gid,
        errno,
    })?;
    // SAFETY: setresuid takes integers only.
    let rc = unsafe { libc::syscall(libc::SYS_setresuid, ids.uid, ids.uid, ids.uid) };
    check(rc).map_err(|errno| Error::SetUid {
        uid: ids.uid,
        errno,
    })?;
    set_keepcaps(false)?;
    set(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(n: u8) -> CapSpec {
        match Capability::all().find(|c| c.number() == n) {
            Some(c) => CapSpec::One(c),
            None => panic!("no capability {n}"),
        }
    }
    fn set(numbers: &[u8]) -> CapSet {
        CapSet::from_numbers(numbers)
    }
    const CHOWN: u8 = 0;
    const NET_ADMIN: u8 = 12;
    const SYS_ADMIN: u8 = 21;
    const CHECKPOINT_RESTORE: u8 = 40;

    #[test]
    fn default_set_is_dockers() {
        let names: Vec<String> = DEFAULT
            .numbers()
            .filter_map(|n| Capability::all().find(|c| c.number() == n))
            .map(|c| c.name())
            .collect();
        let mut want = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE",
        ];
        want.sort();
        let mut names = names;
        names.sort();
        assert_eq!(names, want);
    }

    /// (what, cap_add, cap_drop, privileged, uid, last_cap, bounding,
    /// effective and permitted).
    type Case = (
        &'static str,
        Vec<CapSpec>,
        Vec<CapSpec>,
        bool,
        u32,
        u8,
        CapSet,
        CapSet,
    );

    #[test]
    fn plans() {
        let all = CapSet::up_to(40);
        let default_minus_chown = CapSet(DEFAULT.0 & !(1 << CHOWN));
        let cases: Vec<Case> = vec![
            ("default", vec![], vec![], false, 0, 40, DEFAULT, DEFAULT),
            (
                "cap_add",
                vec![one(NET_ADMIN)],
                vec![],
                false,
                0,
                40,
                CapSet(DEFAULT.0 | 1 << NET_ADMIN),
                CapSet(DEFAULT.0 | 1 << NET_ADMIN),
            ),
            (
                "cap_drop",
                vec![],
                vec![one(CHOWN)],
                false,
                0,
                40,
                default_minus_chown,
                default_minus_chown,
            ),
            (
                "added and dropped: kept, as in Docker",
                vec![one(CHOWN)],
                vec![one(CHOWN)],
                false,
                0,
                40,
                DEFAULT,
                DEFAULT,
            ),
            (
                "cap_add ALL minus a drop",
                vec![CapSpec::All],
                vec![one(SYS_ADMIN)],
                false,
                0,
                40,
                CapSet(all.0 & !(1 << SYS_ADMIN)),
                CapSet(all.0 & !(1 << SYS_ADMIN)),
            ),
            (
                "cap_drop ALL keeps only cap_add",
                vec![one(NET_ADMIN), one(CHOWN)],
                vec![CapSpec::All],
                false,
                0,
                40,
                set(&[CHOWN, NET_ADMIN]),
                set(&[CHOWN, NET_ADMIN]),
            ),
            (
                "cap_add ALL wins over cap_drop ALL",
                vec![CapSpec::All],
                vec![CapSpec::All],
                false,
                0,
                40,
                all,
                all,
            ),
            (
                "cap_drop ALL alone",
                vec![],
                vec![CapSpec::All],
                false,
                0,
                40,
                CapSet::EMPTY,
                CapSet::EMPTY,
            ),
            ("privileged", vec![], vec![], true, 0, 40, all, all),
            (
                "privileged on an older kernel: only what it knows",
                vec![],
                vec![],
                true,
                0,
                37,
                CapSet::up_to(37),
                CapSet::up_to(37),
            ),
            (
                "a capability the kernel lacks is left out",
                vec![one(CHECKPOINT_RESTORE)],
                vec![],
                false,
                0,
                39,
                DEFAULT,
                DEFAULT,
            ),
            (
                "privileged on a newer kernel: its extra capabilities too",
                vec![],
                vec![],
                true,
                0,
                41,
                CapSet::up_to(41),
                CapSet::up_to(41),
            ),
            (
                "non-root: bounding only",
                vec![],
                vec![],
                false,
                1000,
                40,
                DEFAULT,
                CapSet::EMPTY,
            ),
            (
                "non-root with cap_add: still bounding only",
                vec![one(NET_ADMIN)],
                vec![],
                false,
                65534,
                40,
                CapSet(DEFAULT.0 | 1 << NET_ADMIN),
                CapSet::EMPTY,
            ),
            (
                "privileged non-root",
                vec![],
                vec![],
                true,
                1,
                40,
                all,
                CapSet::EMPTY,
            ),
        ];
        for (what, add, drop, privileged, uid, last, bounding, effective) in cases {
            let p = plan_for_kernel(&add, &drop, privileged, uid, last, CapSet(u64::MAX));
            assert_eq!(
                p,
                CapPlan {
                    bounding,
                    permitted: effective,
                    effective,
                    inheritable: CapSet::EMPTY,
                    ambient: CapSet::EMPTY,
                },
                "{what}"
            );
        }
    }

    #[test]
    fn every_capability_means_every_one_pid1_holds() {
        const SYS_RESOURCE: u8 = 24;
        let own = CapSet(CapSet::up_to(40).0 & !(1 << SYS_RESOURCE));
        // privileged and cap_add ALL: what PID 1 can give.
        let p = plan_for_kernel(&[], &[], true, 0, 40, own);
        assert_eq!(p.bounding, own);
        assert_eq!(p.effective, own);
        let p = plan_for_kernel(&[CapSpec::All], &[], false, 0, 40, own);
        assert_eq!(p.permitted, own);
        // Named alone, it stays, so the start fails loudly.
        let p = plan_for_kernel(&[one(SYS_RESOURCE)], &[], false, 0, 40, own);
        assert!(p.effective.contains(SYS_RESOURCE));
    }

    #[test]
    fn own_bounding_set_is_read() {
        // Whatever this process holds, it is within the kernel's set, and
        // matches /proc.
        let last = kernel_last_cap();
        let own = own_bounding(last);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let bnd = status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
        assert_eq!(Some(own.0), bnd);
    }

    #[test]
    fn capset_helpers() {
        assert_eq!(CapSet::up_to(0), CapSet(1));
        assert_eq!(CapSet::up_to(40), CapSet((1 << 41) - 1));
        assert_eq!(CapSet::up_to(63), CapSet(u64::MAX));
        assert_eq!(set(&[0, 2, 40]).numbers().collect::<Vec<_>>(), [0, 2, 40]);
        assert!(!CapSet::EMPTY.contains(70));
        assert_eq!(
            format!("{:?}", set(&[0, 12])),
            "0x0000000000001001 [\"CAP_CHOWN\", \"CAP_NET_ADMIN\"]"
        );
    }
}

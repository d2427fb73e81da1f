//! The host side of a container in a user namespace (`uid_map`/`gid_map`).
//!
//! The container's namespaces are all created by clone3 together with its
//! user namespace, so that they belong to it: its root can mount inside,
//! bind low ports and set its hostname, and nothing outside. Three things
//! must then happen from outside, in the host's namespace:
//! - the overlay root is mounted by berth
//!   ([`super::spec::Spec::mount_overlay`]), before clone3, over the layers'
//!   shifted copies ([`crate::images::shift`]): overlayfs reads its
//!   whiteout and opaque markers from `trusted.*` attributes, which only
//!   the host's root may read, so a mount made inside would lose them. The
//!   child inherits the mount in its copy of berth's mount namespace and
//!   binds it onto itself before pivot_root;
//! - the maps are written to `/proc/PID/uid_map` and `gid_map`, and only
//!   then may the child go on ([`super::message::READY`]);
//! - a hard rlimit above berth's own and a negative `oom_score_adj` need
//!   privileges in the host's namespace: berth raises such hard limits
//!   for the child, and writes every container's `oom_score_adj` itself,
//!   before the same word.

use std::path::Path;

use berth_config::IdMaps;
use nix::mount::MntFlags;

use super::message::Failure;
use super::user::Ids;
use super::{Error, prepare_err};

/// Refuses a user, group or supplementary group the maps leave out: the
/// container could never become it.
pub fn check_ids(maps: &IdMaps, ids: &Ids) -> Result<(), Error> {
    let unmapped = |kind: &'static str, id: u32| Error::Unmapped { kind, id };
    if maps.host_uid(ids.uid).is_none() {
        return Err(unmapped("uid", ids.uid));
    }
    for &g in std::iter::once(&ids.gid).chain(&ids.additional_gids) {
        if maps.host_gid(g).is_none() {
            return Err(unmapped("gid", g));
        }
    }
    Ok(())
}

/// Gives `path` to the container's root (its mapped uid and gid 0), not
/// following a symlink.
pub fn own(path: &Path, maps: &IdMaps) -> Result<(), Error> {
    std::os::unix::fs::lchown(path, maps.host_uid(0), maps.host_gid(0)).map_err(prepare_err(path))
}

/// Detaches the root berth mounted for the container
/// ([`super::spec::Spec::mount_overlay`]). Returns whether nothing is
/// mounted at `rootfs` any more (it was detached, or was never a mount
/// point: EINVAL), so that the directory may be removed.
pub fn unmount_root(rootfs: &Path) -> bool {
    matches!(
        nix::mount::umount2(rootfs, MntFlags::MNT_DETACH),
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT)
    )
}

/// Writes the child's uid and gid maps. The writer (berth) holds
/// CAP_SETUID and CAP_SETGID in the parent namespace, so `setgroups`
/// stays allowed and `group_add` works inside.
pub fn write_maps(pid: i32, maps: &IdMaps) -> Result<(), Failure> {
    for (file, ranges) in [("uid_map", &maps.uid), ("gid_map", &maps.gid)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, IdMaps::proc_text(ranges)).map_err(|e| Failure {
            step: "write the user namespace's map".into(),
            path: Some(path),
            errno: e.raw_os_error().unwrap_or(0),
            detail: String::new(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_config::IdRange;

    #[test]
    fn ids_outside_the_maps_are_refused_by_name() {
        let maps = IdMaps {
            uid: vec![IdRange {
                container: 0,
                host: 100000,
                size: 1000,
            }],
            gid: vec![IdRange {
                container: 0,
                host: 100000,
                size: 10,
            }],
        };
        let ids = |uid, gid, extra: Vec<u32>| Ids {
            uid,
            gid,
            additional_gids: extra,
            home: None,
        };
        assert!(check_ids(&maps, &ids(999, 9, vec![1, 2])).is_ok());
        let e = check_ids(&maps, &ids(1000, 0, vec![])).unwrap_err();
        assert_eq!(e.to_string(), "uid 1000 is not in the container's uid_map");
        let e = check_ids(&maps, &ids(0, 0, vec![10])).unwrap_err();
        assert_eq!(e.to_string(), "gid 10 is not in the container's gid_map");
    }
}

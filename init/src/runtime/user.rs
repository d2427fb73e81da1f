//! Users and groups, from the container's own /etc/passwd and /etc/group.
//!
//! berth is a static binary and must never go through NSS (`getpwnam` and
//! friends would look at the *host's* files, through a libc that cannot load
//! NSS modules anyway), so it parses both files itself. [`resolve`] follows
//! Docker's rules (runc's `user.GetExecUser` plus moby's `group_add`):
//!
//! - no `user`: root, uid 0; its gid and home come from the passwd entry of
//!   uid 0 when there is one (gid 0 otherwise), and its supplementary groups
//!   from the groups that list that entry's name;
//! - a numeric uid is looked up in passwd, and allowed when absent (then the
//!   gid is 0 unless given);
//! - a user name must be in passwd;
//! - `user:group`: the group by name (must be in /etc/group) or by number
//!   (allowed when absent). With an explicit group, the user's memberships in
//!   /etc/group are *not* added (as in Docker: supplementary groups come from
//!   /etc/group only in the implicit form);
//! - `group_add`: names resolved in /etc/group (an error when absent),
//!   numbers taken as they are;
//! - supplementary groups are deduplicated, keep their order of appearance,
//!   and never repeat the primary gid (it is in effect already).
//!
//! Malformed lines (too few fields, a non-numeric id) are skipped: an image's
//! broken line must not keep the container from starting, as long as the
//! entry it needs is fine.

use std::path::PathBuf;

use berth_config::{IdOrName, User};

/// The largest uid or gid Docker accepts (runc's `maxID`).
pub const MAX_ID: u32 = i32::MAX as u32;

/// The identity a container's process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// The user id (real, effective and saved).
    pub uid: u32,
    /// The primary group id (real, effective and saved).
    pub gid: u32,
    /// Supplementary groups, without `gid`, deduplicated.
    pub additional_gids: Vec<u32>,
    /// The user's home directory from passwd; `None` when the user has no
    /// passwd entry. Docker sets `HOME` from it when the environment has
    /// none, and runc falls back to "/" when there is no entry.
    pub home: Option<PathBuf>,
}

/// Why a user or group could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// unable to find user {0:?}: no matching entry in the container's /etc/passwd
    UnknownUser(String),
    /// unable to find group {0:?}: no matching entry in the container's /etc/group
    UnknownGroup(String),
    /// unable to find group {0:?} of group_add: no matching entry in the container's /etc/group
    UnknownAdditionalGroup(String),
    /// {what} {id} is out of range: ids go up to 2147483647
    OutOfRange {
        /// "uid" or "gid".
        what: &'static str,
        /// The id written.
        id: u32,
    },
}

/// One line of /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry<'a> {
    /// The login name.
    pub name: &'a str,
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// The home directory ("" when the line has no such field).
    pub home: &'a str,
}

/// One line of /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry<'a> {
    /// The group name.
    pub name: &'a str,
    /// The gid.
    pub gid: u32,
    /// The members, by login name.
    pub members: Vec<&'a str>,
}

/// The entries of an /etc/passwd text; comments, blank and malformed lines
/// are skipped.
pub fn parse_passwd(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    records(text).filter_map(|fields| {
        // name:password:uid:gid:gecos:home:shell
        let name = *fields.first()?;
        let uid = parse_id(fields.get(2)?)?;
        let gid = parse_id(fields.get(3)?)?;
        let home = fields.get(5).copied().unwrap_or("");
        (!name.is_empty()).then_some(PasswdEntry {
            name,
            uid,
            gid,
            home,
        })
    })
}

/// The entries of an /etc/group text; comments, blank and malformed lines
/// are skipped.
pub fn parse_group(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    records(text).filter_map(|fields| {
        // name:password:gid:member,member
        let name = *fields.first()?;
        let gid = parse_id(fields.get(2)?)?;
        let members = fields
            .get(3)
            .map(|m| {
                m.split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        (!name.is_empty()).then_some(GroupEntry { name, gid, members })
    })
}

fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

fn parse_id(field: &str) -> Option<u32> {
    let field = field.trim();
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

fn check_range(what: &'static str, id: u32) -> Result<u32, Error> {
    if id > MAX_ID {
        return Err(Error::OutOfRange { what, id });
    }
    Ok(id)
}

/// Resolves a container's `user` and `group_add` against the texts of its
/// /etc/passwd and /etc/group (pass "" for a file the image lacks), with
/// Docker's rules (see the module doc).
pub fn resolve(
    user: Option<&User>,
    group_add: &[IdOrName],
    passwd: &str,
    group: &str,
) -> Result<Ids, Error> {
    // The passwd entry: by uid when numeric or absent (root), else by name.
    // The first match wins, as in runc.
    let wanted = user.map_or(&IdOrName::Id(0), |u| &u.user);
    let entry = parse_passwd(passwd).find(|e| match wanted {
        IdOrName::Id(uid) => e.uid == *uid,
        IdOrName::Name(name) => e.name == name,
    });

    let (uid, mut gid, home, name) = match (entry, wanted) {
        (Some(e), _) => (e.uid, e.gid, Some(PathBuf::from(e.home)), Some(e.name)),
        (None, IdOrName::Id(uid)) => (check_range("uid", *uid)?, 0, None, None),
        (None, IdOrName::Name(name)) => return Err(Error::UnknownUser(name.clone())),
    };
    let home = home.filter(|h| !h.as_os_str().is_empty());

    let mut additional = Vec::new();
    match user.and_then(|u| u.group.as_ref()) {
        Some(IdOrName::Id(g)) => {
            // A number need not be in /etc/group.
            gid = check_range("gid", *g)?;
        }
        Some(IdOrName::Name(g)) => {
            gid = parse_group(group)
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| Error::UnknownGroup(g.clone()))?;
        }
        None => {
            // The implicit form: every group that lists the user by name.
            if let Some(name) = name {
                additional.extend(
                    parse_group(group)
                        .filter(|e| e.members.contains(&name))
                        .map(|e| e.gid),
                );
            }
        }
    }

    for g in group_add {
        let id = match g {
            IdOrName::Id(id) => check_range("gid", *id)?,
            IdOrName::Name(n) => parse_group(group)
                .find(|e| e.name == n)
                .map(|e| e.gid)
                .ok_or_else(|| Error::UnknownAdditionalGroup(n.clone()))?,
        };
        additional.push(id);
    }

    let mut additional_gids = Vec::with_capacity(additional.len());
    for g in additional {
        if g != gid && !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }

    Ok(Ids {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment

daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken line without colons
bad:x:notanumber:1:bad:/bad:/bin/sh
short:x:7
app:x:1000:1000:App,,,:/home/app:/bin/sh
nohome:x:1001:1001
dup:x:1002:1002::/first:/bin/sh
dup:x:1003:1003::/second:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
";

    const GROUP: &str = "\
root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root, daemon
wheel:x:10:root,app
garbage
bad:x:nan:app
users:x:100:app,nohome
app:x:1000:
nogroup:x:65534:
staff:x:50:app,app
";

    fn u(user: IdOrName, group: Option<IdOrName>) -> User {
        User { user, group }
    }
    fn id(n: u32) -> IdOrName {
        IdOrName::Id(n)
    }
    fn name(s: &str) -> IdOrName {
        IdOrName::Name(s.into())
    }
    fn ids(uid: u32, gid: u32, additional: &[u32], home: Option<&str>) -> Ids {
        Ids {
            uid,
            gid,
            additional_gids: additional.to_vec(),
            home: home.map(PathBuf::from),
        }
    }

    /// (what, user, group_add, the result).
    type Case = (
        &'static str,
        Option<User>,
        Vec<IdOrName>,
        Result<Ids, Error>,
    );

    #[test]
    fn resolves_like_docker() {
        let cases: Vec<Case> = vec![
            (
                "no user: root, with root's groups (gid 0 itself excluded)",
                None,
                vec![],
                Ok(ids(0, 0, &[1, 2, 10], Some("/root"))),
            ),
            (
                "a name: its uid, gid, home, and memberships",
                Some(u(name("app"), None)),
                vec![],
                Ok(ids(1000, 1000, &[10, 100, 50], Some("/home/app"))),
            ),
            (
                "a number found in passwd behaves like the name",
                Some(u(id(1000), None)),
                vec![],
                Ok(ids(1000, 1000, &[10, 100, 50], Some("/home/app"))),
            ),
            (
                "a number not in passwd: gid 0, no home, no groups",
                Some(u(id(4242), None)),
                vec![],
                Ok(ids(4242, 0, &[], None)),
            ),
            (
                "a number not in passwd with a numeric group",
                Some(u(id(4242), Some(id(4343)))),
                vec![],
                Ok(ids(4242, 4343, &[], None)),
            ),
            (
                "an explicit group by name replaces the gid and drops memberships",
                Some(u(name("app"), Some(name("users")))),
                vec![],
                Ok(ids(1000, 100, &[], Some("/home/app"))),
            ),
            (
                "an explicit numeric group need not exist",
                Some(u(name("app"), Some(id(777)))),
                vec![],
                Ok(ids(1000, 777, &[], Some("/home/app"))),
            ),
            (
                "group_add: names resolved, numbers as-is, deduplicated, primary excluded",
                Some(u(name("app"), None)),
                vec![name("wheel"), id(5000), name("nogroup"), id(5000), id(1000)],
                Ok(ids(
                    1000,
                    1000,
                    &[10, 100, 50, 5000, 65534],
                    Some("/home/app"),
                )),
            ),
            (
                "a passwd line without home field",
                Some(u(name("nohome"), None)),
                vec![],
                Ok(ids(1001, 1001, &[100], None)),
            ),
            (
                "the first of duplicate entries wins",
                Some(u(name("dup"), None)),
                vec![],
                Ok(ids(1002, 1002, &[], Some("/first"))),
            ),
            (
                "nobody",
                Some(u(name("nobody"), None)),
                vec![],
                Ok(ids(65534, 65534, &[], Some("/nonexistent"))),
            ),
            (
                "an unknown name is an error",
                Some(u(name("ghost"), None)),
                vec![],
                Err(Error::UnknownUser("ghost".into())),
            ),
            (
                "a malformed line is never matched",
                Some(u(name("bad"), None)),
                vec![],
                Err(Error::UnknownUser("bad".into())),
            ),
            (
                "an unknown group name is an error",
                Some(u(name("app"), Some(name("ghosts")))),
                vec![],
                Err(Error::UnknownGroup("ghosts".into())),
            ),
            (
                "an unknown group_add name is an error",
                None,
                vec![name("ghosts")],
                Err(Error::UnknownAdditionalGroup("ghosts".into())),
            ),
            (
                "a uid past 2^31-1 is refused",
                Some(u(id(u32::MAX), None)),
                vec![],
                Err(Error::OutOfRange {
                    what: "uid",
                    id: u32::MAX,
                }),
            ),
            (
                "a gid past 2^31-1 is refused",
                Some(u(id(5), Some(id(1 << 31)))),
                vec![],
                Err(Error::OutOfRange {
                    what: "gid",
                    id: 1 << 31,
                }),
            ),
        ];
        for (what, user, group_add, want) in cases {
            assert_eq!(
                resolve(user.as_ref(), &group_add, PASSWD, GROUP),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn missing_files() {
        // An image without /etc/passwd: root and numbers still work.
        assert_eq!(resolve(None, &[], "", ""), Ok(ids(0, 0, &[], None)));
        assert_eq!(
            resolve(Some(&u(id(1), Some(id(2)))), &[id(3)], "", ""),
            Ok(ids(1, 2, &[3], None))
        );
        assert_eq!(
            resolve(Some(&u(name("app"), None)), &[], "", ""),
            Err(Error::UnknownUser("app".into()))
        );
    }

    #[test]
    fn parses_entries() {
        let names: Vec<_> = parse_passwd(PASSWD).map(|e| e.name).collect();
        assert_eq!(
            names,
            ["root", "daemon", "app", "nohome", "dup", "dup", "nobody"]
        );
        let daemon = parse_group(GROUP).find(|g| g.name == "daemon");
        assert_eq!(
            daemon,
            Some(GroupEntry {
                name: "daemon",
                gid: 2,
                members: vec!["root", "daemon"],
            })
        );
        assert!(parse_group(GROUP).all(|g| g.name != "bad" && g.name != "garbage"));
    }

    #[test]
    fn error_messages_name_the_file() {
        assert_eq!(
            Error::UnknownUser("ghost".into()).to_string(),
            "unable to find user \"ghost\": no matching entry in the container's /etc/passwd"
        );
    }
}

//! User namespaces: `uid_map` and `gid_map`, as ranges written
//! `"CONTAINER:HOST:SIZE"` (podman's `--uidmap` form), checked so that the
//! kernel accepts them and the container cannot reach the host's root.

use std::fmt;

/// The most ranges the kernel takes in one map (since Linux 4.15).
pub const MAX_RANGES: usize = 340;

/// One line of a map: `size` ids from `container` inside are `host` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdRange {
    /// The first id inside the container.
    pub container: u32,
    /// The id it is on the host.
    pub host: u32,
    /// How many ids, at least 1.
    pub size: u32,
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.container, self.host, self.size)
    }
}

/// A container's user namespace: its uid and gid maps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdMaps {
    /// uid ranges, in the order written.
    pub uid: Vec<IdRange>,
    /// gid ranges, in the order written.
    pub gid: Vec<IdRange>,
}

impl IdMaps {
    /// The host uid of container uid `id`, if mapped.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        to_host(&self.uid, id)
    }

    /// The host gid of container gid `id`, if mapped.
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        to_host(&self.gid, id)
    }

    /// A map as the kernel reads it from `/proc/PID/uid_map`.
    pub fn proc_text(ranges: &[IdRange]) -> String {
        ranges
            .iter()
            .map(|r| format!("{} {} {}\n", r.container, r.host, r.size))
            .collect()
    }
}

fn to_host(ranges: &[IdRange], id: u32) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let off = id.checked_sub(r.container)?;
        (off < r.size).then(|| r.host + off)
    })
}

/// Parses `"CONTAINER:HOST:SIZE"`.
pub(crate) fn parse_range(s: &str) -> Result<IdRange, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [c, h, n] = parts[..] else {
        return Err(format!(
            "invalid id range {s:?}; expected \"CONTAINER:HOST:SIZE\", e.g. \"0:100000:65536\""
        ));
    };
    let num = |what: &str, v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("invalid {what} id {v:?} in {s:?}; expected a number"))
    };
    let r = IdRange {
        container: num("container", c)?,
        host: num("host", h)?,
        size: num("size", n)?,
    };
    if r.size == 0 {
        return Err(format!("id range {s:?} is empty; SIZE must be at least 1"));
    }
    let end = |start: u32| u64::from(start) + u64::from(r.size);
    // The kernel keeps 4294967295 (-1) out of every map.
    if end(r.container) > u64::from(u32::MAX) || end(r.host) > u64::from(u32::MAX) {
        return Err(format!(
            "id range {s:?} runs past 4294967294, the highest id a map may hold"
        ));
    }
    Ok(r)
}

/// Checks one map as a whole: `kind` is "uid" or "gid".
pub(crate) fn check_map(kind: &str, ranges: &[IdRange]) -> Result<(), String> {
    if ranges.is_empty() {
        return Err("is empty; give at least one range".to_string());
    }
    if ranges.len() > MAX_RANGES {
        return Err(format!(
            "has {} ranges; the kernel takes at most {MAX_RANGES}",
            ranges.len()
        ));
    }
    let overlap = |a: u32, b: u32, n: u32, m: u32| {
        u64::from(a) < u64::from(b) + u64::from(m) && u64::from(b) < u64::from(a) + u64::from(n)
    };
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[i + 1..] {
            if overlap(a.container, b.container, a.size, b.size) {
                return Err(format!("ranges {a} and {b} overlap inside the container"));
            }
            if overlap(a.host, b.host, a.size, b.size) {
                return Err(format!("ranges {a} and {b} overlap on the host"));
            }
        }
    }
    if let Some(r) = ranges.iter().find(|r| r.host == 0) {
        return Err(format!(
            "range {r} maps the host's {kind} 0 (root) into the container, which a user namespace is there to prevent"
        ));
    }
    if to_host(ranges, 0).is_none() {
        return Err(format!(
            "does not map container {kind} 0: berth sets the container up as its root, so 0 must be mapped"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(c: u32, h: u32, n: u32) -> IdRange {
        IdRange {
            container: c,
            host: h,
            size: n,
        }
    }

    #[test]
    fn ranges_parse_and_print() {
        assert_eq!(parse_range("0:100000:65536"), Ok(r(0, 100000, 65536)));
        assert_eq!(r(0, 100000, 65536).to_string(), "0:100000:65536");
        assert!(
            parse_range("0:100000")
                .unwrap_err()
                .contains("CONTAINER:HOST:SIZE")
        );
        assert!(
            parse_range("0:x:1")
                .unwrap_err()
                .contains("invalid host id")
        );
        assert!(parse_range("0:1:0").unwrap_err().contains("empty"));
        assert!(
            parse_range("0:4294967295:1")
                .unwrap_err()
                .contains("runs past")
        );
        assert!(parse_range("0:4294967294:1").is_ok());
    }

    #[test]
    fn maps_translate_ids() {
        let m = IdMaps {
            uid: vec![r(0, 100000, 1000), r(1000, 5000, 1)],
            gid: vec![r(0, 200000, 65536)],
        };
        assert_eq!(m.host_uid(0), Some(100000));
        assert_eq!(m.host_uid(999), Some(100999));
        assert_eq!(m.host_uid(1000), Some(5000));
        assert_eq!(m.host_uid(1001), None);
        assert_eq!(m.host_gid(65535), Some(265535));
        assert_eq!(m.host_gid(65536), None);
        assert_eq!(IdMaps::proc_text(&m.uid), "0 100000 1000\n1000 5000 1\n");
    }

    #[test]
    fn maps_are_checked_whole() {
        assert_eq!(check_map("uid", &[r(0, 100000, 65536)]), Ok(()));
        let e = |v: &[IdRange]| check_map("uid", v).unwrap_err();
        assert!(e(&[]).contains("empty"));
        assert!(e(&[r(0, 100000, 10), r(5, 200000, 10)]).contains("overlap inside"));
        assert!(e(&[r(0, 100000, 10), r(10, 100005, 10)]).contains("overlap on the host"));
        assert!(e(&[r(0, 0, 10)]).contains("host's uid 0 (root)"));
        assert!(e(&[r(1, 100000, 10)]).contains("does not map container uid 0"));
        let many: Vec<IdRange> = (0..341).map(|i| r(i, 100000 + i, 1)).collect();
        assert!(e(&many).contains("at most 340"));
    }
}

//! The host's `/etc/resolv.conf`: nameservers and search domains from the
//! manifest (`host.network.dns`, `dns_search`) or, for what the manifest
//! leaves empty, from DHCP leases. Written atomically, so a container that
//! copies it at its start never sees half a file.
//!
//! The rule, per field: a non-empty static list wins; an empty one is
//! filled from the leases of the DHCP interfaces, in manifest order, without
//! duplicates. When neither has anything, berth leaves the file alone.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where the host's resolver configuration lives.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// glibc and musl read at most three `nameserver` lines.
pub const MAX_NAMESERVERS: usize = 3;

/// glibc reads at most six search domains (and 256 characters).
pub const MAX_SEARCH: usize = 6;

/// Why resolv.conf could not be written.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// cannot {op} {path}: {source}
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The resolver settings, merged from the manifest and the leases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolver {
    /// Nameservers, in order of preference.
    pub nameservers: Vec<IpAddr>,
    /// Search domains.
    pub search: Vec<String>,
}

impl Resolver {
    /// Static settings win field by field; each lease (in manifest order)
    /// fills the fields the manifest leaves empty.
    pub fn merge<'a>(
        static_dns: &[IpAddr],
        static_search: &[String],
        leases: impl IntoIterator<Item = (&'a [IpAddr], &'a [String])>,
    ) -> Resolver {
        let mut r = Resolver {
            nameservers: static_dns.to_vec(),
            search: static_search.to_vec(),
        };
        let (fill_dns, fill_search) = (static_dns.is_empty(), static_search.is_empty());
        for (dns, search) in leases {
            if fill_dns {
                for d in dns {
                    if !r.nameservers.contains(d) {
                        r.nameservers.push(*d);
                    }
                }
            }
            if fill_search {
                for s in search {
                    if !r.search.contains(s) {
                        r.search.push(s.clone());
                    }
                }
            }
        }
        r
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.search.is_empty()
    }

    /// The file's text. Extra nameservers and search domains beyond what
    /// libcs read are dropped, as are names with characters that would
    /// break the file's syntax.
    pub fn render(&self) -> String {
        let mut out = String::from("# Written by berth from the manifest and DHCP leases.\n");
        for ns in self.nameservers.iter().take(MAX_NAMESERVERS) {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        let search: Vec<&str> = self
            .search
            .iter()
            .map(|s| s.trim_end_matches('.'))
            .filter(|s| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_graphic() && c != '#' && c != ';')
            })
            .take(MAX_SEARCH)
            .collect();
        if !search.is_empty() {
            out.push_str(&format!("search {}\n", search.join(" ")));
        }
        out
    }
}

/// Writes `contents` to `path` atomically: a temporary file beside it,
/// fsync, rename over, then fsync of the directory.
pub fn write_atomic(path: &Path, contents: &str) -> Result<(), Error> {
    let err = |op, p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io {
            op,
            path: p,
            source,
        }
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.berth-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(err("create", &tmp))?;
        f.write_all(contents.as_bytes())
            .map_err(err("write", &tmp))?;
        f.sync_all().map_err(err("fsync", &tmp))?;
        std::fs::rename(&tmp, path).map_err(err("rename into place", path))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    // The rename is durable once the directory is; failing that is no
    // reason to report the file unwritten.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn renders_nameservers_then_search() {
        let r = Resolver {
            nameservers: vec![ip("10.0.2.3"), ip("fd00::3")],
            search: vec!["example.org.".into(), "lan".into()],
        };
        assert_eq!(
            r.render(),
            "# Written by berth from the manifest and DHCP leases.\n\
             nameserver 10.0.2.3\nnameserver fd00::3\nsearch example.org lan\n"
        );
    }

    #[test]
    fn rendering_caps_what_libcs_read_and_drops_bad_names() {
        let r = Resolver {
            nameservers: (1..=5).map(|i| ip(&format!("10.0.0.{i}"))).collect(),
            search: vec!["a b".into(), "ok".into(), "x#y".into(), String::new()],
        };
        let text = r.render();
        assert_eq!(text.matches("nameserver").count(), 3);
        assert!(text.ends_with("search ok\n"), "{text}");
        assert_eq!(
            Resolver::default().render(),
            "# Written by berth from the manifest and DHCP leases.\n"
        );
    }

    #[test]
    fn static_settings_win_and_leases_fill_the_rest() {
        let lease1 = (vec![ip("10.0.2.3")], vec!["dhcp.example".to_string()]);
        let lease2 = (vec![ip("10.0.2.3"), ip("10.9.0.1")], vec![]);
        let leases = || {
            [&lease1, &lease2]
                .into_iter()
                .map(|(d, s)| (d.as_slice(), s.as_slice()))
        };
        // Nothing static: the leases, in order, without duplicates.
        let r = Resolver::merge(&[], &[], leases());
        assert_eq!(r.nameservers, [ip("10.0.2.3"), ip("10.9.0.1")]);
        assert_eq!(r.search, ["dhcp.example"]);
        // Static nameservers win; DHCP still fills the search list.
        let r = Resolver::merge(&[ip("1.1.1.1")], &[], leases());
        assert_eq!(r.nameservers, [ip("1.1.1.1")]);
        assert_eq!(r.search, ["dhcp.example"]);
        // Static search wins; DHCP fills the nameservers.
        let r = Resolver::merge(&[], &["corp".into()], leases());
        assert_eq!(r.nameservers, [ip("10.0.2.3"), ip("10.9.0.1")]);
        assert_eq!(r.search, ["corp"]);
        assert!(Resolver::merge(&[], &[], []).is_empty());
    }

    #[test]
    fn writes_atomically_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        write_atomic(&path, "nameserver 10.0.0.1\n").unwrap();
        write_atomic(&path, "nameserver 10.0.0.2\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "nameserver 10.0.0.2\n"
        );
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let e = write_atomic(&dir.path().join("no/such/resolv.conf"), "x").unwrap_err();
        assert!(e.to_string().starts_with("cannot create "), "{e}");
    }
}

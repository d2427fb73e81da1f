//! Sysctls from the manifest, written under /proc/sys.

use std::path::PathBuf;

use crate::sys::Sys;

/// Why a sysctl could not be applied.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// sysctl {0}: not a valid name
    Name(String),
    /// sysctl {name}: cannot write {path}: {source}
    Write {
        /// The dotted name.
        name: String,
        /// The file under /proc/sys.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The /proc/sys file of a dotted name (`net.core.somaxconn`). Names with
/// slashes or empty or parent components are refused.
pub fn path(name: &str) -> Result<PathBuf, Error> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || p.contains('/') || *p == "..")
    {
        return Err(Error::Name(name.into()));
    }
    Ok(PathBuf::from("/proc/sys").join(parts.join("/")))
}

/// Writes one sysctl.
pub fn apply(sys: &dyn Sys, name: &str, value: &str) -> Result<(), Error> {
    let path = path(name)?;
    sys.write_file(&path, value).map_err(|source| Error::Write {
        name: name.into(),
        path,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::record::Recorder;

    #[test]
    fn dotted_names_map_to_proc_sys() {
        let rec = Recorder::default();
        apply(&rec, "net.core.somaxconn", "1024").unwrap();
        assert_eq!(rec.calls(), ["write /proc/sys/net/core/somaxconn 1024"]);
    }

    #[test]
    fn traversal_is_refused() {
        for bad in ["", "net..core", "../etc/passwd", "net/core.x", "a...b"] {
            assert!(matches!(path(bad), Err(Error::Name(_))), "{bad}");
        }
    }
}

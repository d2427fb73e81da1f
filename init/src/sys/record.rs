//! A recording [`Sys`] for tests: logs each call as a line and fails the calls
//! a test asks it to.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use super::Sys;

/// Records calls as readable lines such as `mount proc /proc proc`.
#[derive(Default)]
pub struct Recorder {
    calls: RefCell<Vec<String>>,
    failures: RefCell<HashMap<String, Errno>>,
}

impl Recorder {
    /// Makes every later call whose line starts with `prefix` fail with `errno`.
    pub fn fail(&self, prefix: &str, errno: Errno) {
        self.failures.borrow_mut().insert(prefix.to_string(), errno);
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn record(&self, line: String) -> Result<(), Errno> {
        let failed = self
            .failures
            .borrow()
            .iter()
            .find(|(p, _)| line.starts_with(p.as_str()))
            .map(|(_, e)| *e);
        self.calls.borrow_mut().push(match failed {
            Some(e) => format!("{line} -> {e}"),
            None => line,
        });
        failed.map_or(Ok(()), Err)
    }
}

fn flag_names(flags: MsFlags) -> String {
    let names: Vec<&str> = flags.iter_names().map(|(n, _)| n).collect();
    names.join("|")
}

impl Sys for Recorder {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        let mut line = format!("mount {source} {}", target.display());
        if let Some(t) = fstype {
            line += &format!(" {t}");
        }
        if !flags.is_empty() {
            line += &format!(" [{}]", flag_names(flags));
        }
        if let Some(d) = data {
            line += &format!(" {d}");
        }
        self.record(line)
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> Result<(), Errno> {
        let mut line = format!("umount {}", target.display());
        if flags.contains(MntFlags::MNT_DETACH) {
            line += " [detach]";
        }
        self.record(line)
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.record(format!("mkdir {} {mode:o}", path.display()))
            .map_err(io::Error::from)
    }

    fn write_file(&self, path: &Path, data: &str) -> io::Result<()> {
        self.record(format!("write {} {data}", path.display()))
            .map_err(io::Error::from)
    }

    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        self.record(format!("symlink {} -> {target}", link.display()))
            .map_err(io::Error::from)
    }
}

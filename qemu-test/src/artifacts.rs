//! Where the kernel under test comes from.
//!
//! [`artifacts`] is the one entry point, and [`locate_kernel`] the one place
//! that decides: `$BERTH_TEST_KERNEL` if set (its modules next to it, or in
//! `$BERTH_TEST_MODULES`), else the pinned Debian cloud kernel that
//! `berth_image::kernel::ensure` fetches once (with apt) into berth's cache
//! and reuses offline afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// The environment variable naming the kernel to boot.
pub const KERNEL_ENV: &str = "BERTH_TEST_KERNEL";

/// The environment variable naming the kernel's module tree
/// (`.../lib/modules/<version>`), when it is not next to the kernel.
pub const MODULES_ENV: &str = "BERTH_TEST_MODULES";

/// The kernel (and its modules) that VMs boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifacts {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The module tree (`lib/modules/<version>`), if found.
    pub modules_dir: Option<PathBuf>,
}

/// Finds the kernel and its module tree (see [`locate_kernel`]).
pub fn artifacts() -> Result<Artifacts> {
    let (kernel, modules_dir) = locate_kernel()?;
    let modules_dir = std::env::var_os(MODULES_ENV)
        .map(PathBuf::from)
        .or(modules_dir)
        .filter(|d| d.is_dir());
    Ok(Artifacts {
        kernel,
        modules_dir,
    })
}

/// THE SWITCH: where the kernel comes from. `$BERTH_TEST_KERNEL` wins (with
/// `<root>/lib/modules/<v>` next to `<root>/boot/vmlinuz-<v>`); otherwise
/// `berth_image::kernel::ensure` provides the pinned kernel and its modules.
pub fn locate_kernel() -> Result<(PathBuf, Option<PathBuf>)> {
    if let Some(kernel) = std::env::var_os(KERNEL_ENV).map(PathBuf::from) {
        if !kernel.is_file() {
            return Err(Error::MissingFile {
                what: "test kernel (BERTH_TEST_KERNEL)",
                path: kernel,
            });
        }
        let modules = modules_next_to(&kernel);
        return Ok((kernel, modules));
    }
    let fetch = |e: &dyn std::fmt::Display| Error::KernelFetch(e.to_string());
    let cache = berth_image::kernel::cache_dir().map_err(|e| fetch(&e))?;
    let k = berth_image::kernel::ensure(&cache).map_err(|e| fetch(&e))?;
    Ok((k.vmlinuz, Some(k.modules_dir)))
}

fn modules_next_to(kernel: &Path) -> Option<PathBuf> {
    let file = kernel.file_name()?.to_str()?;
    let version = file.strip_prefix("vmlinuz-")?;
    let root = kernel.parent()?.parent()?;
    Some(root.join("lib/modules").join(version))
}

impl Artifacts {
    /// The module tree, or an error naming what was looked for.
    fn modules(&self) -> Result<&Path> {
        self.modules_dir
            .as_deref()
            .ok_or_else(|| Error::MissingFile {
                what: "kernel module tree (set BERTH_TEST_MODULES)",
                path: modules_next_to(&self.kernel).unwrap_or_default(),
            })
    }

    /// The file of module `name` (`-` and `_` are the same, as for modprobe).
    pub fn module(&self, name: &str) -> Result<PathBuf> {
        let dir = self.modules()?;
        let want = format!("{}.ko", name.replace('-', "_"));
        find_file(dir, &|f: &str| f.replace('-', "_") == want)?.ok_or_else(|| {
            Error::MissingModule {
                module: name.to_owned(),
                dir: dir.to_owned(),
            }
        })
    }

    /// The files of `names` and all they depend on (read with `modinfo -F
    /// depends`), in an order `insmod` accepts: dependencies first.
    pub fn modules_with_deps(&self, names: &[&str]) -> Result<Vec<PathBuf>> {
        let mut order = Vec::new();
        let mut visiting = Vec::new();
        for name in names {
            self.visit(name, &mut order, &mut visiting)?;
        }
        Ok(order.into_iter().map(|(_, p)| p).collect())
    }

    fn visit(
        &self,
        name: &str,
        order: &mut Vec<(String, PathBuf)>,
        visiting: &mut Vec<String>,
    ) -> Result<()> {
        let key = name.replace('-', "_");
        if order.iter().any(|(n, _)| *n == key) || visiting.contains(&key) {
            return Ok(());
        }
        visiting.push(key.clone());
        let path = self.module(name)?;
        for dep in depends_of(&path)? {
            self.visit(&dep, order, visiting)?;
        }
        order.push((key, path));
        Ok(())
    }
}

fn depends_of(module: &Path) -> Result<Vec<String>> {
    let out = Command::new("modinfo")
        .args(["-F", "depends"])
        .arg(module)
        .output()
        .map_err(|e| Error::Tool {
            program: "modinfo",
            path: module.to_owned(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Tool {
            program: "modinfo",
            path: module.to_owned(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

fn find_file(dir: &Path, want: &dyn Fn(&str) -> bool) -> Result<Option<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    let mut subdirs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => subdirs.push(path),
            Ok(_) if entry.file_name().to_str().is_some_and(want) => return Ok(Some(path)),
            _ => {}
        }
    }
    for sub in subdirs {
        if let Some(p) = find_file(&sub, want)? {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_sit_next_to_the_kernel() {
        assert_eq!(
            modules_next_to(Path::new("/r/boot/vmlinuz-6.1.0-48-cloud-amd64")),
            Some(PathBuf::from("/r/lib/modules/6.1.0-48-cloud-amd64"))
        );
        assert_eq!(modules_next_to(Path::new("/r/bzImage")), None);
    }
}

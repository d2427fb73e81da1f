//! Kernel module selection: which `.ko` files go into the image, and the
//! `modules.dep` that tells berth's loader in which order to load them.
//!
//! The kernel package ships no `modules.dep`, so dependencies are read from
//! each module's own `.modinfo` ELF section (`depends=a,b`, and the optional
//! `softdep=pre: x post: y`), the same data `depmod` uses. Module names treat
//! `-` and `_` alike (the kernel does); names are kept with `_` here.
//!
//! ## `modules.dep` order
//! One line per module in the image, sorted by path:
//! `kernel/a.ko: kernel/dep1.ko kernel/dep2.ko`, paths relative to
//! `/lib/modules/<version>/`. The list holds every transitive dependency,
//! ordered as `depmod` does: each module appears before the modules it
//! depends on, so loading the list **from last to first**, then the module
//! itself, loads every dependency before its users (modprobe's rule). Ties
//! are broken by name, so the file is reproducible.
//!
//! `modules.softdep` lists soft dependencies as `depmod` writes them; the
//! soft dependencies that exist in the kernel are included in the image but
//! not in `modules.dep` (they are optional by definition).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::elf::{Elf, ElfError};

/// The modules every berth image carries, whatever the manifest says: what
/// berth loads at boot or may need for what a manifest can ask of it. Each
/// exists as a module (`=m`) in the pinned kernel (a test checks); built-in
/// features (ext4, cgroups, devtmpfs...) need no entry.
pub const BASE_MODULES: &[&str] = &[
    // Container root filesystems: overlay on tmpfs, images as squashfs/erofs.
    "overlay",
    "squashfs",
    "erofs",
    // virtio transports (PCI for q35/pc, MMIO for microvm) and devices:
    // console and control channel (virtio-serial), network, disks.
    "virtio_pci",
    "virtio_mmio",
    "virtio_console",
    "virtio_net",
    "virtio_blk",
    // ACPI power button (QEMU `system_powerdown`) delivered as input events.
    "button",
    "evdev",
    // Container networking: veth pairs on a bridge, NAT to the outside.
    "veth",
    "bridge",
    "nf_tables",
    "nf_nat",
    "nft_nat",
    "nft_chain_nat",
    "nft_masq",
    // Published ports only catch traffic for local addresses (fib).
    "nft_fib",
    "nft_fib_ipv4",
    // The EFI system partition / config media; vfat mounts ask the kernel
    // for the default code page (437) and iocharset (ascii) as modules.
    "vfat",
    "nls_cp437",
    "nls_ascii",
];

/// Why modules could not be selected.
#[derive(Debug, displaydoc::Display, thiserror::Error)]
pub enum ModuleError {
    /// cannot read {path}: {source}
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// cannot parse kernel module {path}: {source}
    Elf {
        /// The module file.
        path: PathBuf,
        /// What is wrong with it.
        source: ElfError,
    },
    /// kernel module {0} has no .modinfo section
    NoModinfo(PathBuf),
    /// the kernel has no module {0}, but berth's base module set needs it
    MissingBase(String),
    /// kernel module {module} depends on {dependency}, which the kernel does not have
    MissingDependency {
        /// The module that depends.
        module: String,
        /// The missing dependency.
        dependency: String,
    },
    /// kernel modules depend on each other in a cycle: {0}
    Cycle(String),
}

/// Normalises a module name: `-` becomes `_`, as the kernel treats them.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// What a module needs, from its `.modinfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleMeta {
    /// Path relative to the modules directory, e.g. `kernel/fs/fat/vfat.ko`.
    pub path: String,
    /// Hard dependencies (normalised names).
    pub depends: Vec<String>,
    /// Soft dependencies to load before it.
    pub softdep_pre: Vec<String>,
    /// Soft dependencies to load after it.
    pub softdep_post: Vec<String>,
}

impl ModuleMeta {
    /// Parses the contents of a `.modinfo` section: NUL-separated
    /// `key=value` strings.
    pub fn from_modinfo(path: &str, modinfo: &[u8]) -> ModuleMeta {
        let mut meta = ModuleMeta {
            path: path.to_string(),
            ..ModuleMeta::default()
        };
        for field in modinfo.split(|&b| b == 0) {
            let field = String::from_utf8_lossy(field);
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key {
                "depends" => meta.depends.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(normalize_name),
                ),
                "softdep" => {
                    // "pre: a b post: c"; names before any keyword are ignored.
                    let mut list = None;
                    for word in value.split_whitespace() {
                        match word {
                            "pre:" => list = Some(&mut meta.softdep_pre),
                            "post:" => list = Some(&mut meta.softdep_post),
                            name => {
                                if let Some(l) = list.as_deref_mut() {
                                    l.push(normalize_name(name));
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        meta.depends.sort();
        meta.depends.dedup();
        meta
    }
}

/// Where module metadata comes from: the real kernel tree, or a test table.
pub trait ModuleSource {
    /// The module called `name` (normalised), or `None` if there is none.
    fn lookup(&mut self, name: &str) -> Result<Option<ModuleMeta>, ModuleError>;
    /// Whether `name` (normalised) is built into the kernel.
    fn is_builtin(&self, name: &str) -> bool;
}

/// The modules of an unpacked kernel: `.ko` files under
/// `<modules_dir>/kernel/`, and `modules.builtin`.
#[derive(Debug)]
pub struct KernelModules {
    dir: PathBuf,
    paths: BTreeMap<String, String>,
    builtin: BTreeSet<String>,
}

impl KernelModules {
    /// Indexes `modules_dir` (`.../lib/modules/<version>`) by module name.
    /// Only file names are read here; `.modinfo` is read on lookup.
    pub fn open(modules_dir: &Path) -> Result<Self, ModuleError> {
        let mut paths = BTreeMap::new();
        let mut stack = vec![PathBuf::from("kernel")];
        while let Some(rel) = stack.pop() {
            let abs = modules_dir.join(&rel);
            let read_err = |source| ModuleError::Read {
                path: abs.clone(),
                source,
            };
            for entry in std::fs::read_dir(&abs).map_err(read_err)? {
                let entry = entry.map_err(read_err)?;
                let ty = entry.file_type().map_err(read_err)?;
                let child = rel.join(entry.file_name());
                if ty.is_dir() {
                    stack.push(child);
                } else if let Some(stem) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".ko"))
                {
                    // Names are unique in a kernel; keep the smallest path if not.
                    let path = child.to_string_lossy().into_owned();
                    paths
                        .entry(normalize_name(stem))
                        .and_modify(|p: &mut String| {
                            if path < *p {
                                p.clone_from(&path);
                            }
                        })
                        .or_insert(path);
                }
            }
        }
        let builtin_path = modules_dir.join("modules.builtin");
        let builtin = std::fs::read_to_string(&builtin_path)
            .map_err(|source| ModuleError::Read {
                path: builtin_path,
                source,
            })?
            .lines()
            .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko"))
            .map(normalize_name)
            .collect();
        Ok(KernelModules {
            dir: modules_dir.to_path_buf(),
            paths,
            builtin,
        })
    }

    /// The names of all loadable modules, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.paths.keys().map(String::as_str)
    }

    /// Number of loadable modules in the kernel.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether the kernel has no loadable modules.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The directory indexed.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl ModuleSource for KernelModules {
    fn lookup(&mut self, name: &str) -> Result<Option<ModuleMeta>, ModuleError> {
        let Some(rel) = self.paths.get(name) else {
            return Ok(None);
        };
        let path = self.dir.join(rel);
        let data = std::fs::read(&path).map_err(|source| ModuleError::Read {
            path: path.clone(),
            source,
        })?;
        let elf = Elf::parse(&data).map_err(|source| ModuleError::Elf {
            path: path.clone(),
            source,
        })?;
        let modinfo = elf
            .section(".modinfo")
            .map_err(|source| ModuleError::Elf {
                path: path.clone(),
                source,
            })?
            .ok_or_else(|| ModuleError::NoModinfo(path.clone()))?;
        Ok(Some(ModuleMeta::from_modinfo(rel, modinfo)))
    }

    fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(name)
    }
}

/// The selected modules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Every module to put in the image, by name.
    pub modules: BTreeMap<String, ModuleMeta>,
    /// Requested names that are built into the kernel (nothing to copy).
    pub builtin: Vec<String>,
    /// Names the manifest requested that the kernel does not have at all.
    /// berth logs them at boot and carries on.
    pub missing: Vec<String>,
    /// For each module, its transitive dependencies in `modules.dep` order.
    dep_lists: BTreeMap<String, Vec<String>>,
}

/// Selects `required` (berth's base set: a missing one is an error) and
/// `requested` (the manifest's: a missing one is recorded in
/// [`Resolution::missing`]) with all their dependencies.
pub fn resolve(
    source: &mut dyn ModuleSource,
    required: &[&str],
    requested: &[String],
) -> Result<Resolution, ModuleError> {
    let mut res = Resolution::default();
    let mut queue: Vec<String> = Vec::new();
    let wanted = required
        .iter()
        .map(|n| (normalize_name(n), true))
        .chain(requested.iter().map(|n| (normalize_name(n), false)));
    let mut seen = BTreeSet::new();
    for (name, is_required) in wanted {
        if !seen.insert(name.clone()) {
            continue;
        }
        if source.is_builtin(&name) {
            res.builtin.push(name);
        } else if let Some(meta) = source.lookup(&name)? {
            queue.push(name.clone());
            res.modules.insert(name, meta);
        } else if is_required {
            return Err(ModuleError::MissingBase(name));
        } else {
            res.missing.push(name);
        }
    }
    // Close over dependencies (hard: must exist; soft: taken if they exist).
    while let Some(name) = queue.pop() {
        let meta = &res.modules[&name];
        let hard = meta.depends.clone();
        let soft: Vec<String> = meta
            .softdep_pre
            .iter()
            .chain(&meta.softdep_post)
            .cloned()
            .collect();
        for (dep, is_hard) in hard
            .into_iter()
            .map(|d| (d, true))
            .chain(soft.into_iter().map(|d| (d, false)))
        {
            if res.modules.contains_key(&dep) || source.is_builtin(&dep) {
                continue;
            }
            match source.lookup(&dep)? {
                Some(meta) => {
                    res.modules.insert(dep.clone(), meta);
                    queue.push(dep);
                }
                None if is_hard => {
                    return Err(ModuleError::MissingDependency {
                        module: name,
                        dependency: dep,
                    });
                }
                None => {}
            }
        }
    }
    for name in res.modules.keys() {
        let list = dependency_list(&res.modules, name)?;
        res.dep_lists.insert(name.clone(), list);
    }
    Ok(res)
}

/// The transitive hard dependencies of `root`, each before its own
/// dependencies (reverse post-order of a depth-first walk over sorted
/// names). Fails on a cycle, naming it.
fn dependency_list(
    modules: &BTreeMap<String, ModuleMeta>,
    root: &str,
) -> Result<Vec<String>, ModuleError> {
    fn visit(
        modules: &BTreeMap<String, ModuleMeta>,
        name: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        post: &mut Vec<String>,
    ) -> Result<(), ModuleError> {
        if done.contains(name) {
            return Ok(());
        }
        if let Some(i) = stack.iter().position(|n| n == name) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(name.to_string());
            return Err(ModuleError::Cycle(cycle.join(" -> ")));
        }
        stack.push(name.to_string());
        // Built-in dependencies have no entry: nothing to load.
        if let Some(meta) = modules.get(name) {
            for dep in &meta.depends {
                visit(modules, dep, stack, done, post)?;
            }
        }
        stack.pop();
        done.insert(name.to_string());
        post.push(name.to_string());
        Ok(())
    }
    let mut post = Vec::new();
    visit(
        modules,
        root,
        &mut Vec::new(),
        &mut BTreeSet::new(),
        &mut post,
    )?;
    post.pop(); // the root itself, visited last
    post.retain(|n| modules.contains_key(n));
    post.reverse();
    Ok(post)
}

impl Resolution {
    /// The transitive dependencies of `name` in `modules.dep` order (load
    /// them from last to first), or `None` if it is not in the image.
    pub fn dependencies(&self, name: &str) -> Option<&[String]> {
        self.dep_lists.get(&normalize_name(name)).map(Vec::as_slice)
    }

    /// The contents of `modules.dep` (see the module documentation).
    pub fn modules_dep(&self) -> String {
        let mut lines: Vec<(&str, String)> = self
            .modules
            .iter()
            .map(|(name, meta)| {
                let mut line = format!("{}:", meta.path);
                for dep in self.dep_lists.get(name).into_iter().flatten() {
                    let _ = write!(line, " {}", self.modules[dep].path);
                }
                (meta.path.as_str(), line)
            })
            .collect();
        lines.sort();
        lines.into_iter().fold(String::new(), |mut out, (_, l)| {
            out.push_str(&l);
            out.push('\n');
            out
        })
    }

    /// The contents of `modules.softdep`, as `depmod` writes it.
    pub fn modules_softdep(&self) -> String {
        let mut out = String::from("# Soft dependencies extracted from modules themselves.\n");
        for (name, meta) in &self.modules {
            if meta.softdep_pre.is_empty() && meta.softdep_post.is_empty() {
                continue;
            }
            let _ = write!(out, "softdep {name}");
            if !meta.softdep_pre.is_empty() {
                let _ = write!(out, " pre: {}", meta.softdep_pre.join(" "));
            }
            if !meta.softdep_post.is_empty() {
                let _ = write!(out, " post: {}", meta.softdep_post.join(" "));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crafted kernel: (name, deps, softdep pre), plus built-ins.
    struct Table {
        modules: BTreeMap<String, ModuleMeta>,
        builtin: BTreeSet<String>,
        lookups: usize,
    }

    impl Table {
        fn new(mods: &[(&str, &[&str], &[&str])], builtin: &[&str]) -> Self {
            let modules = mods
                .iter()
                .map(|(n, deps, pre)| {
                    let info = format!(
                        "license=GPL\0depends={}\0softdep=pre: {}\0name={n}\0",
                        deps.join(","),
                        pre.join(" ")
                    );
                    let path = format!("kernel/{n}.ko");
                    (
                        normalize_name(n),
                        ModuleMeta::from_modinfo(&path, info.as_bytes()),
                    )
                })
                .collect();
            Table {
                modules,
                builtin: builtin.iter().map(|s| s.to_string()).collect(),
                lookups: 0,
            }
        }
    }

    impl ModuleSource for Table {
        fn lookup(&mut self, name: &str) -> Result<Option<ModuleMeta>, ModuleError> {
            self.lookups += 1;
            Ok(self.modules.get(name).cloned())
        }
        fn is_builtin(&self, name: &str) -> bool {
            self.builtin.contains(name)
        }
    }

    fn names(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn parses_modinfo_fields() {
        let m = ModuleMeta::from_modinfo(
            "kernel/x.ko",
            b"alias=foo\0depends=nf_tables,nf-nat,,nf_conntrack\0\0\0softdep=pre: nf-log post: a b\0",
        );
        assert_eq!(names(&m.depends), ["nf_conntrack", "nf_nat", "nf_tables"]);
        assert_eq!(names(&m.softdep_pre), ["nf_log"]);
        assert_eq!(names(&m.softdep_post), ["a", "b"]);
        let m = ModuleMeta::from_modinfo("kernel/y.ko", b"depends=\0");
        assert!(m.depends.is_empty());
    }

    #[test]
    fn resolves_transitive_dependencies_in_load_order() {
        // nft_masq -> nf_tables, nf_nat, nf_conntrack; nf_nat -> nf_conntrack;
        // nf_conntrack -> libcrc32c, nf_defrag_ipv4.
        let mut t = Table::new(
            &[
                ("nft_masq", &["nf_tables", "nf_nat", "nf_conntrack"], &[]),
                ("nf_tables", &["nfnetlink"], &[]),
                ("nfnetlink", &[], &[]),
                ("nf_nat", &["nf_conntrack"], &[]),
                ("nf_conntrack", &["libcrc32c", "nf_defrag_ipv4"], &[]),
                ("libcrc32c", &[], &[]),
                ("nf_defrag_ipv4", &[], &[]),
                ("unused", &[], &[]),
            ],
            &[],
        );
        let r = resolve(&mut t, &["nft_masq"], &[]).unwrap();
        assert_eq!(r.modules.len(), 7);
        assert!(!r.modules.contains_key("unused"));
        let deps = r.dependencies("nft_masq").unwrap();
        assert_eq!(deps.len(), 6);
        // Loading from last to first must load every dependency first.
        let mut loaded = BTreeSet::new();
        for d in deps.iter().rev() {
            for dd in &r.modules[d].depends {
                assert!(loaded.contains(dd), "{d} before its dependency {dd}");
            }
            loaded.insert(d.clone());
        }
        assert!(r.modules_dep().contains(
            "kernel/nf_nat.ko: kernel/nf_conntrack.ko kernel/nf_defrag_ipv4.ko kernel/libcrc32c.ko\n"
        ));
        assert!(r.modules_dep().contains("kernel/nfnetlink.ko:\n"));
        assert_eq!(r.modules_dep().lines().count(), 7);
    }

    #[test]
    fn dashes_and_underscores_are_one_name() {
        let mut t = Table::new(
            &[("snd-pcm", &["snd_timer"], &[]), ("snd-timer", &[], &[])],
            &[],
        );
        let r = resolve(&mut t, &[], &["snd_pcm".to_string(), "snd-pcm".to_string()]).unwrap();
        assert_eq!(
            r.modules.keys().collect::<Vec<_>>(),
            ["snd_pcm", "snd_timer"]
        );
        assert_eq!(names(r.dependencies("snd-pcm").unwrap()), ["snd_timer"]);
        assert_eq!(
            r.modules_dep(),
            "kernel/snd-pcm.ko: kernel/snd-timer.ko\nkernel/snd-timer.ko:\n"
        );
    }

    #[test]
    fn missing_requested_modules_are_reported_not_fatal() {
        let mut t = Table::new(&[("overlay", &[], &[])], &["ext4"]);
        let r = resolve(
            &mut t,
            &["overlay"],
            &["no_such_module".to_string(), "ext4".to_string()],
        )
        .unwrap();
        assert_eq!(r.missing, ["no_such_module"]);
        assert_eq!(r.builtin, ["ext4"]);
        assert_eq!(r.modules.keys().collect::<Vec<_>>(), ["overlay"]);
    }

    #[test]
    fn missing_base_modules_and_dependencies_are_errors() {
        let mut t = Table::new(&[("a", &["ghost"], &[])], &[]);
        assert!(matches!(
            resolve(&mut t, &["nope"], &[]),
            Err(ModuleError::MissingBase(n)) if n == "nope"
        ));
        let err = resolve(&mut t, &[], &["a".to_string()]).unwrap_err();
        assert!(
            matches!(&err, ModuleError::MissingDependency { module, dependency }
            if module == "a" && dependency == "ghost")
        );
        assert_eq!(
            err.to_string(),
            "kernel module a depends on ghost, which the kernel does not have"
        );
    }

    #[test]
    fn builtin_dependencies_need_nothing() {
        let mut t = Table::new(&[("a", &["crc32c"], &[])], &["crc32c"]);
        let r = resolve(&mut t, &["a"], &[]).unwrap();
        assert_eq!(r.modules_dep(), "kernel/a.ko:\n");
    }

    #[test]
    fn cycles_are_detected_and_named() {
        let mut t = Table::new(
            &[("a", &["b"], &[]), ("b", &["c"], &[]), ("c", &["a"], &[])],
            &[],
        );
        let err = resolve(&mut t, &["a"], &[]).unwrap_err();
        let ModuleError::Cycle(chain) = &err else {
            panic!("{err}")
        };
        assert_eq!(chain, "a -> b -> c -> a");
        // A self-dependency is a cycle too.
        let mut t = Table::new(&[("s", &["s"], &[])], &[]);
        assert!(matches!(
            resolve(&mut t, &["s"], &[]),
            Err(ModuleError::Cycle(_))
        ));
    }

    #[test]
    fn diamonds_are_listed_once_and_lookups_are_not_repeated() {
        let mut t = Table::new(
            &[
                ("top", &["l", "r"], &[]),
                ("l", &["base"], &[]),
                ("r", &["base"], &[]),
                ("base", &[], &[]),
            ],
            &[],
        );
        let r = resolve(&mut t, &["top", "l"], &["r".to_string()]).unwrap();
        assert_eq!(names(r.dependencies("top").unwrap()), ["r", "l", "base"]);
        assert_eq!(t.lookups, 4);
    }

    #[test]
    fn soft_dependencies_are_included_when_present() {
        let mut t = Table::new(
            &[
                ("xt_log", &[], &["nf_log_syslog", "absent"]),
                ("nf_log_syslog", &[], &[]),
            ],
            &[],
        );
        let r = resolve(&mut t, &["xt_log"], &[]).unwrap();
        assert!(r.modules.contains_key("nf_log_syslog"));
        assert_eq!(r.dependencies("xt_log").unwrap(), [] as [String; 0]);
        assert!(
            r.modules_softdep()
                .contains("softdep xt_log pre: nf_log_syslog absent\n")
        );
    }
}

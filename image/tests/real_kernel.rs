//! The module resolver against the real, pinned kernel, cross-checked with
//! kmod's own tools: `modinfo -F depends` reads the same `.modinfo` field,
//! and `depmod` computes dependencies independently, from symbols.
//!
//! Needs the kernel package (downloaded into berth's cache on first use)
//! and kmod (scripts/install-deps).

// Test helpers, not production code: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use berth_image::kernel::{self, Kernel};
use berth_image::modules::{self, BASE_MODULES, KernelModules, ModuleSource, normalize_name};

fn kernel() -> Kernel {
    let cache = kernel::cache_dir().expect("cache dir");
    kernel::ensure(&cache).unwrap_or_else(|e| panic!("cannot get the kernel: {e}"))
}

fn tool(name: &str) -> Command {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = std::path::Path::new(dir).join(name);
        if p.exists() {
            return Command::new(p);
        }
    }
    panic!("{name} is not installed: run scripts/install-deps");
}

#[test]
fn base_modules_all_exist_in_the_pinned_kernel() {
    let k = kernel();
    let mut source = KernelModules::open(&k.modules_dir).unwrap();
    assert!(source.len() > 1000, "only {} modules", source.len());
    let r = modules::resolve(&mut source, BASE_MODULES, &[]).unwrap();
    assert!(r.missing.is_empty() && r.builtin.is_empty(), "{r:?}");
    for name in BASE_MODULES {
        assert!(r.modules.contains_key(&normalize_name(name)), "{name}");
    }
    // What the notes measured: virtio_net pulls in net_failover, bridge
    // pulls in stp and llc, virtio_pci its two transport libraries.
    for dep in [
        "net_failover",
        "failover",
        "stp",
        "llc",
        "virtio_pci_modern_dev",
        "virtio_ring",
    ] {
        assert!(r.modules.contains_key(dep), "{dep} missing");
    }
    assert!(source.is_builtin("ext4"));
    let r = modules::resolve(&mut source, &[], &["ext4".into(), "no_such_module".into()]).unwrap();
    assert_eq!(r.builtin, ["ext4"]);
    assert_eq!(r.missing, ["no_such_module"]);
}

#[test]
fn depends_match_modinfo() {
    let k = kernel();
    let mut source = KernelModules::open(&k.modules_dir).unwrap();
    for name in [
        "nft_masq",
        "virtio_net",
        "bridge",
        "vfat",
        "virtio_pci",
        "overlay",
        "nf_nat",
        "xt_LOG",
    ] {
        let meta = source.lookup(&normalize_name(name)).unwrap().unwrap();
        let out = tool("modinfo")
            .args(["-F", "depends"])
            .arg(k.modules_dir.join(&meta.path))
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut expected: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(normalize_name)
            .collect();
        expected.sort();
        assert_eq!(meta.depends, expected, "{name}");
    }
}

/// Parses `depmod -n` output: modules.dep lines and softdep lines.
fn depmod(k: &Kernel) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    // The tree is <base>/lib/modules/<release>; -n writes to stdout only,
    // so the cache is left untouched.
    let base = k.modules_dir.ancestors().nth(3).unwrap();
    let out = tool("depmod")
        .arg("-b")
        .arg(base)
        .arg("-n")
        .arg(&k.version)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut deps = BTreeMap::new();
    let mut softdeps = Vec::new();
    for line in text.lines() {
        if let Some((path, list)) = line.split_once(':').filter(|(p, _)| p.ends_with(".ko")) {
            deps.insert(
                path.to_string(),
                list.split_whitespace().map(String::from).collect(),
            );
        } else if line.starts_with("softdep ") {
            softdeps.push(line.to_string());
        }
    }
    (deps, softdeps)
}

/// Every module of the kernel resolved by berth-image, against depmod's
/// modules.dep for the whole tree: the same transitive sets, in an order
/// that loads every dependency first when read from last to first.
#[test]
fn modules_dep_matches_depmod_for_the_whole_kernel() {
    let k = kernel();
    let (expected, softdeps) = depmod(&k);
    let mut source = KernelModules::open(&k.modules_dir).unwrap();
    let all: Vec<String> = source.names().map(String::from).collect();
    let required: Vec<&str> = all.iter().map(String::as_str).collect();
    let r = modules::resolve(&mut source, &required, &[]).unwrap();
    assert_eq!(r.modules.len(), expected.len());

    let ours: BTreeMap<String, Vec<String>> = r
        .modules_dep()
        .lines()
        .map(|l| {
            let (p, list) = l.split_once(':').unwrap();
            (
                p.to_string(),
                list.split_whitespace().map(String::from).collect(),
            )
        })
        .collect();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    let mut same_order = 0;
    for (path, deps) in &ours {
        let theirs = &expected[path];
        let a: BTreeSet<_> = deps.iter().collect();
        let b: BTreeSet<_> = theirs.iter().collect();
        assert_eq!(a, b, "dependencies of {path}");
        same_order += usize::from(deps == theirs);
        // Loading from last to first never loads a module before one of
        // its own dependencies.
        let mut loaded = BTreeSet::new();
        for d in deps.iter().rev() {
            for dd in &ours[d] {
                assert!(
                    loaded.contains(dd),
                    "{path}: {d} listed after its dependency {dd}"
                );
            }
            loaded.insert(d.clone());
        }
    }
    eprintln!(
        "{} modules; {same_order} lines in exactly depmod's order",
        ours.len()
    );

    // depmod's soft dependencies, for the forms modprobe acts on.
    for line in softdeps {
        let mut words = line.split_whitespace().skip(1);
        let name = normalize_name(words.next().unwrap());
        let meta = &r.modules[&name];
        let mut list: Option<&Vec<String>> = None;
        for w in words {
            match w {
                "pre:" => list = Some(&meta.softdep_pre),
                "post:" => list = Some(&meta.softdep_post),
                dep => {
                    if let Some(l) = list {
                        assert!(l.contains(&normalize_name(dep)), "{line}: {dep}");
                    }
                }
            }
        }
    }
}

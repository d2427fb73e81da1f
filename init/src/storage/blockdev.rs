//! Block devices without udev: the kernel lists them, whole disks and
//! partitions alike, in /sys/class/block (`vda`, `vda1`, `nvme0n1p2`, ...),
//! each with its device numbers in `dev` and its node's name in `uevent`.
//! devtmpfs normally creates the node under /dev; berth makes it itself
//! when it is missing. [`find`] matches the manifest's device among them
//! by label, UUID or path, reading each one's superblock
//! ([`super::probe`]); [`wait`] retries until the device appears or a
//! bounded time has passed.

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_config::DeviceRef;

use super::probe::{self, Superblock};

/// Where the kernel lists block devices.
pub const SYS_CLASS_BLOCK: &str = "/sys/class/block";

/// One block device, as sysfs lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDev {
    /// Its node's name under /dev: `vda`, `vda2`, `mapper/x`.
    pub devname: String,
    /// Device numbers.
    pub major: u32,
    /// Device numbers.
    pub minor: u32,
    /// Its size in bytes.
    pub size: u64,
}

impl BlockDev {
    /// Its node under `dev` (normally /dev).
    pub fn node(&self, dev: &Path) -> PathBuf {
        dev.join(&self.devname)
    }
}

/// The block devices listed in `sys_class_block`, by name. Devices of
/// size 0 (unused loop and ram devices, empty card readers) are left out.
pub fn scan(sys_class_block: &Path) -> Vec<BlockDev> {
    let Ok(entries) = std::fs::read_dir(sys_class_block) else {
        return Vec::new();
    };
    let mut out: Vec<BlockDev> = entries
        .flatten()
        .filter_map(|e| {
            let dir = e.path();
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
            let dev = read("dev")?;
            let (major, minor) = dev.trim().split_once(':')?;
            let sectors: u64 = read("size")?.trim().parse().ok()?;
            if sectors == 0 {
                return None;
            }
            let devname = read("uevent")
                .and_then(|u| {
                    u.lines()
                        .find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_string))
                })
                .unwrap_or_else(|| e.file_name().to_string_lossy().into_owned());
            Some(BlockDev {
                devname,
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                size: sectors * 512,
            })
        })
        .collect();
    out.sort_by(|a, b| a.devname.cmp(&b.devname));
    out
}

/// Makes sure `/dev/<devname>` is the device's block node, creating it
/// (mode 0600) when devtmpfs has not.
pub fn ensure_node(d: &BlockDev, dev: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let path = d.node(dev);
    let want = nix::sys::stat::makedev(u64::from(d.major), u64::from(d.minor));
    match std::fs::metadata(&path) {
        Ok(m) if m.file_type().is_block_device() && m.rdev() == want => return Ok(path),
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is not block device {}:{}",
                path.display(),
                d.major,
                d.minor
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match nix::sys::stat::mknod(
        &path,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        want,
    ) {
        // devtmpfs made it meanwhile.
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(path),
        Err(e) => Err(e.into()),
    }
}

/// Whether a device with filesystem `sb` (if any) at node `node` is the
/// one `want` names.
pub fn matches(want: &DeviceRef, node: &Path, sb: Option<&Superblock>) -> bool {
    match want {
        DeviceRef::Label(l) => sb.and_then(|s| s.label.as_deref()) == Some(l.as_str()),
        DeviceRef::Uuid(u) => sb
            .and_then(|s| s.uuid.as_deref())
            .is_some_and(|have| have.eq_ignore_ascii_case(u)),
        DeviceRef::Path(p) => p == node,
    }
}

/// The device found for the manifest's reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its node.
    pub node: PathBuf,
    /// The filesystem on it, if berth knows it.
    pub superblock: Option<Superblock>,
    /// Other devices that matched too (the first by name wins).
    pub also: Vec<PathBuf>,
}

/// A device's node and its filesystem (if any), or why it could not be
/// read.
type Probed = (PathBuf, Result<Option<Superblock>, String>);

/// What berth has learnt about the devices it saw, by device numbers:
/// each one probed once (an unreadable one again at each look).
#[derive(Debug, Default)]
pub struct Seen {
    probed: BTreeMap<(u32, u32), Probed>,
}

impl Seen {
    /// One line per device, for the error when nothing matched:
    /// `/dev/vda1 (vfat LABEL=EFI), /dev/vda2 (no known filesystem)`.
    pub fn describe(&self) -> String {
        if self.probed.is_empty() {
            return "no block devices".into();
        }
        let mut v: Vec<String> = self
            .probed
            .values()
            .map(|(node, r)| match r {
                Ok(Some(sb)) => format!("{} ({})", node.display(), sb.describe()),
                Ok(None) => format!("{} (no known filesystem)", node.display()),
                Err(e) => format!("{} (unreadable: {e})", node.display()),
            })
            .collect();
        v.sort();
        v.join(", ")
    }
}

/// Looks for `want` among the devices listed in `sys_class_block`, with
/// nodes under `dev` (made when missing). Devices not probed before are
/// probed now (each once, as `seen` remembers).
pub fn find(
    want: &DeviceRef,
    sys_class_block: &Path,
    dev: &Path,
    seen: &mut Seen,
) -> Option<Found> {
    find_in(want, &scan(sys_class_block), seen, |d| {
        let node = ensure_node(d, dev)?;
        let sb = probe::probe_path(&node)?;
        Ok((node, sb))
    })
}

/// [`find`] over `devs`, with `open` giving a device's node and
/// filesystem.
pub fn find_in(
    want: &DeviceRef,
    devs: &[BlockDev],
    seen: &mut Seen,
    open: impl Fn(&BlockDev) -> std::io::Result<(PathBuf, Option<Superblock>)>,
) -> Option<Found> {
    let mut hits: Vec<(PathBuf, Option<Superblock>)> = Vec::new();
    for d in devs {
        let key = (d.major, d.minor);
        // Probed once; a device that could not be read is tried again.
        if !matches!(seen.probed.get(&key), Some((_, Ok(_)))) {
            let entry = match open(d) {
                Ok((node, sb)) => (node, Ok(sb)),
                Err(e) => (PathBuf::from("/dev").join(&d.devname), Err(e.to_string())),
            };
            seen.probed.insert(key, entry);
        }
        if let Some((node, Ok(sb))) = seen.probed.get(&key)
            && matches(want, node, sb.as_ref())
        {
            hits.push((node.clone(), sb.clone()));
        }
    }
    let mut hits = hits.into_iter();
    let (node, superblock) = hits.next()?;
    Some(Found {
        node,
        superblock,
        also: hits.map(|(n, _)| n).collect(),
    })
}

/// Calls `look` until it finds something or `timeout` has passed, every
/// `every`. Returns what it found and how long it took.
pub fn wait<T>(
    timeout: Duration,
    every: Duration,
    mut look: impl FnMut() -> Option<T>,
) -> (Option<T>, Duration) {
    let start = Instant::now();
    loop {
        if let Some(t) = look() {
            return (Some(t), start.elapsed());
        }
        if start.elapsed() >= timeout {
            return (None, start.elapsed());
        }
        std::thread::sleep(every.min(timeout.saturating_sub(start.elapsed())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /sys/class/block entry.
    fn entry(sys: &Path, name: &str, dev: &str, sectors: u64, devname: Option<&str>) {
        let d = sys.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("dev"), format!("{dev}\n")).unwrap();
        std::fs::write(d.join("size"), format!("{sectors}\n")).unwrap();
        let mut uevent = "MAJOR=254\n".to_string();
        if let Some(n) = devname {
            uevent += &format!("DEVNAME={n}\nDEVTYPE=partition\n");
        }
        std::fs::write(d.join("uevent"), uevent).unwrap();
    }

    #[test]
    fn scan_reads_numbers_sizes_and_names_and_skips_empty_devices() {
        let d = tempfile::tempdir().unwrap();
        entry(d.path(), "vda", "254:0", 2048, Some("vda"));
        entry(d.path(), "vda2", "254:2", 1024, Some("vda2"));
        entry(d.path(), "loop0", "7:0", 0, Some("loop0"));
        entry(d.path(), "odd", "8:1", 8, None);
        std::fs::create_dir_all(d.path().join("broken")).unwrap();
        let devs = scan(d.path());
        assert_eq!(
            devs,
            [
                BlockDev {
                    devname: "odd".into(),
                    major: 8,
                    minor: 1,
                    size: 4096
                },
                BlockDev {
                    devname: "vda".into(),
                    major: 254,
                    minor: 0,
                    size: 1 << 20
                },
                BlockDev {
                    devname: "vda2".into(),
                    major: 254,
                    minor: 2,
                    size: 512 << 10
                },
            ]
        );
        assert!(scan(&d.path().join("none")).is_empty());
    }

    #[test]
    fn references_match_by_label_uuid_or_path() {
        let sb = Superblock {
            fs: "ext4",
            uuid: Some("0b1e6a0c-5d1f-4a57-9a5e-3c2b8f6d7e10".into()),
            label: Some("berth-data".into()),
        };
        let node = Path::new("/dev/vda2");
        let l = |s: &str| DeviceRef::Label(s.into());
        assert!(matches(&l("berth-data"), node, Some(&sb)));
        // Labels are case-sensitive, as blkid's are.
        assert!(!matches(&l("BERTH-DATA"), node, Some(&sb)));
        assert!(!matches(&l("berth-data"), node, None));
        let u = DeviceRef::Uuid("0B1E6A0C-5D1F-4A57-9A5E-3C2B8F6D7E10".into());
        assert!(matches(&u, node, Some(&sb)));
        let fat = Superblock {
            fs: "vfat",
            uuid: Some("1A2B-3C4D".into()),
            label: None,
        };
        assert!(matches(
            &DeviceRef::Uuid("1a2b-3c4d".into()),
            node,
            Some(&fat)
        ));
        assert!(matches(&DeviceRef::Path("/dev/vda2".into()), node, None));
        assert!(!matches(
            &DeviceRef::Path("/dev/vda".into()),
            node,
            Some(&sb)
        ));
    }

    /// `find_in` over image files made by mkfs, standing in for devices.
    #[test]
    fn find_probes_each_device_once_and_names_what_it_saw() {
        let d = tempfile::tempdir().unwrap();
        let mkfs = |name: &str, label: &str| {
            let p = d.path().join(name);
            std::fs::File::create(&p).unwrap().set_len(4 << 20).unwrap();
            let ok = std::process::Command::new("mkfs.ext4")
                .args(["-q", "-F", "-L", label])
                .arg(&p)
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(p)
        };
        let (Some(_), Some(_)) = (mkfs("vda2", "other"), mkfs("vdb", "berth-data")) else {
            eprintln!("mkfs.ext4 not installed; skipped");
            return;
        };
        std::fs::write(d.path().join("vda"), vec![0u8; 8192]).unwrap();
        let dev = |name: &str, minor| BlockDev {
            devname: name.into(),
            major: 254,
            minor,
            size: 4 << 20,
        };
        let opened = std::cell::Cell::new(0);
        let open = |b: &BlockDev| {
            opened.set(opened.get() + 1);
            let node = d.path().join(&b.devname);
            let sb = probe::probe_path(&node)?;
            Ok((node, sb))
        };
        let mut seen = Seen::default();
        let want = DeviceRef::Label("berth-data".into());
        assert_eq!(find_in(&want, &[], &mut seen, open), None);
        assert_eq!(seen.describe(), "no block devices");

        // The disk appears with its partitions, but not yet the data disk;
        // one more device cannot be opened.
        let mut devs = vec![dev("vda", 0), dev("vda2", 2), dev("vdc", 32)];
        let open_some = |b: &BlockDev| {
            if b.devname == "vdc" {
                Err(std::io::Error::other("no medium"))
            } else {
                open(b)
            }
        };
        assert_eq!(find_in(&want, &devs, &mut seen, open_some), None);
        let p = |n: &str| d.path().join(n).display().to_string();
        assert_eq!(
            seen.describe(),
            format!(
                "/dev/vdc (unreadable: no medium), {} (no known filesystem), {} (ext4 LABEL=other UUID={})",
                p("vda"),
                p("vda2"),
                probe::probe_path(&d.path().join("vda2"))
                    .unwrap()
                    .unwrap()
                    .uuid
                    .unwrap()
            )
        );
        assert_eq!(opened.get(), 2);

        // Then it appears: found. Only the new device and the unreadable
        // one were opened again.
        devs.push(dev("vdb", 16));
        let found = find_in(&want, &devs, &mut seen, open).unwrap();
        assert_eq!(found.node, d.path().join("vdb"));
        assert_eq!(
            found.superblock.unwrap().label.as_deref(),
            Some("berth-data")
        );
        assert!(found.also.is_empty());
        assert_eq!(opened.get(), 4);

        // By path: the node's name, filesystem or not.
        let by_path = DeviceRef::Path(d.path().join("vda"));
        let found = find_in(&by_path, &devs, &mut seen, open).unwrap();
        assert_eq!((found.node, found.superblock), (d.path().join("vda"), None));
    }

    #[test]
    fn a_missing_node_is_made_and_a_wrong_one_refused() {
        let d = tempfile::tempdir().unwrap();
        let b = BlockDev {
            devname: "sub/vdz".into(),
            major: 254,
            minor: 99,
            size: 512,
        };
        std::fs::create_dir_all(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/vdz"), b"").unwrap();
        let e = ensure_node(&b, d.path()).unwrap_err();
        assert!(e.to_string().ends_with("is not block device 254:99"), "{e}");
        std::fs::remove_file(d.path().join("sub/vdz")).unwrap();
        // mknod needs CAP_MKNOD: checked only where the test has it.
        match ensure_node(&b, d.path()) {
            Ok(p) => {
                use std::os::unix::fs::MetadataExt;
                let m = std::fs::metadata(&p).unwrap();
                assert!(m.file_type().is_block_device());
                assert_eq!(m.rdev(), nix::sys::stat::makedev(254, 99));
                // A second call finds it in place.
                assert_eq!(ensure_node(&b, d.path()).unwrap(), p);
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
        }
    }

    #[test]
    fn waiting_is_bounded_and_returns_as_soon_as_found() {
        let mut n = 0;
        let (r, took) = wait(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(r, Some(3));
        assert!(took < Duration::from_secs(5));
        let (r, took) = wait(Duration::from_millis(30), Duration::from_millis(5), || {
            None::<()>
        });
        assert_eq!(r, None);
        assert!(took >= Duration::from_millis(30));
    }
}

//! Filesystem superblocks, read by berth itself (there is no blkid or udev
//! on the image): enough of ext2/3/4, vfat, XFS and Btrfs to know a
//! filesystem's type, UUID and label.
//!
//! | filesystem | where | magic | UUID | label |
//! | --- | --- | --- | --- | --- |
//! | ext2/3/4 | 1024 | `0xEF53` (LE) at +0x38 | 16 bytes at +0x68 | 16 bytes at +0x78 |
//! | vfat | 0 | `55 AA` at 510, a sane BPB, "FAT" type | volume id (LE u32) at 0x27 or 0x43 | 11 bytes at 0x2B or 0x47 |
//! | XFS | 0 | `XFSB` | 16 bytes at 32 | 12 bytes at 108 |
//! | Btrfs | 65536 | `_BHRfS_M` at +0x40 | 16 bytes at +0x20 | 256 bytes at +0x12B |
//!
//! UUIDs are written as blkid writes them: `8-4-4-4-12` lowercase hex, and
//! a FAT volume id as `XXXX-XXXX` in capitals.

use std::io::Read;
use std::path::Path;

/// How many bytes from the start of a device [`probe`] needs (the Btrfs
/// superblock is the farthest).
pub const PROBE_LEN: usize = BTRFS_AT + 0x1000;

const EXT_AT: usize = 1024;
const BTRFS_AT: usize = 0x10000;

/// A filesystem found on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Its type, as mount(2) names it: `ext4`, `ext3`, `ext2`, `vfat`,
    /// `xfs`, `btrfs`.
    pub fs: &'static str,
    /// Its UUID (for vfat, the volume id), if it has one.
    pub uuid: Option<String>,
    /// Its label, if it has one.
    pub label: Option<String>,
}

impl Superblock {
    /// Whether a filesystem of this type can be mounted as `fs` (the ext4
    /// driver mounts ext2 and ext3 too).
    pub fn mounts_as(&self, fs: &str) -> bool {
        self.fs == fs || (fs == "ext4" && self.fs.starts_with("ext"))
    }

    /// A short description: `ext4 LABEL=berth-data UUID=…`.
    pub fn describe(&self) -> String {
        let mut s = self.fs.to_string();
        if let Some(l) = &self.label {
            s += &format!(" LABEL={l}");
        }
        if let Some(u) = &self.uuid {
            s += &format!(" UUID={u}");
        }
        s
    }
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A UUID as `8-4-4-4-12` lowercase hex; `None` when it is all zeros.
fn uuid(b: &[u8]) -> Option<String> {
    if b.len() != 16 || b.iter().all(|x| *x == 0) {
        return None;
    }
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// A label field: up to the first NUL, without trailing spaces; `None` if
/// empty or not UTF-8.
fn label(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|x| *x == 0).unwrap_or(b.len());
    let s = std::str::from_utf8(&b[..end]).ok()?.trim_end_matches(' ');
    (!s.is_empty()).then(|| s.to_string())
}

/// The filesystem whose superblock starts `buf` (the first bytes of a
/// device, up to [`PROBE_LEN`]), if berth knows it.
pub fn probe(buf: &[u8]) -> Option<Superblock> {
    ext(buf)
        .or_else(|| xfs(buf))
        .or_else(|| btrfs(buf))
        .or_else(|| vfat(buf))
}

fn ext(buf: &[u8]) -> Option<Superblock> {
    let sb = buf.get(EXT_AT..EXT_AT + 0x100)?;
    if le16(sb, 0x38)? != 0xEF53 {
        return None;
    }
    let compat = le32(sb, 0x5C)?;
    let incompat = le32(sb, 0x60)?;
    // EXTENTS, 64BIT or FLEX_BG make it ext4; a journal without them, ext3.
    const HAS_JOURNAL: u32 = 0x4;
    const EXT4_INCOMPAT: u32 = 0x40 | 0x80 | 0x200;
    let fs = if incompat & EXT4_INCOMPAT != 0 {
        "ext4"
    } else if compat & HAS_JOURNAL != 0 {
        "ext3"
    } else {
        "ext2"
    };
    Some(Superblock {
        fs,
        uuid: uuid(&sb[0x68..0x78]),
        label: label(&sb[0x78..0x88]),
    })
}

fn xfs(buf: &[u8]) -> Option<Superblock> {
    if buf.get(0..4)? != b"XFSB" {
        return None;
    }
    Some(Superblock {
        fs: "xfs",
        uuid: uuid(buf.get(32..48)?),
        label: label(buf.get(108..120)?),
    })
}

fn btrfs(buf: &[u8]) -> Option<Superblock> {
    let sb = buf.get(BTRFS_AT..BTRFS_AT + 0x22B)?;
    if &sb[0x40..0x48] != b"_BHRfS_M" {
        return None;
    }
    Some(Superblock {
        fs: "btrfs",
        uuid: uuid(&sb[0x20..0x30]),
        label: label(&sb[0x12B..0x22B]),
    })
}

fn vfat(buf: &[u8]) -> Option<Superblock> {
    if buf.get(510..512)? != [0x55, 0xAA] {
        return None;
    }
    // A sane BIOS parameter block, so that an MBR (also 55 AA) is not taken
    // for a filesystem.
    let bytes_per_sector = le16(buf, 0x0B)?;
    let per_cluster = buf[0x0D];
    let reserved = le16(buf, 0x0E)?;
    let fats = buf[0x10];
    if !(512..=4096).contains(&bytes_per_sector)
        || !bytes_per_sector.is_power_of_two()
        || !per_cluster.is_power_of_two()
        || reserved == 0
        || !(1..=4).contains(&fats)
    {
        return None;
    }
    // FAT32 has no 16-bit FAT size; its extended BPB sits further on.
    let (sig, id, name, kind) = if le16(buf, 0x16)? == 0 {
        (0x42, 0x43, 0x47, 0x52)
    } else {
        (0x26, 0x27, 0x2B, 0x36)
    };
    if !buf.get(kind..kind + 8)?.starts_with(b"FAT") {
        return None;
    }
    // The volume id and label are there only with the extended signature.
    let extended = buf[sig] == 0x29;
    let uuid = extended
        .then(|| le32(buf, id))
        .flatten()
        .map(|v| format!("{:04X}-{:04X}", v >> 16, v & 0xffff));
    let label = extended
        .then(|| label(&buf[name..name + 11]))
        .flatten()
        .filter(|l| l != "NO NAME");
    Some(Superblock {
        fs: "vfat",
        uuid,
        label,
    })
}

/// Probes the device (or image file) at `path`: reads its first
/// [`PROBE_LEN`] bytes (fewer if it is smaller).
pub fn probe_path(path: &Path) -> std::io::Result<Option<Superblock>> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(PROBE_LEN);
    f.by_ref().take(PROBE_LEN as u64).read_to_end(&mut buf)?;
    Ok(probe(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A file of `mib` MiB made by `tool` (mkfs.ext4, mkfs.vfat) with
    /// `args`, or `None` when the tool is missing (it is in e2fsprogs and
    /// dosfstools, which scripts/install-deps installs).
    fn mkfs(dir: &Path, tool: &str, args: &[&str], mib: u64) -> Option<std::path::PathBuf> {
        let path = dir.join(format!("{tool}.img"));
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(mib << 20).unwrap();
        let out = match Command::new(tool).args(args).arg(&path).output() {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("{tool} not installed; skipped");
                return None;
            }
            Err(e) => panic!("{tool}: {e}"),
        };
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(path)
    }

    #[test]
    fn ext4_made_by_mkfs_has_its_label_and_uuid() {
        let d = tempfile::tempdir().unwrap();
        let uuid = "0b1e6a0c-5d1f-4a57-9a5e-3c2b8f6d7e10";
        let Some(img) = mkfs(
            d.path(),
            "mkfs.ext4",
            &["-q", "-F", "-L", "berth-data", "-U", uuid],
            8,
        ) else {
            return;
        };
        let sb = probe_path(&img).unwrap().unwrap();
        assert_eq!(
            sb,
            Superblock {
                fs: "ext4",
                uuid: Some(uuid.into()),
                label: Some("berth-data".into()),
            }
        );
        assert!(sb.mounts_as("ext4"));
        assert!(!sb.mounts_as("xfs"));
        assert_eq!(sb.describe(), format!("ext4 LABEL=berth-data UUID={uuid}"));
    }

    #[test]
    fn ext2_and_ext3_are_told_apart_and_mount_as_ext4() {
        let d = tempfile::tempdir().unwrap();
        let Some(img) = mkfs(d.path(), "mkfs.ext4", &["-q", "-F", "-t", "ext2"], 4) else {
            return;
        };
        let sb = probe_path(&img).unwrap().unwrap();
        assert_eq!((sb.fs, sb.label.as_deref()), ("ext2", None));
        assert!(sb.mounts_as("ext4"));
        let Some(img) = mkfs(d.path(), "mkfs.ext4", &["-q", "-F", "-t", "ext3"], 4) else {
            return;
        };
        assert_eq!(probe_path(&img).unwrap().unwrap().fs, "ext3");
    }

    #[test]
    fn vfat_made_by_mkfs_has_its_label_and_volume_id() {
        let d = tempfile::tempdir().unwrap();
        // FAT32 (-F 32) and FAT16 (-F 16) keep the id and label in
        // different places.
        for (bits, mib) in [("32", 40), ("16", 8), ("12", 2)] {
            let Some(img) = mkfs(
                d.path(),
                "mkfs.vfat",
                &["-F", bits, "-s", "1", "-n", "BERTHCFG", "-i", "1A2B3C4D"],
                mib,
            ) else {
                return;
            };
            let sb = probe_path(&img).unwrap().unwrap();
            assert_eq!(
                sb,
                Superblock {
                    fs: "vfat",
                    uuid: Some("1A2B-3C4D".into()),
                    label: Some("BERTHCFG".into()),
                },
                "FAT{bits}"
            );
            std::fs::remove_file(img).unwrap();
        }
        // Without -n, the label is "NO NAME": none.
        let Some(img) = mkfs(d.path(), "mkfs.vfat", &["-i", "00000001"], 8) else {
            return;
        };
        let sb = probe_path(&img).unwrap().unwrap();
        assert_eq!(sb.label, None);
        assert_eq!(sb.uuid.as_deref(), Some("0000-0001"));
    }

    #[test]
    fn xfs_and_btrfs_superblocks_are_read() {
        let mut b = vec![0u8; PROBE_LEN];
        b[0..4].copy_from_slice(b"XFSB");
        b[32..48].copy_from_slice(&[0x11; 16]);
        b[108..113].copy_from_slice(b"state");
        let sb = probe(&b).unwrap();
        assert_eq!(sb.fs, "xfs");
        assert_eq!(
            sb.uuid.as_deref(),
            Some("11111111-1111-1111-1111-111111111111")
        );
        assert_eq!(sb.label.as_deref(), Some("state"));

        let mut b = vec![0u8; PROBE_LEN];
        let sb_at = BTRFS_AT;
        b[sb_at + 0x40..sb_at + 0x48].copy_from_slice(b"_BHRfS_M");
        b[sb_at + 0x20] = 0xab;
        b[sb_at + 0x12B..sb_at + 0x12B + 4].copy_from_slice(b"pool");
        let sb = probe(&b).unwrap();
        assert_eq!(sb.fs, "btrfs");
        assert_eq!(
            sb.uuid.as_deref(),
            Some("ab000000-0000-0000-0000-000000000000")
        );
        assert_eq!(sb.label.as_deref(), Some("pool"));
    }

    #[test]
    fn blank_short_and_partitioned_devices_have_no_filesystem() {
        assert_eq!(probe(&[]), None);
        assert_eq!(probe(&vec![0u8; PROBE_LEN]), None);
        // An MBR: 55 AA, but no BIOS parameter block.
        let mut mbr = vec![0u8; 4096];
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        mbr[446 + 4] = 0xEE;
        assert_eq!(probe(&mbr), None);
        // An ext4 image cut before its superblock ends.
        let d = tempfile::tempdir().unwrap();
        if let Some(img) = mkfs(d.path(), "mkfs.ext4", &["-q", "-F"], 4) {
            let full = std::fs::read(&img).unwrap();
            assert!(probe(&full[..1100]).is_none());
            assert!(probe(&full[..PROBE_LEN]).is_some());
        }
    }
}

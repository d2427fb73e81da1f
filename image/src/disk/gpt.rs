//! The GUID partition table: written from a [`Layout`] and read back.
//!
//! A disk of `n` 512-byte sectors gets, per the UEFI specification (5.3):
//! - LBA 0: a protective MBR, one partition of type `0xEE` over the disk;
//! - LBA 1: the primary header; LBA 2-33: the 128 partition entries of 128
//!   bytes each;
//! - LBA `n-33` to `n-2`: the backup entries; LBA `n-1`: the backup header.
//!
//! Both headers carry the CRC32 of themselves and of the entry array.
//! [`Gpt::parse`] checks everything [`write()`] promises (signatures, CRCs,
//! both headers agreeing, partitions inside the usable area and apart), so
//! tests can read the builder's output back.

use std::fmt;

/// The sector size the table is laid out in.
pub const SECTOR: u64 = 512;
/// Partition entries in each array.
pub const ENTRIES: u32 = 128;
/// Bytes per partition entry.
pub const ENTRY_SIZE: u32 = 128;
/// Sectors taken by one entry array (128 × 128 bytes = 32 sectors).
pub const ENTRY_SECTORS: u64 = (ENTRIES as u64 * ENTRY_SIZE as u64) / SECTOR;
/// The header's size in bytes.
const HEADER_SIZE: u32 = 92;
/// "EFI PART".
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Revision 1.0.
const REVISION: u32 = 0x0001_0000;

/// A GUID, stored as its 16 bytes in on-disk (mixed-endian) order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The EFI system partition's type GUID.
    pub const ESP: Guid = Guid::from_fields(
        0xC12A_7328,
        0xF81F,
        0x11D2,
        [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B],
    );
    /// The Linux filesystem data partition type GUID.
    pub const LINUX_DATA: Guid = Guid::from_fields(
        0x0FC6_3DAF,
        0x8483,
        0x4772,
        [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4],
    );

    /// The GUID `d1-d2-d3-d4[0..2]-d4[2..8]`, as written in text.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// A GUID made of 16 bytes of a hash, with the RFC 4122 version (4)
    /// and variant bits set, so that tools take it for an ordinary one.
    pub fn from_hash(bytes: [u8; 16]) -> Guid {
        let mut u = bytes;
        // The text form's byte 6 (version) and 8 (variant) are the
        // on-disk bytes 7 and 8: the third field is little-endian.
        let (d1, d2, d3) = (
            u32::from_be_bytes([u[0], u[1], u[2], u[3]]),
            u16::from_be_bytes([u[4], u[5]]),
            (u16::from_be_bytes([u[6], u[7]]) & 0x0fff) | 0x4000,
        );
        u[8] = (u[8] & 0x3f) | 0x80;
        let mut d4 = [0u8; 8];
        d4.copy_from_slice(&u[8..16]);
        Guid::from_fields(d1, d2, d3, d4)
    }

    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (any case).
    pub fn parse(s: &str) -> Option<Guid> {
        let parts: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        if lens != [8, 4, 4, 4, 12] || !s.chars().all(|c| c == '-' || c.is_ascii_hexdigit()) {
            return None;
        }
        let d1 = u32::from_str_radix(parts[0], 16).ok()?;
        let d2 = u16::from_str_radix(parts[1], 16).ok()?;
        let d3 = u16::from_str_radix(parts[2], 16).ok()?;
        let tail = format!("{}{}", parts[3], parts[4]);
        let mut d4 = [0u8; 8];
        for (i, b) in d4.iter_mut().enumerate() {
            *b = u8::from_str_radix(&tail[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Guid::from_fields(d1, d2, d3, d4))
    }

    /// The 16 bytes in text order (big-endian fields), as filesystem UUIDs
    /// (ext4's `s_uuid`) store them.
    pub fn text_order_bytes(&self) -> [u8; 16] {
        let u = self.0;
        [
            u[3], u[2], u[1], u[0], u[5], u[4], u[7], u[6], u[8], u[9], u[10], u[11], u[12], u[13],
            u[14], u[15],
        ]
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.text_order_bytes();
        for (i, b) in t.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its type.
    pub type_guid: Guid,
    /// Its own GUID (`PARTUUID`).
    pub guid: Guid,
    /// Its first sector.
    pub first_lba: u64,
    /// Its last sector (inclusive).
    pub last_lba: u64,
    /// Its name (`PARTLABEL`), at most 36 UTF-16 code units.
    pub name: String,
}

impl Partition {
    /// Its offset in bytes.
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }
}

/// A disk's partition table, as [`write()`] lays it out and [`Gpt::parse`]
/// finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The disk's size in sectors.
    pub sectors: u64,
    /// The disk GUID.
    pub disk_guid: Guid,
    /// The partitions, in entry order.
    pub partitions: Vec<Partition>,
}

impl Layout {
    /// The first sector a partition may use.
    pub fn first_usable(&self) -> u64 {
        2 + ENTRY_SECTORS
    }

    /// The last sector a partition may use.
    pub fn last_usable(&self) -> u64 {
        self.sectors - 2 - ENTRY_SECTORS
    }
}

/// Why a table cannot be written or read.
#[derive(Debug, displaydoc::Display, thiserror::Error, PartialEq, Eq)]
pub enum GptError {
    /// {0}
    Invalid(String),
}

fn invalid(s: impl Into<String>) -> GptError {
    GptError::Invalid(s.into())
}

/// The regions to write: `(byte offset, bytes)`, the protective MBR and
/// primary table first, then the backup entries and header at the end.
pub fn write(layout: &Layout) -> Result<Vec<(u64, Vec<u8>)>, GptError> {
    check(layout)?;
    let n = layout.sectors;
    let entries = entry_array(&layout.partitions)?;
    let entries_crc = crc32fast::hash(&entries);
    let primary = header(layout, 1, n - 1, 2, entries_crc);
    let backup_entries_lba = n - 1 - ENTRY_SECTORS;
    let backup = header(layout, n - 1, 1, backup_entries_lba, entries_crc);

    let mut head = protective_mbr(n);
    head.extend_from_slice(&primary);
    head.extend_from_slice(&entries);
    let mut tail = entries;
    tail.extend_from_slice(&backup);
    Ok(vec![(0, head), (backup_entries_lba * SECTOR, tail)])
}

fn check(layout: &Layout) -> Result<(), GptError> {
    if layout.sectors < 2 * (2 + ENTRY_SECTORS) + 1 {
        return Err(invalid(format!(
            "a disk of {} sectors is too small for a GPT",
            layout.sectors
        )));
    }
    if layout.partitions.len() > ENTRIES as usize {
        return Err(invalid("more than 128 partitions"));
    }
    let (lo, hi) = (layout.first_usable(), layout.last_usable());
    let mut spans: Vec<(u64, u64, &str)> = Vec::new();
    for p in &layout.partitions {
        if p.first_lba < lo || p.last_lba > hi || p.first_lba > p.last_lba {
            return Err(invalid(format!(
                "partition {:?} spans sectors {}-{}, outside the usable {lo}-{hi}",
                p.name, p.first_lba, p.last_lba
            )));
        }
        if p.type_guid == Guid::default() {
            return Err(invalid(format!("partition {:?} has no type", p.name)));
        }
        if let Some((_, _, other)) = spans
            .iter()
            .find(|(a, b, _)| p.first_lba <= *b && *a <= p.last_lba)
        {
            return Err(invalid(format!(
                "partitions {other:?} and {:?} overlap",
                p.name
            )));
        }
        spans.push((p.first_lba, p.last_lba, &p.name));
    }
    Ok(())
}

fn protective_mbr(sectors: u64) -> Vec<u8> {
    let mut mbr = vec![0u8; SECTOR as usize];
    let size = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    let e = &mut mbr[446..462];
    e[0] = 0x00; // not bootable
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    e[4] = 0xEE; // GPT protective
    e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]); // CHS: beyond reach
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    e[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr
}

fn entry_array(partitions: &[Partition]) -> Result<Vec<u8>, GptError> {
    let mut out = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in partitions.iter().enumerate() {
        let e = &mut out[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.type_guid.0);
        e[16..32].copy_from_slice(&p.guid.0);
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        // Attributes (48..56): none.
        let name: Vec<u16> = p.name.encode_utf16().collect();
        if name.len() > 36 {
            return Err(invalid(format!(
                "partition name {:?} is longer than 36 UTF-16 units",
                p.name
            )));
        }
        for (j, unit) in name.iter().enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
        }
    }
    Ok(out)
}

fn header(layout: &Layout, my_lba: u64, alternate: u64, entries_lba: u64, crc: u32) -> Vec<u8> {
    let mut h = vec![0u8; SECTOR as usize];
    h[0..8].copy_from_slice(SIGNATURE);
    h[8..12].copy_from_slice(&REVISION.to_le_bytes());
    h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
    // 16..20: the header's CRC, computed below with the field zeroed.
    h[24..32].copy_from_slice(&my_lba.to_le_bytes());
    h[32..40].copy_from_slice(&alternate.to_le_bytes());
    h[40..48].copy_from_slice(&layout.first_usable().to_le_bytes());
    h[48..56].copy_from_slice(&layout.last_usable().to_le_bytes());
    h[56..72].copy_from_slice(&layout.disk_guid.0);
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&ENTRIES.to_le_bytes());
    h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
    h[88..92].copy_from_slice(&crc.to_le_bytes());
    let header_crc = crc32fast::hash(&h[..HEADER_SIZE as usize]);
    h[16..20].copy_from_slice(&header_crc.to_le_bytes());
    h
}

/// A table read back from a disk image, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// What it describes.
    pub layout: Layout,
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn guid_at(b: &[u8], at: usize) -> Guid {
    let mut g = [0u8; 16];
    g.copy_from_slice(&b[at..at + 16]);
    Guid(g)
}

/// One header, checked on its own.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    my_lba: u64,
    alternate: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: Guid,
    entries_lba: u64,
    entries_crc: u32,
}

fn read_header(sector: &[u8], which: &str) -> Result<Header, GptError> {
    if &sector[0..8] != SIGNATURE {
        return Err(invalid(format!(
            "{which} header: no \"EFI PART\" signature"
        )));
    }
    if le32(sector, 8) != REVISION || le32(sector, 12) != HEADER_SIZE {
        return Err(invalid(format!(
            "{which} header: revision {:#x}, size {}",
            le32(sector, 8),
            le32(sector, 12)
        )));
    }
    let mut h = sector[..HEADER_SIZE as usize].to_vec();
    let stored = le32(&h, 16);
    h[16..20].fill(0);
    let actual = crc32fast::hash(&h);
    if stored != actual {
        return Err(invalid(format!(
            "{which} header: CRC32 {stored:#010x}, computed {actual:#010x}"
        )));
    }
    if sector[HEADER_SIZE as usize..].iter().any(|&b| b != 0) || le32(sector, 20) != 0 {
        return Err(invalid(format!("{which} header: reserved bytes not zero")));
    }
    if le32(sector, 80) != ENTRIES || le32(sector, 84) != ENTRY_SIZE {
        return Err(invalid(format!(
            "{which} header: {} entries of {} bytes",
            le32(sector, 80),
            le32(sector, 84)
        )));
    }
    Ok(Header {
        my_lba: le64(sector, 24),
        alternate: le64(sector, 32),
        first_usable: le64(sector, 40),
        last_usable: le64(sector, 48),
        disk_guid: guid_at(sector, 56),
        entries_lba: le64(sector, 72),
        entries_crc: le32(sector, 88),
    })
}

impl Gpt {
    /// Reads and checks the table of the whole disk image `disk`: the
    /// protective MBR, both headers with their CRCs, both entry arrays, and
    /// that each header names the other and that the partitions lie in the
    /// usable area, apart from each other.
    pub fn parse(disk: &[u8]) -> Result<Gpt, GptError> {
        let len = disk.len() as u64;
        if !len.is_multiple_of(SECTOR) || len < (2 * (2 + ENTRY_SECTORS) + 1) * SECTOR {
            return Err(invalid(format!(
                "{len} bytes: not a whole number of sectors, or too small"
            )));
        }
        let n = len / SECTOR;
        let sector = |lba: u64| &disk[(lba * SECTOR) as usize..((lba + 1) * SECTOR) as usize];
        let array =
            |lba: u64| &disk[(lba * SECTOR) as usize..((lba + ENTRY_SECTORS) * SECTOR) as usize];

        let mbr = sector(0);
        if mbr[510..512] != [0x55, 0xAA] {
            return Err(invalid("protective MBR: no 55AA signature"));
        }
        let e = &mbr[446..462];
        let size = u32::try_from(n - 1).unwrap_or(u32::MAX);
        if e[4] != 0xEE || le32(e, 8) != 1 || le32(e, 12) != size {
            return Err(invalid(format!(
                "protective MBR: type {:#04x} from {} for {} sectors",
                e[4],
                le32(e, 8),
                le32(e, 12)
            )));
        }
        if mbr[462..510].iter().any(|&b| b != 0) {
            return Err(invalid("protective MBR: more than one partition"));
        }

        let primary = read_header(sector(1), "primary")?;
        let backup = read_header(sector(n - 1), "backup")?;
        if primary.my_lba != 1 || primary.alternate != n - 1 || primary.entries_lba != 2 {
            return Err(invalid(format!("primary header: {primary:?}")));
        }
        if backup.my_lba != n - 1 || backup.alternate != 1 || backup.entries_lba != n - 33 {
            return Err(invalid(format!("backup header: {backup:?}")));
        }
        let same = |p: &Header, b: &Header| {
            (p.first_usable, p.last_usable, p.disk_guid, p.entries_crc)
                == (b.first_usable, b.last_usable, b.disk_guid, b.entries_crc)
        };
        if !same(&primary, &backup) {
            return Err(invalid(format!(
                "the headers disagree: {primary:?} and {backup:?}"
            )));
        }
        let entries = array(primary.entries_lba);
        for (which, lba) in [("", primary.entries_lba), ("backup ", backup.entries_lba)] {
            let crc = crc32fast::hash(array(lba));
            if crc != primary.entries_crc {
                return Err(invalid(format!(
                    "{which}entries CRC32 {:#010x}, computed {crc:#010x}",
                    primary.entries_crc
                )));
            }
        }
        if array(backup.entries_lba) != entries {
            return Err(invalid("the backup entries differ from the primary ones"));
        }

        let mut partitions = Vec::new();
        for e in entries.chunks(ENTRY_SIZE as usize) {
            let type_guid = guid_at(e, 0);
            if type_guid == Guid::default() {
                continue;
            }
            let units: Vec<u16> = e[56..128]
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&u| u != 0)
                .collect();
            partitions.push(Partition {
                type_guid,
                guid: guid_at(e, 16),
                first_lba: le64(e, 32),
                last_lba: le64(e, 40),
                name: String::from_utf16_lossy(&units),
            });
        }
        let layout = Layout {
            sectors: n,
            disk_guid: primary.disk_guid,
            partitions,
        };
        if (primary.first_usable, primary.last_usable)
            != (layout.first_usable(), layout.last_usable())
        {
            return Err(invalid(format!(
                "usable sectors {}-{}, expected {}-{}",
                primary.first_usable,
                primary.last_usable,
                layout.first_usable(),
                layout.last_usable()
            )));
        }
        check(&layout)?;
        Ok(Gpt { layout })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(layout: &Layout) -> Vec<u8> {
        let mut d = vec![0u8; (layout.sectors * SECTOR) as usize];
        for (at, bytes) in write(layout).expect("write") {
            d[at as usize..at as usize + bytes.len()].copy_from_slice(&bytes);
        }
        d
    }

    fn sample() -> Layout {
        Layout {
            sectors: 8192,
            disk_guid: Guid::from_hash([1; 16]),
            partitions: vec![
                Partition {
                    type_guid: Guid::ESP,
                    guid: Guid::from_hash([2; 16]),
                    first_lba: 2048,
                    last_lba: 4095,
                    name: "berth-efi".into(),
                },
                Partition {
                    type_guid: Guid::LINUX_DATA,
                    guid: Guid::from_hash([3; 16]),
                    first_lba: 4096,
                    last_lba: 6143,
                    name: "berth-data".into(),
                },
            ],
        }
    }

    #[test]
    fn type_guids_print_as_the_specification_writes_them() {
        assert_eq!(
            Guid::ESP.to_string(),
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
        );
        assert_eq!(
            Guid::LINUX_DATA.to_string(),
            "0fc63daf-8483-4772-8e79-3d69d8477de4"
        );
        // On disk the first three fields are little-endian.
        assert_eq!(&Guid::ESP.0[..4], &[0x28, 0x73, 0x2A, 0xC1]);
        assert_eq!(Guid::parse(&Guid::ESP.to_string()), Some(Guid::ESP));
        assert_eq!(
            Guid::parse("0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
            Some(Guid::LINUX_DATA)
        );
        assert_eq!(Guid::parse("0fc63daf-8483-4772-8e79"), None);
        assert_eq!(Guid::parse("0fc63daf-8483-4772-8e79-3d69d8477dez"), None);
    }

    #[test]
    fn hashed_guids_are_version_4_rfc_4122() {
        let g = Guid::from_hash([0xff; 16]).to_string();
        assert_eq!(&g[14..15], "4", "{g}");
        assert!(matches!(&g[19..20], "8" | "9" | "a" | "b"), "{g}");
        assert_ne!(Guid::from_hash([1; 16]), Guid::from_hash([2; 16]));
    }

    #[test]
    fn a_written_table_reads_back_the_same() {
        let layout = sample();
        let d = disk(&layout);
        let gpt = Gpt::parse(&d).expect("parse");
        assert_eq!(gpt.layout, layout);
        // The backup header sits in the last sector, its entries before it.
        assert_eq!(&d[d.len() - 512..d.len() - 504], b"EFI PART");
        assert_eq!(d[(8192 - 33) * 512..(8192 - 1) * 512], d[2 * 512..34 * 512]);
        assert_eq!(layout.partitions[1].offset(), 4096 * 512);
        assert_eq!(layout.partitions[1].size(), 2048 * 512);
    }

    #[test]
    fn corruption_anywhere_is_caught() {
        let d = disk(&sample());
        for (at, what) in [
            (510, "55AA"),
            (512 + 3, "signature"),
            (512 + 40, "CRC32"),
            (2 * 512 + 20, "entries CRC32"),
            (8191 * 512 + 40, "CRC32"),
            ((8192 - 33) * 512 + 20, "backup entries"),
        ] {
            let mut bad = d.clone();
            bad[at] ^= 0x40;
            let e = Gpt::parse(&bad).expect_err(what).to_string();
            assert!(e.contains(what), "byte {at}: {e}");
        }
        assert!(Gpt::parse(&d[..d.len() - 512]).is_err(), "truncated");
    }

    #[test]
    fn overlapping_or_out_of_range_partitions_are_refused() {
        let mut l = sample();
        l.partitions[1].first_lba = 4000;
        assert!(
            write(&l)
                .expect_err("overlap")
                .to_string()
                .contains("overlap")
        );
        let mut l = sample();
        l.partitions[1].last_lba = 8192 - 33;
        assert!(write(&l).expect_err("range").to_string().contains("usable"));
        let mut l = sample();
        l.partitions[0].name = "x".repeat(37);
        assert!(write(&l).expect_err("name").to_string().contains("36"));
    }
}

//! The flashable disk image: `OUTDIR/disk.img`, a raw GPT disk that a
//! UEFI machine boots, holding berth's kernel and initramfs and an empty
//! ext4 data partition.
//!
//! | # | partition | type GUID | start | size | filesystem |
//! | --- | --- | --- | --- | --- | --- |
//! | 1 | `berth-efi` (ESP) | `C12A7328-F81F-11D2-BA4B-00A0C93EC93B` | 1 MiB | [`esp_size`]: at least 64 MiB | FAT32 `BERTH-EFI` |
//! | 2 | the data label | `0FC63DAF-8483-4772-8E79-3D69D8477DE4` | after the ESP | the rest, to the last whole MiB | ext4, the manifest's label |
//!
//! The ESP boots with systemd-boot (Debian's `systemd-boot-efi`) as the
//! removable-media loader `\EFI\BOOT\BOOTX64.EFI`; its one entry
//! (`/loader/entries/berth.conf`) loads `/berth/vmlinuz` with
//! `/berth/initramfs.img` and the image's kernel command line. Why
//! systemd-boot and not a unified kernel image: the kernel, initramfs and
//! command line stay plain files that can be checked or swapped on the ESP
//! with mtools, and nothing has to be linked into a PE binary at build time.
//!
//! Nothing here needs root, a loop device or a mount: [`gpt`] writes the
//! partition table, [`fs`] makes each filesystem in an image file of its
//! own with Debian's tools, and [`write()`] copies both into the disk file at
//! their offsets, leaving holes where they hold zeros. The disk appears
//! atomically (written under a temporary name, then renamed).
//!
//! Reproducible: every GUID and UUID, and the FAT volume ID, come from a
//! hash of the inputs ([`DiskOptions::seed`]), unless the manifest names
//! the data filesystem by `UUID=`, which is then used; every timestamp is
//! `SOURCE_DATE_EPOCH` (or 0), raised to 1980-01-01, the earliest FAT can
//! hold (mke2fs also takes a fake time of 0 for "none"). Two builds from the
//! same inputs give the same bytes.

pub mod fs;
pub mod gpt;

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::Progress;
use gpt::{Guid, Layout, Partition, SECTOR};

/// The file name of the disk image in the output directory.
pub const DISK_FILE: &str = "disk.img";
/// The default disk size: 256 MiB.
pub const DEFAULT_SIZE: u64 = 256 * MIB;
/// The smallest ESP made: FAT32 needs about 33 MiB, and this leaves room.
pub const ESP_MIN: u64 = 64 * MIB;
/// The smallest data partition accepted.
pub const DATA_MIN: u64 = 16 * MIB;
/// Partitions start and end on whole MiB.
pub const ALIGN: u64 = MIB;
/// The data filesystem's label when the manifest names none.
pub const DEFAULT_LABEL: &str = "berth-data";
/// The ESP's FAT volume label.
pub const ESP_LABEL: &str = "BERTH-EFI";
/// The ESP's GPT partition name.
pub const ESP_NAME: &str = "berth-efi";
/// Where Debian's `systemd-boot-efi` package puts the boot loader.
pub const SYSTEMD_BOOT: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// The loader entry's file name, under `/loader/entries/` on the ESP.
pub const ENTRY: &str = "berth.conf";
/// The earliest time FAT can record: 1980-01-01T00:00:00Z.
pub const FAT_EPOCH: u32 = 315_532_800;
/// ext4 labels are at most 16 bytes.
pub const EXT4_LABEL_MAX: usize = 16;

const MIB: u64 = 1024 * 1024;

/// Why a disk image could not be made.
#[derive(Debug, displaydoc::Display, thiserror::Error)]
pub enum DiskError {
    /// disk size: {0}
    BadSize(String),
    /// disk size {0} bytes is not a whole number of MiB
    Unaligned(u64),
    /// disk size {size} is too small: {detail}; use --disk-size {need}M or more
    TooSmall {
        /// The size asked for, e.g. "64 MiB".
        size: String,
        /// What needs the room.
        detail: String,
        /// The smallest size that fits, in MiB.
        need: u64,
    },
    /// the data partition's label {0:?} is longer than 16 bytes (ext4's limit): shorten host.storage.data.device
    LabelTooLong(String),
    /// host.storage.data.device names UUID={0}, which is no full UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx): the disk's ext4 filesystem needs one
    BadUuid(String),
    /// host.storage.data.fs is {0}, but the disk image's data partition is ext4
    NotExt4(String),
    /// {tool} not found (in PATH, /usr/sbin, /sbin): run scripts/install-deps
    NoTool {
        /// The missing program.
        tool: &'static str,
    },
    /// no boot loader at {0}: install Debian's systemd-boot-efi (scripts/install-deps)
    NoBootLoader(PathBuf),
    /// cannot run {command}: {source}
    Spawn {
        /// The command line.
        command: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// {command} failed ({status}): {stderr}
    ToolFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
    /// {0} is not valid UTF-8, which the filesystem tools need
    NonUtf8Path(PathBuf),
    /// cannot {action} {path}: {source}
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// partition table: {0}
    Gpt(#[from] gpt::GptError),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DiskError {
    let path = path.to_owned();
    move |source| DiskError::Io {
        action,
        path,
        source,
    }
}

/// Parses a size as the manifest does ([`berth_config::parse_size`]):
/// bytes, or a number with a binary unit (`256M`, `1GiB`).
pub fn parse_size(s: &str) -> Result<u64, DiskError> {
    berth_config::parse_size(s).map_err(|e| DiskError::BadSize(e.to_string()))
}

/// What the data partition is called, from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSettings {
    /// The ext4 label (and GPT partition name).
    pub label: String,
    /// The ext4 UUID, when the manifest names the device by `UUID=`.
    pub uuid: Option<Guid>,
}

/// The data partition's label and UUID for a manifest's `[host.storage]`:
/// `LABEL=x` gives the label `x`; `UUID=u` gives the UUID `u` and the label
/// [`DEFAULT_LABEL`]; a device path, or no data device, gives
/// [`DEFAULT_LABEL`]. A data filesystem other than ext4 is refused.
pub fn data_settings(storage: &berth_config::Storage) -> Result<DataSettings, DiskError> {
    use berth_config::{DeviceRef, Filesystem};
    let mut settings = DataSettings {
        label: DEFAULT_LABEL.to_owned(),
        uuid: None,
    };
    let Some(data) = &storage.data else {
        return Ok(settings);
    };
    if data.fs != Filesystem::Ext4 {
        return Err(DiskError::NotExt4(data.fs.as_str().to_owned()));
    }
    match &data.device {
        DeviceRef::Label(l) => {
            if l.len() > EXT4_LABEL_MAX {
                return Err(DiskError::LabelTooLong(l.clone()));
            }
            settings.label = l.clone();
        }
        DeviceRef::Uuid(u) => {
            settings.uuid = Some(Guid::parse(u).ok_or_else(|| DiskError::BadUuid(u.clone()))?);
        }
        DeviceRef::Path(_) => {}
    }
    Ok(settings)
}

/// What goes into a disk image.
#[derive(Debug, Clone)]
pub struct DiskOptions {
    /// Where the image goes (`OUTDIR/disk.img`).
    pub out: PathBuf,
    /// The disk's size in bytes: a whole number of MiB.
    pub size: u64,
    /// The kernel.
    pub vmlinuz: PathBuf,
    /// The initramfs.
    pub initramfs: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// The kernel's release, shown in the boot menu.
    pub kernel_version: Option<String>,
    /// The data partition's label and UUID.
    pub data: DataSettings,
    /// The EFI boot loader ([`SYSTEMD_BOOT`]).
    pub boot_loader: PathBuf,
    /// Every timestamp (raised to [`FAT_EPOCH`]).
    pub mtime: u32,
}

/// What [`write()`] made.
#[derive(Debug, Clone)]
pub struct DiskReport {
    /// The image.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The partition table.
    pub layout: Layout,
    /// The ESP's FAT volume ID.
    pub esp_volume_id: u32,
    /// The data filesystem's UUID.
    pub data_uuid: Guid,
    /// The data filesystem's label.
    pub data_label: String,
}

impl DiskReport {
    /// The EFI system partition.
    pub fn esp(&self) -> &Partition {
        &self.layout.partitions[0]
    }

    /// The data partition.
    pub fn data(&self) -> &Partition {
        &self.layout.partitions[1]
    }
}

impl std::fmt::Display for DiskReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |n: u64| n / MIB;
        write!(
            f,
            "disk      {} MiB GPT {}: ESP {} MiB (FAT32 {ESP_LABEL}), data {} MiB (ext4 LABEL={} UUID={})  {}",
            mib(self.size),
            self.layout.disk_guid,
            mib(self.esp().size()),
            mib(self.data().size()),
            self.data_label,
            self.data_uuid,
            self.path.display()
        )
    }
}

/// The ESP size for a payload of `payload` bytes (kernel, initramfs, boot
/// loader): room for it twice, so that an update can write new files
/// beside the old ones before removing them, plus 4 MiB for the FAT and
/// small files; at least [`ESP_MIN`]; a whole number of MiB.
pub fn esp_size(payload: u64) -> u64 {
    let want = payload.saturating_mul(2).saturating_add(4 * MIB);
    want.div_ceil(ALIGN).saturating_mul(ALIGN).max(ESP_MIN)
}

/// The partition table for a disk of `size` bytes whose ESP needs
/// `esp_bytes`: the ESP at 1 MiB, the data partition after it up to the
/// last whole MiB before the backup table.
pub fn layout(
    size: u64,
    esp_bytes: u64,
    seed: &[u8; 32],
    label: &str,
) -> Result<Layout, DiskError> {
    if !size.is_multiple_of(ALIGN) {
        return Err(DiskError::Unaligned(size));
    }
    let need = ALIGN + esp_bytes + DATA_MIN + ALIGN;
    if size < need {
        return Err(DiskError::TooSmall {
            size: format!("{} MiB", size / MIB),
            detail: format!(
                "the EFI system partition takes {} MiB and the data partition needs at least {} MiB, \
                 besides 2 MiB for the partition tables",
                esp_bytes / MIB,
                DATA_MIN / MIB
            ),
            need: need.div_ceil(MIB),
        });
    }
    let sectors = size / SECTOR;
    let align = ALIGN / SECTOR;
    let esp_first = align;
    let esp_last = esp_first + esp_bytes / SECTOR - 1;
    let data_first = esp_last + 1;
    // The backup entries take the last 33 sectors: end at the MiB below.
    let data_end = (sectors - 1 - gpt::ENTRY_SECTORS) / align * align;
    Ok(Layout {
        sectors,
        disk_guid: Guid::from_hash(derive(seed, "disk-guid")),
        partitions: vec![
            Partition {
                type_guid: Guid::ESP,
                guid: Guid::from_hash(derive(seed, "esp-guid")),
                first_lba: esp_first,
                last_lba: esp_last,
                name: ESP_NAME.to_owned(),
            },
            Partition {
                type_guid: Guid::LINUX_DATA,
                guid: Guid::from_hash(derive(seed, "data-guid")),
                first_lba: data_first,
                last_lba: data_end - 1,
                name: label.to_owned(),
            },
        ],
    })
}

/// 16 bytes for `what`, from the seed.
fn derive(seed: &[u8; 32], what: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(what.as_bytes());
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

fn hash_file(h: &mut Sha256, path: &Path) -> Result<u64, DiskError> {
    let mut f = std::fs::File::open(path).map_err(io("read", path))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    h.update(total.to_le_bytes());
    Ok(total)
}

impl DiskOptions {
    /// The hash every made-up identifier derives from: the disk's size,
    /// the command line, the data settings, and the bytes of the kernel,
    /// initramfs and boot loader.
    pub fn seed(&self) -> Result<[u8; 32], DiskError> {
        let mut h = Sha256::new();
        let field = |h: &mut Sha256, b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        field(&mut h, b"berth-disk/1");
        field(&mut h, &self.size.to_le_bytes());
        field(&mut h, self.cmdline.trim().as_bytes());
        field(&mut h, self.data.label.as_bytes());
        field(&mut h, &self.data.uuid.map(|u| u.0).unwrap_or_default());
        for p in [&self.vmlinuz, &self.initramfs, &self.boot_loader] {
            hash_file(&mut h, p)?;
        }
        Ok(h.finalize().into())
    }

    /// `/loader/loader.conf`: boot the one entry at once (holding a key
    /// while systemd-boot starts shows its menu), with its editor off.
    pub fn loader_conf(&self) -> String {
        format!("default {ENTRY}\ntimeout 0\neditor no\n")
    }

    /// `/loader/entries/berth.conf`: the kernel, initramfs and command line.
    pub fn loader_entry(&self) -> String {
        let mut s = String::from("title berth\n");
        if let Some(v) = &self.kernel_version {
            s.push_str(&format!("version {v}\n"));
        }
        s.push_str(&format!(
            "linux /berth/vmlinuz\ninitrd /berth/initramfs.img\noptions {}\n",
            self.cmdline.trim()
        ));
        s
    }
}

fn file_size(path: &Path) -> Result<u64, DiskError> {
    Ok(std::fs::metadata(path).map_err(io("stat", path))?.len())
}

/// Makes the disk image (see the module documentation).
pub fn write(opts: &DiskOptions, progress: &Progress) -> Result<DiskReport, DiskError> {
    if !opts.boot_loader.is_file() {
        return Err(DiskError::NoBootLoader(opts.boot_loader.clone()));
    }
    if opts.data.label.len() > EXT4_LABEL_MAX {
        return Err(DiskError::LabelTooLong(opts.data.label.clone()));
    }
    for t in ["mkfs.vfat", "mmd", "mcopy", "mkfs.ext4"] {
        fs::tool(t)?;
    }
    let payload =
        file_size(&opts.vmlinuz)? + file_size(&opts.initramfs)? + file_size(&opts.boot_loader)?;
    let esp_bytes = esp_size(payload);
    // Check the size before hashing the inputs.
    layout(opts.size, esp_bytes, &[0; 32], &opts.data.label)?;
    let seed = opts.seed()?;
    let layout = layout(opts.size, esp_bytes, &seed, &opts.data.label)?;
    let mtime = opts.mtime.max(FAT_EPOCH);
    let [a, b, c, d, ..] = derive(&seed, "esp-volume-id");
    let volume_id = u32::from_be_bytes([a, b, c, d]);
    let data_uuid = opts
        .data
        .uuid
        .unwrap_or_else(|| Guid::from_hash(derive(&seed, "data-uuid")));
    let hash_seed = Guid::from_hash(derive(&seed, "data-hash-seed"));

    let dir = opts.out.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let scratch = tempfile::Builder::new()
        .prefix(".tmp-disk-")
        .tempdir_in(dir)
        .map_err(io("create a directory in", dir))?;
    let s = scratch.path();

    let [esp, data] = [&layout.partitions[0], &layout.partitions[1]];
    progress.step(&format!(
        "disk: ESP {} MiB (FAT32, systemd-boot), data {} MiB (ext4 LABEL={})",
        esp.size() / MIB,
        data.size() / MIB,
        opts.data.label
    ));
    let write_small = |name: &str, text: String| -> Result<PathBuf, DiskError> {
        let p = s.join(name);
        std::fs::write(&p, text).map_err(io("write", &p))?;
        Ok(p)
    };
    let files = vec![
        fs::EspFile {
            path: "/EFI/BOOT/BOOTX64.EFI".into(),
            source: opts.boot_loader.clone(),
        },
        fs::EspFile {
            path: "/loader/loader.conf".into(),
            source: write_small("loader.conf", opts.loader_conf())?,
        },
        fs::EspFile {
            path: format!("/loader/entries/{ENTRY}"),
            source: write_small("entry.conf", opts.loader_entry())?,
        },
        fs::EspFile {
            path: "/berth/vmlinuz".into(),
            source: opts.vmlinuz.clone(),
        },
        fs::EspFile {
            path: "/berth/initramfs.img".into(),
            source: opts.initramfs.clone(),
        },
    ];
    let esp_img = sized_file(&s.join("esp.img"), esp.size())?;
    fs::make_esp(&esp_img, ESP_LABEL, volume_id, esp.first_lba, &files, mtime)?;
    let data_img = sized_file(&s.join("data.img"), data.size())?;
    fs::make_ext4(&data_img, &opts.data.label, data_uuid, hash_seed, mtime, s)?;

    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io("create a file in", dir))?;
    let out = tmp.as_file();
    out.set_len(opts.size).map_err(io("size", tmp.path()))?;
    for (at, bytes) in gpt::write(&layout)? {
        out.write_all_at(&bytes, at)
            .map_err(io("write", tmp.path()))?;
    }
    copy_at(&esp_img, out, esp.offset(), tmp.path())?;
    copy_at(&data_img, out, data.offset(), tmp.path())?;
    crate::build::persist(tmp, &opts.out).map_err(io("write", &opts.out))?;
    Ok(DiskReport {
        path: opts.out.clone(),
        size: opts.size,
        layout,
        esp_volume_id: volume_id,
        data_uuid,
        data_label: opts.data.label.clone(),
    })
}

/// Creates `path` as a sparse file of `size` bytes.
fn sized_file(path: &Path, size: u64) -> Result<PathBuf, DiskError> {
    let f = std::fs::File::create(path).map_err(io("create", path))?;
    f.set_len(size).map_err(io("size", path))?;
    Ok(path.to_owned())
}

/// Copies the file `from` into `to` at `offset`, skipping blocks of zeros
/// (`to` reads as zeros there already): the disk stays sparse.
fn copy_at(from: &Path, to: &std::fs::File, offset: u64, to_path: &Path) -> Result<(), DiskError> {
    const BLOCK: usize = 64 * 1024;
    let mut src = std::fs::File::open(from).map_err(io("read", from))?;
    let mut buf = vec![0u8; BLOCK];
    let mut pos = 0u64;
    loop {
        let mut n = 0;
        while n < BLOCK {
            let r = src.read(&mut buf[n..]).map_err(io("read", from))?;
            if r == 0 {
                break;
            }
            n += r;
        }
        if n == 0 {
            return Ok(());
        }
        if buf[..n].iter().any(|&b| b != 0) {
            to.write_all_at(&buf[..n], offset + pos)
                .map_err(io("write", to_path))?;
        }
        pos += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_size("256M").ok(), Some(256 * MIB));
        assert_eq!(parse_size("1G").ok(), Some(1024 * MIB));
        assert_eq!(parse_size("64MiB").ok(), Some(64 * MIB));
        assert_eq!(parse_size("1048576").ok(), Some(MIB));
        assert_eq!(parse_size("2048k").ok(), Some(2 * MIB));
        for bad in ["", "M", "12X", "-1M", "99999999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_esp_has_room_for_its_payload_twice() {
        assert_eq!(esp_size(0), ESP_MIN);
        assert_eq!(esp_size(20 * MIB), 64 * MIB);
        assert_eq!(esp_size(40 * MIB), 84 * MIB);
        assert_eq!(esp_size(40 * MIB + 1), 85 * MIB);
    }

    #[test]
    fn the_layout_aligns_partitions_and_fills_the_disk() {
        let l = layout(256 * MIB, 64 * MIB, &[7; 32], "berth-data").expect("layout");
        let (esp, data) = (&l.partitions[0], &l.partitions[1]);
        assert_eq!((esp.offset(), esp.size()), (MIB, 64 * MIB));
        assert_eq!(data.offset(), 65 * MIB);
        assert_eq!(data.offset() + data.size(), 255 * MIB);
        assert_eq!(esp.type_guid, Guid::ESP);
        assert_eq!(data.type_guid, Guid::LINUX_DATA);
        assert_eq!(data.name, "berth-data");
        assert!(data.last_lba <= l.last_usable());
        // The same seed, the same GUIDs; another seed, others.
        let again = layout(256 * MIB, 64 * MIB, &[7; 32], "berth-data").expect("layout");
        assert_eq!(l, again);
        let other = layout(256 * MIB, 64 * MIB, &[8; 32], "berth-data").expect("layout");
        assert_ne!(l.disk_guid, other.disk_guid);
        assert_ne!(esp.guid, data.guid);
    }

    #[test]
    fn a_disk_too_small_names_the_size_that_fits() {
        let e = layout(80 * MIB, 64 * MIB, &[0; 32], "x").expect_err("too small");
        let msg = e.to_string();
        assert!(msg.contains("80 MiB is too small"), "{msg}");
        assert!(msg.contains("--disk-size 82M"), "{msg}");
        assert!(layout(82 * MIB, 64 * MIB, &[0; 32], "x").is_ok());
        let e = layout(82 * MIB + 512, 64 * MIB, &[0; 32], "x").expect_err("unaligned");
        assert!(e.to_string().contains("whole number of MiB"), "{e}");
    }

    #[test]
    fn the_manifest_names_the_data_filesystem() {
        let storage = |toml: &str| {
            let text = format!("version = 1\n{toml}");
            berth_config::parse(&text, "t.toml")
                .expect("manifest")
                .host
                .storage
        };
        let none = data_settings(&storage("")).expect("none");
        assert_eq!(none.label, DEFAULT_LABEL);
        assert_eq!(none.uuid, None);
        let l = data_settings(&storage("[host.storage.data]\ndevice = \"LABEL=state\"\n"))
            .expect("label");
        assert_eq!(l.label, "state");
        let u = data_settings(&storage(
            "[host.storage.data]\ndevice = \"UUID=0F0E0D0C-0B0A-4908-8706-050403020100\"\n",
        ))
        .expect("uuid");
        assert_eq!(u.label, DEFAULT_LABEL);
        assert_eq!(
            u.uuid.map(|g| g.to_string()).as_deref(),
            Some("0f0e0d0c-0b0a-4908-8706-050403020100")
        );
        let p =
            data_settings(&storage("[host.storage.data]\ndevice = \"/dev/vda2\"\n")).expect("path");
        assert_eq!(p.label, DEFAULT_LABEL);
        let long = data_settings(&storage(
            "[host.storage.data]\ndevice = \"LABEL=seventeen-chars!!\"\n",
        ));
        assert!(matches!(long, Err(DiskError::LabelTooLong(_))), "{long:?}");
        let short_uuid = data_settings(&storage(
            "[host.storage.data]\ndevice = \"UUID=1234-abcd\"\n",
        ));
        assert!(
            matches!(short_uuid, Err(DiskError::BadUuid(_))),
            "{short_uuid:?}"
        );
        let xfs = data_settings(&storage(
            "[host.storage.data]\ndevice = \"LABEL=x\"\nfs = \"xfs\"\n",
        ));
        assert!(matches!(xfs, Err(DiskError::NotExt4(_))), "{xfs:?}");
    }
}

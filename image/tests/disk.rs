//! The flashable disk image (`berth_image::disk`), made by whole builds with
//! the real pinned kernel and read back: the GPT by berth's own parser and
//! by `sfdisk` and `blkid`, the ESP by mtools and `fsck.vfat`, the data
//! partition by `dumpe2fs` and `e2fsck`. `/bin/busybox` (busybox-static)
//! stands in for a static berth. Needs scripts/install-deps.

// Test helpers, not production code: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_image::disk::gpt::{Gpt, Guid};
use berth_image::disk::{self, DiskReport};
use berth_image::{BuildOptions, Compression, DiskRequest, Error};

const STATIC_BINARY: &str = "/bin/busybox";
const MIB: u64 = 1024 * 1024;

const MANIFEST: &str = r#"version = 1
[host.storage.data]
device = "LABEL=state"

[containers.web]
image = "busybox:latest"
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(manifest: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.toml"), manifest).unwrap();
        Fixture { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn options(&self, out: &str, size: u64) -> BuildOptions {
        let mut o = BuildOptions::new(self.path("manifest.toml"), self.path(out), STATIC_BINARY);
        o.compression = Compression::FAST;
        o.mtime = Some(0);
        o.disk = Some(DiskRequest {
            size,
            ..DiskRequest::default()
        });
        o
    }

    fn build(&self, out: &str, size: u64) -> DiskReport {
        let report = berth_image::build(&self.options(out, size))
            .unwrap_or_else(|e| panic!("build failed: {e}"));
        report.disk.expect("a disk report")
    }
}

/// Runs `program` with `args`; panics unless it succeeds; returns stdout.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (run scripts/install-deps)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The bytes of one partition, copied out to its own file.
fn extract(disk: &Path, offset: u64, size: u64, to: &Path) {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(disk).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; size as usize];
    f.read_exact(&mut buf).unwrap();
    std::fs::write(to, buf).unwrap();
}

#[test]
fn the_partition_table_reads_back_with_berths_parser_and_sfdisk() {
    let fx = Fixture::new(MANIFEST);
    let report = fx.build("out", 128 * MIB);
    let path = fx.path("out/disk.img");
    assert_eq!(report.path, path);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, 128 * MIB);

    // Signatures, both headers, both CRCs, bounds: all checked by parse.
    let gpt = Gpt::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(gpt.layout, report.layout);
    let [esp, data] = gpt.layout.partitions.as_slice() else {
        panic!("two partitions: {:?}", gpt.layout.partitions);
    };
    assert_eq!(esp.type_guid, Guid::ESP);
    assert_eq!(data.type_guid, Guid::LINUX_DATA);
    assert_eq!((esp.offset(), esp.size()), (MIB, 64 * MIB));
    assert_eq!(data.offset(), esp.offset() + esp.size());
    assert_eq!(data.offset() + data.size(), 127 * MIB);
    assert_eq!(esp.name, "berth-efi");
    assert_eq!(data.name, "state");

    // sfdisk, an independent reader, agrees (and says nothing is wrong).
    let dump = run("sfdisk", &["--dump", path.to_str().unwrap()]);
    assert!(dump.contains("label: gpt"), "{dump}");
    assert!(
        dump.contains(&format!(
            "label-id: {}",
            gpt.layout.disk_guid.to_string().to_uppercase()
        )),
        "{dump}"
    );
    for (p, type_text) in [
        (esp, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        (data, "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
    ] {
        let line = format!(
            "start={:>12}, size={:>12}, type={type_text}, uuid={}, name=\"{}\"",
            p.first_lba,
            p.last_lba + 1 - p.first_lba,
            p.guid.to_string().to_uppercase(),
            p.name
        );
        assert!(dump.contains(&line), "no {line:?} in\n{dump}");
    }
    let verify = run("sfdisk", &["--verify", path.to_str().unwrap()]);
    assert!(!verify.contains("problem"), "{verify}");

    // blkid's low-level probe finds the partition table and both
    // filesystems at the partitions' offsets.
    let whole = run("blkid", &["-p", "-o", "export", path.to_str().unwrap()]);
    assert!(whole.contains("PTTYPE=gpt"), "{whole}");
    let at = |p: &berth_image::disk::gpt::Partition| {
        run(
            "blkid",
            &[
                "-p",
                "-o",
                "export",
                "-O",
                &p.offset().to_string(),
                path.to_str().unwrap(),
            ],
        )
    };
    let fat = at(esp);
    assert!(fat.contains("TYPE=vfat"), "{fat}");
    assert!(fat.contains("LABEL=BERTH-EFI"), "{fat}");
    let ext4 = at(data);
    assert!(ext4.contains("TYPE=ext4"), "{ext4}");
    assert!(ext4.contains("LABEL=state"), "{ext4}");
    assert!(
        ext4.contains(&format!("UUID={}", report.data_uuid)),
        "{ext4}"
    );
}

#[test]
fn the_esp_holds_systemd_boot_its_entry_the_kernel_and_the_initramfs() {
    let fx = Fixture::new(MANIFEST);
    let report = fx.build("out", 128 * MIB);
    let img = format!("{}@@{}", report.path.display(), report.esp().offset());
    let mtype = |p: &str| run("mtype", &["-i", &img, &format!("::{p}")]);
    let loader = mtype("/loader/loader.conf");
    assert!(loader.contains("default berth.conf"), "{loader}");
    assert!(loader.contains("timeout 0"), "{loader}");
    let entry = mtype("/loader/entries/berth.conf");
    assert!(entry.contains("linux /berth/vmlinuz\n"), "{entry}");
    assert!(entry.contains("initrd /berth/initramfs.img\n"), "{entry}");
    assert!(
        entry.contains(&format!("\noptions {}\n", berth_image::DEFAULT_CMDLINE)),
        "{entry}"
    );
    assert!(
        entry.contains(&format!("version {}\n", berth_image::kernel::RELEASE)),
        "{entry}"
    );

    // The files are the very bytes of the build's outputs and the loader.
    let got = fx.path("got");
    for (on_esp, host) in [
        ("/EFI/BOOT/BOOTX64.EFI", PathBuf::from(disk::SYSTEMD_BOOT)),
        ("/berth/vmlinuz", fx.path("out/vmlinuz")),
        ("/berth/initramfs.img", fx.path("out/initramfs.img")),
    ] {
        run(
            "mcopy",
            &[
                "-n",
                "-i",
                &img,
                &format!("::{on_esp}"),
                got.to_str().unwrap(),
            ],
        );
        assert!(
            std::fs::read(&got).unwrap() == std::fs::read(&host).unwrap(),
            "{on_esp} is not {}",
            host.display()
        );
    }
    let listing = run("mdir", &["-i", &img, "-/", "::/"]);
    assert!(listing.contains("BOOTX64"), "{listing}");

    // And the filesystem itself is clean, FAT32, with the volume ID given.
    let esp = fx.path("esp.img");
    extract(
        &report.path,
        report.esp().offset(),
        report.esp().size(),
        &esp,
    );
    run("fsck.vfat", &["-n", esp.to_str().unwrap()]);
    let info = run("minfo", &["-i", esp.to_str().unwrap(), "::"]);
    assert!(
        info.contains(&format!("serial number: {:08X}", report.esp_volume_id)),
        "{info}"
    );
    assert!(
        info.contains("fat_bits=32") || info.contains("FAT32"),
        "{info}"
    );
}

#[test]
fn the_data_partition_is_a_clean_empty_ext4_with_the_manifests_label() {
    let fx = Fixture::new(MANIFEST);
    let report = fx.build("out", 128 * MIB);
    let data = fx.path("data.img");
    extract(
        &report.path,
        report.data().offset(),
        report.data().size(),
        &data,
    );
    let d = data.to_str().unwrap();
    let head = run("dumpe2fs", &["-h", d]);
    assert!(head.contains("Filesystem volume name:   state"), "{head}");
    assert!(
        head.contains(&format!("Filesystem UUID:          {}", report.data_uuid)),
        "{head}"
    );
    assert!(head.contains("Block size:               4096"), "{head}");
    assert!(head.contains("has_journal"), "{head}");
    assert!(
        head.contains("Filesystem created:       Tue Jan  1 00:00:00 1980"),
        "{head}"
    );
    run("e2fsck", &["-f", "-n", d]);
    let root = run("debugfs", &["-R", "ls -l /", d]);
    assert!(root.contains("lost+found"), "{root}");

    // A manifest naming the device by UUID gets that UUID.
    let uuid = "0f0e0d0c-0b0a-4908-8706-050403020100";
    let fx = Fixture::new(&format!(
        "version = 1\n[host.storage.data]\ndevice = \"UUID={uuid}\"\n"
    ));
    let report = fx.build("out", 128 * MIB);
    assert_eq!(report.data_uuid.to_string(), uuid);
    assert_eq!(report.data_label, disk::DEFAULT_LABEL);
    let probe = run(
        "blkid",
        &[
            "-p",
            "-o",
            "export",
            "-O",
            &report.data().offset().to_string(),
            report.path.to_str().unwrap(),
        ],
    );
    assert!(probe.contains(&format!("UUID={uuid}")), "{probe}");
    assert!(probe.contains("LABEL=berth-data"), "{probe}");
}

#[test]
fn two_builds_give_identical_disks_and_other_inputs_other_ids() {
    let fx = Fixture::new(MANIFEST);
    let a = fx.build("a", 128 * MIB);
    // FAT keeps time in 2 s steps: a clock leaking in would show.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let b = fx.build("b", 128 * MIB);
    let (x, y) = (
        std::fs::read(&a.path).unwrap(),
        std::fs::read(&b.path).unwrap(),
    );
    if let Some(i) = x.iter().zip(&y).position(|(p, q)| p != q) {
        panic!(
            "the disks differ first at byte {i} (ESP at {}, data at {})",
            a.esp().offset(),
            a.data().offset()
        );
    }
    assert_eq!(a.layout, b.layout);

    // Another size: other GUIDs, another data UUID.
    let c = fx.build("c", 160 * MIB);
    assert_ne!(c.layout.disk_guid, a.layout.disk_guid);
    assert_ne!(c.data_uuid, a.data_uuid);
    assert_eq!(c.data().offset() + c.data().size(), 159 * MIB);
}

#[test]
fn a_disk_too_small_for_the_esp_is_refused_clearly() {
    let fx = Fixture::new(MANIFEST);
    let err = berth_image::build(&fx.options("out", 64 * MIB)).expect_err("too small");
    let msg = err.to_string();
    assert!(matches!(err, Error::Disk(_)), "{msg}");
    assert!(msg.contains("64 MiB is too small"), "{msg}");
    assert!(msg.contains("--disk-size 82M or more"), "{msg}");
    assert!(!fx.path("out/disk.img").exists());

    let err = berth_image::build(&fx.options("out", 100 * MIB + 512)).expect_err("unaligned");
    assert!(err.to_string().contains("whole number of MiB"), "{err}");

    // A manifest whose data device the disk cannot hold is refused before
    // anything is built.
    let fx = Fixture::new("version = 1\n[host.storage.data]\ndevice = \"LABEL=x\"\nfs = \"xfs\"\n");
    let err = berth_image::build(&fx.options("out", 128 * MIB)).expect_err("xfs");
    assert!(err.to_string().contains("ext4"), "{err}");
    assert!(!fx.path("out/initramfs.img").exists());
}

#[test]
fn a_missing_boot_loader_names_the_package() {
    let fx = Fixture::new(MANIFEST);
    let mut o = fx.options("out", 128 * MIB);
    o.disk = Some(DiskRequest {
        size: 128 * MIB,
        boot_loader: fx.path("no-such-loader.efi"),
    });
    let err = berth_image::build(&o).expect_err("no loader").to_string();
    assert!(err.contains("no-such-loader.efi"), "{err}");
    assert!(err.contains("systemd-boot-efi"), "{err}");
}

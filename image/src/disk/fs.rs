//! The two filesystems, each made by Debian's own tools on an image file:
//! no loop device, no mount, no root.
//!
//! - The EFI system partition: `mkfs.vfat` (dosfstools) makes a FAT32
//!   filesystem with a given volume ID (`--invariant` fixes its other
//!   made-up fields), then mtools' `mmd` and `mcopy` put the files in.
//!   mtools stamps entries with `SOURCE_DATE_EPOCH` (in UTC).
//! - The data partition: `mkfs.ext4` with a fixed UUID and directory hash
//!   seed, its clock fixed by `E2FSPROGS_FAKE_TIME`, and its features from a
//!   `mke2fs.conf` of berth's own ([`MKE2FS_CONF`]), so the host's defaults
//!   do not leak in.
//!
//! Every tool runs with a cleared environment (`PATH`, `LC_ALL=C` and the
//! variables above only), so the caller's settings cannot change the bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::DiskError;
use super::gpt::Guid;

/// Where the tools are looked for: `/usr/sbin` is not on every user's PATH.
const TOOL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The `mke2fs.conf` the data partition is made with: e2fsprogs 1.47's
/// ext4 defaults, written out, so that a host whose `/etc/mke2fs.conf`
/// says otherwise makes the same filesystem. The usage type `berth`
/// (`-T berth`) stands in for the size-based ones ("small" would pick
/// 1 KiB blocks); mke2fs warns about a type whose stanza is empty.
pub const MKE2FS_CONF: &str = "\
[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
\tberth = {
\t\tinode_ratio = 16384
\t}
";

/// A file to put on the ESP.
#[derive(Debug, Clone)]
pub struct EspFile {
    /// Its path on the ESP, `/`-separated, e.g. `/EFI/BOOT/BOOTX64.EFI`.
    pub path: String,
    /// The host file holding its contents.
    pub source: PathBuf,
}

/// The full path of `name`, looked up in [`TOOL_PATH`].
pub(crate) fn tool(name: &'static str) -> Result<PathBuf, DiskError> {
    TOOL_PATH
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or(DiskError::NoTool { tool: name })
}

/// Runs `program` with a clean environment plus `env`; fails naming the
/// command and its stderr.
fn run(program: &'static str, args: &[&str], env: &[(&str, String)]) -> Result<(), DiskError> {
    let path = tool(program)?;
    let mut cmd = Command::new(&path);
    cmd.args(args)
        .env_clear()
        .env("PATH", TOOL_PATH)
        .env("LC_ALL", "C");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let command = format!("{program} {}", args.join(" "));
    let out = cmd.output().map_err(|source| DiskError::Spawn {
        command: command.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(DiskError::ToolFailed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

fn path_str(p: &Path) -> Result<&str, DiskError> {
    p.to_str()
        .ok_or_else(|| DiskError::NonUtf8Path(p.to_owned()))
}

/// The environment mtools runs in: no user configuration, UTC, the fixed
/// time, and no complaints about a filesystem that starts no partition.
fn mtools_env(mtime: u32) -> Vec<(&'static str, String)> {
    vec![
        ("MTOOLSRC", "/dev/null".into()),
        ("MTOOLS_SKIP_CHECK", "1".into()),
        ("TZ", "UTC".into()),
        ("SOURCE_DATE_EPOCH", mtime.to_string()),
    ]
}

/// Makes a FAT32 filesystem labelled `label` with volume ID `volume_id` in
/// the image file `image` (of its final size already), for a partition
/// that starts at sector `start_lba`, and copies `files` in, making their
/// directories first.
pub fn make_esp(
    image: &Path,
    label: &str,
    volume_id: u32,
    start_lba: u64,
    files: &[EspFile],
    mtime: u32,
) -> Result<(), DiskError> {
    let img = path_str(image)?;
    let volid = format!("{volume_id:08x}");
    let hidden = start_lba.to_string();
    // `--invariant` first: it would also reset the volume ID that `-i` sets.
    run(
        "mkfs.vfat",
        &[
            "--invariant",
            "-F",
            "32",
            "-n",
            label,
            "-i",
            &volid,
            "-h",
            &hidden,
            img,
        ],
        &[],
    )?;
    let env = mtools_env(mtime);
    let mut dirs: Vec<String> = Vec::new();
    for f in files {
        let mut parts: Vec<&str> = f.path.trim_start_matches('/').split('/').collect();
        parts.pop();
        for i in 1..=parts.len() {
            let dir = format!("::/{}", parts[..i].join("/"));
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    if !dirs.is_empty() {
        let mut args = vec!["-i", img];
        args.extend(dirs.iter().map(String::as_str));
        run("mmd", &args, &env)?;
    }
    for f in files {
        let dest = format!("::{}", f.path);
        run(
            "mcopy",
            &["-i", img, path_str(&f.source)?, dest.as_str()],
            &env,
        )?;
    }
    Ok(())
}

/// Makes an ext4 filesystem labelled `label` with UUID `uuid` in the image
/// file `image` (of its final size already). `scratch` is a directory for
/// the `mke2fs.conf`.
pub fn make_ext4(
    image: &Path,
    label: &str,
    uuid: Guid,
    hash_seed: Guid,
    mtime: u32,
    scratch: &Path,
) -> Result<(), DiskError> {
    let conf = scratch.join("mke2fs.conf");
    std::fs::write(&conf, MKE2FS_CONF).map_err(|source| DiskError::Io {
        action: "write",
        path: conf.clone(),
        source,
    })?;
    let uuid = uuid.to_string();
    // No discard, and inode tables and journal written out now: the image
    // then holds every byte the filesystem relies on, and the kernel has no
    // lazy initialisation to do on first mount.
    let extended = format!(
        "hash_seed={hash_seed},root_owner=0:0,nodiscard,lazy_itable_init=0,lazy_journal_init=0"
    );
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-T",
            "berth",
            "-L",
            label,
            "-U",
            &uuid,
            "-E",
            &extended,
            path_str(image)?,
        ],
        &[
            ("MKE2FS_CONFIG", path_str(&conf)?.to_owned()),
            ("E2FSPROGS_FAKE_TIME", mtime.to_string()),
        ],
    )
}

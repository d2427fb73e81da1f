//! Shifted copies of layers, for containers in a user namespace.
//!
//! A layer's files belong to the container's ids (0 is the container's
//! root). Inside a user namespace, container id N is host id map(N), so the
//! container needs its layers owned by the mapped ids. The kernel's
//! idmapped mounts would do this without a copy, but the layer store is on
//! tmpfs when there is no data disk, and tmpfs takes idmapped mounts only
//! from Linux 6.3. So, as Docker's `userns-remap` does, berth copies each
//! layer once per map with its owners shifted, and shares the copy between
//! every container with that map. Everything else is kept: types, modes
//! (set-id bits included), hard links, symlinks, device nodes (overlay
//! whiteouts), extended attributes (overlay's opaque marker), times. File
//! capabilities are rewritten for the namespace's root (format v3, as the
//! kernel itself writes them from inside a user namespace). An id the map
//! leaves out becomes the overflow id, 65534, as the kernel shows it.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_config::IdMaps;
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;

/// The id an unmapped id becomes (the kernel's overflowuid/overflowgid).
pub const OVERFLOW_ID: u32 = 65534;

/// A short, stable name for a map: the first 12 hex digits of the sha256
/// of its uid and gid maps as the kernel reads them.
pub fn map_key(maps: &IdMaps) -> String {
    let text = format!(
        "uid\n{}gid\n{}",
        IdMaps::proc_text(&maps.uid),
        IdMaps::proc_text(&maps.gid)
    );
    berth_image::oci::Digest::of(text.as_bytes()).hex()[..12].to_string()
}

/// Copies the tree `src` to `dst` (which must not exist) with every owner
/// shifted by `maps`. Errors name the path they happened at.
pub fn copy_tree(src: &Path, dst: &Path, maps: &IdMaps) -> Result<(), (PathBuf, io::Error)> {
    let mut c = Copier {
        maps,
        links: HashMap::new(),
    };
    let md = std::fs::symlink_metadata(src).map_err(|e| (src.to_path_buf(), e))?;
    std::fs::create_dir(dst).map_err(|e| (dst.to_path_buf(), e))?;
    c.dir(src, dst)?;
    c.attrs(src, dst, &md).map_err(|e| (dst.to_path_buf(), e))
}

struct Copier<'a> {
    maps: &'a IdMaps,
    /// Files with several links: (dev, ino) to the first copy.
    links: HashMap<(u64, u64), PathBuf>,
}

impl Copier<'_> {
    fn uid(&self, id: u32) -> u32 {
        self.maps.host_uid(id).unwrap_or(OVERFLOW_ID)
    }

    fn gid(&self, id: u32) -> u32 {
        self.maps.host_gid(id).unwrap_or(OVERFLOW_ID)
    }

    fn dir(&mut self, src: &Path, dst: &Path) -> Result<(), (PathBuf, io::Error)> {
        let entries = std::fs::read_dir(src).map_err(|e| (src.to_path_buf(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| (src.to_path_buf(), e))?;
            let s = entry.path();
            let d = dst.join(entry.file_name());
            let at = |e: io::Error| (s.clone(), e);
            let md = std::fs::symlink_metadata(&s).map_err(at)?;
            let ft = md.file_type();
            let at_dst = |e: io::Error| (d.clone(), e);
            if ft.is_dir() {
                std::fs::create_dir(&d).map_err(at_dst)?;
                self.dir(&s, &d)?;
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&s).map_err(at)?;
                std::os::unix::fs::symlink(&target, &d).map_err(at_dst)?;
            } else if ft.is_file() {
                if md.nlink() > 1 {
                    let key = (md.dev(), md.ino());
                    if let Some(first) = self.links.get(&key) {
                        std::fs::hard_link(first, &d).map_err(at_dst)?;
                        continue;
                    }
                    self.links.insert(key, d.clone());
                }
                std::fs::copy(&s, &d).map_err(at_dst)?;
            } else {
                let kind = if ft.is_char_device() {
                    SFlag::S_IFCHR
                } else if ft.is_block_device() {
                    SFlag::S_IFBLK
                } else if ft.is_fifo() {
                    SFlag::S_IFIFO
                } else {
                    SFlag::S_IFSOCK
                };
                nix::sys::stat::mknod(
                    &d,
                    kind,
                    Mode::from_bits_truncate(md.mode() & 0o7777),
                    md.rdev(),
                )
                .map_err(|e| at_dst(e.into()))?;
            }
            self.attrs(&s, &d, &md).map_err(at_dst)?;
        }
        Ok(())
    }

    /// Owner, mode, extended attributes and times of `dst` from `src`.
    fn attrs(&self, src: &Path, dst: &Path, md: &std::fs::Metadata) -> io::Result<()> {
        let link = md.file_type().is_symlink();
        std::os::unix::fs::lchown(dst, Some(self.uid(md.uid())), Some(self.gid(md.gid())))?;
        if !link {
            // After chown, which clears the set-id bits.
            std::fs::set_permissions(dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
            self.xattrs(src, dst)?;
        }
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            dst,
            &TimeSpec::new(md.atime(), md.atime_nsec()),
            &TimeSpec::new(md.mtime(), md.mtime_nsec()),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(io::Error::from)
    }

    fn xattrs(&self, src: &Path, dst: &Path) -> io::Result<()> {
        let s = cpath(src)?;
        let d = cpath(dst)?;
        let names = list_xattrs(&s)?;
        for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let cname =
                CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            let Some(mut value) = get_xattr(&s, &cname)? else {
                continue;
            };
            if name == b"security.capability" {
                match shift_capability(&value, |root| self.uid(root)) {
                    Some(v) => value = v,
                    None => continue,
                }
            }
            // SAFETY: both strings are NUL-terminated and live across the
            // call; value is a valid buffer of value.len() bytes.
            let rc = unsafe {
                libc::lsetxattr(
                    d.as_ptr(),
                    cname.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Rewrites a `security.capability` value as v3 with its root id (0 for
/// v2) passed through `shift`. `None` for an unknown format.
pub fn shift_capability(v: &[u8], shift: impl Fn(u32) -> u32) -> Option<Vec<u8>> {
    const REVISION_MASK: u32 = 0xFF00_0000;
    const REVISION_2: u32 = 0x0200_0000;
    const REVISION_3: u32 = 0x0300_0000;
    let magic = u32::from_le_bytes(v.get(0..4)?.try_into().ok()?);
    let (body, root) = match (magic & REVISION_MASK, v.len()) {
        (REVISION_2, 20) => (&v[4..20], 0),
        (REVISION_3, 24) => (
            &v[4..20],
            u32::from_le_bytes(v.get(20..24)?.try_into().ok()?),
        ),
        _ => return None,
    };
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&(REVISION_3 | (magic & !REVISION_MASK)).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&shift(root).to_le_bytes());
    Some(out)
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn list_xattrs(p: &CString) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: p is NUL-terminated; buf is writable for buf.len() bytes.
        let n = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    }
}

fn get_xattr(p: &CString, name: &CString) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: both strings are NUL-terminated; buf is writable for
        // buf.len() bytes.
        let n = unsafe {
            libc::lgetxattr(
                p.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if buf.len() < 1 << 16 => buf.resize(1 << 16, 0),
            Some(libc::ENODATA) => return Ok(None),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_config::IdRange;

    fn maps() -> IdMaps {
        IdMaps {
            uid: vec![IdRange {
                container: 0,
                host: 100000,
                size: 65536,
            }],
            gid: vec![IdRange {
                container: 0,
                host: 200000,
                size: 65536,
            }],
        }
    }

    #[test]
    fn map_keys_are_stable_and_differ_between_maps() {
        let a = maps();
        let mut b = maps();
        b.gid[0].host = 300000;
        assert_eq!(map_key(&a), map_key(&a.clone()));
        assert_eq!(map_key(&a).len(), 12);
        assert_ne!(map_key(&a), map_key(&b));
    }

    #[test]
    fn capabilities_become_v3_for_the_namespace_root() {
        // v2, effective flag set, CAP_NET_RAW (13) permitted.
        let mut v2 = Vec::new();
        v2.extend_from_slice(&0x0200_0001u32.to_le_bytes());
        v2.extend_from_slice(&(1u32 << 13).to_le_bytes());
        v2.extend_from_slice(&0u32.to_le_bytes());
        v2.extend_from_slice(&[0; 8]);
        let v3 = shift_capability(&v2, |r| r + 100000).unwrap();
        assert_eq!(v3.len(), 24);
        assert_eq!(&v3[0..4], &0x0300_0001u32.to_le_bytes());
        assert_eq!(&v3[4..20], &v2[4..20]);
        assert_eq!(&v3[20..24], &100000u32.to_le_bytes());
        // v3 keeps its body and shifts its root.
        let again = shift_capability(&v3, |r| r + 1).unwrap();
        assert_eq!(&again[20..24], &100001u32.to_le_bytes());
        assert_eq!(shift_capability(&[1, 2, 3], |r| r), None);
        assert_eq!(shift_capability(&[0u8; 20], |r| r), None);
    }
}

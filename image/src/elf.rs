//! A small, read-only ELF64 (little-endian) reader: just enough to find a
//! named section (a kernel module's `.modinfo`) and to tell a statically
//! linked executable from a dynamically linked one (no `PT_INTERP`).
//!
//! Every offset read from the file is bounds-checked: a truncated or hostile
//! file gives an error, never a panic.

use std::ops::Range;

/// Why a file could not be read as ELF64.
#[derive(Debug, displaydoc::Display, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    /// not an ELF file (bad magic)
    NotElf,
    /// not a 64-bit little-endian ELF file
    Unsupported,
    /// truncated or malformed ELF file: {0}
    Malformed(&'static str),
    /// not an executable (ELF type {0})
    NotExecutable(u16),
    /// built for another architecture (ELF machine {0}), not x86-64
    WrongMachine(u16),
    /// dynamically linked (it has a PT_INTERP program header); build it statically, e.g. with RUSTFLAGS="-C target-feature=+crt-static"
    Dynamic,
}

/// Checks that `data` is an x86-64 executable that runs without a dynamic
/// loader: ET_EXEC or ET_DYN (static-pie) with no `PT_INTERP`.
pub fn check_static_executable(data: &[u8]) -> Result<(), ElfError> {
    let elf = Elf::parse(data)?;
    if elf.e_type != ET_EXEC && elf.e_type != ET_DYN {
        return Err(ElfError::NotExecutable(elf.e_type));
    }
    if elf.machine != EM_X86_64 {
        return Err(ElfError::WrongMachine(elf.machine));
    }
    if elf.has_interpreter()? {
        return Err(ElfError::Dynamic);
    }
    Ok(())
}

const PT_INTERP: u32 = 3;
const SHN_XINDEX: u16 = 0xffff;
/// `e_machine` of x86-64.
pub const EM_X86_64: u16 = 62;
/// `e_type` of an executable.
pub const ET_EXEC: u16 = 2;
/// `e_type` of a shared object (also a PIE executable).
pub const ET_DYN: u16 = 3;

/// A parsed view of an ELF64 file held in memory.
#[derive(Debug)]
pub struct Elf<'a> {
    data: &'a [u8],
    /// `e_type`: executable, shared object, relocatable...
    pub e_type: u16,
    /// `e_machine`: the target architecture.
    pub machine: u16,
    phoff: usize,
    phentsize: usize,
    phnum: usize,
    shoff: usize,
    shentsize: usize,
    shnum: usize,
    shstrndx: usize,
}

fn bytes<'a>(
    data: &'a [u8],
    at: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], ElfError> {
    at.checked_add(len)
        .and_then(|end| data.get(at..end))
        .ok_or(ElfError::Malformed(what))
}

fn u16_at(data: &[u8], at: usize, what: &'static str) -> Result<u16, ElfError> {
    let b = bytes(data, at, 2, what)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(data: &[u8], at: usize, what: &'static str) -> Result<u32, ElfError> {
    let b = bytes(data, at, 4, what)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(data: &[u8], at: usize, what: &'static str) -> Result<u64, ElfError> {
    let b = bytes(data, at, 8, what)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
}

fn usize_at(data: &[u8], at: usize, what: &'static str) -> Result<usize, ElfError> {
    usize::try_from(u64_at(data, at, what)?).map_err(|_| ElfError::Malformed(what))
}

impl<'a> Elf<'a> {
    /// Parses the ELF header of `data`.
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        if data.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(ElfError::NotElf);
        }
        // EI_CLASS = ELFCLASS64, EI_DATA = ELFDATA2LSB.
        if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
            return Err(ElfError::Unsupported);
        }
        let mut elf = Elf {
            data,
            e_type: u16_at(data, 0x10, "header")?,
            machine: u16_at(data, 0x12, "header")?,
            phoff: usize_at(data, 0x20, "header")?,
            shoff: usize_at(data, 0x28, "header")?,
            phentsize: usize::from(u16_at(data, 0x36, "header")?),
            phnum: usize::from(u16_at(data, 0x38, "header")?),
            shentsize: usize::from(u16_at(data, 0x3a, "header")?),
            shnum: usize::from(u16_at(data, 0x3c, "header")?),
            shstrndx: usize::from(u16_at(data, 0x3e, "header")?),
        };
        if elf.phnum > 0 && elf.phentsize < 56 {
            return Err(ElfError::Malformed("program header size"));
        }
        if elf.shoff != 0 {
            if elf.shentsize < 64 {
                return Err(ElfError::Malformed("section header size"));
            }
            // Extended numbering: the real counts live in section 0.
            if elf.shnum == 0 {
                elf.shnum = usize_at(data, elf.shoff + 32, "section 0")?;
            }
            if elf.shstrndx == usize::from(SHN_XINDEX) {
                elf.shstrndx = u32_at(data, elf.shoff + 40, "section 0")? as usize;
            }
        } else {
            elf.shnum = 0;
        }
        Ok(elf)
    }

    /// The `p_type` of every program header.
    pub fn program_header_types(&self) -> Result<Vec<u32>, ElfError> {
        (0..self.phnum)
            .map(|i| {
                let at = i
                    .checked_mul(self.phentsize)
                    .and_then(|o| o.checked_add(self.phoff))
                    .ok_or(ElfError::Malformed("program headers"))?;
                u32_at(self.data, at, "program headers")
            })
            .collect()
    }

    /// Whether the file asks for a program interpreter (`PT_INTERP`), that
    /// is, whether it is dynamically linked. A static-pie has a `PT_DYNAMIC`
    /// segment but no interpreter, and counts as static.
    pub fn has_interpreter(&self) -> Result<bool, ElfError> {
        Ok(self.program_header_types()?.contains(&PT_INTERP))
    }

    fn section_header(&self, index: usize) -> Result<(u32, Range<usize>), ElfError> {
        let at = index
            .checked_mul(self.shentsize)
            .and_then(|o| o.checked_add(self.shoff))
            .ok_or(ElfError::Malformed("section headers"))?;
        let name = u32_at(self.data, at, "section headers")?;
        let sh_type = u32_at(self.data, at + 4, "section headers")?;
        let offset = usize_at(self.data, at + 24, "section headers")?;
        let size = usize_at(self.data, at + 32, "section headers")?;
        // SHT_NOBITS (.bss) occupies no bytes in the file.
        let size = if sh_type == 8 { 0 } else { size };
        let end = offset
            .checked_add(size)
            .filter(|&e| e <= self.data.len())
            .ok_or(ElfError::Malformed("section extends past end of file"))?;
        Ok((name, offset..end))
    }

    /// The contents of the first section called `name`, if there is one.
    pub fn section(&self, name: &str) -> Result<Option<&'a [u8]>, ElfError> {
        if self.shnum == 0 {
            return Ok(None);
        }
        if self.shstrndx >= self.shnum {
            return Err(ElfError::Malformed("section name table index"));
        }
        let (_, strtab) = self.section_header(self.shstrndx)?;
        let strtab = &self.data[strtab];
        for i in 0..self.shnum {
            let (name_off, range) = self.section_header(i)?;
            let rest = strtab
                .get(name_off as usize..)
                .ok_or(ElfError::Malformed("section name offset"))?;
            let end = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or(ElfError::Malformed("unterminated section name"))?;
            if &rest[..end] == name.as_bytes() {
                return Ok(Some(&self.data[range]));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a minimal ELF64 file with the given program header types and
    /// named sections (name, contents).
    pub(crate) fn build(e_type: u16, phdrs: &[u32], sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[6] = 1;
        out[0x10..0x12].copy_from_slice(&e_type.to_le_bytes());
        out[0x12..0x14].copy_from_slice(&EM_X86_64.to_le_bytes());
        // Program headers right after the ELF header.
        let phoff = out.len() as u64;
        for &t in phdrs {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&ph);
        }
        // Section name table: "\0" then every name, then ".shstrtab".
        let mut strtab = vec![0u8];
        let mut name_offs = Vec::new();
        for (name, _) in sections {
            name_offs.push(strtab.len() as u32);
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
        }
        let shstrtab_name = strtab.len() as u32;
        strtab.extend_from_slice(b".shstrtab\0");
        let mut offs = Vec::new();
        for (_, data) in sections {
            offs.push(out.len() as u64);
            out.extend_from_slice(data);
        }
        let strtab_off = out.len() as u64;
        out.extend_from_slice(&strtab);
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        let shoff = out.len() as u64;
        // Section 0 is the null section.
        out.extend_from_slice(&[0u8; 64]);
        let mut sh = |name: u32, off: u64, size: u64| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&1u32.to_le_bytes()); // SHT_PROGBITS
            h[24..32].copy_from_slice(&off.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&h);
        };
        for (i, (_, data)) in sections.iter().enumerate() {
            sh(name_offs[i], offs[i], data.len() as u64);
        }
        sh(shstrtab_name, strtab_off, strtab.len() as u64);
        out[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        out[0x38..0x3a].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        out[0x3c..0x3e].copy_from_slice(&(sections.len() as u16 + 2).to_le_bytes());
        out[0x3e..0x40].copy_from_slice(&(sections.len() as u16 + 1).to_le_bytes());
        out
    }

    #[test]
    fn finds_sections_by_name() {
        let f = build(
            1,
            &[],
            &[(".text", b"code"), (".modinfo", b"depends=a,b\0")],
        );
        let elf = Elf::parse(&f).unwrap();
        assert_eq!(
            elf.section(".modinfo").unwrap(),
            Some(&b"depends=a,b\0"[..])
        );
        assert_eq!(elf.section(".text").unwrap(), Some(&b"code"[..]));
        assert_eq!(elf.section(".modinf").unwrap(), None);
        assert_eq!(elf.section(".modinfo2").unwrap(), None);
    }

    #[test]
    fn tells_static_from_dynamic() {
        let dynamic = build(ET_DYN, &[6, PT_INTERP, 1, 2], &[]);
        assert!(Elf::parse(&dynamic).unwrap().has_interpreter().unwrap());
        // static-pie: PT_DYNAMIC (2) but no PT_INTERP.
        let static_pie = build(ET_DYN, &[1, 2, 4], &[]);
        assert!(!Elf::parse(&static_pie).unwrap().has_interpreter().unwrap());
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert_eq!(Elf::parse(b"#!/bin/sh\n").unwrap_err(), ElfError::NotElf);
        assert_eq!(
            Elf::parse(b"\x7fELF\x01\x01").unwrap_err(),
            ElfError::Unsupported
        );
        let f = build(1, &[1], &[(".modinfo", b"x")]);
        // Every truncation either parses or fails cleanly.
        for n in 0..f.len() {
            if let Ok(elf) = Elf::parse(&f[..n]) {
                let _ = elf.section(".modinfo");
                let _ = elf.has_interpreter();
            }
        }
    }

    #[test]
    fn static_executable_check() {
        assert_eq!(
            check_static_executable(&build(ET_DYN, &[1, 2], &[])),
            Ok(())
        );
        assert_eq!(check_static_executable(&build(ET_EXEC, &[1], &[])), Ok(()));
        assert_eq!(
            check_static_executable(&build(ET_DYN, &[PT_INTERP, 1], &[])),
            Err(ElfError::Dynamic)
        );
        assert_eq!(
            check_static_executable(&build(1, &[], &[])),
            Err(ElfError::NotExecutable(1))
        );
        let mut arm = build(ET_EXEC, &[1], &[]);
        arm[0x12] = 183; // EM_AARCH64
        assert_eq!(
            check_static_executable(&arm),
            Err(ElfError::WrongMachine(183))
        );
        assert_eq!(
            check_static_executable(b"#!/bin/sh\n"),
            Err(ElfError::NotElf)
        );
    }

    #[test]
    fn reads_real_binaries() {
        // The host's own binaries: /bin/busybox (busybox-static) is static,
        // /bin/ls is dynamic. Skipped where either is absent.
        if let Ok(data) = std::fs::read("/bin/busybox") {
            assert!(!Elf::parse(&data).unwrap().has_interpreter().unwrap());
        }
        if let Ok(data) = std::fs::read("/bin/ls") {
            assert!(Elf::parse(&data).unwrap().has_interpreter().unwrap());
        }
    }
}

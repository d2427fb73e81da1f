//! berth's code layout: which of its functions run, from QEMU's record of
//! the code it translates, in the order the static link puts first in
//! `.text` (`init/hot-functions.txt`, written by `scripts/profile-layout`).
//!
//! The kernel maps a file's pages into a process in 64 KiB windows around
//! each page fault, so PID 1's resident set is every window any of its
//! functions touched: with the functions that run spread over the whole
//! binary, that is nearly all of it. Put together, they fill a few
//! contiguous windows.
//!
//! The profiling build is linked at [`PROFILE_BASE`], above where static
//! executables (busybox in containers) load, so that QEMU's `-dfilter`
//! keeps berth's code only. Only the addresses differ: the symbol names,
//! which the ordering file lists, are those of the release build.

use std::collections::{HashMap, HashSet};

/// Functions by name: their address and size.
pub type Functions = HashMap<String, (u64, u64)>;

/// Where the profiling build of berth is linked (`--image-base`).
pub const PROFILE_BASE: u64 = 0x1000_0000;
/// The end of the address range QEMU logs (`-dfilter`): 256 MiB of berth.
pub const PROFILE_END: u64 = 0x2000_0000;

/// QEMU's arguments that log the translated code in the profiled range into
/// `log`.
pub fn qemu_args(log: &str) -> Vec<String> {
    vec![
        "-d".into(),
        "in_asm".into(),
        "-dfilter".into(),
        format!("{PROFILE_BASE:#x}..{:#x}", PROFILE_END - 1),
        "-D".into(),
        log.into(),
    ]
}

/// The functions of a [`text_layout`], sorted by address.
pub fn code_symbols(funcs: &Functions) -> Vec<(u64, String)> {
    let mut syms: Vec<(u64, String)> = funcs.iter().map(|(n, (a, _))| (*a, n.clone())).collect();
    syms.sort();
    syms
}

/// The functions whose code QEMU translated, in the order it first did,
/// from a `-d in_asm` log: each instruction line starts `0xADDRESS:`.
pub fn functions_run(log: &str, syms: &[(u64, String)]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for line in log.lines() {
        let Some(hex) = line.strip_prefix("0x").and_then(|l| l.split(':').next()) else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(hex, 16) else {
            continue;
        };
        if !(PROFILE_BASE..PROFILE_END).contains(&addr) {
            continue;
        }
        let i = syms.partition_point(|(a, _)| *a <= addr);
        if let Some((_, name)) = i.checked_sub(1).and_then(|i| syms.get(i))
            && seen.insert(name.as_str())
        {
            order.push(name.clone());
        }
    }
    order
}

/// The hot list from several workloads' functions: those that ran in more
/// workloads first, and among equals, in the order they first ran (the
/// workloads in the order given).
pub fn order(workloads: &[Vec<String>]) -> Vec<String> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    // Each function once, in the order it first ran.
    let mut first: Vec<&str> = Vec::new();
    for f in workloads.iter().flatten() {
        let n = count.entry(f.as_str()).or_default();
        if *n == 0 {
            first.push(f.as_str());
        }
        *n += 1;
    }
    // A stable sort keeps first-run order among equal counts.
    first.sort_by_key(|f| std::cmp::Reverse(count[f]));
    first.into_iter().map(str::to_string).collect()
}

/// Where the functions of a link map (`ld.lld -Map`) are in `.text`: the
/// start of `.text`, and each function's address and size, by the name the
/// ordering file uses (the mangled name from a `.text.NAME` input section,
/// or the symbol name for code without sections of its own, as glibc's).
/// The map names the functions of a stripped binary: the profiling build
/// keeps the release build's settings, since another strip setting would
/// change every Rust function's name.
pub fn text_layout(map: &str) -> Option<(u64, Functions)> {
    let mut lines = map.lines();
    // The header names the columns: an output section's name starts under
    // "Out", an input section's under "In", a symbol's under "Symbol".
    let header = lines.next()?;
    let (out_col, in_col) = (header.find(" Out")? + 1, header.find(" In ")? + 1);
    let mut start = None;
    let mut in_text = false;
    // Whether the current input section is one function's own: its
    // symbol lines (demangled names) add nothing.
    let mut own_section = false;
    let mut funcs = HashMap::new();
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        let (Ok(vma), Ok(size)) = (u64::from_str_radix(f[0], 16), u64::from_str_radix(f[2], 16))
        else {
            continue;
        };
        let col = line.len() - line[out_col.min(line.len())..].trim_start().len();
        let name = line[col..].trim_end();
        if col == out_col {
            in_text = name == ".text";
            if in_text {
                start = Some(vma);
            }
        } else if !in_text {
        } else if col == in_col {
            own_section = false;
            if let Some((_, sec)) = name.rsplit_once(":(.text.") {
                funcs.insert(sec.trim_end_matches(')').to_string(), (vma, size));
                own_section = true;
            }
        } else if !own_section {
            funcs.entry(name.to_string()).or_insert((vma, size));
        }
    }
    Some((start?, funcs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translated_code_names_its_functions_once_in_first_run_order() {
        let funcs = HashMap::from([
            ("_start".to_string(), (0x1000_0100, 0x20)),
            ("helper".to_string(), (0x1000_0200, 0x20)),
            (
                "_ZN5berth4main17h0123456789abcdefE".to_string(),
                (0x1000_0300, 0x20),
            ),
        ]);
        let syms = code_symbols(&funcs);
        assert_eq!(syms[0], (0x1000_0100, "_start".to_string()));
        let log = "\
----------------
IN: 
0x10000300:  55                       pushq    %rbp
0x10000304:  c3                       retq     
IN: 
0x10000100:  e8 fb 01 00 00           callq    0x10000300
0x00400100:  c3                       retq     
0x10000210:  c3                       retq     
0x10000301:  90                       nop
";
        assert_eq!(
            functions_run(log, &syms),
            ["_ZN5berth4main17h0123456789abcdefE", "_start", "helper"]
        );
    }

    #[test]
    fn functions_in_more_workloads_come_first() {
        let w = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let list = order(&[w(&["boot", "a", "both"]), w(&["b", "both", "boot"])]);
        assert_eq!(list, ["boot", "both", "a", "b"]);
    }

    #[test]
    fn a_link_map_gives_where_each_function_went() {
        let map = [
            "             VMA              LMA     Size Align Out     In      Symbol",
            "          201000           201000      100  4096 .rodata",
            "          201000           201000      100    16         x.o:(.rodata.cst16)",
            "          2cc040           2cc040     1000    64 .text",
            "          2cc080           2cc080      297    16         libc.a(libc-start.o):(.text)",
            "          2cc080           2cc080       3d     1                 call_fini",
            "          2cc340           2cc340       94     1                 __libc_start_call_main",
            "          2cd000           2cd000       20     1         b.o:(.text._ZN5berth4main17h0123456789abcdefE)",
            "          2cd000           2cd000       20     1                 berth::main::h0123456789abcdef",
            "          2ce000           2ce000       10  4096 .data",
        ]
        .join("\n");
        let (start, f) = text_layout(&map).unwrap();
        assert_eq!(start, 0x2cc040);
        assert_eq!(f["call_fini"], (0x2cc080, 0x3d));
        assert_eq!(f["_ZN5berth4main17h0123456789abcdefE"], (0x2cd000, 0x20));
        assert!(!f.contains_key("x.o:(.rodata.cst16)"));
        assert_eq!(f.len(), 3, "{f:?}");
    }
}

//! A small classic-BPF code generator for seccomp filters.
//!
//! The program it writes:
//! 1. loads `seccomp_data.arch` and kills the process unless it is
//!    AUDIT_ARCH_X86_64 (i386 calls made with `int 0x80` arrive with another
//!    arch and carry other numbers);
//! 2. loads `seccomp_data.nr` and finds its interval in a binary search over
//!    the whole 32-bit range: x32 numbers (0x40000000 to 0xfffffffe: the
//!    x32 ABI bit) kill the process; -1 (a syscall skipped by a tracer) and
//!    numbers with no rule get the default action; numbers above the highest
//!    call berth knows get ENOSYS (unless the default is to allow), so a libc
//!    newer than berth falls back as it does on an older kernel (runc does
//!    the same);
//! 3. for a call with rules, tries them in order: each compares the call's
//!    64-bit arguments (as two 32-bit words) and returns its action when all
//!    comparisons hold; when none matches, the default action.
//!
//! Calls with the same rules share one block, and the interval search makes
//! the cost per system call logarithmic. Classic BPF jumps forward only, and
//! a conditional jump reaches at most 255 instructions, so the program is
//! written backwards (every target is placed before the jump to it) and a
//! far target is reached through an unconditional `ja` placed next to the
//! jump.

use std::collections::HashMap;

use super::{Action, Arg, Op};

/// One instruction, as `struct sock_filter` in linux/filter.h.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Insn {
    /// The opcode.
    pub code: u16,
    /// The jump offset when true.
    pub jt: u8,
    /// The jump offset when false.
    pub jf: u8,
    /// The constant operand.
    pub k: u32,
}

/// The kernel's limit on a filter's length (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

/// BPF_LD | BPF_W | BPF_ABS.
pub(super) const LD_W_ABS: u16 = 0x20;
pub(super) const ALU_AND_K: u16 = 0x04 | 0x50;
pub(super) const JA: u16 = 0x05;
pub(super) const JEQ_K: u16 = 0x05 | 0x10;
pub(super) const JGT_K: u16 = 0x05 | 0x20;
pub(super) const JGE_K: u16 = 0x05 | 0x30;
pub(super) const RET_K: u16 = 0x06;

/// AUDIT_ARCH_X86_64: EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
pub const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// The x32 ABI's bit in the call number.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
fn arg_lo(i: u8) -> u32 {
    16 + 8 * u32::from(i)
}
fn arg_hi(i: u8) -> u32 {
    arg_lo(i) + 4
}

/// One alternative for a call: all its comparisons must hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Check {
    pub args: Vec<Arg>,
    pub action: Action,
}

/// The program is built from its end: a label is an instruction's distance
/// from the end (0 is the last one).
type Label = usize;

struct Emitter {
    rev: Vec<Insn>,
    rets: HashMap<u32, Label>,
}

impl Emitter {
    fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) -> Label {
        self.rev.push(Insn { code, jt, jf, k });
        self.rev.len() - 1
    }

    /// The forward offset from a new instruction to `target`.
    fn offset(&self, target: Label) -> usize {
        self.rev.len() - target - 1
    }

    fn stmt(&mut self, code: u16, k: u32) -> Label {
        self.push(code, 0, 0, k)
    }

    fn ja(&mut self, target: Label) -> Label {
        if self.offset(target) == 0 {
            // Falls through anyway.
            return target;
        }
        let k = u32::try_from(self.offset(target)).unwrap_or(u32::MAX);
        self.push(JA, 0, 0, k)
    }

    fn ret(&mut self, action: u32) -> Label {
        if let Some(&l) = self.rets.get(&action)
            && self.offset(l) <= 255
        {
            return l;
        }
        let l = self.push(RET_K, 0, 0, action);
        self.rets.insert(action, l);
        l
    }

    /// A conditional jump: to `jt` when `A <op> k`, else to `jf`.
    fn jump(&mut self, code: u16, k: u32, mut jt: Label, mut jf: Label) -> Label {
        if jt == jf {
            return self.ja(jt);
        }
        loop {
            if self.offset(jf) > 255 {
                jf = self.ja(jf);
            } else if self.offset(jt) > 255 {
                jt = self.ja(jt);
            } else {
                break;
            }
        }
        let (t, f) = (self.offset(jt), self.offset(jf));
        self.push(code, t as u8, f as u8, k)
    }

    /// Jumps to `on_true` when the comparison holds, else to `on_false`.
    fn cond(&mut self, arg: &Arg, on_true: Label, on_false: Label) -> Label {
        let i = arg.index;
        let (hi, lo) = ((arg.value >> 32) as u32, arg.value as u32);
        match arg.op {
            Op::Eq => self.equal(i, hi, lo, on_true, on_false),
            Op::Ne => self.equal(i, hi, lo, on_false, on_true),
            Op::Gt => self.greater(i, hi, lo, JGT_K, on_true, on_false),
            Op::Ge => self.greater(i, hi, lo, JGE_K, on_true, on_false),
            // a < v is !(a >= v), a <= v is !(a > v).
            Op::Lt => self.greater(i, hi, lo, JGE_K, on_false, on_true),
            Op::Le => self.greater(i, hi, lo, JGT_K, on_false, on_true),
            Op::MaskedEq(mask) => {
                // (arg & mask) == value: a value with bits outside the mask
                // never matches.
                if arg.value & !mask != 0 {
                    return on_false;
                }
                let (mhi, mlo) = ((mask >> 32) as u32, mask as u32);
                self.jump(JEQ_K, lo, on_true, on_false);
                if mlo != u32::MAX {
                    self.stmt(ALU_AND_K, mlo);
                }
                let l = self.stmt(LD_W_ABS, arg_lo(i));
                if mhi == 0 {
                    // The high word is masked out entirely.
                    return l;
                }
                self.jump(JEQ_K, hi, l, on_false);
                if mhi != u32::MAX {
                    self.stmt(ALU_AND_K, mhi);
                }
                self.stmt(LD_W_ABS, arg_hi(i))
            }
        }
    }

    /// `arg == value` on both words.
    fn equal(&mut self, i: u8, hi: u32, lo: u32, t: Label, f: Label) -> Label {
        self.jump(JEQ_K, lo, t, f);
        let l = self.stmt(LD_W_ABS, arg_lo(i));
        self.jump(JEQ_K, hi, l, f);
        self.stmt(LD_W_ABS, arg_hi(i))
    }

    /// `arg > value` (`code` JGT) or `arg >= value` (JGE), unsigned 64-bit:
    /// the high words decide unless equal, then the low words.
    fn greater(&mut self, i: u8, hi: u32, lo: u32, code: u16, t: Label, f: Label) -> Label {
        self.jump(code, lo, t, f);
        let l = self.stmt(LD_W_ABS, arg_lo(i));
        let e = self.jump(JEQ_K, hi, l, f);
        self.jump(JGT_K, hi, t, e);
        self.stmt(LD_W_ABS, arg_hi(i))
    }

    /// A binary search over `intervals` (start, target), sorted, the first
    /// starting at 0; `A` holds the call number.
    fn search(&mut self, intervals: &[(u32, Label)]) -> Label {
        if intervals.len() <= 1 {
            // Never empty: the first interval starts at 0.
            return intervals.first().map_or(0, |&(_, target)| target);
        }
        let mid = intervals.len() / 2;
        let right = self.search(&intervals[mid..]);
        let left = self.search(&intervals[..mid]);
        self.jump(JGE_K, intervals[mid].0, right, left)
    }
}

/// The whole filter (see the module doc). `calls` maps call numbers to
/// their rules, tried in order; `known_max` is the highest call number berth
/// knows.
pub(super) fn generate(
    default: Action,
    calls: &std::collections::BTreeMap<u32, Vec<Check>>,
    known_max: u32,
) -> Result<Vec<Insn>, usize> {
    let mut e = Emitter {
        rev: Vec::new(),
        rets: HashMap::new(),
    };
    let default_ret = default.ret();

    // The blocks of the calls with rules, shared between equal rule lists.
    let mut blocks: HashMap<&[Check], Label> = HashMap::new();
    let mut targets: Vec<(u32, Label)> = Vec::new();
    for (nr, checks) in calls {
        let block = match blocks.get(checks.as_slice()) {
            Some(&b) => b,
            None => {
                let mut next = e.ret(default_ret);
                for check in checks.iter().rev() {
                    let ok = e.ret(check.action.ret());
                    let mut t = ok;
                    for arg in check.args.iter().rev() {
                        t = e.cond(arg, t, next);
                    }
                    next = t;
                }
                blocks.insert(checks.as_slice(), next);
                next
            }
        };
        targets.push((*nr, block));
    }

    // The intervals of the call number, covering 0..=u32::MAX; `calls` is
    // sorted, so the starts never decrease. An interval left empty by the
    // next one's equal start is dropped, and neighbours with the same target
    // are merged.
    let kill = e.ret(Action::KillProcess.ret());
    let unknown = if default == Action::Allow {
        e.ret(default_ret)
    } else {
        e.ret(Action::Errno(libc::ENOSYS as u32).ret())
    };
    let fallback = e.ret(default_ret);
    let mut raw = vec![(0, fallback)];
    for (nr, block) in targets {
        if nr <= known_max && nr < X32_SYSCALL_BIT {
            raw.extend([(nr, block), (nr + 1, fallback)]);
        }
    }
    raw.extend([
        (known_max + 1, unknown),
        (X32_SYSCALL_BIT, kill),
        (u32::MAX, fallback),
    ]);
    let mut intervals: Vec<(u32, Label)> = Vec::new();
    for (start, target) in raw {
        while intervals.last().is_some_and(|l| l.0 == start) {
            intervals.pop();
        }
        if intervals.last().is_none_or(|l| l.1 != target) {
            intervals.push((start, target));
        }
    }

    // The head, written last: the arch check, then the call number.
    let tree = e.search(&intervals);
    e.ja(tree);
    let nr_load = e.stmt(LD_W_ABS, NR);
    let kill = e.ret(Action::KillProcess.ret());
    e.jump(JEQ_K, AUDIT_ARCH_X86_64, nr_load, kill);
    e.stmt(LD_W_ABS, ARCH);

    if e.rev.len() > MAX_INSNS {
        return Err(e.rev.len());
    }
    e.rev.reverse();
    Ok(e.rev)
}

/// A seccomp_data for the interpreter in tests.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(super) struct Data {
    pub nr: u32,
    pub arch: u32,
    pub args: [u64; 6],
}

/// Runs a program over `data` as the kernel would, and returns its value.
/// Panics on any instruction the generator does not write, on a jump out of
/// the program, and on falling off its end: those are generator bugs.
#[cfg(test)]
pub(super) fn run(prog: &[Insn], data: &Data) -> u32 {
    let word = |off: u32| -> u32 {
        match off {
            0 => data.nr,
            4 => data.arch,
            8 | 12 => 0,
            16..=63 if off.is_multiple_of(4) => {
                let a = data.args[((off - 16) / 8) as usize];
                if off.is_multiple_of(8) {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            _ => panic!("load from offset {off}"),
        }
    };
    let mut a = 0u32;
    let mut pc = 0usize;
    loop {
        let Some(i) = prog.get(pc) else {
            panic!("pc {pc} past the end ({})", prog.len())
        };
        pc += 1;
        let cond = |hit: bool| usize::from(if hit { i.jt } else { i.jf });
        match i.code {
            LD_W_ABS => a = word(i.k),
            ALU_AND_K => a &= i.k,
            JA => pc += i.k as usize,
            JEQ_K => pc += cond(a == i.k),
            JGT_K => pc += cond(a > i.k),
            JGE_K => pc += cond(a >= i.k),
            RET_K => return i.k,
            c => panic!("opcode {c:#x} at {}", pc - 1),
        }
    }
}

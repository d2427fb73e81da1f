//! Signal names as Compose's `stop_signal` takes them ("SIGTERM", "TERM",
//! "15", "SIGRTMIN+3"), resolved to Linux signal numbers.

use std::fmt;

/// A Linux signal number, 1 to 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signal(i32);

/// Standard signals, by number (index + 1), as on Linux x86-64 and arm64.
const NAMES: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];
const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

impl Signal {
    /// SIGTERM.
    pub const TERM: Signal = Signal(15);
    /// SIGKILL.
    pub const KILL: Signal = Signal(9);

    /// The signal's number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// The signal with number `n`, if it is one.
    pub fn from_number(n: i32) -> Option<Signal> {
        (1..=RTMAX).contains(&n).then_some(Signal(n))
    }

    /// Its name with the SIG prefix: "SIGTERM", "SIGRTMIN+2".
    pub fn name(self) -> String {
        match usize::try_from(self.0 - 1).ok().and_then(|i| NAMES.get(i)) {
            Some(n) => format!("SIG{n}"),
            None if self.0 >= RTMIN => format!("SIGRTMIN+{}", self.0 - RTMIN),
            None => format!("signal {}", self.0),
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Parses a signal name or number.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let unknown = || format!("unknown signal {text:?}");
    if let Ok(n) = text.parse::<i32>() {
        return Signal::from_number(n).ok_or_else(unknown);
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let aliases = [("IOT", 6), ("POLL", 29), ("CLD", 17)];
    if let Some((_, n)) = aliases.iter().find(|(a, _)| *a == name) {
        return Ok(Signal(*n));
    }
    if let Some(i) = NAMES.iter().position(|n| *n == name) {
        return i32::try_from(i + 1).map(Signal).map_err(|_| unknown());
    }
    let rt = |base: i32, rest: &str, sign: i32| -> Option<Signal> {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix(if sign > 0 { '+' } else { '-' })?
                .parse()
                .ok()?
        };
        let n = base + sign * off;
        (RTMIN..=RTMAX).contains(&n).then_some(Signal(n))
    };
    let found = if let Some(rest) = name.strip_prefix("RTMIN") {
        rt(RTMIN, rest, 1)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        rt(RTMAX, rest, -1)
    } else {
        None
    };
    found.ok_or_else(unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names() {
        for (text, n) in [
            ("SIGTERM", 15),
            ("TERM", 15),
            ("term", 15),
            ("15", 15),
            ("SIGKILL", 9),
            ("SIGQUIT", 3),
            ("SIGUSR1", 10),
            ("SIGRTMIN", 34),
            ("SIGRTMIN+2", 36),
            ("RTMAX-1", 63),
        ] {
            assert_eq!(parse_signal(text).map(Signal::number), Ok(n), "{text}");
        }
        for bad in ["SIGFOO", "0", "65", "", "SIGRTMIN+40", "RTMIN-1"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
        assert_eq!(Signal(36).name(), "SIGRTMIN+2");
        assert_eq!(Signal::TERM.to_string(), "SIGTERM");
    }
}

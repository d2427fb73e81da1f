//! Byte sizes written as in Compose (Docker's `RAMInBytes`): a plain
//! integer is bytes; a string is a number with an optional unit b, k, m,
//! g, t or p, optionally followed by "b" or "ib", in any case. All units
//! are binary: "64m", "64MB" and "64MiB" are all 64 × 1024².

use std::fmt;

/// Why a size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    /// Not a number with a unit.
    Syntax(String),
    /// Larger than 2^64 bytes.
    Overflow(String),
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::Syntax(s) => write!(
                f,
                "invalid size {s:?}; expected bytes or a number with a unit, like \"512k\", \"64MiB\" or \"1g\""
            ),
            SizeError::Overflow(s) => write!(f, "size {s:?} is too large"),
        }
    }
}

impl std::error::Error for SizeError {}

/// Parses a size string into bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let syntax = || SizeError::Syntax(text.to_string());
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let unit = unit.trim_start().to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return Err(syntax()),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || frac.contains('.') || (num.contains('.') && frac.is_empty()) {
        return Err(syntax());
    }
    let overflow = || SizeError::Overflow(text.to_string());
    let whole: u128 = int.parse().map_err(|_| overflow())?;
    let mut bytes = whole << shift;
    let mut div: u128 = 1;
    let mut frac_val: u128 = 0;
    for c in frac.chars().take(18) {
        frac_val = frac_val * 10 + u128::from(c.to_digit(10).ok_or_else(syntax)?);
        div *= 10;
    }
    bytes += (frac_val << shift) / div;
    u64::try_from(bytes).map_err(|_| overflow())
}

/// Formats bytes with the largest binary unit that divides them: "64MiB",
/// "1GiB", "1500B".
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [
        ("PiB", 50),
        ("TiB", 40),
        ("GiB", 30),
        ("MiB", 20),
        ("KiB", 10),
    ] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compose_sizes() {
        let ok = [
            ("64MiB", 64 << 20),
            ("64m", 64 << 20),
            ("64MB", 64 << 20),
            ("1g", 1 << 30),
            ("512k", 512 << 10),
            ("100", 100),
            ("100b", 100),
            ("1.5k", 1536),
            ("2 GiB", 2 << 30),
        ];
        for (text, bytes) in ok {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "m", "1x", "1.k", "-1m", "1.2.3m", "99999999999p"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(1536), "1536B");
        assert_eq!(format_size(0), "0B");
    }
}

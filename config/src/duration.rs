//! Durations written as in Compose (Go's `time.ParseDuration`): "1m30s",
//! "250ms", "1h", "1.5s". Units: ns, us (or µs), ms, s, m, h.

use std::fmt;
use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// Not of the form number+unit, repeated.
    Syntax(String),
    /// Negative durations make no sense here.
    Negative(String),
    /// Larger than berth can represent.
    Overflow(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Syntax(s) => write!(
                f,
                "invalid duration {s:?}; expected a number with a unit, like \"10s\", \"1m30s\" or \"250ms\""
            ),
            DurationError::Negative(s) => write!(f, "invalid duration {s:?}; must not be negative"),
            DurationError::Overflow(s) => write!(f, "duration {s:?} is too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses a Compose duration.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(text.to_string());
    let mut s = text.trim();
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    } else if s.starts_with('-') {
        return Err(DurationError::Negative(text.to_string()));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(syntax());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let num_len = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(syntax)?;
        let (num, rest) = s.split_at(num_len);
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(syntax()),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(syntax());
        }
        let overflow = || DurationError::Overflow(text.to_string());
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| overflow())?
        };
        let mut nanos = whole.checked_mul(scale).ok_or_else(overflow)?;
        // Fractional part, to nanosecond precision.
        let mut div: u128 = 1;
        let mut frac_val: u128 = 0;
        for c in frac.chars().take(18) {
            frac_val = frac_val * 10 + u128::from(c.to_digit(10).ok_or_else(syntax)?);
            div *= 10;
        }
        nanos = nanos
            .checked_add(frac_val * scale / div)
            .ok_or_else(overflow)?;
        total = total.checked_add(nanos).ok_or_else(overflow)?;
        if total > u128::from(u64::MAX) {
            return Err(overflow());
        }
        s = rest;
    }
    let total = u64::try_from(total).map_err(|_| DurationError::Overflow(text.to_string()))?;
    Ok(Duration::from_nanos(total))
}

/// Formats a duration the way it is written in a manifest: "1m30s",
/// "250ms", "0s".
pub fn format_duration(d: Duration) -> String {
    let mut nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, scale) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ] {
        if nanos >= scale {
            out.push_str(&format!("{}{unit}", nanos / scale));
            nanos %= scale;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compose_durations() {
        let ok = [
            ("1m30s", 90_000),
            ("250ms", 250),
            ("1h", 3_600_000),
            ("1.5s", 1_500),
            ("0", 0),
            ("0s", 0),
            ("2h45m", 9_900_000),
            (".5s", 500),
            ("1000us", 1),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in [
            "",
            "10",
            "s",
            "1x",
            "1.2.3s",
            "-1s",
            "1 s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["1m30s", "250ms", "1h", "0s", "1h1m1s1ms"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }
}

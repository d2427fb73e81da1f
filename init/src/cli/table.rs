//! Human output: aligned tables, durations and sizes, in the manner of
//! `docker ps`.

use serde_json::Value;

/// A table: a header row and rows of cells, columns three spaces apart.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank, extra ones dropped).
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as text, one line per row, without trailing blanks.
    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(width(c));
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for r in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (c, w)) in r.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("   ");
                }
                line.push_str(c);
                line.extend(std::iter::repeat_n(' ', w - width(c)));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A JSON value as a cell: strings bare, null or "" as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Milliseconds as a short duration: `850ms`, `42s`, `3m12s`, `2h05m`,
/// `3d04h`; `-` for null.
pub fn duration_ms(v: &Value) -> String {
    let Some(ms) = v.as_u64() else {
        return "-".into();
    };
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// Bytes in binary units: `512B`, `1.5KiB`, `64.0MiB`; `-` for null.
pub fn bytes(v: &Value) -> String {
    let Some(n) = v.as_u64() else {
        // cgroup's "max" comes through as a string, or null.
        return match v.as_str() {
            Some(s) => s.to_string(),
            None => "-".into(),
        };
    };
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut x = n as f64 / 1024.0;
    let mut unit = 0;
    while x >= 1024.0 && unit < UNITS.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    format!("{x:.1}{}", UNITS[unit])
}

/// CPU microseconds as seconds: `12.34s`; `-` for null.
pub fn cpu(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| "-".into(), |us| format!("{:.2}s", us as f64 / 1e6))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_align_and_lines_have_no_trailing_blanks() {
        let mut t = Table::new(&["NAME", "STATE", "PID"]);
        t.row(vec!["web".into(), "running".into(), "123".into()]);
        t.row(vec!["database".into(), "exited".into()]);
        assert_eq!(
            t.render(),
            "NAME       STATE     PID\n\
             web        running   123\n\
             database   exited\n"
        );
    }

    #[test]
    fn cells_durations_and_sizes() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!("")), "-");
        assert_eq!(
            cell(&json!(["8080:80/tcp", "53:53/udp"])),
            "8080:80/tcp,53:53/udp"
        );
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(duration_ms(&json!(850)), "850ms");
        assert_eq!(duration_ms(&json!(42_000)), "42s");
        assert_eq!(duration_ms(&json!(192_000)), "3m12s");
        assert_eq!(duration_ms(&json!(7_500_000)), "2h05m");
        assert_eq!(duration_ms(&json!(3 * 86_400_000 + 4 * 3_600_000)), "3d04h");
        assert_eq!(duration_ms(&json!(null)), "-");
        assert_eq!(bytes(&json!(512)), "512B");
        assert_eq!(bytes(&json!(1536)), "1.5KiB");
        assert_eq!(bytes(&json!(64 << 20)), "64.0MiB");
        assert_eq!(bytes(&json!(null)), "-");
        assert_eq!(cpu(&json!(1_234_567)), "1.23s");
    }
}

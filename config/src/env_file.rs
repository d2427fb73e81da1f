//! Env files (`env_file`): lines of `KEY=value`, as Compose reads them.
//! Blank lines and lines starting with `#` are skipped, an `export `
//! prefix is allowed, and a value wholly in single or double quotes loses
//! its quotes. berth reads these when it starts a container.

use std::fmt;

/// A malformed line of an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for EnvFileError {}

/// Parses the text of an env file into (name, value) pairs, in order.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((k, v)) = line.split_once('=') else {
            return Err(EnvFileError {
                line: i + 1,
                message: format!("expected NAME=value, found {line:?}"),
            });
        };
        let k = k.trim_end();
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(EnvFileError {
                line: i + 1,
                message: format!("invalid name {k:?}"),
            });
        }
        let v = v.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| v.strip_prefix(*q).and_then(|r| r.strip_suffix(*q)))
            .filter(|_| v.len() >= 2)
            .unwrap_or(v);
        out.push((k.to_string(), unquoted.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let text = "# comment\n\nA=1\nexport B = two words \nC=\"quoted\"\nD='x'\nE=\n";
        let got = parse_env_file(text).unwrap();
        let want = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "quoted"),
            ("D", "x"),
            ("E", ""),
        ];
        assert_eq!(got.len(), want.len());
        for ((k, v), (wk, wv)) in got.iter().zip(want) {
            assert_eq!((k.as_str(), v.as_str()), (wk, wv));
        }
        assert_eq!(parse_env_file("A=1\nnope\n").unwrap_err().line, 2);
    }
}

//! Positioned errors: every problem in a manifest carries `file:line:column`
//! and the line of source it points at, rendered with a caret under it.

use std::fmt;
use std::ops::Range;

/// Every problem found in a manifest, each with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    /// The problems, in the order of their position in the file.
    pub errors: Vec<Diagnostic>,
}

/// One problem in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file's name as given to [`crate::parse`].
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong, starting with the key path it concerns.
    pub message: String,
    /// The source line the error points at, without its line break.
    pub excerpt: String,
    /// How many characters of `excerpt` the caret line underlines (at least 1).
    pub width: usize,
}

impl Diagnostics {
    /// Builds the diagnostics for `source` from byte spans and messages,
    /// sorted by position, duplicates removed.
    pub(crate) fn from_spans(
        source: &str,
        origin: &str,
        mut raw: Vec<(Range<usize>, String)>,
    ) -> Diagnostics {
        raw.sort_by(|a, b| (a.0.start, a.0.end, &a.1).cmp(&(b.0.start, b.0.end, &b.1)));
        raw.dedup();
        let errors = raw
            .into_iter()
            .map(|(span, message)| Diagnostic::new(source, origin, span, message))
            .collect();
        Diagnostics { errors }
    }

    /// `line:column: message` for each error, one per line: the compact
    /// form that tests compare against.
    pub fn short(&self) -> String {
        let mut out = String::new();
        for e in &self.errors {
            out.push_str(&format!("{}:{}: {}\n", e.line, e.column, e.message));
        }
        out
    }
}

impl Diagnostic {
    fn new(source: &str, origin: &str, span: Range<usize>, message: String) -> Diagnostic {
        let start = floor_char_boundary(source, span.start.min(source.len()));
        let end = floor_char_boundary(source, span.end.clamp(start, source.len()));
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let excerpt = source[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let width = source[start..end.min(line_end)].chars().count().max(1);
        Diagnostic {
            origin: origin.to_string(),
            line,
            column,
            message,
            excerpt,
            width,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostic {
    /// `origin:line:col: message`, then the excerpt and a caret line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}:{}:{}: {}",
            self.origin, self.line, self.column, self.message
        )?;
        let gutter = self.line.to_string();
        writeln!(f, " {gutter} | {}", self.excerpt)?;
        // Keep tabs in the caret line's indent so the caret lines up.
        let indent: String = self
            .excerpt
            .chars()
            .take(self.column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(
            f,
            " {} | {indent}{}",
            " ".repeat(gutter.len()),
            "^".repeat(self.width)
        )
    }
}

impl fmt::Display for Diagnostics {
    /// Every error, each as `origin:line:col: message` followed by the
    /// excerpt line and a caret line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_position_excerpt_and_caret() {
        let src = "version = 1\n[x]\n\trestart = \"sometimes\"\n";
        let start = src.find("\"some").unwrap();
        let d = Diagnostics::from_spans(src, "m.toml", vec![(start..start + 11, "bad".into())]);
        assert_eq!(
            d.to_string(),
            "m.toml:3:12: bad\n 3 | \trestart = \"sometimes\"\n   | \t          ^^^^^^^^^^^"
        );
    }

    #[test]
    fn sorts_and_handles_spans_at_the_end() {
        let src = "a = 1";
        let d = Diagnostics::from_spans(
            src,
            "m",
            vec![(5..5, "second".into()), (0..1, "first".into())],
        );
        assert_eq!(d.short(), "1:1: first\n1:6: second\n");
    }
}

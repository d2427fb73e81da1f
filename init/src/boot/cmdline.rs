//! The kernel command line: the `berth.*` parameters that steer boot.

use std::collections::BTreeMap;

/// Where the manifest is read from unless `berth.manifest=` says otherwise.
pub const DEFAULT_MANIFEST: &str = "/etc/berth/manifest.toml";

/// The parameters berth reads from /proc/cmdline.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cmdline {
    params: BTreeMap<String, String>,
}

impl Cmdline {
    /// Splits a command line into `key[=value]` words, honouring double quotes
    /// as the kernel does (`a="b c"` is one word).
    pub fn parse(line: &str) -> Self {
        let mut params = BTreeMap::new();
        let mut word = String::new();
        let mut quoted = false;
        let mut push = |w: &mut String| {
            if !w.is_empty() {
                let (k, v) = w.split_once('=').unwrap_or((w.as_str(), ""));
                params.insert(k.to_string(), v.to_string());
                w.clear();
            }
        };
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                c if c.is_whitespace() && !quoted => push(&mut word),
                c => word.push(c),
            }
        }
        push(&mut word);
        Cmdline { params }
    }

    /// Reads /proc/cmdline; empty when it cannot be read.
    pub fn read() -> Self {
        Self::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
    }

    /// A parameter's value, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// The manifest's path: `berth.manifest=PATH`, else the default.
    pub fn manifest(&self) -> &str {
        self.get("berth.manifest")
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_MANIFEST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_words_values_and_quotes() {
        let c =
            Cmdline::parse("console=ttyS0 quiet berth.manifest=/etc/x.toml opt=\"a b\" panic=-1\n");
        assert_eq!(c.get("console"), Some("ttyS0"));
        assert_eq!(c.get("quiet"), Some(""));
        assert_eq!(c.get("opt"), Some("a b"));
        assert_eq!(c.manifest(), "/etc/x.toml");
        assert_eq!(c.get("missing"), None);
    }

    #[test]
    fn manifest_defaults() {
        assert_eq!(Cmdline::parse("quiet").manifest(), DEFAULT_MANIFEST);
        assert_eq!(
            Cmdline::parse("berth.manifest=").manifest(),
            DEFAULT_MANIFEST
        );
    }
}

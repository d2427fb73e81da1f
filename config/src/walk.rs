//! Walking toml's span-carrying document: typed access to tables and
//! values that records every error with its span and key path, and goes on.
//!
//! Every reader returns `Option`: `None` means an error was recorded (or
//! the key is absent), and the caller falls back to a default so that the
//! walk continues and all errors are found in one pass.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::duration::{format_duration, parse_duration};
use crate::size::{format_size, parse_size};
use crate::suggest;
use std::path::PathBuf;
use std::time::Duration;

/// A byte range in the manifest's source.
pub(crate) type Span = Range<usize>;

/// The error sink of one walk.
#[derive(Debug, Default)]
pub(crate) struct Cx {
    /// Errors found so far, with their spans.
    pub(crate) errors: Vec<(Span, String)>,
}

impl Cx {
    /// Records an error at `span`.
    pub(crate) fn error(&mut self, span: Span, message: impl Into<String>) {
        self.errors.push((span, message.into()));
    }
}

/// A dotted key path such as `containers.web.ports[1]`, for messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct KeyPath(String);

impl KeyPath {
    /// The document's root.
    pub(crate) fn root() -> KeyPath {
        KeyPath(String::new())
    }

    /// This path extended by a key.
    pub(crate) fn key(&self, key: &str) -> KeyPath {
        let key = quote_key(key);
        if self.0.is_empty() {
            KeyPath(key.into_owned())
        } else {
            KeyPath(format!("{}.{key}", self.0))
        }
    }

    /// This path extended by an array index.
    pub(crate) fn index(&self, i: usize) -> KeyPath {
        KeyPath(format!("{}[{i}]", self.0))
    }

    /// How a table at this path is named in "unknown key … in …".
    fn as_table(&self) -> String {
        if self.0.is_empty() {
            "the top level".to_string()
        } else if self.0.ends_with(']') {
            self.0.clone()
        } else {
            format!("[{}]", self.0)
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key as TOML would need it written: bare when it can be, else quoted.
pub(crate) fn quote_key(key: &str) -> Cow<'_, str> {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("{key:?}"))
    }
}

/// What a value is, for "expected …, found …".
fn found(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// One value in the document, with the path that leads to it.
#[derive(Debug, Clone)]
pub(crate) struct Field<'a, 'i> {
    /// Where it is, for messages.
    pub(crate) path: KeyPath,
    /// The value and its span.
    pub(crate) value: &'a Spanned<DeValue<'i>>,
}

/// One entry of a table whose keys are names chosen by the user.
#[derive(Debug, Clone)]
pub(crate) struct Entry<'a, 'i> {
    /// The key.
    pub(crate) key: &'a str,
    /// The key's span.
    pub(crate) key_span: Span,
    /// The value.
    pub(crate) field: Field<'a, 'i>,
}

impl<'a, 'i> Field<'a, 'i> {
    /// The value's span.
    pub(crate) fn span(&self) -> Span {
        self.value.span()
    }

    /// The raw value.
    pub(crate) fn get(&self) -> &'a DeValue<'i> {
        self.value.get_ref()
    }

    /// Records `path: message` at this value.
    pub(crate) fn err(&self, cx: &mut Cx, message: impl fmt::Display) {
        cx.error(self.span(), format!("{}: {message}", self.path));
    }

    /// Records "expected X, found Y".
    pub(crate) fn type_err(&self, cx: &mut Cx, expected: &str) {
        self.err(
            cx,
            format!("expected {expected}, found {}", found(self.get())),
        );
    }

    /// A string.
    pub(crate) fn str(&self, cx: &mut Cx) -> Option<&'a str> {
        match self.get() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.type_err(cx, "a string");
                None
            }
        }
    }

    /// A non-empty string.
    pub(crate) fn nonempty(&self, cx: &mut Cx) -> Option<&'a str> {
        let s = self.str(cx)?;
        if s.is_empty() {
            self.err(cx, "must not be empty");
            return None;
        }
        Some(s)
    }

    /// A boolean.
    pub(crate) fn bool(&self, cx: &mut Cx) -> Option<bool> {
        match self.get() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_err(cx, "true or false");
                None
            }
        }
    }

    /// An integer, if the value is one (no error otherwise).
    pub(crate) fn as_int(&self) -> Option<Result<i64, ()>> {
        match self.get() {
            DeValue::Integer(i) => Some(i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| ())),
            _ => None,
        }
    }

    /// An integer within `lo..=hi`.
    pub(crate) fn int_in<T: TryFrom<i64>>(&self, cx: &mut Cx, lo: i64, hi: i64) -> Option<T> {
        let n = match self.as_int() {
            Some(Ok(n)) => n,
            Some(Err(())) => {
                self.err(cx, format!("out of range; expected {lo} to {hi}"));
                return None;
            }
            None => {
                self.type_err(cx, "an integer");
                return None;
            }
        };
        if n < lo || n > hi {
            self.err(cx, format!("{n} is out of range; expected {lo} to {hi}"));
            return None;
        }
        T::try_from(n).ok()
    }

    /// A number: an integer or a finite float.
    pub(crate) fn number(&self, cx: &mut Cx) -> Option<f64> {
        match self.get() {
            DeValue::Integer(_) => match self.as_int() {
                Some(Ok(n)) => Some(n as f64),
                _ => {
                    self.err(cx, "number out of range");
                    None
                }
            },
            DeValue::Float(f) => match f.as_str().parse::<f64>() {
                Ok(v) if v.is_finite() => Some(v),
                _ => {
                    self.err(cx, "expected a finite number");
                    None
                }
            },
            _ => {
                self.type_err(cx, "a number");
                None
            }
        }
    }

    /// A string turned into `T` by `parse`, whose error message follows the path.
    pub(crate) fn parse<T>(
        &self,
        cx: &mut Cx,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.str(cx)?;
        match parse(s) {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(cx, e);
                None
            }
        }
    }

    /// The elements of an array.
    pub(crate) fn array(&self, cx: &mut Cx) -> Option<Vec<Field<'a, 'i>>> {
        match self.get() {
            DeValue::Array(a) => Some(
                a.iter()
                    .enumerate()
                    .map(|(i, value)| Field {
                        path: self.path.index(i),
                        value,
                    })
                    .collect(),
            ),
            _ => {
                self.type_err(cx, "an array");
                None
            }
        }
    }

    /// A single string or an array of them, as fields (a lone string is
    /// one field at this path).
    pub(crate) fn one_or_many(&self, cx: &mut Cx) -> Option<Vec<Field<'a, 'i>>> {
        match self.get() {
            DeValue::String(_) => Some(vec![self.clone()]),
            DeValue::Array(_) => self.array(cx),
            _ => {
                self.type_err(cx, "a string or an array of strings");
                None
            }
        }
    }

    /// An array of strings. Elements of the wrong type are reported and skipped.
    pub(crate) fn strings(&self, cx: &mut Cx) -> Option<Vec<String>> {
        let items = self.array(cx)?;
        Some(
            items
                .iter()
                .filter_map(|f| f.str(cx).map(str::to_string))
                .collect(),
        )
    }

    /// A table whose keys are all in `known`; others are reported, with a
    /// suggestion when one is close, or the hint in `hints` for that key.
    pub(crate) fn table(
        &self,
        cx: &mut Cx,
        known: &'static [&'static str],
        hints: &[(&str, &str)],
    ) -> Option<Table<'a, 'i>> {
        let DeValue::Table(table) = self.get() else {
            self.type_err(cx, "a table");
            return None;
        };
        let t = Table {
            path: self.path.clone(),
            span: self.span(),
            table,
            known,
        };
        t.check_keys(cx, hints);
        Some(t)
    }

    /// A table whose keys are names chosen by the user, in document order.
    pub(crate) fn map(&self, cx: &mut Cx) -> Option<Vec<Entry<'a, 'i>>> {
        let DeValue::Table(table) = self.get() else {
            self.type_err(cx, "a table");
            return None;
        };
        Some(entries(&self.path, table))
    }
}

impl Field<'_, '_> {
    /// A duration string within `min..=max`.
    pub(crate) fn duration_in(
        &self,
        cx: &mut Cx,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let d = self.parse(cx, |s| parse_duration(s).map_err(|e| e.to_string()))?;
        if d < min || d > max {
            self.err(
                cx,
                format!(
                    "{} is out of range; expected {} to {}",
                    format_duration(d),
                    format_duration(min),
                    format_duration(max)
                ),
            );
            return None;
        }
        Some(d)
    }

    /// A size: an integer number of bytes, or a string with a unit.
    pub(crate) fn size(&self, cx: &mut Cx) -> Option<u64> {
        match self.get() {
            DeValue::Integer(_) => match self.as_int() {
                Some(Ok(n)) if n >= 0 => u64::try_from(n).ok(),
                _ => {
                    self.err(cx, "a size must not be negative");
                    None
                }
            },
            DeValue::String(s) => match parse_size(s) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.err(cx, e);
                    None
                }
            },
            _ => {
                self.type_err(cx, "a size (bytes, or a string like \"64MiB\")");
                None
            }
        }
    }

    /// A size of at least `min` bytes.
    pub(crate) fn size_min(&self, cx: &mut Cx, min: u64) -> Option<u64> {
        let n = self.size(cx)?;
        if n < min {
            self.err(
                cx,
                format!(
                    "{} is too small; expected at least {}",
                    format_size(n),
                    format_size(min)
                ),
            );
            return None;
        }
        Some(n)
    }

    /// An absolute path.
    pub(crate) fn abs_path(&self, cx: &mut Cx) -> Option<PathBuf> {
        self.parse(cx, check_abs_path)
    }

    /// A scalar written as a string: strings as they are, integers,
    /// floats and booleans as TOML writes them.
    pub(crate) fn scalar_string(&self, cx: &mut Cx) -> Option<String> {
        match self.get() {
            DeValue::String(s) => Some(s.to_string()),
            DeValue::Integer(_) => match self.as_int() {
                Some(Ok(n)) => Some(n.to_string()),
                _ => {
                    self.err(cx, "integer out of range");
                    None
                }
            },
            DeValue::Float(f) => Some(f.as_str().to_string()),
            DeValue::Boolean(b) => Some(b.to_string()),
            _ => {
                self.type_err(cx, "a string, number or boolean");
                None
            }
        }
    }
}

/// Checks that a path is absolute.
pub(crate) fn check_abs_path(s: &str) -> Result<PathBuf, String> {
    if s.starts_with('/') {
        Ok(PathBuf::from(s))
    } else {
        Err(format!("must be an absolute path, found {s:?}"))
    }
}

/// The entries of `table` in document order.
fn entries<'a, 'i>(path: &KeyPath, table: &'a DeTable<'i>) -> Vec<Entry<'a, 'i>> {
    let mut v: Vec<Entry<'a, 'i>> = table
        .iter()
        .map(|(k, value)| Entry {
            key: k.get_ref().as_ref(),
            key_span: k.span(),
            field: Field {
                path: path.key(k.get_ref()),
                value,
            },
        })
        .collect();
    v.sort_by_key(|e| e.key_span.start);
    v
}

/// A table with a fixed set of keys.
#[derive(Debug, Clone)]
pub(crate) struct Table<'a, 'i> {
    /// Where it is.
    pub(crate) path: KeyPath,
    /// Its span: the `[header]`, or the inline table.
    pub(crate) span: Span,
    table: &'a DeTable<'i>,
    known: &'static [&'static str],
}

impl<'a, 'i> Table<'a, 'i> {
    /// The document's root table.
    pub(crate) fn root(
        cx: &mut Cx,
        doc: &'a Spanned<DeTable<'i>>,
        known: &'static [&'static str],
    ) -> Table<'a, 'i> {
        let t = Table {
            path: KeyPath::root(),
            span: 0..0,
            table: doc.get_ref(),
            known,
        };
        t.check_keys(cx, &[]);
        t
    }

    fn check_keys(&self, cx: &mut Cx, hints: &[(&str, &str)]) {
        for (k, _) in self.table.iter() {
            let key: &str = k.get_ref();
            if self.known.contains(&key) {
                continue;
            }
            let mut msg = format!("unknown key {key:?} in {}", self.path.as_table());
            if let Some((_, hint)) = hints.iter().find(|(h, _)| *h == key) {
                msg.push_str("; ");
                msg.push_str(hint);
            } else if let Some(s) = suggest::closest(key, self.known) {
                msg.push_str(&format!("; did you mean {s:?}?"));
            }
            cx.error(k.span(), msg);
        }
    }

    /// The value at `key`, if present.
    pub(crate) fn field(&self, key: &'static str) -> Option<Field<'a, 'i>> {
        debug_assert!(self.known.contains(&key), "{key} is not a declared key");
        self.table.get(key).map(|value| Field {
            path: self.path.key(key),
            value,
        })
    }

    /// The value at `key`, reporting its absence.
    pub(crate) fn required(&self, cx: &mut Cx, key: &'static str) -> Option<Field<'a, 'i>> {
        let f = self.field(key);
        if f.is_none() {
            cx.error(
                self.span.clone(),
                format!("missing key {key:?} in {}", self.path.as_table()),
            );
        }
        f
    }

    /// Records `path: message` at the table.
    pub(crate) fn err(&self, cx: &mut Cx, message: impl fmt::Display) {
        cx.error(self.span.clone(), format!("{}: {message}", self.path));
    }
}

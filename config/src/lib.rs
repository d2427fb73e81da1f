//! berth's manifest: one TOML file that declares the host and its containers.
//!
//! This crate owns the schema, parses and validates a manifest, and hands
//! berth a resolved, typed model with defaults applied ([`Manifest`]), so no
//! other part of berth parses strings again. Both the `berth` binary and the
//! image builder use it.
//!
//! Parsing walks toml's span-carrying document itself, so that every
//! error, not only the first, is reported with its line and column
//! ([`Diagnostics`]). The field names and meanings follow Docker Compose;
//! docs/manifest.md is the reference and [`defaults`] holds every default.

mod caps;
mod container;
pub mod defaults;
mod diag;
mod duration;
pub mod env_file;
mod host;
mod idmap;
mod image_ref;
mod keys;
mod model;
mod net;
mod ports;
mod schema;
mod signal;
mod size;
mod suggest;
mod summary;
mod validate;
mod walk;

pub use container::parse_user;
pub use diag::{Diagnostic, Diagnostics};
pub use duration::{DurationError, format_duration, parse_duration};
pub use image_ref::parse_image_ref;
pub use model::*;
pub use net::parse_cidr;
pub use schema::json_schema;
pub use signal::parse_signal;
pub use size::{SizeError, format_size, parse_size};
pub use summary::{start_order, summary};
pub use validate::ImageFacts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use walk::{Cx, Table};

/// Why a manifest could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Read {
        /// The manifest's path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid manifest.
    Invalid(Diagnostics),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Read { path, source } => {
                write!(f, "cannot read manifest {}: {source}", path.display())
            }
            LoadError::Invalid(d) => write!(f, "{d}"),
        }
    }
}

/// The message is complete in itself (it includes the I/O error or every
/// diagnostic), so no `source` is chained.
impl std::error::Error for LoadError {}

/// Reads and validates the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let origin = path.display().to_string();
    match String::from_utf8(bytes) {
        Ok(source) => parse(&source, &origin),
        Err(e) => parse_bytes(e.as_bytes(), &origin),
    }
    .map_err(LoadError::Invalid)
}

/// Parses and validates a manifest held in memory. `origin` names it in
/// error messages (usually its path); relative paths in the manifest (bind
/// mount sources, env files) are resolved against its directory.
pub fn parse(source: &str, origin: &str) -> Result<Manifest, Diagnostics> {
    parse_with_images(source, origin, &|_| None)
}

/// [`parse`] for bytes that may not be UTF-8: invalid UTF-8 is an error
/// at its position.
pub fn parse_bytes(source: &[u8], origin: &str) -> Result<Manifest, Diagnostics> {
    match std::str::from_utf8(source) {
        Ok(s) => parse(s, origin),
        Err(e) => {
            let text = String::from_utf8_lossy(source);
            let at = e.valid_up_to();
            Err(Diagnostics::from_spans(
                &text,
                origin,
                vec![(at..at + 1, "the manifest is not valid UTF-8".to_string())],
            ))
        }
    }
}

/// [`parse`], with what the caller knows about images (the image builder
/// knows their configs): `images` returns the facts for a reference, or
/// `None` when unknown. This enables the checks that depend on the image,
/// such as a read-only root filesystem where the image writes.
pub fn parse_with_images(
    source: &str,
    origin: &str,
    images: &dyn Fn(&ImageRef) -> Option<ImageFacts>,
) -> Result<Manifest, Diagnostics> {
    let base = base_dir(origin);
    let (doc, syntax) = DeTable::parse_recoverable(source);
    let mut cx = Cx::default();
    let (manifest, spans) = read_manifest(&mut cx, &doc, &base);
    if syntax.is_empty() {
        validate::check(&mut cx, &manifest.containers, &spans, images);
    }
    let mut raw: Vec<(walk::Span, String)> = Vec::new();
    let mut syntax_lines = Vec::new();
    for e in &syntax {
        let span = e.span().unwrap_or(0..0);
        syntax_lines.push(line_of(source, span.start));
        raw.push((span, format!("TOML syntax: {}", e.message())));
    }
    for (span, msg) in cx.errors {
        // After a syntax error the document is partial: drop what follows
        // from it (missing keys, errors on the same line).
        if !syntax.is_empty()
            && (msg.starts_with("missing key")
                || msg.contains(": missing key")
                || syntax_lines.contains(&line_of(source, span.start)))
        {
            continue;
        }
        raw.push((span, msg));
    }
    if raw.is_empty() {
        Ok(manifest)
    } else {
        Err(Diagnostics::from_spans(source, origin, raw))
    }
}

fn line_of(source: &str, offset: usize) -> usize {
    source
        .as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
}

/// The absolute directory of `origin`, against which relative paths in
/// the manifest are resolved.
fn base_dir(origin: &str) -> PathBuf {
    let dir = Path::new(origin).parent().unwrap_or(Path::new(""));
    std::path::absolute(dir).unwrap_or_else(|_| PathBuf::from("/"))
}

type SpansByName = BTreeMap<String, container::Spans>;

fn read_manifest(
    cx: &mut Cx,
    doc: &toml::Spanned<DeTable<'_>>,
    base: &Path,
) -> (Manifest, SpansByName) {
    let root = Table::root(cx, doc, keys::MANIFEST);
    let version = root
        .required(cx, "version")
        .and_then(|f| {
            let v: Option<i64> = f.int_in(cx, i64::MIN, i64::MAX);
            match v {
                Some(1) => Some(1),
                Some(n) => {
                    f.err(
                        cx,
                        format!("unsupported version {n}; this berth reads version 1"),
                    );
                    None
                }
                None => None,
            }
        })
        .unwrap_or(defaults::VERSION);
    let host = match root.field("host") {
        Some(f) => host::read_host(cx, &f),
        None => host::default_host(),
    };
    let mut containers = BTreeMap::new();
    let mut spans = BTreeMap::new();
    let mut first_key: BTreeMap<String, String> = BTreeMap::new();
    if let Some(f) = root.field("containers") {
        for entry in f.map(cx).unwrap_or_default() {
            // A container whose name is wrong is still read, for the errors
            // in its body, but not kept.
            let name = match container::normalise_name(entry.key) {
                Ok(n) => n,
                Err(msg) => {
                    cx.error(
                        entry.key_span.clone(),
                        format!("{}: {msg}", entry.field.path),
                    );
                    let _ = container::read_container(cx, entry.key.to_string(), &entry, base);
                    continue;
                }
            };
            if let Some(first) = first_key.get(&name) {
                cx.error(
                    entry.key_span.clone(),
                    format!(
                        "{}: duplicate container name: {:?} and {first:?} are both {name:?} once lowercased",
                        entry.field.path, entry.key
                    ),
                );
                let _ = container::read_container(cx, name, &entry, base);
                continue;
            }
            first_key.insert(name.clone(), entry.key.to_string());
            let (c, s) = container::read_container(cx, name.clone(), &entry, base);
            if let Some(c) = c {
                containers.insert(name.clone(), c);
            }
            spans.insert(name, s);
        }
    }
    (
        Manifest {
            version,
            host,
            containers,
        },
        spans,
    )
}

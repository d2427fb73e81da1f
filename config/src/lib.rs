//! berth's manifest: one TOML file that declares the host and its containers.
//!
//! This crate owns the schema, parses and validates a manifest, and hands
//! berth a resolved, typed model with defaults applied ([`Manifest`]), so no
//! other part of berth parses strings again. Both the `berth` binary and the
//! image builder use it.

mod model;

pub use model::*;

use std::path::{Path, PathBuf};

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

impl std::error::Error for LoadError {}

/// Every problem found in a manifest, each with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    /// The problems, in the order of their position in the file.
    pub errors: Vec<Diagnostic>,
}

/// One problem in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file's name as given to [`parse`].
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", e.origin, e.line, e.column, e.message)?;
        }
        Ok(())
    }
}

/// Reads and validates the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, LoadError> {
    let source = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&source, &path.display().to_string()).map_err(LoadError::Invalid)
}

/// Parses and validates a manifest held in memory. `origin` names it in
/// error messages (usually its path).
pub fn parse(source: &str, origin: &str) -> Result<Manifest, Diagnostics> {
    model::parse_minimal(source, origin)
}

//! OCI images: the format code that the image builder and berth (PID 1)
//! share, so that an image is read, verified and decoded by the same code
//! whether the builder embeds it or berth imports it at run time.
//!
//! - [`digest`]: sha256 digests and a verifying reader;
//! - [`spec`]: the JSON documents (index, manifest, config, docker-save's
//!   `manifest.json`);
//! - [`source`]: OCI layouts (directory or tar) and `docker save` archives
//!   behind one [`source::Source`] interface, which a registry puller can
//!   implement later;
//! - [`tar`] and [`layer`]: a layer blob as a stream of checked entries,
//!   with whiteouts in overlay terms;
//! - `write` (builder only): deterministic layers, configs and layouts.
//!
//! This module depends on nothing but std, serde, sha2, flate2 and zstd:
//! berth links it without the builder (`default-features = false`).

pub mod digest;
pub mod layer;
pub mod source;
pub mod spec;
pub mod store;
pub mod tar;
#[cfg(feature = "builder")]
pub mod write;

pub use digest::Digest;
pub use layer::{Entry, Kind, Layer, LayerError, LayerLimits};
pub use source::{Archive, ImageSpec, LayerSpec, Location, Source, SourceError, canonical};

/// Bounds on what an image may make berth (or the builder) read, hold and
/// write. Every one is documented in docs/images.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest JSON document (index, manifest, config), in bytes.
    pub max_json: u64,
    /// The most layers in one image: each is an overlay lower directory,
    /// and the mount's options must fit in one page.
    pub max_layers: usize,
    /// Bounds on each layer.
    pub layer: LayerLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_json: 4 << 20,
            max_layers: 32,
            layer: LayerLimits::default(),
        }
    }
}

//! The on-disk format of berth's image store, which berth writes when it
//! imports and the image builder writes into the initramfs (pre-unpacked).
//!
//! ```text
//! <root>/
//!   images/<id>.json          one ImageRecord per image (id: the manifest's
//!                             sha256, or the config's for docker-save images)
//!   blobs/sha256/<hex>        configs and manifests, verified
//!   layers/<hex>/             one unpacked layer per DiffID: an overlay
//!                             lower directory, shared by every image and
//!                             container that has the layer
//!   layers/<hex>.json         its LayerRecord
//!   tmp/                      layers being unpacked (renamed into place)
//! ```

use serde::{Deserialize, Serialize};

use super::digest::Digest;

/// Image records.
pub const IMAGES: &str = "images";
/// Verified configs and manifests.
pub const BLOBS: &str = "blobs/sha256";
/// Unpacked layers.
pub const LAYERS: &str = "layers";
/// Work in progress.
pub const TMP: &str = "tmp";

/// One image of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Its id: the manifest digest, or the config digest when there is no
    /// manifest (docker-save archives).
    pub id: Digest,
    /// Canonical references naming it (`busybox:latest`).
    pub names: Vec<String>,
    /// The manifest's digest, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Digest>,
    /// The config's digest (`blobs/sha256/<hex>`).
    pub config: Digest,
    /// Its layers' DiffIDs, bottom first.
    pub layers: Vec<Digest>,
    /// Where it was imported from.
    #[serde(default)]
    pub source: String,
}

/// One unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Its DiffID.
    pub diff_id: Digest,
    /// The blob it was unpacked from, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<Digest>,
    /// Bytes of file data in it.
    pub size: u64,
    /// Entries in it.
    pub entries: u64,
    /// What the initramfs could not carry, applied by berth at boot.
    #[serde(default, skip_serializing_if = "Fixups::is_empty")]
    pub fixups: Fixups,
}

/// What a pre-unpacked layer in the initramfs needs once berth has copied
/// the initramfs into its root tmpfs: cpio carries no extended attributes
/// or FIFOs, and the copy drops set-id bits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fixups {
    /// Directories to mark opaque (relative paths; "" is the root).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opaque: Vec<String>,
    /// Extended attributes: path, name, value as hex.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<(String, String, String)>,
    /// FIFOs: path, mode, uid, gid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fifos: Vec<(String, u32, u32, u32)>,
    /// Modes to set again (set-id and sticky files): path, mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modes: Vec<(String, u32)>,
}

impl Fixups {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.opaque.is_empty()
            && self.xattrs.is_empty()
            && self.fifos.is_empty()
            && self.modes.is_empty()
    }
}

/// Bytes as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex to bytes.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(to_hex(b"\x00y\xff"), "0079ff");
        assert_eq!(from_hex("0079ff").unwrap(), b"\x00y\xff");
        assert!(from_hex("0").is_none());
        assert!(from_hex("zz").is_none());
    }
}

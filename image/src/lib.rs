//! The image builder: turns a manifest into a bootable kernel and initramfs.
//!
//! [`build`] writes, into an output directory:
//! - `vmlinuz`: the pinned Debian cloud kernel ([`kernel`]);
//! - `initramfs.img`: a compressed cpio newc archive ([`cpio`],
//!   [`initramfs`]) with berth as `/init`, the manifest, the kernel modules
//!   the image needs ([`modules`]) and the container images the manifest
//!   names ([`images`]);
//! - `cmdline`: the default kernel command line;
//! - with [`BuildOptions::disk`], `disk.img`: a flashable GPT disk that
//!   boots them under UEFI, with an ext4 data partition ([`disk`]).
//!
//! Two builds from the same inputs give byte-identical outputs: entries are
//! sorted, every timestamp is fixed (0, or `SOURCE_DATE_EPOCH`), every owner
//! is root, and compression is single-threaded.

#[cfg(feature = "builder")]
mod build;
#[cfg(feature = "builder")]
pub mod cpio;
#[cfg(feature = "builder")]
pub mod disk;
#[cfg(feature = "builder")]
pub mod elf;
#[cfg(feature = "builder")]
pub mod images;
#[cfg(feature = "builder")]
pub mod initramfs;
#[cfg(feature = "builder")]
pub mod kernel;
#[cfg(feature = "builder")]
pub mod modules;
pub mod oci;
#[cfg(feature = "builder")]
pub mod ocibuild;
#[cfg(feature = "builder")]
pub mod progress;

#[cfg(feature = "builder")]
pub use build::*;
#[cfg(feature = "builder")]
pub use images::Sources;
#[cfg(feature = "builder")]
pub use initramfs::Compression;
#[cfg(feature = "builder")]
pub use kernel::Kernel;
#[cfg(feature = "builder")]
pub use progress::Progress;

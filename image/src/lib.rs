//! The image builder: turns a manifest into a bootable kernel and initramfs.

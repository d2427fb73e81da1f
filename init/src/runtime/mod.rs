//! The container runtime: turns one container's resolved spec into a running,
//! isolated process, and reports its exit to its owner. berth does this
//! itself with nix and libc: no runc, no crun.

pub mod security;
pub mod user;

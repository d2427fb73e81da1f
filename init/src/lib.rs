//! berth: PID 1 of a container host, and its command-line client.
//!
//! The library holds everything; `main.rs` only picks PID 1 or the CLI.
//!
//! Run as PID 1 it boots the machine and supervises the containers of its
//! manifest ([`pid1`]). Run as any other process it is the CLI ([`cli`]).
//!
//! Where things live:
//! - [`boot`]: from the initramfs to a mounted, configured system;
//! - [`supervisor`]: the event loop, and the reaper that owns `waitpid`;
//! - [`power`]: shutdown, the fatal path, the power button;
//! - [`api`]: the HTTP API on the control channel;
//! - [`devices`]: kernel uevents, in place of udev;
//! - [`logging`]: berth's records to the console and /dev/kmsg;
//! - [`storage`]: the data partition and where state is kept;
//! - [`sys`]: the system calls behind the boot and shutdown plans.

pub mod api;
pub mod boot;
pub mod cli;
pub mod devices;
pub mod images;
pub mod logging;
pub mod network;
pub mod pid1;
pub mod power;
pub mod runtime;
pub mod storage;
pub mod supervisor;
pub mod sys;
#[cfg(test)]
mod test_alloc;

//! berth: PID 1 of a container host, and its command-line client.
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
//! - [`sys`]: the system calls behind the boot and shutdown plans.

mod api;
mod boot;
mod cli;
mod devices;
mod logging;
mod pid1;
mod power;
mod supervisor;
mod sys;

fn main() {
    if std::process::id() == 1 {
        pid1::main();
    }
    std::process::exit(cli::main(std::env::args().skip(1).collect()));
}

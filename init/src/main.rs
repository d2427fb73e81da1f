//! The `berth` binary: PID 1 when the kernel starts it, the CLI otherwise.

fn main() {
    // A container's init is PID 1 of its own namespace: check for it first.
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    if std::path::Path::new(&arg0).file_name()
        == Some(std::ffi::OsStr::new(berth::runtime::init::ARGV0))
    {
        berth::runtime::init::main(&args.collect::<Vec<_>>());
    }
    if std::process::id() == 1 {
        berth::pid1::main();
    }
    std::process::exit(berth::cli::main(std::env::args().skip(1).collect()));
}

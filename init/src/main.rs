//! The `berth` binary: PID 1 when the kernel starts it, the CLI otherwise.

fn main() {
    if std::process::id() == 1 {
        berth::pid1::main();
    }
    std::process::exit(berth::cli::main(std::env::args().skip(1).collect()));
}

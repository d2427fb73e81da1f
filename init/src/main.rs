//! berth: PID 1 of a container host, and its command-line client.

fn main() {}

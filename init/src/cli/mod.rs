//! The command-line client: what `berth` does when it is not PID 1.

use std::path::Path;

const USAGE: &str = "\
usage: berth <command> [args]

commands:
  check FILE    validate a manifest; print its errors, or a summary
  schema        print the manifest's JSON Schema (for taplo, Even Better TOML)
  version       print berth's version
";

/// Runs the CLI with `args` (without the program name). Returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["check", file] => check(Path::new(file)),
        ["schema"] => {
            print!("{}", berth_config::json_schema());
            0
        }
        ["version" | "--version" | "-V"] => {
            println!("berth {}", env!("CARGO_PKG_VERSION"));
            0
        }
        ["help" | "--help" | "-h"] => {
            print!("{USAGE}");
            0
        }
        [] => {
            eprint!("{USAGE}");
            2
        }
        [cmd, ..] => {
            eprintln!("berth: unknown command or wrong arguments: {cmd}\n");
            eprint!("{USAGE}");
            2
        }
    }
}

fn check(path: &Path) -> i32 {
    match berth_config::load(path) {
        Ok(m) => {
            println!("{}: ok", path.display());
            print!("{}", berth_config::summary(&m));
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

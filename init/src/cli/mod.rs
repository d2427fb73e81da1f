//! The command-line client: what `berth` does when it is not PID 1.
//!
//! `berth [--json] [--host SOCKET] COMMAND [ARGS]` talks to berth's API on
//! its unix socket ([`client`]): human tables by default ([`table`]), JSON
//! with `--json`. An error is one line on stderr, `berth: ...`, and exit
//! status 1; a command line that cannot be parsed exits 2; `exec` exits
//! with the command's own code ([`exec`]).

pub mod args;
pub mod client;
mod commands;
pub mod exec;
pub mod table;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use args::UsageError;

/// The environment variable naming the API socket.
pub const HOST_ENV: &str = "BERTH_HOST";

const USAGE: &str = "\
usage: berth [--json] [--host SOCKET] COMMAND [ARGS]

containers:
  ps                             every container and its state
  inspect NAME                   a container's state and resolved entry (JSON)
  logs [-f] [-t] [--tail N] [--since TIME] NAME
                                 a container's log; -f follows it
  exec [-i] [-t] [-e K=V]... NAME CMD...
                                 run CMD in a running container; exits with
                                 its code (-i: send stdin, -t: a terminal)
  start|stop|restart NAME...     start, stop (and keep stopped), restart
  kill [-s SIGNAL] NAME...       send a signal (default SIGKILL)
  stats [NAME]                   CPU, memory, pids and I/O from the cgroups
  events                         follow container events
  images                         the images on this host
  images prune                   remove unnamed images, and layers and
                                 blobs that no image or container uses

host:
  info                           system information (JSON)
  metrics                        Prometheus metrics
  reload [FILE]                  re-read the manifest (or apply FILE)
  poweroff | reboot              stop every container and end the machine

manifests:
  check FILE                     validate a manifest; print its errors, or a summary
  schema                         the manifest's JSON Schema (for editors)
  version                        berth's version

options:
  --json                         JSON instead of tables
  -H, --host SOCKET              the API socket (default $BERTH_HOST,
                                 else /run/berth/berth.sock)
";

/// Why a command failed.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// {0}
    Usage(#[from] UsageError),
    /// {0}
    Client(#[from] client::Error),
    /// {path}: {source}
    File {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        source: io::Error,
    },
    /// writing output: {0}
    Output(io::Error),
    /// {0}
    Failed(String),
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Output(e)
    }
}

/// Where a command writes.
pub struct Io<'a> {
    /// Normal output.
    pub out: &'a mut dyn Write,
    /// Diagnostics (and a container's stderr).
    pub err: &'a mut dyn Write,
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Io")
    }
}

/// Runs the CLI with `args` (without the program name). Returns the exit
/// code.
pub fn main(args: Vec<String>) -> i32 {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut err = io::stderr();
    let host = std::env::var_os(HOST_ENV)
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let mut io = Io {
        out: &mut out,
        err: &mut err,
    };
    match run(&args, host, &mut io) {
        Ok(code) => code,
        Err(e) => report(&e, io.err),
    }
}

/// Writes `e` as `berth: ...` (and its details, indented) and returns the
/// exit code for it: 2 for usage errors, 1 for the rest, 0 for a closed
/// output pipe (`berth logs -f web | head`).
pub fn report(e: &Error, err: &mut dyn Write) -> i32 {
    match e {
        Error::Output(o) if o.kind() == io::ErrorKind::BrokenPipe => 0,
        Error::Client(client::Error::Io(o)) if o.kind() == io::ErrorKind::BrokenPipe => 0,
        Error::Usage(u) => {
            let _ = writeln!(err, "berth: {u} (berth help: the commands)");
            2
        }
        _ => {
            let _ = writeln!(err, "berth: {e}");
            if let Error::Client(client::Error::Api { details, .. }) = e {
                for d in details {
                    let _ = writeln!(err, "  {d}");
                }
            }
            1
        }
    }
}

/// The global options and the command's arguments.
#[derive(Debug)]
pub struct Globals {
    /// JSON instead of tables.
    pub json: bool,
    /// The API socket.
    pub host: PathBuf,
}

/// Runs the command in `args`; `host` is the socket from the environment.
/// Returns the exit code of a command that ran (non-zero for `exec`'s
/// command, or a partly failed `stop a b`).
pub fn run(args: &[String], host: Option<PathBuf>, io: &mut Io<'_>) -> Result<i32, Error> {
    // Global options come first; commands take them too.
    let mut g = Globals {
        json: false,
        host: host.unwrap_or_else(|| berth_config::defaults::API_SOCKET.into()),
    };
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "--json" => g.json = true,
            "--host" | "-H" => {
                i += 1;
                let h = args
                    .get(i)
                    .ok_or_else(|| UsageError("--host needs a value".into()))?;
                g.host = h.into();
            }
            s if s.starts_with("--host=") => g.host = s["--host=".len()..].into(),
            _ => break,
        }
        i += 1;
    }
    let Some(cmd) = args.get(i) else {
        io.err.write_all(USAGE.as_bytes())?;
        return Ok(2);
    };
    let rest = &args[i + 1..];
    match cmd.as_str() {
        "check" => match rest {
            [file] => Ok(check(Path::new(file), io)),
            _ => Err(UsageError("usage: berth check FILE".into()).into()),
        },
        "schema" => {
            io.out.write_all(berth_config::json_schema().as_bytes())?;
            Ok(0)
        }
        "version" | "--version" | "-V" => {
            writeln!(io.out, "berth {}", env!("CARGO_PKG_VERSION"))?;
            Ok(0)
        }
        "help" | "--help" | "-h" => {
            io.out.write_all(USAGE.as_bytes())?;
            Ok(0)
        }
        _ => commands::run(cmd, rest, g, io),
    }
}

fn check(path: &Path, io: &mut Io<'_>) -> i32 {
    match berth_config::load(path) {
        Ok(m) => {
            let _ = writeln!(io.out, "{}: ok", path.display());
            let _ = io.out.write_all(berth_config::summary(&m).as_bytes());
            0
        }
        Err(e) => {
            let _ = writeln!(io.err, "{e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let code = {
            let mut io = Io {
                out: &mut out,
                err: &mut err,
            };
            match run(&args, Some("/nonexistent/berth.sock".into()), &mut io) {
                Ok(c) => c,
                Err(e) => report(&e, io.err),
            }
        };
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn usage_errors_exit_2_in_one_line() {
        let (code, _, err) = cli(&["frobnicate"]);
        assert_eq!(code, 2);
        assert_eq!(
            err,
            "berth: unknown command frobnicate (berth help: the commands)\n"
        );
        let (code, _, err) = cli(&["logs"]);
        assert_eq!(code, 2);
        assert!(err.starts_with("berth: usage: berth logs"), "{err}");
        assert_eq!(cli(&["exec", "web"]).0, 2);
        assert_eq!(cli(&["ps", "--bogus"]).0, 2);
        assert_eq!(cli(&[]).0, 2);
        assert_eq!(cli(&["--host"]).0, 2);
    }

    #[test]
    fn no_berth_is_one_line_and_exit_1() {
        let (code, out, err) = cli(&["--json", "ps"]);
        assert_eq!((code, out.as_str()), (1, ""));
        assert_eq!(
            err,
            "berth: cannot connect to /nonexistent/berth.sock: No such file or directory \
             (os error 2) (is berth running? --host or $BERTH_HOST names another socket)\n"
        );
        let (code, _, err) = cli(&["--host", "/nonexistent/other", "ps"]);
        assert_eq!(code, 1);
        assert!(err.contains("/nonexistent/other"), "{err}");
    }

    #[test]
    fn version_and_help() {
        let (code, out, _) = cli(&["version"]);
        assert_eq!(
            (code, out.trim()),
            (0, concat!("berth ", env!("CARGO_PKG_VERSION")))
        );
        let (code, out, _) = cli(&["help"]);
        assert_eq!(code, 0);
        assert!(out.contains("logs [-f]"));
    }
}

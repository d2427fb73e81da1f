//! Hand-parsed command lines: the global options, then a command and its
//! own options. Short flags cluster (`-it`), values come as the next
//! argument or after `=` (`--tail 5`, `--tail=5`), `--` ends the options.

/// A command line that cannot be parsed: says what is wrong (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(
    /// What is wrong.
    pub String,
);

/// One option a command takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt {
    /// Its one-letter form, if any.
    pub short: Option<char>,
    /// Its long form, without `--`.
    pub long: &'static str,
    /// Whether it takes a value.
    pub value: bool,
}

/// A flag without a value.
pub const fn flag(short: Option<char>, long: &'static str) -> Opt {
    Opt {
        short,
        long,
        value: false,
    }
}

/// An option with a value.
pub const fn valued(short: Option<char>, long: &'static str) -> Opt {
    Opt {
        short,
        long,
        value: true,
    }
}

/// The global options, also taken after the command.
pub const GLOBAL: [Opt; 2] = [flag(None, "json"), valued(Some('H'), "host")];

/// A command's parsed options and arguments.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Options given, by long name, in order (a flag's value is "").
    pub opts: Vec<(&'static str, String)>,
    /// The other arguments.
    pub args: Vec<String>,
}

impl Parsed {
    /// Whether the flag `long` was given.
    pub fn has(&self, long: &str) -> bool {
        self.opts.iter().any(|(n, _)| *n == long)
    }

    /// The last value of `long`.
    pub fn value(&self, long: &str) -> Option<&str> {
        self.opts
            .iter()
            .rev()
            .find(|(n, _)| *n == long)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `long`, in order.
    pub fn values(&self, long: &str) -> Vec<String> {
        self.opts
            .iter()
            .filter(|(n, _)| *n == long)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Parses `args` against `opts` (and [`GLOBAL`]). With `stop_at_first`,
/// options end at the first other argument (for `exec NAME CMD...`, whose
/// command has options of its own).
pub fn parse(args: &[String], opts: &[Opt], stop_at_first: bool) -> Result<Parsed, UsageError> {
    let all: Vec<Opt> = opts.iter().chain(GLOBAL.iter()).copied().collect();
    let mut p = Parsed::default();
    let mut it = args.iter();
    let value_of =
        |o: &Opt, inline: Option<&str>, it: &mut std::slice::Iter<'_, String>| match inline {
            Some(v) => Ok(v.to_string()),
            None => it
                .next()
                .cloned()
                .ok_or_else(|| UsageError(format!("--{} needs a value", o.long))),
        };
    while let Some(a) = it.next() {
        if a == "--" {
            p.args.extend(it.cloned());
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let o = all
                .iter()
                .find(|o| o.long == name)
                .ok_or_else(|| UsageError(format!("unknown option --{name}")))?;
            if o.value {
                let v = value_of(o, inline, &mut it)?;
                p.opts.push((o.long, v));
            } else if inline.is_some() {
                return Err(UsageError(format!("--{name} takes no value")));
            } else {
                p.opts.push((o.long, String::new()));
            }
        } else if a.len() > 1 && a.starts_with('-') && a.parse::<i64>().is_err() {
            let cluster = &a[1..];
            for (i, c) in cluster.char_indices() {
                let o = all
                    .iter()
                    .find(|o| o.short == Some(c))
                    .ok_or_else(|| UsageError(format!("unknown option -{c}")))?;
                if o.value {
                    // The rest of the cluster, or the next argument.
                    let rest = &cluster[i + c.len_utf8()..];
                    let v = value_of(o, (!rest.is_empty()).then_some(rest), &mut it)?;
                    p.opts.push((o.long, v));
                    break;
                }
                p.opts.push((o.long, String::new()));
            }
        } else {
            p.args.push(a.clone());
            if stop_at_first {
                p.args.extend(it.cloned());
                break;
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    const LOGS: &[Opt] = &[
        flag(Some('f'), "follow"),
        flag(Some('t'), "timestamps"),
        valued(Some('n'), "tail"),
    ];

    #[test]
    fn long_short_clustered_and_inline_values() {
        let p = parse(&v(&["-ft", "--tail", "5", "web"]), LOGS, false).unwrap();
        assert!(p.has("follow") && p.has("timestamps"));
        assert_eq!(p.value("tail"), Some("5"));
        assert_eq!(p.args, ["web"]);
        let p = parse(&v(&["web", "--tail=7", "-n3", "--json"]), LOGS, false).unwrap();
        assert_eq!(p.value("tail"), Some("3"));
        assert!(p.has("json"));
        let p = parse(&v(&["-H", "/s", "x"]), LOGS, false).unwrap();
        assert_eq!(p.value("host"), Some("/s"));
    }

    #[test]
    fn exec_stops_at_the_container_name() {
        let opts = [flag(Some('i'), "interactive"), flag(Some('t'), "tty")];
        let p = parse(&v(&["-it", "web", "ls", "-l", "--", "x"]), &opts, true).unwrap();
        assert!(p.has("interactive") && p.has("tty"));
        assert_eq!(p.args, ["web", "ls", "-l", "--", "x"]);
    }

    #[test]
    fn mistakes_are_usage_errors() {
        let e = |a: &[&str]| parse(&v(a), LOGS, false).unwrap_err().0;
        assert_eq!(e(&["--nope"]), "unknown option --nope");
        assert_eq!(e(&["-x"]), "unknown option -x");
        assert_eq!(e(&["--tail"]), "--tail needs a value");
        assert_eq!(e(&["--follow=1"]), "--follow takes no value");
        // A negative number is an argument, and `--` ends the options.
        let p = parse(&v(&["--", "-f", "-1"]), LOGS, false).unwrap();
        assert_eq!(p.args, ["-f", "-1"]);
    }
}

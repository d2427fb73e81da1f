//! Linux capability names, as `cap_add` and `cap_drop` take them: with or
//! without the `CAP_` prefix, in any case, or `ALL`.

use std::fmt;

use crate::suggest;

/// Capabilities by number (the index), as in linux/capability.h.
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// One Linux capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(u8);

impl Capability {
    /// Its number (`CAP_NET_ADMIN` is 12).
    pub fn number(self) -> u8 {
        self.0
    }

    /// Its name with the prefix: "CAP_NET_ADMIN".
    pub fn name(self) -> String {
        let n = NAMES.get(usize::from(self.0)).copied().unwrap_or("UNKNOWN");
        format!("CAP_{n}")
    }

    /// Every capability berth knows, in number order.
    pub fn all() -> impl Iterator<Item = Capability> {
        (0..NAMES.len()).filter_map(|i| u8::try_from(i).ok().map(Capability))
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// An entry of `cap_add` or `cap_drop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CapSpec {
    /// `ALL`: every capability.
    All,
    /// One capability.
    One(Capability),
}

impl fmt::Display for CapSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapSpec::All => f.write_str("ALL"),
            CapSpec::One(c) => c.fmt(f),
        }
    }
}

/// Parses a capability name.
pub fn parse_capability(text: &str) -> Result<CapSpec, String> {
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if name == "ALL" {
        return Ok(CapSpec::All);
    }
    if let Some(i) = NAMES.iter().position(|n| *n == name)
        && let Ok(i) = u8::try_from(i)
    {
        return Ok(CapSpec::One(Capability(i)));
    }
    let mut msg = format!("unknown capability {text:?}");
    if let Some(s) = suggest::closest(name, &NAMES) {
        msg.push_str(&format!("; did you mean \"{s}\"?"));
    }
    Err(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        let net_admin = CapSpec::One(Capability(12));
        assert_eq!(parse_capability("NET_ADMIN"), Ok(net_admin));
        assert_eq!(parse_capability("CAP_NET_ADMIN"), Ok(net_admin));
        assert_eq!(parse_capability("cap_net_admin"), Ok(net_admin));
        assert_eq!(parse_capability("ALL"), Ok(CapSpec::All));
        assert_eq!(
            parse_capability("NET_ADMN"),
            Err("unknown capability \"NET_ADMN\"; did you mean \"NET_ADMIN\"?".into())
        );
        assert_eq!(Capability(40).name(), "CAP_CHECKPOINT_RESTORE");
        assert_eq!(Capability::all().count(), 41);
    }
}

//! Reading `[containers.NAME]` into [`Container`], with the checks that
//! concern one container alone. Checks across containers are in
//! [`crate::validate`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::de::DeValue;

use crate::caps::parse_capability;
use crate::defaults::{self, limits};
use crate::host::{check_hostname, read_domains, read_ips, read_sysctls};
use crate::idmap::{self, IdMaps, IdRange, check_map};
use crate::image_ref::parse_image_ref;
use crate::keys;
use crate::model::{
    CapSpec, Condition, Container, ContainerLogging, Dependency, Device, HealthTest, Healthcheck,
    IdOrName, MemorySwap, NetworkMode, PortMapping, Resources, RestartPolicy, Seccomp, SecurityOpt,
    Tmpfs, Ulimit, UlimitName, User, Volume, VolumeSource,
};
use crate::ports::{PortRange, parse_port_mapping, parse_protocol, parse_range};
use crate::signal::parse_signal;
use crate::size::parse_size;
use crate::suggest;
use crate::walk::{Cx, Entry, Field, Span, Table, check_abs_path};

/// Where the parts of a container that other containers refer to were
/// written, for the checks across containers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spans {
    /// Each dependency: its name, where it is written, its condition.
    pub(crate) depends_on: Vec<(String, Span, Condition)>,
    /// `network_mode = "service:NAME"`: the name and where.
    pub(crate) network_service: Option<(String, Span)>,
    /// Each published port and where.
    pub(crate) ports: Vec<(PortMapping, Span)>,
    /// `read_only`, if written.
    pub(crate) read_only: Option<Span>,
    /// Whether it has a health check.
    pub(crate) healthcheck: bool,
    /// Whether the manifest turns health checks off (the image's too).
    pub(crate) healthcheck_disabled: bool,
    /// Its restart policy.
    pub(crate) restart: RestartPolicy,
}

/// Checks and normalises a container name, as Compose does: lowercase,
/// `[a-z0-9][a-z0-9_.-]*`.
pub(crate) fn normalise_name(name: &str) -> Result<String, String> {
    let n = name.to_ascii_lowercase();
    let ok = n.len() <= limits::MAX_NAME_LEN
        && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(n)
    } else {
        Err(format!(
            "invalid container name {name:?}; expected letters, digits, '_', '.' or '-', starting with a letter or digit, at most {} characters",
            limits::MAX_NAME_LEN
        ))
    }
}

/// Reads one container. `base` is the directory relative paths are
/// resolved against.
pub(crate) fn read_container(
    cx: &mut Cx,
    name: String,
    entry: &Entry<'_, '_>,
    base: &Path,
) -> (Option<Container>, Spans) {
    let mut spans = Spans::default();
    let Some(t) = entry.field.table(cx, keys::CONTAINER, keys::COMPOSE_HINTS) else {
        return (None, spans);
    };
    let image = t
        .required(cx, "image")
        .and_then(|f| f.parse(cx, parse_image_ref));

    let command = t.field("command").and_then(|f| read_argv(cx, &f));
    let entrypoint = t.field("entrypoint").and_then(|f| read_argv(cx, &f));
    let environment = t
        .field("environment")
        .map(|f| read_key_values(cx, &f, true))
        .unwrap_or_default();
    let env_file = t
        .field("env_file")
        .map(|f| {
            f.one_or_many(cx)
                .unwrap_or_default()
                .iter()
                .filter_map(|p| p.nonempty(cx).map(|s| resolve(base, s)))
                .collect()
        })
        .unwrap_or_default();
    let working_dir = t.field("working_dir").and_then(|f| f.abs_path(cx));
    let user = t.field("user").and_then(|f| f.parse(cx, parse_user));
    let group_add = t
        .field("group_add")
        .map(|f| {
            f.array(cx)
                .unwrap_or_default()
                .iter()
                .filter_map(|g| read_id_or_name(cx, g))
                .collect()
        })
        .unwrap_or_default();
    let restart = t
        .field("restart")
        .and_then(|f| f.parse(cx, parse_restart))
        .unwrap_or(defaults::RESTART);
    let depends_on = t
        .field("depends_on")
        .map(|f| read_depends_on(cx, &f, &mut spans))
        .unwrap_or_default();
    let (healthcheck, healthcheck_disabled) = t
        .field("healthcheck")
        .map(|f| read_healthcheck(cx, &f))
        .unwrap_or((None, false));
    spans.healthcheck = healthcheck.is_some();
    spans.healthcheck_disabled = healthcheck_disabled;
    spans.restart = restart;
    let stop_signal_set = t.field("stop_signal").is_some();
    let stop_signal = t
        .field("stop_signal")
        .and_then(|f| match f.as_int() {
            Some(Ok(n)) => i32::try_from(n)
                .ok()
                .and_then(crate::signal::Signal::from_number)
                .or_else(|| {
                    f.err(cx, format!("unknown signal {n}"));
                    None
                }),
            _ => f.parse(cx, parse_signal),
        })
        .unwrap_or(defaults::STOP_SIGNAL);
    let stop_grace_period = t
        .field("stop_grace_period")
        .and_then(|f| f.duration_in(cx, Duration::ZERO, limits::MAX_GRACE))
        .unwrap_or(defaults::STOP_GRACE_PERIOD);
    let timeout = t
        .field("timeout")
        .and_then(|f| f.duration_in(cx, limits::MIN_TIMEOUT, limits::MAX_TIMEOUT));
    let init = read_bool(cx, &t, "init", defaults::INIT);
    let read_only = read_bool(cx, &t, "read_only", defaults::READ_ONLY);
    spans.read_only = t.field("read_only").map(|f| f.span());
    let persist = read_bool(cx, &t, "persist", defaults::PERSIST);
    if let (true, Some(f)) = (persist && read_only, t.field("persist")) {
        f.err(
            cx,
            "conflicts with read_only = true: a read-only container has no writable layer to keep",
        );
    }
    let privileged = read_bool(cx, &t, "privileged", defaults::PRIVILEGED);

    // Every mount with the field it came from, to report a target used twice there.
    let mut mounts: Vec<(PathBuf, Field<'_, '_>)> = Vec::new();
    let mut tmpfs: Vec<Tmpfs> = Vec::new();
    for item in t
        .field("tmpfs")
        .and_then(|f| f.one_or_many(cx))
        .unwrap_or_default()
    {
        if let Some(m) = item.parse(cx, parse_tmpfs) {
            mounts.push((m.target.clone(), item));
            tmpfs.push(m);
        }
    }
    let mut volumes: Vec<Volume> = Vec::new();
    for item in t
        .field("volumes")
        .and_then(|f| f.array(cx))
        .unwrap_or_default()
    {
        if let Some(v) = read_volume(cx, &item, base) {
            mounts.push((v.target.clone(), item));
            volumes.push(v);
        }
    }
    mounts.sort_by_key(|(_, f)| f.span().start);
    for (i, (target, f)) in mounts.iter().enumerate() {
        if mounts[..i].iter().any(|(t, _)| t == target) {
            f.err(
                cx,
                format!("{} is already a mount target", target.display()),
            );
        }
    }

    let ports_field = t.field("ports");
    for p in ports_field
        .as_ref()
        .and_then(|f| f.array(cx))
        .unwrap_or_default()
    {
        if let Some(m) = read_port(cx, &p) {
            // berth publishes with DNAT in nftables: traffic to a loopback
            // address never takes that path (it would need route_localnet,
            // which opens the loopback range to the network).
            if let Some(ip) = m.host_ip.filter(|ip| ip.is_loopback()) {
                p.err(
                    cx,
                    format!(
                        "cannot publish on the loopback address {ip}: published ports are forwarded to the container by nftables, which loopback traffic bypasses; publish on 0.0.0.0 or one of the host's addresses, or use network_mode = \"host\""
                    ),
                );
                continue;
            }
            spans.ports.push((m, p.span()));
        }
    }
    let network_mode = t
        .field("network_mode")
        .and_then(|f| {
            let m = f.parse(cx, parse_network_mode)?;
            if let NetworkMode::Service(s) = &m {
                spans.network_service = Some((s.clone(), f.span()));
            }
            Some(m)
        })
        .unwrap_or(defaults::NETWORK_MODE);
    let shares_ns = matches!(network_mode, NetworkMode::Host | NetworkMode::Service(_));
    if let (true, Some(f)) = (shares_ns && !spans.ports.is_empty(), &ports_field) {
        f.err(
            cx,
            format!("cannot publish ports with network_mode \"{network_mode}\""),
        );
        spans.ports.clear();
    }
    let pid_host = t
        .field("pid")
        .and_then(|f| {
            f.parse(cx, |s| match s {
                "host" => Ok(true),
                _ => Err(format!("unknown pid mode {s:?}; expected \"host\"")),
            })
        })
        .unwrap_or(false);
    let hostname_field = t.field("hostname");
    let mut hostname = hostname_field
        .as_ref()
        .and_then(|f| f.parse(cx, check_hostname));
    if let (true, Some(f)) = (shares_ns, &hostname_field) {
        f.err(
            cx,
            format!("cannot set a hostname with network_mode \"{network_mode}\""),
        );
    }
    if shares_ns {
        hostname = None;
    } else if hostname.is_none() {
        hostname = Some(name.clone());
    }

    let dns = t.field("dns").map(|f| read_ips(cx, &f)).unwrap_or_default();
    let dns_search = t
        .field("dns_search")
        .map(|f| read_domains(cx, &f))
        .unwrap_or_default();
    let extra_hosts = t
        .field("extra_hosts")
        .map(|f| read_extra_hosts(cx, &f))
        .unwrap_or_default();
    let cap_add = read_caps(cx, &t, "cap_add");
    let cap_drop = read_caps(cx, &t, "cap_drop");
    if let (true, Some(f)) = (privileged && !cap_drop.is_empty(), t.field("cap_drop")) {
        f.err(
            cx,
            "conflicts with privileged = true, which keeps every capability",
        );
    }
    let security_opt = t
        .field("security_opt")
        .map(|f| read_security_opt(cx, &f))
        .unwrap_or_default();
    let devices = t
        .field("devices")
        .map(|f| {
            f.array(cx)
                .unwrap_or_default()
                .iter()
                .filter_map(|d| d.parse(cx, parse_device))
                .collect()
        })
        .unwrap_or_default();
    let ulimits = t
        .field("ulimits")
        .map(|f| read_ulimits(cx, &f))
        .unwrap_or_default();
    let sysctls = t
        .field("sysctls")
        .map(|f| read_sysctls(cx, &f))
        .unwrap_or_default();
    if let (true, Some(f)) = (
        network_mode == NetworkMode::Host && sysctls.keys().any(|k| k.starts_with("net.")),
        t.field("sysctls"),
    ) {
        f.err(cx, "net.* sysctls cannot be set with network_mode \"host\"");
    }
    let resources = t
        .field("resources")
        .map(|f| read_resources(cx, &f))
        .unwrap_or_default();
    let shm_size = t
        .field("shm_size")
        .and_then(|f| f.size_min(cx, 4096))
        .unwrap_or(defaults::SHM_SIZE);
    let oom_score_adj = t
        .field("oom_score_adj")
        .and_then(|f| f.int_in(cx, -1000, 1000))
        .unwrap_or(defaults::OOM_SCORE_ADJ);
    let labels = t
        .field("labels")
        .map(|f| read_key_values(cx, &f, false))
        .unwrap_or_default();
    let userns = read_userns(cx, &t);
    if userns.is_some() {
        let conflicts = [
            (privileged, "privileged", "privileged = true"),
            (pid_host, "pid", "pid = \"host\""),
            (
                network_mode != NetworkMode::Bridge && network_mode != NetworkMode::None,
                "network_mode",
                "a shared network namespace (network_mode \"host\" or \"service:…\")",
            ),
        ];
        for (on, key, what) in conflicts {
            if let (true, Some(f)) = (on, t.field(key)) {
                f.err(
                    cx,
                    format!(
                        "conflicts with uid_map/gid_map: {what} needs the host's user namespace"
                    ),
                );
            }
        }
    }
    let logging = t
        .field("logging")
        .map(|f| read_logging(cx, &f))
        .unwrap_or(defaults::CONTAINER_LOGGING);

    let Some(image) = image else {
        return (None, spans);
    };
    let c = Container {
        name,
        image,
        command,
        entrypoint,
        environment,
        env_file,
        working_dir,
        user,
        group_add,
        restart,
        depends_on,
        healthcheck,
        healthcheck_disabled,
        stop_signal,
        stop_signal_set,
        stop_grace_period,
        timeout,
        init,
        read_only,
        persist,
        tmpfs,
        volumes,
        ports: spans.ports.iter().map(|(p, _)| p.clone()).collect(),
        network_mode,
        pid_host,
        hostname,
        dns,
        dns_search,
        extra_hosts,
        cap_add,
        cap_drop,
        privileged,
        security_opt,
        devices,
        ulimits,
        sysctls,
        resources,
        shm_size,
        oom_score_adj,
        labels,
        logging,
        userns,
    };
    (Some(c), spans)
}

fn read_bool(cx: &mut Cx, t: &Table<'_, '_>, key: &'static str, default: bool) -> bool {
    t.field(key).and_then(|f| f.bool(cx)).unwrap_or(default)
}

/// `base/rel`, made absolute and with "." and ".." resolved lexically.
fn resolve(base: &Path, p: &str) -> PathBuf {
    let joined = base.join(p);
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A command line: an array of strings, or a string split as a shell would.
fn read_argv(cx: &mut Cx, f: &Field<'_, '_>) -> Option<Vec<String>> {
    match f.get() {
        DeValue::String(s) => match shell_words(s) {
            Ok(v) => Some(v),
            Err(e) => {
                f.err(cx, e);
                None
            }
        },
        DeValue::Array(_) => f.strings(cx),
        _ => {
            f.type_err(cx, "an array of strings or a string");
            None
        }
    }
}

/// Splits a command string into words with POSIX shell quoting rules
/// (quotes and backslashes; no expansion), as Compose does.
pub(crate) fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unterminated quote in {s:?}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// `environment` or `labels`: a table of scalars, or an array of "KEY=value".
fn read_key_values(cx: &mut Cx, f: &Field<'_, '_>, env: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let check_key = |k: &str| -> Result<(), String> {
        if k.is_empty() || k.contains('=') || (env && k.contains(char::is_whitespace)) {
            Err(format!("invalid name {k:?}"))
        } else {
            Ok(())
        }
    };
    match f.get() {
        DeValue::Table(_) => {
            for e in f.map(cx).unwrap_or_default() {
                if let Err(msg) = check_key(e.key) {
                    cx.error(e.key_span.clone(), format!("{}: {msg}", f.path));
                    continue;
                }
                if let Some(v) = e.field.scalar_string(cx) {
                    out.insert(e.key.to_string(), v);
                }
            }
        }
        DeValue::Array(_) => {
            for item in f.array(cx).unwrap_or_default() {
                let kv = item.parse(cx, |s| {
                    let (k, v) = s
                        .split_once('=')
                        .ok_or_else(|| format!("expected \"NAME=value\", found {s:?}"))?;
                    check_key(k)?;
                    Ok((k.to_string(), v.to_string()))
                });
                if let Some((k, v)) = kv
                    && out.insert(k.clone(), v).is_some()
                {
                    item.err(cx, format!("{k:?} is set twice"));
                }
            }
        }
        _ => f.type_err(cx, "a table or an array of \"NAME=value\" strings"),
    }
    out
}

fn parse_id_or_name(s: &str) -> Result<IdOrName, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(IdOrName::Id)
            .map_err(|_| format!("id {s} is out of range"));
    }
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(IdOrName::Name(s.to_string()))
    } else {
        Err(format!("invalid user or group {s:?}"))
    }
}

fn read_id_or_name(cx: &mut Cx, f: &Field<'_, '_>) -> Option<IdOrName> {
    if f.as_int().is_some() {
        return f.int_in(cx, 0, i64::from(u32::MAX)).map(IdOrName::Id);
    }
    f.parse(cx, parse_id_or_name)
}

/// Parses a user as `user[:group]`, each a number or a name (as a
/// manifest's `user` or an image config's `User` writes it).
pub fn parse_user(s: &str) -> Result<User, String> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    Ok(User {
        user: parse_id_or_name(u)?,
        group: g.map(parse_id_or_name).transpose()?,
    })
}

/// Parses a restart policy.
pub(crate) fn parse_restart(s: &str) -> Result<RestartPolicy, String> {
    let unknown = || {
        format!(
            "unknown policy {s:?}; expected \"no\", \"always\", \"on-failure[:N]\" or \"unless-stopped\""
        )
    };
    match s {
        "no" => Ok(RestartPolicy::No),
        "always" => Ok(RestartPolicy::Always),
        "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
        "on-failure" => Ok(RestartPolicy::OnFailure { max_retries: None }),
        _ => {
            let n = s.strip_prefix("on-failure:").ok_or_else(unknown)?;
            let n: u32 = n.parse().map_err(|_| {
                format!(
                    "invalid retry count in {s:?}; expected \"on-failure:N\" with N a whole number"
                )
            })?;
            Ok(RestartPolicy::OnFailure {
                max_retries: Some(n),
            })
        }
    }
}

fn parse_condition(s: &str) -> Result<Condition, String> {
    match s {
        "service_started" => Ok(Condition::ServiceStarted),
        "service_healthy" => Ok(Condition::ServiceHealthy),
        "service_completed_successfully" => Ok(Condition::ServiceCompletedSuccessfully),
        _ => Err(format!(
            "unknown condition {s:?}; expected \"service_started\", \"service_healthy\" or \"service_completed_successfully\""
        )),
    }
}

fn read_depends_on(
    cx: &mut Cx,
    f: &Field<'_, '_>,
    spans: &mut Spans,
) -> BTreeMap<String, Dependency> {
    let mut out = BTreeMap::new();
    let plain = Dependency {
        condition: defaults::DEPENDS_CONDITION,
        required: defaults::DEPENDS_REQUIRED,
    };
    match f.get() {
        DeValue::Array(_) => {
            for item in f.array(cx).unwrap_or_default() {
                let Some(name) = item.parse(cx, normalise_name) else {
                    continue;
                };
                if out.insert(name.clone(), plain).is_some() {
                    item.err(cx, format!("{name:?} is listed twice"));
                    continue;
                }
                spans.depends_on.push((name, item.span(), plain.condition));
            }
        }
        DeValue::Table(_) => {
            for e in f.map(cx).unwrap_or_default() {
                let name = match normalise_name(e.key) {
                    Ok(n) => n,
                    Err(msg) => {
                        cx.error(e.key_span.clone(), format!("{}: {msg}", f.path));
                        continue;
                    }
                };
                let Some(t) = e.field.table(cx, keys::DEPENDENCY, &[]) else {
                    continue;
                };
                let condition = t
                    .field("condition")
                    .and_then(|f| f.parse(cx, parse_condition))
                    .unwrap_or(defaults::DEPENDS_CONDITION);
                let required = t
                    .field("required")
                    .and_then(|f| f.bool(cx))
                    .unwrap_or(defaults::DEPENDS_REQUIRED);
                if out.contains_key(&name) {
                    cx.error(
                        e.key_span.clone(),
                        format!("{}: {name:?} is listed twice", f.path),
                    );
                    continue;
                }
                out.insert(
                    name.clone(),
                    Dependency {
                        condition,
                        required,
                    },
                );
                spans.depends_on.push((name, e.key_span.clone(), condition));
            }
        }
        _ => f.type_err(cx, "an array of container names or a table"),
    }
    out
}

/// The health check written, and whether it is turned off (`disable =
/// true` or `test = ["NONE"]`), which also turns off the image's.
fn read_healthcheck(cx: &mut Cx, f: &Field<'_, '_>) -> (Option<Healthcheck>, bool) {
    let Some(t) = f.table(cx, keys::HEALTHCHECK, &[]) else {
        return (None, false);
    };
    let disabled = t.field("disable").and_then(|f| f.bool(cx)).unwrap_or(false);
    let dur = |cx: &mut Cx, key: &'static str, min: Duration, default: Duration| {
        t.field(key)
            .and_then(|f| f.duration_in(cx, min, limits::MAX_HEALTH_DURATION))
            .unwrap_or(default)
    };
    let interval = dur(
        cx,
        "interval",
        limits::MIN_HEALTH_INTERVAL,
        defaults::HEALTH_INTERVAL,
    );
    let timeout = dur(
        cx,
        "timeout",
        limits::MIN_HEALTH_INTERVAL,
        defaults::HEALTH_TIMEOUT,
    );
    let start_period = dur(
        cx,
        "start_period",
        Duration::ZERO,
        defaults::HEALTH_START_PERIOD,
    );
    let start_interval = dur(
        cx,
        "start_interval",
        limits::MIN_HEALTH_INTERVAL,
        defaults::HEALTH_START_INTERVAL,
    );
    let retries = t
        .field("retries")
        .and_then(|f| f.int_in(cx, 1, 1000))
        .unwrap_or(defaults::HEALTH_RETRIES);
    let test_field = t.field("test");
    if disabled {
        return (None, true);
    }
    let Some(test_field) = test_field else {
        t.err(
            cx,
            "missing key \"test\"; to use the image's HEALTHCHECK, leave out the healthcheck table",
        );
        return (None, false);
    };
    let test = match read_health_test(cx, &test_field) {
        Some(Some(test)) => test,
        Some(None) => return (None, true),
        None => return (None, false),
    };
    (
        Some(Healthcheck {
            test,
            interval,
            timeout,
            retries,
            start_period,
            start_interval,
        }),
        false,
    )
}

/// `Some(None)` is `["NONE"]`: disabled.
fn read_health_test(cx: &mut Cx, f: &Field<'_, '_>) -> Option<Option<HealthTest>> {
    if let DeValue::String(s) = f.get() {
        if s.trim().is_empty() {
            f.err(cx, "must not be empty");
            return None;
        }
        return Some(Some(HealthTest::Shell(s.to_string())));
    }
    let words = f.strings(cx)?;
    let expected = "expected [\"CMD\", args…], [\"CMD-SHELL\", \"command\"] or [\"NONE\"]";
    match words.first().map(String::as_str) {
        Some("NONE") if words.len() == 1 => Some(None),
        Some("CMD") if words.len() > 1 => Some(Some(HealthTest::Cmd(words[1..].to_vec()))),
        Some("CMD-SHELL") if words.len() == 2 => Some(Some(HealthTest::Shell(words[1].clone()))),
        Some("CMD-SHELL") => {
            f.err(
                cx,
                format!("CMD-SHELL takes exactly one command string; {expected}"),
            );
            None
        }
        _ => {
            f.err(cx, expected);
            None
        }
    }
}

fn parse_tmpfs(s: &str) -> Result<Tmpfs, String> {
    let (target, opts) = match s.split_once(':') {
        Some((t, o)) => (t, Some(o)),
        None => (s, None),
    };
    let target = check_abs_path(target).map_err(|e| format!("tmpfs target {e}"))?;
    let mut t = Tmpfs {
        target,
        size: None,
        mode: None,
    };
    for opt in opts.into_iter().flat_map(|o| o.split(',')) {
        if let Some(v) = opt.strip_prefix("size=") {
            let size = parse_size(v).map_err(|e| e.to_string())?;
            if size == 0 {
                return Err("tmpfs size must not be 0".to_string());
            }
            t.size = Some(size);
        } else if let Some(v) = opt.strip_prefix("mode=") {
            t.mode = Some(
                u32::from_str_radix(v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| format!("invalid mode {v:?}; expected octal, like \"1777\""))?,
            );
        } else {
            return Err(format!(
                "unknown tmpfs option {opt:?}; expected \"size=…\" or \"mode=…\""
            ));
        }
    }
    Ok(t)
}

fn check_volume_name(s: &str) -> Result<String, String> {
    let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "invalid volume name {s:?}; a bind mount source starts with '/' or '.'"
        ))
    }
}

fn volume_source(base: &Path, s: &str) -> Result<VolumeSource, String> {
    if s.starts_with('/') || s.starts_with('.') {
        Ok(VolumeSource::Bind(resolve(base, s)))
    } else {
        check_volume_name(s).map(VolumeSource::Named)
    }
}

fn volume_target(s: &str) -> Result<PathBuf, String> {
    if s == "/" {
        return Err("cannot mount a volume on /".to_string());
    }
    check_abs_path(s).map_err(|e| format!("volume target {e}"))
}

fn read_volume(cx: &mut Cx, f: &Field<'_, '_>, base: &Path) -> Option<Volume> {
    if let DeValue::String(_) = f.get() {
        return f.parse(cx, |s| {
            let parts: Vec<&str> = s.split(':').collect();
            let (src, dst, mode) = match parts.as_slice() {
                [src, dst] => (*src, *dst, None),
                [src, dst, mode] => (*src, *dst, Some(*mode)),
                [_] => {
                    return Err(format!(
                        "volume {s:?} has no source; anonymous volumes are not supported (name it, like \"data:{s}\", or use tmpfs)"
                    ));
                }
                _ => {
                    return Err(format!(
                        "invalid volume {s:?}; expected \"source:target[:ro|rw]\""
                    ));
                }
            };
            let read_only = match mode {
                None | Some("rw") => false,
                Some("ro") => true,
                Some(m) => {
                    return Err(format!("unknown volume mode {m:?}; expected \"ro\" or \"rw\""));
                }
            };
            Ok(Volume {
                source: volume_source(base, src)?,
                target: volume_target(dst)?,
                read_only,
            })
        });
    }
    let t = f.table(cx, keys::VOLUME, &[])?;
    let kind = t.field("type").and_then(|f| {
        f.parse(cx, |s| match s {
            "bind" | "volume" => Ok(s.to_string()),
            _ => Err(format!(
                "unknown volume type {s:?}; expected \"bind\" or \"volume\""
            )),
        })
    });
    let source = t.required(cx, "source").and_then(|sf| {
        sf.parse(cx, |s| {
            let src = volume_source(base, s)?;
            match (kind.as_deref(), &src) {
                (Some("bind"), VolumeSource::Named(_)) => Err(format!(
                    "a bind mount source is a path starting with '/' or '.', found {s:?}"
                )),
                (Some("volume"), VolumeSource::Bind(_)) => {
                    check_volume_name(s).map(VolumeSource::Named)
                }
                _ => Ok(src),
            }
        })
    });
    let target = t
        .required(cx, "target")
        .and_then(|f| f.parse(cx, volume_target));
    let read_only = t
        .field("read_only")
        .and_then(|f| f.bool(cx))
        .unwrap_or(false);
    Some(Volume {
        source: source?,
        target: target?,
        read_only,
    })
}

fn read_port(cx: &mut Cx, f: &Field<'_, '_>) -> Option<PortMapping> {
    match f.get() {
        DeValue::String(_) => f.parse(cx, parse_port_mapping),
        DeValue::Table(_) => {
            let t = f.table(cx, keys::PORT, &[])?;
            let range = |cx: &mut Cx, f: &Field<'_, '_>| -> Option<PortRange> {
                if f.as_int().is_some() {
                    return f.int_in(cx, 1, 65535).map(PortRange::single);
                }
                f.parse(cx, parse_range)
            };
            let target = t.required(cx, "target").and_then(|f| range(cx, &f));
            let published = t.required(cx, "published").and_then(|f| range(cx, &f));
            let host_ip = t
                .field("host_ip")
                .and_then(|f| f.parse(cx, crate::net::parse_ip));
            let protocol = t
                .field("protocol")
                .map_or(Some(Default::default()), |f| f.parse(cx, parse_protocol))?;
            let (host, container) = (published?, target?);
            if host.len() != container.len() {
                f.err(
                    cx,
                    format!(
                        "maps {} to {}",
                        crate::ports::count(host.len(), "host port"),
                        crate::ports::count(container.len(), "container port")
                    ),
                );
                return None;
            }
            Some(PortMapping {
                host_ip,
                host,
                container,
                protocol,
            })
        }
        _ => {
            f.type_err(cx, "a string like \"8080:80\" or a table");
            None
        }
    }
}

fn parse_network_mode(s: &str) -> Result<NetworkMode, String> {
    match s {
        "bridge" => Ok(NetworkMode::Bridge),
        "host" => Ok(NetworkMode::Host),
        "none" => Ok(NetworkMode::None),
        _ => match s.strip_prefix("service:") {
            Some(n) => normalise_name(n).map(NetworkMode::Service),
            None => Err(format!(
                "unknown network mode {s:?}; expected \"bridge\", \"host\", \"none\" or \"service:NAME\""
            )),
        },
    }
}

fn read_extra_hosts(cx: &mut Cx, f: &Field<'_, '_>) -> Vec<(String, IpAddr)> {
    let check = |name: &str, ip: &str| -> Result<(String, IpAddr), String> {
        crate::net::check_hostname(name)?;
        Ok((name.to_string(), crate::net::parse_ip(ip)?))
    };
    match f.get() {
        DeValue::Table(_) => f
            .map(cx)
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.field.parse(cx, |ip| check(e.key, ip)))
            .collect(),
        _ => f
            .array(cx)
            .unwrap_or_default()
            .iter()
            .filter_map(|i| {
                i.parse(cx, |s| {
                    let (name, ip) =
                        s.split_once('=')
                            .or_else(|| s.split_once(':'))
                            .ok_or_else(|| {
                                format!("expected \"host:ip\" or \"host=ip\", found {s:?}")
                            })?;
                    check(name, ip.trim_start_matches('[').trim_end_matches(']'))
                })
            })
            .collect(),
    }
}

/// `uid_map` and `gid_map`: either makes a user namespace; a missing
/// `gid_map` copies `uid_map`.
fn read_userns(cx: &mut Cx, t: &Table<'_, '_>) -> Option<IdMaps> {
    // Every range is parsed (each bad one reported) before the map is
    // checked whole.
    let read = |cx: &mut Cx, key: &'static str| -> Option<Vec<IdRange>> {
        let f = t.field(key)?;
        let parsed: Vec<Option<IdRange>> = f
            .one_or_many(cx)?
            .iter()
            .map(|item| item.parse(cx, idmap::parse_range))
            .collect();
        let ranges: Vec<IdRange> = parsed.into_iter().collect::<Option<_>>()?;
        if let Err(e) = check_map(key.trim_end_matches("_map"), &ranges) {
            f.err(cx, e);
            return None;
        }
        Some(ranges)
    };
    let uid = read(cx, "uid_map");
    let gid = t.field("gid_map").map(|_| read(cx, "gid_map"));
    if let (None, Some(f)) = (t.field("uid_map"), t.field("gid_map")) {
        f.err(cx, "gid_map needs a uid_map: the user namespace maps both");
        return None;
    }
    let uid = uid?;
    match gid {
        None => Some(IdMaps {
            gid: uid.clone(),
            uid,
        }),
        Some(gid) => Some(IdMaps { uid, gid: gid? }),
    }
}

fn read_caps(cx: &mut Cx, t: &Table<'_, '_>, key: &'static str) -> Vec<CapSpec> {
    let Some(f) = t.field(key) else {
        return Vec::new();
    };
    let mut out: Vec<CapSpec> = Vec::new();
    for c in f.array(cx).unwrap_or_default() {
        if let Some(cap) = c.parse(cx, parse_capability)
            && !out.contains(&cap)
        {
            out.push(cap);
        }
    }
    out
}

fn read_security_opt(cx: &mut Cx, f: &Field<'_, '_>) -> SecurityOpt {
    let mut out = SecurityOpt {
        no_new_privileges: None,
        seccomp: Seccomp::Default,
    };
    for item in f.array(cx).unwrap_or_default() {
        item.parse(cx, |s| {
            let (k, v) = s
                .split_once('=')
                .or_else(|| s.split_once(':'))
                .map_or((s, None), |(k, v)| (k, Some(v)));
            match (k, v) {
                ("no-new-privileges", None | Some("true")) => out.no_new_privileges = Some(true),
                ("no-new-privileges", Some("false")) => out.no_new_privileges = Some(false),
                ("seccomp", Some("unconfined")) => out.seccomp = Seccomp::Unconfined,
                ("seccomp", Some(p)) if p.starts_with('/') => {
                    out.seccomp = Seccomp::Profile(PathBuf::from(p));
                }
                ("seccomp", _) => {
                    return Err(format!(
                        "invalid option {s:?}; expected \"seccomp=unconfined\" or \"seccomp=/absolute/profile.json\""
                    ));
                }
                _ => {
                    return Err(format!(
                        "unsupported security option {s:?}; expected \"no-new-privileges\", \"seccomp=unconfined\" or \"seccomp=PROFILE\""
                    ));
                }
            }
            Ok(())
        });
    }
    out
}

fn parse_device(s: &str) -> Result<Device, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, perms) = match parts.as_slice() {
        [src] => (*src, *src, defaults::DEVICE_PERMISSIONS),
        [src, x] if !x.starts_with('/') => (*src, *src, *x),
        [src, dst] => (*src, *dst, defaults::DEVICE_PERMISSIONS),
        [src, dst, p] => (*src, *dst, *p),
        _ => {
            return Err(format!(
                "invalid device {s:?}; expected \"host[:container[:rwm]]\""
            ));
        }
    };
    if !src.starts_with("/dev/") {
        return Err(format!("device {src:?} is not under /dev"));
    }
    let target = check_abs_path(dst).map_err(|e| format!("device target {e}"))?;
    let mut d = Device {
        source: PathBuf::from(src),
        target,
        read: false,
        write: false,
        mknod: false,
    };
    if perms.is_empty() {
        return Err(format!(
            "empty permissions in {s:?}; expected some of \"rwm\""
        ));
    }
    for c in perms.chars() {
        let slot = match c {
            'r' => &mut d.read,
            'w' => &mut d.write,
            'm' => &mut d.mknod,
            _ => {
                return Err(format!(
                    "invalid permissions {perms:?}; expected some of \"rwm\""
                ));
            }
        };
        if *slot {
            return Err(format!(
                "invalid permissions {perms:?}; expected some of \"rwm\""
            ));
        }
        *slot = true;
    }
    Ok(d)
}

fn read_ulimits(cx: &mut Cx, f: &Field<'_, '_>) -> Vec<Ulimit> {
    let names: Vec<&str> = UlimitName::ALL.iter().map(|(_, s)| *s).collect();
    let mut out = Vec::new();
    for e in f.map(cx).unwrap_or_default() {
        let Some((name, _)) = UlimitName::ALL.iter().find(|(_, s)| *s == e.key) else {
            let mut msg = format!("{}: unknown ulimit {:?}", f.path, e.key);
            if let Some(s) = suggest::closest(e.key, &names) {
                msg.push_str(&format!("; did you mean {s:?}?"));
            }
            cx.error(e.key_span.clone(), msg);
            continue;
        };
        let limit = |cx: &mut Cx, f: &Field<'_, '_>| -> Option<u64> {
            let n: i64 = f.int_in(cx, -1, i64::MAX)?;
            Some(u64::try_from(n).unwrap_or(Ulimit::UNLIMITED))
        };
        let (soft, hard) = match e.field.get() {
            DeValue::Table(_) => {
                let Some(t) = e.field.table(cx, keys::ULIMIT, &[]) else {
                    continue;
                };
                let soft = t.required(cx, "soft").and_then(|f| limit(cx, &f));
                let hard = t.required(cx, "hard").and_then(|f| limit(cx, &f));
                match (soft, hard) {
                    (Some(s), Some(h)) => (s, h),
                    _ => continue,
                }
            }
            DeValue::Integer(_) => match limit(cx, &e.field) {
                Some(n) => (n, n),
                None => continue,
            },
            _ => {
                e.field
                    .type_err(cx, "an integer or a table with \"soft\" and \"hard\"");
                continue;
            }
        };
        if soft > hard {
            e.field.err(cx, "the soft limit is above the hard limit");
            continue;
        }
        out.push(Ulimit {
            name: *name,
            soft,
            hard,
        });
    }
    out
}

fn read_resources(cx: &mut Cx, f: &Field<'_, '_>) -> Resources {
    let mut r = Resources::default();
    let Some(t) = f.table(cx, keys::RESOURCES, &[]) else {
        return r;
    };
    r.memory = t
        .field("memory")
        .and_then(|f| f.size_min(cx, limits::MIN_MEMORY));
    if let Some(f) = t.field("memory_swap") {
        r.memory_swap = match f.as_int() {
            Some(Ok(-1)) => Some(MemorySwap::Unlimited),
            _ => f.size(cx).map(MemorySwap::Limit),
        };
        match (r.memory, r.memory_swap) {
            (None, Some(_)) => f.err(cx, "needs resources.memory"),
            (Some(m), Some(MemorySwap::Limit(s))) if s < m => {
                f.err(
                    cx,
                    "must be at least resources.memory (it counts memory plus swap)",
                );
            }
            _ => {}
        }
    }
    if let Some(f) = t.field("cpus") {
        let v = match f.get() {
            DeValue::String(s) => s.parse::<f64>().ok().filter(|v| v.is_finite()).or_else(|| {
                f.err(cx, format!("invalid number {s:?}"));
                None
            }),
            _ => f.number(cx),
        };
        r.cpus = v.and_then(|v| {
            if (limits::MIN_CPUS..=limits::MAX_CPUS).contains(&v) {
                Some(v)
            } else {
                f.err(
                    cx,
                    format!(
                        "{v} is out of range; expected {} to {}",
                        limits::MIN_CPUS,
                        limits::MAX_CPUS
                    ),
                );
                None
            }
        });
    }
    r.cpu_weight = t.field("cpu_weight").and_then(|f| f.int_in(cx, 1, 10000));
    r.io_weight = t.field("io_weight").and_then(|f| f.int_in(cx, 1, 10000));
    if let Some(f) = t.field("pids") {
        r.pids = match f.as_int() {
            Some(Ok(-1)) => None,
            Some(Ok(n)) if n > 0 => u64::try_from(n).ok(),
            Some(_) => {
                f.err(cx, "expected a positive number, or -1 for no limit");
                None
            }
            None => {
                f.type_err(cx, "an integer");
                None
            }
        };
    }
    r
}

fn read_logging(cx: &mut Cx, f: &Field<'_, '_>) -> ContainerLogging {
    let mut l = defaults::CONTAINER_LOGGING;
    let Some(t) = f.table(cx, keys::CONTAINER_LOGGING, &[]) else {
        return l;
    };
    l.console = read_bool(cx, &t, "console", l.console);
    l.files = read_bool(cx, &t, "files", l.files);
    l.syslog = read_bool(cx, &t, "syslog", l.syslog);
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            shell_words(r#"sh -c 'echo "hi there"' a\ b "x\"y""#).unwrap(),
            vec!["sh", "-c", "echo \"hi there\"", "a b", "x\"y"]
        );
        assert_eq!(shell_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(shell_words("''").unwrap(), vec![""]);
        assert!(shell_words("echo 'oops").is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(
            parse_restart("on-failure:5"),
            Ok(RestartPolicy::OnFailure {
                max_retries: Some(5)
            })
        );
        assert!(parse_restart("on-failure:x").is_err());
        assert!(parse_restart("sometimes").is_err());
    }

    #[test]
    fn names_normalise() {
        assert_eq!(normalise_name("Web"), Ok("web".into()));
        assert!(normalise_name("_x").is_err());
        assert!(normalise_name("a b").is_err());
        assert!(normalise_name("").is_err());
    }

    #[test]
    fn devices_and_tmpfs() {
        let d = parse_device("/dev/ttyS1:/dev/ttyS0:rw").unwrap();
        assert!(d.read && d.write && !d.mknod);
        assert_eq!(
            parse_device("/dev/fuse").unwrap().target,
            PathBuf::from("/dev/fuse")
        );
        assert!(parse_device("/dev/fuse:rx").is_err());
        let t = parse_tmpfs("/run:size=64m,mode=755").unwrap();
        assert_eq!((t.size, t.mode), (Some(64 << 20), Some(0o755)));
        assert!(parse_tmpfs("run").is_err());
        assert!(parse_tmpfs("/run:noexec").is_err());
    }
}

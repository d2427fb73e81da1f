//! Checks across containers: dependencies (unknown, cycles, conditions the
//! dependency cannot meet), shared network namespaces, published host
//! ports used twice, and read-only root filesystems where the image is
//! known to write.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::container::Spans;
use crate::model::{Condition, Container, ImageRef, RestartPolicy};
use crate::suggest;
use crate::walk::{Cx, Span};

/// What berth knows about an image, when the caller knows it (the image
/// builder does; `berth check` alone does not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// Directories the image writes to at run time, such as the `VOLUME`s
    /// of its config. With `read_only = true`, each needs a writable mount.
    pub writable_paths: Vec<PathBuf>,
    /// Whether its config has a HEALTHCHECK (other than `["NONE"]`): a
    /// container without one of its own then has the image's.
    pub healthcheck: bool,
}

/// Runs every check across containers. `spans` has an entry for every
/// container declared, `containers` for those read without error.
pub(crate) fn check(
    cx: &mut Cx,
    containers: &BTreeMap<String, Container>,
    spans: &BTreeMap<String, Spans>,
    facts: &dyn Fn(&ImageRef) -> Option<ImageFacts>,
) {
    let names: Vec<&str> = spans.keys().map(String::as_str).collect();
    // Containers whose image gives them a health check.
    let image_health: BTreeSet<&str> = containers
        .iter()
        .filter(|(n, c)| {
            spans.get(*n).is_some_and(|s| !s.healthcheck_disabled)
                && facts(&c.image).is_some_and(|f| f.healthcheck)
        })
        .map(|(n, _)| n.as_str())
        .collect();
    for (name, s) in spans {
        check_dependencies(cx, name, s, spans, &names, &image_health);
        if let Some(c) = containers.get(name) {
            check_read_only(cx, c, s, facts);
        }
    }
    check_cycles(cx, spans);
    check_ports(cx, spans);
}

fn unknown(name: &str, names: &[&str]) -> String {
    let mut msg = format!("unknown container {name:?}");
    if let Some(s) = suggest::closest(name, names) {
        msg.push_str(&format!("; did you mean {s:?}?"));
    }
    msg
}

fn check_dependencies(
    cx: &mut Cx,
    name: &str,
    s: &Spans,
    all: &BTreeMap<String, Spans>,
    names: &[&str],
    image_health: &BTreeSet<&str>,
) {
    let at = format!("containers.{name}.depends_on");
    for (dep, span, cond) in &s.depends_on {
        if dep == name {
            cx.error(
                span.clone(),
                format!("{at}: a container cannot depend on itself"),
            );
            continue;
        }
        let Some(d) = all.get(dep) else {
            cx.error(span.clone(), format!("{at}: {}", unknown(dep, names)));
            continue;
        };
        match cond {
            Condition::ServiceHealthy if !d.healthcheck && !image_health.contains(dep.as_str()) => cx.error(
                span.clone(),
                format!("{at}: condition \"service_healthy\" needs a healthcheck on {dep:?}, which has none"),
            ),
            Condition::ServiceCompletedSuccessfully
                if matches!(d.restart, RestartPolicy::Always | RestartPolicy::UnlessStopped) =>
            {
                cx.error(
                    span.clone(),
                    format!(
                        "{at}: condition \"service_completed_successfully\" can never be met: {dep:?} has restart \"{}\"",
                        d.restart
                    ),
                )
            }
            _ => {}
        }
    }
    if let Some((svc, span)) = &s.network_service {
        let at = format!("containers.{name}.network_mode");
        if svc == name {
            cx.error(
                span.clone(),
                format!("{at}: a container cannot share its own network"),
            );
        } else if !all.contains_key(svc) {
            cx.error(span.clone(), format!("{at}: {}", unknown(svc, names)));
        }
    }
}

/// Dependency edges, each with the span and the key that create it.
fn edges(s: &Spans) -> impl Iterator<Item = (&str, &Span, &'static str)> {
    s.depends_on
        .iter()
        .map(|(d, span, _)| (d.as_str(), span, "depends_on"))
        .chain(
            s.network_service
                .iter()
                .map(|(d, span)| (d.as_str(), span, "network_mode")),
        )
}

fn check_cycles(cx: &mut Cx, spans: &BTreeMap<String, Spans>) {
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for start in spans.keys() {
        let mut stack: Vec<&str> = Vec::new();
        dfs(start, spans, &mut stack, &mut done, &mut |cycle| {
            // Rotate so the smallest name leads: one report per cycle.
            let min = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, n)| **n)
                .map_or(0, |(i, _)| i);
            let mut c: Vec<String> = cycle[min..]
                .iter()
                .chain(&cycle[..min])
                .map(|s| s.to_string())
                .collect();
            if reported.insert(c.clone()) {
                let first = c[0].clone();
                let next = c.get(1).cloned().unwrap_or_else(|| first.clone());
                c.push(first.clone());
                let (span, key) = spans
                    .get(&first)
                    .and_then(|s| {
                        edges(s)
                            .find(|(d, _, _)| *d == next)
                            .map(|(_, sp, key)| (sp.clone(), key))
                    })
                    .unwrap_or((0..0, "depends_on"));
                cx.error(
                    span,
                    format!(
                        "containers.{first}.{key}: dependency cycle: {}",
                        c.join(" -> ")
                    ),
                );
            }
        });
    }
}

fn dfs<'a>(
    node: &'a str,
    spans: &'a BTreeMap<String, Spans>,
    stack: &mut Vec<&'a str>,
    done: &mut BTreeSet<&'a str>,
    found: &mut dyn FnMut(&[&'a str]),
) {
    if done.contains(node) {
        return;
    }
    if let Some(i) = stack.iter().position(|n| *n == node) {
        if stack.len() - i > 1 {
            found(&stack[i..]);
        }
        return;
    }
    stack.push(node);
    if let Some(s) = spans.get(node) {
        for (dep, _, _) in edges(s) {
            if dep != node && spans.contains_key(dep) {
                dfs(dep, spans, stack, done, found);
            }
        }
    }
    stack.pop();
    done.insert(node);
}

fn check_ports(cx: &mut Cx, spans: &BTreeMap<String, Spans>) {
    // In document order, so the later of two clashing ports is the one reported.
    let mut all: Vec<(&str, &crate::model::PortMapping, &Span)> = spans
        .iter()
        .flat_map(|(n, s)| s.ports.iter().map(move |(p, sp)| (n.as_str(), p, sp)))
        .collect();
    all.sort_by_key(|(_, _, sp)| sp.start);
    for (i, (name, p, span)) in all.iter().enumerate() {
        if let Some((other, q, _)) = all[..i].iter().find(|(_, q, _)| p.conflicts_with(q)) {
            let port = p.host.start.max(q.host.start);
            let whom = if other == name {
                "this container".to_string()
            } else {
                format!("containers.{other}")
            };
            cx.error(
                (*span).clone(),
                format!(
                    "containers.{name}.ports: host port {port}/{} is already published by {whom}",
                    p.protocol
                ),
            );
        }
    }
}

fn check_read_only(
    cx: &mut Cx,
    c: &Container,
    s: &Spans,
    facts: &dyn Fn(&ImageRef) -> Option<ImageFacts>,
) {
    let (true, Some(span)) = (c.read_only, &s.read_only) else {
        return;
    };
    let Some(facts) = facts(&c.image) else {
        return;
    };
    for path in &facts.writable_paths {
        let covered = c.tmpfs.iter().any(|t| path.starts_with(&t.target))
            || c.volumes
                .iter()
                .any(|v| !v.read_only && path.starts_with(&v.target));
        if !covered {
            cx.error(
                span.clone(),
                format!(
                    "containers.{}.read_only: image {} writes to {}, which has no writable mount; add a tmpfs or volume there",
                    c.name,
                    c.image,
                    path.display()
                ),
            );
        }
    }
}

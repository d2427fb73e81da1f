//! The JSON Schema (`berth schema`) accepts every example and rejects the
//! bad manifests that a schema can catch; manifests whose only errors
//! span containers (cycles, clashing ports) are the parser's job alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde_json::Value;

fn compile() -> (boon::Schemas, boon::SchemaIndex) {
    let schema: Value = serde_json::from_str(berth_config::json_schema()).unwrap();
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.set_default_draft(boon::Draft::V7);
    compiler
        .add_resource("file:///berth.schema.json", schema)
        .unwrap();
    let index = compiler
        .compile("file:///berth.schema.json", &mut schemas)
        .unwrap();
    (schemas, index)
}

fn as_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check(name: &str, dir: &str) -> Result<(), String> {
    let (schemas, index) = compile();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(name);
    schemas
        .validate(&as_json(&path), index)
        .map_err(|e| format!("{e}"))
}

#[test]
fn schema_is_draft_07_json() {
    let schema: Value = serde_json::from_str(berth_config::json_schema()).unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
}

#[test]
fn schema_accepts_every_example() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if let Err(e) = check(&name, "../examples") {
                panic!("{name}: {e}");
            }
            n += 1;
        }
    }
    assert!(n >= 3);
}

/// Bad manifests with at least one error a schema can see.
const REJECTED: &[&str] = &[
    "depends_unknown.toml",
    "healthcheck.toml",
    "host.toml",
    "image.toml",
    "limits.toml",
    "missing.toml",
    "names.toml",
    "network_mode.toml",
    "ports_bounds.toml",
    "restart.toml",
    "security.toml",
    "types.toml",
    "unknown_keys.toml",
    "version.toml",
    "volumes.toml",
];

/// Bad manifests whose errors only the parser's checks across fields or
/// containers find.
const ACCEPTED: &[&str] = &[
    "conditions.toml",
    "conflicts.toml",
    "cycle.toml",
    "ports_dup.toml",
];

#[test]
fn schema_rejects_the_bad_manifests_it_can_see() {
    for name in REJECTED {
        assert!(
            check(name, "tests/bad").is_err(),
            "the schema accepts {name}"
        );
    }
    for name in ACCEPTED {
        if let Err(e) = check(name, "tests/bad") {
            panic!("the schema rejects {name}: {e}");
        }
    }
}

#[test]
fn schema_rejects_single_mistakes() {
    let (schemas, index) = compile();
    let base = "version = 1\n[containers.web]\nimage = \"busybox\"\n";
    for (extra, ok) in [
        ("", true),
        ("restart = \"on-failure:3\"", true),
        ("restart = \"sometimes\"", false),
        ("comand = [\"x\"]", false),
        ("ports = [\"8080:80\"]", true),
        ("ports = [\"80\"]", false),
        ("stop_grace_period = \"10\"", false),
        ("stop_grace_period = \"1m30s\"", true),
        ("shm_size = \"64MiB\"", true),
        ("shm_size = \"lots\"", false),
        ("network_mode = \"container:x\"", false),
        ("cap_add = [\"NET_ADMIN\"]", true),
        ("depends_on = { db = { condition = \"later\" } }", false),
    ] {
        let doc: Value = toml::from_str(&format!("{base}{extra}\n")).unwrap();
        assert_eq!(schemas.validate(&doc, index).is_ok(), ok, "{extra}");
    }
}

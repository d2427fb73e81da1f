//! Table-driven: every manifest in tests/bad/ ends with `# expect:` lines,
//! and parsing it must report exactly those errors, in that order, with
//! those positions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn bad_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_bad_manifest_reports_exactly_its_expected_errors() {
    let files = bad_files();
    assert!(files.len() >= 20, "only {} bad manifests", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let src = std::fs::read_to_string(path).unwrap();
        let expected: String = src
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            !expected.is_empty(),
            "{}: no `# expect:` lines",
            path.display()
        );
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        match berth_config::parse(&src, &name) {
            Ok(_) => failures.push(format!("{name}: parsed without errors")),
            Err(d) if d.short() != expected => failures.push(format!(
                "{name}:\n--- expected\n{expected}--- got\n{}",
                d.short()
            )),
            Err(d) => {
                // Every error names the file and renders an excerpt and caret.
                let text = d.to_string();
                assert_eq!(text.lines().count(), 3 * d.errors.len(), "{text}");
                for e in &d.errors {
                    assert!(text.contains(&format!("{name}:{}:{}: ", e.line, e.column)));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn renders_origin_excerpt_and_caret() {
    let src = "version = 1\n\n[containers.web]\nimage = \"busybox\"\nrestart = \"sometimes\"\n";
    let err = berth_config::parse(src, "berth.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "berth.toml:5:11: containers.web.restart: unknown policy \"sometimes\"; expected \"no\", \"always\", \"on-failure[:N]\" or \"unless-stopped\"\n 5 | restart = \"sometimes\"\n   |           ^^^^^^^^^^^"
    );
}

#[test]
fn load_reports_unreadable_files_and_invalid_utf8() {
    let missing = berth_config::load(Path::new("/nonexistent/berth.toml")).unwrap_err();
    assert!(matches!(missing, berth_config::LoadError::Read { .. }));
    let err = berth_config::parse_bytes(b"version = 1\n# \xff\n", "m.toml").unwrap_err();
    assert_eq!(err.short(), "2:3: the manifest is not valid UTF-8\n");
}

#[test]
fn read_only_is_checked_against_what_the_image_writes() {
    let src = r#"version = 1
[containers.db]
image = "postgres:16"
read_only = true
tmpfs = ["/run"]
"#;
    let facts = |image: &berth_config::ImageRef| {
        (image.path == "postgres").then(|| berth_config::ImageFacts {
            writable_paths: vec!["/var/lib/postgresql/data".into(), "/run/postgresql".into()],
            ..Default::default()
        })
    };
    let err = berth_config::parse_with_images(src, "m.toml", &facts).unwrap_err();
    assert_eq!(
        err.short(),
        "4:13: containers.db.read_only: image postgres:16 writes to /var/lib/postgresql/data, which has no writable mount; add a tmpfs or volume there\n"
    );
    let fixed = src.replace(
        "tmpfs = [\"/run\"]",
        "tmpfs = [\"/run\"]\nvolumes = [\"pg:/var/lib/postgresql/data\"]",
    );
    assert!(berth_config::parse_with_images(&fixed, "m.toml", &facts).is_ok());
    // Without facts about the image, nothing is known and nothing is reported.
    assert!(berth_config::parse(src, "m.toml").is_ok());
}

#[test]
fn service_healthy_accepts_the_image_healthcheck() {
    let src = r#"version = 1
[containers.db]
image = "db:1"
[containers.web]
image = "busybox"
depends_on = { db = { condition = "service_healthy" } }
"#;
    let facts = |image: &berth_config::ImageRef| {
        (image.path == "db").then(|| berth_config::ImageFacts {
            healthcheck: true,
            ..Default::default()
        })
    };
    let m = berth_config::parse_with_images(src, "m.toml", &facts).unwrap();
    assert!(
        m.containers["db"].healthcheck.is_none(),
        "filled in by berth, not here"
    );
    assert!(!m.containers["db"].healthcheck_disabled);
    assert!(!m.containers["db"].stop_signal_set);
    // Without facts, the manifest alone has no health check for db.
    let err = berth_config::parse(src, "m.toml").unwrap_err();
    assert!(
        err.short().contains("needs a healthcheck on \"db\""),
        "{}",
        err.short()
    );
    // Disabled in the manifest: the image's does not count.
    let off = src.replace(
        "image = \"db:1\"",
        "image = \"db:1\"\nhealthcheck = { disable = true }\nstop_signal = \"SIGINT\"",
    );
    let err = berth_config::parse_with_images(&off, "m.toml", &facts).unwrap_err();
    assert!(
        err.short().contains("needs a healthcheck"),
        "{}",
        err.short()
    );
    let none = src.replace(
        "image = \"db:1\"",
        "image = \"db:1\"\nhealthcheck = { test = [\"NONE\"] }",
    );
    assert!(berth_config::parse_with_images(&none, "m.toml", &facts).is_err());
    let m =
        berth_config::parse(&off.replace("service_healthy", "service_started"), "m.toml").unwrap();
    assert!(m.containers["db"].healthcheck_disabled);
    assert!(m.containers["db"].stop_signal_set);
}

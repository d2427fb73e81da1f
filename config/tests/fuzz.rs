//! Parse-and-validate never panics, whatever the input: arbitrary bytes,
//! and mutations of the example manifests (which reach far deeper).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

fn examples() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    v.sort();
    v
}

/// Splices `insert` into `base` at `at` (a char boundary at or before it),
/// replacing `cut` bytes.
fn mutate(base: &str, at: usize, cut: usize, insert: &str) -> String {
    let mut at = at % (base.len() + 1);
    while !base.is_char_boundary(at) {
        at -= 1;
    }
    let mut end = (at + cut).min(base.len());
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{insert}{}", &base[..at], &base[end..])
}

const TOKENS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    "=",
    ",",
    "\n",
    "#",
    ".",
    "-1",
    "0",
    "99999999999999999999",
    "1e309",
    "nan",
    "true",
    "\"service:web\"",
    "\"\u{e9}\u{1F600}\"",
    "[[containers.x]]",
    "\"ALL\"",
    "\"-1\"",
    "\"1m30s\"",
    "\"64MiB\"",
    "\"8080:80\"",
    "\"a:b:c\"",
    "\\",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = berth_config::parse_bytes(&bytes, "fuzz.toml");
    }

    #[test]
    fn mutated_examples_never_panic(
        which in 0usize..16,
        edits in proptest::collection::vec((any::<usize>(), 0usize..8, 0usize..TOKENS.len()), 1..6),
    ) {
        let all = examples();
        let mut text = all[which % all.len()].clone();
        for (at, cut, tok) in edits {
            text = mutate(&text, at, cut, TOKENS[tok]);
        }
        if let Ok(m) = berth_config::parse(&text, "fuzz.toml") {
            let _ = berth_config::summary(&m);
            let _ = berth_config::start_order(&m);
        }
    }
}

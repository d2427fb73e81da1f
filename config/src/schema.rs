//! The manifest's JSON Schema (draft-07), for editors: taplo and Even
//! Better TOML validate and complete a manifest that starts with
//! `#:schema ./berth.schema.json`. It is hand-written in config/schema.json;
//! tests check that it lists exactly the keys the parser accepts, accepts
//! every example and rejects the bad manifests.

/// The JSON Schema of the manifest.
pub fn json_schema() -> &'static str {
    include_str!("../schema.json")
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// The schema lists exactly the keys the parser accepts, table by table.
    #[test]
    fn schema_keys_match_the_parser() {
        let schema: Value = serde_json::from_str(super::json_schema()).unwrap();
        let defs = schema["definitions"].as_object().unwrap();
        let mut names: Vec<&str> = vec!["manifest"];
        names.extend(defs.keys().map(String::as_str));
        for (name, keys) in crate::keys::ALL {
            let def = if *name == "manifest" {
                &schema
            } else {
                &defs[*name]
            };
            assert_eq!(def["additionalProperties"], Value::Bool(false), "{name}");
            let mut in_schema: Vec<&str> = def["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("no definition {name}"))
                .keys()
                .map(String::as_str)
                .collect();
            in_schema.sort_unstable();
            let mut in_parser = keys.to_vec();
            in_parser.sort_unstable();
            assert_eq!(in_schema, in_parser, "definition {name}");
        }
        let mut listed: Vec<&str> = crate::keys::ALL.iter().map(|(n, _)| *n).collect();
        listed.sort_unstable();
        names.sort_unstable();
        assert_eq!(listed, names, "schema definitions and parser tables differ");
    }
}

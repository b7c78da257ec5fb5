//! The example pipelines of `docs/connectors.md` for the HTTP connectors are read as the hub's
//! config check reads them: every key known, every setting valid.

use iochub_connectors::SourceConfig;

#[test]
fn documented_examples_are_valid_settings() {
    // The crate's folder as cargo gives it when it runs the test (not when it built it: the
    // shared target dir may hold a binary built from another checkout of the same commit).
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let path = format!("{crate_dir}/../docs/connectors.md");
    let docs = std::fs::read_to_string(path).unwrap();
    let mut checked = Vec::new();
    for block in docs.split("```toml\n").skip(1) {
        let text = block.split("```").next().unwrap();
        let document: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let Some(mut source) = document.get("source").and_then(|s| s.as_table()).cloned() else {
            continue;
        };
        let Some(toml::Value::String(kind)) = source.remove("kind") else {
            continue; // a fragment, such as a fields table
        };
        let mut unknown = Vec::new();
        let config = SourceConfig::deserialize(
            &kind,
            serde_ignored::Deserializer::new(source, &mut |p: serde_ignored::Path<'_>| {
                unknown.push(p.to_string())
            }),
        )
        .unwrap_or_else(|e| panic!("{kind}: {e}"))
        .unwrap();
        assert!(unknown.is_empty(), "{kind}: unknown keys {unknown:?}");
        assert!(
            config.validate().is_empty(),
            "{kind}: {:?}",
            config.validate()
        );
        checked.push(kind);
    }
    for kind in [
        "file",
        "excel",
        "http_json",
        "fhir",
        "open311",
        "mqtt",
        "postgres",
        "mysql",
    ] {
        assert!(
            checked.iter().any(|k| k == kind),
            "no example for {kind}: {checked:?}"
        );
    }
}

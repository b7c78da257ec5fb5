//! `[[views]]`: named SELECTs in every reader's catalog, planned over what that reader sees.

use crate::common::{AGENCY, PEOPLE_SCHEMA, PUBLISHER, TestHub};

fn pipeline(name: &str, schema: &str, sharing: &str) -> String {
    format!(
        "name = \"{name}\"\ntitle = \"Dữ liệu {name}\"\nsector = \"test\"\n\
         schema = \"../schemas/{schema}\"\nkey = [\"id\"]\nsharing = \"{sharing}\"\n\
         publishers = [\"pub\"]\nschedule = \"0 0 * * * *\"\n\n[source]\n\
         kind = \"file\"\npath = \"../in_{name}/*.jsonl\"\nformat = \"jsonl\"\n"
    )
}

const VIEWS: &str = r#"
[[views]]
name = "people_by_score"
title = "Người theo điểm"
sql = "SELECT id, phone, score FROM people WHERE score >= 5"

[[views]]
name = "secret_count"
title = "Đếm dữ liệu riêng"
sql = "SELECT count(*) AS n FROM secrets"
"#;

#[tokio::test]
async fn a_view_keeps_each_readers_masks_and_visibility() {
    let t = TestHub::new();
    t.write("schemas/people.schema.json", PEOPLE_SCHEMA);
    for (name, schema, sharing) in [
        ("people", "people.schema.json", "default"),
        ("secrets", "simple.schema.json", "special"),
    ] {
        std::fs::create_dir_all(t.path().join(format!("in_{name}"))).unwrap();
        t.write(
            &format!("pipelines/{name}.toml"),
            pipeline(name, schema, sharing),
        );
    }
    t.write(
        "in_people/a.jsonl",
        "{\"id\": \"p1\", \"n\": 1, \"phone\": \"0912345678\", \"score\": 7.5}\n\
         {\"id\": \"p2\", \"n\": 2, \"phone\": \"0987654321\", \"score\": 2}\n",
    );
    t.write("in_secrets/a.jsonl", "{\"id\": \"s1\", \"n\": 1}\n");
    t.append_config(VIEWS);
    let hub = t.open().await;
    for r in hub.run_all("test").await {
        assert_eq!(r.error, None, "{r:?}");
    }

    let as_json =
        |r: iochub::query::QueryResult| iochub::query::to_json(&r).unwrap()["rows"].clone();
    let agency = hub.authenticate(AGENCY).unwrap();
    let publisher = hub.authenticate(PUBLISHER).unwrap();
    let masked = as_json(
        hub.sql_as(&agency, "SELECT id, phone FROM people_by_score")
            .await
            .unwrap(),
    );
    assert_eq!(masked[0][0], "p1");
    assert_eq!(
        masked[0][1], "091****678",
        "the agency's mask holds in the view"
    );
    assert_eq!(masked.as_array().unwrap().len(), 1);
    let clear = as_json(
        hub.sql_as(&publisher, "SELECT phone FROM people_by_score")
            .await
            .unwrap(),
    );
    assert_eq!(clear, serde_json::json!([["0912345678"]]));

    // `secrets` is special: the agency cannot see it, so it has no view over it either, and
    // the error is the one for a table that does not exist.
    let hidden = hub
        .sql_as(&agency, "SELECT n FROM secret_count")
        .await
        .unwrap_err()
        .to_string();
    let missing = hub
        .sql_as(&agency, "SELECT n FROM no_such_view")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        hidden.replace("secret_count", "X"),
        missing.replace("no_such_view", "X")
    );
    let counted = as_json(
        hub.sql_as(&publisher, "SELECT n FROM secret_count")
            .await
            .unwrap(),
    );
    assert_eq!(counted, serde_json::json!([[1]]));
}

#[test]
fn views_are_checked_at_load() {
    let t = TestHub::new();
    t.add_pipeline("items", &["id"], crate::common::JSONL_INBOX);
    t.append_config(
        "\n[[views]]\nname = \"items\"\ntitle = \"x\"\nsql = \"SELECT 1\"\n\n\
         [[views]]\nname = \"bad\"\ntitle = \"x\"\nsql = \"SELECT nope FROM items\"\n\n\
         [[views]]\nname = \"writes\"\ntitle = \"x\"\nsql = \"DELETE FROM items\"\n",
    );
    let problems = iochub::config::load(&t.config_path(), &Default::default())
        .expect_err("refused")
        .to_string();
    assert!(problems.contains("view name \"items\""), "{problems}");
    assert!(
        problems.contains("view \"bad\"") && problems.contains("nope"),
        "{problems}"
    );
    assert!(problems.contains("view \"writes\""), "{problems}");
}

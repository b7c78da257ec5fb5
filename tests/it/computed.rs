//! `[[computed]]` columns: evaluated at each query, so they follow the clock without new data.

use crate::common::{AGENCY, JSONL_INBOX, TestHub, rows};

#[tokio::test]
async fn a_computed_column_follows_the_time_of_the_query_for_every_reader() {
    let t = TestHub::new();
    t.add_pipeline_with(
        "deadlines",
        &["id"],
        "",
        &format!(
            "{JSONL_INBOX}\n\n[[computed]]\nname = \"state\"\n\
             sql = \"CASE WHEN day IS NULL THEN NULL WHEN day < CAST(now() AS DATE) THEN 'quá hạn' ELSE 'trong hạn' END\"\n\
             description = \"Còn hạn hay đã quá hạn, tính tại thời điểm truy vấn\"\n"
        ),
    );
    t.write(
        "inbox/a.jsonl",
        "{\"id\": \"past\", \"n\": 1, \"day\": \"2000-01-01\"}\n\
         {\"id\": \"future\", \"n\": 2, \"day\": \"2999-01-01\"}\n\
         {\"id\": \"none\", \"n\": 3}\n",
    );
    let hub = t.open().await;
    let report = hub.run("deadlines", "test").await.unwrap();
    assert_eq!((report.accepted, report.error), (3, None));

    // Not stored: the Delta table has only the stored columns.
    let files: Vec<_> = std::fs::read_dir(t.path().join("data/tables/deadlines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!files.is_empty());
    for file in files {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&file).unwrap(),
        )
        .unwrap();
        assert!(
            reader.schema().field_with_name("state").is_err(),
            "{file:?}"
        );
    }

    // The operator, alone, filtered on, and after the stored columns in SELECT *.
    assert_eq!(
        rows(&hub, "SELECT id, state FROM deadlines ORDER BY n").await,
        vec![
            vec![serde_json::json!("past"), serde_json::json!("quá hạn")],
            vec![serde_json::json!("future"), serde_json::json!("trong hạn")],
            vec![serde_json::json!("none"), serde_json::Value::Null],
        ]
    );
    assert_eq!(
        rows(&hub, "SELECT state FROM deadlines WHERE state = 'quá hạn'").await,
        vec![vec![serde_json::json!("quá hạn")]]
    );
    assert_eq!(
        rows(
            &hub,
            "SELECT count(*) FROM deadlines WHERE n > 1 AND state = 'trong hạn'"
        )
        .await,
        vec![vec![serde_json::json!(1)]]
    );
    let all = rows(&hub, "SELECT * FROM deadlines WHERE id = 'past'").await;
    assert_eq!(all[0].last(), Some(&serde_json::json!("quá hạn")));

    // A consumer sees it through its own catalog (default sharing), and the catalog says what
    // it means.
    let agency = hub.authenticate(AGENCY).unwrap();
    let seen = hub
        .sql_as(&agency, "SELECT id FROM deadlines WHERE state = 'quá hạn'")
        .await
        .unwrap();
    let json = iochub::query::to_json(&seen).unwrap();
    assert_eq!(json["rows"], serde_json::json!([["past"]]));
    let datasets = serde_json::to_value(hub.catalog_for(&agency).await.unwrap().datasets).unwrap();
    let column = datasets
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "deadlines")
        .and_then(|d| d["columns"].as_array())
        .and_then(|c| c.iter().find(|c| c["name"] == "state").cloned())
        .expect("the computed column is in the catalog");
    assert_eq!(
        column["description"],
        "Còn hạn hay đã quá hạn, tính tại thời điểm truy vấn"
    );
}

#[test]
fn a_computed_column_that_does_not_plan_is_a_config_problem() {
    let t = TestHub::new();
    t.add_pipeline_with(
        "bad",
        &["id"],
        "",
        &format!(
            "{JSONL_INBOX}\n\n[[computed]]\nname = \"x\"\nsql = \"no_such_column + 1\"\n\n\
             [[computed]]\nname = \"n\"\nsql = \"1\"\n"
        ),
    );
    let problems = iochub::config::load(&t.config_path(), &Default::default())
        .expect_err("refused")
        .to_string();
    assert!(problems.contains("computed column \"x\""), "{problems}");
    assert!(problems.contains("no_such_column"), "{problems}");
    assert!(
        problems.contains("computed column \"n\" is already a column of the table"),
        "{problems}"
    );
}

//! The `file` connector through the whole hub: formats, quarantine, once-only, upsert, restart.

use iochub::ingest::RunStatus;
use serde_json::{Value, json};
use unicode_normalization::UnicodeNormalization;

use crate::common::{TestHub, count, rows};

#[tokio::test]
async fn csv_with_bom_and_vietnamese_text_round_trips_exactly() {
    let t = TestHub::new();
    t.add_pipeline(
        "people",
        &["id"],
        "kind = \"file\"\npath = \"../inbox/*.csv\"\nformat = \"csv\"",
    );
    let names = [
        "Nguyễn Thị Hồng Nhung",
        "Trần Văn Đức",
        "Xã Tân Hòa, huyện Đồng Phú",
        "Phường \"Tân Bình\"; tổ 3",
    ];
    let mut csv = String::from("\u{feff}id,n,name\n");
    for (i, name) in names.iter().enumerate() {
        csv.push_str(&format!("p{i},{i},\"{}\"\n", name.replace('"', "\"\"")));
    }
    csv.push_str("bad1,N/A,Lê Thị Bích\n");
    csv.push_str("bad2,1,Phạm,extra field\n");
    t.write("inbox/people.csv", csv);
    let hub = t.open().await;

    let report = hub.run("people", "test").await.unwrap();
    assert_eq!(report.status, RunStatus::Partial, "{report:?}");
    assert_eq!(
        (report.fetched, report.accepted, report.rejected),
        (6, 4, 2)
    );

    let got = rows(&hub, "SELECT name FROM people ORDER BY id").await;
    let got: Vec<&str> = got.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(got, names);
    for name in got {
        assert_eq!(
            name.nfc().collect::<String>(),
            name,
            "stored text stays NFC"
        );
    }
    // The BOM did not leak into the first column's name.
    assert_eq!(count(&hub, "SELECT count(id) FROM people").await, 4);

    let q = rows(
        &hub,
        "SELECT location, raw, errors FROM quarantine ORDER BY location",
    )
    .await;
    assert_eq!(q.len(), 2);
    assert_eq!(q[0][0], json!("row 5"));
    let errors: Value = serde_json::from_str(q[0][2].as_str().unwrap()).unwrap();
    assert_eq!(errors[0]["pointer"], json!("/n"));
    assert!(errors[0]["message"].as_str().unwrap().contains("N/A"));
    assert!(q[0][1].as_str().unwrap().contains("Lê Thị Bích"));
    assert_eq!(q[1][0], json!("row 6"));
    assert_eq!(
        q[1][1],
        json!("bad2,1,Phạm,extra field"),
        "malformed row kept verbatim"
    );
    assert!(
        q[1][2]
            .as_str()
            .unwrap()
            .contains("row has 4 fields, the header has 3")
    );
}

#[tokio::test]
async fn jsonl_file_is_taken_once_and_bad_lines_are_quarantined() {
    let t = TestHub::new();
    t.add_pipeline("items", &["id"], crate::common::JSONL_INBOX);
    t.write(
        "inbox/a.jsonl",
        "{\"id\": \"a\", \"n\": 1}\n\n{\"id\": \"b\", \"n\": \n{\"id\": \"c\", \"n\": -4}\r\n{\"id\": \"d\", \"n\": 2, \"day\": \"2025-02-30\"}\n",
    );
    let hub = t.open().await;
    let first = hub.run("items", "test").await.unwrap();
    assert_eq!((first.fetched, first.accepted, first.rejected), (4, 1, 3));
    let q = rows(
        &hub,
        "SELECT location, errors FROM quarantine ORDER BY location",
    )
    .await;
    let locations: Vec<&str> = q.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(locations, ["line 3", "line 4", "line 5"]);
    assert!(q[0][1].as_str().unwrap().contains("not valid JSON"));
    assert!(
        q[1][1]
            .as_str()
            .unwrap()
            .contains("phải lớn hơn hoặc bằng 0; giá trị nhận được: -4"),
        "{:?}",
        q[1][1]
    );
    assert!(
        q[2][1].as_str().unwrap().contains("/day"),
        "format date is checked"
    );

    let second = hub.run("items", "test").await.unwrap();
    assert_eq!(second.fetched, 0, "the same file is not read twice");

    // A new file is taken; the old one still is not.
    t.write("inbox/b.jsonl", "{\"id\": \"e\", \"n\": 5}\n");
    let third = hub.run("items", "test").await.unwrap();
    assert_eq!((third.fetched, third.accepted), (1, 1));
    assert_eq!(count(&hub, "SELECT count(*) FROM items").await, 2);
}

#[tokio::test]
async fn files_being_written_are_not_taken() {
    let t = TestHub::new();
    t.add_pipeline(
        "slow",
        &[],
        "kind = \"file\"\npath = \"../inbox/*\"\nformat = \"jsonl\"\nsettle_seconds = 3600",
    );
    t.write("inbox/fresh.jsonl", "{\"id\": \"a\", \"n\": 1}\n");
    let hub = t.open().await;
    assert_eq!(
        hub.run("slow", "test").await.unwrap().fetched,
        0,
        "a file changed just now waits"
    );

    let t2 = TestHub::new();
    t2.add_pipeline(
        "parts",
        &[],
        "kind = \"file\"\npath = \"../inbox/*\"\nformat = \"jsonl\"",
    );
    t2.write("inbox/upload.jsonl.part", "{\"id\": \"a\", \"n\": 1}\n");
    t2.write("inbox/.hidden.jsonl", "{\"id\": \"b\", \"n\": 1}\n");
    t2.write("inbox/done.jsonl", "{\"id\": \"c\", \"n\": 1}\n");
    let hub2 = t2.open().await;
    let report = hub2.run("parts", "test").await.unwrap();
    assert_eq!(report.fetched, 1, "temporary and hidden names are skipped");
}

#[tokio::test]
async fn json_document_records_at_a_pointer() {
    let t = TestHub::new();
    t.add_pipeline(
        "doc",
        &["id"],
        "kind = \"file\"\npath = \"../inbox/doc.json\"\nformat = \"json\"\nrecords_at = \"/data/items\"",
    );
    t.write(
        "inbox/doc.json",
        json!({"data": {"items": [{"id": "x", "n": 1}, {"id": "y", "n": "two"}]}}).to_string(),
    );
    let hub = t.open().await;
    let report = hub.run("doc", "test").await.unwrap();
    assert_eq!((report.accepted, report.rejected), (1, 1));
    let q = rows(&hub, "SELECT location FROM quarantine").await;
    assert_eq!(q[0][0], json!("/data/items/1"));
}

#[tokio::test]
async fn upsert_by_key_latest_wins_within_a_run_and_across_runs() {
    let t = TestHub::new();
    t.add_pipeline("keyed", &["id"], crate::common::JSONL_INBOX);
    t.write(
        "inbox/1.jsonl",
        "{\"id\": \"a\", \"n\": 1}\n{\"id\": \"b\", \"n\": 1}\n{\"id\": \"a\", \"n\": 2}\n",
    );
    let hub = t.open().await;
    hub.run("keyed", "test").await.unwrap();
    assert_eq!(
        rows(&hub, "SELECT id, n FROM keyed ORDER BY id").await,
        vec![vec![json!("a"), json!(2)], vec![json!("b"), json!(1)]]
    );
    t.write(
        "inbox/2.jsonl",
        "{\"id\": \"a\", \"n\": 3, \"name\": \"Ánh\"}\n{\"id\": \"c\", \"n\": 1}\n",
    );
    hub.run("keyed", "test").await.unwrap();
    assert_eq!(
        rows(&hub, "SELECT id, n, name FROM keyed ORDER BY id").await,
        vec![
            vec![json!("a"), json!(3), json!("Ánh")],
            vec![json!("b"), json!(1), Value::Null],
            vec![json!("c"), json!(1), Value::Null]
        ]
    );
}

#[tokio::test]
async fn without_a_key_runs_append() {
    let t = TestHub::new();
    t.add_pipeline("log", &[], crate::common::JSONL_INBOX);
    t.write(
        "inbox/1.jsonl",
        "{\"id\": \"a\", \"n\": 1}\n{\"id\": \"a\", \"n\": 1}\n",
    );
    let hub = t.open().await;
    hub.run("log", "test").await.unwrap();
    t.write("inbox/2.jsonl", "{\"id\": \"a\", \"n\": 1}\n");
    hub.run("log", "test").await.unwrap();
    assert_eq!(count(&hub, "SELECT count(*) FROM log").await, 3);
    let sources = rows(&hub, "SELECT DISTINCT _source FROM log ORDER BY _source").await;
    assert!(sources[0][0].as_str().unwrap().ends_with("inbox/1.jsonl"));
    assert_eq!(
        count(&hub, "SELECT count(DISTINCT _run_id) FROM log").await,
        2
    );
}

#[tokio::test]
async fn committed_data_and_file_ledger_survive_a_restart() {
    let t = TestHub::new();
    t.add_pipeline("kept", &["id"], crate::common::JSONL_INBOX);
    t.write(
        "inbox/1.jsonl",
        "{\"id\": \"a\", \"n\": 1}\n{\"id\": \"b\", \"n\": 2}\n",
    );
    {
        let hub = t.open().await;
        hub.run("kept", "test").await.unwrap();
    }
    let hub = t.open().await;
    assert_eq!(count(&hub, "SELECT sum(n) FROM kept").await, 3);
    assert_eq!(
        hub.run("kept", "test").await.unwrap().fetched,
        0,
        "ledger kept across restart"
    );
    let admin = hub.config.consumers.get("admin").unwrap().clone();
    let catalog = hub.catalog_for(&admin).await.unwrap().datasets;
    assert_eq!(catalog[0].row_count, Some(2));
    assert!(catalog[0].last_ingest.is_some());
}

#[tokio::test]
async fn declared_coercions_apply_before_validation() {
    let t = TestHub::new();
    let text = "name = \"vn\"\ntitle = \"Số liệu\"\nsector = \"test\"\n\
        schema = \"../schemas/simple.schema.json\"\nsharing = \"default\"\nschedule = \"0 * * * *\"\n\n\
        [source]\nkind = \"file\"\npath = \"../inbox/vn.csv\"\nformat = \"csv\"\ndelimiter = \";\"\n\n\
        [coerce]\ndate_format = \"dd/mm/yyyy\"\nthousands_separator = \".\"\n";
    t.write("pipelines/vn.toml", text);
    t.write(
        "inbox/vn.csv",
        "id;n;day\nx;1.234.567;30/04/2025\ny;12;31/02/2025\n",
    );
    let hub = t.open().await;
    let report = hub.run("vn", "test").await.unwrap();
    assert_eq!((report.accepted, report.rejected), (1, 1));
    assert_eq!(
        rows(&hub, "SELECT n, CAST(day AS VARCHAR) FROM vn").await,
        vec![vec![json!(1_234_567), json!("2025-04-30")]]
    );
}

#[tokio::test]
async fn a_transform_shapes_each_batch_before_storage() {
    let t = TestHub::new();
    t.add_pipeline(
        "shaped",
        &["id"],
        "kind = \"file\"\npath = \"../inbox/*.jsonl\"\nformat = \"jsonl\"\n\n[cursor]\nfield = \"doubled\"",
    );
    // The transform goes at the top level, before [source].
    let path = t.path().join("pipelines/shaped.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[source]",
        "transform = \"SELECT id, n * 2 AS doubled, upper(name) AS name_upper FROM input WHERE n > 0\"\n\n[source]",
    );
    std::fs::write(&path, text).unwrap();
    t.write(
        "inbox/a.jsonl",
        "{\"id\": \"a\", \"n\": 1, \"name\": \"Đồng Xoài\"}\n{\"id\": \"b\", \"n\": 0, \"name\": \"bỏ qua\"}\n{\"id\": \"c\", \"n\": -1}\n",
    );
    let hub = t.open().await;
    let report = hub.run("shaped", "test").await.unwrap();
    assert_eq!((report.accepted, report.rejected), (1, 1), "{report:?}");
    assert_eq!(
        rows(&hub, "SELECT id, doubled, name_upper FROM shaped").await,
        vec![vec![json!("a"), json!(2), json!("ĐỒNG XOÀI")]]
    );
    let columns = rows(&hub, "SELECT column_name FROM information_schema.columns WHERE table_name = 'shaped' ORDER BY ordinal_position").await;
    let names: Vec<&str> = columns.iter().map(|c| c[0].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "id",
            "doubled",
            "name_upper",
            "_ingested_at",
            "_run_id",
            "_source"
        ]
    );
    assert_eq!(
        hub.state.load("shaped").unwrap().cursor,
        Some(json!(2)),
        "the cursor may be a transform's column"
    );
}

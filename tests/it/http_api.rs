//! The HTTP API: SQL in three formats, read-only enforcement, limits, catalog, quarantine.

use std::io::Cursor;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestHub, serve};

async fn hub_with_data(extra_query: &str) -> (TestHub, std::net::SocketAddr) {
    let t = TestHub::new();
    t.set_query_limits(extra_query);
    t.add_pipeline("items", &["id"], crate::common::JSONL_INBOX);
    t.write(
        "inbox/a.jsonl",
        "{\"id\": \"a\", \"n\": 1, \"name\": \"Rác thải ở chợ Tân Phú\"}\n{\"id\": \"b\", \"n\": 2, \"day\": \"2025-04-30\"}\n{\"id\": \"c\", \"n\": -1}\n",
    );
    let hub = t.open().await;
    hub.run("items", "test").await.unwrap();
    let addr = serve(hub).await;
    (t, addr)
}

async fn post_sql(addr: std::net::SocketAddr, sql: &str, accept: &str) -> reqwest::Response {
    crate::common::admin_client()
        .post(format!("http://{addr}/api/v1/sql"))
        .header("accept", accept)
        .json(&json!({"sql": sql}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sql_answers_json_csv_and_arrow() {
    let (_t, addr) = hub_with_data("").await;
    let sql = "SELECT id, n, name, day FROM items ORDER BY id";
    let response = post_sql(addr, sql, "application/json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["columns"],
        json!([
            {"name": "id", "type": "string"},
            {"name": "n", "type": "integer"},
            {"name": "name", "type": "string"},
            {"name": "day", "type": "date"}
        ])
    );
    assert_eq!(
        body["rows"],
        json!([
            ["a", 1, "Rác thải ở chợ Tân Phú", null],
            ["b", 2, null, "2025-04-30"]
        ])
    );
    assert_eq!(body["row_count"], json!(2));
    assert_eq!(body["truncated"], json!(false));

    let csv = post_sql(addr, sql, "text/csv").await;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    assert_eq!(
        text,
        "id,n,name,day\na,1,Rác thải ở chợ Tân Phú,\nb,2,,2025-04-30\n"
    );

    let arrow = post_sql(addr, sql, "application/vnd.apache.arrow.stream").await;
    assert_eq!(arrow.status(), StatusCode::OK);
    let bytes = arrow.bytes().await.unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(Cursor::new(bytes.to_vec()), None).unwrap();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
}

#[tokio::test]
async fn hostile_sql_is_rejected_and_touches_nothing() {
    let (t, addr) = hub_with_data("").await;
    let target = t.path().join("stolen.csv");
    let cases = [
        "CREATE TABLE x AS SELECT 1".to_string(),
        "DROP TABLE items".to_string(),
        "INSERT INTO items (id, n) VALUES ('z', 9)".to_string(),
        "DELETE FROM items".to_string(),
        format!("COPY items TO '{}' STORED AS CSV", target.display()),
        format!("COPY (SELECT * FROM items) TO '{}'", target.display()),
        "CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'".to_string(),
        "CREATE VIEW v AS SELECT * FROM items".to_string(),
        "SET datafusion.execution.batch_size = 1".to_string(),
        "SELECT * FROM '/etc/passwd'".to_string(),
        "SELECT * FROM read_csv('/etc/passwd')".to_string(),
        "SELECT * FROM read_parquet('/etc/passwd')".to_string(),
        "SELECT 1; DROP TABLE items".to_string(),
    ];
    for sql in &cases {
        let response = post_sql(addr, sql, "application/json").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{sql}");
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{sql}: {body}");
        assert!(!message.contains("root:x:0:0"), "{sql} leaked /etc/passwd");
    }
    assert!(!target.exists(), "COPY wrote a file");
    let still: Value = post_sql(addr, "SELECT count(*) AS c FROM items", "application/json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(still["rows"], json!([[2]]));
    let denied: Value = post_sql(addr, "COPY items TO '/tmp/x.csv'", "application/json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(denied["error"]["code"], json!("not_allowed"));
}

#[tokio::test]
async fn syntax_errors_and_bad_bodies_are_clear_400s() {
    let (_t, addr) = hub_with_data("").await;
    let response = post_sql(addr, "SELEC id FROM items", "application/json").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("invalid_query"));
    assert!(body["error"]["message"].as_str().unwrap().contains("SELEC"));

    let unknown = post_sql(addr, "SELECT * FROM nowhere", "application/json").await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);

    let client = crate::common::admin_client();
    let malformed = client
        .post(format!("http://{addr}/api/v1/sql"))
        .header("content-type", "application/json")
        .body("{\"sql\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let body: Value = malformed.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("JSON"));

    let huge = format!("{{\"sql\": \"SELECT '{}'\"}}", "x".repeat(17 * 1024 * 1024));
    let too_large = client
        .post(format!("http://{addr}/api/v1/sql"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = too_large.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("body_too_large"));

    let nowhere = client
        .get(format!("http://{addr}/api/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
    let health: Value = crate::common::get_json(&client, format!("http://{addr}/healthz")).await;
    assert_eq!(health["status"], json!("ok"));
}

#[tokio::test]
async fn row_cap_and_time_limit() {
    let (_t, addr) = hub_with_data("max_rows = 5\ntimeout_seconds = 1").await;
    let capped: Value = post_sql(
        addr,
        "SELECT * FROM generate_series(1, 100)",
        "application/json",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(capped["row_count"], json!(5));
    assert_eq!(capped["truncated"], json!(true));
    let exact: Value = post_sql(
        addr,
        "SELECT * FROM generate_series(1, 5)",
        "application/json",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        exact["truncated"],
        json!(false),
        "exactly max_rows rows is not truncated"
    );

    let slow = post_sql(
        addr,
        "SELECT count(*) FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b",
        "application/json",
    )
    .await;
    assert_eq!(slow.status(), StatusCode::REQUEST_TIMEOUT);

    // The server is still fine afterwards.
    let ok = post_sql(addr, "SELECT count(*) FROM items", "application/json").await;
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_query_over_its_memory_limit_fails_alone() {
    let (_t, addr) = hub_with_data("memory_limit_mb = 8").await;
    // A hash join's build side cannot spill: 2 million keys do not fit in 8 MB.
    let big = post_sql(
        addr,
        "SELECT count(*) FROM generate_series(1, 2000000) a JOIN generate_series(1, 2000000) b ON a.value = b.value",
        "application/json",
    )
    .await;
    assert_eq!(big.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = big.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("query_too_large"));
    let ok = post_sql(addr, "SELECT count(*) FROM items", "application/json").await;
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn catalog_and_quarantine_endpoints() {
    let (_t, addr) = hub_with_data("").await;
    let client = crate::common::admin_client();
    let catalog: Value =
        crate::common::get_json(&client, format!("http://{addr}/api/v1/datasets")).await;
    let items = &catalog["datasets"][0];
    assert_eq!(items["name"], json!("items"));
    assert_eq!(items["title"], json!("Dữ liệu items"));
    assert_eq!(items["sharing"], json!("default"));
    assert_eq!(items["row_count"], json!(2));
    assert!(items["last_ingest"].is_string());
    assert_eq!(
        items["columns"][1],
        json!({"name": "n", "type": "integer", "description": "Số lượng"})
    );

    let q: Value = crate::common::get_json(
        &client,
        format!("http://{addr}/api/v1/datasets/items/quarantine"),
    )
    .await;
    assert_eq!(q["count"], json!(1));
    let record = &q["records"][0];
    assert_eq!(record["location"], json!("line 3"));
    // The line exactly as the file holds it, not re-serialized.
    assert_eq!(record["raw"], json!("{\"id\": \"c\", \"n\": -1}"));
    assert_eq!(record["errors"][0]["pointer"], json!("/n"));
    assert!(record["run_id"].is_string() && record["quarantined_at"].is_string());

    let missing = client
        .get(format!("http://{addr}/api/v1/datasets/nope/quarantine"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

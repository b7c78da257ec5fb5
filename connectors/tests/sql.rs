//! The `postgres` and `mysql` connectors against the real servers on this machine:
//! PostgreSQL at 127.0.0.1:5432 (trust, user `postgres`, database `test`) and MariaDB at
//! 127.0.0.1:3306 (user `root`, no password, database `test`). Each test creates its own
//! table with a random suffix and drops it at the end, even when it fails.

use std::future::Future;
use std::str::FromStr;
use std::sync::Once;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use iochub_connectors::{
    BuildContext, ConnectorError, Payload, ReadContext, SourceConfig, SourceEvent,
};
use serde_json::{Value, json};
use sqlx_core::connection::ConnectOptions;
use sqlx_core::executor::Executor;

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MY_URL: &str = "mysql://root@127.0.0.1:3306/test";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Db {
    Pg,
    My,
}

impl Db {
    fn kind(self) -> &'static str {
        match self {
            Db::Pg => "postgres",
            Db::My => "mysql",
        }
    }
    fn env(self) -> &'static str {
        match self {
            Db::Pg => "IOCHUB_TEST_PG_URL",
            Db::My => "IOCHUB_TEST_MY_URL",
        }
    }
}

/// Environment variables are set once, before any test reads one (setting them while another
/// thread reads the environment is not safe).
fn init_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let closed = closed_port();
        let silent = silent_server();
        // SAFETY: runs once, before any test's runtime starts or any variable is read.
        unsafe {
            std::env::set_var(Db::Pg.env(), PG_URL);
            std::env::set_var(Db::My.env(), MY_URL);
            std::env::set_var(
                "IOCHUB_TEST_PG_CLOSED",
                format!("postgres://postgres@127.0.0.1:{closed}/test"),
            );
            std::env::set_var(
                "IOCHUB_TEST_PG_SILENT",
                format!("postgres://postgres@127.0.0.1:{silent}/test"),
            );
            std::env::set_var(
                "IOCHUB_TEST_MY_CLOSED",
                format!("mysql://root@127.0.0.1:{closed}/test"),
            );
        }
    });
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A port on 127.0.0.1 that accepts connections and never says a word (for the connect
/// timeout). The thread holds the sockets until the test process ends.
fn silent_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for socket in l.incoming().flatten() {
            held.push(socket);
        }
    });
    port
}

fn table_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let r = iochub_connectors::retry::jitter(1_000_000);
    format!("iochub_t_{prefix}_{}_{r}", nanos % 1_000_000_000)
}

/// Runs statements on an admin connection (not through the connector, which is read-only).
async fn admin(db: Db, sql: &str) {
    match db {
        Db::Pg => {
            let mut c = sqlx_postgres::PgConnectOptions::from_str(PG_URL)
                .unwrap()
                .connect()
                .await
                .unwrap();
            c.execute(sqlx_core::raw_sql::raw_sql(sql)).await.unwrap();
        }
        Db::My => {
            let mut c = sqlx_mysql::MySqlConnectOptions::from_str(MY_URL)
                .unwrap()
                .timezone(Some("+07:00".to_string()))
                .connect()
                .await
                .unwrap();
            // One statement at a time: the text protocol runs them in order.
            for statement in sql.split(";\n").filter(|s| !s.trim().is_empty()) {
                c.execute(sqlx_core::raw_sql::raw_sql(statement))
                    .await
                    .unwrap();
            }
        }
    }
}

async fn count(db: Db, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    let out = read(db, json!({ "query": sql }), ReadContext::default())
        .await
        .unwrap();
    out.rows()[0]["n"].as_i64().unwrap()
}

/// Creates the table with `ddl` (`{t}` is its name), runs the test, drops the table.
async fn with_table<F, Fut>(db: Db, prefix: &str, ddl: &str, test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    init_env();
    let t = table_name(prefix);
    admin(db, &ddl.replace("{t}", &t)).await;
    let outcome = std::panic::AssertUnwindSafe(test(t.clone()))
        .catch_unwind()
        .await;
    admin(db, &format!("DROP TABLE IF EXISTS {t}")).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[derive(Debug, Default)]
struct Output {
    batches: Vec<Vec<Value>>,
    checkpoint: Option<Value>,
}

impl Output {
    fn rows(&self) -> Vec<Value> {
        self.batches.iter().flatten().cloned().collect()
    }
    fn column(&self, name: &str) -> Vec<Value> {
        self.rows().iter().map(|r| r[name].clone()).collect()
    }
}

/// Builds the connector from JSON settings (`url_env` defaults to the test server's) and reads
/// one pass.
async fn read(db: Db, mut settings: Value, ctx: ReadContext) -> Result<Output, ConnectorError> {
    init_env();
    if settings.get("url_env").is_none() {
        settings["url_env"] = db.env().into();
    }
    let config = SourceConfig::deserialize(db.kind(), settings)
        .unwrap()
        .unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let connector = config
        .build(&BuildContext {
            base_dir: ".".into(),
            state_dir: std::env::temp_dir().join("iochub-sql-test-state"),
        })
        .unwrap();
    let mut stream = connector.read(ctx);
    let mut out = Output::default();
    while let Some(event) = stream.next().await {
        match event? {
            SourceEvent::Batch(b) => {
                assert!(out.checkpoint.is_none(), "a batch after the checkpoint");
                assert!(!b.records.is_empty(), "an empty batch");
                let rows = b
                    .records
                    .into_iter()
                    .map(|r| match r.payload {
                        Payload::Json(v) => v,
                        other => panic!("not JSON: {other:?}"),
                    })
                    .collect();
                out.batches.push(rows);
            }
            SourceEvent::Checkpoint(c) => {
                assert!(out.checkpoint.is_none(), "two checkpoints");
                out.checkpoint = Some(c);
            }
        }
    }
    Ok(out)
}

fn with_checkpoint(c: &Option<Value>) -> ReadContext {
    ReadContext {
        checkpoint: c.clone(),
        cursor: None,
    }
}

const VIETNAMESE: &str = "Hồ sơ – Ủy ban nhân dân xã Đồng Phú, huyện Lương Sơn; người nộp: Nguyễn Thị Ngọc Ánh; lĩnh vực: Đất đai";

// ---------------------------------------------------------------------------------------------
// Streaming 30,000 rows of Vietnamese text in bounded batches

async fn large_table(db: Db) {
    let ddl = match db {
        Db::Pg => format!(
            "CREATE TABLE {{t}} (id integer PRIMARY KEY, title text NOT NULL);
             INSERT INTO {{t}} SELECT g, g || ' ' || '{VIETNAMESE}' FROM generate_series(1, 30000) g"
        ),
        Db::My => format!(
            "CREATE TABLE {{t}} (id INT PRIMARY KEY, title TEXT NOT NULL) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n\
             INSERT INTO {{t}} SELECT seq, CONCAT(seq, ' ', '{VIETNAMESE}') FROM seq_1_to_30000"
        ),
    };
    with_table(db, "large", &ddl, |t| async move {
        let out = read(
            db,
            json!({ "query": format!("SELECT id, title FROM {t}"), "cursor_column": "id", "batch_size": 1000 }),
            ReadContext::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.batches.len(), 30);
        assert!(out.batches.iter().all(|b| b.len() <= 1000));
        let rows = out.rows();
        assert_eq!(rows.len(), 30_000);
        for (i, row) in rows.iter().enumerate() {
            let id = i as i64 + 1;
            assert_eq!(row["id"], json!(id), "rows in cursor order");
            // Byte for byte: the NFC text written is the text read.
            let want = format!("{id} {VIETNAMESE}");
            assert_eq!(row["title"].as_str().unwrap().as_bytes(), want.as_bytes());
        }
        assert_eq!(out.checkpoint, Some(json!({"cursor": 30000, "type": "integer"})));

        // An odd batch size leaves a short last batch.
        let out = read(
            db,
            json!({ "query": format!("SELECT id FROM {t}"), "batch_size": 7000 }),
            ReadContext::default(),
        )
        .await
        .unwrap();
        let sizes: Vec<usize> = out.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![7000, 7000, 7000, 7000, 2000]);
        assert_eq!(out.checkpoint, None, "no cursor_column, no checkpoint");
    })
    .await;
}

#[tokio::test]
async fn pg_streams_a_large_table_in_bounded_batches() {
    large_table(Db::Pg).await;
}

#[tokio::test]
async fn mysql_streams_a_large_table_in_bounded_batches() {
    large_table(Db::My).await;
}

// ---------------------------------------------------------------------------------------------
// Type mapping

#[tokio::test]
async fn pg_maps_every_type() {
    let ddl = "CREATE TABLE {t} (
        id integer PRIMARY KEY, b boolean, i2 smallint, i4 integer, i8 bigint, f4 real,
        f8 double precision, n numeric(30,6), n_big numeric, n_nan numeric, t text,
        vc varchar(80), ch char(5), d date, tm time, ts timestamp, tstz timestamptz, j json,
        jb jsonb, by bytea, u uuid);
      INSERT INTO {t} VALUES (1, true, -32768, 2147483647, 9223372036854775807, 1.1,
        1234.5678901234567, 12345.678900, 123456789012345678901234567890.123, 'NaN',
        'Quận Ba Đình', 'Phường Điện Biên', 'ab', '2024-05-01', '13:45:30.5',
        '2024-05-01 08:30:00.123456', '2024-05-01 08:30:00+07',
        '{\"a\": [1, 2, {\"b\": \"Đà Nẵng\"}]}', '{\"k\": null, \"n\": 1.5}', '\\x00ff10',
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
      INSERT INTO {t} (id) VALUES (2)";
    with_table(Db::Pg, "types", ddl, |t| async move {
        let out = read(
            Db::Pg,
            json!({ "query": format!("SELECT * FROM {t} ORDER BY id") }),
            ReadContext::default(),
        )
        .await
        .unwrap();
        let rows = out.rows();
        assert_eq!(
            rows[0],
            json!({
                "id": 1, "b": true, "i2": -32768, "i4": 2147483647, "i8": 9223372036854775807i64,
                "f4": 1.1, "f8": 1234.5678901234567, "n": 12345.6789,
                "n_big": "123456789012345678901234567890.123", "n_nan": "NaN",
                "t": "Quận Ba Đình", "vc": "Phường Điện Biên", "ch": "ab   ",
                "d": "2024-05-01", "tm": "13:45:30.500",
                "ts": "2024-05-01T08:30:00.123456+07:00", "tstz": "2024-05-01T01:30:00Z",
                "j": {"a": [1, 2, {"b": "Đà Nẵng"}]}, "jb": {"k": null, "n": 1.5},
                "by": "AP8Q", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
            })
        );
        let nulls = rows[1].as_object().unwrap();
        assert_eq!(nulls.len(), 21);
        assert!(
            nulls.iter().all(|(k, v)| k == "id" || v.is_null()),
            "{nulls:?}"
        );

        // Another time_zone moves the offset given to timestamps without one, not the instant
        // of those with one.
        let out = read(
            Db::Pg,
            json!({ "query": format!("SELECT ts, tstz FROM {t} WHERE id = 1"), "time_zone": "Z" }),
            ReadContext::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            out.rows()[0],
            json!({"ts": "2024-05-01T08:30:00.123456Z", "tstz": "2024-05-01T01:30:00Z"})
        );

        // A type with no mapping names the column and the type.
        let err = read(
            Db::Pg,
            json!({ "query": "SELECT 1 AS ok, interval '1 day' AS span" }),
            ReadContext::default(),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConnectorError::Column { .. }), "{err:?}");
        assert!(
            msg.contains("\"span\"") && msg.contains("INTERVAL"),
            "{msg}"
        );
        assert!(!err.is_transient());
    })
    .await;
}

#[tokio::test]
async fn mysql_maps_every_type() {
    let ddl = "CREATE TABLE {t} (
        id INT PRIMARY KEY, b BOOLEAN, ti TINYINT, si SMALLINT, mi MEDIUMINT, i INT,
        bi BIGINT, ubi BIGINT UNSIGNED, f FLOAT, d DOUBLE, n DECIMAL(30,6), nb DECIMAL(65,3),
        t TEXT, vc VARCHAR(80), code VARCHAR(20) COLLATE utf8mb4_bin, ch CHAR(5),
        vb VARBINARY(10), bl BLOB, dt DATE, tm TIME, dur TIME, dtm DATETIME(6),
        ts TIMESTAMP NULL DEFAULT NULL, j JSON, e ENUM('mot','hai'), y YEAR, bt BIT(10)
      ) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
      INSERT INTO {t} VALUES (1, true, -128, -32768, 8388607, 2147483647, 9223372036854775807,
        18446744073709551615, 1.1, 1234.5678901234567, 12345.678900,
        123456789012345678901234567890.123, 'Quận Ba Đình', 'Phường Điện Biên', 'Mã-Đ01', 'ab',
        X'00ff10', X'89504e47', '2024-05-01', '13:45:30', '-100:00:01', '2024-05-01 08:30:00.123456',
        '2024-05-01 08:30:00', '{\"a\": [1, 2, {\"b\": \"Đà Nẵng\"}]}', 'hai', 2024, b'1000000001');
      INSERT INTO {t} (id) VALUES (2);
      INSERT INTO {t} (id, dt, dtm) VALUES (3, '0000-00-00', '0000-00-00 00:00:00')";
    let ddl = ddl.replace(";\n      ", ";\n");
    with_table(Db::My, "types", &ddl, |t| async move {
        let out = read(
            Db::My,
            json!({ "query": format!("SELECT * FROM {t} ORDER BY id") }),
            ReadContext::default(),
        )
        .await
        .unwrap();
        let rows = out.rows();
        assert_eq!(
            rows[0],
            json!({
                "id": 1, "b": true, "ti": -128, "si": -32768, "mi": 8388607, "i": 2147483647,
                "bi": 9223372036854775807i64, "ubi": 18446744073709551615u64,
                "f": 1.1, "d": 1234.5678901234567, "n": 12345.6789,
                "nb": "123456789012345678901234567890.123",
                "t": "Quận Ba Đình", "vc": "Phường Điện Biên", "code": "Mã-Đ01", "ch": "ab",
                "vb": "AP8Q", "bl": "iVBORw==", "dt": "2024-05-01", "tm": "13:45:30",
                "dur": "-100:00:01", "dtm": "2024-05-01T08:30:00.123456+07:00",
                // Written at +07:00, stored by the server in UTC, read back in UTC.
                "ts": "2024-05-01T01:30:00Z",
                // MariaDB keeps JSON as text (LONGTEXT): it arrives as a string.
                "j": "{\"a\": [1, 2, {\"b\": \"Đà Nẵng\"}]}",
                "e": "hai", "y": 2024, "bt": 513
            })
        );
        let nulls = rows[1].as_object().unwrap();
        assert_eq!(nulls.len(), 27);
        assert!(
            nulls.iter().all(|(k, v)| k == "id" || v.is_null()),
            "{nulls:?}"
        );
        // Binary that happens to be UTF-8 reads as text (the price of utf8mb4_bin columns
        // reading as text); TO_BASE64 in the query gives base64 for every value.
        let out = read(
            Db::My,
            json!({ "query": "SELECT X'6869' AS raw, TO_BASE64(X'6869') AS encoded" }),
            ReadContext::default(),
        )
        .await
        .unwrap();
        assert_eq!(out.rows()[0], json!({"raw": "hi", "encoded": "aGk="}));
        // Zero dates become null.
        assert_eq!(rows[2]["dt"], Value::Null);
        assert_eq!(rows[2]["dtm"], Value::Null);

        let err = read(
            Db::My,
            json!({ "query": "SELECT 1 AS ok, POINT(1, 2) AS place" }),
            ReadContext::default(),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConnectorError::Column { .. }), "{err:?}");
        assert!(
            msg.contains("\"place\"") && msg.contains("GEOMETRY"),
            "{msg}"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Incremental reads

async fn incremental_integer(db: Db) {
    let ddl = "CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(40));\n\
               INSERT INTO {t} VALUES (1, 'một'), (2, 'hai'), (3, 'ba')";
    with_table(db, "incr", ddl, |t| async move {
        let settings =
            json!({ "query": format!("SELECT id, name FROM {t}"), "cursor_column": "id" });
        let first = read(db, settings.clone(), ReadContext::default())
            .await
            .unwrap();
        assert_eq!(first.column("id"), vec![json!(1), json!(2), json!(3)]);
        assert_eq!(
            first.checkpoint,
            Some(json!({"cursor": 3, "type": "integer"}))
        );

        admin(
            db,
            &format!("INSERT INTO {t} VALUES (4, 'bốn'), (5, 'năm')"),
        )
        .await;
        let second = read(db, settings.clone(), with_checkpoint(&first.checkpoint))
            .await
            .unwrap();
        assert_eq!(second.column("id"), vec![json!(4), json!(5)]);
        assert_eq!(second.column("name"), vec![json!("bốn"), json!("năm")]);
        assert_eq!(
            second.checkpoint,
            Some(json!({"cursor": 5, "type": "integer"}))
        );

        // Nothing new: no rows and no checkpoint (the hub keeps the previous one).
        let third = read(db, settings.clone(), with_checkpoint(&second.checkpoint))
            .await
            .unwrap();
        assert!(third.batches.is_empty());
        assert_eq!(third.checkpoint, None);

        // Without a checkpoint the pipeline's cursor is the starting point.
        let from_cursor = read(
            db,
            settings.clone(),
            ReadContext {
                checkpoint: None,
                cursor: Some(json!(3)),
            },
        )
        .await
        .unwrap();
        assert_eq!(from_cursor.column("id"), vec![json!(4), json!(5)]);

        // An integer overlap re-reads that many values back.
        let mut with_overlap = settings.clone();
        with_overlap["overlap"] = json!(2);
        let again = read(db, with_overlap, with_checkpoint(&second.checkpoint))
            .await
            .unwrap();
        assert_eq!(again.column("id"), vec![json!(3), json!(4), json!(5)]);
    })
    .await;
}

#[tokio::test]
async fn pg_incremental_integer_cursor() {
    incremental_integer(Db::Pg).await;
}

#[tokio::test]
async fn mysql_incremental_integer_cursor() {
    incremental_integer(Db::My).await;
}

/// Ten rows a minute apart; then a row committed late with a timestamp 2 minutes behind the
/// maximum. Without overlap it is missed; with a 5-minute overlap it is read, together with the
/// rows of the last 5 minutes, and nothing earlier.
async fn incremental_timestamp(db: Db) {
    let (ty, values) = match db {
        Db::Pg => (
            "timestamp",
            "SELECT g, timestamp '2024-05-01 08:00:00' + g * interval '1 minute' FROM generate_series(0, 9) g",
        ),
        Db::My => (
            "DATETIME",
            "SELECT seq, TIMESTAMP('2024-05-01 08:00:00') + INTERVAL seq MINUTE FROM seq_0_to_9",
        ),
    };
    let ddl = format!(
        "CREATE TABLE {{t}} (id INT PRIMARY KEY, updated_at {ty} NOT NULL);\nINSERT INTO {{t}} {values}"
    );
    with_table(db, "ts", &ddl, |t| async move {
        let query = format!("SELECT id, updated_at AS \"Updated At\" FROM {t}");
        let query = match db {
            Db::Pg => query,
            Db::My => query.replace('"', "`"),
        };
        let plain = json!({ "query": query, "cursor_column": "Updated At" });
        let mut overlapping = plain.clone();
        overlapping["overlap"] = json!("5m");

        let first = read(db, overlapping.clone(), ReadContext::default())
            .await
            .unwrap();
        assert_eq!(first.rows().len(), 10);
        assert_eq!(
            first.checkpoint,
            Some(json!({"cursor": "2024-05-01T08:09:00+07:00", "type": "timestamp"}))
        );

        admin(
            db,
            &format!("INSERT INTO {t} VALUES (100, '2024-05-01 08:07:00')"),
        )
        .await;

        let without = read(db, plain.clone(), with_checkpoint(&first.checkpoint))
            .await
            .unwrap();
        assert!(
            without.rows().is_empty(),
            "strictly after the cursor: {:?}",
            without.rows()
        );

        let with = read(db, overlapping.clone(), with_checkpoint(&first.checkpoint))
            .await
            .unwrap();
        let mut ids: Vec<i64> = with
            .column("id")
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        ids.sort();
        // 08:04 .. 08:09 and the late 08:07 row; 08:03 and earlier are not re-read.
        assert_eq!(ids, vec![4, 5, 6, 7, 8, 9, 100]);
        assert_eq!(
            with.checkpoint,
            Some(json!({"cursor": "2024-05-01T08:09:00+07:00", "type": "timestamp"}))
        );

        // The pipeline's cursor as an RFC 3339 instant in UTC (01:05Z = 08:05 at +07:00).
        let from_cursor = read(
            db,
            plain.clone(),
            ReadContext {
                checkpoint: None,
                cursor: Some(json!("2024-05-01T01:05:00Z")),
            },
        )
        .await
        .unwrap();
        let mut ids: Vec<i64> = from_cursor
            .column("id")
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, vec![6, 7, 8, 9, 100]);
    })
    .await;
}

#[tokio::test]
async fn pg_incremental_timestamp_cursor_with_overlap() {
    incremental_timestamp(Db::Pg).await;
}

#[tokio::test]
async fn mysql_incremental_timestamp_cursor_with_overlap() {
    incremental_timestamp(Db::My).await;
}

#[tokio::test]
async fn pg_timestamptz_cursor_compares_instants() {
    let ddl = "CREATE TABLE {t} (id int PRIMARY KEY, at timestamptz NOT NULL);
      INSERT INTO {t} VALUES (1, '2024-05-01 08:00:00+07'), (2, '2024-05-01 02:00:00Z'),
        (3, '2024-05-01 10:00:00+07')";
    with_table(Db::Pg, "tstz", ddl, |t| async move {
        let settings = json!({ "query": format!("SELECT id, at FROM {t}"), "cursor_column": "at" });
        let first = read(Db::Pg, settings.clone(), ReadContext::default())
            .await
            .unwrap();
        assert_eq!(first.column("id"), vec![json!(1), json!(2), json!(3)]);
        assert_eq!(
            first.checkpoint,
            Some(json!({"cursor": "2024-05-01T03:00:00Z", "type": "timestamp"}))
        );
        // 08:30 at +07:00 is 01:30Z: rows 2 (02:00Z) and 3 (03:00Z) are after it.
        let cp = json!({"cursor": "2024-05-01T08:30:00+07:00", "type": "timestamp"});
        let second = read(Db::Pg, settings, with_checkpoint(&Some(cp)))
            .await
            .unwrap();
        assert_eq!(second.column("id"), vec![json!(2), json!(3)]);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Failures

async fn missing_env(db: Db) {
    let err = read(
        db,
        json!({ "query": "SELECT 1", "url_env": "IOCHUB_TEST_NOT_SET_ANYWHERE" }),
        ReadContext::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ConnectorError::MissingEnv(v) if v == "IOCHUB_TEST_NOT_SET_ANYWHERE"),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn pg_missing_env_var() {
    missing_env(Db::Pg).await;
}

#[tokio::test]
async fn mysql_missing_env_var() {
    missing_env(Db::My).await;
}

async fn bad_sql(db: Db) {
    let err = read(db, json!({ "query": "SELEC 1" }), ReadContext::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConnectorError::Database { .. }), "{err:?}");
    assert!(!err.is_transient(), "{err:?}");
    let server_says = match db {
        Db::Pg => "syntax error at or near \"SELEC\"",
        Db::My => "You have an error in your SQL syntax",
    };
    assert!(msg.contains(server_says), "{msg}");
    assert!(
        !msg.contains("postgres@") && !msg.contains("root@"),
        "no credentials: {msg}"
    );

    let err = read(
        db,
        json!({ "query": "SELECT * FROM iochub_no_such_table_x", "cursor_column": "id" }),
        ReadContext::default(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(!err.is_transient(), "{err:?}");
    let server_says = match db {
        Db::Pg => "relation \"iochub_no_such_table_x\" does not exist",
        Db::My => "iochub_no_such_table_x' doesn't exist",
    };
    assert!(msg.contains(server_says), "{msg}");
}

#[tokio::test]
async fn pg_bad_sql_is_permanent() {
    bad_sql(Db::Pg).await;
}

#[tokio::test]
async fn mysql_bad_sql_is_permanent() {
    bad_sql(Db::My).await;
}

async fn refused(db: Db) {
    let env = match db {
        Db::Pg => "IOCHUB_TEST_PG_CLOSED",
        Db::My => "IOCHUB_TEST_MY_CLOSED",
    };
    let err = read(
        db,
        json!({ "query": "SELECT 1", "url_env": env }),
        ReadContext::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ConnectorError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(err.class(), "transient");
}

#[tokio::test]
async fn pg_connection_refused_is_transient() {
    refused(Db::Pg).await;
}

#[tokio::test]
async fn mysql_connection_refused_is_transient() {
    refused(Db::My).await;
}

/// A server that accepts the connection and never answers: the connect timeout ends it.
#[tokio::test]
async fn silent_server_hits_the_connect_timeout() {
    let started = Instant::now();
    let err = read(
        Db::Pg,
        json!({ "query": "SELECT 1", "url_env": "IOCHUB_TEST_PG_SILENT", "connect_timeout_seconds": 1 }),
        ReadContext::default(),
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(&err, ConnectorError::Connect { message, .. } if message.contains("connect_timeout_seconds")),
        "{err:?}"
    );
    assert!(err.is_transient());
}

async fn hanging_query(db: Db) {
    let sql = match db {
        Db::Pg => "SELECT pg_sleep(30) AS slept",
        Db::My => "SELECT SLEEP(30) AS slept",
    };
    let started = Instant::now();
    let err = read(
        db,
        json!({ "query": sql, "query_timeout_seconds": 2 }),
        ReadContext::default(),
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(
        matches!(err, ConnectorError::QueryTimeout { seconds: 2, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(err.to_string().contains("query_timeout_seconds"), "{err}");
}

#[tokio::test]
async fn pg_hanging_query_times_out() {
    hanging_query(Db::Pg).await;
}

#[tokio::test]
async fn mysql_hanging_query_times_out() {
    hanging_query(Db::My).await;
}

async fn write_refused(db: Db) {
    let ddl = "CREATE TABLE {t} (id INT PRIMARY KEY);\nINSERT INTO {t} VALUES (1), (2)";
    with_table(db, "ro", ddl, |t| async move {
        let sql = match db {
            Db::Pg => format!("DELETE FROM {t} RETURNING id"),
            Db::My => format!("DELETE FROM {t}"),
        };
        let err = read(db, json!({ "query": sql }), ReadContext::default())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(!err.is_transient(), "{err:?}");
        let server_says = match db {
            Db::Pg => "cannot execute DELETE in a read-only transaction",
            Db::My => "READ ONLY transaction",
        };
        assert!(msg.contains(server_says), "{msg}");
        assert_eq!(count(db, &t).await, 2, "nothing was deleted");

        if db == Db::Pg {
            // A function with a side effect, called from a plain SELECT, is refused too.
            admin(
                db,
                &format!(
                    "CREATE FUNCTION {t}_w() RETURNS int LANGUAGE sql AS $$ INSERT INTO {t} VALUES (3) RETURNING 3 $$"
                ),
            )
            .await;
            let err = read(db, json!({ "query": format!("SELECT {t}_w() AS n") }), ReadContext::default())
                .await
                .unwrap_err();
            admin(db, &format!("DROP FUNCTION {t}_w()")).await;
            assert!(err.to_string().contains("read-only transaction"), "{err}");
            assert_eq!(count(db, &t).await, 2, "nothing was inserted");
        }
    })
    .await;
}

#[tokio::test]
async fn pg_writes_are_refused() {
    write_refused(Db::Pg).await;
}

#[tokio::test]
async fn mysql_writes_are_refused() {
    write_refused(Db::My).await;
}

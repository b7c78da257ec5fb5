//! Run state: retries of a failing source, the cursor across restarts, a crash between the
//! data commit and saving the state, graceful shutdown, and the pipelines API and metrics.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use iochub::ingest::RunStatus;
use serde_json::{Value, json};

use crate::common::{TestHub, count, serve};

async fn listen(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Answers 503 to the first `failures` requests, then three records.
async fn recovering_source(failures: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/data",
            get(move |State(calls): State<Arc<AtomicUsize>>| async move {
                if calls.fetch_add(1, Ordering::SeqCst) < failures {
                    return (StatusCode::SERVICE_UNAVAILABLE, "bảo trì").into_response();
                }
                axum::Json(json!([{"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": "c", "n": 3}]))
                    .into_response()
            }),
        )
        .with_state(calls.clone());
    (listen(app).await, calls)
}

fn http_pipeline(addr: SocketAddr, path: &str, run_attempts: u32) -> String {
    format!(
        "kind = \"http_json\"\nurl = \"http://{addr}{path}\"\ntimeout_seconds = 60\n\
         [source.retry]\nmax_attempts = 2\ninitial_backoff_ms = 10\nmax_backoff_ms = 20\n\n\
         [run_retry]\nattempts = {run_attempts}\ninitial_backoff_seconds = 0\n"
    )
}

#[tokio::test]
async fn a_source_down_for_a_while_is_retried_within_the_run_then_recovers() {
    let (addr, calls) = recovering_source(4).await;
    let t = TestHub::new();
    t.add_pipeline("down", &["id"], &http_pipeline(addr, "/data", 3));
    let hub = t.open().await;
    let report = hub.run("down", "test").await.unwrap();
    // Two requests per attempt: attempts 1 and 2 meet only 503s, attempt 3's first gets through.
    assert_eq!(
        (report.status, report.attempts, report.accepted),
        (RunStatus::Succeeded, 3, 3),
        "{report:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_run_that_exhausts_its_budget_fails_and_the_next_run_succeeds() {
    let (addr, _) = recovering_source(2).await;
    let t = TestHub::new();
    t.add_pipeline("down", &["id"], &http_pipeline(addr, "/data", 1));
    let hub = t.open().await;
    let failed = hub.run("down", "test").await.unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.error_class.as_deref(), Some("transient"));
    assert!(
        failed.error.as_deref().unwrap().contains("503"),
        "{failed:?}"
    );
    assert_eq!(
        count(&hub, "SELECT count(*) FROM down").await,
        0,
        "a failed run commits nothing"
    );
    let next = hub.run("down", "test").await.unwrap();
    assert_eq!(next.status, RunStatus::Succeeded);
    let history = hub.runs("down", 10).unwrap();
    let statuses: Vec<RunStatus> = history.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [RunStatus::Succeeded, RunStatus::Failed],
        "newest first"
    );
    assert!(history[1].error.is_some() && history[0].bytes > 0);
}

const CHANGES_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["id", "updated"],
  "properties": {
    "id": {"type": "string", "description": "Mã"},
    "updated": {"type": "string", "format": "date-time", "description": "Cập nhật lúc"}
  }
}"#;

#[derive(Default)]
struct ChangeFeed {
    records: Mutex<Vec<Value>>,
    asked: Mutex<Vec<Option<String>>>,
}

#[tokio::test]
async fn the_cursor_is_committed_and_survives_a_restart() {
    let feed = Arc::new(ChangeFeed::default());
    *feed.records.lock().unwrap() = vec![
        json!({"id": "r1", "updated": "2025-04-01T08:00:00+07:00"}),
        json!({"id": "r2", "updated": "2025-04-02T08:00:00+07:00"}),
        json!({"id": "r3", "updated": "2025-04-01T09:00:00+07:00"}),
    ];
    let app = Router::new()
        .route(
            "/changes",
            get(
                |State(feed): State<Arc<ChangeFeed>>,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let since = q.get("updated_since").cloned();
                    feed.asked.lock().unwrap().push(since.clone());
                    let since = since.map(|s| chrono::DateTime::parse_from_rfc3339(&s).unwrap());
                    let records: Vec<Value> = feed
                        .records
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|r| {
                            let at = chrono::DateTime::parse_from_rfc3339(
                                r["updated"].as_str().unwrap(),
                            )
                            .unwrap();
                            since.is_none_or(|s| at > s)
                        })
                        .cloned()
                        .collect();
                    axum::Json(records)
                },
            ),
        )
        .with_state(feed.clone());
    let addr = listen(app).await;
    let t = TestHub::new();
    t.write("schemas/changes.schema.json", CHANGES_SCHEMA);
    t.write(
        "pipelines/changes.toml",
        format!(
            "name = \"changes\"\ntitle = \"Thay đổi\"\nsector = \"test\"\nschema = \"../schemas/changes.schema.json\"\n\
             key = [\"id\"]\nsharing = \"default\"\nschedule = \"0 * * * *\"\n\n\
             [source]\nkind = \"http_json\"\nurl = \"http://{addr}/changes\"\ncursor_param = \"updated_since\"\n\n\
             [cursor]\nfield = \"updated\"\n"
        ),
    );
    {
        let hub = t.open().await;
        assert_eq!(hub.run("changes", "test").await.unwrap().accepted, 3);
    }
    feed.records
        .lock()
        .unwrap()
        .push(json!({"id": "r4", "updated": "2025-04-03T08:00:00+07:00"}));
    feed.records
        .lock()
        .unwrap()
        .push(json!({"id": "r2", "updated": "2025-04-03T09:00:00+07:00"}));
    let hub = t.open().await;
    let second = hub.run("changes", "test").await.unwrap();
    assert_eq!(second.fetched, 2, "only what changed since the cursor");
    assert_eq!(
        *feed.asked.lock().unwrap(),
        vec![None, Some("2025-04-02T01:00:00Z".to_string())],
        "the largest committed `updated` (in UTC) is sent after the restart"
    );
    assert_eq!(count(&hub, "SELECT count(*) FROM changes").await, 4);
}

fn iochub(t: &TestHub, args: &[&str], fault: Option<&str>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_iochub"));
    command
        .arg("--config")
        .arg(t.config_path())
        .args(args)
        .env("RUST_LOG", "warn");
    if let Some(f) = fault {
        command.env("IOCHUB_FAULT", f);
    }
    command.output().expect("run iochub")
}

#[tokio::test]
async fn a_crash_between_the_data_commit_and_the_state_save_loses_and_repeats_nothing() {
    let t = TestHub::new();
    // Append-only: a re-read file would show up as duplicate rows.
    t.add_pipeline("events", &[], crate::common::JSONL_INBOX);
    t.write(
        "inbox/1.jsonl",
        "{\"id\": \"a\", \"n\": 1}\n{\"id\": \"b\", \"n\": 2}\n{\"id\": \"c\", \"n\": 3}\n",
    );
    let crashed = iochub(&t, &["run", "events"], Some("after-data-commit:events"));
    assert!(
        !crashed.status.success(),
        "the fault hook must abort the process"
    );
    assert!(String::from_utf8_lossy(&crashed.stderr).contains("IOCHUB_FAULT"));

    t.write(
        "inbox/2.jsonl",
        "{\"id\": \"d\", \"n\": 4}\n{\"id\": \"e\", \"n\": 5}\n",
    );
    let resumed = iochub(&t, &["run", "events"], None);
    let out = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        resumed.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(
        out.contains("fetched 2, accepted 2"),
        "only the new file is read: {out}"
    );

    let hub = t.open().await;
    assert_eq!(count(&hub, "SELECT count(*) FROM events").await, 5);
    assert_eq!(
        count(&hub, "SELECT count(DISTINCT id) FROM events").await,
        5
    );
    let state = hub.state.load("events").unwrap();
    assert_eq!(state.run_sequence, 2);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn sigterm_abandons_a_hanging_run_after_the_grace_period_without_committing() {
    let app = Router::new().route(
        "/hang",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "[]"
        }),
    );
    let source = listen(app).await;
    let t = TestHub::new();
    t.add_pipeline("slow", &["id"], &http_pipeline(source, "/hang", 1));
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_iochub"))
        .arg("--config")
        .arg(t.config_path())
        .args(["serve", "--http-addr", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = crate::common::admin_client();
    let base = format!("http://127.0.0.1:{port}");
    // serve starts never-run pipelines at once; wait until the run is in progress.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the run never started");
        if let Ok(r) = client.get(format!("{base}/api/v1/pipelines")).send().await {
            let body: Value = r.json().await.unwrap();
            if body["pipelines"][0]["running"] == json!(true) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let conflict = client
        .post(format!("{base}/api/v1/pipelines/slow/run"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        conflict.status(),
        reqwest::StatusCode::CONFLICT,
        "the same pipeline never runs twice at once"
    );

    let stopping = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(15),
            "did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success());
    // Grace is 1 s in the test config: stopped well before the 60 s hang.
    assert!(stopping.elapsed() < Duration::from_secs(10));
    let hub = t.open().await;
    assert_eq!(count(&hub, "SELECT count(*) FROM slow").await, 0);
}

#[tokio::test]
async fn pipelines_api_history_manual_trigger_and_metrics() {
    let t = TestHub::new();
    t.add_pipeline_with(
        "items",
        &["id"],
        "max_staleness = \"1h\"",
        crate::common::JSONL_INBOX,
    );
    t.write(
        "inbox/a.jsonl",
        "{\"id\": \"a\", \"n\": 1}\n{\"id\": \"b\", \"n\": 2}\n{\"id\": \"c\", \"n\": -1}\n",
    );
    let hub = t.open().await;
    let addr = serve(hub.clone()).await;
    let client = crate::common::admin_client();
    let base = format!("http://{addr}");

    let before: Value = crate::common::get_json(&client, format!("{base}/api/v1/pipelines")).await;
    let p = &before["pipelines"][0];
    assert_eq!(p["name"], json!("items"));
    assert_eq!(p["schedule"], json!("0 0 * * * *"));
    assert!(p["next_run"].is_string());
    assert_eq!(p["last_run"], Value::Null);
    assert_eq!(p["stale"], json!(true), "never ingested counts as stale");

    let triggered = client
        .post(format!("{base}/api/v1/pipelines/items/run"))
        .send()
        .await
        .unwrap();
    assert_eq!(triggered.status(), reqwest::StatusCode::OK);
    let run: Value = triggered.json().await.unwrap();
    assert_eq!(run["run"]["status"], json!("partial"));
    assert_eq!(run["run"]["trigger"], json!("manual"));

    let after: Value = crate::common::get_json(&client, format!("{base}/api/v1/pipelines")).await;
    let p = &after["pipelines"][0];
    assert_eq!(p["last_run"]["accepted"], json!(2));
    assert_eq!(p["records_last_run"], json!(2));
    assert_eq!(p["stale"], json!(false));
    assert!(p["freshness_seconds"].as_i64().unwrap() < 60);

    let runs: Value =
        crate::common::get_json(&client, format!("{base}/api/v1/pipelines/items/runs")).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    assert_eq!(runs["runs"][0]["rejected"], json!(1));

    let unknown = client
        .post(format!("{base}/api/v1/pipelines/nope/run"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), reqwest::StatusCode::NOT_FOUND);

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "iochub_runs_total{pipeline=\"items\",status=\"partial\"} 1",
        "iochub_records_accepted_total{pipeline=\"items\"} 2",
        "iochub_records_rejected_total{pipeline=\"items\"} 1",
        "iochub_run_duration_seconds_count{pipeline=\"items\"} 1",
        "iochub_dataset_freshness_seconds{dataset=\"items\"}",
        "iochub_dataset_stale{dataset=\"items\"} 0",
        "iochub_http_requests_total{route=\"/api/v1/pipelines/{name}/run\",method=\"POST\",status=\"200\"} 1",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn iochub_run_asks_the_running_daemon_with_a_token() {
    let t = TestHub::new();
    t.add_pipeline("items", &["id"], crate::common::JSONL_INBOX);
    t.write("inbox/a.jsonl", "{\"id\": \"a\", \"n\": 1}\n");
    let port = free_port();
    t.set_http_port(port);
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_iochub"))
        .arg("--config")
        .arg(t.config_path())
        .args(["serve"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = crate::common::admin_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the daemon did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The daemon ran `items` at start (never run before); wait for that run to finish.
    let runs_url = format!("http://127.0.0.1:{port}/api/v1/pipelines/items/runs");
    while crate::common::get_json(&client, runs_url.as_str()).await["runs"]
        .as_array()
        .is_none_or(|r| r.is_empty())
    {
        assert!(Instant::now() < deadline, "the start-up run did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = |token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_iochub"));
        command
            .arg("--config")
            .arg(t.config_path())
            .args(["run", "items"])
            .env("RUST_LOG", "error");
        match token {
            Some(token) => command.env("IOCHUB_TOKEN", token),
            None => command.env_remove("IOCHUB_TOKEN"),
        };
        command.output().unwrap()
    };
    let refused = run(None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("set IOCHUB_TOKEN"));
    let done = run(Some(crate::common::ADMIN));
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(String::from_utf8_lossy(&done.stderr).contains("run by the hub running at"));
    assert!(
        String::from_utf8_lossy(&done.stdout).contains("items: Succeeded"),
        "{}",
        String::from_utf8_lossy(&done.stdout)
    );
}

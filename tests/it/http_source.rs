//! The `http_json` connector against a local HTTP server that paginates, fails, lies and hangs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use iochub::ingest::RunStatus;
use serde_json::{Value, json};

use crate::common::{TestHub, count};

#[derive(Default)]
struct Counters {
    flaky: AtomicUsize,
    not_found: AtomicUsize,
}

type Params = Query<std::collections::HashMap<String, String>>;

fn number(p: &Params, name: &str) -> usize {
    p.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn items(from: usize, to: usize) -> Vec<Value> {
    (from..to)
        .map(|i| json!({"id": format!("r{i}"), "n": i}))
        .collect()
}

async fn source() -> SocketAddr {
    let counters = Arc::new(Counters::default());
    let app = Router::new()
        // 5 records, 2 per page: pages 1, 2, 3 then an empty page 4.
        .route("/page", get(|p: Params| async move {
            let page = number(&p, "page");
            let from = (page - 1) * 2;
            axum::Json(json!({"data": items(from.min(5), (from + 2).min(5))}))
        }))
        .route("/offset", get(|p: Params| async move {
            let (offset, limit) = (number(&p, "offset"), number(&p, "limit"));
            axum::Json(json!({"data": items(offset.min(5), (offset + limit).min(5))}))
        }))
        .route("/next", get(|p: Params| async move {
            let page = number(&p, "p").max(1);
            let next = if page < 3 { json!(format!("/next?p={}", page + 1)) } else { Value::Null };
            axum::Json(json!({"data": items((page - 1) * 2, page * 2), "links": {"next": next}}))
        }))
        .route("/cursor", get(|p: Params| async move {
            let at: usize = p.get("after").and_then(|v| v.parse().ok()).unwrap_or(0);
            let next = if at < 4 { json!((at + 2).to_string()) } else { json!("") };
            axum::Json(json!({"data": items(at, at + 2), "cursor": next}))
        }))
        .route("/flaky", get(|State(c): State<Arc<Counters>>| async move {
            if c.flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                return (StatusCode::INTERNAL_SERVER_ERROR, "database is restarting").into_response();
            }
            axum::Json(json!({"data": items(0, 3)})).into_response()
        }))
        .route("/missing", get(|State(c): State<Arc<Counters>>| async move {
            c.not_found.fetch_add(1, Ordering::SeqCst);
            StatusCode::NOT_FOUND
        }))
        .route("/counters", get(|State(c): State<Arc<Counters>>| async move {
            axum::Json(json!({"flaky": c.flaky.load(Ordering::SeqCst), "not_found": c.not_found.load(Ordering::SeqCst)}))
        }))
        .route("/garbage", get(|| async { "<html><body>Bảo trì hệ thống</body></html>" }))
        .route("/hang", get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "too late"
        }))
        .route("/secure", get(|headers: HeaderMap| async move {
            let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer s3cret");
            if ok {
                axum::Json(json!({"data": items(0, 1)})).into_response()
            } else {
                StatusCode::UNAUTHORIZED.into_response()
            }
        }))
        .with_state(counters);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn http_source(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "kind = \"http_json\"\nurl = \"http://{addr}{path}\"\nrecords_at = \"/data\"\ntimeout_seconds = 1\n{extra}\n\
         [source.retry]\nmax_attempts = 3\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\n"
    )
}

async fn counters(addr: SocketAddr) -> Value {
    reqwest::get(format!("http://{addr}/counters"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_pagination_style_reads_all_records() {
    let addr = source().await;
    let t = TestHub::new();
    t.add_pipeline(
        "by_page",
        &["id"],
        &http_source(
            addr,
            "/page",
            "[source.pagination]\ntype = \"page\"\nparam = \"page\"\n",
        ),
    );
    t.add_pipeline(
        "by_offset",
        &["id"],
        &http_source(addr, "/offset", "[source.pagination]\ntype = \"offset\"\nparam = \"offset\"\nlimit_param = \"limit\"\nlimit = 2\n"),
    );
    t.add_pipeline(
        "by_link",
        &["id"],
        &http_source(
            addr,
            "/next",
            "[source.pagination]\ntype = \"next_link\"\npointer = \"/links/next\"\n",
        ),
    );
    t.add_pipeline(
        "by_cursor",
        &["id"],
        &http_source(
            addr,
            "/cursor",
            "[source.pagination]\ntype = \"cursor\"\npointer = \"/cursor\"\nparam = \"after\"\n",
        ),
    );
    let hub = t.open().await;
    for (name, expected) in [
        ("by_page", 5),
        ("by_offset", 5),
        ("by_link", 6),
        ("by_cursor", 6),
    ] {
        let report = hub.run(name, "test").await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{name}: {report:?}");
        assert_eq!(report.accepted, expected, "{name}");
        assert_eq!(
            count(&hub, &format!("SELECT count(DISTINCT id) FROM {name}")).await,
            expected as i64
        );
    }
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let addr = source().await;
    let t = TestHub::new();
    t.add_pipeline("flaky", &["id"], &http_source(addr, "/flaky", ""));
    let hub = t.open().await;
    let report = hub.run("flaky", "test").await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(report.accepted, 3);
    assert_eq!(
        counters(addr).await["flaky"],
        json!(2),
        "one 500, one retry"
    );
}

#[tokio::test]
async fn client_error_is_not_retried_and_commits_nothing() {
    let addr = source().await;
    let t = TestHub::new();
    t.add_pipeline("missing", &["id"], &http_source(addr, "/missing", ""));
    let hub = t.open().await;
    let report = hub.run("missing", "test").await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.error_class.as_deref(), Some("permanent"));
    assert!(
        report.error.as_deref().unwrap().contains("404"),
        "{report:?}"
    );
    assert_eq!(
        counters(addr).await["not_found"],
        json!(1),
        "404 is not retried"
    );
    assert_eq!(count(&hub, "SELECT count(*) FROM missing").await, 0);
}

#[tokio::test]
async fn a_body_that_is_not_json_fails_the_run_clearly() {
    let addr = source().await;
    let t = TestHub::new();
    t.add_pipeline("garbage", &["id"], &http_source(addr, "/garbage", ""));
    let hub = t.open().await;
    let report = hub.run("garbage", "test").await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let error = report.error.unwrap();
    assert!(
        error.contains("not JSON") && error.contains("<html>"),
        "{error}"
    );
    assert_eq!(count(&hub, "SELECT count(*) FROM garbage").await, 0);
}

#[tokio::test]
async fn a_hanging_source_times_out_and_is_retried_then_fails() {
    let addr = source().await;
    let t = TestHub::new();
    // One attempt of the run: this is about the connector's own per-request retries.
    let once = "[run_retry]\nattempts = 1\n";
    t.add_pipeline("hang", &["id"], &(http_source(addr, "/hang", "") + once));
    let hub = t.open().await;
    let started = Instant::now();
    let report = hub.run("hang", "test").await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.error_class.as_deref(), Some("transient"));
    assert!(
        report.error.as_deref().unwrap().contains("timed out"),
        "{report:?}"
    );
    // Three attempts of one second each, plus short backoffs: far less than the 30 s hang.
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn bearer_token_comes_from_the_environment() {
    let addr = source().await;
    let t = TestHub::new();
    let auth = "[source.auth]\ntype = \"bearer\"\ntoken_env = \"IOCHUB_TEST_SOURCE_TOKEN\"\n";
    t.add_pipeline("secure", &["id"], &http_source(addr, "/secure", auth));
    let hub = t.open().await;
    // SAFETY: this is the only test that reads or writes this variable.
    unsafe { std::env::remove_var("IOCHUB_TEST_SOURCE_TOKEN") };
    let missing = hub.run("secure", "test").await.unwrap();
    assert!(
        missing
            .error
            .as_deref()
            .unwrap()
            .contains("IOCHUB_TEST_SOURCE_TOKEN"),
        "{missing:?}"
    );
    unsafe { std::env::set_var("IOCHUB_TEST_SOURCE_TOKEN", "s3cret") };
    let ok = hub.run("secure", "test").await.unwrap();
    assert_eq!(ok.accepted, 1, "{ok:?}");
}

type FeedState = (Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<Option<String>>>>);

#[tokio::test]
async fn a_change_feed_resumes_from_the_last_page_token() {
    // A feed of 5 changes, 2 per page; `after` is the position. The last page's token is kept
    // and the next run starts from it instead of the first page.
    let total = Arc::new(AtomicUsize::new(5));
    let asked = Arc::new(std::sync::Mutex::new(Vec::<Option<String>>::new()));
    let app = Router::new()
        .route(
            "/feed",
            get(
                |State((total, asked)): State<FeedState>, p: Params| async move {
                    asked.lock().unwrap().push(p.get("after").cloned());
                    let at: usize = p.get("after").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let end = (at + 2).min(total.load(Ordering::SeqCst));
                    axum::Json(json!({"data": items(at, end), "next": end.to_string()}))
                },
            ),
        )
        .with_state((total.clone(), asked.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let t = TestHub::new();
    let pagination = "[source.pagination]\ntype = \"cursor\"\npointer = \"/next\"\nparam = \"after\"\nresume = true\n";
    t.add_pipeline("feed", &[], &http_source(addr, "/feed", pagination));
    let hub = t.open().await;
    let first = hub.run("feed", "test").await.unwrap();
    assert_eq!(first.accepted, 5);
    total.store(7, Ordering::SeqCst);
    asked.lock().unwrap().clear();
    let second = hub.run("feed", "test").await.unwrap();
    assert_eq!(
        second.accepted, 2,
        "only the changes after the saved token: {second:?}"
    );
    assert_eq!(
        asked.lock().unwrap().first().cloned().flatten().as_deref(),
        Some("5")
    );
    assert_eq!(count(&hub, "SELECT count(DISTINCT id) FROM feed").await, 7);
}

//! The `open311` connector against a local GeoReport v2 server that filters on a date window
//! and returns at most a fixed number of requests per call.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Duration, FixedOffset};
use iochub_connectors::ConnectorError;
use serde_json::{Value, json};

use common::{connector, read, serve};

type Params = Query<Vec<(String, String)>>;

struct Server {
    addr: Mutex<Option<SocketAddr>>,
    reports: Mutex<Vec<Value>>,
    /// Every request's query, in order.
    queries: Mutex<Vec<BTreeMap<String, String>>>,
    /// How many items one request returns at most.
    cap: AtomicUsize,
}

fn instant(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap()
}

fn samples() -> Vec<Value> {
    std::fs::read_to_string(common::sample("feedback.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `(id, updated_datetime)` of reports, sorted: what must come back, each exactly once.
fn keys<'a>(reports: impl IntoIterator<Item = &'a Value>) -> Vec<(String, String)> {
    let mut keys: Vec<_> = reports
        .into_iter()
        .map(|r| {
            (
                r["service_request_id"].as_str().unwrap().to_string(),
                r["updated_datetime"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    keys.sort();
    keys
}

fn georeport_error(code: u16, description: &str) -> String {
    json!([{"code": code, "description": description}]).to_string()
}

impl Server {
    fn endpoint(&self, prefix: &str) -> String {
        format!("http://{}/{prefix}/v2", self.addr.lock().unwrap().unwrap())
    }

    fn windows(&self, start: &str, end: &str) -> Vec<(String, String)> {
        self.queries
            .lock()
            .unwrap()
            .iter()
            .map(|q| (q[start].clone(), q[end].clone()))
            .collect()
    }

    /// Reports updated in `[start, end)`, the most recent first, cut at the cap, as the
    /// citizen-feedback app answers (it filters on the update time).
    fn requests(
        &self,
        p: Vec<(String, String)>,
        start: &str,
        end: &str,
    ) -> axum::response::Response {
        let q: BTreeMap<String, String> = p.into_iter().collect();
        self.queries.lock().unwrap().push(q.clone());
        match q.get("jurisdiction_id").map(String::as_str) {
            Some("unknown.jurisdiction") => {
                return (
                    StatusCode::BAD_REQUEST,
                    georeport_error(400, "jurisdiction_id provided was not found"),
                )
                    .into_response();
            }
            Some("quiet.errors") => {
                return (
                    StatusCode::OK,
                    georeport_error(403, "API key required for this jurisdiction"),
                )
                    .into_response();
            }
            _ => {}
        }
        if q.get("service_code").map(String::as_str) == Some("BROKEN") {
            return (
                StatusCode::OK,
                r#"[{"service_request_id": "BPT-1", "description": "cut"#,
            )
                .into_response();
        }
        let (Some(from), Some(to)) = (q.get(start), q.get(end)) else {
            return (
                StatusCode::BAD_REQUEST,
                georeport_error(400, "start and end are required"),
            )
                .into_response();
        };
        let (from, to) = (instant(from), instant(to));
        let mut hits: Vec<Value> = self
            .reports
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                let t = instant(r["updated_datetime"].as_str().unwrap());
                from <= t && t < to
            })
            .cloned()
            .collect();
        hits.sort_by_key(|r| std::cmp::Reverse(instant(r["updated_datetime"].as_str().unwrap())));
        hits.truncate(self.cap.load(Ordering::SeqCst));
        axum::Json(hits).into_response()
    }
}

async fn start(cap: usize) -> Arc<Server> {
    let server = Arc::new(Server {
        addr: Mutex::new(None),
        reports: Mutex::new(samples()),
        queries: Mutex::new(Vec::new()),
        cap: AtomicUsize::new(cap),
    });
    let app = Router::new()
        // GeoReport's own parameter names.
        .route(
            "/georeport/v2/requests.json",
            get(
                |State(s): State<Arc<Server>>, Query(p): Params| async move {
                    s.requests(p, "start_date", "end_date")
                },
            ),
        )
        // The citizen-feedback app's names for the same filter on the update time.
        .route(
            "/feedback/v2/requests.json",
            get(
                |State(s): State<Arc<Server>>, Query(p): Params| async move {
                    s.requests(p, "updated_after", "updated_before")
                },
            ),
        )
        .with_state(server.clone());
    *server.addr.lock().unwrap() = Some(serve(app).await);
    server
}

fn settings(server: &Server, extra: Value) -> Value {
    let mut s = json!({
        "endpoint": server.endpoint("georeport"),
        "jurisdiction_id": "dongphu.binhphuoc",
        "initial_start": "2025-03-20",
        "until": "2025-06-30",
        "window": "7d",
        "retry": {"max_attempts": 2, "initial_backoff_ms": 10, "max_backoff_ms": 20}
    });
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

#[tokio::test]
async fn windows_walk_from_the_initial_start_to_the_end() {
    let server = start(1000).await;
    let c = connector("open311", settings(&server, json!({})));
    let out = read(c.as_ref(), None, None).await.unwrap();

    // 7-day windows from 20/3 midnight (+07:00), the last one cut at `until`.
    let mut expected = Vec::new();
    let (mut at, end) = (
        instant("2025-03-20T00:00:00+07:00"),
        instant("2025-06-30T00:00:00+07:00"),
    );
    while at < end {
        let next = (at + Duration::days(7)).min(end);
        expected.push((at.to_rfc3339(), next.to_rfc3339()));
        at = next;
    }
    assert_eq!(expected.len(), 15);
    assert_eq!(server.windows("start_date", "end_date"), expected);
    assert!(
        server
            .queries
            .lock()
            .unwrap()
            .iter()
            .all(|q| q["jurisdiction_id"] == "dongphu.binhphuoc")
    );

    // One batch per window; every report once, as the server has it.
    assert_eq!(out.batches.len(), 15);
    assert!(
        out.batches[0]
            .source
            .contains("start_date=2025-03-20T00%3A00%3A00%2B07%3A00"),
        "{}",
        out.batches[0].source
    );
    assert_eq!(keys(out.records()), keys(&samples()));
    let first = out.records()[0];
    assert!(
        first.get("x_submitter").is_some(),
        "records are passed on as they are"
    );
    assert_eq!(
        out.checkpoint,
        Some(json!({"updated_datetime": "2025-06-19T19:59:00+07:00"}))
    );
}

#[tokio::test]
async fn a_window_at_the_cap_is_split_without_losing_records() {
    let server = start(10).await;
    let c = connector(
        "open311",
        settings(
            &server,
            json!({"window": "30d", "max_results_per_request": 10}),
        ),
    );
    let out = read(c.as_ref(), None, None).await.unwrap();

    assert_eq!(
        keys(out.records()),
        keys(&samples()),
        "every report exactly once"
    );
    assert!(
        out.batches.iter().all(|b| b.records.len() < 10),
        "a full answer is never kept"
    );
    let windows = server.windows("start_date", "end_date");
    // 4 windows of 30 days cover 20/3–30/6; splitting asked many more.
    assert!(windows.len() > 8, "{windows:?}");
    let halves = windows
        .iter()
        .filter(|(a, b)| instant(b) - instant(a) < Duration::days(15))
        .count();
    assert!(halves > 0, "{windows:?}");
    // The windows kept (one batch each) tile the range in order, without gaps.
    let kept: Vec<(DateTime<FixedOffset>, DateTime<FixedOffset>)> = out
        .batches
        .iter()
        .map(|b| {
            let url = url::Url::parse(&b.source).unwrap();
            let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
            (instant(&q["start_date"]), instant(&q["end_date"]))
        })
        .collect();
    assert_eq!(kept[0].0, instant("2025-03-20T00:00:00+07:00"));
    assert_eq!(kept.last().unwrap().1, instant("2025-06-30T00:00:00+07:00"));
    assert!(kept.windows(2).all(|w| w[0].1 == w[1].0), "{kept:?}");

    // A cap that even the smallest window reaches fails the run instead of cutting records.
    server.cap.store(1, Ordering::SeqCst);
    let c = connector(
        "open311",
        settings(
            &server,
            json!({"window": "30d", "min_window": "1d", "max_results_per_request": 1}),
        ),
    );
    let e = read(c.as_ref(), None, None).await.unwrap_err();
    assert!(
        matches!(e, ConnectorError::WindowFull { limit: 1, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("records may be cut off"), "{e}");
}

#[tokio::test]
async fn the_next_run_asks_from_the_checkpoint() {
    let server = start(1000).await;
    let feedback_app = |extra: Value| {
        let mut s = settings(
            &server,
            json!({
                "endpoint": server.endpoint("feedback"),
                "start_param": "updated_after",
                "end_param": "updated_before",
                "window": "30d"
            }),
        );
        s.as_object_mut().unwrap().remove("until");
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        s
    };
    let c = connector("open311", feedback_app(json!({})));
    let first = read(c.as_ref(), None, None).await.unwrap();
    assert_eq!(first.records().len(), 63);
    // Without `until` the last window ends now.
    let windows = server.windows("updated_after", "updated_before");
    let last_end = instant(&windows.last().unwrap().1);
    assert!(
        (chrono::Utc::now().fixed_offset() - last_end)
            .num_seconds()
            .abs()
            < 60,
        "{last_end}"
    );
    assert!(
        server
            .queries
            .lock()
            .unwrap()
            .iter()
            .all(|q| !q.contains_key("start_date"))
    );
    let checkpoint = first.checkpoint.clone().unwrap();
    assert_eq!(
        checkpoint,
        json!({"updated_datetime": "2025-06-19T19:59:00+07:00"})
    );
    let latest = samples()
        .into_iter()
        .find(|r| r["updated_datetime"] == "2025-06-19T19:59:00+07:00")
        .unwrap();

    // Between runs: one report handled, one new.
    {
        let mut reports = server.reports.lock().unwrap();
        let r = reports
            .iter_mut()
            .find(|r| r["service_request_id"] == "BPT-2025-001003")
            .unwrap();
        r["status"] = json!("closed");
        r["updated_datetime"] = json!("2025-07-02T08:00:00+07:00");
        let mut new = r.clone();
        new["service_request_id"] = json!("BPT-2025-002000");
        new["status"] = json!("open");
        new["updated_datetime"] = json!("2025-07-03T09:30:00+07:00");
        reports.push(new);
    }
    server.queries.lock().unwrap().clear();
    let second = read(c.as_ref(), Some(checkpoint), None).await.unwrap();
    let windows = server.windows("updated_after", "updated_before");
    assert_eq!(windows[0].0, "2025-06-19T19:59:00+07:00", "{windows:?}");
    // The two changes, and the report at the checkpoint instant itself (the start is
    // inclusive at this server): a keyed dataset stores it once.
    let mut ids = second.strings("service_request_id");
    ids.sort();
    let mut expected = vec![
        latest["service_request_id"].as_str().unwrap().to_string(),
        "BPT-2025-001003".to_string(),
        "BPT-2025-002000".to_string(),
    ];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(
        second.checkpoint,
        Some(json!({"updated_datetime": "2025-07-03T09:30:00+07:00"}))
    );

    // An overlap starts that much earlier.
    server.queries.lock().unwrap().clear();
    let c = connector("open311", feedback_app(json!({"overlap": "1h"})));
    let third = read(c.as_ref(), second.checkpoint.clone(), None)
        .await
        .unwrap();
    assert_eq!(
        server.windows("updated_after", "updated_before")[0].0,
        "2025-07-03T08:30:00+07:00"
    );
    assert_eq!(third.strings("service_request_id"), ["BPT-2025-002000"]);
    assert_eq!(third.checkpoint, second.checkpoint);

    // No checkpoint: the pipeline's cursor (an instant) is the start.
    server.queries.lock().unwrap().clear();
    let c = connector("open311", feedback_app(json!({})));
    let from_cursor = read(c.as_ref(), None, Some(json!("2025-07-02T01:00:00Z")))
        .await
        .unwrap();
    assert_eq!(
        server.windows("updated_after", "updated_before")[0].0,
        "2025-07-02T08:00:00+07:00"
    );
    assert_eq!(from_cursor.records().len(), 2);
}

#[tokio::test]
async fn georeport_errors_and_bad_json_are_clear_errors() {
    let server = start(1000).await;

    let c = connector(
        "open311",
        settings(&server, json!({"jurisdiction_id": "unknown.jurisdiction"})),
    );
    let e = read(c.as_ref(), None, None).await.unwrap_err();
    assert!(
        matches!(e, ConnectorError::Status { status: 400, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("GeoReport error 400: jurisdiction_id provided was not found"),
        "{e}"
    );

    // The error form with HTTP 200 is still an error, not 1 odd record.
    let c = connector(
        "open311",
        settings(&server, json!({"jurisdiction_id": "quiet.errors"})),
    );
    let e = read(c.as_ref(), None, None).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Reported { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("GeoReport error 403: API key required"),
        "{e}"
    );

    let c = connector(
        "open311",
        settings(&server, json!({"service_code": "BROKEN"})),
    );
    let e = read(c.as_ref(), None, None).await.unwrap_err();
    assert!(matches!(e, ConnectorError::InvalidResponse { .. }), "{e:?}");
    let message = e.to_string();
    assert!(
        message.contains("body is not JSON") && message.contains("BPT-1"),
        "{message}"
    );
    assert!(!e.is_transient());
}

//! The `fhir` connector against a local FHIR server that pages with `Bundle.link next`,
//! filters on `_lastUpdated` (`gt`/`ge`/`lt`/`le`) and sorts by `_sort=_lastUpdated`.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, FixedOffset};
use iochub_connectors::ConnectorError;
use serde_json::{Value, json};

use common::{connector, read, serve};

const EXT: &str = "https://ioc.example.invalid/fhir/StructureDefinition";

type Params = Query<Vec<(String, String)>>;

#[derive(Default)]
struct Server {
    addr: Mutex<Option<SocketAddr>>,
    /// Locations and the Organization, each with a `meta.lastUpdated`, in storage order.
    resources: Mutex<Vec<Value>>,
    /// The query of every search request, in order.
    queries: Mutex<Vec<Vec<(String, String)>>>,
    accept: Mutex<Vec<String>>,
    /// 500 answers still to give on `/flaky`.
    failures_left: AtomicUsize,
    flaky_requests: AtomicUsize,
}

fn instant(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap()
}

fn last_updated(resource: &Value) -> DateTime<FixedOffset> {
    instant(resource["meta"]["lastUpdated"].as_str().unwrap())
}

impl Server {
    /// The sample Bundle's resources. `meta.lastUpdated` is spread over minutes in an order
    /// that is not the file's, so that `_sort` changes the order of the answer. Location
    /// `loc-ttyt` gets a Ministry of Health identifier and a phone, to exercise the filters.
    fn from_samples() -> Server {
        let text = std::fs::read_to_string(common::sample("health_facilities.json")).unwrap();
        let bundle: Value = serde_json::from_str(&text).unwrap();
        let mut resources = Vec::new();
        for (i, entry) in bundle["entry"].as_array().unwrap().iter().enumerate() {
            let mut r = entry["resource"].clone();
            let minute = (i * 7) % 19;
            r["meta"] = json!({"lastUpdated": format!("2025-03-01T08:{minute:02}:00+07:00")});
            if r["id"] == "loc-ttyt" {
                r["identifier"] = json!([
                    {"system": "https://ioc.example.invalid/fhir/sid/ma-co-so-kcb", "value": "70-DP-001"},
                    {"system": "https://moh.gov.vn/facility", "value": "70123"}
                ]);
                r["telecom"] = json!([
                    {"system": "email", "value": "ttyt@example.invalid"},
                    {"system": "phone", "value": "0271 3800 000"}
                ]);
            }
            resources.push(r);
        }
        Server {
            resources: Mutex::new(resources),
            ..Server::default()
        }
    }

    fn base(&self, prefix: &str) -> String {
        format!("http://{}/{prefix}", self.addr.lock().unwrap().unwrap())
    }

    fn last_query(&self) -> Vec<(String, String)> {
        self.queries.lock().unwrap().last().cloned().unwrap()
    }

    fn search(&self, prefix: &str, params: &[(String, String)]) -> Value {
        self.queries.lock().unwrap().push(params.to_vec());
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let count: usize = param("_count").map_or(10, |v| v.parse().unwrap());
        let offset: usize = param("_offset").map_or(0, |v| v.parse().unwrap());
        let resources = self.resources.lock().unwrap();
        let mut matches: Vec<&Value> = resources
            .iter()
            .filter(|r| r["resourceType"] == "Location")
            .filter(|r| {
                params
                    .iter()
                    .filter(|(k, _)| k == "_lastUpdated")
                    .all(|(_, v)| {
                        let (prefix, value) = v.split_at(2);
                        let (t, bound) = (last_updated(r), instant(value));
                        match prefix {
                            "gt" => t > bound,
                            "ge" => t >= bound,
                            "lt" => t < bound,
                            "le" => t <= bound,
                            _ => panic!("unsupported _lastUpdated {v}"),
                        }
                    })
            })
            .collect();
        match param("_sort") {
            Some("_lastUpdated") => matches.sort_by_key(|r| last_updated(r)),
            Some("-_lastUpdated") => matches.sort_by_key(|r| std::cmp::Reverse(last_updated(r))),
            None => {}
            Some(other) => panic!("unsupported _sort {other}"),
        }
        let base = self.base(prefix);
        let mut entries: Vec<Value> = matches
            .iter()
            .skip(offset)
            .take(count)
            .map(|r| {
                json!({
                    "fullUrl": format!("{base}/Location/{}", r["id"].as_str().unwrap()),
                    "resource": r,
                    "search": {"mode": "match"}
                })
            })
            .collect();
        // Every page includes the Organization, and the centre as the Location every other
        // one is `partOf`: context, not matches.
        for (_, include) in params.iter().filter(|(k, _)| k == "_include") {
            let (kind, id) = match include.as_str() {
                "Location:organization" => ("Organization", "ttyt-dongphu"),
                "Location:partof" => ("Location", "loc-ttyt"),
                other => panic!("unsupported _include {other}"),
            };
            let r = resources.iter().find(|r| r["id"] == id).unwrap();
            entries.push(json!({
                "fullUrl": format!("{base}/{kind}/{id}"),
                "resource": r,
                "search": {"mode": "include"}
            }));
        }
        let mut link = vec![json!({"relation": "self", "url": format!("{base}/Location")})];
        if offset + count < matches.len() {
            let mut next = url::Url::parse(&format!("{base}/Location")).unwrap();
            {
                let mut pairs = next.query_pairs_mut();
                for (k, v) in params.iter().filter(|(k, _)| k != "_offset") {
                    pairs.append_pair(k, v);
                }
                pairs.append_pair("_offset", &(offset + count).to_string());
            }
            link.push(json!({"relation": "next", "url": next.as_str()}));
        }
        json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": matches.len(),
            "link": link,
            "entry": entries
        })
    }
}

fn bundle_response(value: Value) -> axum::response::Response {
    (
        [("content-type", "application/fhir+json")],
        value.to_string(),
    )
        .into_response()
}

async fn start(server: Arc<Server>) -> Arc<Server> {
    let app = Router::new()
        .route(
            "/fhir/Location",
            get(|State(s): State<Arc<Server>>, headers: HeaderMap, Query(p): Params| async move {
                let accept = headers.get("accept").and_then(|v| v.to_str().ok()).unwrap_or("");
                s.accept.lock().unwrap().push(accept.to_string());
                bundle_response(s.search("fhir", &p))
            }),
        )
        .route(
            "/flaky/Location",
            get(|State(s): State<Arc<Server>>, Query(p): Params| async move {
                s.flaky_requests.fetch_add(1, Ordering::SeqCst);
                let fail = s
                    .failures_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if fail {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "database busy").into_response();
                }
                bundle_response(s.search("flaky", &p))
            }),
        )
        .route(
            "/fhir/Observation",
            get(|| async {
                let outcome = json!({
                    "resourceType": "OperationOutcome",
                    "issue": [{
                        "severity": "error",
                        "code": "processing",
                        "diagnostics": "Unknown search parameter \"foo\" for resource type \"Observation\""
                    }]
                });
                (StatusCode::BAD_REQUEST, [("content-type", "application/fhir+json")], outcome.to_string())
            }),
        )
        .route(
            "/fhir/Encounter",
            get(|| async {
                bundle_response(json!({
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "entry": [{
                        "resource": {
                            "resourceType": "OperationOutcome",
                            "issue": [{"severity": "fatal", "code": "exception",
                                       "diagnostics": "search index unavailable"}]
                        },
                        "search": {"mode": "outcome"}
                    }]
                }))
            }),
        )
        .route(
            "/fhir/Device",
            get(|| async {
                bundle_response(json!({
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "link": [{"relation": "next", "url": "http://fhir.other.invalid/Device?page=2"}],
                    "entry": []
                }))
            }),
        )
        .with_state(server.clone());
    let addr = serve(app).await;
    *server.addr.lock().unwrap() = Some(addr);
    server
}

fn fields() -> Value {
    json!({
        "id": "id",
        "full_url": "%entry.fullUrl",
        "name": "name",
        "status": "status",
        "district": "address.district",
        "commune_code": format!("extension[url={EXT}/commune-code].valueCode"),
        "beds": format!("extension[url={EXT}/bed-count].valueInteger"),
        "type_code": "type[0].coding[0].code",
        "latitude": "position.latitude",
        "longitude": "position.longitude",
        "moh_code": "identifier[system=https://moh.gov.vn/facility].value",
        "phone": "telecom[system=phone].value",
        "fax": "telecom[system=fax].value",
        "organization": "managingOrganization.reference",
        "last_updated": "meta.lastUpdated",
        "resource": "$"
    })
}

fn settings(server: &Server, prefix: &str, extra: Value) -> Value {
    let mut s = json!({
        "base_url": server.base(prefix),
        "resource_type": "Location",
        "count": 4,
        "query": {"_include": ["Location:organization", "Location:partof"]},
        "fields": fields(),
        "retry": {"max_attempts": 3, "initial_backoff_ms": 10, "max_backoff_ms": 20}
    });
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

#[tokio::test]
async fn every_page_is_followed_and_fields_are_mapped() {
    let server = start(Arc::new(Server::from_samples())).await;
    let c = connector("fhir", settings(&server, "fhir", json!({})));
    let out = read(c.as_ref(), None, None).await.unwrap();

    // 18 Locations, 4 per page: 5 pages, each one batch from its own URL.
    assert_eq!(out.batches.len(), 5);
    assert_eq!(out.records().len(), 18);
    assert_eq!(server.queries.lock().unwrap().len(), 5);
    assert!(
        out.batches[0].source.ends_with(
            "/fhir/Location?_include=Location%3Aorganization&_include=Location%3Apartof&_count=4&_sort=_lastUpdated"
        ),
        "{}",
        out.batches[0].source
    );
    assert!(
        out.batches[4].source.contains("_offset=16"),
        "{}",
        out.batches[4].source
    );
    assert_eq!(out.batches[1].locations[0], "page 2 /entry/0");
    assert!(
        server
            .accept
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "application/fhir+json")
    );

    // The first request asked for sorting and no _lastUpdated (there is no checkpoint yet).
    let first = server.queries.lock().unwrap()[0].clone();
    assert!(first.contains(&("_sort".into(), "_lastUpdated".into())));
    assert!(first.contains(&("_count".into(), "4".into())));
    assert!(!first.iter().any(|(k, _)| k == "_lastUpdated"));

    // The _include'd Organization and centre are on every page but are not records: the
    // centre comes once, as the match it also is.
    assert_eq!(
        out.strings("id")
            .iter()
            .filter(|id| *id == "loc-ttyt")
            .count(),
        1
    );
    assert!(
        out.strings("id").iter().all(|id| id.starts_with("loc-")),
        "{:?}",
        out.strings("id")
    );
    // Sorted by lastUpdated, as asked.
    let times: Vec<_> = out
        .strings("last_updated")
        .iter()
        .map(|t| instant(t))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    let ttyt = out
        .records()
        .into_iter()
        .find(|r| r["id"] == "loc-ttyt")
        .unwrap()
        .clone();
    assert_eq!(
        ttyt["full_url"],
        json!(format!("{}/Location/loc-ttyt", server.base("fhir")))
    );
    assert_eq!(ttyt["district"], "Huyện Đồng Phú");
    assert_eq!(ttyt["commune_code"], "25363");
    assert_eq!(ttyt["beds"], 150);
    assert_eq!(ttyt["type_code"], "HOSP");
    assert_eq!(ttyt["latitude"], 11.459507);
    assert_eq!(ttyt["moh_code"], "70123");
    assert_eq!(ttyt["phone"], "0271 3800 000");
    assert_eq!(ttyt["fax"], Value::Null);
    assert_eq!(ttyt["organization"], "Organization/ttyt-dongphu");
    assert_eq!(ttyt["resource"]["resourceType"], "Location");
    assert_eq!(ttyt["resource"]["id"], "loc-ttyt");
    assert_eq!(ttyt["resource"]["extension"].as_array().unwrap().len(), 3);
    // Every column is present in every record; a missing path is null.
    let columns = fields().as_object().unwrap().len();
    assert!(
        out.records()
            .iter()
            .all(|r| r.as_object().unwrap().len() == columns)
    );
    let no_position = out
        .records()
        .into_iter()
        .find(|r| r["id"] == "loc-pk-tunhan-02")
        .unwrap();
    assert_eq!(no_position["latitude"], Value::Null);
    assert_eq!(no_position["longitude"], Value::Null);
    assert_eq!(no_position["moh_code"], Value::Null);
    assert_eq!(no_position["commune_code"], "25393");

    // The checkpoint is the largest lastUpdated read, in the server's spelling.
    let max = server
        .resources
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r["resourceType"] == "Location")
        .map(last_updated)
        .max()
        .unwrap();
    assert_eq!(
        out.checkpoint,
        Some(json!({"last_updated": max.to_rfc3339()}))
    );

    // max_pages stops a server that pages on and on.
    let c = connector("fhir", settings(&server, "fhir", json!({"max_pages": 2})));
    let e = read(c.as_ref(), None, None).await.unwrap_err();
    assert!(
        matches!(e, ConnectorError::TooManyPages { pages: 2, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn the_next_run_reads_only_what_changed() {
    let server = start(Arc::new(Server::from_samples())).await;
    let c = connector("fhir", settings(&server, "fhir", json!({})));
    let first = read(c.as_ref(), None, None).await.unwrap();
    assert_eq!(first.records().len(), 18);
    let checkpoint = first.checkpoint.clone().unwrap();
    let since = checkpoint["last_updated"].as_str().unwrap().to_string();

    // Between runs: one facility renamed, one opened.
    {
        let mut resources = server.resources.lock().unwrap();
        let r = resources
            .iter_mut()
            .find(|r| r["id"] == "loc-pkdkkv-dongtam")
            .unwrap();
        r["name"] = json!("Phòng khám đa khoa khu vực Đồng Tâm (mở rộng)");
        r["meta"]["lastUpdated"] = json!("2025-04-02T09:00:00+07:00");
        let mut opened = r.clone();
        opened["id"] = json!("loc-tyt-moi");
        opened["name"] = json!("Trạm y tế mới");
        opened["meta"]["lastUpdated"] = json!("2025-04-02T10:00:00+07:00");
        resources.push(opened);
    }

    let second = read(c.as_ref(), Some(checkpoint.clone()), None)
        .await
        .unwrap();
    assert_eq!(second.strings("id"), ["loc-pkdkkv-dongtam", "loc-tyt-moi"]);
    assert_eq!(
        second.records()[0]["name"],
        "Phòng khám đa khoa khu vực Đồng Tâm (mở rộng)"
    );
    let q = server.last_query();
    assert!(
        q.contains(&("_lastUpdated".into(), format!("gt{since}"))),
        "{q:?}"
    );
    assert_eq!(
        second.checkpoint,
        Some(json!({"last_updated": "2025-04-02T10:00:00+07:00"}))
    );

    // Nothing new: no records, and the checkpoint stays.
    let third = read(c.as_ref(), second.checkpoint.clone(), None)
        .await
        .unwrap();
    assert!(third.records().is_empty());
    assert_eq!(third.checkpoint, second.checkpoint);

    // With an overlap the window reaches back, with `ge`.
    let c = connector("fhir", settings(&server, "fhir", json!({"overlap": "1h"})));
    let overlapped = read(c.as_ref(), second.checkpoint.clone(), None)
        .await
        .unwrap();
    let q = server.last_query();
    assert!(
        q.contains(&("_lastUpdated".into(), "ge2025-04-02T09:00:00+07:00".into())),
        "{q:?}"
    );
    assert_eq!(
        overlapped.strings("id"),
        ["loc-pkdkkv-dongtam", "loc-tyt-moi"]
    );
    assert_eq!(overlapped.checkpoint, second.checkpoint);

    // Without a checkpoint the pipeline's cursor (an instant) is the starting point.
    let c = connector("fhir", settings(&server, "fhir", json!({})));
    let from_cursor = read(c.as_ref(), None, Some(json!("2025-04-02T02:30:00Z")))
        .await
        .unwrap();
    let q = server.last_query();
    assert!(
        q.contains(&("_lastUpdated".into(), "gt2025-04-02T02:30:00Z".into())),
        "{q:?}"
    );
    assert_eq!(from_cursor.strings("id"), ["loc-tyt-moi"]);

    // incremental = false: every run reads everything, and there is no checkpoint.
    let c = connector(
        "fhir",
        settings(
            &server,
            "fhir",
            json!({"incremental": false, "sort": false}),
        ),
    );
    let full = read(c.as_ref(), Some(checkpoint), None).await.unwrap();
    assert_eq!(full.records().len(), 19);
    assert!(full.checkpoint.is_none());
    let q = server.last_query();
    assert!(
        !q.iter().any(|(k, _)| k == "_lastUpdated" || k == "_sort"),
        "{q:?}"
    );
}

#[tokio::test]
async fn an_operation_outcome_error_fails_the_run_with_its_diagnostics() {
    let server = start(Arc::new(Server::from_samples())).await;

    let c = connector(
        "fhir",
        settings(&server, "fhir", json!({"resource_type": "Observation"})),
    );
    let e = read(c.as_ref(), None, None).await.unwrap_err();
    assert!(
        matches!(e, ConnectorError::Status { status: 400, .. }),
        "{e:?}"
    );
    assert!(!e.is_transient());
    let message = e.to_string();
    assert!(
        message.contains(
            "error (processing): Unknown search parameter \"foo\" for resource type \"Observation\""
        ),
        "{message}"
    );

    // An OperationOutcome inside a 200 Bundle, fatal: not data, a failed run.
    let c = connector(
        "fhir",
        settings(&server, "fhir", json!({"resource_type": "Encounter"})),
    );
    let e = read(c.as_ref(), None, None).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Reported { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("fatal (exception): search index unavailable"),
        "{e}"
    );
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused() {
    let server = start(Arc::new(Server::from_samples())).await;
    let c = connector(
        "fhir",
        settings(&server, "fhir", json!({"resource_type": "Device"})),
    );
    let e = read(c.as_ref(), None, None).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("next link http://fhir.other.invalid/Device?page=2 leaves"),
        "{e}"
    );
}

#[tokio::test]
async fn a_server_error_is_retried() {
    let server = start(Arc::new(Server::from_samples())).await;
    server.failures_left.store(1, Ordering::SeqCst);
    let c = connector("fhir", settings(&server, "flaky", json!({})));
    let out = read(c.as_ref(), None, None).await.unwrap();
    assert_eq!(out.records().len(), 18);
    // Five pages and the one failed attempt.
    assert_eq!(server.flaky_requests.load(Ordering::SeqCst), 6);

    // The same failure with one attempt allowed fails the run, as a transient error.
    server.failures_left.store(1, Ordering::SeqCst);
    let c = connector(
        "fhir",
        settings(&server, "flaky", json!({"retry": {"max_attempts": 1}})),
    );
    let e = read(c.as_ref(), None, None).await.unwrap_err();
    assert!(
        matches!(e, ConnectorError::Status { status: 500, .. }),
        "{e:?}"
    );
    assert!(e.is_transient());
}

#[test]
fn settings_problems_are_reported_before_any_request() {
    let config = iochub_connectors::SourceConfig::deserialize(
        "fhir",
        json!({
            "base_url": "fhir.example.invalid",
            "resource_type": "location",
            "count": 0,
            "query": {"_lastUpdated": "gt2025", "_count": "5"},
            "fields": {"a": "telecom[system=phone", "b": "$.id"},
            "overlap": "1 hour"
        }),
    )
    .unwrap()
    .unwrap();
    let problems = config.validate().join("\n");
    for expected in [
        "base_url",
        "resource_type \"location\"",
        "count must be at least 1",
        "query._lastUpdated is set by the connector",
        "query._count is set by the connector",
        "fields.a: path \"telecom[system=phone\": a '[' is not closed",
        "fields.b",
        "overlap",
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} missing in:\n{problems}"
        );
    }
}

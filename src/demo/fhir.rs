//! A small FHIR R4 search server over the sample Bundle: enough of the search API for the
//! `fhir` connector to be shown against it (paging by `Bundle.link` next, `_lastUpdated`
//! with the `gt`/`ge`/`lt`/`le` prefixes, `_count`, `_sort=_lastUpdated`).

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, FixedOffset};
use serde_json::{Value, json};

use super::{DemoError, read_sample};

/// The sample's resources, each given a `meta.lastUpdated` (the sample has none; a real
/// server always sets it) so incremental search has something to work on.
pub struct FhirData {
    resources: Vec<Value>,
}

impl FhirData {
    pub fn load(path: &Path) -> Result<Self, DemoError> {
        let text = read_sample(path)?;
        let bundle: Value = serde_json::from_str(&text).map_err(|e| DemoError::Sample {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let stamp = bundle["timestamp"]
            .as_str()
            .unwrap_or("2025-01-01T00:00:00+07:00")
            .to_string();
        let resources = bundle["entry"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| e.get("resource").cloned())
                    .map(|mut r| {
                        if r.get("meta").is_none() {
                            r["meta"] = json!({ "lastUpdated": stamp });
                        }
                        r
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(FhirData { resources })
    }
}

pub fn router(data: FhirData) -> Router {
    Router::new()
        .route("/{resource_type}", get(search))
        .with_state(Arc::new(data))
}

fn last_updated(resource: &Value) -> Option<DateTime<FixedOffset>> {
    resource["meta"]["lastUpdated"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
}

fn outcome(status: StatusCode, diagnostics: &str) -> Response {
    let body = json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": "invalid", "diagnostics": diagnostics }],
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

/// `_lastUpdated=gt2025-01-01T00:00:00Z` → a test on a resource's time.
fn date_filter(text: &str) -> Result<impl Fn(DateTime<FixedOffset>) -> bool, String> {
    let (prefix, value) = match text.get(..2) {
        Some(p @ ("gt" | "ge" | "lt" | "le" | "eq")) => (p, &text[2..]),
        _ => ("eq", text),
    };
    let at = DateTime::parse_from_rfc3339(value)
        .map_err(|_| format!("_lastUpdated {value:?} is not an instant with a time zone"))?;
    let prefix = prefix.to_string();
    Ok(move |t: DateTime<FixedOffset>| match prefix.as_str() {
        "gt" => t > at,
        "ge" => t >= at,
        "lt" => t < at,
        "le" => t <= at,
        _ => t == at,
    })
}

async fn search(
    State(data): State<Arc<FhirData>>,
    UrlPath(resource_type): UrlPath<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let mut filters = Vec::new();
    let mut count = 10usize;
    let mut offset = 0usize;
    let mut sort = false;
    for (name, value) in &params {
        match name.as_str() {
            "_lastUpdated" => match date_filter(value) {
                Ok(f) => filters.push(f),
                Err(message) => return outcome(StatusCode::BAD_REQUEST, &message),
            },
            "_count" => match value.parse::<usize>() {
                Ok(n) if (1..=500).contains(&n) => count = n,
                _ => return outcome(StatusCode::BAD_REQUEST, "_count must be 1 to 500"),
            },
            "_getpagesoffset" => offset = value.parse().unwrap_or(0),
            "_sort" if value == "_lastUpdated" => sort = true,
            "_sort" => {
                return outcome(
                    StatusCode::BAD_REQUEST,
                    &format!("sorting by {value:?} is not supported"),
                );
            }
            _ => {
                return outcome(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown search parameter {name:?}"),
                );
            }
        }
    }
    let mut matched: Vec<&Value> = data
        .resources
        .iter()
        .filter(|r| r["resourceType"] == resource_type.as_str())
        .filter(|r| filters.iter().all(|f| last_updated(r).is_some_and(f)))
        .collect();
    if sort {
        matched.sort_by_key(|r| last_updated(r));
    }
    let base = format!(
        "http://{}/fhir/{resource_type}",
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1")
    );
    let page: Vec<Value> = matched
        .iter()
        .skip(offset)
        .take(count)
        .map(|r| {
            json!({
                "fullUrl": format!("{base}/{}", r["id"].as_str().unwrap_or_default()),
                "resource": r,
                "search": { "mode": "match" },
            })
        })
        .collect();
    let query_without_offset: Vec<(String, String)> = params
        .iter()
        .filter(|(n, _)| n != "_getpagesoffset")
        .cloned()
        .collect();
    let link_to = |offset: usize| {
        let mut q = query_without_offset.clone();
        q.push(("_getpagesoffset".into(), offset.to_string()));
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q)
            .finish();
        format!("{base}?{query}")
    };
    let mut links = vec![json!({ "relation": "self", "url": link_to(offset) })];
    if offset.saturating_add(count) < matched.len() {
        links.push(json!({ "relation": "next", "url": link_to(offset + count) }));
    }
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": matched.len(),
        "link": links,
        "entry": page,
    });
    (
        [(header::CONTENT_TYPE, "application/fhir+json")],
        bundle.to_string(),
    )
        .into_response()
}

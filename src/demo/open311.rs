//! The citizen-feedback app's API in GeoReport v2 form over the sample reports.
//!
//! `GET /requests.json?start_date=&end_date=` returns the reports whose `updated_datetime`
//! lies in `[start_date, end_date)` (the app filters on update time, so an answered report is
//! fetched again), at most 1000 per request as GeoReport servers cap their answers;
//! `GET /services.json` lists the seven categories of the regulation. Sample lines that are not
//! JSON are served as they are, as a buggy app would: the hub must quarantine them.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, FixedOffset};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{DemoError, read_sample};

/// Most requests one answer holds, like a real GeoReport server's cap.
pub const MAX_RESULTS: usize = 1000;

pub struct Open311Data {
    reports: Vec<Value>,
}

impl Open311Data {
    pub fn load(path: &Path) -> Result<Self, DemoError> {
        let text = read_sample(path)?;
        let reports = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Ok(Open311Data { reports })
    }
}

pub fn router(data: Open311Data) -> Router {
    Router::new()
        .route("/requests.json", get(requests))
        .route("/services.json", get(services))
        .with_state(Arc::new(data))
}

#[derive(Deserialize)]
struct Window {
    start_date: Option<String>,
    end_date: Option<String>,
    status: Option<String>,
    service_code: Option<String>,
}

fn georeport_error(code: u16, description: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(json!([{ "code": code, "description": description }])),
    )
        .into_response()
}

/// The window bound `name`, or the message for a bound that is not a time with an offset.
fn instant(name: &str, text: &Option<String>) -> Result<Option<DateTime<FixedOffset>>, String> {
    match text {
        None => Ok(None),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(Some)
            .map_err(|_| format!("{name} {t:?} is not an ISO 8601 time with an offset")),
    }
}

async fn requests(State(data): State<Arc<Open311Data>>, Query(window): Query<Window>) -> Response {
    let (start, end) = match (
        instant("start_date", &window.start_date),
        instant("end_date", &window.end_date),
    ) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(message), _) | (_, Err(message)) => return georeport_error(400, &message),
    };
    let matched: Vec<&Value> = data
        .reports
        .iter()
        .filter(|r| {
            let updated = r["updated_datetime"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            match updated {
                Some(t) => start.is_none_or(|s| t >= s) && end.is_none_or(|e| t < e),
                None => start.is_none() && end.is_none(),
            }
        })
        .filter(|r| window.status.as_deref().is_none_or(|s| r["status"] == s))
        .filter(|r| {
            window
                .service_code
                .as_deref()
                .is_none_or(|c| r["service_code"] == c)
        })
        .take(MAX_RESULTS)
        .collect();
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        serde_json::to_string(&matched).unwrap_or_else(|_| "[]".into()),
    )
        .into_response()
}

async fn services() -> Response {
    let list: Vec<Value> = [
        ("LCLLD", "Lấn chiếm lòng lề đường"),
        ("VPQC", "Vi phạm quảng cáo"),
        ("TTBB", "Tụ tập buôn bán"),
        ("XDKP", "Xây dựng không phép"),
        ("XRAC", "Xả rác"),
        ("NTHAI", "Nước thải"),
        ("KHAC", "Khác"),
    ]
    .iter()
    .map(|(code, name)| {
        json!({
            "service_code": code, "service_name": name, "metadata": false,
            "type": "realtime", "group": "Phản ánh hiện trường",
        })
    })
    .collect();
    axum::Json(list).into_response()
}

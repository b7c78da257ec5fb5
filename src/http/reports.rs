//! `/api/v1/reports`: the periodic reports, for the managing office and the province.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use crate::hub::Hub;
use crate::report::{self, Format};
use crate::sharing::{Consumer, Role};

/// Reports hold unmasked aggregates of every sector: the managing office and the provincial
/// IOC (to whom the district reports) read them.
fn may_read(consumer: &Consumer) -> Result<(), ApiError> {
    if matches!(consumer.role, Role::Admin | Role::Province) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "báo cáo định kỳ chỉ dành cho Trung tâm IOC và tỉnh / periodic reports are for the managing office and the province",
        ))
    }
}

pub async fn list(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
) -> Result<Json<Value>, ApiError> {
    may_read(&consumer)?;
    Ok(Json(json!({"reports": hub.report_listings()})))
}

#[derive(Deserialize)]
pub struct ReportParams {
    #[serde(default)]
    format: Option<String>,
    /// Generate again even if a complete generation is stored (admins only).
    #[serde(default)]
    regenerate: bool,
}

pub async fn read(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
    Path((name, period)): Path<(String, String)>,
    Query(params): Query<ReportParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let outcome = answer(&hub, &consumer, &name, &period, &params, &headers).await;
    let (result, detail) = match &outcome {
        Ok((format, _)) => (
            "ok",
            json!({"period": period, "format": format.extension()}),
        ),
        Err(e) => (
            if e.status == StatusCode::FORBIDDEN {
                "denied"
            } else {
                "error"
            },
            json!({"period": period, "error": e.message}),
        ),
    };
    hub.audit(
        Some(&consumer.id),
        "report_read",
        Some(&name),
        detail,
        result,
    );
    let (format, body) = outcome?;
    let mut response = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    if matches!(format, Format::Csv | Format::Xlsx) {
        // `name` is a configured identifier and `period` parsed: safe in a header.
        let disposition = format!(
            "attachment; filename=\"{name}_{period}.{}\"",
            format.extension()
        );
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(response)
}

async fn answer(
    hub: &Hub,
    consumer: &Consumer,
    name: &str,
    period: &str,
    params: &ReportParams,
    headers: &HeaderMap,
) -> Result<(Format, Vec<u8>), ApiError> {
    may_read(consumer)?;
    hub.report_def(name)?;
    let period = Hub::parse_period(period)?;
    // A period that has not begun has no data, and generating it would store an empty report.
    let today = chrono::Utc::now()
        .with_timezone(&hub.config.time_zone)
        .date_naive();
    if period.start_date() > today {
        return Err(ApiError::bad_request(format!(
            "kỳ báo cáo {} chưa bắt đầu / the period has not begun",
            period.label()
        )));
    }
    let format = match &params.format {
        Some(text) => Format::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "định dạng không hỗ trợ / unsupported format {text:?}: html, json, csv or xlsx"
            ))
        })?,
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .and_then(Format::from_accept)
            .unwrap_or(Format::Html),
    };
    if params.regenerate && consumer.role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the managing office regenerates reports",
        ));
    }
    let doc = hub.report(name, &period, params.regenerate).await?;
    // Rendered from the document (the stored HTML is the same rendering of it).
    let body = report::render(&doc, format)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "report", e.to_string()))?;
    Ok((format, body))
}

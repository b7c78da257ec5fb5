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
pub(crate) fn may_read(consumer: &Consumer) -> Result<(), ApiError> {
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
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (format, body) = read_audited(
        &hub,
        &consumer,
        &name,
        &period,
        params.format.as_deref(),
        accept,
        params.regenerate,
    )
    .await?;
    let mut response = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    if matches!(format, Format::Csv | Format::Xlsx)
        && let Some(v) = attachment(&name, &period, format)
    {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// `Content-Disposition` for a downloaded report.
pub(crate) fn attachment(name: &str, period: &str, format: Format) -> Option<HeaderValue> {
    // `name` is a configured identifier and `period` parsed: safe in a header.
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{name}_{period}.{}\"",
        format.extension()
    ))
    .ok()
}

/// A report rendered as `consumer` asked for it (a format by name, else by `Accept`, else
/// HTML), audited as `report_read`: the API and the console read reports through this.
pub(crate) async fn read_audited(
    hub: &Hub,
    consumer: &Consumer,
    name: &str,
    period: &str,
    format: Option<&str>,
    accept: Option<&str>,
    regenerate: bool,
) -> Result<(Format, Vec<u8>), ApiError> {
    let outcome = answer(hub, consumer, name, period, format, accept, regenerate).await;
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
        Some(name),
        detail,
        result,
    );
    outcome
}

async fn answer(
    hub: &Hub,
    consumer: &Consumer,
    name: &str,
    period: &str,
    format: Option<&str>,
    accept: Option<&str>,
    regenerate: bool,
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
    let format = match format {
        Some(text) => Format::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "định dạng không hỗ trợ / unsupported format {text:?}: html, json, csv or xlsx"
            ))
        })?,
        None => accept.and_then(Format::from_accept).unwrap_or(Format::Html),
    };
    if regenerate && consumer.role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the managing office regenerates reports",
        ));
    }
    let doc = hub.report(name, &period, regenerate).await?;
    // Rendered from the document (the stored HTML is the same rendering of it).
    let body = report::render(&doc, format)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "report", e.to_string()))?;
    Ok((format, body))
}

//! The HTTP API (axum): health, the dataset catalog, quarantine and SQL.

mod error;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

pub use error::ApiError;

use crate::hub::Hub;
use crate::query;

pub fn router(hub: Arc<Hub>) -> Router {
    let max_body = hub.config.file.http.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/datasets", get(datasets))
        .route("/api/v1/datasets/{name}/quarantine", get(quarantine))
        .route("/api/v1/sql", post(sql))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(hub)
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn datasets(State(hub): State<Arc<Hub>>) -> Json<Value> {
    Json(json!({"datasets": hub.catalog().await}))
}

#[derive(Deserialize)]
struct QuarantineParams {
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

async fn quarantine(
    State(hub): State<Arc<Hub>>,
    Path(name): Path<String>,
    Query(params): Query<QuarantineParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.clamp(1, hub.engine.limits().max_rows);
    let result = hub.quarantine_of(&name, limit).await?;
    let table = query::to_json(&result).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let names: Vec<String> = result
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let records: Vec<Value> = table["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    let mut record = serde_json::Map::new();
                    for (name, cell) in names.iter().zip(row.as_array().into_iter().flatten()) {
                        // `errors` is stored as JSON text; hand it back as JSON.
                        let cell = match (name.as_str(), cell) {
                            ("errors", Value::String(s)) => {
                                serde_json::from_str(s).unwrap_or(cell.clone())
                            }
                            _ => cell.clone(),
                        };
                        record.insert(name.clone(), cell);
                    }
                    Value::Object(record)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(
        json!({"dataset": name, "count": records.len(), "records": records}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

enum Format {
    Json,
    Csv,
    Arrow,
}

fn wanted_format(headers: &HeaderMap) -> Format {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/vnd.apache.arrow.stream") {
        Format::Arrow
    } else if accept.contains("text/csv") {
        Format::Csv
    } else {
        Format::Json
    }
}

async fn sql(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(status, code, r.body_text())
    })?;
    let request: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON like {{\"sql\": \"SELECT ...\"}}: {e}"
        ))
    })?;
    let result = hub.sql(&request.sql).await?;
    let internal = |e: arrow::error::ArrowError| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    };
    Ok(match wanted_format(&headers) {
        Format::Json => Json(query::to_json(&result).map_err(internal)?).into_response(),
        Format::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            query::to_csv(&result).map_err(internal)?,
        )
            .into_response(),
        Format::Arrow => (
            [(header::CONTENT_TYPE, "application/vnd.apache.arrow.stream")],
            query::to_arrow_ipc(&result).map_err(internal)?,
        )
            .into_response(),
    })
}

//! Publishing, special-request shares and the audit log over HTTP.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, body_bytes};
use crate::hub::{Decision, Hub};
use crate::sharing::{Consumer, GrantRequest};
use crate::state::AuditFilter;

pub async fn publish(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body_bytes(body)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let report = hub.publish(&consumer, &name, content_type, &body).await?;
    Ok(Json(json!(report)))
}

pub async fn file(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let request: GrantRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON with name, purpose, legal_basis, end_date and either dataset \
             (+ columns, row_filter) or sql: {e}"
        ))
    })?;
    let filed = hub.file_share_request(&consumer, request).await?;
    Ok((StatusCode::CREATED, Json(json!({"request": filed}))).into_response())
}

pub async fn list(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"requests": hub.share_requests_for(&consumer)?}),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    #[serde(default)]
    note: Option<String>,
}

pub async fn decide(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
    Path((id, decision)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let decision = match decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        "revoke" => Decision::Revoke,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route",
            ));
        }
    };
    let body = body_bytes(body)?;
    let body: DecisionBody = if body.is_empty() {
        DecisionBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("the body must be JSON {{\"note\": \"...\"}}: {e}"))
        })?
    };
    let view = hub
        .decide_share_request(&consumer, &id, decision, body.note.as_deref())
        .await?;
    Ok(Json(json!({"request": view})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    consumer: Option<String>,
    action: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    500
}

pub async fn audit(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
    Query(params): Query<AuditParams>,
) -> Result<Json<Value>, ApiError> {
    super::admin_only(&consumer, "only the managing office reads the audit log")?;
    let events = hub.audit_log(&AuditFilter {
        consumer: params.consumer,
        action: params.action,
        since: params.since,
        until: params.until,
        limit: params.limit.clamp(1, 10_000),
    })?;
    Ok(Json(json!({"count": events.len(), "events": events})))
}

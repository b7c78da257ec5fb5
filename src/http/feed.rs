//! The feed over HTTP: pull (`GET /feed/{dataset}`), record deletes, subscription status.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, admin_only, body_bytes};
use crate::feed::events::batch_body;
use crate::hub::Hub;
use crate::sharing::Consumer;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    500
}

/// The same CloudEvents a subscription receives, for consumers that poll:
/// `{"events": [...], "next": N, "last_sequence": L}`; read on with `?after=N`.
pub async fn pull(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
    Path(target): Path<String>,
    Query(params): Query<FeedParams>,
) -> Result<Response, ApiError> {
    if params.limit == 0 || params.limit > crate::hub::MAX_FEED_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {}",
            crate::hub::MAX_FEED_LIMIT
        )));
    }
    let page = hub
        .feed_read(&consumer, &target, params.after, params.limit)
        .await?;
    hub.audit(
        Some(&consumer.id),
        "feed.read",
        Some(&target),
        json!({
            "after": params.after,
            "next": page.next,
            "events": page.events.len(),
        }),
        "ok",
    );
    let events = batch_body(&page.events);
    let mut body = Vec::with_capacity(events.len() + 64);
    body.extend_from_slice(b"{\"events\":");
    body.extend_from_slice(&events);
    body.extend_from_slice(
        format!(
            ",\"next\":{},\"last_sequence\":{}}}",
            page.next, page.last_sequence
        )
        .as_bytes(),
    );
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    keys: Vec<serde_json::Map<String, Value>>,
}

/// `DELETE /datasets/{name}/records` with `{"keys": [{"id": ...}, ...]}`: a publisher
/// removes records of its dataset; each removal is a `deleted` change in the feed.
pub async fn delete_records(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body_bytes(body)?;
    let request: DeleteBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON {{\"keys\": [{{<key column>: <value>}}, ...]}}: {e}"
        ))
    })?;
    let deleted = hub.delete_records(&consumer, &name, request.keys).await?;
    Ok(Json(json!({"deleted": deleted})))
}

const SUBSCRIPTIONS_ARE_ADMINS: &str = "subscriptions are managed by the managing office";

pub async fn subscriptions(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&consumer, SUBSCRIPTIONS_ARE_ADMINS)?;
    Ok(Json(
        json!({"subscriptions": hub.subscription_statuses().await?}),
    ))
}

pub async fn resume(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&consumer, SUBSCRIPTIONS_ARE_ADMINS)?;
    let resumed = crate::feed::delivery::resume(&hub, &id)?;
    hub.audit(
        Some(&consumer.id),
        "feed.resume",
        Some(&id),
        json!({"targets": resumed}),
        "ok",
    );
    Ok(Json(
        json!({"subscription": id, "resumed_targets": resumed}),
    ))
}

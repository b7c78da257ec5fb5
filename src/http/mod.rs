//! The HTTP API (axum): health, the dataset catalog, quarantine, SQL, sharing and the feed;
//! the web console (`crate::console`) is merged into the same router at `/`.

mod auth;
mod error;
mod feed;
pub(crate) mod reports;
mod sharing;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

pub use error::ApiError;

use crate::hub::Hub;
use crate::query;
use crate::sharing::{Consumer, Role};

pub fn router(hub: Arc<Hub>) -> Router {
    let max_body = hub.config.file.http.max_body_bytes;
    let api = Router::new()
        .route("/datasets", get(datasets))
        .route("/datasets/{name}/quarantine", get(quarantine))
        .route(
            "/datasets/{name}/records",
            post(sharing::publish).delete(feed::delete_records),
        )
        .route("/feed/{dataset}", get(feed::pull))
        .route("/subscriptions", get(feed::subscriptions))
        .route("/subscriptions/{id}/resume", post(feed::resume))
        .route("/pipelines", get(pipelines))
        .route("/pipelines/{name}/runs", get(pipeline_runs))
        .route("/pipelines/{name}/run", post(trigger_run))
        .route("/sql", post(sql))
        .route("/share-requests", post(sharing::file).get(sharing::list))
        .route("/share-requests/{id}/{decision}", post(sharing::decide))
        .route("/audit", get(sharing::audit))
        .route("/reports", get(reports::list))
        .route("/reports/{name}/{period}", get(reports::read))
        .route_layer(middleware::from_fn_with_state(
            hub.clone(),
            auth::require_consumer,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        // The web console at `/` (its own sessions, CSRF and security headers).
        .merge(crate::console::router(hub.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(hub.clone(), count_requests))
        .with_state(hub)
}

/// Counts every request by its route pattern (not the raw path, which would make one time
/// series per dataset name typed by anyone).
async fn count_requests(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let response = next.run(request).await;
    hub.metrics
        .observe_http(&route, &method, response.status().as_u16());
    response
}

async fn metrics(State(hub): State<Arc<Hub>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        hub.metrics_text(),
    )
        .into_response()
}

async fn pipelines(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
) -> Result<Json<Value>, ApiError> {
    let statuses: Vec<_> = hub
        .config
        .pipelines
        .iter()
        .filter(|p| may_operate(&consumer, p))
        .map(|p| hub.pipeline_status(p, chrono::Utc::now()))
        .collect();
    if statuses.is_empty() && consumer.role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "pipelines are shown to the managing office and their publishers",
        ));
    }
    Ok(Json(json!({"pipelines": statuses})))
}

#[derive(Deserialize)]
struct RunsParams {
    #[serde(default = "default_runs")]
    limit: usize,
}

fn default_runs() -> usize {
    50
}

async fn pipeline_runs(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
    Path(name): Path<String>,
    Query(params): Query<RunsParams>,
) -> Result<Json<Value>, ApiError> {
    operate_check(&hub, &consumer, &name)?;
    let runs = hub.runs(&name, params.limit.clamp(1, 1000))?;
    Ok(Json(json!({"pipeline": name, "runs": runs})))
}

#[derive(Deserialize)]
struct TriggerParams {
    /// `false`: answer 202 at once and run in the background.
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

/// Runs a pipeline now. 409 if it is already running; with `?wait=false` answers 202 at once.
async fn trigger_run(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
    Path(name): Path<String>,
    Query(params): Query<TriggerParams>,
) -> Result<Response, ApiError> {
    operate_check(&hub, &consumer, &name)?;
    if hub.is_running(&name) {
        return Err(crate::hub::HubError::AlreadyRunning(name).into());
    }
    if params.wait {
        let report = hub.try_run(&name, "manual").await?;
        return Ok(Json(json!({"run": report})).into_response());
    }
    let background = hub.clone();
    tokio::spawn(async move {
        if let Err(e) = background.try_run(&name, "manual").await {
            tracing::warn!(error = %e, "manual run did not start");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "started"}))).into_response())
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

async fn datasets(
    State(hub): State<Arc<Hub>>,
    Extension(consumer): Extension<Consumer>,
) -> Result<Json<Value>, ApiError> {
    let catalog = hub.catalog_for(&consumer).await?;
    Ok(Json(
        json!({"datasets": catalog.datasets, "shares": catalog.shares}),
    ))
}

/// The managing office, or a publisher of the pipeline's dataset.
fn may_operate(consumer: &Consumer, pipeline: &crate::config::Pipeline) -> bool {
    consumer.role == Role::Admin || pipeline.publishers.contains(&consumer.id)
}

fn operate_check(hub: &Hub, consumer: &Consumer, name: &str) -> Result<(), ApiError> {
    let pipeline = hub.pipeline(name)?;
    if may_operate(consumer, pipeline) {
        return Ok(());
    }
    // Someone who cannot see the dataset at all is told it does not exist.
    let visible = hub.visibility_of(consumer)?.dataset(name).is_some();
    if visible {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the managing office and the dataset's publishers operate its pipeline",
        ))
    } else {
        Err(crate::hub::HubError::UnknownPipeline(name.to_string()).into())
    }
}

/// Reads a request body, turning a too-large or broken body into a JSON error.
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(status, code, r.body_text())
    })
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
    Extension(consumer): Extension<Consumer>,
    Path(name): Path<String>,
    Query(params): Query<QuarantineParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.clamp(1, hub.engine.limits().max_rows);
    let result = hub.quarantine_for(&consumer, &name, limit).await?;
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

const TRUNCATED: header::HeaderName = header::HeaderName::from_static("x-iochub-truncated");

fn truncated(result: &query::QueryResult) -> &'static str {
    if result.truncated { "true" } else { "false" }
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
    Extension(consumer): Extension<Consumer>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(body)?;
    let request: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON like {{\"sql\": \"SELECT ...\"}}: {e}"
        ))
    })?;
    let result = hub.sql_as(&consumer, &request.sql).await?;
    let internal = |e: arrow::error::ArrowError| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    };
    Ok(match wanted_format(&headers) {
        Format::Json => Json(query::to_json(&result).map_err(internal)?).into_response(),
        // CSV and Arrow have no place for it in the body: `X-Iochub-Truncated` says whether
        // the answer was cut at `query.max_rows`.
        Format::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (TRUNCATED, truncated(&result)),
            ],
            query::to_csv(&result).map_err(internal)?,
        )
            .into_response(),
        Format::Arrow => (
            [
                (header::CONTENT_TYPE, "application/vnd.apache.arrow.stream"),
                (TRUNCATED, truncated(&result)),
            ],
            query::to_arrow_ipc(&result).map_err(internal)?,
        )
            .into_response(),
    })
}

/// 403 unless the caller is the managing office.
fn admin_only(consumer: &Consumer, why: &str) -> Result<(), ApiError> {
    if consumer.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", why))
    }
}

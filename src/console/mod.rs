//! The console: the web UI the IOC office uses every day, served by the hub at `/`.
//!
//! Server-rendered HTML (maud, escaped at compile time), a little JavaScript, and every asset
//! embedded in the binary (the IOC network may be closed: no CDN, no web font). A page is a
//! function of what the signed-in consumer may see: every read goes through the same hub calls
//! the API uses (`Hub::catalog_for`, `Hub::sql_as`, `Hub::quarantine_for`, ...), so a page can
//! never show more than that consumer's catalog.
//!
//! `session.rs`: sessions and CSRF; `layout.rs`: the page shell and navigation; one file per
//! page; `map.rs`: the units' GeoJSON areas drawn as SVG; `error.rs`: friendly Vietnamese
//! error pages.

mod citizen;
mod datasets;
mod error;
mod layout;
pub mod map;
mod overview;
mod reports;
pub mod session;
mod sharing;
mod signin;
mod sql;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use error::ConsoleError;

use crate::hub::Hub;
use crate::sharing::Consumer;
use session::{Session, Sessions};

/// What every console handler gets: the hub and this process's sessions.
#[derive(Clone)]
pub struct Console {
    pub hub: Arc<Hub>,
    pub sessions: Arc<Sessions>,
}

/// The console's routes, to be merged into the hub's router (`http::router`).
pub fn router<S>(hub: Arc<Hub>) -> Router<S> {
    let state = Console {
        hub,
        sessions: Arc::new(Sessions::new()),
    };
    Router::new()
        .route("/", get(overview::page))
        // Read before anyone is known: a token fits in far less.
        .route(
            "/dang-nhap",
            get(signin::form)
                .post(signin::submit)
                .layer(DefaultBodyLimit::max(SIGN_IN_BODY_LIMIT)),
        )
        .route("/dang-xuat", post(signin::sign_out))
        .route("/phan-anh", get(citizen::page))
        .route("/du-lieu", get(datasets::catalog))
        .route("/du-lieu/{name}", get(datasets::dataset))
        .route("/du-lieu/{name}/nop-lai", post(datasets::reingest))
        .route("/sql", get(sql::page).post(sql::run))
        .route("/sql/csv", post(sql::csv))
        .route("/chia-se", get(sharing::page))
        .route("/chia-se/yeu-cau", post(sharing::file))
        .route("/chia-se/{id}/{decision}", post(sharing::decide))
        .route("/bao-cao", get(reports::page))
        .route("/bao-cao/{name}", get(reports::choose))
        .route("/bao-cao/{name}/{period}", get(reports::open))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .layer(DefaultBodyLimit::max(FORM_BODY_LIMIT))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// A console form (an SQL text, a fixed record) is small; the API's larger limit is for
/// departments' uploads.
const FORM_BODY_LIMIT: usize = 1024 * 1024;
const SIGN_IN_BODY_LIMIT: usize = 16 * 1024;

/// The page's content security: only this hub's own scripts, styles and images; no framing.
/// A response that sets its own policy (a report's self-contained page) keeps it.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let defaults = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // `same-origin`, not `no-referrer`: with `no-referrer` browsers send `Origin: null` on
        // our own form posts, which the CSRF check must refuse.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Pages hold what one consumer may see: never cached (assets set their own).
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The assets' URLs carry a digest of their content, so they can be cached for a year and a
/// new build is fetched at once.
pub(crate) fn asset_url(name: &str) -> String {
    use sha2::Digest;
    let content = match name {
        "console.css" => CSS,
        _ => JS,
    };
    let digest = sha2::Sha256::digest(content.as_bytes());
    format!("/assets/{name}?v={}", &hex::encode(digest)[..12])
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

/// The signed-in consumer of a request, from its session cookie. Without a live session the
/// request is sent to the sign-in page; past the consumer's rate it gets a 429 page.
pub struct Viewer {
    pub consumer: Consumer,
    pub session: Session,
    /// `[http] public_origin`, for the origin check.
    public_origin: Option<String>,
}

impl Viewer {
    /// Refuses (403) a state-changing request whose form token is not the session's, or
    /// that comes from another site.
    pub fn check_csrf(&self, headers: &HeaderMap, form: &Posted) -> Result<(), ConsoleError> {
        let given = form.get("csrf").unwrap_or_default();
        if !session::origin_allowed(headers, self.public_origin.as_deref())
            || !session::same_token(given, &self.session.csrf)
        {
            return Err(ConsoleError::Csrf);
        }
        Ok(())
    }
}

impl FromRequestParts<Console> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Console) -> Result<Self, Response> {
        let to_sign_in = || {
            (
                [(header::SET_COOKIE, session::clear_cookie(session::COOKIE))],
                Redirect::to("/dang-nhap"),
            )
                .into_response()
        };
        let Some(id) = session::cookie(&parts.headers, session::COOKIE) else {
            return Err(Redirect::to("/dang-nhap").into_response());
        };
        let Some(session) = state.sessions.get(id) else {
            return Err(to_sign_in());
        };
        // A consumer removed from the config since sign-in is signed out.
        let Some(consumer) = state.hub.config.consumers.get(&session.consumer).cloned() else {
            state.sessions.end(&session.id);
            return Err(to_sign_in());
        };
        // The console counts against the same allowance as the API.
        if let Err(wait) = state.hub.rate_check(&consumer.id) {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            return Err(ConsoleError::RateLimited(seconds).into_response());
        }
        Ok(Viewer {
            consumer,
            session,
            public_origin: state.hub.config.file.http.public_origin.clone(),
        })
    }
}

/// A posted `application/x-www-form-urlencoded` body as name/value pairs. Parsed by hand
/// (not into a struct) so a form missing its CSRF token is refused as such (403), and a
/// missing field gets a Vietnamese message rather than a deserializer's.
pub struct Posted {
    fields: Vec<(String, String)>,
}

impl Posted {
    pub fn parse(body: &[u8]) -> Self {
        Posted {
            fields: url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A required field, trimmed; its Vietnamese label names it in the error.
    pub fn required(&self, name: &str, label: &str) -> Result<&str, ConsoleError> {
        match self.get(name).map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ConsoleError::BadRequest(format!(
                "Vui lòng nhập «{label}»."
            ))),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Posted {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ConsoleError> {
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ConsoleError::BadRequest("Nội dung gửi lên quá lớn.".into())
                } else {
                    ConsoleError::BadRequest("Không đọc được nội dung biểu mẫu.".into())
                }
            })?;
        Ok(Posted::parse(&body))
    }
}

/// A query's column names and rows (JSON cells, as the API answers them).
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    pub truncated: bool,
}

/// Runs SQL as `consumer` through its own catalog (`Hub::sql_as_with`: masks, shares and the
/// audit log exactly as the API), audited with the channel `console`.
pub(crate) async fn query_rows(
    hub: &Hub,
    consumer: &Consumer,
    sql: &str,
) -> Result<(crate::query::QueryResult, Rows), ConsoleError> {
    let result = hub
        .sql_as_with(consumer, sql, &|_| Ok(()), "console")
        .await?;
    let rows = to_rows(&result)?;
    Ok((result, rows))
}

pub(crate) fn to_rows(result: &crate::query::QueryResult) -> Result<Rows, ConsoleError> {
    let json = crate::query::to_json(result).map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let columns = result
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let rows = json["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r.as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    Ok(Rows {
        columns,
        rows,
        truncated: result.truncated,
    })
}

/// A JSON cell as text for a table (`null` shows as empty).
pub(crate) fn cell_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

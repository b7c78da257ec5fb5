//! Every `/api/v1` route needs `Authorization: Bearer <token>`: 401 without a valid token
//! (audited), 429 with `Retry-After` past the consumer's rate, else the consumer rides along
//! in the request's extensions.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiError;
use crate::hub::Hub;

fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub async fn require_consumer(
    State(hub): State<Arc<Hub>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let Some(token) = bearer(&request) else {
        hub.audit(
            None,
            "auth_failed",
            Some(&path),
            json!({"reason": "no bearer token"}),
            "denied",
        );
        return unauthorized("send Authorization: Bearer <token>");
    };
    let Some(consumer) = hub.authenticate(token) else {
        hub.audit(
            None,
            "auth_failed",
            Some(&path),
            json!({"reason": "unknown token"}),
            "denied",
        );
        return unauthorized("the token is not valid");
    };
    if let Err(wait) = hub.rate_check(&consumer.id) {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many requests from {}; try again in {seconds} s",
                consumer.id
            ),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    request.extensions_mut().insert(consumer);
    next.run(request).await
}

fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"iochub\""),
    );
    response
}

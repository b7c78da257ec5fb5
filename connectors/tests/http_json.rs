//! `http_json` through the shared HTTP client (`connectors/src/http`): the hub's
//! `tests/it/http_source.rs` covers it end to end; this is the connector crate's own check that
//! auth, retries with `Retry-After` and error bodies survived the move.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use iochub_connectors::ConnectorError;
use serde_json::json;

use common::{connector, read, serve};

#[tokio::test]
async fn auth_retries_and_error_bodies() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/items",
            get(
                |State(calls): State<Arc<AtomicUsize>>, headers: HeaderMap| async move {
                    if headers.get("authorization").and_then(|v| v.to_str().ok())
                        != Some("Bearer tok-123")
                    {
                        return (StatusCode::UNAUTHORIZED, "no token").into_response();
                    }
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        return (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", "0")],
                            "busy",
                        )
                            .into_response();
                    }
                    axum::Json(json!({"data": [{"id": "a"}, {"id": "b"}]})).into_response()
                },
            ),
        )
        .route("/html", get(|| async { "<html>maintenance</html>" }))
        .with_state(calls.clone());
    let addr = serve(app).await;
    // Edition 2024 marks set_var unsafe: no other thread of this test binary reads this name.
    unsafe { std::env::set_var("IOCHUB_TEST_HTTP_JSON_TOKEN", "tok-123") };
    let settings = |path: &str, token_env: &str| {
        json!({
            "url": format!("http://{addr}{path}"),
            "records_at": "/data",
            "auth": {"type": "bearer", "token_env": token_env},
            "retry": {"max_attempts": 2, "initial_backoff_ms": 10, "max_backoff_ms": 20}
        })
    };

    let c = connector(
        "http_json",
        settings("/items", "IOCHUB_TEST_HTTP_JSON_TOKEN"),
    );
    let out = read(c.as_ref(), None, None).await.unwrap();
    assert_eq!(out.strings("id"), ["a", "b"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one 503, retried once");

    let c = connector("http_json", settings("/items", "IOCHUB_TEST_UNSET_TOKEN"));
    let e = read(c.as_ref(), None, None).await.unwrap_err();
    assert!(
        matches!(e, ConnectorError::MissingEnv(ref v) if v == "IOCHUB_TEST_UNSET_TOKEN"),
        "{e:?}"
    );

    let c = connector(
        "http_json",
        settings("/html", "IOCHUB_TEST_HTTP_JSON_TOKEN"),
    );
    let e = read(c.as_ref(), None, None).await.unwrap_err();
    assert!(
        e.to_string().contains("body is not JSON") && e.to_string().contains("maintenance"),
        "{e}"
    );
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused_before_credentials_follow_it() {
    let app = Router::new().route(
        "/items",
        get(|| async {
            axum::Json(json!({
                "data": [{"id": "a"}],
                "next": "http://collector.other.invalid/items?page=2"
            }))
        }),
    );
    let addr = serve(app).await;
    let c = connector(
        "http_json",
        json!({
            "url": format!("http://{addr}/items"),
            "records_at": "/data",
            "pagination": {"type": "next_link", "pointer": "/next"},
        }),
    );
    let e = read(c.as_ref(), None, None).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("next link http://collector.other.invalid/items?page=2 leaves"),
        "{e}"
    );
}

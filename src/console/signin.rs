//! Sign-in with the consumer's token, and sign-out.
//!
//! The token is checked by `Hub::authenticate` (SHA-256, constant time, as the API does) and
//! then forgotten: the browser keeps only a random session id. Failed sign-ins are audited
//! like the API's refused tokens and spend the allowance of the address they come from; an
//! address whose allowance is spent is refused before its token is even tested, so guessing
//! is bounded, and one address guessing cannot lock out the others.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::json;

use super::layout;
use super::session::{self, ABSOLUTE, COOKIE, SIGNIN_COOKIE};
use super::{Console, ConsoleError, Posted, Viewer};

/// The sign-in form's double-submit value lives this long (time to type a token).
const SIGNIN_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether the browser reached us over plain HTTP at an address other than this machine's:
/// it then drops the `Secure` session cookie and sign-in cannot work, so the page says why.
fn insecure_remote(headers: &HeaderMap, public_origin: Option<&str>) -> bool {
    if public_origin.is_some()
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"))
    {
        return false;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    !(name == "localhost" || name.starts_with("127.") || name == "[::1]" || name.is_empty())
}

fn form_page(nonce: &str, problem: Option<&str>, insecure: bool) -> Markup {
    layout::bare(
        "Đăng nhập bảng điều khiển IOC",
        html! {
            @if insecure {
                (layout::notice("error", "Bảng điều khiển đang được mở qua HTTP không mã hóa: trình duyệt sẽ không giữ phiên đăng nhập. Hãy mở qua HTTPS (máy chủ trung gian có TLS, khai báo [http] public_origin), hoặc mở trên chính máy chủ tại http://127.0.0.1."))
            }
            p { "Nhập mã truy cập (token) của đơn vị bạn. Mã do Trung tâm IOC cấp; mỗi đơn vị chỉ thấy dữ liệu mình được phép xem." }
            @if let Some(p) = problem {
                (layout::notice("error", p))
            }
            form.signin method="post" action="/dang-nhap" {
                input type="hidden" name="csrf" value=(nonce);
                div.field {
                    label for="token" { "Mã truy cập" }
                    input id="token" name="token" type="password" autocomplete="current-password" required;
                }
                button type="submit" { "Đăng nhập" }
            }
        },
    )
}

/// A fresh sign-in form with its double-submit cookie.
fn fresh_form(
    status: axum::http::StatusCode,
    problem: Option<&str>,
    insecure: bool,
) -> Result<Response, ConsoleError> {
    let nonce = session::random_token()?;
    Ok((
        status,
        [(
            header::SET_COOKIE,
            session::set_cookie(SIGNIN_COOKIE, &nonce, SIGNIN_TTL),
        )],
        form_page(&nonce, problem, insecure),
    )
        .into_response())
}

pub async fn form(
    State(console): State<Console>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    // Someone already signed in goes straight to the overview.
    if let Some(id) = session::cookie(&headers, COOKIE)
        && console.sessions.get(id).is_some()
    {
        return Ok(Redirect::to("/").into_response());
    }
    let public_origin = console.hub.config.file.http.public_origin.as_deref();
    fresh_form(
        axum::http::StatusCode::OK,
        None,
        insecure_remote(&headers, public_origin),
    )
}

/// The allowance key of a sign-in's address (the peer's IP; one shared key when the server
/// was started without connection info, as some tests do).
fn failures_key(extensions: &Extensions) -> String {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
    format!("console-sign-in-failures:{peer}")
}

pub async fn submit(
    State(console): State<Console>,
    headers: HeaderMap,
    extensions: Extensions,
    form: Posted,
) -> Result<Response, ConsoleError> {
    let nonce = session::cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    let given = form.get("csrf").unwrap_or_default();
    let public_origin = console.hub.config.file.http.public_origin.as_deref();
    if !session::origin_allowed(&headers, public_origin) || !session::same_token(given, nonce) {
        return Err(ConsoleError::Csrf);
    }
    let token = form.get("token").unwrap_or_default().trim();
    let hub = &console.hub;
    let failures = failures_key(&extensions);
    if let Err(wait) = hub.rate_peek(&failures) {
        return Err(ConsoleError::RateLimited(wait.as_secs().max(1)));
    }
    let Some(consumer) = (!token.is_empty())
        .then(|| hub.authenticate(token))
        .flatten()
    else {
        hub.audit(
            None,
            "auth_failed",
            Some("/dang-nhap"),
            json!({"reason": "unknown token", "channel": "console"}),
            "denied",
        );
        // A wrong token spends one request of this address's allowance (the API's rate).
        if let Err(wait) = hub.rate_check(&failures) {
            return Err(ConsoleError::RateLimited(wait.as_secs().max(1)));
        }
        return fresh_form(
            axum::http::StatusCode::UNAUTHORIZED,
            Some(
                "Mã truy cập không đúng. Vui lòng kiểm tra lại (mã phân biệt chữ hoa, chữ thường).",
            ),
            insecure_remote(&headers, public_origin),
        );
    };
    let session = console.sessions.start(&consumer.id)?;
    hub.audit(
        Some(&consumer.id),
        "console_sign_in",
        None,
        json!({"channel": "console"}),
        "ok",
    );
    let mut response = Redirect::to("/").into_response();
    let headers = response.headers_mut();
    for cookie in [
        session::set_cookie(COOKIE, &session.id, ABSOLUTE),
        session::clear_cookie(SIGNIN_COOKIE),
    ] {
        if let Ok(v) = cookie.parse() {
            headers.append(header::SET_COOKIE, v);
        }
    }
    Ok(response)
}

pub async fn sign_out(
    State(console): State<Console>,
    viewer: Viewer,
    headers: HeaderMap,
    form: Posted,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&headers, &form)?;
    console.sessions.end(&viewer.session.id);
    console.hub.audit(
        Some(&viewer.consumer.id),
        "console_sign_out",
        None,
        json!({"channel": "console"}),
        "ok",
    );
    Ok((
        [(header::SET_COOKIE, session::clear_cookie(COOKIE))],
        Redirect::to("/dang-nhap"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn host(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn plain_http_to_another_machine_is_told_it_cannot_keep_a_session() {
        assert!(!insecure_remote(&host("127.0.0.1:8080"), None));
        assert!(!insecure_remote(&host("localhost:8080"), None));
        assert!(insecure_remote(&host("10.0.0.5:8080"), None));
        assert!(!insecure_remote(
            &host("10.0.0.5:8080"),
            Some("https://ioc.example")
        ));
        let mut proxied = host("ioc.example");
        proxied.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(!insecure_remote(&proxied, None));
    }
}

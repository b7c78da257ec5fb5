//! Console sessions and CSRF tokens.
//!
//! Signing in trades the consumer's token for a random session id (32 bytes from the OS), kept
//! in memory with the consumer id, a per-session CSRF token and an expiry. The cookie holds
//! only that id: the token itself never sits in the browser, and a restart signs everyone
//! out (the office signs in again with its token), which is the safe direction to fail.
//!
//! Every state-changing form carries the session's CSRF token in a hidden field, compared in
//! constant time. The sign-in form, made before any session exists, uses a double-submit
//! cookie (`iochub_signin`, the same random value in the cookie and the form). Both also
//! refuse a request whose `Origin` (when the browser sends one) is not this host.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "iochub_session";
/// The sign-in form's double-submit cookie.
pub const SIGNIN_COOKIE: &str = "iochub_signin";
/// A session ends after this long without a request (a working day's pause at most).
pub const IDLE: Duration = Duration::from_secs(8 * 3600);
/// And at the latest this long after sign-in, however busy.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub consumer: String,
    pub csrf: String,
    started: Instant,
    last_seen: Instant,
}

impl Session {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.last_seen) > IDLE || now.duration_since(self.started) > ABSOLUTE
    }
}

/// The sessions of this process.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the operating system gave no random bytes: {0}")]
    Random(String),
    #[error("the session store lock is poisoned")]
    Poisoned,
}

/// 32 random bytes as hex.
pub fn random_token() -> Result<String, SessionError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| SessionError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

impl Sessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a session for `consumer`.
    pub fn start(&self, consumer: &str) -> Result<Session, SessionError> {
        let now = Instant::now();
        let session = Session {
            id: random_token()?,
            consumer: consumer.to_string(),
            csrf: random_token()?,
            started: now,
            last_seen: now,
        };
        let mut map = self.map.lock().map_err(|_| SessionError::Poisoned)?;
        // Forget expired sessions on the way, so the map does not grow with abandoned ones.
        map.retain(|_, s| !s.expired(now));
        map.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    /// The live session `id`, its idle clock restarted; `None` if unknown or expired.
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.map.lock().ok()?;
        let session = map.get_mut(id)?;
        if session.expired(now) {
            map.remove(id);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    pub fn end(&self, id: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(id);
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Constant-time equality of two tokens (an empty expected value never matches).
pub fn same_token(given: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// `Set-Cookie` for a value only this site's own requests carry: not readable by scripts,
/// sent over HTTPS only (browsers count 127.0.0.1 and localhost as secure), never sent by
/// another site's links or forms.
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> String {
    format!(
        "{name}={value}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
        max_age.as_secs()
    )
}

/// `Set-Cookie` that removes cookie `name`.
pub fn clear_cookie(name: &str) -> String {
    format!("{name}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0")
}

/// Whether the request's `Origin`, when there is one, is this host (or the configured public
/// origin, for a console behind a reverse proxy): a form posted from another site is refused
/// even if it somehow carried a token. No `Origin` is allowed (older browsers and
/// same-origin GET-initiated navigations may omit it); the CSRF token still has to match.
pub fn origin_allowed(headers: &HeaderMap, public_origin: Option<&str>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if public_origin.is_some_and(|p| p.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    // `null` (sandboxed frames, some redirects) has no authority and is refused.
    origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn sessions_start_find_and_end() {
        let sessions = Sessions::new();
        let s = sessions.start("admin").unwrap();
        assert_eq!(s.id.len(), 64);
        assert_ne!(s.id, s.csrf);
        assert_eq!(sessions.get(&s.id).unwrap().consumer, "admin");
        sessions.end(&s.id);
        assert!(sessions.get(&s.id).is_none());
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abd", "abc"));
        assert!(!same_token("", ""));
    }

    #[test]
    fn origin_must_be_this_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(origin_allowed(&h, None));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(origin_allowed(&h, None));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!origin_allowed(&h, None));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!origin_allowed(&h, None));
    }

    #[test]
    fn behind_a_proxy_the_public_origin_is_this_host() {
        let mut h = HeaderMap::new();
        // nginx's default: the upstream's address as Host.
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://ioc.dongphu.example.gov.vn"),
        );
        assert!(!origin_allowed(&h, None));
        let public = Some("https://ioc.dongphu.example.gov.vn/");
        assert!(origin_allowed(&h, public));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!origin_allowed(&h, public));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; iochub_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}

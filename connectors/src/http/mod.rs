//! What the HTTP connectors (`http_json`, `fhir`, `open311`) share: authentication from
//! environment variables, one request loop with per-request timeouts and retries of transient
//! failures, and the checks of those settings.
//!
//! Secrets never live in the pipeline file: `auth` names environment variables, read at each
//! request (a rotated token is picked up without a restart). Timeouts, refused connections, 408,
//! 429 and 5xx are retried with exponential backoff (honouring `Retry-After` in seconds); any
//! other 4xx fails the request at once.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::ConnectorError;
use crate::retry::RetryConfig;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HttpMethod {
    #[default]
    Get,
    Post,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <value of token_env>`.
    Bearer { token_env: String },
    /// HTTP basic authentication from two environment variables.
    Basic {
        username_env: String,
        password_env: String,
    },
}

/// Turns the body of an error response into a message, for APIs with an error document of
/// their own (FHIR's OperationOutcome, GeoReport's error array); `None` falls back to the
/// start of the body.
pub type DescribeError = fn(&[u8]) -> Option<String>;

/// How a connector's client talks to its server.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The `Accept` header (a `headers` entry may override it).
    pub accept: &'static str,
    pub headers: BTreeMap<String, String>,
    pub auth: Option<Auth>,
    pub timeout_seconds: u64,
    pub retry: RetryConfig,
    pub describe_error: Option<DescribeError>,
}

/// The problems with the shared HTTP settings that can be found without a request.
pub fn validate_settings(
    headers: &BTreeMap<String, String>,
    timeout_seconds: u64,
    retry: &RetryConfig,
) -> Vec<String> {
    let mut problems = Vec::new();
    if timeout_seconds == 0 {
        problems.push("timeout_seconds must be at least 1".into());
    }
    if retry.max_attempts == 0 {
        problems.push("retry.max_attempts must be at least 1".into());
    }
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("authorization") {
            problems.push(
                "headers.Authorization is not allowed: put secrets in environment variables and use auth"
                    .into(),
            );
        }
        if HeaderName::from_bytes(name.as_bytes()).is_err() || HeaderValue::from_str(value).is_err()
        {
            problems.push(format!("header {name:?} is not a valid HTTP header"));
        }
    }
    problems
}

/// The problem with a settings URL that must be `http` or `https`, if any.
pub fn validate_url(key: &str, text: &str) -> Option<String> {
    match Url::parse(text) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => None,
        Ok(u) => Some(format!(
            "{key} scheme {:?} is not http or https",
            u.scheme()
        )),
        Err(e) => Some(format!("{key} {text:?} is not a valid URL: {e}")),
    }
}

/// One connector's HTTP client: cheap to share, safe to use from one read at a time or many.
#[derive(Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    headers: HeaderMap,
    auth: Option<Auth>,
    timeout_seconds: u64,
    retry: RetryConfig,
    describe_error: Option<DescribeError>,
}

type Failure = (ConnectorError, Option<Duration>);

impl HttpClient {
    pub fn new(options: ClientOptions) -> Result<Self, ConnectorError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static(options.accept),
        );
        for (name, value) in &options.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ConnectorError::Config(format!("header {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| ConnectorError::Config(format!("header {name:?}: {e}")))?;
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(options.timeout_seconds))
            .connect_timeout(Duration::from_secs(options.timeout_seconds.min(10)))
            .user_agent(concat!("iochub/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConnectorError::Config(format!("HTTP client: {e}")))?;
        Ok(HttpClient {
            client,
            headers,
            auth: options.auth,
            timeout_seconds: options.timeout_seconds,
            retry: options.retry,
            describe_error: options.describe_error,
        })
    }

    pub async fn get(&self, url: &Url) -> Result<bytes::Bytes, ConnectorError> {
        self.send(HttpMethod::Get, url, None).await
    }

    /// The body of a successful response, after as many attempts as `retry` allows.
    pub async fn send(
        &self,
        method: HttpMethod,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<bytes::Bytes, ConnectorError> {
        let mut attempt = 1;
        loop {
            match self.send_once(method, url, body).await {
                Ok(body) => return Ok(body),
                Err((error, retry_after)) => {
                    if !error.is_transient() || attempt >= self.retry.max_attempts {
                        return Err(error);
                    }
                    let wait = retry_after
                        .map(|d| d.min(Duration::from_millis(self.retry.max_backoff_ms)))
                        .unwrap_or_else(|| self.retry.backoff(attempt));
                    tracing::warn!(%url, attempt, error = %error, wait_ms = wait.as_millis() as u64, "retrying request");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn send_once(
        &self,
        method: HttpMethod,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<bytes::Bytes, Failure> {
        let mut request = match method {
            HttpMethod::Get => self.client.get(url.clone()),
            HttpMethod::Post => self.client.post(url.clone()),
        };
        request = request.headers(self.headers.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        request = match &self.auth {
            None => request,
            Some(Auth::Bearer { token_env }) => {
                request.bearer_auth(env(token_env).map_err(|e| (e, None))?)
            }
            Some(Auth::Basic {
                username_env,
                password_env,
            }) => request.basic_auth(
                env(username_env).map_err(|e| (e, None))?,
                Some(env(password_env).map_err(|e| (e, None))?),
            ),
        };
        let response = request
            .send()
            .await
            .map_err(|e| (self.transport_error(url, e), None))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = response.bytes().await.unwrap_or_default();
            let message = self
                .describe_error
                .and_then(|describe| describe(&body))
                .unwrap_or_else(|| snippet(&body));
            return Err((
                ConnectorError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                    body: message,
                },
                retry_after,
            ));
        }
        response
            .bytes()
            .await
            .map_err(|e| (self.transport_error(url, e), None))
    }

    fn transport_error(&self, url: &Url, error: reqwest::Error) -> ConnectorError {
        if error.is_timeout() {
            ConnectorError::Timeout {
                url: url.to_string(),
                seconds: self.timeout_seconds,
            }
        } else {
            // Connection refused, reset, DNS: all worth another try.
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            ConnectorError::Connect {
                url: url.to_string(),
                message,
            }
        }
    }
}

fn env(name: &str) -> Result<String, ConnectorError> {
    std::env::var(name).map_err(|_| ConnectorError::MissingEnv(name.to_string()))
}

/// The start of a body, for error messages about responses that are not what was expected.
/// Refuses a link (a next page) that leaves the configured server: the credentials of `auth`
/// go with every request, so they must never reach another host.
pub fn check_same_origin(first: &Url, next: &Url, page: &Url) -> Result<(), ConnectorError> {
    if next.origin() == first.origin() {
        return Ok(());
    }
    Err(ConnectorError::InvalidResponse {
        url: page.to_string(),
        message: format!(
            "next link {next} leaves {}; refused so that credentials stay with the server (check the server's public base URL setting)",
            first.origin().ascii_serialization()
        ),
    })
}

pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.into_owned()
}

/// A response body as JSON, or an error quoting the start of the body.
pub fn parse_json(url: &Url, body: &[u8]) -> Result<Value, ConnectorError> {
    serde_json::from_slice(body).map_err(|e| ConnectorError::InvalidResponse {
        url: url.to_string(),
        message: format!("body is not JSON ({e}); it starts with {:?}", snippet(body)),
    })
}

//! `http_json`: records from a JSON REST API, page after page.
//!
//! Requests, retries and `auth` are the shared [`crate::http`] client's: each request has its
//! own timeout; timeouts, refused connections, 429 and 5xx are retried with exponential backoff
//! (honouring `Retry-After`), any other 4xx fails the run at once, and a body that is not JSON
//! fails the run with the start of the body in the message.

mod pagination;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;

pub use crate::http::{Auth, HttpMethod};
use crate::http::{ClientOptions, HttpClient};
use crate::record::{Payload, RawBatch, RawRecord, ReadContext, SourceEvent, SourceStream};
use crate::registry::BuildContext;
use crate::retry::RetryConfig;
use crate::{Connector, ConnectorError};
pub use pagination::Pagination;

/// Unknown keys are not refused here but reported by the hub's config check (with their
/// line), which collects every one of them instead of stopping at the first.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpJsonConfig {
    pub url: String,
    #[serde(default)]
    pub method: HttpMethod,
    /// Query parameters added to the first request (a next-link carries its own).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Extra request headers (no secrets here: use `auth`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body for `method = "post"`.
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default)]
    pub auth: Option<Auth>,
    /// JSON pointer to the array of records in each response ("" = the body is the array).
    #[serde(default)]
    pub records_at: String,
    #[serde(default)]
    pub pagination: Option<Pagination>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    #[serde(default)]
    pub retry: RetryConfig,
    /// A guard against a server that never stops paginating.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// Incremental reads: the pipeline's cursor (the largest value of its cursor field
    /// committed so far) is sent in this query parameter, e.g. `updated_since`.
    #[serde(default)]
    pub cursor_param: Option<String>,
}

fn default_timeout() -> u64 {
    30
}
fn default_max_pages() -> u32 {
    10_000
}

impl HttpJsonConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        problems.extend(crate::http::validate_url("url", &self.url));
        if !self.records_at.is_empty() && !self.records_at.starts_with('/') {
            problems.push(format!(
                "records_at {:?} must be a JSON pointer starting with '/' (or empty)",
                self.records_at
            ));
        }
        if self.body.is_some() && self.method != HttpMethod::Post {
            problems.push("body is sent only with method = \"post\"".into());
        }
        problems.extend(crate::http::validate_settings(
            &self.headers,
            self.timeout_seconds,
            &self.retry,
        ));
        if let Some(p) = &self.pagination {
            problems.extend(p.validate());
        }
        problems
    }

    pub fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Connector>, ConnectorError> {
        let problems = self.validate();
        if !problems.is_empty() {
            return Err(ConnectorError::Config(problems.join("; ")));
        }
        let http = HttpClient::new(ClientOptions {
            accept: "application/json",
            headers: self.headers.clone(),
            auth: self.auth.clone(),
            timeout_seconds: self.timeout_seconds,
            retry: self.retry.clone(),
            describe_error: None,
        })?;
        Ok(Box::new(HttpJsonConnector {
            inner: Arc::new(Inner {
                config: self.clone(),
                http,
            }),
        }))
    }
}

struct Inner {
    config: HttpJsonConfig,
    http: HttpClient,
}

struct HttpJsonConnector {
    inner: Arc<Inner>,
}

impl Connector for HttpJsonConnector {
    fn read(&self, context: ReadContext) -> SourceStream {
        let inner = self.inner.clone();
        async_stream::try_stream! {
            let config = &inner.config;
            let resume = pagination::resume_token(config, context.checkpoint.as_ref());
            let cursor = context.cursor.as_ref().zip(config.cursor_param.as_deref());
            let start = pagination::start_url(config, cursor)?;
            let mut request = pagination::first_request(config, &start, resume.as_deref())?;
            let mut last_token = resume;
            let mut page = 0u32;
            while let Some(url) = request.take() {
                page += 1;
                if page > config.max_pages {
                    Err(ConnectorError::TooManyPages { url: config.url.clone(), pages: config.max_pages })?;
                }
                let body = inner.http.send(config.method, &url, config.body.as_ref()).await?;
                let document = crate::http::parse_json(&url, &body)?;
                let Some(Value::Array(items)) = document.pointer(&config.records_at) else {
                    Err(ConnectorError::InvalidResponse {
                        url: url.to_string(),
                        message: format!("no array of records at {:?}", config.records_at),
                    })?;
                    unreachable!()
                };
                let count = items.len();
                let records = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| RawRecord {
                        location: format!("page {page} {}/{i}", config.records_at),
                        payload: Payload::Json(v.clone()),
                    })
                    .collect();
                yield SourceEvent::Batch(RawBatch {
                    source: url.as_str().into(),
                    records,
                    bytes: body.len() as u64,
                });
                if let Some(token) = pagination::token_in(config, &document) {
                    last_token = Some(token);
                }
                request = pagination::next_request(config, &start, &url, &document, count)?;
            }
            if let Some(token) = last_token.filter(|_| pagination::resumes(config)) {
                yield SourceEvent::Checkpoint(serde_json::json!({ "token": token }));
            }
        }
        .boxed()
    }
}

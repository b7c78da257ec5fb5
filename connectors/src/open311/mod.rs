//! `open311`: service requests (citizen reports) from an Open311 GeoReport v2 server.
//!
//! `GET [endpoint]/requests.json?start_date=..&end_date=..` for consecutive time windows from
//! where the last run left off to now, one request per window. GeoReport servers cap the
//! results of one request (commonly 1000, or 90 days), so a window that comes back with
//! `max_results_per_request` items is split in half and asked again — down to `min_window`,
//! where the run fails rather than store a silent gap.
//!
//! The cursor is `updated_datetime`: the checkpoint is the largest one read, and the next run
//! starts there (minus `overlap`). The spec says `start_date`/`end_date` filter on
//! `requested_datetime`, but many servers (the citizen-feedback app among them) filter on the
//! update time, or take other parameter names: `start_param` and `end_param` name them. With a
//! server that filters on `requested_datetime`, a later update of an older request is not read.

mod window;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Offset, SecondsFormat, Utc};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::http::{Auth, ClientOptions, HttpClient};
use crate::record::{Payload, RawBatch, RawRecord, ReadContext, SourceEvent, SourceStream};
use crate::registry::BuildContext;
use crate::retry::RetryConfig;
use crate::{Connector, ConnectorError};
use window::{Span, Windows};

/// Unknown keys are not refused here but reported by the hub's config check (with their
/// line), which collects every one of them instead of stopping at the first.
#[derive(Debug, Clone, Deserialize)]
pub struct Open311Config {
    /// The GeoReport v2 base URL; requests are read from `[endpoint]/requests.json`.
    pub endpoint: String,
    #[serde(default)]
    pub jurisdiction_id: Option<String>,
    /// `open`, `closed` or a comma-separated list, as the server takes it.
    #[serde(default)]
    pub status: Option<String>,
    /// One service code or a comma-separated list.
    #[serde(default)]
    pub service_code: Option<String>,
    /// Other query parameters (`extensions = "true"`); no secrets here: use `auth`.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default = "default_start_param")]
    pub start_param: String,
    #[serde(default = "default_end_param")]
    pub end_param: String,
    /// Where the first run starts: a date (`2025-01-01`, midnight at `utc_offset`) or an
    /// instant with offset.
    pub initial_start: String,
    /// Read up to this instant instead of now (a backfill of a closed period).
    #[serde(default)]
    pub until: Option<String>,
    /// Length of one request's window.
    #[serde(default = "default_window")]
    pub window: String,
    /// Windows are not split into halves shorter than this.
    #[serde(default = "default_min_window")]
    pub min_window: String,
    /// The server's cap of results per request: a window with this many is split.
    #[serde(default = "default_cap")]
    pub max_results_per_request: usize,
    /// Re-read this much before the checkpoint (`"10m"`), for servers that publish updates late.
    #[serde(default)]
    pub overlap: Option<String>,
    /// The offset the window bounds are written in.
    #[serde(default = "default_offset")]
    pub utc_offset: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub auth: Option<Auth>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_start_param() -> String {
    "start_date".into()
}
fn default_end_param() -> String {
    "end_date".into()
}
fn default_window() -> String {
    "7d".into()
}
fn default_min_window() -> String {
    "1m".into()
}
fn default_cap() -> usize {
    1000
}
fn default_offset() -> String {
    "+07:00".into()
}
fn default_timeout() -> u64 {
    30
}

/// The settings in the form `read` uses them.
#[derive(Debug)]
struct Plan {
    requests_url: Url,
    offset: FixedOffset,
    initial_start: DateTime<FixedOffset>,
    until: Option<DateTime<FixedOffset>>,
    window: chrono::Duration,
    min_window: chrono::Duration,
    overlap: chrono::Duration,
}

impl Open311Config {
    fn plan(&self) -> Result<Plan, Vec<String>> {
        let mut problems = Vec::new();
        let duration =
            |key: &str, text: &str, problems: &mut Vec<String>| match crate::time::parse_duration(
                text,
            )
            .and_then(|d| chrono::Duration::from_std(d).map_err(|e| e.to_string()))
            {
                Ok(d) => Some(d),
                Err(e) => {
                    problems.push(format!("{key}: {e}"));
                    None
                }
            };
        let window = duration("window", &self.window, &mut problems);
        let min_window = duration("min_window", &self.min_window, &mut problems);
        let overlap = match &self.overlap {
            Some(text) => duration("overlap", text, &mut problems),
            None => Some(chrono::Duration::zero()),
        };
        if let (Some(w), Some(m)) = (window, min_window) {
            if m < chrono::Duration::seconds(1) {
                problems.push("min_window must be at least 1s".into());
            }
            if w < m {
                problems.push(format!(
                    "window {:?} is shorter than min_window {:?}",
                    self.window, self.min_window
                ));
            }
        }
        let offset = crate::time::parse_offset(&self.utc_offset);
        if offset.is_none() {
            problems.push(format!(
                "utc_offset {:?} is not an offset like \"+07:00\"",
                self.utc_offset
            ));
        }
        let utc = Utc.fix();
        let initial_start =
            crate::time::parse_date_or_instant(&self.initial_start, offset.unwrap_or(utc));
        if initial_start.is_none() {
            problems.push(format!(
                "initial_start {:?} is neither a date (2025-01-01) nor an instant with offset (2025-01-01T00:00:00+07:00)",
                self.initial_start
            ));
        }
        let until = match &self.until {
            None => None,
            Some(text) => {
                let t = crate::time::parse_date_or_instant(text, offset.unwrap_or(utc));
                if t.is_none() {
                    problems.push(format!("until {text:?} is neither a date nor an instant"));
                }
                t
            }
        };
        if self.max_results_per_request == 0 {
            problems.push("max_results_per_request must be at least 1".into());
        }
        for (key, name) in [
            ("start_param", &self.start_param),
            ("end_param", &self.end_param),
        ] {
            if name.is_empty() {
                problems.push(format!("{key} is empty"));
            }
        }
        if self.start_param == self.end_param {
            problems.push("start_param and end_param are the same parameter".into());
        }
        for key in self.query.keys() {
            if key == &self.start_param
                || key == &self.end_param
                || ["jurisdiction_id", "status", "service_code"].contains(&key.as_str())
            {
                problems.push(format!(
                    "query.{key} is set by the connector (use the setting of that name)"
                ));
            }
        }
        let requests_url = match crate::http::validate_url("endpoint", &self.endpoint) {
            Some(problem) => {
                problems.push(problem);
                None
            }
            None => Url::parse(&format!(
                "{}/requests.json",
                self.endpoint.trim_end_matches('/')
            ))
            .map_err(|e| problems.push(format!("endpoint {:?}: {e}", self.endpoint)))
            .ok(),
        };
        problems.extend(crate::http::validate_settings(
            &self.headers,
            self.timeout_seconds,
            &self.retry,
        ));
        match (
            problems.is_empty(),
            requests_url,
            offset,
            initial_start,
            window,
            min_window,
            overlap,
        ) {
            (
                true,
                Some(requests_url),
                Some(offset),
                Some(initial_start),
                Some(w),
                Some(m),
                Some(o),
            ) => Ok(Plan {
                requests_url,
                offset,
                initial_start,
                until,
                window: w,
                min_window: m,
                overlap: o,
            }),
            _ => Err(problems),
        }
    }

    pub fn validate(&self) -> Vec<String> {
        self.plan().err().unwrap_or_default()
    }

    pub fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Connector>, ConnectorError> {
        let plan = self
            .plan()
            .map_err(|problems| ConnectorError::Config(problems.join("; ")))?;
        let http = HttpClient::new(ClientOptions {
            accept: "application/json",
            headers: self.headers.clone(),
            auth: self.auth.clone(),
            timeout_seconds: self.timeout_seconds,
            retry: self.retry.clone(),
            describe_error: Some(describe_error_body),
        })?;
        Ok(Box::new(Open311Connector {
            inner: Arc::new(Inner {
                config: self.clone(),
                plan,
                http,
            }),
        }))
    }
}

struct Inner {
    config: Open311Config,
    plan: Plan,
    http: HttpClient,
}

struct Open311Connector {
    inner: Arc<Inner>,
}

impl Inner {
    /// The checkpoint's `updated_datetime`, else the pipeline's cursor when it is an instant.
    fn since(&self, context: &ReadContext) -> Option<String> {
        let from_checkpoint = context
            .checkpoint
            .as_ref()
            .and_then(|c| c.get("updated_datetime"))
            .and_then(Value::as_str);
        let from_cursor = context.cursor.as_ref().and_then(Value::as_str);
        from_checkpoint
            .or(from_cursor)
            .filter(|t| crate::time::parse_instant(t).is_some())
            .map(str::to_string)
    }

    fn window_url(&self, span: &Span) -> Url {
        let config = &self.config;
        let stamp = |t: DateTime<FixedOffset>| {
            t.with_timezone(&self.plan.offset)
                .to_rfc3339_opts(SecondsFormat::Secs, false)
        };
        let mut url = self.plan.requests_url.clone();
        {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in [
                ("jurisdiction_id", &config.jurisdiction_id),
                ("status", &config.status),
                ("service_code", &config.service_code),
            ] {
                if let Some(v) = value {
                    pairs.append_pair(key, v);
                }
            }
            for (k, v) in &config.query {
                pairs.append_pair(k, v);
            }
            pairs.append_pair(&config.start_param, &stamp(span.start));
            pairs.append_pair(&config.end_param, &stamp(span.end));
        }
        url
    }
}

impl Connector for Open311Connector {
    fn read(&self, context: ReadContext) -> SourceStream {
        let inner = self.inner.clone();
        async_stream::try_stream! {
            let plan = &inner.plan;
            let cap = inner.config.max_results_per_request;
            let since = inner.since(&context);
            let start = since
                .as_deref()
                .and_then(crate::time::parse_instant)
                .and_then(|t| t.checked_sub_signed(plan.overlap))
                .unwrap_or(plan.initial_start);
            // Whole seconds: the bounds are sent without fractions, and a split must not create
            // a bound the server cannot be asked for.
            let now = Utc::now().with_timezone(&plan.offset);
            let end = plan.until.map_or(now, |u| u.min(now));
            let end = end - chrono::Duration::nanoseconds(i64::from(end.timestamp_subsec_nanos()));
            let mut windows = Windows::new(start, end, plan.window, plan.min_window);
            let mut updated = since;
            while let Some(span) = windows.next_span() {
                let url = inner.window_url(&span);
                let body = inner.http.get(&url).await?;
                let document = crate::http::parse_json(&url, &body)?;
                let items = requests_in(&url, document)?;
                if items.len() >= cap {
                    if !windows.split(span) {
                        Err(ConnectorError::WindowFull {
                            url: url.to_string(),
                            limit: cap,
                            window: inner.config.min_window.clone(),
                        })?;
                    }
                    tracing::info!(%url, items = items.len(), "window at the server's cap: split in half");
                    continue;
                }
                let mut records = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let location = format!("{} /{i}", span.label());
                    if !item.is_object() {
                        records.push(RawRecord {
                            location,
                            payload: Payload::Unreadable {
                                raw: item.to_string(),
                                error: "a service request is not a JSON object".into(),
                            },
                        });
                        continue;
                    }
                    // A time beyond the window end (clock skew, a typo like 2205) is not taken
                    // as the cursor, or one bad record would stop all later reads.
                    if let Some(t) = item.get("updated_datetime").and_then(Value::as_str)
                        && crate::time::parse_instant(t).is_some_and(|t| t <= end)
                    {
                        updated = crate::time::later(updated, t);
                    }
                    records.push(RawRecord { location, payload: Payload::Json(item) });
                }
                yield SourceEvent::Batch(RawBatch {
                    source: url.as_str().into(),
                    records,
                    bytes: body.len() as u64,
                });
            }
            if let Some(t) = updated {
                yield SourceEvent::Checkpoint(json!({ "updated_datetime": t }));
            }
        }
        .boxed()
    }
}

/// The service requests of a response: a JSON array. An array of `{code, description}`
/// objects is GeoReport's error form, which some servers send with HTTP 200.
fn requests_in(url: &Url, document: Value) -> Result<Vec<Value>, ConnectorError> {
    match document {
        Value::Array(items) => {
            if let Some(message) = georeport_errors(&items) {
                return Err(ConnectorError::Reported {
                    url: url.to_string(),
                    message,
                });
            }
            Ok(items)
        }
        other => Err(ConnectorError::InvalidResponse {
            url: url.to_string(),
            message: format!(
                "expected a JSON array of service requests, got {}",
                crate::http::snippet(other.to_string().as_bytes())
            ),
        }),
    }
}

/// `[{"code": 400, "description": "..."}]` as `GeoReport error 400: ...`; `None` when the
/// items are not all errors (a service request has a `service_request_id`).
fn georeport_errors(items: &[Value]) -> Option<String> {
    let is_error = |v: &Value| {
        v.get("description").is_some()
            && v.get("code").is_some()
            && v.get("service_request_id").is_none()
    };
    if items.is_empty() || !items.iter().all(is_error) {
        return None;
    }
    let parts: Vec<String> = items
        .iter()
        .map(|v| {
            let text = |key: &str| match v.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            format!("GeoReport error {}: {}", text("code"), text("description"))
        })
        .collect();
    Some(parts.join("; "))
}

fn describe_error_body(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Value>(body).ok()? {
        Value::Array(items) => georeport_errors(&items),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_arrays_are_told_from_requests() {
        let errors = vec![json!({"code": 400, "description": "start_date invalid"})];
        assert_eq!(
            georeport_errors(&errors).as_deref(),
            Some("GeoReport error 400: start_date invalid")
        );
        let requests = vec![json!({"service_request_id": "1", "code": "x", "description": "d"})];
        assert!(georeport_errors(&requests).is_none());
        assert!(georeport_errors(&[]).is_none());
    }

    #[test]
    fn settings_are_checked() {
        let config: Open311Config = serde_json::from_value(json!({
            "endpoint": "ftp://x", "initial_start": "01/01/2025", "window": "1h",
            "min_window": "2h", "utc_offset": "ICT", "max_results_per_request": 0,
            "query": {"start_date": "x"}
        }))
        .unwrap();
        let problems = config.validate().join("\n");
        for expected in [
            "endpoint scheme",
            "initial_start",
            "shorter than min_window",
            "utc_offset",
            "max_results_per_request",
            "query.start_date",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} missing in {problems}"
            );
        }
        let good: Open311Config = serde_json::from_value(json!({
            "endpoint": "https://x.invalid/open311/v2/", "initial_start": "2025-01-01"
        }))
        .unwrap();
        assert!(good.validate().is_empty(), "{:?}", good.validate());
        assert_eq!(
            good.plan().unwrap().requests_url.as_str(),
            "https://x.invalid/open311/v2/requests.json"
        );
    }
}

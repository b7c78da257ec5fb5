//! `fhir`: resources from an HL7 FHIR R4 server's REST search, flattened into rows.
//!
//! One search, `GET [base_url]/[resource_type]?[query]&_count=..&_sort=_lastUpdated`, followed
//! page by page through `Bundle.link[relation=next]` (one page = one batch). Each matching
//! `entry.resource` becomes one record, its columns taken from the resource by the paths of
//! `[source.fields]` (see [`path`]). `_include`d entries and resources of other types are not
//! records; an OperationOutcome with an error or fatal issue fails the run.
//!
//! Incremental reads use `_lastUpdated`: the checkpoint is the largest `meta.lastUpdated` read,
//! and the next run asks for `_lastUpdated=gt<checkpoint>`, or with `overlap` for
//! `_lastUpdated=ge<checkpoint - overlap>` (re-reading the overlap; give the dataset a key).

mod bundle;
pub mod path;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::http::{Auth, ClientOptions, HttpClient};
use crate::record::{RawBatch, ReadContext, SourceEvent, SourceStream};
use crate::registry::BuildContext;
use crate::retry::RetryConfig;
use crate::{Connector, ConnectorError};
use path::FieldPath;

/// Unknown keys are not refused here but reported by the hub's config check (with their
/// line), which collects every one of them instead of stopping at the first.
#[derive(Debug, Clone, Deserialize)]
pub struct FhirConfig {
    /// The server's base URL (`https://fhir.soyte.example.invalid/fhir`).
    pub base_url: String,
    /// The resource type searched (`Location`).
    pub resource_type: String,
    /// Search parameters (`{ "address-state" = "Bình Phước" }`, a list for a repeated one:
    /// `{ _include = ["Location:organization", "Location:partof"] }`), sent on the first
    /// request; next links carry their own.
    #[serde(default)]
    pub query: BTreeMap<String, QueryValue>,
    /// Page size asked for with `_count` (the server may give fewer).
    #[serde(default = "default_count")]
    pub count: u32,
    /// Column name → path into the resource. Empty: the resource itself is the record.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Ask for `_sort=_lastUpdated`.
    #[serde(default = "yes")]
    pub sort: bool,
    /// Read only what changed since the last run, by `_lastUpdated`.
    #[serde(default = "yes")]
    pub incremental: bool,
    /// Re-read this much before the checkpoint (`"5m"`) for servers whose `lastUpdated` can
    /// become visible out of order.
    #[serde(default)]
    pub overlap: Option<String>,
    /// Extra request headers (no secrets here: use `auth`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub auth: Option<Auth>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    #[serde(default)]
    pub retry: RetryConfig,
    /// A guard against a server that never stops paginating.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
}

/// A search parameter's value, or its values when it is repeated.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum QueryValue {
    One(String),
    Many(Vec<String>),
}

impl QueryValue {
    fn values(&self) -> &[String] {
        match self {
            QueryValue::One(v) => std::slice::from_ref(v),
            QueryValue::Many(vs) => vs,
        }
    }
}

fn default_count() -> u32 {
    100
}
fn yes() -> bool {
    true
}
fn default_timeout() -> u64 {
    30
}
fn default_max_pages() -> u32 {
    10_000
}

impl FhirConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        problems.extend(crate::http::validate_url("base_url", &self.base_url));
        let mut chars = self.resource_type.chars();
        if !(chars.next().is_some_and(|c| c.is_ascii_uppercase())
            && chars.all(|c| c.is_ascii_alphanumeric()))
        {
            problems.push(format!(
                "resource_type {:?} is not a FHIR resource type (like \"Location\")",
                self.resource_type
            ));
        }
        if self.count == 0 {
            problems.push("count must be at least 1".into());
        }
        if self.max_pages == 0 {
            problems.push("max_pages must be at least 1".into());
        }
        for key in self.query.keys() {
            let managed = match key.as_str() {
                "_count" => Some("set count instead"),
                "_sort" if self.sort => Some("set sort = false to send your own _sort"),
                "_lastUpdated" if self.incremental => {
                    Some("it is the incremental cursor; set incremental = false to send your own")
                }
                _ => None,
            };
            if let Some(hint) = managed {
                problems.push(format!("query.{key} is set by the connector: {hint}"));
            }
        }
        for (column, text) in &self.fields {
            if column.is_empty() {
                problems.push("fields: a column name is empty".into());
            }
            if let Err(e) = FieldPath::parse(text) {
                problems.push(format!("fields.{column}: {e}"));
            }
        }
        if let Some(overlap) = &self.overlap {
            if let Err(e) = crate::time::parse_duration(overlap) {
                problems.push(format!("overlap: {e}"));
            }
            if !self.incremental {
                problems.push("overlap applies only with incremental = true".into());
            }
        }
        problems.extend(crate::http::validate_settings(
            &self.headers,
            self.timeout_seconds,
            &self.retry,
        ));
        problems
    }

    pub fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Connector>, ConnectorError> {
        let problems = self.validate();
        if !problems.is_empty() {
            return Err(ConnectorError::Config(problems.join("; ")));
        }
        let fields = self
            .fields
            .iter()
            .map(|(column, text)| {
                FieldPath::parse(text)
                    .map(|p| (column.clone(), p))
                    .map_err(ConnectorError::Config)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let overlap = match &self.overlap {
            None => None,
            Some(text) => Some(
                crate::time::parse_duration(text)
                    .map_err(|e| ConnectorError::Config(format!("overlap: {e}")))?,
            ),
        };
        let http = HttpClient::new(ClientOptions {
            accept: "application/fhir+json",
            headers: self.headers.clone(),
            auth: self.auth.clone(),
            timeout_seconds: self.timeout_seconds,
            retry: self.retry.clone(),
            describe_error: Some(bundle::describe_error_body),
        })?;
        Ok(Box::new(FhirConnector {
            inner: Arc::new(Inner {
                config: self.clone(),
                fields,
                overlap,
                http,
            }),
        }))
    }
}

struct Inner {
    config: FhirConfig,
    fields: Vec<(String, FieldPath)>,
    overlap: Option<std::time::Duration>,
    http: HttpClient,
}

struct FhirConnector {
    inner: Arc<Inner>,
}

impl Inner {
    /// Where the last committed run left off: the checkpoint, else the pipeline's cursor when
    /// it is an instant (a column mapped from `meta.lastUpdated`). Anything unreadable means
    /// "read everything" — a keyed dataset absorbs the re-read.
    fn since(&self, context: &ReadContext) -> Option<String> {
        if !self.config.incremental {
            return None;
        }
        let from_checkpoint = context
            .checkpoint
            .as_ref()
            .and_then(|c| c.get("last_updated"))
            .and_then(Value::as_str);
        let from_cursor = context.cursor.as_ref().and_then(Value::as_str);
        from_checkpoint
            .or(from_cursor)
            .filter(|t| crate::time::parse_instant(t).is_some())
            .map(str::to_string)
    }

    fn search_url(&self, since: Option<&str>) -> Result<Url, ConnectorError> {
        let config = &self.config;
        let text = format!(
            "{}/{}",
            config.base_url.trim_end_matches('/'),
            config.resource_type
        );
        let mut url = Url::parse(&text)
            .map_err(|e| ConnectorError::Config(format!("base_url {:?}: {e}", config.base_url)))?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &config.query {
                for value in v.values() {
                    pairs.append_pair(k, value);
                }
            }
            pairs.append_pair("_count", &config.count.to_string());
            if config.sort {
                pairs.append_pair("_sort", "_lastUpdated");
            }
            if let Some(since) = since {
                pairs.append_pair("_lastUpdated", &self.since_param(since));
            }
        }
        Ok(url)
    }

    /// `gt<since>`, or `ge<since - overlap>`: FHIR's comparison prefixes on `_lastUpdated`.
    fn since_param(&self, since: &str) -> String {
        let start = self
            .overlap
            .and_then(|o| chrono::Duration::from_std(o).ok())
            .zip(crate::time::parse_instant(since))
            .and_then(|(o, t)| t.checked_sub_signed(o));
        match start {
            Some(t) => format!(
                "ge{}",
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
            None => format!("gt{since}"),
        }
    }
}

impl Connector for FhirConnector {
    fn read(&self, context: ReadContext) -> SourceStream {
        let inner = self.inner.clone();
        async_stream::try_stream! {
            let config = &inner.config;
            let since = inner.since(&context);
            let first = inner.search_url(since.as_deref())?;
            let shape = bundle::Shape { resource_type: &config.resource_type, fields: &inner.fields };
            let mut last_updated = since;
            let mut request = Some(first.clone());
            let mut page = 0u32;
            while let Some(url) = request.take() {
                page += 1;
                if page > config.max_pages {
                    Err(ConnectorError::TooManyPages { url: first.to_string(), pages: config.max_pages })?;
                }
                let body = inner.http.get(&url).await?;
                let document = crate::http::parse_json(&url, &body)?;
                let read = bundle::read_page(&document, &url, page, &shape)?;
                if let Some(t) = read.last_updated.as_deref() {
                    last_updated = crate::time::later(last_updated, t);
                }
                if let Some(next) = &read.next {
                    crate::http::check_same_origin(&first, next, &url)?;
                }
                yield SourceEvent::Batch(RawBatch {
                    source: url.as_str().into(),
                    records: read.records,
                    bytes: body.len() as u64,
                });
                request = read.next;
            }
            if config.incremental
                && let Some(t) = last_updated
            {
                yield SourceEvent::Checkpoint(json!({ "last_updated": t }));
            }
        }
        .boxed()
    }
}

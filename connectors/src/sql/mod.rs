//! `postgres` and `mysql`: the rows of a configured SELECT against a department's database.
//!
//! One module serves both kinds: the settings, the incremental cursor, batching and timeouts are
//! shared; `postgres.rs` and `mysql.rs` only open the session and turn a row into JSON.
//!
//! - **Streaming.** Rows are read from the server as the hub consumes batches (the driver reads
//!   the socket row by row), so at most one batch is in memory; the server waits on TCP
//!   backpressure while the hub stores a batch.
//! - **Read-only.** The query runs inside a read-only transaction, so a mistaken query (or a
//!   function with side effects) cannot modify the department's database.
//! - **Incremental.** With `cursor_column`, the user's query is wrapped as
//!   `SELECT * FROM (<query>) AS iochub_src WHERE <cursor> > ? ORDER BY <cursor>`; the last
//!   non-null cursor value yielded (the maximum, given the order) is the checkpoint. With an
//!   `overlap` the predicate is `>= cursor - overlap`: rows committed late with a cursor value
//!   a little behind the maximum are still picked up, and the hub's upsert by key absorbs the
//!   few rows delivered twice. The cursor value is always bound as a parameter.
//! - **Secrets.** The connection URL comes from the environment variable named by `url_env`
//!   and never appears in messages or in `_source` (only scheme, host, port and database do).

mod cursor;
mod mysql;
mod postgres;
mod values;

use std::sync::Arc;
use std::time::Duration;

use chrono::FixedOffset;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::record::{Payload, RawBatch, RawRecord, ReadContext, SourceEvent, SourceStream};
use crate::registry::BuildContext;
use crate::{Connector, ConnectorError};
pub use cursor::Overlap;
use cursor::{Bound, CursorKind};

/// Which server the settings are for; chosen by the pipeline's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    /// MySQL and MariaDB.
    Mysql,
}

impl Dialect {
    fn kind(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
        }
    }

    /// Quotes an identifier: `"name"` for PostgreSQL, `` `name` `` for MySQL, the quote
    /// character doubled inside.
    pub fn quote_identifier(self, name: &str) -> String {
        let q = match self {
            Dialect::Postgres => '"',
            Dialect::Mysql => '`',
        };
        let mut out = String::with_capacity(name.len() + 2);
        out.push(q);
        for c in name.chars() {
            if c == q {
                out.push(q);
            }
            out.push(c);
        }
        out.push(q);
        out
    }

    fn placeholder(self) -> &'static str {
        match self {
            Dialect::Postgres => "$1",
            Dialect::Mysql => "?",
        }
    }
}

/// Settings of the `postgres` and `mysql` kinds (the same keys for both).
///
/// Unknown keys are not refused here but reported by the hub's config check (with their
/// line), which collects every one of them instead of stopping at the first.
#[derive(Debug, Clone, Deserialize)]
pub struct SqlConfig {
    /// Environment variable holding the connection URL (`postgres://user:pw@host/db`,
    /// `mysql://user:pw@host/db`).
    pub url_env: String,
    /// The SELECT to run. With `cursor_column` it is wrapped in a subquery.
    pub query: String,
    /// Rows per batch handed to the hub.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// A column of the query's result whose largest value read is the checkpoint.
    #[serde(default)]
    pub cursor_column: Option<String>,
    /// How far behind the checkpoint the next run starts (see [`Overlap`]).
    #[serde(default)]
    pub overlap: Option<Overlap>,
    /// The offset given to timestamps without a time zone (`+07:00`, `Z`).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u64,
    /// Bounds the whole query, from the first statement to the last row.
    #[serde(default = "default_query_timeout")]
    pub query_timeout_seconds: u64,
}

fn default_batch_size() -> usize {
    4096
}
fn default_time_zone() -> String {
    // Viet Nam (Asia/Ho_Chi_Minh) has no daylight saving time, so a fixed offset is exact.
    "+07:00".into()
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_query_timeout() -> u64 {
    300
}

impl SqlConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !is_env_name(&self.url_env) {
            // The value is not repeated: it may be the URL itself, password included.
            problems.push(
                "url_env must name an environment variable (letters, digits, _), not hold the URL"
                    .into(),
            );
        }
        if trimmed_query(&self.query).is_empty() {
            problems.push("query is empty".into());
        }
        if self.batch_size == 0 {
            problems.push("batch_size must be at least 1".into());
        }
        if self.connect_timeout_seconds == 0 {
            problems.push("connect_timeout_seconds must be at least 1".into());
        }
        if self.query_timeout_seconds == 0 {
            problems.push("query_timeout_seconds must be at least 1".into());
        }
        if let Err(e) = values::parse_offset(&self.time_zone) {
            problems.push(e);
        }
        match (&self.cursor_column, &self.overlap) {
            (Some(c), _) if c.trim().is_empty() => {
                problems.push("cursor_column is empty".into());
            }
            (None, Some(_)) => problems.push("overlap needs cursor_column".into()),
            _ => {}
        }
        if let Some(o) = &self.overlap
            && let Err(e) = o.check()
        {
            problems.push(e);
        }
        problems
    }

    pub fn build(
        &self,
        _ctx: &BuildContext,
        dialect: Dialect,
    ) -> Result<Box<dyn Connector>, ConnectorError> {
        let problems = self.validate();
        if !problems.is_empty() {
            return Err(ConnectorError::Config(problems.join("; ")));
        }
        let offset = values::parse_offset(&self.time_zone).map_err(ConnectorError::Config)?;
        Ok(Box::new(SqlConnector {
            settings: Arc::new(Settings {
                config: self.clone(),
                dialect,
                offset,
            }),
        }))
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The query without trailing `;` and blanks, which would break the wrapping subquery.
fn trimmed_query(query: &str) -> &str {
    query
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
}

/// What a read needs, shared by the dialects.
pub(crate) struct Settings {
    config: SqlConfig,
    dialect: Dialect,
    offset: FixedOffset,
}

impl Settings {
    /// The SQL text sent: the user's query, wrapped when there is a cursor. The cursor value is
    /// never in the text, only a placeholder.
    fn sql_text(&self, bound: Option<&Bound>) -> String {
        let query = trimmed_query(&self.config.query);
        let Some(column) = &self.config.cursor_column else {
            return query.to_string();
        };
        let column = self.dialect.quote_identifier(column);
        let filter = match bound {
            None => String::new(),
            Some(b) => format!(
                " WHERE iochub_src.{column} {} {}",
                b.operator(),
                self.dialect.placeholder()
            ),
        };
        // The newline before `)` keeps a trailing `-- comment` in the user's query from
        // swallowing the rest of the statement.
        format!("SELECT * FROM ({query}\n) AS iochub_src{filter} ORDER BY iochub_src.{column}")
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.config.connect_timeout_seconds)
    }
}

/// One row turned into JSON, with the cursor column's value when it is not null.
pub(crate) struct SqlRow {
    values: Map<String, Value>,
    cursor: Option<(Value, CursorKind)>,
    /// Bytes of the values as the server sent them (for run statistics).
    bytes: u64,
}

type RowStream = BoxStream<'static, Result<SqlRow, ConnectorError>>;

/// The connection URL without user, password or parameters, for messages and `_source`.
fn redacted_target(dialect: Dialect, url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("localhost");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{host}{port}{}", u.scheme(), u.path())
        }
        Err(_) => format!("{} database", dialect.kind()),
    }
}

struct SqlConnector {
    settings: Arc<Settings>,
}

impl Connector for SqlConnector {
    fn read(&self, context: ReadContext) -> SourceStream {
        let s = self.settings.clone();
        async_stream::try_stream! {
            let config = &s.config;
            let url = match std::env::var(&config.url_env) {
                Ok(u) if !u.trim().is_empty() => u,
                _ => Err(ConnectorError::MissingEnv(config.url_env.clone()))?,
            };
            let target: Arc<str> = redacted_target(s.dialect, &url).into();
            let bound = match &config.cursor_column {
                Some(_) => cursor::start(&context, config.overlap.as_ref(), s.offset)?,
                None => None,
            };
            let seconds = config.query_timeout_seconds;
            // The server's own statement timeout normally ends a long query first, with a
            // clear error; this clock (a second later, after the connect allowance) catches
            // servers or proxies that ignore it and a network that goes silent.
            let deadline = tokio::time::Instant::now()
                + s.connect_timeout()
                + Duration::from_secs(seconds + 1);
            let mut rows: RowStream = match s.dialect {
                Dialect::Postgres => postgres::rows(s.clone(), url, target.clone(), bound),
                Dialect::Mysql => mysql::rows(s.clone(), url, target.clone(), bound),
            };
            let capacity = config.batch_size.min(4096);
            let mut records = Vec::with_capacity(capacity);
            let mut bytes = 0u64;
            let mut count = 0u64;
            let mut last_cursor = None;
            loop {
                let next = tokio::time::timeout_at(deadline, rows.next())
                    .await
                    .map_err(|_| ConnectorError::QueryTimeout { target: target.to_string(), seconds })?;
                let Some(row) = next else { break };
                let row = row?;
                count += 1;
                if row.cursor.is_some() {
                    last_cursor = row.cursor;
                }
                bytes += row.bytes;
                records.push(RawRecord {
                    location: format!("row {count}"),
                    payload: Payload::Json(Value::Object(row.values)),
                });
                if records.len() >= config.batch_size {
                    yield SourceEvent::Batch(RawBatch {
                        source: target.clone(),
                        records: std::mem::replace(&mut records, Vec::with_capacity(capacity)),
                        bytes: std::mem::take(&mut bytes),
                    });
                }
            }
            if !records.is_empty() {
                yield SourceEvent::Batch(RawBatch { source: target.clone(), records, bytes });
            }
            // No row with a cursor value: no checkpoint, and the hub keeps the previous one.
            if let Some((value, kind)) = last_cursor {
                yield SourceEvent::Checkpoint(cursor::checkpoint(value, kind));
            }
        }
        .boxed()
    }
}

/// Turns a driver error into the connector's, deciding what is worth retrying.
pub(crate) fn classify(
    error: sqlx_core::Error,
    target: &str,
    settings: &Settings,
) -> ConnectorError {
    use sqlx_core::Error as E;
    match error {
        E::Io(e) => ConnectorError::Connect {
            url: target.to_string(),
            message: e.to_string(),
        },
        E::Tls(e) => ConnectorError::Database {
            target: target.to_string(),
            message: format!("TLS: {e}"),
            transient: false,
        },
        E::Configuration(e) => ConnectorError::Config(format!(
            "the URL in {} is not usable: {e}",
            settings.config.url_env
        )),
        E::Database(e) => {
            let message = e.message().to_string();
            let (code, transient, timeout) = match settings.dialect {
                Dialect::Postgres => postgres::classify_code(e.code().as_deref(), &message),
                Dialect::Mysql => mysql::classify_code(&*e),
            };
            if timeout {
                return ConnectorError::QueryTimeout {
                    target: target.to_string(),
                    seconds: settings.config.query_timeout_seconds,
                };
            }
            ConnectorError::Database {
                target: target.to_string(),
                message: format!("{message} ({code})"),
                transient,
            }
        }
        E::ColumnDecode { index, source } => ConnectorError::Database {
            target: target.to_string(),
            message: format!("cannot decode column {index}: {source}"),
            transient: false,
        },
        other => ConnectorError::Database {
            target: target.to_string(),
            message: other.to_string(),
            transient: false,
        },
    }
}

/// Connects within `connect_timeout_seconds`; no answer in time is a transient failure.
pub(crate) async fn connect<C, F>(
    connecting: F,
    target: &str,
    settings: &Settings,
) -> Result<C, ConnectorError>
where
    F: std::future::Future<Output = Result<C, sqlx_core::Error>>,
{
    match tokio::time::timeout(settings.connect_timeout(), connecting).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(classify(e, target, settings)),
        Err(_) => Err(ConnectorError::Connect {
            url: target.to_string(),
            message: format!(
                "no answer within {} s (connect_timeout_seconds)",
                settings.config.connect_timeout_seconds
            ),
        }),
    }
}

/// An error about one column's value or type.
pub(crate) fn column_error(
    target: &str,
    column: &str,
    sql_type: &str,
    message: impl Into<String>,
) -> ConnectorError {
    ConnectorError::Column {
        target: target.to_string(),
        column: column.to_string(),
        sql_type: sql_type.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> SqlConfig {
        let value: serde_json::Value = serde_json::from_str(toml_text).unwrap();
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn identifiers_are_quoted_per_dialect() {
        assert_eq!(Dialect::Postgres.quote_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(Dialect::Mysql.quote_identifier("a`b"), "`a``b`");
    }

    #[test]
    fn query_is_wrapped_only_with_a_cursor() {
        let c = config(r#"{"url_env": "DB_URL", "query": "SELECT * FROM t;  "}"#);
        let s = Settings {
            config: c.clone(),
            dialect: Dialect::Postgres,
            offset: values::parse_offset("+07:00").unwrap(),
        };
        assert_eq!(s.sql_text(None), "SELECT * FROM t");
        let mut c = c;
        c.cursor_column = Some("updated_at".into());
        let s = Settings {
            config: c,
            dialect: Dialect::Mysql,
            ..s
        };
        assert_eq!(
            s.sql_text(None),
            "SELECT * FROM (SELECT * FROM t\n) AS iochub_src ORDER BY iochub_src.`updated_at`"
        );
        let b = Bound {
            value: cursor::BoundValue::Int(5),
            inclusive: false,
        };
        assert_eq!(
            s.sql_text(Some(&b)),
            "SELECT * FROM (SELECT * FROM t\n) AS iochub_src WHERE iochub_src.`updated_at` > ? ORDER BY iochub_src.`updated_at`"
        );
    }

    #[test]
    fn validate_reports_every_problem() {
        let c = config(
            r#"{"url_env": "postgres://u:p@h/db", "query": " ; ", "batch_size": 0,
                "time_zone": "Asia/Hanoi", "overlap": "5 parsecs", "query_timeout_seconds": 0}"#,
        );
        let problems = c.validate();
        assert_eq!(problems.len(), 7, "{problems:?}");
        assert!(problems[0].contains("url_env"));
        assert!(
            problems.iter().all(|p| !p.contains("u:p@h")),
            "a URL put in url_env is not repeated: {problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("overlap needs cursor_column"))
        );
        assert!(problems.iter().any(|p| p.contains("time_zone")));
        assert!(problems.iter().any(|p| p.contains("5 parsecs")));
    }

    #[test]
    fn target_hides_credentials() {
        assert_eq!(
            redacted_target(
                Dialect::Postgres,
                "postgres://u:secret@db.local:5433/hoso?sslmode=require"
            ),
            "postgres://db.local:5433/hoso"
        );
        assert_eq!(
            redacted_target(Dialect::Mysql, "not a url"),
            "mysql database"
        );
    }
}

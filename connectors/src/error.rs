use std::path::PathBuf;

/// Why a connector could not read its source. `is_transient` tells the hub whether trying again
/// later may help.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("invalid connector settings: {0}")]
    Config(String),
    #[error("environment variable {0} is not set (connector secrets come from the environment)")]
    MissingEnv(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that is not a workbook, or a workbook without the configured sheet.
    #[error("cannot read workbook {path}: {message}")]
    Workbook { path: PathBuf, message: String },
    #[error("request to {url} timed out after {seconds} s")]
    Timeout { url: String, seconds: u64 },
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} returned an invalid response: {message}")]
    InvalidResponse { url: String, message: String },
    #[error(
        "too many pages from {url}: stopped after {pages} (raise max_pages if this is expected)"
    )]
    TooManyPages { url: String, pages: u32 },
    /// A database query ran past its `query_timeout_seconds` (cut by the server's statement
    /// timeout or, failing that, by the connector's own clock).
    #[error("query on {target} timed out after {seconds} s (query_timeout_seconds)")]
    QueryTimeout { target: String, seconds: u64 },
    /// The database refused or failed a statement. `transient` is decided from the server's
    /// error code: a deadlock or a server shutting down may pass, a syntax error will not.
    #[error("{target}: {message}")]
    Database {
        target: String,
        message: String,
        transient: bool,
    },
    /// A value the connector cannot turn into JSON (its SQL type is not mapped, or the server
    /// sent something that does not decode).
    #[error("column {column:?} ({sql_type}) from {target}: {message}")]
    Column {
        target: String,
        column: String,
        sql_type: String,
        message: String,
    },
    /// The source answered with an error document of its own (a FHIR OperationOutcome, a
    /// GeoReport error list) instead of data.
    #[error("{url} reported an error: {message}")]
    Reported { url: String, message: String },
    /// A window of the smallest allowed length still returned as many records as the server
    /// hands out per request, so some may be missing: failing beats storing a silent gap.
    #[error(
        "{url} returned {limit} records (the per-request cap) for a window of {window}, the smallest allowed: records may be cut off (lower min_window, or raise the server's limit and max_results_per_request)"
    )]
    WindowFull {
        url: String,
        limit: usize,
        window: String,
    },
}

impl ConnectorError {
    /// Timeouts, refused connections, HTTP 408/429 and 5xx, and database errors whose code says
    /// so (deadlocks, a server shutting down) may pass; the rest will not.
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectorError::Timeout { .. }
            | ConnectorError::Connect { .. }
            | ConnectorError::QueryTimeout { .. } => true,
            ConnectorError::Database { transient, .. } => *transient,
            ConnectorError::Status { status, .. } => {
                *status == 408 || *status == 429 || *status >= 500
            }
            _ => false,
        }
    }

    /// A short machine-readable class for run history and metrics.
    pub fn class(&self) -> &'static str {
        if self.is_transient() {
            "transient"
        } else {
            "permanent"
        }
    }
}

//! What connectors yield.

use std::sync::Arc;

use futures::stream::BoxStream;

use crate::ConnectorError;

pub type SourceStream = BoxStream<'static, Result<SourceEvent, ConnectorError>>;

#[derive(Debug)]
pub enum SourceEvent {
    /// Records read from one source object (a file, a URL).
    Batch(RawBatch),
    /// The connector's position after everything yielded so far; committed with the data.
    Checkpoint(serde_json::Value),
}

/// Where the last committed run left the source.
#[derive(Debug, Clone, Default)]
pub struct ReadContext {
    /// The connector's own checkpoint from the last committed run (files taken, a page token).
    pub checkpoint: Option<serde_json::Value>,
    /// The pipeline's cursor: the largest value of its cursor field committed so far. A
    /// connector that can ask its source for "newer than" passes it on (a query parameter, an
    /// SQL predicate); one that cannot ignores it, and the hub's upsert absorbs re-delivery.
    pub cursor: Option<serde_json::Value>,
}

#[derive(Debug)]
pub struct RawBatch {
    /// File name or URL the records came from, stored with every row as `_source`.
    pub source: Arc<str>,
    pub records: Vec<RawRecord>,
    /// Bytes read from the source for these records (for run statistics).
    pub bytes: u64,
}

#[derive(Debug)]
pub struct RawRecord {
    /// Where in the source the record was: `line 12`, `row 3`, `/entry/4`, `page 2 /items/0`.
    pub location: String,
    pub payload: Payload,
}

#[derive(Debug)]
pub enum Payload {
    /// A JSON value as the source delivered it.
    Json(serde_json::Value),
    /// One JSON value as text, not parsed yet (JSON lines): the hub parses it on its
    /// normalize threads, typed by the dataset's schema in the same pass, instead of on the
    /// connector's one reader thread. Invalid JSON is the hub's to report, with this text.
    JsonText(String),
    /// A record whose fields all arrived as text (CSV, spreadsheets); the hub types each field
    /// by the dataset's schema. Absent (empty) cells are left out.
    Text(serde_json::Map<String, serde_json::Value>),
    /// Something that could not even be read as a record; kept verbatim for quarantine.
    Unreadable { raw: String, error: String },
}

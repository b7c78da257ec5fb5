//! Source connectors of iochub.
//!
//! A connector reads one kind of source system and yields raw records; it knows nothing of
//! schemas, tables or sharing. The hub (the `iochub` crate) validates, types and stores what a
//! connector yields, and saves the connector's checkpoint in the same commit as the data.
//!
//! Adding a connector: a module with a `Config` struct (serde; unknown keys are reported by the
//! hub's config check with their line) whose
//! `build` returns a `Box<dyn Connector>`, and one line in [`registry`].

pub mod error;
pub mod excel;
pub mod fhir;
pub mod file;
pub mod http;
pub mod http_json;
mod inbox;
pub mod mqtt;
pub mod open311;
pub mod push;
pub mod record;
pub mod registry;
pub mod retry;
pub mod sql;
pub mod time;

pub use error::ConnectorError;
pub use record::{Payload, RawBatch, RawRecord, ReadContext, SourceEvent, SourceStream};
pub use registry::{BuildContext, KINDS, SourceConfig};

/// A source of records.
///
/// `read` starts one pass over the source from where the last committed run left it (see
/// [`ReadContext`]). The stream yields batches of raw records and, at most once and last, a new
/// checkpoint to commit together with those records. Records must be streamed in bounded
/// batches: a connector never holds a whole source in memory. Incremental logic that is not the
/// connector's own (remembering a field's maximum) lives in the hub, not here.
pub trait Connector: Send + Sync {
    fn read(&self, context: ReadContext) -> SourceStream;
}

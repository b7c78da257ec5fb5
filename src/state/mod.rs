//! Hub state: each pipeline's committed position (checkpoint, cursor, run sequence) and the
//! run history. Behind a small trait so several hub instances can later share a PostgreSQL
//! store; the default is SQLite in the data directory, created and migrated on open.
//!
//! The Delta table is the source of truth for what was committed: every data commit carries
//! the run sequence (as a Delta `txn`), checkpoint and cursor, and a run reconciles this store
//! with the table before it starts (see `ingest::recover`). So a crash between the data commit
//! and saving the state here loses nothing and skips nothing.

mod sqlite;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use sqlite::SqliteStateStore;

use crate::ingest::RunReport;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineState {
    /// The connector's position after the last committed run (files taken, a page token).
    pub checkpoint: Option<serde_json::Value>,
    /// The largest value of the pipeline's cursor field committed so far.
    pub cursor: Option<serde_json::Value>,
    /// Increases by one with every run that reaches its commit; a run that commits rows
    /// writes it as the pipeline's Delta `txn` version too (so numbers may skip in the table).
    pub run_sequence: i64,
    pub last_success: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state store: cannot create {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state store: stored value is unreadable: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareStatus {
    Pending,
    Approved,
    Rejected,
    Revoked,
    Expired,
}

impl ShareStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ShareStatus::Pending => "pending",
            ShareStatus::Approved => "approved",
            ShareStatus::Rejected => "rejected",
            ShareStatus::Revoked => "revoked",
            ShareStatus::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => ShareStatus::Pending,
            "approved" => ShareStatus::Approved,
            "rejected" => ShareStatus::Rejected,
            "revoked" => ShareStatus::Revoked,
            "expired" => ShareStatus::Expired,
            _ => return None,
        })
    }
}

/// A special-request share: what was asked, why, and what the managing office decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRequest {
    #[serde(flatten)]
    pub grant: crate::sharing::Grant,
    pub status: ShareStatus,
    pub filed_at: DateTime<Utc>,
    /// The providing side must decide by the end of this day (2 working days by law).
    pub decision_due: chrono::NaiveDate,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub note: Option<String>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub consumer: Option<String>,
    /// `query`, `publish`, `share_filed`, `share_approved`, `share_rejected`, `share_revoked`,
    /// `share_expired`, `auth_failed`, ...
    pub action: String,
    pub target: Option<String>,
    pub detail: serde_json::Value,
    /// `ok`, `denied`, `error`.
    pub outcome: String,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub consumer: Option<String>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
}

pub trait StateStore: Send + Sync {
    fn load(&self, pipeline: &str) -> Result<PipelineState, StateError>;
    fn save(&self, pipeline: &str, state: &PipelineState) -> Result<(), StateError>;
    fn record_run(&self, run: &RunReport) -> Result<(), StateError>;
    /// The most recent runs of a pipeline, newest first.
    fn runs(&self, pipeline: &str, limit: usize) -> Result<Vec<RunReport>, StateError> {
        self.runs_between(pipeline, None, None, limit)
    }
    /// The most recent runs of a pipeline started within `from..=to` (either end open),
    /// newest first.
    fn runs_between(
        &self,
        pipeline: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<RunReport>, StateError>;
    fn last_run(&self, pipeline: &str) -> Result<Option<RunReport>, StateError> {
        Ok(self.runs(pipeline, 1)?.into_iter().next())
    }

    fn file_share_request(&self, request: &ShareRequest) -> Result<(), StateError>;
    /// All requests, or one consumer's, newest first.
    fn share_requests(&self, consumer: Option<&str>) -> Result<Vec<ShareRequest>, StateError>;
    /// Moves a request from one of `from` to `to`; false if it was in another status.
    fn decide_share_request(
        &self,
        id: &str,
        from: &[ShareStatus],
        to: ShareStatus,
        by: &str,
        note: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, StateError>;

    /// Appends to the audit log (there is no way to change or remove a line but retention).
    fn append_audit(&self, event: &AuditEvent) -> Result<(), StateError>;
    /// Matching lines, newest first.
    fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StateError>;
    /// Removes lines older than `before` (retention); returns how many.
    fn prune_audit(&self, before: DateTime<Utc>) -> Result<usize, StateError>;

    /// Marks a quarantined record as fixed and stored again; false if it already was.
    fn resolve_quarantined(&self, resolution: &QuarantineResolution) -> Result<bool, StateError>;
    /// The resolved quarantine rows of one dataset.
    fn quarantine_resolutions(
        &self,
        dataset: &str,
    ) -> Result<Vec<QuarantineResolution>, StateError>;

    /// Where a feed subscription's target stands; `None` before its first delivery.
    fn feed_position(
        &self,
        subscription: &str,
        target: &str,
    ) -> Result<Option<FeedPosition>, StateError>;
    fn save_feed_position(
        &self,
        subscription: &str,
        target: &str,
        position: &FeedPosition,
    ) -> Result<(), StateError>;

    /// Which of `ids` were already notified for `kind` (e.g. `overdue`).
    fn notified(
        &self,
        kind: &str,
        ids: &[String],
    ) -> Result<std::collections::HashSet<String>, StateError>;
    /// Records that `ids` were notified for `kind`, so a restart does not notify them again.
    fn mark_notified(&self, kind: &str, ids: &[String]) -> Result<(), StateError>;
}

/// A quarantined record that was fixed and stored again (the quarantine row itself, known by
/// dataset, run, source and location, is never changed: the Delta table is append-only). The
/// source (file, URL) is part of the identity: one run reads several files, and `line 3` of
/// one is not `line 3` of another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineResolution {
    pub dataset: String,
    pub run_id: String,
    pub source: String,
    pub location: String,
    pub resolved_at: DateTime<Utc>,
    pub resolved_by: String,
    /// The publish run that stored the fixed record.
    pub publish_id: String,
}

/// A feed target's acknowledged position: every change up to `position` was delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedPosition {
    pub position: i64,
    /// Why delivery stopped until an admin resumes it.
    pub parked: Option<String>,
    /// The last sequence of the batch being sent (saved before its first attempt), so the
    /// batch sent again after a restart is the same batch, with the same id.
    pub inflight: Option<i64>,
}

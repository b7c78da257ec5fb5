//! The hub: configuration, tables, run state and the query engine, shared by every interface.
//! `sharing.rs` adds who may see what (and the audit of it), `publish.rs` data pushed in.

mod audit_table;
mod feed;
mod log_table;
mod publish;
mod reports;
mod runs_table;
mod sharing;

pub use feed::{FeedPage, MAX_FEED_LIMIT, SubscriptionStatus, TargetStatus};
pub use publish::{PublishRejection, PublishReport, QuarantineRowId, ReingestOutcome};
pub use reports::ReportListing;
pub use sharing::{CatalogView, Decision, ShareView};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use serde::Serialize;
use tokio::sync::{Mutex as AsyncMutex, Notify};

use crate::config::{HubConfig, Pipeline};
use crate::ingest::{self, RunReport};
use crate::metrics::Metrics;
use crate::query::computed::ComputedTable;
use crate::query::{QueryEngine, QueryError};
use crate::schedule;
use crate::state::{SqliteStateStore, StateError, StateStore};
use crate::storage::{CommitInfo, RunWriter, StorageError, TableStore, quarantine};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("no pipeline named {0:?}")]
    UnknownPipeline(String),
    #[error("pipeline {0:?} is already running")]
    AlreadyRunning(String),
    #[error("the hub is shutting down; no new runs start")]
    ShuttingDown,
    #[error(transparent)]
    State(#[from] StateError),
    /// Authenticated, but without the right to do this.
    #[error("{0}")]
    Forbidden(String),
    /// Not there, or not visible to the caller: the same answer either way.
    #[error("{0}")]
    NotFound(String),
    #[error("{field}: {message}")]
    BadRequest { field: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
}

/// The columns of the hub's own log tables, `audit` and `runs` (report definitions are
/// planned against them at config load).
pub fn log_table_schemas() -> Vec<(&'static str, arrow::datatypes::SchemaRef)> {
    vec![
        ("audit", audit_table::schema()),
        ("runs", runs_table::schema()),
    ]
}

pub struct Hub {
    pub config: HubConfig,
    pub store: TableStore,
    pub state: Arc<dyn StateStore>,
    pub engine: QueryEngine,
    pub metrics: Metrics,
    /// The change log of every dataset and the delivery loops' status.
    pub feed: crate::feed::Feed,
    /// The latest state of every table; the lock serializes commits to one table.
    tables: HashMap<String, AsyncMutex<DeltaTable>>,
    /// Held for a whole run, so one pipeline never runs twice at once.
    run_locks: HashMap<String, AsyncMutex<()>>,
    /// Held from a re-ingest's "not resolved yet" check to its resolution, so two submits
    /// of one fix cannot both store it.
    reingest_lock: AsyncMutex<()>,
    shutting_down: AtomicBool,
    active_runs: AtomicUsize,
    idle: Notify,
    rate_limiter: crate::sharing::rate_limit::RateLimiter,
    /// Wall-clock time for share expiry and deadlines; a test sets it by hand.
    clock: Arc<dyn schedule::Clock>,
}

/// A pipeline as the operator sees it: schedule, last run, freshness.
#[derive(Debug, Serialize)]
pub struct PipelineStatus {
    pub name: String,
    pub title: String,
    /// The connector kind; `push` datasets are sent in and never run.
    pub kind: String,
    pub schedule: Option<String>,
    pub next_run: Option<DateTime<Utc>>,
    pub running: bool,
    pub last_run: Option<RunReport>,
    pub last_success: Option<DateTime<Utc>>,
    pub records_last_run: Option<usize>,
    /// Seconds since the last successful run (`null` if it never succeeded).
    pub freshness_seconds: Option<i64>,
    pub max_staleness_seconds: Option<u64>,
    /// Older than `max_staleness`, or never ingested.
    pub stale: bool,
}

#[derive(Debug, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub description: String,
    /// Personal data, masked for this reader (`mask` says how).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<crate::sharing::Mask>,
}

/// A department that publishes a dataset, and its officer for data sharing.
#[derive(Debug, Serialize)]
pub struct PublisherInfo {
    pub id: String,
    pub agency: String,
    pub focal_officer: Option<crate::sharing::FocalOfficer>,
}

#[derive(Debug, Serialize)]
pub struct DatasetInfo {
    pub name: String,
    pub title: String,
    pub description: String,
    pub sector: String,
    pub sharing: &'static str,
    pub key: Vec<String>,
    pub columns: Vec<ColumnInfo>,
    pub publishers: Vec<PublisherInfo>,
    pub row_count: Option<u64>,
    pub last_ingest: Option<DateTime<Utc>>,
}

impl Hub {
    /// Opens (creating on first start) every dataset table and the quarantine, and registers
    /// them for SQL.
    pub async fn open(config: HubConfig) -> Result<Arc<Hub>, HubError> {
        Self::open_with_clock(config, Arc::new(schedule::SystemClock)).await
    }

    pub async fn open_with_clock(
        config: HubConfig,
        clock: Arc<dyn schedule::Clock>,
    ) -> Result<Arc<Hub>, HubError> {
        let config_auth = config.file.auth.clone();
        let store = TableStore::new(&config.data_dir);
        let state: Arc<dyn StateStore> = Arc::new(SqliteStateStore::open(&config.data_dir)?);
        let engine = QueryEngine::new(
            config.file.query.clone(),
            crate::functions::context(
                config.calendar.clone(),
                config.units.clone(),
                config.time_zone,
            ),
        )
        .with_views(config.file.views.clone());
        let mut tables = HashMap::new();
        let mut run_locks = HashMap::new();
        for pipeline in &config.pipelines {
            let table = store.open(&pipeline.name, &pipeline.table_schema).await?;
            engine.register(
                &pipeline.name,
                ComputedTable::wrap(
                    store.provider(&pipeline.name, &table).await?,
                    pipeline.computed.clone(),
                ),
            )?;
            tables.insert(pipeline.name.clone(), AsyncMutex::new(table));
            run_locks.insert(pipeline.name.clone(), AsyncMutex::new(()));
        }
        let q = store.open(quarantine::TABLE, &quarantine::schema()).await?;
        engine.register(
            quarantine::TABLE,
            store.provider(quarantine::TABLE, &q).await?,
        )?;
        tables.insert(quarantine::TABLE.to_string(), AsyncMutex::new(q));
        let changelog = crate::feed::Changelog::open(&config.data_dir, &config.pipelines).await?;
        // Number any commit the log missed (a crash between the two commits).
        for pipeline in &config.pipelines {
            if let Some(table) = tables.get(&pipeline.name) {
                let table = table.lock().await.clone();
                // Not fatal: the data is safe, the error shows in the subscriptions' status,
                // and the next catch-up tries again.
                if let Err(e) = changelog.catch_up(&pipeline.name, &table).await {
                    tracing::error!(dataset = %pipeline.name, error = %e, "could not extend the change log");
                }
            }
        }
        Ok(Arc::new(Hub {
            feed: crate::feed::Feed::new(changelog),
            config,
            store,
            state,
            engine,
            metrics: Metrics::new(),
            tables,
            run_locks,
            reingest_lock: AsyncMutex::new(()),
            shutting_down: AtomicBool::new(false),
            active_runs: AtomicUsize::new(0),
            idle: Notify::new(),
            rate_limiter: crate::sharing::rate_limit::RateLimiter::new(
                config_auth.requests_per_minute,
                config_auth.burst,
            ),
            clock,
        }))
    }

    pub fn time_zone(&self) -> chrono_tz::Tz {
        self.config.time_zone
    }

    pub fn pipeline(&self, name: &str) -> Result<&Arc<Pipeline>, HubError> {
        self.config
            .pipeline(name)
            .ok_or_else(|| HubError::UnknownPipeline(name.to_string()))
    }

    /// Runs a pipeline now; waits if it is already running.
    pub async fn run(&self, name: &str, trigger: &str) -> Result<RunReport, HubError> {
        let pipeline = self.pipeline(name)?.clone();
        let lock = self
            .run_locks
            .get(name)
            .ok_or_else(|| HubError::UnknownPipeline(name.into()))?;
        let _running = lock.lock().await;
        self.run_locked(&pipeline, trigger).await
    }

    /// Runs a pipeline now unless it is already running.
    pub async fn try_run(&self, name: &str, trigger: &str) -> Result<RunReport, HubError> {
        let pipeline = self.pipeline(name)?.clone();
        let lock = self
            .run_locks
            .get(name)
            .ok_or_else(|| HubError::UnknownPipeline(name.into()))?;
        let _running = lock
            .try_lock()
            .map_err(|_| HubError::AlreadyRunning(name.into()))?;
        self.run_locked(&pipeline, trigger).await
    }

    async fn run_locked(
        &self,
        pipeline: &Arc<Pipeline>,
        trigger: &str,
    ) -> Result<RunReport, HubError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(HubError::ShuttingDown);
        }
        self.active_runs.fetch_add(1, Ordering::SeqCst);
        let report = ingest::run(self, pipeline, trigger).await;
        if self.active_runs.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
        Ok(report)
    }

    pub fn is_running(&self, name: &str) -> bool {
        self.run_locks
            .get(name)
            .is_some_and(|l| l.try_lock().is_err())
    }

    /// Runs every pipeline that pulls once, one after the other (a `push` dataset has
    /// nothing to pull).
    pub async fn run_all(&self, trigger: &str) -> Vec<RunReport> {
        let mut reports = Vec::new();
        for pipeline in &self.config.pipelines {
            if pipeline.is_push() {
                continue;
            }
            if let Ok(r) = self.run(&pipeline.name, trigger).await {
                reports.push(r);
            }
        }
        reports
    }

    /// Stops new runs from starting.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Waits until no run is in progress, at most `grace`; true if all finished.
    pub async fn wait_idle(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.idle.notified();
            if self.active_runs.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active_runs.load(Ordering::SeqCst) == 0;
            }
        }
    }

    pub(crate) fn record_run(&self, report: &RunReport) {
        self.metrics.observe_run(report);
        if let Err(e) = self.state.record_run(report) {
            tracing::warn!(error = %e, "could not save the run report");
        }
    }

    pub fn last_run(&self, name: &str) -> Option<RunReport> {
        self.state.last_run(name).ok().flatten()
    }

    pub fn runs(&self, name: &str, limit: usize) -> Result<Vec<RunReport>, HubError> {
        self.pipeline(name)?;
        Ok(self.state.runs(name, limit)?)
    }

    pub fn pipeline_status(&self, pipeline: &Pipeline, now: DateTime<Utc>) -> PipelineStatus {
        let last_run = self.last_run(&pipeline.name);
        let last_success = self
            .state
            .load(&pipeline.name)
            .ok()
            .and_then(|s| s.last_success);
        let freshness = last_success.map(|t| (now - t).num_seconds().max(0));
        let stale = match (pipeline.max_staleness, freshness) {
            (Some(max), Some(age)) => age as u64 > max.as_secs(),
            (Some(_), None) => true,
            (None, _) => false,
        };
        PipelineStatus {
            name: pipeline.name.clone(),
            title: pipeline.title.clone(),
            kind: pipeline.source_kind.clone(),
            schedule: pipeline.schedule_text.clone(),
            next_run: pipeline
                .schedule
                .as_ref()
                .and_then(|s| schedule::next_fire(s, now, self.config.time_zone)),
            running: self.is_running(&pipeline.name),
            records_last_run: last_run.as_ref().map(|r| r.accepted),
            last_run,
            last_success,
            freshness_seconds: freshness,
            max_staleness_seconds: pipeline.max_staleness.map(|d| d.as_secs()),
            stale,
        }
    }

    pub fn pipeline_statuses(&self, now: DateTime<Utc>) -> Vec<PipelineStatus> {
        self.config
            .pipelines
            .iter()
            .map(|p| self.pipeline_status(p, now))
            .collect()
    }

    /// The metrics text, with freshness gauges brought up to date.
    pub fn metrics_text(&self) -> String {
        for status in self.pipeline_statuses(Utc::now()) {
            self.metrics.set_freshness(
                &status.name,
                status.freshness_seconds.map(|s| s as f64),
                status.stale,
            );
        }
        self.metrics
            .set_overdue_share_requests(self.overdue_share_requests());
        self.metrics.encode()
    }

    /// The current state of a table (a cheap clone).
    pub(crate) async fn table(&self, name: &str) -> Result<DeltaTable, StorageError> {
        match self.tables.get(name) {
            Some(lock) => Ok(lock.lock().await.clone()),
            None => Err(StorageError::Other {
                table: name.to_string(),
                message: "table is not open".into(),
            }),
        }
    }

    pub(crate) async fn commit_dataset(
        &self,
        pipeline: &Pipeline,
        run: RunWriter,
        info: &CommitInfo,
    ) -> Result<(), StorageError> {
        self.commit_to(&pipeline.name, |store, table| {
            store.finish_run(&pipeline.name, table, run, &pipeline.key, info)
        })
        .await?;
        self.catch_up_changes(&pipeline.name).await;
        Ok(())
    }

    /// Numbers the dataset's new commits in its change log. A failure here loses nothing:
    /// the data is committed, and the next catch-up (next commit, or start) numbers it.
    pub(crate) async fn catch_up_changes(&self, dataset: &str) {
        let result = match self.table(dataset).await {
            Ok(table) => self.feed.changelog.catch_up(dataset, &table).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!(dataset, error = %e, "could not extend the change log; retried at the next commit");
        }
    }

    pub(crate) async fn append_quarantine(&self, batch: RecordBatch) -> Result<(), StorageError> {
        self.commit_to(quarantine::TABLE, |store, table| {
            store.append(quarantine::TABLE, table, vec![batch])
        })
        .await
    }

    /// Commits to table `name` under its lock and makes the new version visible to SQL.
    async fn commit_to<'a, F, Fut>(&'a self, name: &'a str, commit: F) -> Result<(), StorageError>
    where
        F: FnOnce(&'a TableStore, DeltaTable) -> Fut,
        Fut: std::future::Future<Output = Result<DeltaTable, StorageError>>,
    {
        let Some(lock) = self.tables.get(name) else {
            return Err(StorageError::Other {
                table: name.to_string(),
                message: "table is not open".into(),
            });
        };
        let mut table = lock.lock().await;
        let new = commit(&self.store, table.clone()).await?;
        let mut provider = self.store.provider(name, &new).await?;
        if let Some(p) = self.config.pipelines.iter().find(|p| p.name == name) {
            provider = ComputedTable::wrap(provider, p.computed.clone());
        }
        self.engine
            .register(name, provider)
            .map_err(|e| StorageError::Other {
                table: name.to_string(),
                message: e.to_string(),
            })?;
        *table = new;
        Ok(())
    }
}

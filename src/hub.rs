//! The hub: configuration, tables, run state and the query engine, shared by every interface.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use serde::Serialize;
use tokio::sync::Mutex as AsyncMutex;

use crate::config::{HubConfig, Pipeline};
use crate::ingest::{self, RunReport};
use crate::query::{QueryEngine, QueryError, QueryResult};
use crate::state::StateStore;
use crate::storage::{CommitInfo, RunWriter, StorageError, TableStore, quarantine};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("no pipeline named {0:?}")]
    UnknownPipeline(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Query(#[from] QueryError),
}

pub struct Hub {
    pub config: HubConfig,
    pub store: TableStore,
    pub state: StateStore,
    pub engine: QueryEngine,
    /// The latest state of every table; the lock serializes commits to one table.
    tables: HashMap<String, AsyncMutex<DeltaTable>>,
    /// Held for a whole run, so one pipeline never runs twice at once.
    run_locks: HashMap<String, AsyncMutex<()>>,
    last_runs: Mutex<HashMap<String, RunReport>>,
}

#[derive(Debug, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub description: String,
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
    pub row_count: Option<u64>,
    pub last_ingest: Option<DateTime<Utc>>,
}

impl Hub {
    /// Opens (creating on first start) every dataset table and the quarantine, and registers
    /// them for SQL.
    pub async fn open(config: HubConfig) -> Result<Arc<Hub>, HubError> {
        let store = TableStore::new(&config.data_dir);
        let state = StateStore::new(&config.data_dir);
        let engine = QueryEngine::new(config.file.query.clone());
        let mut tables = HashMap::new();
        let mut run_locks = HashMap::new();
        let mut last_runs = HashMap::new();
        for pipeline in &config.pipelines {
            let table = store.open(&pipeline.name, &pipeline.schema.arrow).await?;
            engine.register(
                &pipeline.name,
                store.provider(&pipeline.name, &table).await?,
            )?;
            tables.insert(pipeline.name.clone(), AsyncMutex::new(table));
            run_locks.insert(pipeline.name.clone(), AsyncMutex::new(()));
            if let Ok(s) = state.load(&pipeline.name)
                && let Some(r) = s.last_run
            {
                last_runs.insert(pipeline.name.clone(), r);
            }
        }
        let q = store.open(quarantine::TABLE, &quarantine::schema()).await?;
        engine.register(
            quarantine::TABLE,
            store.provider(quarantine::TABLE, &q).await?,
        )?;
        tables.insert(quarantine::TABLE.to_string(), AsyncMutex::new(q));
        Ok(Arc::new(Hub {
            config,
            store,
            state,
            engine,
            tables,
            run_locks,
            last_runs: Mutex::new(last_runs),
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
    pub async fn run(&self, name: &str) -> Result<RunReport, HubError> {
        let pipeline = self.pipeline(name)?.clone();
        let _running = match self.run_locks.get(name) {
            Some(lock) => lock.lock().await,
            None => return Err(HubError::UnknownPipeline(name.to_string())),
        };
        Ok(ingest::run(self, &pipeline).await)
    }

    /// Runs every pipeline once, one after the other.
    pub async fn run_all(&self) -> Vec<RunReport> {
        let mut reports = Vec::new();
        for pipeline in &self.config.pipelines {
            if let Ok(r) = self.run(&pipeline.name).await {
                reports.push(r);
            }
        }
        reports
    }

    pub(crate) fn record_run(&self, report: &RunReport) {
        if let Ok(mut runs) = self.last_runs.lock() {
            runs.insert(report.pipeline.clone(), report.clone());
        }
        if let Ok(mut state) = self.state.load(&report.pipeline) {
            state.last_run = Some(report.clone());
            if let Err(e) = self.state.save(&report.pipeline, &state) {
                tracing::warn!(error = %e, "could not save the run report");
            }
        }
    }

    pub fn last_run(&self, name: &str) -> Option<RunReport> {
        self.last_runs.lock().ok()?.get(name).cloned()
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
        sequence: i64,
    ) -> Result<(), StorageError> {
        self.commit_to(&pipeline.name, |store, table| {
            store.finish_run(&pipeline.name, table, run, &pipeline.key, info, sequence)
        })
        .await
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
        let provider = self.store.provider(name, &new).await?;
        self.engine
            .register(name, provider)
            .map_err(|e| StorageError::Other {
                table: name.to_string(),
                message: e.to_string(),
            })?;
        *table = new;
        Ok(())
    }

    pub async fn catalog(&self) -> Vec<DatasetInfo> {
        let mut out = Vec::new();
        for p in &self.config.pipelines {
            let stats = match self.tables.get(&p.name) {
                Some(lock) => TableStore::stats_of(&*lock.lock().await).await,
                None => Default::default(),
            };
            let last_ingest = self.state.load(&p.name).ok().and_then(|s| s.last_success);
            out.push(DatasetInfo {
                name: p.name.clone(),
                title: p.title.clone(),
                description: p.description.clone(),
                sector: p.sector.clone(),
                sharing: p.sharing.as_str(),
                key: p.key.clone(),
                columns: p
                    .schema
                    .columns
                    .iter()
                    .map(|c| ColumnInfo {
                        name: c.name.clone(),
                        type_name: crate::query::type_name(&c.kind.arrow_type()),
                        description: c.description.clone(),
                    })
                    .collect(),
                row_count: stats.rows,
                last_ingest,
            });
        }
        out
    }

    /// Quarantined records of one dataset, newest first.
    pub async fn quarantine_of(&self, name: &str, limit: usize) -> Result<QueryResult, HubError> {
        // `name` is a configured dataset name (an SQL identifier), checked here first.
        self.pipeline(name)?;
        let sql = format!(
            "SELECT dataset, run_id, source, location, raw, errors, quarantined_at FROM quarantine \
             WHERE dataset = '{name}' ORDER BY quarantined_at DESC, location LIMIT {limit}"
        );
        Ok(self.engine.query(&sql).await?)
    }

    pub async fn sql(&self, sql: &str) -> Result<QueryResult, HubError> {
        Ok(self.engine.query(sql).await?)
    }
}

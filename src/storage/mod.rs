//! Storage: one Delta Lake table per dataset under `<data_dir>/tables/`, plus the quarantine.
//!
//! A run is one commit: `begin_run` / `finish_run` write every accepted row of the run at once
//! (streamed append, or MERGE by key), so a crash mid-run leaves the table as it was. Tables
//! are opened by URL through `object_store`; S3 needs deltalake's `s3` feature and a URL.

mod dedupe;
mod dictionary_aggregate;
mod dictionary_scan;
pub mod parallel_writer;
pub mod quarantine;
mod snapshot_table;

pub use dictionary_aggregate::DictionaryAggregation;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::logical_expr::{Operator, binary_expr};
use datafusion::prelude::{Column, SessionContext, col};
use deltalake::kernel::StructType;
use deltalake::kernel::Transaction;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use parallel_writer::ParallelWriter;
use snapshot_table::SnapshotTable;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: Box<DeltaTableError>,
    },
    #[error("table {table}: {message}")]
    Other { table: String, message: String },
}

impl StorageError {
    fn delta(table: &str) -> impl FnOnce(DeltaTableError) -> StorageError + '_ {
        move |source| StorageError::Delta {
            table: table.to_string(),
            source: Box::new(source),
        }
    }
}

/// What a commit records besides the rows: enough to tell, from the table alone, which run
/// wrote it and where its source stood.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub pipeline: String,
    pub run_id: String,
    /// The pipeline's run sequence, also written as the Delta `txn` version of the pipeline;
    /// `None` for data pushed in by a publisher, which moves no pipeline position.
    pub run_sequence: Option<i64>,
    pub checkpoint: Option<serde_json::Value>,
    pub cursor: Option<serde_json::Value>,
}

/// What the table says the pipeline last committed.
#[derive(Debug, Clone)]
pub struct CommittedPosition {
    pub sequence: i64,
    pub checkpoint: Option<serde_json::Value>,
    pub cursor: Option<serde_json::Value>,
    pub committed_at: Option<chrono::DateTime<chrono::Utc>>,
}

const META_PIPELINE: &str = "iochub.pipeline";
const META_RUN_ID: &str = "iochub.run_id";
const META_SEQUENCE: &str = "iochub.run_sequence";
const META_CHECKPOINT: &str = "iochub.checkpoint";
const META_CURSOR: &str = "iochub.cursor";

fn app_id(pipeline: &str) -> String {
    format!("iochub:{pipeline}")
}

/// Rows of a run on their way into a table.
pub enum RunWriter {
    Append {
        writer: Box<ParallelWriter>,
        rows: usize,
    },
    Upsert(Vec<RecordBatch>),
}

impl RunWriter {
    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), DeltaTableError> {
        match self {
            RunWriter::Append { writer, rows } => {
                *rows += batch.num_rows();
                writer.write(batch).await
            }
            RunWriter::Upsert(batches) => {
                batches.push(batch);
                Ok(())
            }
        }
    }
}

/// Parquet files compressed with zstd: close to the size other tools produce, and fast.
/// Row groups of 122,880 rows (DuckDB's size): a query scans row groups in parallel, and the
/// writer's default (one million rows) left a million-row table on one core.
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

const ROW_GROUP_ROWS: usize = 122_880;

#[derive(Debug, Clone, Default)]
pub struct TableStats {
    pub version: Option<u64>,
    pub rows: Option<u64>,
    /// Time of the latest commit, milliseconds since the epoch.
    pub last_commit_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct TableStore {
    root: PathBuf,
}

impl TableStore {
    pub fn new(data_dir: &Path) -> Self {
        TableStore {
            root: data_dir.join("tables"),
        }
    }

    /// Tables directly under `root` (the change logs live beside the datasets).
    pub fn at(root: PathBuf) -> Self {
        TableStore { root }
    }

    pub fn table_path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Opens the table, creating it (empty, with `schema`) the first time.
    pub async fn open(&self, name: &str, schema: &SchemaRef) -> Result<DeltaTable, StorageError> {
        let path = self.table_path(name);
        std::fs::create_dir_all(&path).map_err(|e| StorageError::Other {
            table: name.to_string(),
            message: format!("cannot create {}: {e}", path.display()),
        })?;
        let url = deltalake::ensure_table_uri(path.to_string_lossy())
            .map_err(StorageError::delta(name))?;
        if path.join("_delta_log").is_dir() {
            return DeltaTable::try_from_url(url)
                .await
                .map_err(StorageError::delta(name));
        }
        // A new table: build it without loading (loading a missing log only logs errors).
        let table = deltalake::DeltaTableBuilder::from_url(url)
            .and_then(|b| b.build())
            .map_err(StorageError::delta(name))?;
        let columns: StructType =
            schema
                .as_ref()
                .try_into_kernel()
                .map_err(|e: arrow::error::ArrowError| StorageError::Other {
                    table: name.to_string(),
                    message: format!("schema cannot be stored in Delta: {e}"),
                })?;
        table
            .create()
            .with_columns(columns.fields().cloned())
            .with_table_name(name)
            .with_save_mode(SaveMode::Ignore)
            .await
            .map_err(StorageError::delta(name))
    }

    /// Starts writing one run's rows. Without a key, rows stream into Parquet files as they
    /// arrive (memory stays bounded whatever the run's size) and become visible only with
    /// the commit in `finish_run`. With a key, the run's rows are kept for one MERGE.
    pub fn begin_run(
        &self,
        name: &str,
        table: &DeltaTable,
        key: &[String],
    ) -> Result<RunWriter, StorageError> {
        if !key.is_empty() {
            return Ok(RunWriter::Upsert(Vec::new()));
        }
        let writer = ParallelWriter::new(
            table,
            writer_properties(),
            parallel_writer::writers(),
            ROW_GROUP_ROWS,
        )
        .map_err(StorageError::delta(name))?;
        Ok(RunWriter::Append {
            writer: Box::new(writer),
            rows: 0,
        })
    }

    /// Commits one run's rows in a single commit: MERGE by `key` (the last row per key wins,
    /// within the run too), or the streamed files of an append run.
    pub async fn finish_run(
        &self,
        name: &str,
        mut table: DeltaTable,
        run: RunWriter,
        key: &[String],
        info: &CommitInfo,
    ) -> Result<DeltaTable, StorageError> {
        let props = commit_properties(info);
        let batches = match run {
            RunWriter::Append { rows: 0, .. } => return Ok(table),
            RunWriter::Append { writer, .. } => {
                let files = writer.finish().await.map_err(StorageError::delta(name))?;
                parallel_writer::commit(&mut table, files, props)
                    .await
                    .map_err(StorageError::delta(name))?;
                return Ok(table);
            }
            RunWriter::Upsert(batches) => batches,
        };
        if batches.is_empty() {
            return Ok(table);
        }
        let latest = dedupe::last_per_key(&batches, key).map_err(|e| StorageError::Other {
            table: name.to_string(),
            message: format!("de-duplicating by key: {e}"),
        })?;
        drop(batches);
        let has_rows = Self::stats_of(&table).await.rows.unwrap_or(0) > 0;
        if !has_rows {
            // Nothing to match against: a plain write is the same result, and much cheaper.
            return table
                .write(vec![latest])
                .with_save_mode(SaveMode::Append)
                .with_schema_mode(SchemaMode::Merge)
                .with_writer_properties(writer_properties())
                .with_commit_properties(props)
                .await
                .map_err(StorageError::delta(name));
        }
        let columns: Vec<String> = latest
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let ctx = SessionContext::new();
        let source = ctx.read_batch(latest).map_err(|e| StorageError::Other {
            table: name.to_string(),
            message: e.to_string(),
        })?;
        let side = |alias: &str, c: &str| col(Column::new(Some(alias.to_string()), c));
        let predicate = key
            .iter()
            .map(|k| {
                binary_expr(
                    side("target", k),
                    Operator::IsNotDistinctFrom,
                    side("source", k),
                )
            })
            .reduce(|a, b| a.and(b))
            .ok_or_else(|| StorageError::Other {
                table: name.to_string(),
                message: "empty key".into(),
            })?;
        let (table, metrics) = table
            .merge(source, predicate)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_merge_schema(true)
            .with_writer_properties(writer_properties())
            .when_matched_update(|mut u| {
                for c in &columns {
                    u = u.update(c.as_str(), side("source", c));
                }
                u
            })
            .map_err(StorageError::delta(name))?
            .when_not_matched_insert(|mut i| {
                for c in &columns {
                    i = i.set(c.as_str(), side("source", c));
                }
                i
            })
            .map_err(StorageError::delta(name))?
            .with_commit_properties(props)
            .await
            .map_err(StorageError::delta(name))?;
        tracing::debug!(
            table = name,
            inserted = metrics.num_target_rows_inserted,
            updated = metrics.num_target_rows_updated,
            "merged"
        );
        Ok(table)
    }

    /// Appends rows in one commit (used for the quarantine).
    pub async fn append(
        &self,
        name: &str,
        table: DeltaTable,
        batches: Vec<RecordBatch>,
    ) -> Result<DeltaTable, StorageError> {
        table
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_writer_properties(writer_properties())
            .await
            .map_err(StorageError::delta(name))
    }

    /// The table as it is now, for reading with DataFusion: its files scanned by
    /// DataFusion's Parquet source (`snapshot_table`), or delta-rs's provider for a table
    /// that needs the Delta kernel to be read.
    ///
    /// delta-rs's provider takes its settings from a default session, not its own defaults:
    /// those force Parquet filter pushdown (decoding the filter's columns first, then the
    /// rest row by row) on every filtered scan, which made a filter that keeps a sixth of
    /// the rows spread over every row group twice as slow (q2 of the benchmark: 29 ms
    /// against 13 ms). Row groups and pages are still pruned by their statistics.
    pub async fn provider(
        &self,
        name: &str,
        table: &DeltaTable,
    ) -> Result<Arc<dyn TableProvider>, StorageError> {
        let delta = table
            .table_provider()
            .with_session(Arc::new(SessionContext::new().state()))
            .await
            .map_err(|e| StorageError::Other {
                table: name.to_string(),
                message: e.to_string(),
            })?;
        Ok(match SnapshotTable::usable(table, delta.schema()) {
            Some(files) => Arc::new(files),
            None => delta,
        })
    }

    /// The pipeline's last committed run as recorded in the table (its `txn` version and the
    /// commit that carries it), or `None` if it never committed.
    pub async fn committed_position(
        table: &DeltaTable,
        pipeline: &str,
    ) -> Result<Option<CommittedPosition>, StorageError> {
        let Ok(snapshot) = table.snapshot() else {
            return Ok(None);
        };
        let version = snapshot
            .transaction_version(table.log_store().as_ref(), app_id(pipeline))
            .await
            .map_err(StorageError::delta(pipeline))?;
        let Some(sequence) = version else {
            return Ok(None);
        };
        // The commit is normally the newest; look back a little in case others followed.
        let history: Vec<deltalake::kernel::CommitInfo> = table
            .history(Some(100))
            .try_collect()
            .await
            .map_err(StorageError::delta(pipeline))?;
        let commit = history.into_iter().find(|c| {
            c.info.get(META_PIPELINE).and_then(|v| v.as_str()) == Some(pipeline)
                && c.info.get(META_SEQUENCE).and_then(|v| v.as_i64()) == Some(sequence)
        });
        Ok(Some(CommittedPosition {
            sequence,
            checkpoint: commit
                .as_ref()
                .and_then(|c| c.info.get(META_CHECKPOINT).cloned()),
            cursor: commit
                .as_ref()
                .and_then(|c| c.info.get(META_CURSOR).cloned()),
            committed_at: commit
                .as_ref()
                .and_then(|c| c.timestamp)
                .and_then(chrono::DateTime::from_timestamp_millis),
        }))
    }

    pub async fn stats_of(table: &DeltaTable) -> TableStats {
        let Ok(snapshot) = table.snapshot() else {
            return TableStats::default();
        };
        let rows = snapshot
            .log_data()
            .iter()
            .map(|f| f.num_records().map(|n| n as u64))
            .sum::<Option<u64>>();
        let history: Vec<deltalake::kernel::CommitInfo> = table
            .history(Some(1))
            .try_collect()
            .await
            .unwrap_or_default();
        TableStats {
            version: table.version(),
            rows,
            last_commit_ms: history.first().and_then(|c| c.timestamp),
        }
    }
}

fn commit_properties(info: &CommitInfo) -> CommitProperties {
    let mut metadata: HashMap<String, serde_json::Value> = HashMap::new();
    metadata.insert(META_PIPELINE.into(), info.pipeline.clone().into());
    metadata.insert(META_RUN_ID.into(), info.run_id.clone().into());
    if let Some(sequence) = info.run_sequence {
        metadata.insert(META_SEQUENCE.into(), sequence.into());
    }
    if let Some(cp) = &info.checkpoint {
        metadata.insert(META_CHECKPOINT.into(), cp.clone());
    }
    if let Some(cursor) = &info.cursor {
        metadata.insert(META_CURSOR.into(), cursor.clone());
    }
    let properties = CommitProperties::default().with_metadata(metadata);
    match info.run_sequence {
        Some(sequence) => properties
            .with_application_transaction(Transaction::new(app_id(&info.pipeline), sequence)),
        None => properties,
    }
}

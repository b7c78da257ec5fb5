//! The change log: one Delta table per dataset under `<data_dir>/changes/`, holding every
//! committed upsert and delete in order, each numbered by `_seq` (1, 2, 3, ... per dataset).
//!
//! The log is derived from the dataset table's commits, never kept only in memory: after a
//! data commit, `catch_up` reads each data version the log has not covered yet (its commit
//! info says which run wrote it, or which keys it deleted), numbers the rows after the log's
//! last sequence, and commits them with the data version as the Delta `txn` version of the
//! log. A crash between the two commits is repaired by the next `catch_up` (at start and
//! before every data commit); the `txn` makes it idempotent. Rows are read from the data
//! table *at that version* (time travel), so an update that came later does not hide the
//! earlier change.
//!
//! An append (a run or a push into a dataset without a key) is logged by reference, as
//! Delta's own change data feed does for insert-only commits: its data files hold exactly
//! its rows, so the log keeps one row per file (`_op = appended`, `_appended_file` naming
//! the file, `_seq` its first row's number) instead of encoding every row a second time,
//! and `read` numbers the file's rows when the feed asks for them. The dataset table
//! therefore must keep every file a log row names (the hub never vacuums it; a future
//! compaction would have to copy those rows into the log first).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use datafusion::datasource::MemTable;
use object_store::ObjectStore;

use super::appended_file::{file_rows, read_rows};

use arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    new_null_array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::prelude::{SessionContext, col, lit};
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use futures::StreamExt;
use tokio::sync::{Mutex as AsyncMutex, watch};

use crate::config::Pipeline;
use crate::storage::parallel_writer::{self, ParallelWriter};
use crate::storage::{StorageError, TableStore};

/// The change's sequence number in its dataset.
pub const SEQ: &str = "_seq";
/// `upserted` or `deleted`.
pub const OP: &str = "_op";
/// When the change was committed to the dataset.
pub const CHANGED_AT: &str = "_changed_at";
pub const META_COLUMNS: [&str; 3] = [SEQ, OP, CHANGED_AT];
/// On an `appended` row: the data file (its path in the dataset table) whose rows are the
/// changes numbered from this row's `_seq` on. Never shown: `read` turns it into the rows.
const APPENDED_FILE: &str = "_appended_file";
/// On an `appended` row: how many rows that file holds.
const APPENDED_ROWS: &str = "_appended_rows";
const APPENDED_COLUMNS: [&str; 2] = [APPENDED_FILE, APPENDED_ROWS];

pub const OP_UPSERTED: &str = "upserted";
pub const OP_DELETED: &str = "deleted";
/// A log row standing for the rows of one appended data file (see the module docs).
const OP_APPENDED: &str = "appended";

/// Data commit metadata naming the keys a delete removed (a JSON array of key objects).
pub const META_DELETED_KEYS: &str = "iochub.deleted_keys";
const META_RUN_ID: &str = "iochub.run_id";
/// Written on each log commit for people reading the Delta history; the hub reads `max(_seq)`.
const META_LAST_SEQ: &str = "iochub.last_seq";
const APP_ID: &str = "iochub:changes";

/// Row groups small enough that reading one batch of the feed decodes little beyond it.
const ROW_GROUP_ROWS: usize = 16_384;

struct DatasetLog {
    schema: SchemaRef,
    key: Vec<String>,
    table: AsyncMutex<DeltaTable>,
    provider: RwLock<Arc<dyn TableProvider>>,
    last_seq: watch::Sender<i64>,
    /// The appended files the log refers to, by first sequence.
    files: RwLock<Vec<AppendedFile>>,
    /// The dataset table's files, for reading appended ones (set by `catch_up`).
    data_store: RwLock<Option<Arc<dyn ObjectStore>>>,
    /// False for a log made before appends were logged by reference (it has no
    /// `_appended_*` columns): it goes on copying every row.
    by_reference: bool,
    /// A log commit landed but the in-memory view of it (provider, file index, last
    /// sequence) was not refreshed: the next `extend` reloads it from the log first, or it
    /// would number the next commit from a stale last sequence.
    stale: std::sync::atomic::AtomicBool,
}

/// One data file whose rows are changes `first ..= first + rows - 1`.
#[derive(Debug, Clone)]
struct AppendedFile {
    first: i64,
    rows: i64,
    path: String,
    changed_at: i64,
}

impl AppendedFile {
    fn last(&self) -> i64 {
        self.first + self.rows - 1
    }
}

pub struct Changelog {
    store: TableStore,
    logs: HashMap<String, DatasetLog>,
    /// The last failure to extend each log, until it succeeds again (shown in the
    /// subscriptions' status).
    errors: std::sync::Mutex<HashMap<String, String>>,
}

/// What one data commit did, from its commit info.
enum DataCommit {
    /// Rows written by run `run_id`; `appended` lists the commit's files when it only
    /// appended (a blind append: its files hold the run's rows and nothing else).
    Run {
        run_id: String,
        appended: Option<Vec<String>>,
    },
    Deleted(Vec<serde_json::Map<String, serde_json::Value>>),
}

fn other(table: &str, message: impl std::fmt::Display) -> StorageError {
    StorageError::Other {
        table: format!("changes/{table}"),
        message: message.to_string(),
    }
}

/// The log's schema: the dataset's columns (nullable: a delete carries only the key), then
/// the change's own columns.
pub fn log_schema(data: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = data
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new(SEQ, DataType::Int64, false));
    fields.push(Field::new(OP, DataType::Utf8, false));
    fields.push(Field::new(
        CHANGED_AT,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    ));
    fields.push(Field::new(APPENDED_FILE, DataType::Utf8, true));
    fields.push(Field::new(APPENDED_ROWS, DataType::Int64, true));
    Arc::new(Schema::new(fields))
}

impl Changelog {
    /// Opens (creating on first start) the log of every dataset. Call `catch_up` before use.
    pub async fn open(data_dir: &Path, pipelines: &[Arc<Pipeline>]) -> Result<Self, StorageError> {
        let store = TableStore::at(data_dir.join("changes"));
        let mut logs = HashMap::new();
        for pipeline in pipelines {
            let schema = log_schema(&pipeline.table_schema);
            let table = store.open(&pipeline.name, &schema).await?;
            let provider = store.provider(&pipeline.name, &table).await?;
            let by_reference = APPENDED_COLUMNS
                .iter()
                .all(|c| provider.schema().column_with_name(c).is_some());
            let (files, last) = numbering(&pipeline.name, provider.clone(), by_reference).await?;
            let schema = if by_reference {
                schema
            } else {
                without_appended_columns(&schema)
            };
            logs.insert(
                pipeline.name.clone(),
                DatasetLog {
                    schema,
                    key: pipeline.key.clone(),
                    table: AsyncMutex::new(table),
                    provider: RwLock::new(provider),
                    last_seq: watch::Sender::new(last),
                    files: RwLock::new(files),
                    data_store: RwLock::new(None),
                    by_reference,
                    stale: std::sync::atomic::AtomicBool::new(false),
                },
            );
        }
        Ok(Changelog {
            store,
            logs,
            errors: std::sync::Mutex::new(HashMap::new()),
        })
    }

    fn log(&self, dataset: &str) -> Result<&DatasetLog, StorageError> {
        self.logs
            .get(dataset)
            .ok_or_else(|| other(dataset, "no change log for this dataset"))
    }

    /// The newest sequence number of the dataset (0 before its first change).
    pub fn last_seq(&self, dataset: &str) -> i64 {
        self.logs.get(dataset).map_or(0, |l| *l.last_seq.borrow())
    }

    /// Wakes when the dataset's log grows.
    pub fn subscribe(&self, dataset: &str) -> Option<watch::Receiver<i64>> {
        self.logs.get(dataset).map(|l| l.last_seq.subscribe())
    }

    /// The log as it is now (appended files still by reference).
    fn provider(&self, dataset: &str) -> Result<Arc<dyn TableProvider>, StorageError> {
        let log = self.log(dataset)?;
        let provider = log
            .provider
            .read()
            .map_err(|_| other(dataset, "provider lock poisoned"))?;
        Ok(provider.clone())
    }

    /// The changes `after < _seq <= upper`, as a table in the log's columns (without
    /// `_appended_*`): rows copied into the log, and the rows of appended files numbered.
    pub async fn read(
        &self,
        dataset: &str,
        after: i64,
        upper: i64,
    ) -> Result<Arc<dyn TableProvider>, StorageError> {
        let log = self.log(dataset)?;
        let provider = self.provider(dataset)?;
        let shown = without_appended_columns(&provider.schema());
        let in_range = col(SEQ).gt(lit(after)).and(col(SEQ).lt_eq(lit(upper)));
        let copied = if log.by_reference {
            in_range.and(col(OP).not_eq(lit(OP_APPENDED)))
        } else {
            in_range
        };
        let columns: Vec<datafusion::logical_expr::Expr> =
            shown.fields().iter().map(|f| col(f.name())).collect();
        let mut batches = SessionContext::new()
            .read_table(provider)
            .and_then(|df| df.filter(copied))
            .and_then(|df| df.select(columns))
            .map_err(|e| other(dataset, e))?
            .collect()
            .await
            .map_err(|e| other(dataset, e))?
            .iter()
            .map(|b| conform(&shown, b))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| other(dataset, e))?;
        let files: Vec<AppendedFile> = log
            .files
            .read()
            .map_err(|_| other(dataset, "file index lock poisoned"))?
            .iter()
            .filter(|f| f.last() > after && f.first <= upper)
            .cloned()
            .collect();
        if !files.is_empty() {
            let store = log
                .data_store
                .read()
                .map_err(|_| other(dataset, "store lock poisoned"))?
                .clone()
                .ok_or_else(|| other(dataset, "the log has not been brought up to date yet"))?;
            for file in &files {
                let from = (after + 1).max(file.first);
                let to = upper.min(file.last());
                let rows = read_rows(&store, &file.path, from - file.first, to - from + 1)
                    .await
                    .map_err(|e| other(dataset, format!("appended file {}: {e}", file.path)))?;
                let mut next = from - 1;
                for batch in rows {
                    let count = batch.num_rows() as i64;
                    let batch = numbered(&shown, &batch, next, OP_UPSERTED, file.changed_at)
                        .map_err(|e| other(dataset, e))?;
                    next += count;
                    batches.push(batch);
                }
                if next != to {
                    return Err(other(
                        dataset,
                        format!(
                            "appended file {} gave {} rows for changes {from}..={to} where \
                             the log says {}; was the table vacuumed?",
                            file.path,
                            next - from + 1,
                            to - from + 1
                        ),
                    ));
                }
            }
        }
        let table = MemTable::try_new(shown, vec![batches]).map_err(|e| other(dataset, e))?;
        Ok(Arc::new(table))
    }

    pub fn key(&self, dataset: &str) -> &[String] {
        self.logs.get(dataset).map_or(&[], |l| l.key.as_slice())
    }

    /// Why the dataset's log could not be extended lately, if it could not.
    pub fn error(&self, dataset: &str) -> Option<String> {
        self.errors.lock().ok()?.get(dataset).cloned()
    }

    /// Brings the log up to the data table's latest version. `data` is the dataset's table
    /// as just committed (or as opened).
    pub async fn catch_up(&self, dataset: &str, data: &DeltaTable) -> Result<(), StorageError> {
        let result = self.extend(dataset, data).await;
        if let Ok(mut errors) = self.errors.lock() {
            match &result {
                Ok(()) => errors.remove(dataset),
                Err(e) => errors.insert(dataset.to_string(), e.to_string()),
            };
        }
        result
    }

    async fn extend(&self, dataset: &str, data: &DeltaTable) -> Result<(), StorageError> {
        let log = self.log(dataset)?;
        let mut table = log.table.lock().await;
        let data_store = data.log_store().object_store(None);
        *log.data_store
            .write()
            .map_err(|_| other(dataset, "store lock poisoned"))? = Some(data_store.clone());
        let Some(latest) = data.version() else {
            return Ok(());
        };
        if log.stale.load(Ordering::Acquire) {
            self.reload(dataset, log, &table).await?;
        }
        let covered = match table.snapshot() {
            Ok(snapshot) => snapshot
                .transaction_version(table.log_store().as_ref(), APP_ID)
                .await
                .map_err(|e| other(dataset, e))?,
            Err(_) => None,
        };
        let first = covered.map_or(0, |v| v as u64 + 1);
        for version in first..=latest {
            let Some((commit, changed_at)) = data_commit(data, version).await? else {
                continue;
            };
            let mut last = *log.last_seq.borrow();
            let mut writer = ParallelWriter::new(
                &table,
                writer_properties(),
                parallel_writer::writers(),
                ROW_GROUP_ROWS,
            )
            .map_err(|e| other(dataset, e))?;
            let mut rows = 0usize;
            let mut pending_files = Vec::new();
            match commit {
                DataCommit::Run {
                    appended: Some(paths),
                    ..
                } if log.by_reference => {
                    let mut files = Vec::with_capacity(paths.len());
                    for path in paths {
                        let rows = file_rows(&data_store, &path)
                            .await
                            .map_err(|e| other(dataset, format!("data file {path}: {e}")))?;
                        if rows == 0 {
                            continue;
                        }
                        files.push(AppendedFile {
                            first: last + 1,
                            rows,
                            path,
                            changed_at,
                        });
                        last += rows;
                    }
                    if !files.is_empty() {
                        writer
                            .write(
                                file_rows_batch(&log.schema, &files)
                                    .map_err(|e| other(dataset, e))?,
                            )
                            .await
                            .map_err(|e| other(dataset, e))?;
                        rows += files.len();
                        pending_files = files;
                    }
                }
                DataCommit::Run { run_id, .. } => {
                    // The run's rows as that version holds them.
                    let filter = col("_run_id").eq(lit(run_id.as_str()));
                    let change = Change {
                        op: OP_UPSERTED,
                        changed_at,
                    };
                    let written =
                        append_changes(&mut writer, log, data, version, filter, change, last)
                            .await
                            .map_err(|e| other(dataset, e))?;
                    last += written as i64;
                    rows += written;
                }
                DataCommit::Deleted(keys) if !keys.is_empty() && version > 0 => {
                    // The rows as they were just before the delete: a share's row filter can
                    // then be applied to a delete too, and a key that was not there is no
                    // change at all.
                    let filter = key_predicate(&data_schema(&log.schema), &log.key, &keys)
                        .map_err(|e| other(dataset, e))?;
                    let change = Change {
                        op: OP_DELETED,
                        changed_at,
                    };
                    let written =
                        append_changes(&mut writer, log, data, version - 1, filter, change, last)
                            .await
                            .map_err(|e| other(dataset, e))?;
                    last += written as i64;
                    rows += written;
                }
                DataCommit::Deleted(_) => {}
            }
            let adds = writer.finish().await.map_err(|e| other(dataset, e))?;
            if rows == 0 {
                continue;
            }
            let mut metadata = HashMap::new();
            metadata.insert(META_LAST_SEQ.to_string(), serde_json::Value::from(last));
            let properties = CommitProperties::default()
                .with_metadata(metadata)
                .with_application_transaction(Transaction::new(APP_ID, version as i64));
            parallel_writer::commit(&mut table, adds, properties)
                .await
                .map_err(|e| other(dataset, e))?;
            // Readers see the new sequences only with the provider that holds them, so the
            // provider goes first and nothing is published if it cannot be had.
            log.stale.store(true, Ordering::Release);
            let provider = self.store.provider(dataset, &table).await?;
            *log.provider
                .write()
                .map_err(|_| other(dataset, "provider lock poisoned"))? = provider;
            log.files
                .write()
                .map_err(|_| other(dataset, "file index lock poisoned"))?
                .extend(pending_files);
            log.last_seq.send_replace(last);
            log.stale.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Reads the provider, file index and last sequence back from the log table.
    async fn reload(
        &self,
        dataset: &str,
        log: &DatasetLog,
        table: &DeltaTable,
    ) -> Result<(), StorageError> {
        let provider = self.store.provider(dataset, table).await?;
        let (files, last) = numbering(dataset, provider.clone(), log.by_reference).await?;
        *log.provider
            .write()
            .map_err(|_| other(dataset, "provider lock poisoned"))? = provider;
        *log.files
            .write()
            .map_err(|_| other(dataset, "file index lock poisoned"))? = files;
        log.last_seq.send_replace(last);
        log.stale.store(false, Ordering::Release);
        Ok(())
    }

    /// When change `seq` was committed (for the lag of a subscription).
    pub async fn changed_at(&self, dataset: &str, seq: i64) -> Option<i64> {
        if let Some(file) = self
            .log(dataset)
            .ok()?
            .files
            .read()
            .ok()?
            .iter()
            .find(|f| f.first <= seq && seq <= f.last())
        {
            return Some(file.changed_at);
        }
        let provider = self.provider(dataset).ok()?;
        let batches = SessionContext::new()
            .read_table(provider)
            .and_then(|df| df.filter(col(SEQ).eq(lit(seq))))
            .and_then(|df| df.select(vec![col(CHANGED_AT)]))
            .ok()?
            .collect()
            .await
            .ok()?;
        let batch = batches.into_iter().find(|b| b.num_rows() > 0)?;
        let column = cast(batch.column(0), &DataType::Int64).ok()?;
        let values = column.as_any().downcast_ref::<Int64Array>()?;
        Some(values.value(0))
    }
}

/// What kind of change rows are, and when it was committed (µs since the epoch).
#[derive(Clone, Copy)]
struct Change {
    op: &'static str,
    changed_at: i64,
}

/// Streams the rows of `data` at `version` that match `filter` into `writer`, numbered
/// from `after + 1`; returns how many.
async fn append_changes(
    writer: &mut ParallelWriter,
    log: &DatasetLog,
    data: &DeltaTable,
    version: u64,
    filter: datafusion::logical_expr::Expr,
    change: Change,
    after: i64,
) -> Result<usize, String> {
    let mut at_version = data.clone();
    if at_version.version() != Some(version) {
        at_version
            .load_version(version)
            .await
            .map_err(|e| e.to_string())?;
    }
    // Text as `Utf8`, the log's type, instead of views the rows would be cast back from
    // (the scan takes this from the session it is built with).
    let config = datafusion::prelude::SessionConfig::new().set_bool(
        "datafusion.execution.parquet.schema_force_view_types",
        false,
    );
    let ctx = SessionContext::new_with_config(config);
    let provider = at_version
        .table_provider()
        .with_session(Arc::new(ctx.state()))
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = ctx
        .read_table(provider)
        .and_then(|df| df.filter(filter))
        .map_err(|e| e.to_string())?
        .execute_stream()
        .await
        .map_err(|e| e.to_string())?;
    let mut written = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| e.to_string())?;
        if batch.num_rows() == 0 {
            continue;
        }
        let numbered = numbered(
            &log.schema,
            &batch,
            after + written as i64,
            change.op,
            change.changed_at,
        )
        .map_err(|e| e.to_string())?;
        written += batch.num_rows();
        writer.write(numbered).await.map_err(|e| e.to_string())?;
    }
    Ok(written)
}

/// Statistics only for `_seq`: the feed reads the log by sequence range and nothing prunes
/// by the other columns, whose min/max cost a good part of the encoding. LZ4 rather than
/// zstd: the log is written on every commit and read by the feed, never scanned by analysts.
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_statistics_enabled(ColumnPath::from(SEQ), EnabledStatistics::Page)
        .build()
}

/// The log's highest sequence, from its rows (not from commit metadata, which a maintenance
/// commit would not carry).
async fn last_seq_of(provider: Arc<dyn TableProvider>) -> Result<i64, StorageError> {
    let batches = SessionContext::new()
        .read_table(provider)
        .and_then(|df| {
            df.aggregate(
                vec![],
                vec![datafusion::functions_aggregate::expr_fn::max(col(SEQ))],
            )
        })
        .map_err(|e| other("?", e))?
        .collect()
        .await
        .map_err(|e| other("?", e))?;
    let value = batches
        .first()
        .filter(|b| b.num_rows() > 0)
        .and_then(|b| cast(b.column(0), &DataType::Int64).ok())
        .and_then(|c| {
            c.as_any()
                .downcast_ref::<Int64Array>()
                .filter(|a| !a.is_null(0))
                .map(|a| a.value(0))
        });
    Ok(value.unwrap_or(0))
}

/// The iochub commit info of data version `version`, and its time (µs since the epoch);
/// `None` for commits that change no rows (table creation, maintenance).
async fn data_commit(
    data: &DeltaTable,
    version: u64,
) -> Result<Option<(DataCommit, i64)>, StorageError> {
    let Some(bytes) = data
        .log_store()
        .read_commit_entry(version)
        .await
        .map_err(|e| other("data", e))?
    else {
        // Numbering on without it would shift every later sequence.
        return Err(other(
            "data",
            format!(
                "commit {version} of the data table is gone (log clean-up?); the change log cannot be extended past it"
            ),
        ));
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut info = None;
    let mut added = Vec::new();
    let mut removes = false;
    for line in text.lines() {
        let Ok(action) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(i) = action.get("commitInfo") {
            info = Some(i.clone());
        } else if let Some(path) = action.pointer("/add/path").and_then(|p| p.as_str()) {
            added.push(path.to_string());
        } else if action.get("remove").is_some() || action.get("cdc").is_some() {
            removes = true;
        }
    }
    let Some(info) = info else {
        return Ok(None);
    };
    let micros = info
        .get("timestamp")
        .and_then(|t| t.as_i64())
        .map_or_else(|| chrono::Utc::now().timestamp_micros(), |ms| ms * 1000);
    if let Some(keys) = info.get(META_DELETED_KEYS) {
        let keys = keys
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|k| k.as_object().cloned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        return Ok(Some((DataCommit::Deleted(keys), micros)));
    }
    let Some(run_id) = info.get(META_RUN_ID).and_then(|r| r.as_str()) else {
        return Ok(None);
    };
    // Only a blind append's files hold nothing but its rows; a MERGE also rewrites rows of
    // earlier runs into its files.
    let blind_append = !removes
        && info.get("operation").and_then(|o| o.as_str()) == Some("WRITE")
        && info
            .pointer("/operationParameters/mode")
            .and_then(|m| m.as_str())
            == Some("Append");
    let commit = DataCommit::Run {
        run_id: run_id.to_string(),
        appended: blind_append.then_some(added),
    };
    Ok(Some((commit, micros)))
}

/// The log's schema without the `_appended_*` columns: what readers of changes see.
fn without_appended_columns(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| !APPENDED_COLUMNS.contains(&f.name().as_str()))
            .cloned()
            .collect::<Vec<_>>(),
    ))
}

/// `column` as `field`'s type: cast where the type differs (the log is written as `Utf8`,
/// read with its scan's views), null where missing (a column added to the dataset after the
/// batch was written).
fn fitted(
    column: Option<ArrayRef>,
    field: &Field,
    rows: usize,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    match column {
        Some(c) if c.data_type() == field.data_type() => Ok(c),
        Some(c) => cast(&c, field.data_type()),
        None => Ok(new_null_array(field.data_type(), rows)),
    }
}

/// `batch`'s columns as `schema`'s, by name (see `fitted`).
fn conform(
    schema: &SchemaRef,
    batch: &RecordBatch,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            fitted(
                batch.column_by_name(field.name()).cloned(),
                field,
                batch.num_rows(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// The log rows standing for appended `files`: only the change columns and the file.
fn file_rows_batch(
    schema: &SchemaRef,
    files: &[AppendedFile],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let rows = files.len();
    let columns = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            match field.name().as_str() {
                SEQ => Arc::new(Int64Array::from_iter_values(files.iter().map(|f| f.first))),
                OP => Arc::new(StringArray::from(vec![OP_APPENDED; rows])),
                CHANGED_AT => Arc::new(
                    TimestampMicrosecondArray::from_iter_values(files.iter().map(|f| f.changed_at))
                        .with_timezone("UTC"),
                ),
                APPENDED_FILE => Arc::new(StringArray::from_iter_values(
                    files.iter().map(|f| f.path.as_str()),
                )),
                APPENDED_ROWS => {
                    Arc::new(Int64Array::from_iter_values(files.iter().map(|f| f.rows)))
                }
                _ => new_null_array(field.data_type(), rows),
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns)
}

/// What a log says of its numbering: the appended files it refers to and its last sequence.
async fn numbering(
    dataset: &str,
    provider: Arc<dyn TableProvider>,
    by_reference: bool,
) -> Result<(Vec<AppendedFile>, i64), StorageError> {
    let files = if by_reference {
        appended_files(provider.clone())
            .await
            .map_err(|e| other(dataset, e))?
    } else {
        Vec::new()
    };
    let copied = last_seq_of(provider).await?;
    let last = files.last().map_or(copied, |f| f.last().max(copied));
    Ok((files, last))
}

/// The appended files a log refers to, in order.
async fn appended_files(provider: Arc<dyn TableProvider>) -> Result<Vec<AppendedFile>, String> {
    let batches = SessionContext::new()
        .read_table(provider)
        .and_then(|df| df.filter(col(OP).eq(lit(OP_APPENDED))))
        .and_then(|df| {
            df.select(vec![
                col(SEQ),
                col(CHANGED_AT),
                col(APPENDED_FILE),
                col(APPENDED_ROWS),
            ])
        })
        .and_then(|df| df.sort(vec![col(SEQ).sort(true, false)]))
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    for batch in &batches {
        let seq = cast(batch.column(0), &DataType::Int64).map_err(|e| e.to_string())?;
        let at = cast(batch.column(1), &DataType::Int64).map_err(|e| e.to_string())?;
        let path = cast(batch.column(2), &DataType::Utf8).map_err(|e| e.to_string())?;
        let rows = cast(batch.column(3), &DataType::Int64).map_err(|e| e.to_string())?;
        let (Some(seq), Some(at), Some(path), Some(rows)) = (
            seq.as_any().downcast_ref::<Int64Array>(),
            at.as_any().downcast_ref::<Int64Array>(),
            path.as_any().downcast_ref::<StringArray>(),
            rows.as_any().downcast_ref::<Int64Array>(),
        ) else {
            return Err("unexpected column types in the change log".into());
        };
        for row in 0..batch.num_rows() {
            files.push(AppendedFile {
                first: seq.value(row),
                rows: rows.value(row),
                path: path.value(row).to_string(),
                changed_at: at.value(row),
            });
        }
    }
    Ok(files)
}

/// `batch`'s columns in the log's shape, numbered from `after + 1`.
fn numbered(
    schema: &SchemaRef,
    batch: &RecordBatch,
    after: i64,
    op: &str,
    changed_at: i64,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let rows = batch.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column: Option<ArrayRef> = match field.name().as_str() {
            SEQ => Some(Arc::new(Int64Array::from_iter_values(
                (after + 1)..=(after + rows as i64),
            ))),
            OP => Some(Arc::new(StringArray::from(vec![op; rows]))),
            CHANGED_AT => Some(Arc::new(
                TimestampMicrosecondArray::from(vec![changed_at; rows]).with_timezone("UTC"),
            )),
            name => batch.column_by_name(name).cloned(),
        };
        columns.push(fitted(column, field, rows)?);
    }
    RecordBatch::try_new(schema.clone(), columns)
}

/// The dataset's columns within the log's schema.
fn data_schema(log: &Schema) -> Schema {
    Schema::new(
        log.fields()
            .iter()
            .filter(|f| !META_COLUMNS.contains(&f.name().as_str()))
            .map(|f| f.as_ref().clone())
            .collect::<Vec<_>>(),
    )
}

/// `(k1 = v1 AND k2 = v2) OR ...`, each value typed as its column.
pub fn key_predicate(
    schema: &arrow::datatypes::Schema,
    key: &[String],
    keys: &[serde_json::Map<String, serde_json::Value>],
) -> Result<datafusion::logical_expr::Expr, String> {
    use datafusion::common::ScalarValue;
    let fields: Vec<arrow::datatypes::Field> = key
        .iter()
        .map(|k| {
            schema
                .field_with_name(k)
                .map(|f| f.as_ref().clone().with_nullable(true))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let key_schema = Arc::new(arrow::datatypes::Schema::new(fields));
    let mut decoder = arrow::json::ReaderBuilder::new(key_schema)
        .build_decoder()
        .map_err(|e| e.to_string())?;
    decoder.serialize(keys).map_err(|e| e.to_string())?;
    let batch = decoder
        .flush()
        .map_err(|e| e.to_string())?
        .ok_or("no keys")?;
    let value = |column: usize, row: usize| {
        ScalarValue::try_from_array(batch.column(column), row)
            .map(lit)
            .map_err(|e| e.to_string())
    };
    if let [only] = key {
        let values = (0..batch.num_rows())
            .map(|row| value(0, row))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(datafusion::logical_expr::col(only.as_str()).in_list(values, false));
    }
    let mut any: Option<datafusion::logical_expr::Expr> = None;
    for row in 0..batch.num_rows() {
        let mut all: Option<datafusion::logical_expr::Expr> = None;
        for (i, k) in key.iter().enumerate() {
            let eq = datafusion::logical_expr::col(k.as_str()).eq(value(i, row)?);
            all = Some(match all {
                Some(a) => a.and(eq),
                None => eq,
            });
        }
        if let Some(all) = all {
            any = Some(match any {
                Some(a) => a.or(all),
                None => all,
            });
        }
    }
    any.ok_or_else(|| "no keys".to_string())
}

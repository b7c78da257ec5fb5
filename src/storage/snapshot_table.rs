//! A dataset table as queries read it: the Parquet files of one Delta snapshot, scanned by
//! DataFusion's own Parquet source.
//!
//! Why not delta-rs's provider: every scan of it replays the snapshot's file list through
//! the Delta kernel (on a blocking thread), parses the files' statistics and wraps the
//! Parquet scan in its own operator that splits every batch by file. That cost about
//! 1.3 ms a query (`SELECT service_code FROM reports LIMIT 1`: 1.9 ms against 0.5 ms for
//! `SELECT 1`), a fifth of the benchmark's group-by. The hub's tables use none of the Delta
//! features that need the kernel at read time (deletion vectors, column mapping, partition
//! columns); a table that does (written by another tool) keeps delta-rs's provider, see
//! `SnapshotTable::usable`.
//!
//! The snapshot is fixed when the table is committed (`Hub::commit_to` registers a new one),
//! so a query never sees half a commit. Filters are left to DataFusion's own pushdown: row
//! groups and pages are pruned by their statistics, and rows are filtered while decoding
//! only when the session asks (`datafusion.execution.parquet.pushdown_filters`).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::common::config::TableParquetOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use deltalake::DeltaTable;
use object_store::{ObjectMeta, ObjectStore};

pub struct SnapshotTable {
    schema: SchemaRef,
    store_url: ObjectStoreUrl,
    store: Arc<dyn ObjectStore>,
    files: Vec<PartitionedFile>,
}

impl std::fmt::Debug for SnapshotTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotTable")
            .field("store_url", &self.store_url)
            .field("files", &self.files.len())
            .finish()
    }
}

impl SnapshotTable {
    /// The table's current files, read with `schema` (delta-rs's provider's schema, so both
    /// readers give the same types), or `None` when the table needs the Delta kernel to be
    /// read correctly.
    pub fn usable(table: &DeltaTable, schema: SchemaRef) -> Option<SnapshotTable> {
        let snapshot = table.snapshot().ok()?;
        let metadata = snapshot.metadata();
        if !metadata.partition_columns().is_empty() {
            return None;
        }
        // Any column mapping other than `none` renames the physical columns.
        if metadata
            .configuration()
            .get("delta.columnMapping.mode")
            .is_some_and(|mode| mode != "none")
        {
            return None;
        }
        // The hub opens and commits tables with their file list loaded (delta-rs's default),
        // so the snapshot's files are the table's; a table loaded without them would list
        // none here.
        let mut files = Vec::new();
        for file in snapshot.log_data().iter() {
            // A deletion vector hides rows of the file; an absolute path (a shallow clone)
            // points outside the table's store.
            if file.deletion_vector_descriptor().is_some() || file.path().contains("://") {
                return None;
            }
            files.push(PartitionedFile::new_from_meta(ObjectMeta {
                location: file.object_store_path(),
                // With the size, what the footer cache checks a cached footer against.
                last_modified: chrono::DateTime::from_timestamp_millis(file.modification_time())
                    .unwrap_or_default(),
                size: u64::try_from(file.size()).ok()?,
                e_tag: None,
                version: None,
            }));
        }
        let log_store = table.log_store();
        Some(SnapshotTable {
            schema,
            store_url: log_store.object_store_url(),
            store: log_store.object_store(None),
            files,
        })
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: DataFusion keeps the filter above the scan and pushes it into the Parquet
        // source itself (pruning; row filtering when the session enables it).
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.files.is_empty() {
            // No file group at all would be a plan of zero partitions, which operators
            // needing one partition (OFFSET, a window over everything) refuse.
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let runtime = state.runtime_env();
        // Table-relative paths resolve through the table's own store, registered once in
        // the runtime (each query's runtime shares the hub's registry).
        if runtime.object_store(&self.store_url).is_err() {
            runtime.register_object_store(self.store_url.as_ref(), self.store.clone());
        }
        let options = TableParquetOptions {
            global: state.config_options().execution.parquet.clone(),
            ..Default::default()
        };
        // Footers are read once per file and kept in the runtime's metadata cache.
        let reader = CachedParquetFileReaderFactory::new(
            self.store.clone(),
            runtime.cache_manager.get_file_metadata_cache(),
        );
        let source = ParquetSource::new(TableSchema::from(self.schema.clone()))
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(Arc::new(reader));
        let groups = FileGroup::new(self.files.clone())
            .split_files(state.config().target_partitions().max(1));
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::TableStore;
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;
    use deltalake::operations::write::SchemaMode;
    use deltalake::protocol::SaveMode;

    fn batch(columns: Vec<(&str, Arc<dyn arrow::array::Array>)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, c)| c).collect(),
        )
        .unwrap()
    }

    async fn rows(provider: Arc<dyn TableProvider>, sql: &str) -> Vec<String> {
        let ctx = SessionContext::new();
        ctx.register_table("t", provider).unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        text.lines().map(str::to_string).collect()
    }

    #[tokio::test]
    async fn a_hub_table_is_read_from_its_files_and_an_older_file_lacks_a_newer_column() {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path());
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let table = store.open("t", &schema).await.unwrap();
        let table = table
            .write(vec![batch(vec![(
                "id",
                Arc::new(Int64Array::from(vec![1, 2])),
            )])])
            .with_save_mode(SaveMode::Append)
            .await
            .unwrap();
        // A later run brings a column the first file does not have.
        let table = table
            .write(vec![batch(vec![
                ("id", Arc::new(Int64Array::from(vec![3]))),
                ("note", Arc::new(StringArray::from(vec!["mới"]))),
            ])])
            .with_save_mode(SaveMode::Append)
            .with_schema_mode(SchemaMode::Merge)
            .await
            .unwrap();
        let provider = store.provider("t", &table).await.unwrap();
        assert!(
            provider.as_ref().is::<SnapshotTable>(),
            "a table the hub wrote is read from its files, not through delta-rs's scan"
        );
        assert_eq!(
            rows(provider, "SELECT id, note FROM t ORDER BY id").await,
            [
                "+----+------+",
                "| id | note |",
                "+----+------+",
                "| 1  |      |",
                "| 2  |      |",
                "| 3  | mới  |",
                "+----+------+",
            ]
        );
    }

    #[tokio::test]
    async fn a_table_without_files_answers_with_no_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path());
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let table = store.open("t", &schema).await.unwrap();
        let provider = store.provider("t", &table).await.unwrap();
        assert!(provider.as_ref().is::<SnapshotTable>());
        assert_eq!(
            rows(provider.clone(), "SELECT count(*) AS n FROM t").await[3],
            "| 0 |"
        );
        assert_eq!(
            rows(provider.clone(), "SELECT id FROM t WHERE id > 1 LIMIT 5").await,
            ["++", "++"]
        );
        // Plans that need their input in one partition.
        for sql in [
            "SELECT id FROM t ORDER BY id OFFSET 1",
            "SELECT id, row_number() OVER () AS n FROM t",
        ] {
            assert_eq!(rows(provider.clone(), sql).await, ["++", "++"], "{sql}");
        }
    }

    #[tokio::test]
    async fn a_partitioned_table_keeps_delta_rs_provider() {
        let dir = tempfile::tempdir().unwrap();
        let url = deltalake::ensure_table_uri(dir.path().to_string_lossy()).unwrap();
        let table = DeltaTable::try_from_url(url)
            .await
            .unwrap()
            .write(vec![batch(vec![
                ("id", Arc::new(Int64Array::from(vec![1, 2]))),
                ("unit", Arc::new(StringArray::from(vec!["A", "B"]))),
            ])])
            .with_partition_columns(["unit"])
            .await
            .unwrap();
        let schema = table.table_provider().await.unwrap().schema();
        assert!(SnapshotTable::usable(&table, schema).is_none());
        // The partition values live in the paths, not the files: delta-rs's scan reads them.
        let provider = TableStore::new(dir.path())
            .provider("t", &table)
            .await
            .unwrap();
        assert!(!provider.as_ref().is::<SnapshotTable>());
        assert_eq!(
            rows(provider, "SELECT id, unit FROM t ORDER BY id").await[3],
            "| 1  | A    |"
        );
    }
}

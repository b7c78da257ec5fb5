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
//!
//! String columns that every file stores dictionary-encoded are read as Arrow dictionaries
//! (`dictionary_scan`): a filter on one is evaluated on its dictionary instead of on every
//! row, and a partial aggregation grouped by them groups by entry (`dictionary_aggregate`).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::config::TableParquetOptions;
use datafusion::common::{DFSchema, Result, plan_err};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use deltalake::DeltaTable;
use object_store::{ObjectMeta, ObjectStore};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::basic::{Encoding, PageType};
use parquet::file::metadata::ColumnChunkMetaData;

use super::dictionary_scan::{ColumnCondition, DictionaryScanExec, dictionary_type};

pub struct SnapshotTable {
    schema: SchemaRef,
    store_url: ObjectStoreUrl,
    store: Arc<dyn ObjectStore>,
    files: Vec<PartitionedFile>,
    /// What the files' footers say, read by the first scan that projects a string column.
    layouts: tokio::sync::OnceCell<Arc<FileLayouts>>,
}

/// What the footers of a snapshot's files say about their string columns.
#[derive(Debug)]
struct FileLayouts {
    /// Each file's Arrow schema as the Parquet reader derives it (in `files`' order).
    schemas: Vec<SchemaRef>,
    /// The string columns every file stores dictionary-encoded in every row group (or
    /// lacks).
    dictionary_columns: HashSet<String>,
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
            layouts: tokio::sync::OnceCell::new(),
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
        // Exact: the scan evaluates the filter on a dictionary column itself
        // (`dictionary_scan`), so DataFusion need not check it again. That is known once the
        // footers were read (by the snapshot's first scan of a string column); a snapshot's
        // layouts never change once read, so `scan` sees what was decided here.
        // Inexact otherwise: DataFusion keeps the filter above the scan and pushes it into
        // the Parquet source itself (pruning; row filtering when the session enables it).
        let props = ExecutionProps::new();
        Ok(filters
            .iter()
            .map(|filter| match self.layouts.get() {
                Some(layouts)
                    if split_conjunction(filter)
                        .iter()
                        .all(|c| self.dictionary_condition(layouts, c, &props).is_some()) =>
                {
                    TableProviderFilterPushDown::Exact
                }
                _ => TableProviderFilterPushDown::Inexact,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
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
        if let Some(plan) = self
            .dictionary_scan(state, projection, filters, limit)
            .await?
        {
            return Ok(plan);
        }
        let config = FileScanConfigBuilder::new(
            self.store_url.clone(),
            Arc::new(self.source(state, self.schema.clone())),
        )
        .with_file_groups(self.groups(state, self.files.clone()))
        .with_projection_indices(projection.cloned())?
        .with_limit(limit)
        .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

impl SnapshotTable {
    /// A Parquet source reading the files as `schema`, with the session's options.
    fn source(&self, state: &dyn Session, schema: SchemaRef) -> ParquetSource {
        let options = TableParquetOptions {
            global: state.config_options().execution.parquet.clone(),
            ..Default::default()
        };
        ParquetSource::new(TableSchema::from(schema))
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(Arc::new(self.reader_factory(state.runtime_env())))
    }

    /// Footers are read once per file and kept in the runtime's metadata cache.
    fn reader_factory(&self, runtime: &RuntimeEnv) -> CachedParquetFileReaderFactory {
        CachedParquetFileReaderFactory::new(
            self.store.clone(),
            runtime.cache_manager.get_file_metadata_cache(),
        )
    }

    fn groups(&self, state: &dyn Session, files: Vec<PartitionedFile>) -> Vec<FileGroup> {
        FileGroup::new(files).split_files(state.config().target_partitions().max(1))
    }

    /// The scan when some projected string columns are dictionary-encoded in every file:
    /// those are read as dictionaries (so that a partial aggregation grouped by them can
    /// group by dictionary entry, `dictionary_aggregate`), the filters that test one of
    /// them each are evaluated on the dictionaries, and the scan hands the table's types
    /// upwards (`DictionaryScanExec`). `None` when no projected or filtered column is of
    /// that kind.
    async fn dictionary_scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let is_string = |index: usize| is_string_type(self.schema.field(index).data_type());
        let projected: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let conjuncts: Vec<&Expr> = filters.iter().flat_map(split_conjunction).collect();
        let filtered_string = conjuncts.iter().any(|c| {
            c.column_refs()
                .iter()
                .any(|r| self.schema.index_of(&r.name).is_ok_and(is_string))
        });
        if !filtered_string && !projected.iter().any(|i| is_string(*i)) {
            return Ok(None);
        }
        let layouts = match self.layouts(state.runtime_env()).await {
            Ok(layouts) => layouts,
            Err(error) => {
                // The ordinary scan will meet the same footer and report it. No filter was
                // reported exact: that needs the layouts read.
                tracing::debug!(%error, "reading the footers for a dictionary scan");
                return Ok(None);
            }
        };
        // The conditions evaluated here, on the projected columns and on those read only
        // for them (a filter reported exact is not projected by DataFusion), read after
        // the projected ones.
        let mut read = projected.clone();
        let mut conditions = Vec::new();
        for conjunct in conjuncts {
            let Some(mut condition) =
                self.dictionary_condition(&layouts, conjunct, state.execution_props())
            else {
                // One that plans without the query's properties (as `supports_filters_pushdown`
                // plans it) may have been reported exact and dropped from DataFusion's filter.
                if self
                    .dictionary_condition(&layouts, conjunct, &ExecutionProps::new())
                    .is_some()
                {
                    return plan_err!("the condition {conjunct} did not plan for the scan");
                }
                continue;
            };
            condition.column = match read.iter().position(|i| *i == condition.column) {
                Some(position) => position,
                None => {
                    read.push(condition.column);
                    read.len() - 1
                }
            };
            conditions.push(condition);
        }
        let dictionary_columns: HashSet<usize> = read
            .iter()
            .copied()
            .filter(|i| {
                layouts
                    .dictionary_columns
                    .contains(self.schema.field(*i).name())
            })
            .collect();
        if dictionary_columns.is_empty() {
            return Ok(None);
        }
        // The scan, and each file, read those columns as dictionaries.
        let names: HashSet<&String> = dictionary_columns
            .iter()
            .map(|i| self.schema.field(*i).name())
            .collect();
        let inner = Arc::new(with_dictionaries(&self.schema, &names));
        let files = self
            .files
            .iter()
            .zip(&layouts.schemas)
            .map(|(file, schema)| {
                file.clone()
                    .with_arrow_schema(Arc::new(with_dictionaries(schema, &names)))
            })
            .collect();
        // The other conditions reach the Parquet source through DataFusion's filter
        // pushdown (`DictionaryScanExec` lets through those on other columns).
        let source = self.source(state, inner.clone());
        // Without conditions here every row goes up: the limit can stay with the scan.
        let limit = if conditions.is_empty() { limit } else { None };
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file_groups(self.groups(state, files))
            .with_projection_indices(Some(read.clone()))?
            .with_limit(limit)
            .build();
        Ok(Some(Arc::new(DictionaryScanExec::new(
            DataSourceExec::from_data_source(config),
            conditions,
            Arc::new(self.schema.project(&read)?),
            (0..projected.len()).collect(),
        )?)))
    }

    /// `conjunct` as this table's scan evaluates it on a dictionary column's entries: a
    /// deterministic condition on one column that every file stores dictionary-encoded,
    /// planned on that column alone (`column` is its index in the table). `None` for any
    /// other conjunct, which DataFusion's filter above the scan evaluates.
    fn dictionary_condition(
        &self,
        layouts: &FileLayouts,
        conjunct: &Expr,
        props: &ExecutionProps,
    ) -> Option<ColumnCondition> {
        let refs = conjunct.column_refs();
        let column = refs.iter().next().filter(|_| refs.len() == 1)?;
        let index = self.schema.index_of(&column.name).ok()?;
        let field = self.schema.field(index);
        if !layouts.dictionary_columns.contains(field.name()) || conjunct.is_volatile() {
            return None;
        }
        // Nullable whatever the column: the condition is also evaluated on a null, the
        // value of rows without one.
        let value_schema = Arc::new(Schema::new(vec![field.clone().with_nullable(true)]));
        let df = DFSchema::try_from(value_schema.as_ref().clone()).ok()?;
        // Without the table's name: the optimizer asks `supports_filters_pushdown` with
        // qualified columns, the physical planner hands `scan` unqualified ones.
        let conjunct = &unnormalize_col(conjunct.clone());
        let predicate =
            create_physical_expr(conjunct, &df, props, &PhysicalPlanningContext::default()).ok()?;
        Some(ColumnCondition {
            column: index,
            predicate,
            value_schema,
        })
    }

    /// The files' footers, read once per snapshot.
    async fn layouts(&self, runtime: &RuntimeEnv) -> Result<Arc<FileLayouts>> {
        self.layouts
            .get_or_try_init(|| async {
                let factory = self.reader_factory(runtime);
                let metrics = ExecutionPlanMetricsSet::new();
                let mut schemas = Vec::with_capacity(self.files.len());
                let mut dictionary_columns: HashSet<String> = self
                    .schema
                    .fields()
                    .iter()
                    .filter(|f| is_string_type(f.data_type()))
                    .map(|f| f.name().clone())
                    .collect();
                for file in &self.files {
                    let mut reader = factory.create_reader(0, file.clone(), None, &metrics)?;
                    let metadata = reader.get_metadata(None).await?;
                    let arrow =
                        ArrowReaderMetadata::try_new(metadata.clone(), ArrowReaderOptions::new())?;
                    let schema = arrow.schema().clone();
                    let parquet_schema = metadata.file_metadata().schema_descr();
                    dictionary_columns.retain(|name| {
                        let Some((leaf, field)) =
                            parquet::arrow::parquet_column(parquet_schema, &schema, name)
                        else {
                            // The file predates the column: it reads as nulls.
                            return schema.field_with_name(name).is_err();
                        };
                        matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8)
                            && metadata
                                .row_groups()
                                .iter()
                                .all(|group| fully_dictionary_encoded(group.column(leaf)))
                    });
                    schemas.push(schema);
                }
                Ok(Arc::new(FileLayouts {
                    schemas,
                    dictionary_columns,
                }))
            })
            .await
            .cloned()
    }
}

fn is_string_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
    )
}

/// `schema` with the columns `names` typed as dictionaries.
fn with_dictionaries(schema: &Schema, names: &HashSet<&String>) -> Schema {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| {
            if names.contains(f.name()) {
                Arc::new(f.as_ref().clone().with_data_type(dictionary_type()))
            } else {
                f.clone()
            }
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// Whether every data page of `column` indexes its dictionary (none fell back to plain
/// values, as a writer does when the dictionary grows too large).
fn fully_dictionary_encoded(column: &ColumnChunkMetaData) -> bool {
    let dictionary =
        |e: Encoding| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY);
    if column.dictionary_page_offset().is_none() {
        return false;
    }
    if let Some(mask) = column.page_encoding_stats_mask() {
        return mask.is_only(Encoding::RLE_DICTIONARY) || mask.is_only(Encoding::PLAIN_DICTIONARY);
    }
    column.page_encoding_stats().is_some_and(|stats| {
        stats
            .iter()
            .filter(|s| matches!(s.page_type, PageType::DATA_PAGE | PageType::DATA_PAGE_V2))
            .all(|s| dictionary(s.encoding))
    })
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

    /// The plan DataFusion runs for `sql`, with each operator's metrics.
    async fn analyzed(provider: Arc<dyn TableProvider>, sql: &str) -> String {
        rows(provider, &format!("EXPLAIN ANALYZE {sql}"))
            .await
            .join("\n")
    }

    /// How many rows the dictionary filter let through, from an analyzed plan.
    fn dictionary_filter_rows(plan: &str) -> Option<usize> {
        let line = plan.lines().find(|l| l.contains("DictionaryScanExec"))?;
        let rest = &line[line.find("output_rows=")? + "output_rows=".len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }

    async fn write_kinds(
        table: DeltaTable,
        ids: Vec<i64>,
        kinds: Vec<Option<&str>>,
        dictionary: bool,
    ) -> DeltaTable {
        use deltalake::parquet::file::properties::WriterProperties;
        let units: Vec<Option<&str>> = ids
            .iter()
            .map(|id| [Some("xã A"), Some("xã B"), None][*id as usize % 3])
            .collect();
        table
            .write(vec![batch(vec![
                ("id", Arc::new(Int64Array::from(ids))),
                ("kind", Arc::new(StringArray::from(kinds))),
                ("unit", Arc::new(StringArray::from(units))),
            ])])
            .with_save_mode(SaveMode::Append)
            .with_writer_properties(
                WriterProperties::builder()
                    .set_dictionary_enabled(dictionary)
                    .build(),
            )
            .await
            .unwrap()
    }

    async fn kinds_table(dir: &std::path::Path, dictionary: bool) -> Arc<dyn TableProvider> {
        let store = TableStore::new(dir);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("kind", DataType::Utf8, true),
            Field::new("unit", DataType::Utf8, true),
        ]));
        let table = store.open("t", &schema).await.unwrap();
        let kinds = vec![
            Some("rác"),
            Some("vỉa hè"),
            Some("rác thải"),
            None,
            Some("vỉa hè"),
            Some("khác"),
        ];
        let table = write_kinds(table, (1..=6).collect(), kinds, dictionary).await;
        // A second file, whose dictionary holds other values in another order.
        let table = write_kinds(
            table,
            vec![7, 8],
            vec![Some("khác"), Some("rác")],
            dictionary,
        )
        .await;
        store.provider("t", &table).await.unwrap()
    }

    #[tokio::test]
    async fn a_filter_on_a_dictionary_encoded_column_is_evaluated_on_its_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        let provider = kinds_table(dir.path(), true).await;
        // A filter, the ids it selects, and how many rows pass its conditions on `kind`.
        let cases = [
            ("kind LIKE '%rác%'", vec!["1", "3", "8"], 3),
            ("kind IS NULL", vec!["4"], 1),
            ("kind = 'vỉa hè' AND id > 2", vec!["5"], 2),
            (
                "upper(kind) = 'KHÁC' OR kind IS NULL",
                vec!["4", "6", "7"],
                3,
            ),
            ("kind IN ('khác', 'không có')", vec!["6", "7"], 2),
        ];
        for (filter, ids, passing) in cases {
            let sql = format!("SELECT id, kind FROM t WHERE {filter} ORDER BY id");
            let got: Vec<String> = rows(provider.clone(), &sql).await[3..]
                .iter()
                .filter(|l| !l.starts_with('+'))
                .map(|l| l.split('|').nth(1).unwrap().trim().to_string())
                .collect();
            assert_eq!(got, ids, "{filter}");
            // The dictionary filter itself kept exactly those rows (DataFusion's own
            // filter above it would hide rows it let through wrongly).
            let plan = analyzed(provider.clone(), &sql).await;
            assert_eq!(
                dictionary_filter_rows(&plan),
                Some(passing),
                "{filter}\n{plan}"
            );
        }
        // The column keeps the table's type in what the query returns.
        let ctx = SessionContext::new();
        ctx.register_table("t", provider.clone()).unwrap();
        let batches = ctx
            .sql("SELECT kind FROM t WHERE kind LIKE 'r%'")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let kind_type = provider
            .schema()
            .field_with_name("kind")
            .unwrap()
            .data_type()
            .clone();
        assert!(!matches!(kind_type, DataType::Dictionary(..)));
        assert_eq!(batches[0].schema().field(0).data_type(), &kind_type);
        // A filter on another column only leaves the dictionary scan without conditions.
        let plan = analyzed(provider, "SELECT kind FROM t WHERE id = 2").await;
        assert!(plan.contains("DictionaryScanExec: []"), "{plan}");
    }

    #[tokio::test]
    async fn a_column_stored_as_plain_values_is_filtered_row_by_row() {
        let dir = tempfile::tempdir().unwrap();
        let provider = kinds_table(dir.path(), false).await;
        let sql = "SELECT id FROM t WHERE kind LIKE '%rác%' ORDER BY id";
        assert_eq!(
            rows(provider.clone(), sql).await[3..6],
            ["| 1  |", "| 3  |", "| 8  |"]
        );
        let plan = analyzed(provider, sql).await;
        assert!(!plan.contains("DictionaryScanExec"), "{plan}");
    }

    /// The hub's rule added to DataFusion's defaults, or not.
    fn context(dictionary_aggregation: bool) -> SessionContext {
        let mut builder = datafusion::execution::SessionStateBuilder::new().with_default_features();
        if dictionary_aggregation {
            builder = builder.with_physical_optimizer_rule(Arc::new(
                super::super::dictionary_aggregate::DictionaryAggregation,
            ));
        }
        SessionContext::new_with_state(builder.build())
    }

    /// The same with every file in one partition, and DataFusion's two aggregation halves
    /// left apart (DataFusion would merge them into one, which the hub's rule leaves alone),
    /// so that one partial aggregation meets every file.
    fn one_partition_context(dictionary_aggregation: bool) -> SessionContext {
        use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
        let mut rules: Vec<_> = PhysicalOptimizer::new()
            .rules
            .into_iter()
            .filter(|rule| rule.name() != "CombinePartialFinalAggregate")
            .collect();
        if dictionary_aggregation {
            rules.push(Arc::new(
                super::super::dictionary_aggregate::DictionaryAggregation,
            ));
        }
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(datafusion::prelude::SessionConfig::new().with_target_partitions(1))
            .with_default_features()
            .with_physical_optimizer_rules(rules)
            .build();
        SessionContext::new_with_state(state)
    }

    async fn pretty(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn grouping_by_dictionary_columns_gives_datafusion_s_answers() {
        let dir = tempfile::tempdir().unwrap();
        let provider = kinds_table(dir.path(), true).await;
        let (with_rule, without) = (context(true), context(false));
        for ctx in [&with_rule, &without] {
            ctx.register_table("t", provider.clone()).unwrap();
        }
        for sql in [
            "SELECT kind, count(*) AS n, sum(id) AS s, min(id) AS lo, max(unit) AS hi \
             FROM t GROUP BY kind ORDER BY kind",
            "SELECT unit, kind, count(*) AS n, avg(id) FILTER (WHERE id > 2) AS a \
             FROM t GROUP BY unit, kind ORDER BY unit, kind",
            "SELECT kind, count(DISTINCT id) AS ids, count(unit) AS n \
             FROM t GROUP BY kind ORDER BY kind",
        ] {
            let expected = pretty(&without, sql).await;
            assert_eq!(pretty(&with_rule, sql).await, expected, "{sql}");
            let plan = pretty(&with_rule, &format!("EXPLAIN {sql}")).await;
            assert!(plan.contains("DictionaryAggregateExec"), "{sql}\n{plan}");
        }
        // With a filter on another column, DataFusion's own filter sits between the scan and
        // the partial aggregation: it is applied there too.
        for sql in [
            "SELECT kind, count(*) AS n FROM t WHERE kind LIKE '%r%' AND id > 1 \
             GROUP BY kind ORDER BY kind",
            "SELECT unit, count(*) AS n FROM t WHERE kind = 'không có' GROUP BY unit",
            "SELECT unit, count(*) AS n, sum(id) AS s FROM t WHERE id > 2 GROUP BY unit ORDER BY unit",
        ] {
            assert_eq!(
                pretty(&with_rule, sql).await,
                pretty(&without, sql).await,
                "{sql}"
            );
            let plan = pretty(&with_rule, &format!("EXPLAIN {sql}")).await;
            assert!(plan.contains("DictionaryAggregateExec"), "{sql}\n{plan}");
        }
        // An aggregate without a group accumulator (a distinct count of strings) is
        // DataFusion's, with the same answer.
        let sql = "SELECT kind, count(DISTINCT unit) AS units FROM t GROUP BY kind ORDER BY kind";
        assert_eq!(pretty(&with_rule, sql).await, pretty(&without, sql).await);
        // A group per kind, the null one included.
        let counts = pretty(
            &with_rule,
            "SELECT kind, count(*) AS n FROM t GROUP BY kind ORDER BY kind",
        )
        .await;
        assert!(counts.contains("|          | 1 |"), "{counts}");
        assert!(counts.contains("| rác      | 2 |"), "{counts}");
        // Grouping by an expression, or by a column read as plain values, stays DataFusion's.
        let plan = pretty(
            &with_rule,
            "EXPLAIN SELECT upper(kind), count(*) FROM t GROUP BY upper(kind)",
        )
        .await;
        assert!(!plan.contains("DictionaryAggregateExec"), "{plan}");
        let plain_dir = tempfile::tempdir().unwrap();
        let plain = kinds_table(plain_dir.path(), false).await;
        let ctx = context(true);
        ctx.register_table("t", plain).unwrap();
        let plan = pretty(&ctx, "EXPLAIN SELECT kind, count(*) FROM t GROUP BY kind").await;
        assert!(!plan.contains("DictionaryAggregateExec"), "{plan}");
    }

    #[tokio::test]
    async fn once_its_footers_are_read_the_table_evaluates_dictionary_conditions_exactly() {
        use TableProviderFilterPushDown::{Exact, Inexact};
        use datafusion::prelude::{col, lit, random};
        let dir = tempfile::tempdir().unwrap();
        let provider = kinds_table(dir.path(), true).await;
        let on_kind = col("kind").like(lit("%rác%"));
        // Before any scan the footers are unread: DataFusion keeps its own filter.
        assert_eq!(
            provider.supports_filters_pushdown(&[&on_kind]).unwrap(),
            [Inexact]
        );
        rows(provider.clone(), "SELECT kind FROM t LIMIT 1").await;
        let on_kind = col("kind").eq(lit("rác"));
        let on_id = col("id").gt(lit(2));
        let both = col("kind").eq(lit("khác")).and(col("unit").is_null());
        let mixed = col("kind").eq(lit("khác")).and(col("id").gt(lit(2)));
        let two_columns = col("kind").eq(col("unit"));
        let volatile = col("kind").eq(lit("khác")).or(random().gt(lit(0.5)));
        assert_eq!(
            provider
                .supports_filters_pushdown(&[
                    &on_kind,
                    &on_id,
                    &both,
                    &mixed,
                    &two_columns,
                    &volatile
                ])
                .unwrap(),
            [Exact, Inexact, Exact, Inexact, Inexact, Inexact]
        );
        // Exact conditions leave DataFusion's filter out of the plan, and their columns
        // out of its projection: the scan reads them itself and hands up only the others.
        // Every answer is the one the plain-encoded table gives (DataFusion's own filter).
        let plain_dir = tempfile::tempdir().unwrap();
        let plain = kinds_table(plain_dir.path(), false).await;
        let (with_rule, without) = (context(true), context(false));
        with_rule.register_table("t", provider.clone()).unwrap();
        without.register_table("t", plain).unwrap();
        for sql in [
            "SELECT id FROM t WHERE kind LIKE '%rác%' ORDER BY id",
            "SELECT count(*) AS n FROM t WHERE kind IN ('khác', 'vỉa hè')",
            "SELECT id FROM t WHERE kind IS NOT NULL AND unit = 'xã A' ORDER BY id",
            "SELECT id FROM t WHERE kind LIKE '%rác%' ORDER BY id DESC LIMIT 2",
            // A limit without an order reaches the scan once its filters are exact; the
            // scan's conditions drop rows after the Parquet reader, so that must not stop
            // at 2 rows (ids 1 and 2, then 7 and 8: only one of them would pass).
            "SELECT count(*) AS n FROM (SELECT id FROM t WHERE kind = 'vỉa hè' LIMIT 2)",
            "SELECT unit, count(*) AS n FROM t WHERE kind LIKE '%rác%' GROUP BY unit ORDER BY unit",
            "SELECT unit, sum(id) AS s FROM t WHERE kind <> 'rác' AND id > 2 \
             GROUP BY unit ORDER BY unit",
        ] {
            let expected = pretty(&without, sql).await;
            assert!(
                expected.lines().count() > 4,
                "{sql} selects some rows\n{expected}"
            );
            assert_eq!(pretty(&with_rule, sql).await, expected, "{sql}");
            let plan = pretty(&with_rule, &format!("EXPLAIN {sql}")).await;
            let physical = &plan[plan.find("physical_plan").unwrap()..];
            // Grouped, the aggregation takes the scan's conditions (and the filter) over.
            let evaluated_by = if sql.contains("GROUP BY") {
                "DictionaryAggregateExec: gby=[unit]"
            } else {
                "DictionaryScanExec: ["
            };
            let line = physical
                .lines()
                .find(|l| l.contains(evaluated_by))
                .unwrap_or_else(|| panic!("{sql}: no {evaluated_by}\n{plan}"));
            assert!(line.contains("kind: "), "{sql}\n{plan}");
            let filtered_by_datafusion =
                physical.contains("FilterExec") || line.contains("filter=");
            assert_eq!(
                filtered_by_datafusion,
                sql.contains("id > 2"),
                "{sql}\n{plan}"
            );
        }
    }

    #[tokio::test]
    async fn grouping_by_two_columns_with_many_value_pairs_gives_datafusion_s_answers() {
        // A first file with few value pairs (grouped in a dense table), then one with
        // 400 × 400 possible pairs (too many: the groups move to a hash table mid-scan).
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::new(dir.path());
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let mut table = store.open("t", &schema).await.unwrap();
        let files: [Vec<i64>; 2] = [(0..10).collect(), (10..810).collect()];
        for ids in files {
            let a: Vec<Option<String>> = ids
                .iter()
                .map(|i| (i % 7 != 3).then(|| format!("a{}", i % 400)))
                .collect();
            let b: Vec<String> = ids.iter().map(|i| format!("b{}", (i * 7) % 400)).collect();
            table = table
                .write(vec![batch(vec![
                    ("id", Arc::new(Int64Array::from(ids))),
                    ("a", Arc::new(StringArray::from(a))),
                    ("b", Arc::new(StringArray::from(b))),
                ])])
                .with_save_mode(SaveMode::Append)
                .await
                .unwrap();
        }
        let provider = store.provider("t", &table).await.unwrap();
        let (with_rule, without) = (one_partition_context(true), one_partition_context(false));
        for ctx in [&with_rule, &without] {
            ctx.register_table("t", provider.clone()).unwrap();
        }
        let sql = "SELECT a, b, count(*) AS n, sum(id) AS s FROM t GROUP BY a, b ORDER BY a, b";
        let expected = pretty(&without, sql).await;
        assert!(expected.lines().count() > 400, "{expected}");
        assert_eq!(pretty(&with_rule, sql).await, expected);
        let plan = pretty(&with_rule, &format!("EXPLAIN {sql}")).await;
        assert!(plan.contains("DictionaryAggregateExec"), "{plan}");
    }
}

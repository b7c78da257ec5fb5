//! Filtering dictionary-encoded string columns by their dictionaries.
//!
//! A Parquet column whose pages are all dictionary-encoded (a category, a status, a commune,
//! or a text the sources repeat) holds a few distinct values and, per row, an index into
//! them. Read as Arrow strings, a filter such as `description LIKE '%rác%'` is evaluated
//! once per row; read as an Arrow dictionary, it can be evaluated once per distinct value
//! and looked up per row. [`DictionaryScanExec`] does the second: the scan below it
//! reads the filtered columns as `Dictionary(Int32, Utf8)`, it evaluates each single-column
//! condition on the dictionary's values (converted to the table's own type first, so the
//! condition means exactly what it means on the table), keeps the rows whose value passed,
//! and hands rows of the table's own types upwards. The table's schema, as every interface
//! shows it, does not change.
//!
//! Once the table knows which of its columns are read as dictionaries (the first scan reads
//! the files' footers), it reports the conditions evaluated here as exact, so DataFusion
//! drops its own filter above the scan; until then they stay in that filter too, which
//! then sees only the rows kept here.

use std::collections::HashSet;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, RecordBatch, RecordBatchOptions,
    new_null_array,
};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Int32Type, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::filter_pushdown::{
    ChildFilterDescription, ChildPushdownResult, FilterDescription, FilterPushdownPhase,
    FilterPushdownPropagation,
};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties, ReplaceChildrenOptions,
};
use futures::{Stream, StreamExt};

/// The type a filtered column is read as.
pub fn dictionary_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// A condition on one column of the scan.
#[derive(Debug, Clone)]
pub struct ColumnCondition {
    /// The column's index in the scan's output (this operator's input).
    pub column: usize,
    /// The condition, planned against a one-column schema of the table's own type.
    pub predicate: Arc<dyn PhysicalExpr>,
    /// That one-column schema.
    pub value_schema: SchemaRef,
}

impl fmt::Display for ColumnCondition {
    /// As EXPLAIN shows it: the column's name, then the condition.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let column = self
            .value_schema
            .fields()
            .first()
            .map(|c| c.name().as_str());
        write!(f, "{}: {}", column.unwrap_or("?"), self.predicate)
    }
}

/// Keeps the rows whose dictionary-encoded columns pass their conditions, drops the columns
/// read only for them, and casts the dictionary columns back to the table's types
/// (`output_schema`).
#[derive(Debug)]
pub struct DictionaryScanExec {
    input: Arc<dyn ExecutionPlan>,
    conditions: Vec<ColumnCondition>,
    /// The input's schema with every dictionary column in the table's own type.
    table_schema: SchemaRef,
    /// The input columns handed upwards, in order (the others were read for a condition
    /// the table reported as exact, which DataFusion then does not project).
    output_columns: Vec<usize>,
    /// `table_schema` projected to `output_columns`.
    output_schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl DictionaryScanExec {
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        conditions: Vec<ColumnCondition>,
        table_schema: SchemaRef,
        output_columns: Vec<usize>,
    ) -> Result<Self> {
        let output_schema = Arc::new(table_schema.project(&output_columns)?);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(output_schema.clone()),
            input.output_partitioning().clone(),
            input.pipeline_behavior(),
            input.boundedness(),
        ));
        Ok(DictionaryScanExec {
            input,
            conditions,
            table_schema,
            output_columns,
            output_schema,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DictionaryScanExec {
    /// The scan reading the dictionary columns.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    pub fn conditions(&self) -> &[ColumnCondition] {
        &self.conditions
    }

    /// The input's columns in the table's types.
    pub fn table_schema(&self) -> &SchemaRef {
        &self.table_schema
    }

    /// The input column behind each output column.
    pub fn output_columns(&self) -> &[usize] {
        &self.output_columns
    }

    /// The output columns it casts from dictionaries to the table's types.
    pub fn dictionary_columns(&self) -> HashSet<usize> {
        let input = self.input.schema();
        self.output_columns
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                input.field(**i).data_type() != self.table_schema.field(**i).data_type()
            })
            .map(|(output, _)| output)
            .collect()
    }
}

impl DisplayAs for DictionaryScanExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let conditions: Vec<String> = self.conditions.iter().map(|c| c.to_string()).collect();
        write!(f, "DictionaryScanExec: [{}]", conditions.join(", "))
    }
}

impl ExecutionPlan for DictionaryScanExec {
    fn name(&self) -> &'static str {
        "DictionaryScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    // Rows keep their order, but the output's equivalences are not derived from the
    // input's (some column types change), so a sort must not be placed below this.
    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for condition in &self.conditions {
            if f(&condition.predicate)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(DictionaryScanExec::new(
            only_child("DictionaryScanExec", children)?,
            self.conditions.clone(),
            self.table_schema.clone(),
            self.output_columns.clone(),
        )?))
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(Box::pin(DictionaryScanStream {
            input: self.input.execute(partition, context)?,
            filter: BatchFilter::new(self.conditions.clone()),
            output_columns: self.output_columns.clone(),
            output_schema: self.output_schema.clone(),
            metrics: BaselineMetrics::new(&self.metrics, partition),
        }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    /// Filters from above (a query's other conditions, a top-k's running bound) reach the
    /// Parquet scan, for pruning, when they test only columns read as the table's types.
    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        let dictionary = self.dictionary_columns();
        let same_type: HashSet<usize> = (0..self.output_schema.fields().len())
            .filter(|i| !dictionary.contains(i))
            .collect();
        Ok(FilterDescription::new().with_child(
            ChildFilterDescription::from_child_with_allowed_indices(
                &parent_filters,
                same_type,
                &self.input,
            )?,
        ))
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(FilterPushdownPropagation::if_all(child_pushdown_result))
    }
}

/// Something worked out once per entry of a dictionary, and once for a row without a
/// value, kept while the same dictionary comes back (the Parquet reader hands every batch of
/// a row group the same one).
pub struct PerEntry<T> {
    dictionary: Option<ArrayRef>,
    /// One per entry, then the one for a row without a value.
    entries: Vec<T>,
}

impl<T: Copy> PerEntry<T> {
    pub fn new() -> Self {
        PerEntry {
            dictionary: None,
            entries: Vec::new(),
        }
    }

    /// Whether the entries were worked out for `dictionary`'s values.
    pub fn is_current(&self, dictionary: &DictionaryArray<Int32Type>) -> bool {
        let values = dictionary.values().to_data();
        self.dictionary
            .as_ref()
            .is_some_and(|d| d.to_data().ptr_eq(&values))
    }

    /// Each row's entry; `work_out` gets the dictionary's values when they are new and
    /// returns one `T` per value, then one for a row without a value.
    pub fn rows(
        &mut self,
        dictionary: &DictionaryArray<Int32Type>,
        work_out: impl FnOnce(&ArrayRef) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        if !self.is_current(dictionary) {
            let values = dictionary.values();
            let entries = work_out(values)?;
            if entries.len() != values.len() + 1 {
                return Err(DataFusionError::Internal(format!(
                    "{} entries worked out for a dictionary of {} values",
                    entries.len(),
                    values.len()
                )));
            }
            self.entries = entries;
            self.dictionary = Some(values.clone());
        }
        let null = self.entries.len() - 1;
        let keys = dictionary.keys();
        if keys.null_count() == 0 {
            // The common case, without a validity check per row; a negative key (invalid)
            // becomes a huge index, which `min` sends to the null slot as below.
            let entries = &self.entries;
            return Ok(keys
                .values()
                .iter()
                .map(|k| entries[(*k as usize).min(null)])
                .collect());
        }
        Ok((0..keys.len())
            .map(|row| {
                let entry = if keys.is_null(row) {
                    null
                } else {
                    usize::try_from(keys.value(row)).map_or(null, |k| k.min(null))
                };
                self.entries[entry]
            })
            .collect())
    }
}

/// Only child of an operator that takes one.
pub fn only_child(
    operator: &str,
    mut children: Vec<Arc<dyn ExecutionPlan>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    match children.len() {
        1 => Ok(children.swap_remove(0)),
        n => Err(DataFusionError::Internal(format!(
            "{operator} takes one child, got {n}"
        ))),
    }
}

/// `predicate` evaluated on `batch`, which must give booleans.
pub fn evaluate_filter(
    predicate: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
) -> Result<BooleanArray> {
    let result = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
    result.as_boolean_opt().cloned().ok_or_else(|| {
        DataFusionError::Internal(format!(
            "a filter gave {} instead of booleans",
            result.data_type()
        ))
    })
}

/// Keeps the rows of a batch whose dictionary columns pass their conditions.
pub struct BatchFilter {
    conditions: Vec<ColumnCondition>,
    /// Per condition, which entries of the current dictionary pass it.
    cached: Vec<PerEntry<bool>>,
}

impl BatchFilter {
    pub fn new(conditions: Vec<ColumnCondition>) -> Self {
        let cached = conditions.iter().map(|_| PerEntry::new()).collect();
        BatchFilter { conditions, cached }
    }

    /// The batch's rows that pass every condition, still in the scan's types; `None` when
    /// no row does.
    pub fn filter(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let mut keep: Option<Vec<bool>> = None;
        for (i, condition) in self.conditions.iter().enumerate() {
            let passed = evaluate(
                condition,
                &mut self.cached[i],
                batch.column(condition.column),
            )?;
            keep = Some(match keep {
                None => passed,
                Some(mut keep) => {
                    keep.iter_mut().zip(passed).for_each(|(k, p)| *k &= p);
                    keep
                }
            });
        }
        Ok(match keep {
            Some(keep) if !keep.iter().any(|k| *k) => None,
            Some(keep) if keep.iter().all(|k| *k) => Some(batch),
            Some(keep) => Some(filter_record_batch(&batch, &BooleanArray::from(keep))?),
            None => Some(batch),
        })
    }
}

/// `batch` with the columns in `columns` (all when `None`) cast to `schema`'s types; the
/// others keep theirs.
pub fn to_table_types(
    batch: &RecordBatch,
    schema: &SchemaRef,
    columns: Option<&HashSet<usize>>,
) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut arrays = Vec::with_capacity(batch.num_columns());
    for (i, (column, field)) in batch.columns().iter().zip(schema.fields()).enumerate() {
        let wanted = columns.is_none_or(|c| c.contains(&i));
        if !wanted || column.data_type() == field.data_type() {
            fields.push(batch.schema().field(i).clone());
            arrays.push(column.clone());
        } else {
            fields.push(field.as_ref().clone());
            arrays.push(cast(column, field.data_type())?);
        }
    }
    let target = if columns.is_none() {
        schema.clone()
    } else {
        Arc::new(arrow::datatypes::Schema::new(fields))
    };
    // The row count too: a scan may hand up no column at all (`count(*)` under a filter).
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(target, arrays, &options)?)
}

/// Which rows of `column` pass `condition`.
fn evaluate(
    condition: &ColumnCondition,
    cached: &mut PerEntry<bool>,
    column: &ArrayRef,
) -> Result<Vec<bool>> {
    let value_type = condition.value_schema.field(0).data_type();
    let dictionary = match column.as_dictionary_opt::<Int32Type>() {
        // More distinct values than rows: per row is less work.
        Some(d) if cached.is_current(d) || d.values().len() <= d.len() => d,
        // Or not read as a dictionary after all.
        _ => return passing(condition, cast(column, value_type)?),
    };
    cached.rows(dictionary, |values| {
        // The values, then a null standing for the rows that have none.
        let candidates =
            arrow::compute::concat(&[&cast(values, value_type)?, &new_null_array(value_type, 1)])?;
        passing(condition, candidates)
    })
}

/// `condition` evaluated on `values` (a one-column batch): true only where it is true.
fn passing(condition: &ColumnCondition, values: ArrayRef) -> Result<Vec<bool>> {
    let batch = RecordBatch::try_new(condition.value_schema.clone(), vec![values])?;
    let result = evaluate_filter(&condition.predicate, &batch)?;
    Ok((0..batch.num_rows())
        .map(|i| result.is_valid(i) && result.value(i))
        .collect())
}

struct DictionaryScanStream {
    input: SendableRecordBatchStream,
    filter: BatchFilter,
    output_columns: Vec<usize>,
    output_schema: SchemaRef,
    metrics: BaselineMetrics,
}

impl Stream for DictionaryScanStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let batch = match this.input.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(batch))) => batch,
                other => return this.metrics.record_poll(other),
            };
            let timer = this.metrics.elapsed_compute().timer();
            let (columns, schema) = (&this.output_columns, &this.output_schema);
            let filtered = this.filter.filter(batch).and_then(|batch| {
                batch
                    .map(|b| to_table_types(&b.project(columns)?, schema, None))
                    .transpose()
            });
            timer.done();
            match filtered {
                Ok(None) => continue,
                Ok(Some(batch)) => return this.metrics.record_poll(Poll::Ready(Some(Ok(batch)))),
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}

impl RecordBatchStream for DictionaryScanStream {
    fn schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }
}

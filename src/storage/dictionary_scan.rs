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
//! The conditions stay in DataFusion's own filter above the scan too (the table reports
//! them as inexact), which then sees only the rows kept here.

use std::collections::HashSet;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, new_null_array};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Int32Type, SchemaRef};
use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
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

/// A condition on one column of the scan's output.
#[derive(Debug, Clone)]
pub struct ColumnCondition {
    /// The column's index in the scan's (and this operator's) output.
    pub column: usize,
    /// The condition, planned against a one-column schema of the table's own type.
    pub predicate: Arc<dyn PhysicalExpr>,
    /// That one-column schema.
    pub value_schema: SchemaRef,
}

/// Keeps the rows whose dictionary-encoded columns pass their conditions, and casts those
/// columns back to the table's types (`output_schema`).
#[derive(Debug)]
pub struct DictionaryScanExec {
    input: Arc<dyn ExecutionPlan>,
    conditions: Vec<ColumnCondition>,
    /// The input's schema with every dictionary column in the table's own type.
    output_schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl DictionaryScanExec {
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        conditions: Vec<ColumnCondition>,
        output_schema: SchemaRef,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(output_schema.clone()),
            input.output_partitioning().clone(),
            input.pipeline_behavior(),
            input.boundedness(),
        ));
        DictionaryScanExec {
            input,
            conditions,
            output_schema,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        }
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

    /// The columns it casts from dictionaries to the table's types.
    pub fn dictionary_columns(&self) -> HashSet<usize> {
        let input = self.input.schema();
        (0..self.output_schema.fields().len())
            .filter(|i| input.field(*i).data_type() != self.output_schema.field(*i).data_type())
            .collect()
    }
}

impl DisplayAs for DictionaryScanExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let conditions: Vec<String> = self
            .conditions
            .iter()
            .map(|c| {
                format!(
                    "{}: {}",
                    self.output_schema.field(c.column).name(),
                    c.predicate
                )
            })
            .collect();
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
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(datafusion::common::DataFusionError::Internal(format!(
                "DictionaryScanExec takes one child, got {}",
                children.len()
            )));
        }
        Ok(Arc::new(DictionaryScanExec::new(
            children.swap_remove(0),
            self.conditions.clone(),
            self.output_schema.clone(),
        )))
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

/// The last dictionary a condition was evaluated on and which of its values passed:
/// the Parquet reader hands every batch of a row group the same dictionary.
#[derive(Clone)]
struct Evaluated {
    values: ArrayRef,
    /// One entry per value, then one for a null row.
    passed: Vec<bool>,
}

/// Keeps the rows of a batch whose dictionary columns pass their conditions.
pub struct BatchFilter {
    conditions: Vec<ColumnCondition>,
    cached: Vec<Option<Evaluated>>,
}

impl BatchFilter {
    pub fn new(conditions: Vec<ColumnCondition>) -> Self {
        let cached = vec![None; conditions.len()];
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
    Ok(RecordBatch::try_new(target, arrays)?)
}

/// Which rows of `column` pass `condition`.
fn evaluate(
    condition: &ColumnCondition,
    cached: &mut Option<Evaluated>,
    column: &ArrayRef,
) -> Result<Vec<bool>> {
    let value_type = condition.value_schema.field(0).data_type();
    let Some(dictionary) = column.as_dictionary_opt::<Int32Type>() else {
        // Not read as a dictionary after all: evaluate per row.
        let rows = cast(column, value_type)?;
        return passing(condition, rows);
    };
    let values = dictionary.values();
    let current = cached
        .as_ref()
        .is_some_and(|evaluated| evaluated.values.to_data().ptr_eq(&values.to_data()));
    if !current {
        if values.len() > dictionary.len() {
            // More distinct values than rows: per row is less work.
            let rows = cast(column, value_type)?;
            return passing(condition, rows);
        }
        // The values, then a null standing for the rows that have none.
        let candidates =
            arrow::compute::concat(&[&cast(values, value_type)?, &new_null_array(value_type, 1)])?;
        *cached = Some(Evaluated {
            values: values.clone(),
            passed: passing(condition, candidates)?,
        });
    }
    let Some(Evaluated { passed, .. }) = cached.as_ref() else {
        return passing(condition, cast(column, value_type)?);
    };
    let null_slot = passed.len() - 1;
    let keys = dictionary.keys();
    Ok((0..keys.len())
        .map(|row| {
            let slot = if keys.is_null(row) {
                null_slot
            } else {
                usize::try_from(keys.value(row)).unwrap_or(null_slot)
            };
            passed.get(slot).copied().unwrap_or(false)
        })
        .collect())
}

/// `condition` evaluated on `values` (a one-column batch): true only where it is true.
fn passing(condition: &ColumnCondition, values: ArrayRef) -> Result<Vec<bool>> {
    let rows = values.len();
    let batch = RecordBatch::try_new(condition.value_schema.clone(), vec![values])?;
    let result = condition.predicate.evaluate(&batch)?.into_array(rows)?;
    let result = result.as_boolean_opt().ok_or_else(|| {
        datafusion::common::DataFusionError::Internal(format!(
            "a filter gave {} instead of booleans",
            result.data_type()
        ))
    })?;
    Ok((0..rows)
        .map(|i| result.is_valid(i) && result.value(i))
        .collect())
}

struct DictionaryScanStream {
    input: SendableRecordBatchStream,
    filter: BatchFilter,
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
            let schema = &this.output_schema;
            let filtered = this
                .filter
                .filter(batch)
                .and_then(|batch| batch.map(|b| to_table_types(&b, schema, None)).transpose());
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

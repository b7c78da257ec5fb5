//! Grouping by dictionary-encoded string columns by their dictionaries' entries.
//!
//! DataFusion's hash aggregation hashes and compares every row's string to find its group.
//! When the grouped columns come from a [`DictionaryScanExec`] (the scan read them as
//! dictionaries and only casts them back), a row's group follows from its dictionary index:
//! each distinct value of a dictionary is looked up once, and a row costs one array read.
//! [`DictionaryAggregation`] is the physical optimizer rule that replaces such a partial
//! aggregation (the per-partition half; DataFusion's final half merges as before) by a
//! [`DictionaryAggregateExec`], which feeds DataFusion's own group accumulators, so every
//! aggregate function that has one (count, sum, avg, min, max, ...) keeps its exact
//! semantics. Anything else (grouping sets, ordered aggregates, more than two grouped
//! columns, a group-by limit) stays with DataFusion.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringViewBuilder};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Int32Type, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::EmitTo;
use datafusion::logical_expr::GroupsAccumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, aggregate_expressions};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties, ReplaceChildrenOptions,
};
use futures::StreamExt;

use super::dictionary_scan::{
    BatchFilter, ColumnCondition, DictionaryScanExec, PerEntry, evaluate_filter, only_child,
    to_table_types,
};

/// The most grouped columns handled here: a group is then one `u64` of two value numbers.
const MAX_GROUP_COLUMNS: usize = 2;

/// The most value pairs of two grouped columns looked up in a dense table (8 bytes each)
/// rather than hashed: 512 KiB, for instance 256 communes by 256 statuses.
const MAX_DENSE_PAIRS: usize = 1 << 16;

/// Replaces partial aggregations grouped by dictionary columns, see the module's comment.
#[derive(Debug, Default)]
pub struct DictionaryAggregation;

impl PhysicalOptimizerRule for DictionaryAggregation {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(match DictionaryAggregateExec::replacing(&node)? {
                Some(replacement) => Transformed::yes(Arc::new(replacement) as _),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "dictionary_aggregation"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A partial aggregation over a [`DictionaryScanExec`]'s scan, grouped by columns that
/// scan reads as dictionaries.
#[derive(Debug)]
pub struct DictionaryAggregateExec {
    /// The Parquet scan (dictionary columns as dictionaries).
    input: Arc<dyn ExecutionPlan>,
    aggregation: Aggregation,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

/// What a [`DictionaryAggregateExec`] computes from its input.
#[derive(Debug, Clone)]
struct Aggregation {
    /// The dictionary scan's conditions, applied first.
    conditions: Vec<ColumnCondition>,
    /// DataFusion's filter that stood between the scan and the aggregation, then.
    row_filter: Option<Arc<dyn PhysicalExpr>>,
    /// The rows as the aggregate expressions were planned on (the table's types).
    table_schema: SchemaRef,
    /// The grouped columns' indices in the input.
    group_columns: Vec<usize>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Each aggregate's argument expressions, and its `FILTER (WHERE ...)`.
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The replaced aggregation's output: groups, then each accumulator's state.
    schema: SchemaRef,
}

impl DictionaryAggregateExec {
    /// The replacement for `node`, when it is a partial aggregation this operator can do.
    fn replacing(node: &Arc<dyn ExecutionPlan>) -> Result<Option<DictionaryAggregateExec>> {
        let any: &dyn std::any::Any = node.as_ref();
        let Some(aggregate) = any.downcast_ref::<AggregateExec>() else {
            return Ok(None);
        };
        // The scan, directly below or under DataFusion's own filter (a condition on other
        // columns, or the inexact re-check of the scan's own); `to_output` maps the
        // aggregation's input columns to the scan's output columns.
        let input: &dyn std::any::Any = aggregate.input().as_ref();
        let (scan, row_filter, to_output) = if let Some(filter) = input.downcast_ref::<FilterExec>()
        {
            let below: &dyn std::any::Any = filter.input().as_ref();
            let Some(scan) = below.downcast_ref::<DictionaryScanExec>() else {
                return Ok(None);
            };
            if filter.fetch().is_some() {
                return Ok(None);
            }
            let to_output: Vec<usize> = match filter.projection() {
                Some(p) => p.to_vec(),
                None => (0..scan.schema().fields().len()).collect(),
            };
            // The filter reads the scan's output; this operator reads the scan's input.
            let predicate = in_scan_columns(filter.predicate(), scan.output_columns())?;
            (scan, Some(predicate), to_output)
        } else if let Some(scan) = input.downcast_ref::<DictionaryScanExec>() {
            (scan, None, (0..scan.schema().fields().len()).collect())
        } else {
            return Ok(None);
        };
        // And to the scan's input columns, which this operator reads.
        let Some(columns) = to_output
            .iter()
            .map(|c| scan.output_columns().get(*c).copied())
            .collect::<Option<Vec<usize>>>()
        else {
            return Ok(None);
        };
        let group_by = aggregate.group_expr();
        if *aggregate.mode() != AggregateMode::Partial
            || !group_by.is_single()
            || group_by.expr().is_empty()
            || group_by.expr().len() > MAX_GROUP_COLUMNS
            || aggregate.limit_options().is_some()
            || !aggregate.dynamic_expressions_produced().is_empty()
            || aggregate
                .aggr_expr()
                .iter()
                .any(|a| !a.groups_accumulator_supported() || !a.order_bys().is_empty())
        {
            return Ok(None);
        }
        let dictionary = scan.dictionary_columns();
        let mut group_columns = Vec::new();
        for (expr, _) in group_by.expr() {
            let any: &dyn std::any::Any = expr.as_ref();
            let Some(column) = any.downcast_ref::<Column>() else {
                return Ok(None);
            };
            match (to_output.get(column.index()), columns.get(column.index())) {
                (Some(output), Some(input)) if dictionary.contains(output) => {
                    group_columns.push(*input)
                }
                _ => return Ok(None),
            }
        }
        let to_scan = |expr: &Arc<dyn PhysicalExpr>| in_scan_columns(expr, &columns);
        let arguments = aggregate_expressions(aggregate.aggr_expr(), aggregate.mode(), 0)?
            .iter()
            .map(|exprs| exprs.iter().map(to_scan).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        let filters = aggregate
            .filter_expr()
            .iter()
            .map(|f| f.as_ref().map(to_scan).transpose())
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(DictionaryAggregateExec::new(
            scan.input().clone(),
            Aggregation {
                conditions: scan.conditions().to_vec(),
                row_filter,
                table_schema: scan.table_schema().clone(),
                group_columns,
                aggregates: aggregate.aggr_expr().to_vec(),
                arguments,
                filters,
                schema: aggregate.schema(),
            },
        )))
    }

    fn new(input: Arc<dyn ExecutionPlan>, aggregation: Aggregation) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(aggregation.schema.clone()),
            input.output_partitioning().clone(),
            datafusion::physical_plan::execution_plan::EmissionType::Final,
            input.boundedness(),
        ));
        DictionaryAggregateExec {
            input,
            aggregation,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for DictionaryAggregateExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let groups: Vec<&str> = self
            .aggregation
            .group_columns
            .iter()
            .map(|i| self.aggregation.table_schema.field(*i).name().as_str())
            .collect();
        let aggregates: Vec<&str> = self
            .aggregation
            .aggregates
            .iter()
            .map(|a| a.name())
            .collect();
        write!(
            f,
            "DictionaryAggregateExec: gby=[{}], aggr=[{}]",
            groups.join(", "),
            aggregates.join(", ")
        )?;
        // The scan's conditions and DataFusion's filter it took over, which EXPLAIN would
        // otherwise no longer show anywhere.
        let conditions: Vec<String> = self
            .aggregation
            .conditions
            .iter()
            .map(|c| c.to_string())
            .collect();
        if !conditions.is_empty() {
            write!(f, ", conditions=[{}]", conditions.join(", "))?;
        }
        if let Some(row_filter) = &self.aggregation.row_filter {
            write!(f, ", filter={row_filter}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for DictionaryAggregateExec {
    fn name(&self) -> &'static str {
        "DictionaryAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let conditions = self.aggregation.conditions.iter().map(|c| &c.predicate);
        let conditions = conditions.chain(self.aggregation.row_filter.iter());
        let arguments = self.aggregation.arguments.iter().flatten();
        for expr in conditions
            .chain(arguments)
            .chain(self.aggregation.filters.iter().flatten())
        {
            if f(expr)? == TreeNodeRecursion::Stop {
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
        Ok(Arc::new(DictionaryAggregateExec::new(
            only_child("DictionaryAggregateExec", children)?,
            self.aggregation.clone(),
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
        let mut input = self.input.execute(partition, context.clone())?;
        let mut state = Groups::new(self, &context, partition)?;
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let schema = self.aggregation.schema.clone();
        let stream = futures::stream::once(async move {
            while let Some(batch) = input.next().await {
                let timer = metrics.elapsed_compute().timer();
                state.add(batch?)?;
                timer.done();
            }
            let output = state.emit()?;
            metrics.record_output(output.num_rows());
            Ok(output)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// One grouped column's distinct values so far, and how the current dictionary's entries
/// map onto them.
struct GroupColumn {
    index: usize,
    /// Value → its number (the order values were first seen); nulls are `None`.
    numbers: HashMap<Option<String>, u32>,
    values: Vec<Option<String>>,
    /// The current dictionary's entries' numbers.
    entry_numbers: PerEntry<u32>,
}

impl GroupColumn {
    fn new(index: usize) -> Self {
        GroupColumn {
            index,
            numbers: HashMap::new(),
            values: Vec::new(),
            entry_numbers: PerEntry::new(),
        }
    }

    /// Each row's value number.
    fn row_numbers(&mut self, column: &ArrayRef) -> Result<Vec<u32>> {
        let Some(dictionary) = column.as_dictionary_opt::<Int32Type>() else {
            return Err(DataFusionError::Internal(format!(
                "a grouped column arrived as {}, not as a dictionary",
                column.data_type()
            )));
        };
        let (numbers, values) = (&mut self.numbers, &mut self.values);
        self.entry_numbers.rows(dictionary, |entries| {
            let strings = cast(entries, &DataType::Utf8)?;
            let strings = strings.as_string::<i32>();
            let mut number = |value: Option<&str>| {
                let value = value.map(str::to_string);
                *numbers.entry(value.clone()).or_insert_with(|| {
                    values.push(value);
                    (values.len() - 1) as u32
                })
            };
            let mut entry_numbers: Vec<u32> = (0..strings.len())
                .map(|i| number(strings.is_valid(i).then(|| strings.value(i))))
                .collect();
            entry_numbers.push(number(None));
            Ok(entry_numbers)
        })
    }

    /// The values of the value `numbers`, as an array of `data_type`.
    fn array(&self, numbers: impl Iterator<Item = u32>, data_type: &DataType) -> Result<ArrayRef> {
        let mut builder = StringViewBuilder::new();
        for n in numbers {
            builder.append_option(self.values.get(n as usize).and_then(|v| v.as_deref()));
        }
        let array: ArrayRef = Arc::new(builder.finish());
        Ok(if array.data_type() == data_type {
            array
        } else {
            cast(&array, data_type)?
        })
    }
}

/// A partition's groups and their accumulators.
struct Groups {
    aggregation: Aggregation,
    filter: BatchFilter,
    /// The columns the row filter reads.
    row_filter_columns: HashSet<usize>,
    /// The columns the arguments and filters read: only those are cast to the table's types.
    read_columns: HashSet<usize>,
    columns: Vec<GroupColumn>,
    /// With one grouped column: a value number → its group's index (`usize::MAX`: none yet).
    /// With two, while they have few distinct value pairs: `first * pair_shape.1 + second`
    /// → the group's index.
    dense: Vec<usize>,
    /// The two columns' distinct value counts `dense` was laid out for.
    pair_shape: (usize, usize),
    /// With two and more pairs than `MAX_DENSE_PAIRS`: both value numbers, packed → the
    /// group's index.
    index: datafusion::common::HashMap<u64, usize>,
    /// Each group's key, by index.
    keys: Vec<u64>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    reservation: MemoryReservation,
}

impl Groups {
    fn new(
        exec: &DictionaryAggregateExec,
        context: &Arc<TaskContext>,
        partition: usize,
    ) -> Result<Self> {
        let aggregation = exec.aggregation.clone();
        let accumulators = aggregation
            .aggregates
            .iter()
            .map(|a| a.create_groups_accumulator())
            .collect::<Result<Vec<_>>>()?;
        let columns_of = |exprs: Vec<&Arc<dyn PhysicalExpr>>| -> HashSet<usize> {
            exprs
                .into_iter()
                .flat_map(collect_columns)
                .map(|c| c.index())
                .collect()
        };
        let read_columns = columns_of(
            aggregation
                .arguments
                .iter()
                .flatten()
                .chain(aggregation.filters.iter().flatten())
                .collect(),
        );
        let row_filter_columns = columns_of(aggregation.row_filter.iter().collect());
        let reservation = MemoryConsumer::new(format!("DictionaryAggregateExec[{partition}]"))
            .register(context.memory_pool());
        Ok(Groups {
            filter: BatchFilter::new(aggregation.conditions.clone()),
            row_filter_columns,
            read_columns,
            columns: aggregation
                .group_columns
                .iter()
                .map(|i| GroupColumn::new(*i))
                .collect(),
            dense: Vec::new(),
            pair_shape: (0, 0),
            index: datafusion::common::HashMap::default(),
            keys: Vec::new(),
            accumulators,
            reservation,
            aggregation,
        })
    }

    fn add(&mut self, batch: RecordBatch) -> Result<()> {
        let Some(batch) = self.filter.filter(batch)? else {
            return Ok(());
        };
        let batch = match &self.aggregation.row_filter {
            None => batch,
            Some(predicate) => {
                let readable = to_table_types(
                    &batch,
                    &self.aggregation.table_schema,
                    Some(&self.row_filter_columns),
                )?;
                // A null condition keeps no row, as in DataFusion's filter.
                filter_record_batch(&batch, &evaluate_filter(predicate, &readable)?)?
            }
        };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = batch.num_rows();
        let mut per_column = Vec::with_capacity(self.columns.len());
        for column in &mut self.columns {
            per_column.push(column.row_numbers(batch.column(column.index))?);
        }
        let group_indices: Vec<usize> = match per_column.as_slice() {
            [one] => {
                // One column: groups by value number, in a plain table as long as the
                // column's distinct values so far.
                let distinct = self.columns[0].values.len();
                if self.dense.len() < distinct {
                    self.dense.resize(distinct, usize::MAX);
                }
                let (dense, keys) = (&mut self.dense, &mut self.keys);
                one.iter()
                    .map(|n| {
                        let group = &mut dense[*n as usize];
                        if *group == usize::MAX {
                            *group = keys.len();
                            keys.push(u64::from(*n));
                        }
                        *group
                    })
                    .collect()
            }
            [first, second] => {
                let shape = (self.columns[0].values.len(), self.columns[1].values.len());
                if shape.0.saturating_mul(shape.1) <= MAX_DENSE_PAIRS {
                    self.dense_pair_groups(first, second, shape)
                } else {
                    self.hashed_pair_groups(first, second)
                }
            }
            _ => {
                return Err(DataFusionError::Internal(format!(
                    "DictionaryAggregateExec groups by one or two columns, not {}",
                    per_column.len()
                )));
            }
        };
        let groups = self.keys.len();
        let readable = to_table_types(
            &batch,
            &self.aggregation.table_schema,
            Some(&self.read_columns),
        )?;
        for ((accumulator, arguments), filter) in self
            .accumulators
            .iter_mut()
            .zip(&self.aggregation.arguments)
            .zip(&self.aggregation.filters)
        {
            let values = arguments
                .iter()
                .map(|e| e.evaluate(&readable)?.into_array(rows))
                .collect::<Result<Vec<_>>>()?;
            let filter = filter
                .as_ref()
                .map(|f| f.evaluate(&readable)?.into_array(rows))
                .transpose()?;
            let filter = filter.as_ref().map(|f| f.as_boolean());
            accumulator.update_batch(&values, &group_indices, filter, groups)?;
        }
        let size = self.accumulators.iter().map(|a| a.size()).sum::<usize>()
            + self.keys.capacity() * 24
            + self.dense.capacity() * 8;
        self.reservation.try_resize(size)?;
        Ok(())
    }

    /// The groups of rows whose two columns have the value numbers `first` and `second`,
    /// looked up in a table of every pair of the `shape` distinct values so far.
    fn dense_pair_groups(
        &mut self,
        first: &[u32],
        second: &[u32],
        shape: (usize, usize),
    ) -> Vec<usize> {
        let width = shape.1;
        if self.pair_shape != shape {
            // New values came: lay the table out again for the larger shape.
            self.dense = vec![usize::MAX; shape.0 * width];
            for (group, key) in self.keys.iter().enumerate() {
                let (a, b) = unpack(*key);
                self.dense[a as usize * width + b as usize] = group;
            }
            self.pair_shape = shape;
        }
        let (dense, keys) = (&mut self.dense, &mut self.keys);
        first
            .iter()
            .zip(second)
            .map(|(a, b)| {
                let group = &mut dense[*a as usize * width + *b as usize];
                if *group == usize::MAX {
                    *group = keys.len();
                    keys.push(pack(*a, *b));
                }
                *group
            })
            .collect()
    }

    /// The same, in a hash table once there are too many pairs for a dense one (value
    /// counts only grow, so a partition never goes back).
    fn hashed_pair_groups(&mut self, first: &[u32], second: &[u32]) -> Vec<usize> {
        if self.index.len() < self.keys.len() {
            // The groups the dense table held until now.
            self.dense = Vec::new();
            self.index.extend(
                self.keys
                    .iter()
                    .enumerate()
                    .map(|(group, key)| (*key, group)),
            );
        }
        let (index, keys) = (&mut self.index, &mut self.keys);
        first
            .iter()
            .zip(second)
            .map(|(a, b)| {
                let key = pack(*a, *b);
                *index.entry(key).or_insert_with(|| {
                    keys.push(key);
                    keys.len() - 1
                })
            })
            .collect()
    }

    /// Every group with its accumulators' states, as the replaced aggregation emits them.
    fn emit(&mut self) -> Result<RecordBatch> {
        let mut columns = Vec::with_capacity(self.aggregation.schema.fields().len());
        let count = self.columns.len();
        for (position, column) in self.columns.iter().enumerate() {
            let shift = 32 * (count - 1 - position);
            let numbers = self
                .keys
                .iter()
                .map(|key| ((key >> shift) & 0xFFFF_FFFF) as u32);
            columns
                .push(column.array(numbers, self.aggregation.schema.field(position).data_type())?);
        }
        for accumulator in &mut self.accumulators {
            columns.extend(accumulator.state(EmitTo::All)?);
        }
        self.reservation.free();
        Ok(RecordBatch::try_new(
            self.aggregation.schema.clone(),
            columns,
        )?)
    }
}

/// Two value numbers as one group key.
fn pack(first: u32, second: u32) -> u64 {
    (u64::from(first) << 32) | u64::from(second)
}

fn unpack(key: u64) -> (u32, u32) {
    ((key >> 32) as u32, (key & 0xFFFF_FFFF) as u32)
}

/// `expr` with its column references moved to the operator's input (`columns[i]` is the
/// input column behind column `i`).
fn in_scan_columns(
    expr: &Arc<dyn PhysicalExpr>,
    columns: &[usize],
) -> Result<Arc<dyn PhysicalExpr>> {
    expr.clone()
        .transform(|e| {
            let any: &dyn std::any::Any = e.as_ref();
            let Some(column) = any.downcast_ref::<Column>() else {
                return Ok(Transformed::no(e));
            };
            let index = columns.get(column.index()).copied().ok_or_else(|| {
                DataFusionError::Internal(format!("column {column} is not in the scan"))
            })?;
            Ok(Transformed::yes(
                Arc::new(Column::new(column.name(), index)) as _,
            ))
        })
        .map(|t| t.data)
}

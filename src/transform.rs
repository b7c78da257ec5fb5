//! A pipeline's SQL `transform`: runs over each validated batch, exposed as the table `input`,
//! before storage; the same engine and functions as queries (calendar, masks, JSON). It can
//! flatten nested fields, rename, compute columns, or drop sensitive ones (a face-recognition
//! name, say) so that they are never stored. The hub's `_ingested_at`, `_run_id` and `_source`
//! columns are added after the transform.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

use crate::normalize::{INGESTED_AT, RUN_ID, SOURCE, timestamp_type};
use crate::sharing::catalog::read_only;

mod lineage;

/// The transform's output columns that carry personal data (`personal`: the schema's `x-pii`
/// properties) under a name masks do not cover, each with the personal columns it carries.
pub fn unmasked_personal_outputs(
    functions: &SessionContext,
    input: SchemaRef,
    sql: &str,
    personal: &[String],
) -> Result<Vec<(String, Vec<String>)>, String> {
    let ctx = context(functions);
    ctx.register_batch("input", RecordBatch::new_empty(input))
        .map_err(|e| e.strip_backtrace())?;
    let frame = futures::executor::block_on(ctx.sql_with_options(sql, read_only()))
        .map_err(|e| e.strip_backtrace())?;
    Ok(lineage::unmasked_personal_outputs(
        frame.logical_plan(),
        personal,
    ))
}

/// The columns a transform produces from `input` (planned, not run).
pub fn output_schema(
    functions: &SessionContext,
    input: SchemaRef,
    sql: &str,
) -> Result<SchemaRef, String> {
    let ctx = context(functions);
    ctx.register_batch("input", RecordBatch::new_empty(input))
        .map_err(|e| e.strip_backtrace())?;
    // Planning needs no I/O: an in-memory table and SQL text.
    let frame = futures::executor::block_on(ctx.sql_with_options(sql, read_only()))
        .map_err(|e| e.strip_backtrace())?;
    Ok(Arc::new(storable_schema(frame.schema().as_arrow())))
}

/// A fresh context per batch: `input` is registered in a catalog of its own, never in the
/// shared one (batches of several runs are transformed at once).
fn context(functions: &SessionContext) -> SessionContext {
    match crate::sharing::catalog::empty_context(functions) {
        Ok((ctx, _, _)) => ctx,
        Err(e) => {
            tracing::error!(error = %e, "cannot make a transform context; using a plain one");
            SessionContext::new()
        }
    }
}

/// Runs the transform over one batch of data columns.
pub async fn apply(
    functions: &SessionContext,
    sql: &str,
    batch: RecordBatch,
) -> Result<Vec<RecordBatch>, DataFusionError> {
    let ctx = context(functions);
    ctx.register_batch("input", batch)?;
    ctx.sql_with_options(sql, read_only())
        .await?
        .collect()
        .await
}

/// The stored schema: the data columns, then the hub's own.
pub fn with_meta_fields(data: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = data
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new(INGESTED_AT, timestamp_type(), false));
    fields.push(Field::new(RUN_ID, arrow::datatypes::DataType::Utf8, false));
    fields.push(Field::new(SOURCE, arrow::datatypes::DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// Appends `_ingested_at`, `_run_id` and `_source` (one source per batch of a connector).
pub fn add_meta(
    batch: &RecordBatch,
    schema: &SchemaRef,
    ingested_at: i64,
    run_id: &str,
    source: &str,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let n = batch.num_rows();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.push(Arc::new(
        TimestampMicrosecondArray::from(vec![ingested_at; n]).with_timezone("UTC"),
    ));
    columns.push(Arc::new(StringArray::from(vec![run_id; n])));
    columns.push(Arc::new(StringArray::from(vec![source; n])));
    RecordBatch::try_new(schema.clone(), columns)
}

/// The type a transform's column is stored as: plain strings, 64-bit numbers, dates, and
/// timestamps in µs UTC (a timestamp without a zone is taken as UTC).
fn storable(t: &arrow::datatypes::DataType) -> arrow::datatypes::DataType {
    use arrow::datatypes::DataType::*;
    match t {
        Utf8View | LargeUtf8 => Utf8,
        Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32 | UInt64 => Int64,
        Float16 | Float32 => Float64,
        Date64 => Date32,
        Timestamp(..) => timestamp_type(),
        Dictionary(_, value) => storable(value),
        other => other.clone(),
    }
}

pub fn storable_schema(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), storable(f.data_type()), true))
            .collect::<Vec<_>>(),
    )
}

/// Casts a transform's output batch to the stored types.
pub fn to_storable(
    batch: &RecordBatch,
    data_schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .zip(data_schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow::compute::cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(data_schema.clone(), columns)
}

/// Plans a check's rule; it must be a boolean expression over `input`'s columns.
pub fn check_rule(functions: &SessionContext, input: SchemaRef, rule: &str) -> Result<(), String> {
    let schema = output_schema(
        functions,
        input,
        &format!("SELECT ({rule}) AS ok FROM input"),
    )?;
    match schema.field(0).data_type() {
        arrow::datatypes::DataType::Boolean => Ok(()),
        other => Err(format!("the rule is {other}, not a true/false expression")),
    }
}

/// For each row of `batch`: `None` when every rule holds (or is NULL), else the index of the
/// first rule it breaks.
pub async fn failed_checks(
    functions: &SessionContext,
    rules: &[String],
    batch: &RecordBatch,
) -> Result<Vec<Option<usize>>, DataFusionError> {
    let mut failed = vec![None; batch.num_rows()];
    if rules.is_empty() || batch.num_rows() == 0 {
        return Ok(failed);
    }
    let select = rules
        .iter()
        .enumerate()
        .map(|(i, rule)| format!("({rule}) AS c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let results = apply(
        functions,
        &format!("SELECT {select} FROM input"),
        batch.clone(),
    )
    .await?;
    let mut row = 0;
    for part in &results {
        for r in 0..part.num_rows() {
            for (i, column) in part.columns().iter().enumerate() {
                if let Some(ok) = column.as_any().downcast_ref::<arrow::array::BooleanArray>()
                    && arrow::array::Array::is_valid(ok, r)
                    && !ok.value(r)
                    && failed[row].is_none()
                {
                    failed[row] = Some(i);
                }
            }
            row += 1;
        }
    }
    Ok(failed)
}

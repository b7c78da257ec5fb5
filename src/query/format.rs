//! Query results as JSON, CSV or an Arrow IPC stream.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value, json};

use super::QueryResult;

/// `{"columns": [{"name", "type"}], "rows": [[...]], "row_count": n, "truncated": bool}`.
pub fn to_json(result: &QueryResult) -> Result<Value, ArrowError> {
    let columns: Vec<Value> = result
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": type_name(f.data_type())}))
        .collect();
    let mut rows: Vec<Value> = Vec::with_capacity(result.row_count);
    let options = FormatOptions::default();
    for batch in &result.batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let cells = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(column, formatter)| cell(column.as_ref(), formatter, row))
                .collect();
            rows.push(Value::Array(cells));
        }
    }
    let mut out = Map::new();
    out.insert("columns".into(), Value::Array(columns));
    out.insert("rows".into(), Value::Array(rows));
    out.insert("row_count".into(), json!(result.row_count));
    out.insert("truncated".into(), json!(result.truncated));
    Ok(Value::Object(out))
}

/// A SQL-ish name for a column type, stable across Arrow's string representations.
pub fn type_name(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => "integer".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            "integer".into()
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "number".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Decimal128(..) | DataType::Decimal256(..) => "decimal".into(),
        other => other.to_string(),
    }
}

fn cell(column: &dyn Array, formatter: &ArrayFormatter<'_>, row: usize) -> Value {
    if column.is_null(row) {
        return Value::Null;
    }
    let float = |f: f64| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    match column.data_type() {
        DataType::Boolean => Value::Bool(column.as_boolean().value(row)),
        DataType::Int8 => json!(column.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => json!(column.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => json!(column.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => json!(column.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => json!(column.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => json!(column.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => json!(column.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => json!(column.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => float(column.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => float(column.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::String(column.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(column.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Value::String(column.as_string_view().value(row).to_string()),
        _ => Value::String(formatter.value(row).to_string()),
    }
}

pub fn to_csv(result: &QueryResult) -> Result<Vec<u8>, ArrowError> {
    let mut writer = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(Vec::new());
    if result.batches.is_empty() {
        // Still give the header line.
        writer.write(&arrow::record_batch::RecordBatch::new_empty(
            result.schema.clone(),
        ))?;
    }
    for batch in &result.batches {
        writer.write(batch)?;
    }
    Ok(writer.into_inner())
}

pub fn to_arrow_ipc(result: &QueryResult) -> Result<Vec<u8>, ArrowError> {
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &result.schema)?;
    for batch in &result.batches {
        writer.write(batch)?;
    }
    writer.into_inner()
}

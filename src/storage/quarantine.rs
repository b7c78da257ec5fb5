//! The quarantine: every record kept out of a dataset, with its raw payload and the reasons.
//! An append-only Delta table `quarantine`, queryable like any dataset.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::normalize::{Rejected, timestamp_type};

pub const TABLE: &str = "quarantine";

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("dataset", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("location", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new("errors", DataType::Utf8, false),
        Field::new("quarantined_at", timestamp_type(), false),
    ]))
}

/// `errors` holds a JSON array of `{"pointer", "message"}`.
pub fn to_batch(
    dataset: &str,
    run_id: &str,
    rejected: &[Rejected],
    at_micros: i64,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let n = rejected.len();
    let mut datasets = StringBuilder::with_capacity(n, n * dataset.len());
    let mut runs = StringBuilder::with_capacity(n, n * run_id.len());
    let mut sources = StringBuilder::new();
    let mut locations = StringBuilder::new();
    let mut raws = StringBuilder::new();
    let mut errors = StringBuilder::new();
    let mut times = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    for r in rejected {
        datasets.append_value(dataset);
        runs.append_value(run_id);
        sources.append_value(&*r.source);
        locations.append_value(&r.location);
        raws.append_value(&r.raw);
        errors.append_value(serde_json::to_string(&r.errors).unwrap_or_else(|_| "[]".into()));
        times.append_value(at_micros);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(datasets.finish()),
        Arc::new(runs.finish()),
        Arc::new(sources.finish()),
        Arc::new(locations.finish()),
        Arc::new(raws.finish()),
        Arc::new(errors.finish()),
        Arc::new(times.finish()),
    ];
    RecordBatch::try_new(schema(), columns)
}

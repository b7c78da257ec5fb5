//! The last row per key within a run, so a MERGE never sees two source rows for one target.

use std::collections::HashMap;

use arrow::array::UInt32Array;
use arrow::compute::{concat_batches, take_record_batch};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

pub fn last_per_key(batches: &[RecordBatch], key: &[String]) -> Result<RecordBatch, ArrowError> {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| ArrowError::InvalidArgumentError("no rows".into()))?;
    let all = concat_batches(&schema, batches)?;
    let options = FormatOptions::default();
    let key_columns = key
        .iter()
        .map(|k| {
            let index = schema.index_of(k)?;
            Ok(all.column(index).clone())
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    let formatters = key_columns
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, ArrowError>>()?;
    let mut last: HashMap<String, u32> = HashMap::with_capacity(all.num_rows());
    for row in 0..all.num_rows() {
        let mut k = String::new();
        for (column, formatter) in key_columns.iter().zip(&formatters) {
            // \u{1f} separates parts; \u{0} marks NULL so it differs from an empty string.
            if column.is_null(row) {
                k.push('\u{0}');
            } else {
                k.push_str(&formatter.value(row).to_string());
            }
            k.push('\u{1f}');
        }
        last.insert(k, row as u32);
    }
    if last.len() == all.num_rows() {
        return Ok(all);
    }
    let mut keep: Vec<u32> = last.into_values().collect();
    keep.sort_unstable();
    take_record_batch(&all, &UInt32Array::from(keep))
}

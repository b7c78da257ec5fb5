//! The largest value of a pipeline's cursor field among the rows a run accepted.

use arrow::array::{Array, AsArray};
use arrow::compute::{max, max_string};
use arrow::datatypes::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use crate::normalize::ColumnKind;

#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Typed {
    Int(i64),
    Float(f64),
    Date(i32),
    Micros(i64),
    Text(String),
}

pub struct CursorTracker {
    column: String,
    kind: ColumnKind,
    max: Option<Typed>,
}

const EPOCH_DAY: i32 = 719_163;

impl CursorTracker {
    pub fn new(column: &str, kind: ColumnKind, previous: Option<&Value>) -> Self {
        CursorTracker {
            column: column.to_string(),
            kind,
            max: previous.and_then(|v| from_json(kind, v)),
        }
    }

    pub fn observe(&mut self, batch: &RecordBatch) {
        let Some(column) = batch.column_by_name(&self.column) else {
            return;
        };
        let candidate = match self.kind {
            ColumnKind::Int64 => max(column.as_primitive::<Int64Type>()).map(Typed::Int),
            ColumnKind::Float64 => max(column.as_primitive::<Float64Type>()).map(Typed::Float),
            ColumnKind::Date => max(column.as_primitive::<Date32Type>()).map(Typed::Date),
            ColumnKind::Timestamp => {
                max(column.as_primitive::<TimestampMicrosecondType>()).map(Typed::Micros)
            }
            ColumnKind::Utf8 if column.data_type() == &arrow::datatypes::DataType::Utf8 => {
                max_string(column.as_string::<i32>()).map(|s| Typed::Text(s.to_string()))
            }
            _ => None,
        };
        if let Some(c) = candidate
            && self.max.as_ref().is_none_or(|m| c > *m)
        {
            self.max = Some(c);
        }
    }

    pub fn value(&self) -> Option<Value> {
        self.max.as_ref().map(to_json)
    }
}

fn to_json(v: &Typed) -> Value {
    match v {
        Typed::Int(n) => Value::from(*n),
        Typed::Float(f) => Value::from(*f),
        Typed::Date(d) => NaiveDate::from_num_days_from_ce_opt(d + EPOCH_DAY)
            .map_or(Value::Null, |d| {
                Value::String(d.format("%Y-%m-%d").to_string())
            }),
        Typed::Micros(us) => DateTime::<Utc>::from_timestamp_micros(*us).map_or(Value::Null, |t| {
            Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }),
        Typed::Text(s) => Value::String(s.clone()),
    }
}

fn from_json(kind: ColumnKind, v: &Value) -> Option<Typed> {
    match kind {
        ColumnKind::Int64 => v.as_i64().map(Typed::Int),
        ColumnKind::Float64 => v.as_f64().map(Typed::Float),
        ColumnKind::Date => NaiveDate::parse_from_str(v.as_str()?, "%Y-%m-%d")
            .ok()
            .map(|d| Typed::Date(chrono::Datelike::num_days_from_ce(&d) - EPOCH_DAY)),
        ColumnKind::Timestamp => DateTime::parse_from_rfc3339(v.as_str()?)
            .ok()
            .map(|t| Typed::Micros(t.timestamp_micros())),
        ColumnKind::Utf8 => v.as_str().map(|s| Typed::Text(s.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMicrosecondArray;
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn keeps_the_largest_timestamp_across_batches_and_runs() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "u",
            crate::normalize::timestamp_type(),
            true,
        )]));
        let batch = |v: Vec<Option<i64>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(
                    TimestampMicrosecondArray::from(v).with_timezone("UTC"),
                )],
            )
            .unwrap()
        };
        let previous = Value::String("2025-04-01T00:00:00Z".into());
        let mut t = CursorTracker::new("u", ColumnKind::Timestamp, Some(&previous));
        t.observe(&batch(vec![Some(1_000), None]));
        assert_eq!(
            t.value(),
            Some(previous.clone()),
            "older rows do not move the cursor back"
        );
        t.observe(&batch(vec![Some(1_743_555_600_000_000)]));
        assert_eq!(
            t.value(),
            Some(Value::String("2025-04-02T01:00:00Z".into()))
        );
    }
}

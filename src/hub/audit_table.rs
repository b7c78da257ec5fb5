//! The audit log as the SQL table `audit`, read from the state store only when a query
//! scans it (not on every query).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};

use crate::state::{AuditFilter, StateStore};

/// The newest lines offered to SQL; older ones through `GET /api/v1/audit` paging filters.
const LINES: usize = 100_000;

pub struct AuditTable {
    store: Arc<dyn StateStore>,
    schema: SchemaRef,
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("at", crate::normalize::timestamp_type(), false),
        Field::new("consumer", DataType::Utf8, true),
        Field::new("action", DataType::Utf8, false),
        Field::new("target", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, false),
        Field::new("outcome", DataType::Utf8, false),
    ]))
}

impl AuditTable {
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        AuditTable {
            store,
            schema: schema(),
        }
    }

    pub(super) fn read(&self) -> Result<RecordBatch> {
        let events = self
            .store
            .audit(&AuditFilter {
                limit: LINES,
                ..Default::default()
            })
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.seq))),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    events.iter().map(|e| e.at.timestamp_micros()),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter(
                events.iter().map(|e| e.consumer.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                events.iter().map(|e| e.action.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                events.iter().map(|e| e.target.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                events.iter().map(|e| e.detail.to_string()),
            )),
            Arc::new(StringArray::from_iter_values(
                events.iter().map(|e| e.outcome.as_str()),
            )),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

impl super::log_table::LogSource for AuditTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn batch(&self, _window: super::log_table::TimeWindow) -> Result<RecordBatch> {
        self.read()
    }
}

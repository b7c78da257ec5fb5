//! The run history as the SQL table `runs` (one row per pipeline run: status, counts,
//! error), read from the state store only when a query scans it. Like `audit`, it is the
//! hub's own log: admins and the local operator see it (periodic reports use it).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};

use crate::ingest::RunReport;
use crate::state::StateStore;

/// The newest runs of each pipeline offered to SQL: a pipeline every 5 minutes makes about
/// 105 000 a year.
const RUNS_PER_PIPELINE: usize = 120_000;

pub struct RunsTable {
    store: Arc<dyn StateStore>,
    pipelines: Vec<PipelineInfo>,
    schema: SchemaRef,
}

/// What each run row says of its pipeline, from the config: the unit scorecard judges the
/// publishers' data timeliness against the allowed staleness.
#[derive(Debug, Clone)]
pub struct PipelineInfo {
    pub name: String,
    pub title: String,
    /// Consumer ids of the publishing departments, comma-separated.
    pub publishers: String,
    pub max_staleness_seconds: Option<i64>,
}

pub fn schema() -> SchemaRef {
    let count = |name| Field::new(name, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        Field::new("pipeline", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("publishers", DataType::Utf8, false),
        Field::new("max_staleness_seconds", DataType::Int64, true),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("started_at", crate::normalize::timestamp_type(), false),
        Field::new("finished_at", crate::normalize::timestamp_type(), false),
        Field::new("status", DataType::Utf8, false),
        count("fetched"),
        count("accepted"),
        count("rejected"),
        count("bytes"),
        count("attempts"),
        Field::new("trigger", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("error_class", DataType::Utf8, true),
    ]))
}

impl RunsTable {
    pub fn new(store: Arc<dyn StateStore>, pipelines: Vec<PipelineInfo>) -> Self {
        RunsTable {
            store,
            pipelines,
            schema: schema(),
        }
    }

    pub(super) fn read(&self) -> Result<RecordBatch> {
        let mut runs: Vec<(&PipelineInfo, RunReport)> = Vec::new();
        for info in &self.pipelines {
            let list = self
                .store
                .runs(&info.name, RUNS_PER_PIPELINE)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            runs.extend(list.into_iter().map(|r| (info, r)));
        }
        let int = |f: fn(&RunReport) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(runs.iter().map(|(_, r)| f(r))))
        };
        let time = |f: fn(&RunReport) -> i64| -> ArrayRef {
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(runs.iter().map(|(_, r)| f(r)))
                    .with_timezone("UTC"),
            )
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                runs.iter().map(|(_, r)| r.pipeline.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                runs.iter().map(|(p, _)| p.title.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                runs.iter().map(|(p, _)| p.publishers.as_str()),
            )),
            Arc::new(Int64Array::from_iter(
                runs.iter().map(|(p, _)| p.max_staleness_seconds),
            )),
            Arc::new(StringArray::from_iter_values(
                runs.iter().map(|(_, r)| r.run_id.as_str()),
            )),
            time(|r| r.started_at.timestamp_micros()),
            time(|r| r.finished_at.timestamp_micros()),
            Arc::new(StringArray::from_iter_values(
                runs.iter().map(|(_, r)| r.status.as_str()),
            )),
            int(|r| r.fetched as i64),
            int(|r| r.accepted as i64),
            int(|r| r.rejected as i64),
            int(|r| r.bytes as i64),
            int(|r| i64::from(r.attempts)),
            Arc::new(StringArray::from_iter_values(
                runs.iter().map(|(_, r)| r.trigger.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                runs.iter().map(|(_, r)| r.error.as_deref()),
            )),
            Arc::new(StringArray::from_iter(
                runs.iter().map(|(_, r)| r.error_class.as_deref()),
            )),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

impl super::log_table::LogSource for RunsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn batch(&self) -> Result<RecordBatch> {
        self.read()
    }
}

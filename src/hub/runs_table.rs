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

/// The newest runs of each pipeline a scan without bounds on `started_at` reads (a pipeline
/// every 5 minutes makes about 105 000 a year). A query bounded in time (every report section
/// is) reads every run of its window, however many.
const RUNS_PER_PIPELINE: usize = 120_000;

pub struct RunsTable {
    store: Arc<dyn StateStore>,
    pipelines: Vec<PipelineInfo>,
    schema: SchemaRef,
    /// Runs per pipeline an unbounded scan reads (`RUNS_PER_PIPELINE`; smaller in tests).
    unbounded_cap: usize,
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
            unbounded_cap: RUNS_PER_PIPELINE,
        }
    }

    pub(super) fn read(&self, window: super::log_table::TimeWindow) -> Result<RecordBatch> {
        // SQLite's LIMIT is an i64: i64::MAX means every run of the window.
        let limit = if window.from.is_some() {
            i64::MAX as usize
        } else {
            self.unbounded_cap
        };
        let mut runs: Vec<(&PipelineInfo, RunReport)> = Vec::new();
        for info in &self.pipelines {
            let list = self
                .store
                .runs_between(&info.name, window.from, window.to, limit)
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

    fn time_column(&self) -> Option<&'static str> {
        Some("started_at")
    }

    fn batch(&self, window: super::log_table::TimeWindow) -> Result<RecordBatch> {
        self.read(window)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::hub::log_table::LogTable;
    use crate::ingest::RunStatus;
    use crate::state::SqliteStateStore;

    fn run(pipeline: &str, n: i64, start: DateTime<Utc>) -> RunReport {
        let at = start + Duration::days(n);
        RunReport {
            pipeline: pipeline.into(),
            run_id: format!("{pipeline}-{n}"),
            started_at: at,
            finished_at: at + Duration::seconds(1),
            status: RunStatus::Succeeded,
            fetched: 1,
            accepted: 1,
            rejected: 0,
            bytes: 10,
            attempts: 1,
            trigger: "schedule".into(),
            error: None,
            error_class: None,
        }
    }

    async fn count(ctx: &SessionContext, sql: &str) -> i64 {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0)
    }

    #[tokio::test]
    async fn a_scan_bounded_in_time_reads_every_run_of_its_window_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::new(SqliteStateStore::open(dir.path()).unwrap());
        let start = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // 40 daily runs from 1 January; the unbounded cap is 5.
        for n in 0..40 {
            store.record_run(&run("p", n, start)).unwrap();
        }
        let info = PipelineInfo {
            name: "p".into(),
            title: "P".into(),
            publishers: String::new(),
            max_staleness_seconds: None,
        };
        let mut table = RunsTable::new(store, vec![info]);
        table.unbounded_cap = 5;
        let ctx = SessionContext::new();
        ctx.register_table("runs", Arc::new(LogTable::new(table)))
            .unwrap();

        assert_eq!(
            count(&ctx, "SELECT count(*) FROM runs").await,
            5,
            "unbounded: the newest 5"
        );
        // January: 31 runs, all read although only 5 are the newest.
        let january = "SELECT count(*) FROM runs WHERE started_at >= TIMESTAMP '2025-01-01T00:00:00Z' \
                       AND started_at < TIMESTAMP '2025-02-01T00:00:00Z'";
        assert_eq!(count(&ctx, january).await, 31);
        // Bounds written the other way round, and a strict lower one.
        let turned = "SELECT count(*) FROM runs WHERE TIMESTAMP '2025-01-10T00:00:00Z' < started_at \
                      AND TIMESTAMP '2025-01-20T00:00:00Z' >= started_at";
        assert_eq!(count(&ctx, turned).await, 10);
    }

    #[test]
    fn only_comparisons_of_the_time_column_with_a_timestamp_bound_the_window() {
        use datafusion::logical_expr::{col, lit};
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let ts = |s: &str| {
            lit(datafusion::common::ScalarValue::TimestampMicrosecond(
                Some(at(s).timestamp_micros()),
                Some("UTC".into()),
            ))
        };
        let filters = vec![
            col("started_at").gt_eq(ts("2025-01-01T00:00:00Z")),
            col("started_at").gt_eq(ts("2025-02-01T00:00:00Z")),
            col("started_at").lt(ts("2025-03-01T00:00:00Z")),
            col("finished_at").lt(ts("2025-01-05T00:00:00Z")),
            col("pipeline").eq(lit("p")),
        ];
        let window = crate::hub::log_table::TimeWindow::from_filters("started_at", &filters);
        assert_eq!(
            window.from,
            Some(at("2025-02-01T00:00:00Z")),
            "the tighter bound"
        );
        assert_eq!(window.to, Some(at("2025-03-01T00:00:00Z")));
    }
}

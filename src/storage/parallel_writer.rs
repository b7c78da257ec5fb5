//! Writing one commit's rows on several cores.
//!
//! Encoding Parquet is a large share of an ingest run and of numbering it in the change log,
//! and one `RecordBatchWriter` does it on one core (docs/PERFORMANCE.md). Rows arrive in
//! order from one producer; runs of a row group's size go to each of a few writer tasks in
//! turn, each writing files of its own, so a row group still holds consecutive rows (one
//! contiguous range of `_seq` in the change log, what the feed's reads prune by). The files
//! become visible together, in one commit, or not at all.

use arrow::array::RecordBatch;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Batches waiting for each writer: enough to keep it busy, few enough to bound memory.
const QUEUE: usize = 2;

/// How many writers a commit gets: one per core, at most four (each holds a row group).
pub fn writers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(4))
}

pub struct ParallelWriter {
    queues: Vec<mpsc::Sender<RecordBatch>>,
    tasks: Vec<JoinHandle<Result<Vec<Add>, DeltaTableError>>>,
    /// The writer taking rows now, and how many it has taken since it started this run.
    current: usize,
    in_current: usize,
    run_rows: usize,
}

impl ParallelWriter {
    /// `writers` tasks writing into `table` with `properties`; a new run of rows starts on
    /// the next writer every `run_rows` rows.
    pub fn new(
        table: &DeltaTable,
        properties: WriterProperties,
        writers: usize,
        run_rows: usize,
    ) -> Result<Self, DeltaTableError> {
        let mut queues = Vec::with_capacity(writers);
        let mut tasks = Vec::with_capacity(writers);
        for _ in 0..writers.max(1) {
            let mut writer =
                RecordBatchWriter::for_table(table)?.with_writer_properties(properties.clone());
            let (queue, mut batches) = mpsc::channel::<RecordBatch>(QUEUE);
            queues.push(queue);
            tasks.push(tokio::spawn(async move {
                while let Some(batch) = batches.recv().await {
                    writer.write(batch).await?;
                }
                writer.flush().await
            }));
        }
        Ok(ParallelWriter {
            queues,
            tasks,
            current: 0,
            in_current: 0,
            run_rows: run_rows.max(1),
        })
    }

    /// Queues rows for writing.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), DeltaTableError> {
        let mut batch = batch;
        while batch.num_rows() > 0 {
            let room = self.run_rows - self.in_current;
            let take = room.min(batch.num_rows());
            let part = batch.slice(0, take);
            batch = batch.slice(take, batch.num_rows() - take);
            if self.queues[self.current].send(part).await.is_err() {
                // The writer stopped on an error: that error is the one to report.
                return Err(match (&mut self.tasks[self.current]).await {
                    Ok(Err(e)) => e,
                    Ok(Ok(_)) => DeltaTableError::Generic("a Parquet writer stopped early".into()),
                    Err(e) => DeltaTableError::Generic(format!("Parquet writer task: {e}")),
                });
            }
            self.in_current += take;
            if self.in_current == self.run_rows {
                self.current = (self.current + 1) % self.queues.len();
                self.in_current = 0;
            }
        }
        Ok(())
    }

    /// Waits for every writer and returns the files written (none visible yet).
    pub async fn finish(self) -> Result<Vec<Add>, DeltaTableError> {
        drop(self.queues);
        let mut adds = Vec::new();
        let mut first_error = None;
        for task in self.tasks {
            match task.await {
                Ok(Ok(files)) => adds.extend(files),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(DeltaTableError::Generic(format!(
                        "Parquet writer task: {e}"
                    )));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(adds),
        }
    }
}

/// Commits `adds` to `table` in one commit, and brings `table` to the new version.
pub async fn commit(
    table: &mut DeltaTable,
    adds: Vec<Add>,
    properties: CommitProperties,
) -> Result<(), DeltaTableError> {
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    let actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
    let snapshot = table.snapshot()?;
    CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await?;
    table.update_incremental(None).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::TableStore;
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_spread_over_writers_land_once_each_in_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = TableStore::at(dir.path().to_path_buf());
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let mut table = store.open("t", &schema).await.unwrap();
        let before = table.version();
        let properties = WriterProperties::builder().build();
        let mut writer = ParallelWriter::new(&table, properties, 3, 10).unwrap();
        // 95 rows in batches of 7: runs of 10 cross batch boundaries.
        for start in (0..95).step_by(7) {
            let values: Vec<i64> = (start..(start + 7).min(95)).collect();
            let batch =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])
                    .unwrap();
            writer.write(batch).await.unwrap();
        }
        let files = writer.finish().await.unwrap();
        assert_eq!(files.len(), 3, "one file per writer");
        let rows: i64 = files
            .iter()
            .filter_map(|f| f.get_stats().ok().flatten())
            .map(|s| s.num_records)
            .sum();
        assert_eq!(rows, 95);
        // Nothing is visible before the commit.
        assert_eq!(table.version(), before);
        commit(&mut table, files, CommitProperties::default())
            .await
            .unwrap();
        assert_eq!(table.version(), before.map(|v| v + 1));
        let ctx = SessionContext::new();
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let batches = ctx
            .sql("SELECT count(*), count(DISTINCT n), min(n), max(n) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let value = |i: usize| {
            batches[0]
                .column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .map(|a| a.value(0))
                .unwrap()
        };
        assert_eq!((value(0), value(1), value(2), value(3)), (95, 95, 0, 94));
        assert!(!batches[0].column(0).is_null(0));
    }
}

//! One run of a pipeline: read the source, normalize, commit rows and quarantine, save state.
//!
//! Order of a run, and why it is crash-safe:
//! 1. reconcile the state store with the table: a data commit whose state was never saved
//!    (the hub died in between) carries the run's checkpoint and cursor, which win;
//! 2. read from that position, normalize, stream accepted rows into the run's writer;
//! 3. commit the quarantine, then the rows, with checkpoint, cursor and run sequence in the
//!    same Delta commit; 4. save the new position in the state store.
//!
//! A failure before 3 commits nothing; a crash between 3 and 4 is repaired by 1.

mod cursor;
mod fault;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use iochub_connectors::{ReadContext, SourceEvent};
use serde::{Deserialize, Serialize};

use crate::config::Pipeline;
use crate::hub::Hub;
use crate::normalize::{Normalized, Normalizer, Rejected};
use crate::state::PipelineState;
use crate::storage::{CommitInfo, RunWriter, TableStore, quarantine};
use cursor::CursorTracker;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every record was accepted.
    Succeeded,
    /// Committed, with some records quarantined.
    Partial,
    /// No rows were committed. (Records already quarantined by the run stay there: a bad
    /// record seen twice beats a bad record lost.)
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "succeeded" => Some(RunStatus::Succeeded),
            "partial" => Some(RunStatus::Partial),
            "failed" => Some(RunStatus::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub pipeline: String,
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub status: RunStatus,
    pub fetched: usize,
    pub accepted: usize,
    pub rejected: usize,
    /// Bytes read from the source.
    pub bytes: u64,
    /// Attempts made (transient errors are retried inside the run).
    pub attempts: u32,
    /// `schedule`, `start`, `manual` or `cli`.
    pub trigger: String,
    pub error: Option<String>,
    /// `transient` (may pass by itself) or `permanent` (needs someone to act).
    pub error_class: Option<String>,
}

impl RunReport {
    pub fn duration_seconds(&self) -> f64 {
        (self.finished_at - self.started_at).num_milliseconds() as f64 / 1000.0
    }
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Connector(#[from] iochub_connectors::ConnectorError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("{0}")]
    Internal(String),
    #[error("transform: {0}")]
    Transform(String),
}

impl RunError {
    fn is_transient(&self) -> bool {
        matches!(self, RunError::Connector(e) if e.is_transient())
    }

    fn class(&self) -> &'static str {
        if self.is_transient() {
            "transient"
        } else {
            "permanent"
        }
    }
}

struct Collected {
    fetched: usize,
    accepted: usize,
    bytes: u64,
    rejected: Vec<Rejected>,
    checkpoint: Option<serde_json::Value>,
    cursor: Option<serde_json::Value>,
}

pub async fn run(hub: &Hub, pipeline: &Arc<Pipeline>, trigger: &str) -> RunReport {
    let run_id = uuid::Uuid::new_v4().to_string();
    let started_at = Utc::now();
    let retry = &pipeline.run_retry;
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        match attempt(hub, pipeline, &run_id, started_at).await {
            Err(e) if e.is_transient() && attempts < retry.attempts => {
                let backoff = retry
                    .initial_backoff_seconds
                    .saturating_mul(1 << (attempts - 1).min(20))
                    .min(retry.max_backoff_seconds);
                // Half fixed, half random, so retrying pipelines do not return in step.
                let wait = Duration::from_millis(
                    backoff * 500 + iochub_connectors::retry::jitter(backoff * 500),
                );
                tracing::warn!(pipeline = %pipeline.name, attempt = attempts, error = %e, wait_s = wait.as_secs_f64(), "transient failure; retrying the run");
                tokio::time::sleep(wait).await;
            }
            other => break other,
        }
    };
    let finished_at = Utc::now();
    let mut report = RunReport {
        pipeline: pipeline.name.clone(),
        run_id,
        started_at,
        finished_at,
        status: RunStatus::Failed,
        fetched: 0,
        accepted: 0,
        rejected: 0,
        bytes: 0,
        attempts,
        trigger: trigger.to_string(),
        error: None,
        error_class: None,
    };
    match outcome {
        Ok(c) => {
            report.status = if c.rejected.is_empty() {
                RunStatus::Succeeded
            } else {
                RunStatus::Partial
            };
            report.fetched = c.fetched;
            report.accepted = c.accepted;
            report.rejected = c.rejected.len();
            report.bytes = c.bytes;
            tracing::info!(
                pipeline = %report.pipeline, run_id = %report.run_id, fetched = report.fetched,
                accepted = report.accepted, rejected = report.rejected,
                seconds = report.duration_seconds(), "run finished"
            );
        }
        Err(e) => {
            report.error_class = Some(e.class().to_string());
            report.error = Some(e.to_string());
            tracing::warn!(pipeline = %report.pipeline, run_id = %report.run_id, error = %e, "run failed; nothing committed");
        }
    }
    hub.record_run(&report);
    report
}

/// Brings the stored position up to what the table says was committed.
async fn recover(
    hub: &Hub,
    pipeline: &Pipeline,
    mut state: PipelineState,
) -> Result<PipelineState, RunError> {
    let table = hub.table(&pipeline.name).await?;
    let Some(committed) = TableStore::committed_position(&table, &pipeline.name).await? else {
        return Ok(state);
    };
    if committed.sequence <= state.run_sequence {
        return Ok(state);
    }
    tracing::warn!(
        pipeline = %pipeline.name, committed = committed.sequence, saved = state.run_sequence,
        "the last commit's position was not saved (the hub stopped in between); taking it from the table"
    );
    state.run_sequence = committed.sequence;
    state.checkpoint = committed.checkpoint.or(state.checkpoint);
    state.cursor = committed.cursor.or(state.cursor);
    state.last_success = committed.committed_at.or(state.last_success);
    hub.state.save(&pipeline.name, &state)?;
    Ok(state)
}

async fn attempt(
    hub: &Hub,
    pipeline: &Arc<Pipeline>,
    run_id: &str,
    started_at: DateTime<Utc>,
) -> Result<Collected, RunError> {
    let state = hub.state.load(&pipeline.name)?;
    let mut state = recover(hub, pipeline, state).await?;
    let connector = pipeline.source.build(&pipeline.build_context)?;
    let table = hub.table(&pipeline.name).await?;
    let mut writer = hub.store.begin_run(&pipeline.name, &table, &pipeline.key)?;
    drop(table);
    let stream = connector.read(ReadContext {
        checkpoint: state.checkpoint.clone(),
        cursor: state.cursor.clone(),
    });
    let collected = collect(
        hub,
        pipeline,
        stream,
        run_id,
        started_at,
        &mut writer,
        state.cursor.as_ref(),
    )
    .await?;
    if !collected.rejected.is_empty() {
        let batch = quarantine::to_batch(
            &pipeline.name,
            run_id,
            &collected.rejected,
            Utc::now().timestamp_micros(),
        )
        .map_err(|e| RunError::Internal(format!("quarantine batch: {e}")))?;
        hub.append_quarantine(batch).await?;
    }
    let sequence = state.run_sequence + 1;
    let checkpoint = collected.checkpoint.clone().or(state.checkpoint.take());
    let cursor = collected.cursor.clone().or(state.cursor.take());
    let info = CommitInfo {
        pipeline: pipeline.name.clone(),
        run_id: run_id.to_string(),
        run_sequence: Some(sequence),
        checkpoint: checkpoint.clone(),
        cursor: cursor.clone(),
    };
    hub.commit_dataset(pipeline, writer, &info).await?;
    fault::crash_point("after-data-commit", &pipeline.name);
    hub.state.save(
        &pipeline.name,
        &PipelineState {
            checkpoint,
            cursor,
            run_sequence: sequence,
            last_success: Some(Utc::now()),
        },
    )?;
    Ok(collected)
}

/// The rows to store for a normalized batch: records breaking a `[[checks]]` rule move to
/// `out.rejected`, the pipeline's transform (if any) runs over the rest, and the hub's columns
/// (`_ingested_at`, `_run_id`, `_source`) come last.
pub(crate) async fn finish_normalized(
    hub: &Hub,
    pipeline: &Pipeline,
    out: &mut Normalized,
    ingested_at: i64,
    run_id: &str,
    source: &Arc<str>,
) -> Result<(), String> {
    let Some(mut batch) = out.accepted.take() else {
        return Ok(());
    };
    let data_columns: Vec<usize> = (0..pipeline.schema.columns.len()).collect();
    if !pipeline.checks.is_empty() {
        let rules: Vec<String> = pipeline.checks.iter().map(|c| c.rule.clone()).collect();
        let input = batch.project(&data_columns).map_err(|e| e.to_string())?;
        let failed = crate::transform::failed_checks(hub.engine.context(), &rules, &input)
            .await
            .map_err(|e| e.strip_backtrace())?;
        if failed.iter().any(Option::is_some) {
            for (row, check) in failed.iter().enumerate() {
                let Some(i) = check else { continue };
                let check = &pipeline.checks[*i];
                out.rejected.push(Rejected {
                    source: source.clone(),
                    location: out.accepted_locations.get(row).cloned().unwrap_or_default(),
                    raw: out.accepted_raw.get(row).cloned().unwrap_or_default(),
                    errors: vec![crate::normalize::FieldError {
                        pointer: String::new(),
                        message: format!(
                            "{} (check {}: {})",
                            check.message, check.name, check.rule
                        ),
                    }],
                });
            }
            let keep: arrow::array::BooleanArray =
                failed.iter().map(|f| Some(f.is_none())).collect();
            batch =
                arrow::compute::filter_record_batch(&batch, &keep).map_err(|e| e.to_string())?;
        }
    }
    let Some(sql) = &pipeline.transform else {
        out.accepted = (batch.num_rows() > 0).then_some(batch);
        return Ok(());
    };
    let input = batch.project(&data_columns).map_err(|e| e.to_string())?;
    let output = crate::transform::apply(hub.engine.context(), sql, input)
        .await
        .map_err(|e| e.strip_backtrace())?;
    let table = &pipeline.table_schema;
    let data_schema = Arc::new(arrow::datatypes::Schema::new(
        table.fields()[..table.fields().len() - 3].to_vec(),
    ));
    let mut parts = Vec::with_capacity(output.len());
    for part in &output {
        let typed = crate::transform::to_storable(part, &data_schema).map_err(|e| e.to_string())?;
        parts.push(
            crate::transform::add_meta(&typed, table, ingested_at, run_id, source)
                .map_err(|e| e.to_string())?,
        );
    }
    let stored = arrow::compute::concat_batches(table, &parts).map_err(|e| e.to_string())?;
    out.accepted = (stored.num_rows() > 0).then_some(stored);
    Ok(())
}

/// Reads the whole source, normalizing batches on blocking threads (two at a time, in order),
/// and streams the accepted rows into the run's writer.
async fn collect(
    hub: &Hub,
    pipeline: &Arc<Pipeline>,
    stream: iochub_connectors::SourceStream,
    run_id: &str,
    started_at: DateTime<Utc>,
    writer: &mut RunWriter,
    previous_cursor: Option<&serde_json::Value>,
) -> Result<Collected, RunError> {
    let mut normalizer = Normalizer::new(
        pipeline.schema.clone(),
        pipeline.coerce.clone(),
        hub.time_zone(),
    );
    normalizer.keep_raw = !pipeline.checks.is_empty();
    let normalizer = Arc::new(normalizer);
    let mut cursor = pipeline.cursor.as_ref().and_then(|c| {
        let field = pipeline.table_schema.field_with_name(&c.field).ok()?;
        let kind = crate::normalize::ColumnKind::from_arrow(field.data_type());
        Some(CursorTracker::new(&c.field, kind, previous_cursor))
    });
    let ingested_at = started_at.timestamp_micros();
    let run_id: Arc<str> = run_id.into();
    let mut normalized = stream
        .map(|event| {
            let normalizer = normalizer.clone();
            let run_id = run_id.clone();
            async move {
                match event? {
                    SourceEvent::Batch(batch) => {
                        let bytes = batch.bytes;
                        let source = batch.source.clone();
                        let for_task = run_id.clone();
                        let out = tokio::task::spawn_blocking(move || {
                            normalizer.normalize(batch, &for_task, ingested_at)
                        })
                        .await
                        .map_err(|e| RunError::Internal(format!("normalize task: {e}")))?;
                        let mut out = out;
                        finish_normalized(hub, pipeline, &mut out, ingested_at, &run_id, &source)
                            .await
                            .map_err(RunError::Transform)?;
                        Ok::<_, RunError>((Some((out, bytes)), None))
                    }
                    SourceEvent::Checkpoint(cp) => Ok((None, Some(cp))),
                }
            }
        })
        .buffered(2);
    let mut collected = Collected {
        fetched: 0,
        accepted: 0,
        bytes: 0,
        rejected: Vec::new(),
        checkpoint: None,
        cursor: None,
    };
    while let Some(item) = normalized.next().await {
        let (out, checkpoint) = item?;
        if let Some((
            Normalized {
                fetched,
                accepted,
                rejected,
                ..
            },
            bytes,
        )) = out
        {
            collected.fetched += fetched;
            collected.bytes += bytes;
            collected.rejected.extend(rejected);
            if let Some(batch) = accepted {
                collected.accepted += batch.num_rows();
                if let Some(c) = cursor.as_mut() {
                    c.observe(&batch);
                }
                writer.write(batch).await.map_err(|source| {
                    crate::storage::StorageError::Delta {
                        table: pipeline.name.clone(),
                        source: Box::new(source),
                    }
                })?;
            }
        }
        if checkpoint.is_some() {
            collected.checkpoint = checkpoint;
        }
    }
    collected.cursor = cursor.and_then(|c| c.value());
    Ok(collected)
}

//! One run of a pipeline: read the source, normalize, commit rows and quarantine, save state.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use iochub_connectors::SourceEvent;
use serde::{Deserialize, Serialize};

use crate::config::Pipeline;
use crate::hub::Hub;
use crate::normalize::{Normalized, Normalizer, Rejected};
use crate::storage::{CommitInfo, RunWriter, quarantine};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every record was accepted.
    Succeeded,
    /// Committed, with some records quarantined.
    Partial,
    /// Nothing was committed.
    Failed,
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
}

impl RunError {
    fn class(&self) -> &'static str {
        match self {
            RunError::Connector(e) => e.class(),
            _ => "permanent",
        }
    }
}

struct Collected {
    fetched: usize,
    accepted: usize,
    rejected: Vec<Rejected>,
    checkpoint: Option<serde_json::Value>,
}

pub async fn run(hub: &Hub, pipeline: &Arc<Pipeline>) -> RunReport {
    let run_id = uuid::Uuid::new_v4().to_string();
    let started_at = Utc::now();
    let outcome = run_inner(hub, pipeline, &run_id, started_at).await;
    let finished_at = Utc::now();
    let report = match outcome {
        Ok(c) => RunReport {
            pipeline: pipeline.name.clone(),
            run_id,
            started_at,
            finished_at,
            status: if c.rejected.is_empty() {
                RunStatus::Succeeded
            } else {
                RunStatus::Partial
            },
            fetched: c.fetched,
            accepted: c.accepted,
            rejected: c.rejected.len(),
            error: None,
            error_class: None,
        },
        Err(e) => RunReport {
            pipeline: pipeline.name.clone(),
            run_id,
            started_at,
            finished_at,
            status: RunStatus::Failed,
            fetched: 0,
            accepted: 0,
            rejected: 0,
            error_class: Some(e.class().to_string()),
            error: Some(e.to_string()),
        },
    };
    match report.status {
        RunStatus::Failed => tracing::warn!(
            pipeline = %report.pipeline, run_id = %report.run_id,
            error = report.error.as_deref().unwrap_or_default(), "run failed; nothing committed"
        ),
        _ => tracing::info!(
            pipeline = %report.pipeline, run_id = %report.run_id, fetched = report.fetched,
            accepted = report.accepted, rejected = report.rejected,
            seconds = report.duration_seconds(), "run committed"
        ),
    }
    hub.record_run(&report);
    report
}

async fn run_inner(
    hub: &Hub,
    pipeline: &Arc<Pipeline>,
    run_id: &str,
    started_at: DateTime<Utc>,
) -> Result<Collected, RunError> {
    let mut state = hub.state.load(&pipeline.name)?;
    let connector = pipeline.source.build(&pipeline.build_context)?;
    let table = hub.table(&pipeline.name).await?;
    let mut writer = hub.store.begin_run(&pipeline.name, &table, &pipeline.key)?;
    drop(table);
    let stream = connector.read(state.checkpoint.clone());
    let collected = collect(hub, pipeline, stream, run_id, started_at, &mut writer).await?;
    let now_micros = Utc::now().timestamp_micros();
    if !collected.rejected.is_empty() {
        let batch = quarantine::to_batch(&pipeline.name, run_id, &collected.rejected, now_micros)
            .map_err(|e| RunError::Internal(format!("quarantine batch: {e}")))?;
        hub.append_quarantine(batch).await?;
    }
    let sequence = state.run_sequence + 1;
    let info = CommitInfo {
        pipeline: pipeline.name.clone(),
        run_id: run_id.to_string(),
        checkpoint: collected.checkpoint.clone(),
    };
    hub.commit_dataset(pipeline, writer, &info, sequence)
        .await?;
    state.run_sequence = sequence;
    if collected.checkpoint.is_some() {
        state.checkpoint = collected.checkpoint.clone();
    }
    state.last_success = Some(Utc::now());
    hub.state.save(&pipeline.name, &state)?;
    Ok(collected)
}

/// Reads the whole source, normalizing batches on blocking threads (two at a time, in order).
async fn collect(
    hub: &Hub,
    pipeline: &Arc<Pipeline>,
    stream: iochub_connectors::SourceStream,
    run_id: &str,
    started_at: DateTime<Utc>,
    writer: &mut RunWriter,
) -> Result<Collected, RunError> {
    let normalizer = Arc::new(Normalizer::new(
        pipeline.schema.clone(),
        pipeline.coerce.clone(),
        hub.time_zone(),
    ));
    let ingested_at = started_at.timestamp_micros();
    let run_id: Arc<str> = run_id.into();
    let mut checkpoint = None;
    let mut normalized = stream
        .map(|event| {
            let normalizer = normalizer.clone();
            let run_id = run_id.clone();
            async move {
                match event? {
                    SourceEvent::Batch(batch) => {
                        let out = tokio::task::spawn_blocking(move || {
                            normalizer.normalize(batch, &run_id, ingested_at)
                        })
                        .await
                        .map_err(|e| RunError::Internal(format!("normalize task: {e}")))?;
                        Ok::<_, RunError>((Some(out), None))
                    }
                    SourceEvent::Checkpoint(cp) => Ok((None, Some(cp))),
                }
            }
        })
        .buffered(2);
    let mut collected = Collected {
        fetched: 0,
        accepted: 0,
        rejected: Vec::new(),
        checkpoint: None,
    };
    while let Some(item) = normalized.next().await {
        let (out, cp) = item?;
        if let Some(Normalized {
            fetched,
            accepted,
            rejected,
        }) = out
        {
            collected.fetched += fetched;
            collected.rejected.extend(rejected);
            if let Some(batch) = accepted {
                collected.accepted += batch.num_rows();
                writer.write(batch).await.map_err(|source| {
                    crate::storage::StorageError::Delta {
                        table: pipeline.name.clone(),
                        source,
                    }
                })?;
            }
        }
        if cp.is_some() {
            checkpoint = cp;
        }
    }
    collected.checkpoint = checkpoint;
    Ok(collected)
}

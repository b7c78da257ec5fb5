//! Per-pipeline run state: the connector checkpoint and the run sequence.
//!
//! Kept as one small JSON file per pipeline under `<data_dir>/state/`, replaced atomically
//! (write to a temporary file, then rename). The checkpoint is also written into the metadata
//! of the Delta commit that carries the run's rows.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ingest::RunReport;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PipelineState {
    /// The connector's position after the last committed run.
    pub checkpoint: Option<serde_json::Value>,
    /// Increases by one for every committed run (the Delta `txn` version of the pipeline).
    pub run_sequence: i64,
    pub last_success: Option<DateTime<Utc>>,
    pub last_run: Option<RunReport>,
}

#[derive(Debug, thiserror::Error)]
#[error("run state of {pipeline} in {path}: {source}")]
pub struct StateError {
    pipeline: String,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn new(data_dir: &Path) -> Self {
        StateStore {
            dir: data_dir.join("state"),
        }
    }

    fn path(&self, pipeline: &str) -> PathBuf {
        self.dir.join(format!("{pipeline}.json"))
    }

    pub fn load(&self, pipeline: &str) -> Result<PipelineState, StateError> {
        let path = self.path(pipeline);
        let error = |source| StateError {
            pipeline: pipeline.to_string(),
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| error(e.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PipelineState::default()),
            Err(e) => Err(error(e)),
        }
    }

    pub fn save(&self, pipeline: &str, state: &PipelineState) -> Result<(), StateError> {
        let path = self.path(pipeline);
        let error = |source| StateError {
            pipeline: pipeline.to_string(),
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(error)?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| error(e.into()))?;
        std::fs::write(&tmp, bytes).map_err(error)?;
        std::fs::rename(&tmp, &path).map_err(error)
    }
}

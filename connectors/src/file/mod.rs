//! `file`: JSON lines, JSON documents and CSV files matched by a path or glob.
//!
//! A file is taken once: the checkpoint lists every file taken, with its size and modification
//! time, and a later run skips a file whose size and time are unchanged (a department that
//! replaces a file with corrected content gets it read again). A file still being written is not
//! read half-way: with `settle_seconds = N` a file is taken only once it has been unchanged for
//! N seconds; names starting with `.` or ending in `.tmp` / `.part` are never taken, so writers
//! that write to a temporary name and rename are safe at any setting.

mod formats;
mod ledger;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::record::{RawBatch, ReadContext, SourceEvent, SourceStream};
use crate::registry::BuildContext;
use crate::{Connector, ConnectorError};
use ledger::{FileStamp, Ledger};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// One JSON value per line (NDJSON).
    Jsonl,
    /// One JSON document; the records are the array at `records_at`.
    Json,
    /// Comma- (or `delimiter`-) separated values with a header row.
    Csv,
}

/// Unknown keys are not refused here but reported by the hub's config check (with their
/// line), which collects every one of them instead of stopping at the first.
#[derive(Debug, Clone, Deserialize)]
pub struct FileConfig {
    /// A path or glob, relative to the pipeline file's folder.
    pub path: String,
    pub format: FileFormat,
    /// `json` only: JSON pointer to the array of records ("" = the document is the array).
    #[serde(default)]
    pub records_at: String,
    /// `csv` only.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Take a file only when it has not changed for this many seconds.
    #[serde(default)]
    pub settle_seconds: u64,
    /// Records per batch handed to the hub.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_delimiter() -> char {
    ','
}
fn default_batch_size() -> usize {
    4096
}

impl FileConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = glob::Pattern::new(&self.path) {
            problems.push(format!("path {:?} is not a valid glob: {e}", self.path));
        }
        if !self.records_at.is_empty() && !self.records_at.starts_with('/') {
            problems.push(format!(
                "records_at {:?} must be a JSON pointer starting with '/' (or empty)",
                self.records_at
            ));
        }
        if self.format != FileFormat::Json && !self.records_at.is_empty() {
            problems.push("records_at applies only to format = \"json\"".into());
        }
        if !self.delimiter.is_ascii() {
            problems.push(format!(
                "delimiter {:?} must be one ASCII character",
                self.delimiter
            ));
        }
        if self.batch_size == 0 {
            problems.push("batch_size must be at least 1".into());
        }
        problems
    }

    pub fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Connector>, ConnectorError> {
        let problems = self.validate();
        if !problems.is_empty() {
            return Err(ConnectorError::Config(problems.join("; ")));
        }
        // The ledger remembers files by path: make it canonical, so the same file reached
        // through `pipelines/../samples` or an absolute config path is still the same file.
        let base = std::fs::canonicalize(&ctx.base_dir).unwrap_or_else(|_| ctx.base_dir.clone());
        let pattern = if Path::new(&self.path).is_absolute() {
            PathBuf::from(&self.path)
        } else {
            base.join(&self.path)
        };
        let pattern = normalize_path(&pattern);
        Ok(Box::new(FileConnector {
            pattern: pattern.to_string_lossy().into_owned(),
            config: self.clone(),
        }))
    }
}

struct FileConnector {
    pattern: String,
    config: FileConfig,
}

impl FileConnector {
    /// Files matching the pattern that are ready and not yet taken, in name order.
    fn pending_files(&self, ledger: &Ledger) -> Result<Vec<(PathBuf, FileStamp)>, ConnectorError> {
        let paths = glob::glob(&self.pattern)
            .map_err(|e| ConnectorError::Config(format!("path {:?}: {e}", self.pattern)))?;
        let settle = Duration::from_secs(self.config.settle_seconds);
        let now = SystemTime::now();
        let mut ready = Vec::new();
        for entry in paths {
            let path = match entry {
                Ok(p) => p,
                Err(e) => {
                    return Err(ConnectorError::Io {
                        path: e.path().to_path_buf(),
                        source: e.into(),
                    });
                }
            };
            if is_temporary_name(&path) {
                continue;
            }
            let meta = std::fs::metadata(&path).map_err(|source| ConnectorError::Io {
                path: path.clone(),
                source,
            })?;
            if !meta.is_file() {
                continue;
            }
            let stamp = FileStamp::of(&meta);
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if age < settle {
                tracing::debug!(path = %path.display(), "file not settled yet; taken next run");
                continue;
            }
            if ledger.is_taken(&path, &stamp) {
                continue;
            }
            ready.push((path, stamp));
        }
        ready.sort();
        Ok(ready)
    }
}

/// Removes `.` and `..` parts without touching the file system (the glob may not match yet).
fn normalize_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn is_temporary_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}

impl Connector for FileConnector {
    fn read(&self, context: ReadContext) -> SourceStream {
        let mut ledger = Ledger::from_checkpoint(context.checkpoint);
        let files = match self.pending_files(&ledger) {
            Ok(f) => f,
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        let config = self.config.clone();
        // Parsing is blocking work; it runs on a blocking thread and hands batches over a small
        // bounded channel, so at most a few batches are in memory at once.
        let (tx, rx) = mpsc::channel::<Result<SourceEvent, ConnectorError>>(2);
        tokio::task::spawn_blocking(move || {
            for (path, stamp) in files {
                let source: Arc<str> = path.to_string_lossy().into();
                let send = |records, bytes| {
                    tx.blocking_send(Ok(SourceEvent::Batch(RawBatch {
                        source: source.clone(),
                        records,
                        bytes,
                    })))
                    .is_ok()
                };
                if let Err(e) = formats::read_file(&path, &config, send) {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
                ledger.take(&path, stamp);
            }
            let _ = tx.blocking_send(Ok(SourceEvent::Checkpoint(ledger.to_checkpoint())));
        });
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }
}

//! What the file-drop connectors (`file`, `excel`) share: the folder or glob that departments
//! drop files into, the rules for when a file is ready, the ledger of files already taken, and
//! the blocking read loop that turns each ready file into batches.
//!
//! A file is taken once: the checkpoint lists every file taken, with its size and modification
//! time, and a later run skips a file whose size and time are unchanged (a department that
//! replaces a file with corrected content gets it read again). A file still being written is not
//! read half-way: with `settle_seconds = N` a file is taken only once it has been unchanged for
//! N seconds; names starting with `.` or `~$` (Excel's owner file of an open workbook) or ending
//! in `.tmp` / `.part` are never taken, so writers that write to a temporary name and rename are
//! safe at any setting.

pub mod ledger;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::ConnectorError;
use crate::record::{RawBatch, RawRecord, SourceEvent, SourceStream};
use crate::registry::BuildContext;
use ledger::{FileStamp, Ledger};

/// The files one connector watches: an absolute, normalized glob and a settle time.
#[derive(Debug, Clone)]
pub struct Inbox {
    pattern: String,
    settle: Duration,
}

impl Inbox {
    /// `path` is a path or glob from the settings, relative to the pipeline file's folder.
    pub fn new(ctx: &BuildContext, path: &str, settle_seconds: u64) -> Self {
        // The ledger remembers files by path: make it canonical, so the same file reached
        // through `pipelines/../samples` or an absolute config path is still the same file.
        let base = std::fs::canonicalize(&ctx.base_dir).unwrap_or_else(|_| ctx.base_dir.clone());
        let pattern = if Path::new(path).is_absolute() {
            PathBuf::from(path)
        } else {
            base.join(path)
        };
        let pattern = normalize_path(&pattern);
        Inbox {
            pattern: pattern.to_string_lossy().into_owned(),
            settle: Duration::from_secs(settle_seconds),
        }
    }

    /// Files matching the pattern that are ready and not yet taken, in name order.
    pub fn pending_files(
        &self,
        ledger: &Ledger,
    ) -> Result<Vec<(PathBuf, FileStamp)>, ConnectorError> {
        let paths = glob::glob(&self.pattern)
            .map_err(|e| ConnectorError::Config(format!("path {:?}: {e}", self.pattern)))?;
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
            if age < self.settle {
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

    /// One pass over the pending files: `read_file(path, send)` reads one file and hands its
    /// records to `send` in batches (`send` returns false once the run was abandoned). A file
    /// is marked taken only after it was read whole; the ledger is the final checkpoint. The
    /// first error fails the run, so nothing of it is committed and no file is marked taken.
    pub fn read<F>(&self, checkpoint: Option<serde_json::Value>, read_file: F) -> SourceStream
    where
        F: Fn(&Path, &mut dyn FnMut(Vec<RawRecord>, u64) -> bool) -> Result<(), ConnectorError>
            + Send
            + 'static,
    {
        let mut ledger = Ledger::from_checkpoint(checkpoint);
        let files = match self.pending_files(&ledger) {
            Ok(f) => f,
            Err(e) => return futures::stream::once(async move { Err(e) }).boxed(),
        };
        // Parsing is blocking work; it runs on a blocking thread and hands batches over a small
        // bounded channel, so at most a few batches are in memory at once.
        let (tx, rx) = mpsc::channel::<Result<SourceEvent, ConnectorError>>(2);
        tokio::task::spawn_blocking(move || {
            for (path, stamp) in files {
                let source: Arc<str> = path.to_string_lossy().into();
                let mut send = |records, bytes| {
                    tx.blocking_send(Ok(SourceEvent::Batch(RawBatch {
                        source: source.clone(),
                        records,
                        bytes,
                    })))
                    .is_ok()
                };
                if let Err(e) = read_file(&path, &mut send) {
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
    // `~$name.xlsx` is the owner file Excel leaves beside a workbook while it is open.
    name.starts_with('.')
        || name.starts_with("~$")
        || name.ends_with(".tmp")
        || name.ends_with(".part")
}

/// Collects records into batches of a fixed size and hands each full batch on.
pub struct Batcher<F> {
    batch: Vec<RawRecord>,
    bytes: u64,
    size: usize,
    send: F,
    open: bool,
}

impl<F: FnMut(Vec<RawRecord>, u64) -> bool> Batcher<F> {
    pub fn new(size: usize, send: F) -> Self {
        Batcher {
            batch: Vec::with_capacity(size),
            bytes: 0,
            size,
            send,
            open: true,
        }
    }

    /// Counts bytes read for the batch being filled.
    pub fn add_bytes(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    /// Returns false once the receiver is gone.
    pub fn push(&mut self, record: RawRecord) -> bool {
        self.batch.push(record);
        if self.batch.len() >= self.size {
            self.flush();
        }
        self.open
    }

    pub fn flush(&mut self) {
        if !self.batch.is_empty() && self.open {
            let full = std::mem::replace(&mut self.batch, Vec::with_capacity(self.size));
            let bytes = std::mem::take(&mut self.bytes);
            self.open = (self.send)(full, bytes);
        }
    }
}

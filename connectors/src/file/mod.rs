//! `file`: JSON lines, JSON documents and CSV files matched by a path or glob.
//!
//! Which files are taken, and when, is the shared inbox logic of [`crate::inbox`]: each file
//! once (again after it is replaced), never half-written, in name order.

mod formats;

use serde::Deserialize;

use crate::inbox::Inbox;
use crate::record::{ReadContext, SourceStream};
use crate::registry::BuildContext;
use crate::{Connector, ConnectorError};

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
        Ok(Box::new(FileConnector {
            inbox: Inbox::new(ctx, &self.path, self.settle_seconds),
            config: self.clone(),
        }))
    }
}

struct FileConnector {
    inbox: Inbox,
    config: FileConfig,
}

impl Connector for FileConnector {
    fn read(&self, context: ReadContext) -> SourceStream {
        let config = self.config.clone();
        self.inbox.read(context.checkpoint, move |path, send| {
            formats::read_file(path, &config, send)
        })
    }
}

//! The set of files a file-drop connector (`file`, `excel`) has taken, kept in its checkpoint.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileStamp {
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: u128,
}

impl FileStamp {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        FileStamp {
            size: meta.len(),
            modified_ns,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    taken: BTreeMap<String, FileStamp>,
}

impl Ledger {
    /// An unreadable checkpoint (from an older version, say) starts an empty ledger; the files
    /// are then read again, which keyed datasets absorb by upserting.
    pub fn from_checkpoint(checkpoint: Option<serde_json::Value>) -> Self {
        checkpoint
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    pub fn to_checkpoint(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    pub fn is_taken(&self, path: &Path, stamp: &FileStamp) -> bool {
        self.taken.get(path.to_string_lossy().as_ref()) == Some(stamp)
    }

    pub fn take(&mut self, path: &Path, stamp: FileStamp) {
        self.taken
            .insert(path.to_string_lossy().into_owned(), stamp);
    }
}

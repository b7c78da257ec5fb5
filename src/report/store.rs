//! Generated reports on disk: `<data_dir>/reports/<name>/<period>.json` (the document, with
//! its generation time) and `.html` next to it. Generating again replaces both; each file is
//! written to a temporary name and renamed, so a reader never sees half a report.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Period, ReportDocument, ReportError, to_html};

pub struct ReportStore {
    dir: PathBuf,
}

/// A stored generation, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct StoredReport {
    pub period: String,
    pub period_label: String,
    pub generated_at: DateTime<Utc>,
    pub complete: bool,
    pub revision: u32,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ReportStore {
    pub fn new(data_dir: &Path) -> Self {
        ReportStore {
            dir: data_dir.join("reports"),
        }
    }

    /// `name` is a checked identifier and `period` a parsed period, so neither can leave
    /// the folder.
    fn path(&self, name: &str, period: &Period, extension: &str) -> PathBuf {
        self.dir.join(name).join(format!("{period}.{extension}"))
    }

    pub fn save(&self, doc: &ReportDocument, period: &Period) -> Result<(), ReportError> {
        let folder = self.dir.join(&doc.name);
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let json = serde_json::to_vec_pretty(doc).map_err(|e| ReportError::Corrupt {
            path: folder.clone(),
            message: e.to_string(),
        })?;
        // The HTML first: the JSON is what listing and reading look for, so it lands last.
        write_atomically(
            &self.path(&doc.name, period, "html"),
            to_html(doc).as_bytes(),
        )?;
        write_atomically(&self.path(&doc.name, period, "json"), &json)
    }

    pub fn load(&self, name: &str, period: &Period) -> Result<Option<ReportDocument>, ReportError> {
        let path = self.path(name, period, "json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ReportError::Corrupt {
                path,
                message: e.to_string(),
            })
    }

    /// Every stored generation of `name`, in period order.
    pub fn list(&self, name: &str) -> Vec<StoredReport> {
        let Ok(entries) = std::fs::read_dir(self.dir.join(name)) else {
            return Vec::new();
        };
        let mut out: Vec<(Period, StoredReport)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let path = e.path();
                if path.extension()? != "json" {
                    return None;
                }
                let period = Period::parse(path.file_stem()?.to_str()?).ok()?;
                let doc = self.load(name, &period).ok()??;
                Some((
                    period,
                    StoredReport {
                        period: doc.period,
                        period_label: doc.period_label,
                        generated_at: doc.generated_at,
                        complete: doc.complete,
                        revision: doc.revision,
                    },
                ))
            })
            .collect();
        out.sort_by_key(|(p, _)| (p.start_date(), p.end_date()));
        out.into_iter().map(|(_, s)| s).collect()
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let temporary = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("part")
    ));
    std::fs::write(&temporary, bytes).map_err(io(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io(path))
}

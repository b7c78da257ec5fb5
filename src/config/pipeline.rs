//! `pipelines/<dataset>.toml`: one dataset, its source, schema, key and sharing.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct PipelineFile {
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub sector: String,
    pub schema: PathBuf,
    #[serde(default)]
    pub key: Vec<String>,
    pub sharing: Sharing,
    /// Consumer ids of the departments that publish this dataset (they push records in and
    /// see it unmasked, with its quarantine).
    #[serde(default)]
    pub publishers: Vec<String>,
    /// Cron (with seconds). Without one the dataset is pulled only on demand (`iochub run`,
    /// `POST /api/v1/pipelines/{name}/run`); a `push` dataset has none.
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub max_staleness: Option<String>,
    /// `kind` plus the connector's own settings, checked by the connector's config struct.
    pub source: toml::Table,
    #[serde(default)]
    pub coerce: Coercions,
    /// Incremental sync on a field: its largest committed value is remembered and handed to
    /// the connector, which asks the source only for newer records.
    #[serde(default)]
    pub cursor: Option<CursorConfig>,
    #[serde(default)]
    pub run_retry: RunRetry,
    /// SQL over each validated batch (the table `input`) before storage.
    #[serde(default)]
    pub transform: Option<String>,
    /// Rules across fields that JSON Schema cannot state; a record breaking one is quarantined.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Columns computed when the table is read (values that depend on the time of the
    /// query, such as whether an open report is overdue).
    #[serde(default)]
    pub computed: Vec<ComputedSpec>,
}

/// `[[computed]]`: an SQL expression over the stored columns, evaluated at each query.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ComputedSpec {
    pub name: String,
    pub sql: String,
    /// Vietnamese, shown in the catalog like a schema column's description.
    #[serde(default)]
    pub description: String,
}

/// A rule over one record's columns, as an SQL boolean expression (`a + b = c`). A record for
/// which it is false goes to quarantine with `message`; NULL passes (required-ness is the
/// schema's job).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub rule: String,
    /// What a clerk reads in the quarantine (Vietnamese).
    pub message: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CursorConfig {
    /// A top-level scalar property of the schema, e.g. `updated_datetime`.
    pub field: String,
}

/// A run that fails with a transient error (timeout, refused connection, 429, 5xx) is tried
/// again inside the same run, with exponential backoff and jitter, this many times in all.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RunRetry {
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    #[serde(default = "default_backoff")]
    pub initial_backoff_seconds: u64,
    #[serde(default = "default_max_backoff")]
    pub max_backoff_seconds: u64,
}

fn default_attempts() -> u32 {
    3
}
fn default_backoff() -> u64 {
    5
}
fn default_max_backoff() -> u64 {
    120
}

impl Default for RunRetry {
    fn default() -> Self {
        RunRetry {
            attempts: default_attempts(),
            initial_backoff_seconds: default_backoff(),
            max_backoff_seconds: default_max_backoff(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// Readable by every registered agency, personal data masked.
    Default,
    /// Visible only through approved special-request shares.
    Special,
}

impl Sharing {
    pub fn as_str(self) -> &'static str {
        match self {
            Sharing::Default => "default",
            Sharing::Special => "special",
        }
    }
}

/// Coercions a pipeline declares for real-world input, applied before validation.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Coercions {
    /// `"dd/mm/yyyy"`: also accept Vietnamese day-first dates (and `dd/mm/yyyy HH:MM[:SS]` for
    /// date-time fields, taken in the hub's local time).
    #[serde(default)]
    pub date_format: Option<DateFormat>,
    /// `"."` or `","`: thousands separator in numbers given as text.
    #[serde(default)]
    pub thousands_separator: Option<char>,
    /// Treat an empty string as null.
    #[serde(default)]
    pub empty_as_null: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum DateFormat {
    #[serde(rename = "dd/mm/yyyy")]
    DayMonthYear,
}

/// `"90s"`, `"15m"`, `"6h"`, `"2d"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (use ms, s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{text:?}: unit must be ms, s, m, h or d")),
    };
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("h").is_err());
    }
}

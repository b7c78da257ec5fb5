//! Periodic reports: definitions (`reports/*.toml`, loaded by `config`), the period
//! placeholders of their SQL, the generated document, and its renderings (HTML with inline
//! SVG charts, JSON, CSV, XLSX). Knows no hub, HTTP or storage engine: the hub runs each
//! section's query and hands the results here (`hub/reports.rs`).

mod chart;
mod html;
pub mod number;
mod period;
mod store;
pub(crate) mod tabular;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use html::to_html;
pub use period::{Period, PeriodError, PeriodKind};
pub use store::{ReportStore, StoredReport};
pub use tabular::{to_csv, to_xlsx};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("unknown placeholder {{{0}}} (known: {list})", list = PLACEHOLDERS.join(", "))]
    Placeholder(String),
    #[error("XLSX: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("report store: {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("stored report {path} is unreadable: {message}")]
    Corrupt {
        path: std::path::PathBuf,
        message: String,
    },
}

/// A checked report definition (`reports/<name>.toml`).
#[derive(Debug, Clone)]
pub struct ReportDef {
    pub file: std::path::PathBuf,
    pub name: String,
    pub title: String,
    pub description: Option<String>,
    pub schedule_text: Option<String>,
    pub schedule: Option<cron::Schedule>,
    /// Which periods a scheduled fire generates (each: the latest one ended).
    pub periods: Vec<PeriodKind>,
    /// The push dataset that receives complete generations (`publish_to`).
    pub publish_to: Option<String>,
    /// How long after its end a period's report is regenerated at each scheduled fire.
    pub revise_for: Option<std::time::Duration>,
    pub sections: Vec<SectionDef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    #[default]
    None,
    Bar,
    Hbar,
    Line,
    Pie,
}

/// How a column's values are shown in HTML and XLSX (JSON and CSV keep the raw value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnFormat {
    /// By type: integers `1.234`, decimals `1.234,5`, times in the hub's time zone.
    #[default]
    Auto,
    /// A ratio 0–1 shown as `92,5 %`.
    Percent,
    /// As text, whatever the type.
    Text,
}

/// `[sections.columns]`: `name = "Nhãn"` or `name = { label = "Nhãn", format = "percent" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ColumnSpec {
    Label(String),
    Full(ColumnSpecFull),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpecFull {
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub format: ColumnFormat,
}

impl ColumnSpec {
    fn label(&self) -> Option<&str> {
        match self {
            ColumnSpec::Label(l) => Some(l),
            ColumnSpec::Full(f) => f.label.as_deref(),
        }
    }

    fn format(&self) -> ColumnFormat {
        match self {
            ColumnSpec::Label(_) => ColumnFormat::Auto,
            ColumnSpec::Full(f) => f.format,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SectionDef {
    pub title: String,
    pub intro: Option<String>,
    pub sql: String,
    pub chart: ChartKind,
    /// The numeric columns drawn as series; empty: every numeric column after the first.
    pub chart_series: Vec<String>,
    pub columns: BTreeMap<String, ColumnSpec>,
}

/// The placeholders a section's SQL may use, replaced by literals made from the parsed period.
pub const PLACEHOLDERS: &[&str] = &[
    "period",
    "period_label",
    "period_start",
    "period_end",
    "date_start",
    "date_end",
    "month_start",
    "month_end",
    "previous_start",
    "previous_end",
    "previous_month_start",
    "previous_month_end",
];

/// Replaces every `{name}` placeholder by an SQL literal of `period`.
///
/// Why text substitution is safe here: every value comes from a parsed [`Period`] (digits,
/// `-`, `Q`, `H`) or from labels and timestamps the hub formats itself; no request text ever
/// reaches the SQL, and the SQL itself is the operator's own file. An unknown `{name}` is an
/// error rather than left in place, so a typo fails at `iochub check`.
pub fn substitute(sql: &str, period: &Period, tz: Tz) -> Result<String, ReportError> {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_len = after
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
            .count();
        if name_len > 0 && after.as_bytes().get(name_len) == Some(&b'}') {
            let name = &after[..name_len];
            out.push_str(&literal(name, period, tz)?);
            rest = &after[name_len + 1..];
        } else {
            // Not a placeholder (JSON text in a string literal, say): keep the brace.
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn literal(name: &str, period: &Period, tz: Tz) -> Result<String, ReportError> {
    let timestamp = |t: DateTime<Utc>| {
        format!(
            "TIMESTAMP '{}'",
            t.with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S%:z")
        )
    };
    let month = |(y, m): (i32, u32)| format!("'{y:04}-{m:02}'");
    let previous = period.previous();
    Ok(match name {
        "period" => format!("'{period}'"),
        // Labels are made by the hub from numbers; a quote cannot occur, doubled anyway.
        "period_label" => format!("'{}'", period.label().replace('\'', "''")),
        "period_start" => timestamp(period.bounds(tz).0),
        "period_end" => timestamp(period.bounds(tz).1),
        "date_start" => format!("DATE '{}'", period.start_date()),
        "date_end" => format!("DATE '{}'", period.end_date()),
        "month_start" => month(period.first_month()),
        "month_end" => month(period.end_month()),
        "previous_start" => timestamp(previous.bounds(tz).0),
        "previous_end" => timestamp(previous.bounds(tz).1),
        "previous_month_start" => month(previous.first_month()),
        "previous_month_end" => month(previous.end_month()),
        other => return Err(ReportError::Placeholder(other.to_string())),
    })
}

/// The fields of the record a complete generation is published as (`publish_to`).
pub const PUBLISHED_FIELDS: &[&str] = &[
    "report",
    "period",
    "period_label",
    "title",
    "organisation",
    "first_day",
    "last_day",
    "generated_at",
    "revision",
    "document",
];

/// A generated report: what every format is rendered from, and what is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportDocument {
    pub name: String,
    pub title: String,
    pub description: Option<String>,
    /// Who reports: the hub's name (`hub.name`).
    pub organisation: String,
    pub period: String,
    pub period_label: String,
    /// Local dates: the first day and the last day of the period.
    pub first_day: chrono::NaiveDate,
    pub last_day: chrono::NaiveDate,
    pub generated_at: DateTime<Utc>,
    /// The period had ended when this was generated (else the figures are provisional).
    pub complete: bool,
    /// 0 for the first complete generation; each later generation whose figures differ
    /// (data that arrived after the period ended) is the next revision.
    #[serde(default)]
    pub revision: u32,
    /// The hub's time zone name, for showing times.
    pub time_zone: String,
    pub sections: Vec<SectionResult>,
}

impl ReportDocument {
    /// Whether `other` says the same as this one: everything but when it was generated and
    /// its revision number.
    pub fn same_content(&self, other: &ReportDocument) -> bool {
        let strip = |d: &ReportDocument| ReportDocument {
            generated_at: DateTime::<Utc>::UNIX_EPOCH,
            revision: 0,
            ..d.clone()
        };
        strip(self) == strip(other)
    }

    /// The record this generation is published as ([`PUBLISHED_FIELDS`]); the whole
    /// document goes in `document`, so a receiver can render it in any format.
    pub fn published_record(&self) -> Value {
        serde_json::json!({
            "report": self.name,
            "period": self.period,
            "period_label": self.period_label,
            "title": self.title,
            "organisation": self.organisation,
            "first_day": self.first_day.to_string(),
            "last_day": self.last_day.to_string(),
            "generated_at": self.generated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "revision": self.revision,
            "document": self,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionResult {
    pub title: String,
    pub intro: Option<String>,
    pub chart: ChartKind,
    pub chart_series: Vec<String>,
    pub columns: Vec<ColumnResult>,
    /// Raw values as the SQL JSON answer gives them (numbers, strings, null).
    pub rows: Vec<Vec<Value>>,
    /// More rows than `query.max_rows`: only the first ones are here.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnResult {
    pub name: String,
    /// The Vietnamese header (`[sections.columns]`), or the column name.
    pub label: String,
    /// `integer`, `number`, `string`, `timestamp with time zone`, ...
    #[serde(rename = "type")]
    pub type_name: String,
    pub format: ColumnFormat,
}

impl ColumnResult {
    pub fn is_numeric(&self) -> bool {
        matches!(self.type_name.as_str(), "integer" | "number" | "decimal")
    }
}

impl SectionDef {
    /// The section's result from the query's JSON answer (`query::to_json`).
    pub fn result(&self, answer: &Value) -> SectionResult {
        let columns = answer["columns"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        let name = c["name"].as_str().unwrap_or_default().to_string();
                        let spec = self.columns.get(&name);
                        ColumnResult {
                            label: spec
                                .and_then(ColumnSpec::label)
                                .map_or_else(|| name.clone(), str::to_string),
                            format: spec.map(ColumnSpec::format).unwrap_or_default(),
                            type_name: c["type"].as_str().unwrap_or_default().to_string(),
                            name,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let rows = answer["rows"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| r.as_array().cloned().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        SectionResult {
            title: self.title.clone(),
            intro: self.intro.clone(),
            chart: self.chart,
            chart_series: self.chart_series.clone(),
            columns,
            rows,
            truncated: answer["truncated"].as_bool().unwrap_or(false),
        }
    }
}

/// The formats a report is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
    Csv,
    Xlsx,
}

impl Format {
    pub fn parse(text: &str) -> Option<Format> {
        Some(match text.to_ascii_lowercase().as_str() {
            "html" | "htm" => Format::Html,
            "json" => Format::Json,
            "csv" => Format::Csv,
            "xlsx" => Format::Xlsx,
            _ => return None,
        })
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }

    /// The format an `Accept` header asks for, if it names one of ours.
    pub fn from_accept(accept: &str) -> Option<Format> {
        let accept = accept.to_ascii_lowercase();
        if accept.contains("spreadsheetml") {
            Some(Format::Xlsx)
        } else if accept.contains("text/csv") {
            Some(Format::Csv)
        } else if accept.contains("application/json") {
            Some(Format::Json)
        } else if accept.contains("text/html") {
            Some(Format::Html)
        } else {
            None
        }
    }
}

/// Renders `doc` in `format`.
pub fn render(doc: &ReportDocument, format: Format) -> Result<Vec<u8>, ReportError> {
    Ok(match format {
        Format::Html => to_html(doc).into_bytes(),
        Format::Json => serde_json::to_vec_pretty(doc).map_err(|e| ReportError::Corrupt {
            path: doc.name.clone().into(),
            message: e.to_string(),
        })?,
        Format::Csv => to_csv(doc)?,
        Format::Xlsx => to_xlsx(doc)?,
    })
}

/// The hub's time zone of a document (UTC if the stored name is unknown).
fn time_zone(doc: &ReportDocument) -> Tz {
    doc.time_zone.parse().unwrap_or(Tz::UTC)
}

/// A cell as a reader sees it: Vietnamese numbers, percentages, local times.
fn display(value: &Value, column: &ColumnResult, tz: Tz) -> String {
    match (value, column.format) {
        (Value::Null, _) => String::new(),
        (Value::Number(n), ColumnFormat::Percent) => {
            n.as_f64().map_or_else(|| n.to_string(), number::percent)
        }
        (Value::Number(n), ColumnFormat::Auto) => match n.as_i64() {
            Some(i) => number::integer(i),
            None => n
                .as_f64()
                .map_or_else(|| n.to_string(), |f| number::decimal(f, 1)),
        },
        (Value::String(s), ColumnFormat::Auto) if column.type_name.starts_with("timestamp") => {
            local_time(s, tz).unwrap_or_else(|| s.clone())
        }
        (Value::String(s), _) => s.clone(),
        (other, _) => other.to_string(),
    }
}

/// An RFC 3339 time (`2025-04-03T02:15:07.120Z`) as `03/04/2025 09:15` in `tz`.
fn local_time(text: &str, tz: Tz) -> Option<String> {
    let t = DateTime::parse_from_rfc3339(text).ok()?;
    Some(t.with_timezone(&tz).format("%d/%m/%Y %H:%M").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_literals_of_the_period_in_the_hub_time_zone() {
        let q1 = Period::parse("2025-Q1").unwrap();
        let tz = chrono_tz::Asia::Ho_Chi_Minh;
        let sql = "SELECT {period} AS p, {period_label} AS l, '{\"a\": 1}' AS j FROM t \
                   WHERE at >= {period_start} AND at < {period_end} \
                   AND month >= {month_start} AND month < {month_end} AND d < {date_end} \
                   AND pm = {previous_month_start}";
        let out = substitute(sql, &q1, tz).unwrap();
        assert_eq!(
            out,
            "SELECT '2025-Q1' AS p, 'Quý I năm 2025' AS l, '{\"a\": 1}' AS j FROM t \
             WHERE at >= TIMESTAMP '2025-01-01T00:00:00+07:00' AND at < TIMESTAMP '2025-04-01T00:00:00+07:00' \
             AND month >= '2025-01' AND month < '2025-04' AND d < DATE '2025-04-01' \
             AND pm = '2024-10'"
        );
        let e = substitute("SELECT {perod_start}", &q1, tz).unwrap_err();
        assert!(e.to_string().contains("{perod_start}"), "{e}");
    }
}

//! Sharing (Decree 47/2020 terms): who may see what, and the catalog each consumer queries.
//!
//! `visibility` is the one answer to "what may consumer C see" (datasets, columns and how
//! they are masked, special shares, quarantine, audit). Every interface builds on it: SQL
//! over HTTP and the catalog call `catalog::consumer_context`, which holds only views built
//! from that answer; later the feed and the PostgreSQL endpoint do the same.
//!
//! Rules: a `default` dataset is readable by every registered consumer with its personal
//! data (`x-pii`) masked; the publishers of a dataset see it unmasked (it is their data); a
//! `special` dataset is invisible except to its publishers and through approved shares; an
//! approved share shows exactly its columns and rows, unmasked (the grant covers them), until
//! its end date. Quarantine: admins all, publishers their datasets'. Audit: admins.

pub mod catalog;
pub mod consumers;
pub mod masks;
pub mod rate_limit;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

pub use consumers::{Consumer, ConsumerConfig, Consumers, FocalOfficer, GeneratedToken, Role};

use crate::config::{Pipeline, Sharing};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mask {
    Phone,
    Initials,
    Hide,
    RoundCoordinates,
}

impl Mask {
    /// The schema's `x-mask`; personal data without one is hidden.
    pub fn parse(text: Option<&str>) -> Mask {
        match text {
            Some("phone") => Mask::Phone,
            Some("initials") => Mask::Initials,
            Some("round-coordinates") => Mask::RoundCoordinates,
            _ => Mask::Hide,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnView {
    Clear,
    Masked(Mask),
}

#[derive(Debug, Clone)]
pub struct DatasetView {
    pub dataset: String,
    pub columns: Vec<(String, ColumnView)>,
}

/// An approved special-request share (from a request, or pre-approved in `grants/*.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    /// The view is `share.<name>`.
    pub name: String,
    pub consumer: String,
    pub purpose: String,
    pub legal_basis: String,
    /// Either a dataset with optional columns and row filter...
    pub dataset: Option<String>,
    pub columns: Option<Vec<String>>,
    pub row_filter: Option<String>,
    /// ...or one SQL SELECT over datasets.
    pub sql: Option<String>,
    /// The last day the share works.
    pub end_date: NaiveDate,
}

impl Grant {
    pub fn active_on(&self, day: NaiveDate) -> bool {
        day <= self.end_date
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuarantineScope {
    None,
    All,
    Datasets(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Visibility {
    pub consumer: String,
    pub role: Role,
    pub datasets: Vec<DatasetView>,
    pub shares: Vec<Grant>,
    pub quarantine: QuarantineScope,
    pub audit: bool,
}

impl Visibility {
    pub fn dataset(&self, name: &str) -> Option<&DatasetView> {
        self.datasets.iter().find(|d| d.dataset == name)
    }

    pub fn may_read_quarantine_of(&self, dataset: &str) -> bool {
        match &self.quarantine {
            QuarantineScope::All => true,
            QuarantineScope::Datasets(ds) => ds.iter().any(|d| d == dataset),
            QuarantineScope::None => false,
        }
    }
}

/// What `consumer` may see today, given the pipelines and the approved grants.
pub fn visibility(
    consumer: &Consumer,
    pipelines: &[std::sync::Arc<Pipeline>],
    grants: &[Grant],
    today: NaiveDate,
) -> Visibility {
    let mut datasets = Vec::new();
    let mut own = Vec::new();
    for p in pipelines {
        let publisher = p.publishers.contains(&consumer.id);
        if publisher {
            own.push(p.name.clone());
        }
        if p.sharing == Sharing::Special && !publisher {
            continue;
        }
        // The stored columns (a transform may rename, add or drop); personal data is known
        // by the schema's `x-pii` on a column of the same name.
        let columns = p
            .query_schema
            .fields()
            .iter()
            .map(|f| {
                let view = match p.schema.column(f.name()) {
                    Some(c) if c.pii && !publisher => {
                        ColumnView::Masked(Mask::parse(c.mask.as_deref()))
                    }
                    _ => ColumnView::Clear,
                };
                (f.name().clone(), view)
            })
            .collect();
        datasets.push(DatasetView {
            dataset: p.name.clone(),
            columns,
        });
    }
    let quarantine = match consumer.role {
        Role::Admin => QuarantineScope::All,
        _ if !own.is_empty() => QuarantineScope::Datasets(own),
        _ => QuarantineScope::None,
    };
    Visibility {
        consumer: consumer.id.clone(),
        role: consumer.role,
        datasets,
        shares: grants
            .iter()
            .filter(|g| g.consumer == consumer.id && g.active_on(today))
            .cloned()
            .collect(),
        quarantine,
        audit: consumer.role == Role::Admin,
    }
}

/// A share as asked for (HTTP body of `POST /api/v1/share-requests`, or a `grants/*.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The view's name: `share.<name>`.
    pub name: String,
    pub purpose: String,
    pub legal_basis: String,
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    #[serde(default)]
    pub row_filter: Option<String>,
    #[serde(default)]
    pub sql: Option<String>,
    /// `YYYY-MM-DD`, the last day the share works.
    pub end_date: String,
}

/// What is wrong with a request, and in which field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestProblem {
    pub field: &'static str,
    pub message: String,
}

fn problem(field: &'static str, message: impl Into<String>) -> RequestProblem {
    RequestProblem {
        field,
        message: message.into(),
    }
}

impl GrantRequest {
    /// The checks that need no data: names, the dataset and its columns, the end date.
    /// (Row filters and SQL are compiled against the tables when filed and when used.)
    pub fn check(
        &self,
        pipelines: &[std::sync::Arc<Pipeline>],
    ) -> Result<(NaiveDate, ()), RequestProblem> {
        let mut chars = self.name.chars();
        let identifier = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !identifier {
            return Err(problem(
                "name",
                "name must be an SQL identifier: lower-case letters, digits, '_'",
            ));
        }
        if self.purpose.trim().is_empty() {
            return Err(problem(
                "purpose",
                "state the purpose the data is needed for",
            ));
        }
        if self.legal_basis.trim().is_empty() {
            return Err(problem(
                "legal_basis",
                "state the legal basis (e.g. the decision that assigns the task)",
            ));
        }
        let end_date = NaiveDate::parse_from_str(&self.end_date, "%Y-%m-%d").map_err(|_| {
            problem(
                "end_date",
                format!("end_date {:?} is not a date YYYY-MM-DD", self.end_date),
            )
        })?;
        match (&self.dataset, &self.sql) {
            (Some(dataset), None) => {
                let Some(p) = pipelines.iter().find(|p| p.name == *dataset) else {
                    return Err(problem("dataset", format!("no dataset named {dataset:?}")));
                };
                for c in self.columns.iter().flatten() {
                    if p.schema.column(c).is_none() {
                        return Err(problem(
                            "columns",
                            format!("dataset {dataset:?} has no column {c:?}"),
                        ));
                    }
                }
            }
            (None, Some(sql)) => {
                if self.columns.is_some() || self.row_filter.is_some() {
                    return Err(problem(
                        "sql",
                        "with sql, give no columns or row_filter (put them in the query)",
                    ));
                }
                if sql.trim().is_empty() {
                    return Err(problem("sql", "sql is empty"));
                }
            }
            _ => {
                return Err(problem(
                    "dataset",
                    "give either a dataset (with optional columns and row_filter) or an sql SELECT",
                ));
            }
        }
        Ok((end_date, ()))
    }

    pub fn into_grant(self, id: String, consumer: String, end_date: NaiveDate) -> Grant {
        Grant {
            id,
            name: self.name,
            consumer,
            purpose: self.purpose,
            legal_basis: self.legal_basis,
            dataset: self.dataset,
            columns: self.columns,
            row_filter: self.row_filter,
            sql: self.sql,
            end_date,
        }
    }
}

/// The local operator of the command line (`iochub sql`): already holds the data files, so
/// sees everything unmasked, with quarantine and audit.
pub fn operator_visibility(pipelines: &[std::sync::Arc<Pipeline>]) -> Visibility {
    Visibility {
        consumer: "local-operator".into(),
        role: Role::Admin,
        datasets: pipelines
            .iter()
            .map(|p| DatasetView {
                dataset: p.name.clone(),
                columns: p
                    .query_schema
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), ColumnView::Clear))
                    .collect(),
            })
            .collect(),
        shares: Vec::new(),
        quarantine: QuarantineScope::All,
        audit: true,
    }
}

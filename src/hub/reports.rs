//! Generating periodic reports: each section's SQL, with the period's placeholders replaced,
//! runs through `Hub::sql` (the operator's view: reports are the IOC's own), and the
//! document is stored under `<data_dir>/reports/` (see `report::ReportStore`).

use std::sync::Arc;

use serde::Serialize;

use super::{Hub, HubError};
use crate::report::{Period, ReportDef, ReportDocument, ReportStore, StoredReport};

/// A report as listed: its definition and its stored generations.
#[derive(Debug, Serialize)]
pub struct ReportListing {
    pub name: String,
    pub title: String,
    pub description: Option<String>,
    pub schedule: Option<String>,
    pub stored: Vec<StoredReport>,
}

impl Hub {
    fn report_store(&self) -> ReportStore {
        ReportStore::new(&self.config.data_dir)
    }

    pub fn report_def(&self, name: &str) -> Result<&Arc<ReportDef>, HubError> {
        self.config
            .report(name)
            .ok_or_else(|| HubError::NotFound(format!("no report named {name:?}")))
    }

    /// Parses a period as typed by a person or a URL: a bad one is the caller's mistake.
    pub fn parse_period(text: &str) -> Result<Period, HubError> {
        Period::parse(text).map_err(|e| HubError::BadRequest {
            field: "period".into(),
            message: e.to_string(),
        })
    }

    pub fn report_listings(&self) -> Vec<ReportListing> {
        let store = self.report_store();
        self.config
            .reports
            .iter()
            .map(|r| ReportListing {
                name: r.name.clone(),
                title: r.title.clone(),
                description: r.description.clone(),
                schedule: r.schedule_text.clone(),
                stored: store.list(&r.name),
            })
            .collect()
    }

    /// Generates the report for `period` now, stores it (replacing an earlier generation)
    /// and returns it.
    pub async fn generate_report(
        &self,
        name: &str,
        period: &Period,
    ) -> Result<ReportDocument, HubError> {
        let def = self.report_def(name)?.clone();
        let tz = self.config.time_zone;
        let now = self.clock.now();
        let mut sections = Vec::with_capacity(def.sections.len());
        for section in &def.sections {
            let sql = crate::report::substitute(&section.sql, period, tz)?;
            let result = self.sql(&sql).await?;
            let answer = crate::query::to_json(&result)
                .map_err(|e| HubError::Query(crate::query::QueryError::Internal(e.to_string())))?;
            sections.push(section.result(&answer));
        }
        let doc = ReportDocument {
            name: def.name.clone(),
            title: def.title.clone(),
            description: def.description.clone(),
            organisation: self.config.file.hub.name.clone(),
            period: period.to_string(),
            period_label: period.label(),
            first_day: period.start_date(),
            last_day: period.end_date().pred_opt().unwrap_or(period.end_date()),
            generated_at: now,
            complete: period.has_ended(now, tz),
            time_zone: tz.name().to_string(),
            sections,
        };
        self.report_store().save(&doc, period)?;
        tracing::info!(report = name, period = %period, complete = doc.complete, "report generated");
        Ok(doc)
    }

    /// The stored generation of a period that has ended, else a new one (a period still
    /// running is generated afresh each time: its figures keep changing).
    pub async fn report(
        &self,
        name: &str,
        period: &Period,
        regenerate: bool,
    ) -> Result<ReportDocument, HubError> {
        self.report_def(name)?;
        if !regenerate
            && let Some(doc) = self.report_store().load(name, period)?
            && doc.complete
        {
            return Ok(doc);
        }
        self.generate_report(name, period).await
    }

    /// For a report's schedule: generates, for each of its period kinds, the latest period
    /// that has ended, unless a complete generation of it is stored already. Returns the
    /// periods generated.
    pub async fn generate_ended_reports(&self, name: &str) -> Result<Vec<Period>, HubError> {
        let def = self.report_def(name)?.clone();
        let now = self.clock.now();
        let mut generated = Vec::new();
        for kind in &def.periods {
            let period = Period::latest_ended(*kind, now, self.config.time_zone);
            let stored = self.report_store().load(name, &period)?;
            if stored.is_some_and(|d| d.complete) {
                continue;
            }
            self.generate_report(name, &period).await?;
            generated.push(period);
        }
        Ok(generated)
    }
}

//! Generating periodic reports: each section's SQL, with the period's placeholders replaced,
//! runs through `Hub::sql` (the operator's view: reports are the IOC's own), and the
//! document is stored under `<data_dir>/reports/` (see `report::ReportStore`).

use std::sync::Arc;

use iochub_connectors::{Payload, RawRecord};
use serde::Serialize;
use serde_json::json;

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

    /// Generates the report for `period` now and stores it, replacing an earlier generation,
    /// and returns what is stored. A complete generation is published (`publish_to`) when it is
    /// the first complete one, or when its figures differ from the stored complete one (the
    /// next revision); one that says the same as the stored one changes nothing.
    pub async fn generate_report(
        &self,
        name: &str,
        period: &Period,
    ) -> Result<ReportDocument, HubError> {
        let def = self.report_def(name)?.clone();
        let mut doc = self.compute_report(&def, period).await?;
        let stored = self.report_store().load(name, period)?;
        if let Some(previous) = stored.filter(|p| p.complete && doc.complete) {
            if previous.same_content(&doc) {
                return Ok(previous);
            }
            doc.revision = previous.revision + 1;
        }
        // Published before it is stored: if publishing fails, nothing is stored either, so
        // the next fire or request tries both again (a failure after publishing only sends
        // the same record twice, which the key absorbs).
        if doc.complete
            && let Some(dataset) = &def.publish_to
        {
            self.publish_report(dataset, &doc).await?;
        }
        self.report_store().save(&doc, period)?;
        tracing::info!(report = name, period = %period, complete = doc.complete, revision = doc.revision, "report generated");
        Ok(doc)
    }

    /// Runs each section's SQL for `period` (the operator's view).
    async fn compute_report(
        &self,
        def: &ReportDef,
        period: &Period,
    ) -> Result<ReportDocument, HubError> {
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
        Ok(ReportDocument {
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
            revision: 0,
            time_zone: tz.name().to_string(),
            sections,
        })
    }

    /// Stores `doc` as a record of the push dataset `dataset`, so the change feed delivers
    /// it. The record is the hub's own: a reject means the dataset's schema does not fit
    /// the report record, which is an error, not a quarantine matter.
    async fn publish_report(&self, dataset: &str, doc: &ReportDocument) -> Result<(), HubError> {
        let pipeline = self.pipeline(dataset)?.clone();
        let record = RawRecord {
            location: format!("{}/{}", doc.name, doc.period),
            payload: Payload::Json(doc.published_record()),
        };
        let publish_id = format!("report-{}-{}-r{}", doc.name, doc.period, doc.revision);
        let source: Arc<str> = format!("report:{}", doc.name).into();
        let outcome = self
            .publish_records(&pipeline, vec![record], &publish_id, source, 0)
            .await?;
        if let Some(rejected) = outcome.rejected.first() {
            let reasons: Vec<String> = rejected
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.pointer, e.message))
                .collect();
            return Err(HubError::BadRequest {
                field: "publish_to".into(),
                message: format!(
                    "report {} {} does not fit dataset {dataset:?}: {}",
                    doc.name,
                    doc.period,
                    reasons.join("; ")
                ),
            });
        }
        self.audit(
            None,
            "report_published",
            Some(dataset),
            json!({"report": doc.name, "period": doc.period, "revision": doc.revision}),
            "ok",
        );
        Ok(())
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
    /// that has ended, unless a complete generation of it is stored already; and generates
    /// again each stored complete period that ended less than `revise_for` ago, so data sent
    /// late makes a revision. Returns the periods whose stored report is new or revised.
    pub async fn generate_ended_reports(&self, name: &str) -> Result<Vec<Period>, HubError> {
        let def = self.report_def(name)?.clone();
        let now = self.clock.now();
        let tz = self.config.time_zone;
        let mut changed = Vec::new();
        for kind in &def.periods {
            let period = Period::latest_ended(*kind, now, tz);
            let stored = self.report_store().load(name, &period)?;
            if stored.is_some_and(|d| d.complete) {
                continue;
            }
            self.generate_report(name, &period).await?;
            changed.push(period);
        }
        if let Some(window) = def.revise_for {
            for listing in self.report_store().list(name) {
                let Ok(period) = Period::parse(&listing.period) else {
                    continue;
                };
                let (_, ended) = period.bounds(tz);
                let recent = ended <= now && (now - ended).to_std().is_ok_and(|age| age < window);
                if !listing.complete || !recent || changed.contains(&period) {
                    continue;
                }
                let after = self.generate_report(name, &period).await?;
                if after.revision != listing.revision {
                    changed.push(period);
                }
            }
        }
        Ok(changed)
    }
}

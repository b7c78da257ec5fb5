//! Departments push records in: `POST /api/v1/datasets/{name}/records`.
//!
//! The body is validated exactly as pulled data is (same normalizer), the accepted records are
//! stored in one commit (upsert by key, so re-sending is idempotent), and every rejected record
//! goes to the quarantine as well as back to the sender with its index and reasons.

use std::sync::Arc;

use chrono::Utc;
use iochub_connectors::{Payload, RawBatch, RawRecord};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Hub, HubError};
use crate::normalize::{FieldError, Normalizer};
use crate::sharing::Consumer;
use crate::storage::{CommitInfo, quarantine};

#[derive(Debug, Serialize)]
pub struct PublishRejection {
    /// Position of the record in the body (0-based; for CSV, the data row, header excluded).
    pub index: usize,
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Serialize)]
pub struct PublishReport {
    pub accepted: usize,
    pub rejected: Vec<PublishRejection>,
}

fn bad(message: impl Into<String>) -> HubError {
    HubError::BadRequest {
        field: "body".into(),
        message: message.into(),
    }
}

fn record(index: usize, payload: Payload) -> RawRecord {
    RawRecord {
        location: format!("#{index}"),
        payload,
    }
}

/// The records of a body, by its content type.
fn parse_body(content_type: &str, body: &[u8]) -> Result<Vec<RawRecord>, HubError> {
    let body = body
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(body);
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" => {
            let value: Value = serde_json::from_slice(body)
                .map_err(|e| bad(format!("the body is not valid JSON: {e}")))?;
            let Value::Array(items) = value else {
                return Err(bad("a JSON body must be an array of records"));
            };
            Ok(items
                .into_iter()
                .enumerate()
                .map(|(i, v)| record(i, Payload::Json(v)))
                .collect())
        }
        "application/x-ndjson" | "application/jsonl" | "application/ndjson" => Ok(body
            .split(|b| *b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .enumerate()
            .map(|(i, line)| match serde_json::from_slice::<Value>(line) {
                Ok(v) => record(i, Payload::Json(v)),
                Err(e) => record(
                    i,
                    Payload::Unreadable {
                        raw: String::from_utf8_lossy(line).into_owned(),
                        error: format!("not valid JSON: {e}"),
                    },
                ),
            })
            .collect()),
        "text/csv" => {
            let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(body);
            let headers: Vec<String> = reader
                .headers()
                .map_err(|e| bad(format!("the CSV header row cannot be read: {e}")))?
                .iter()
                .map(|h| h.trim().to_string())
                .collect();
            let mut out = Vec::new();
            for (i, row) in reader.records().enumerate() {
                let payload = match row {
                    Err(e) => Payload::Unreadable {
                        raw: String::new(),
                        error: format!("row cannot be read: {e}"),
                    },
                    Ok(row) if row.len() != headers.len() => Payload::Unreadable {
                        raw: row.iter().collect::<Vec<_>>().join(","),
                        error: format!(
                            "row has {} fields, the header has {}",
                            row.len(),
                            headers.len()
                        ),
                    },
                    Ok(row) => {
                        let mut fields = Map::new();
                        for (name, cell) in headers.iter().zip(row.iter()) {
                            if !cell.is_empty() {
                                fields.insert(name.clone(), Value::String(cell.to_string()));
                            }
                        }
                        Payload::Text(fields)
                    }
                };
                out.push(record(i, payload));
            }
            Ok(out)
        }
        other => Err(HubError::UnsupportedMediaType(format!(
            "content type {other:?} is not accepted: send application/json (an array), application/x-ndjson or text/csv"
        ))),
    }
}

impl Hub {
    /// The pipeline of dataset `name` if `consumer` publishes it; a dataset it may not see
    /// answers like one that does not exist.
    pub(crate) fn published_by(
        &self,
        consumer: &Consumer,
        name: &str,
    ) -> Result<Arc<crate::config::Pipeline>, HubError> {
        let visibility = self.visibility_of(consumer)?;
        let pipeline = match self.pipeline(name) {
            Ok(p) if visibility.dataset(name).is_some() => p.clone(),
            _ => return Err(HubError::NotFound(format!("no dataset named {name:?}"))),
        };
        if !pipeline.publishers.contains(&consumer.id) {
            return Err(HubError::Forbidden(format!(
                "{} is not a publisher of {name:?}",
                consumer.id
            )));
        }
        Ok(pipeline)
    }

    pub async fn publish(
        &self,
        consumer: &Consumer,
        name: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<PublishReport, HubError> {
        let pipeline = self.published_by(consumer, name)?;
        let records = parse_body(content_type, body)?;
        let publish_id = format!("publish-{}", uuid::Uuid::new_v4());
        let source: Arc<str> = format!("publish:{}", consumer.id).into();
        let report = self
            .publish_records(&pipeline, records, &publish_id, source, body.len() as u64)
            .await?;
        self.audit(
            Some(&consumer.id),
            "publish",
            Some(&pipeline.name),
            json!({"publish_id": publish_id, "accepted": report.accepted, "rejected": report.rejected.len(), "bytes": body.len()}),
            "ok",
        );
        Ok(report)
    }

    /// Validates `records` as pulled data is, quarantines the rejects and commits the
    /// accepted ones (one commit; upsert by key). Who sent them is the caller's business.
    pub(crate) async fn publish_records(
        &self,
        pipeline: &Arc<crate::config::Pipeline>,
        records: Vec<RawRecord>,
        publish_id: &str,
        source: Arc<str>,
        bytes: u64,
    ) -> Result<PublishReport, HubError> {
        let batch = RawBatch {
            source: source.clone(),
            records,
            bytes,
        };
        let mut normalizer = Normalizer::new(
            pipeline.schema.clone(),
            pipeline.coerce.clone(),
            self.time_zone(),
        );
        normalizer.keep_raw = !pipeline.checks.is_empty();
        let normalizer = Arc::new(normalizer);
        let run_id = publish_id.to_string();
        let now = Utc::now().timestamp_micros();
        let mut normalized =
            tokio::task::spawn_blocking(move || normalizer.normalize(batch, &run_id, now))
                .await
                .map_err(|e| {
                    HubError::Query(crate::query::QueryError::Internal(format!(
                        "validation stopped: {e}"
                    )))
                })?;
        crate::ingest::finish_normalized(self, pipeline, &mut normalized, now, publish_id, &source)
            .await
            .map_err(|e| HubError::BadRequest {
                field: "transform".into(),
                message: e,
            })?;
        if !normalized.rejected.is_empty() {
            let batch = quarantine::to_batch(&pipeline.name, publish_id, &normalized.rejected, now)
                .map_err(|e| {
                    HubError::Storage(crate::storage::StorageError::Other {
                        table: quarantine::TABLE.into(),
                        message: e.to_string(),
                    })
                })?;
            self.append_quarantine(batch).await?;
        }
        let accepted = normalized.accepted.as_ref().map_or(0, |b| b.num_rows());
        if let Some(rows) = normalized.accepted {
            let table = self.table(&pipeline.name).await?;
            let mut writer = self
                .store
                .begin_run(&pipeline.name, &table, &pipeline.key)?;
            drop(table);
            writer
                .write(rows)
                .await
                .map_err(|source| crate::storage::StorageError::Delta {
                    table: pipeline.name.clone(),
                    source: Box::new(source),
                })?;
            let info = CommitInfo {
                pipeline: pipeline.name.clone(),
                run_id: publish_id.to_string(),
                run_sequence: None,
                checkpoint: None,
                cursor: None,
            };
            self.commit_dataset(pipeline, writer, &info).await?;
        }
        let rejected: Vec<PublishRejection> = normalized
            .rejected
            .into_iter()
            .map(|r| PublishRejection {
                index: r
                    .location
                    .trim_start_matches('#')
                    .parse()
                    .unwrap_or(usize::MAX),
                errors: r.errors,
            })
            .collect();
        Ok(PublishReport { accepted, rejected })
    }

    /// Stores a quarantined record again after someone fixed its raw text (the console's
    /// re-ingest), through the same normalizer, checks and commit as a publish. The record is
    /// known by (dataset, run, source, location). When it is accepted, that quarantine row is
    /// marked resolved in the state store; when it is still refused, nothing is marked and the
    /// new reasons come back (the attempt is quarantined too, as every reject is). Admins and
    /// the dataset's publishers.
    pub async fn reingest(
        &self,
        consumer: &Consumer,
        dataset: &str,
        row: &QuarantineRowId<'_>,
        fixed: &str,
    ) -> Result<ReingestOutcome, HubError> {
        let visibility = self.visibility_of(consumer)?;
        let pipeline = match self.pipeline(dataset) {
            Ok(p) if visibility.dataset(dataset).is_some() => p.clone(),
            _ => return Err(HubError::NotFound(format!("no dataset named {dataset:?}"))),
        };
        let allowed = visibility.may_read_quarantine_of(dataset)
            && (consumer.role == crate::sharing::Role::Admin
                || pipeline.publishers.contains(&consumer.id));
        if !allowed {
            return Err(HubError::Forbidden(format!(
                "only the publishers of {dataset:?} and the managing office re-ingest its quarantine"
            )));
        }
        let value: Value = serde_json::from_str(fixed).map_err(|e| HubError::BadRequest {
            field: "raw".into(),
            message: format!("the record is not valid JSON: {e}"),
        })?;
        let Value::Object(fields) = value else {
            return Err(HubError::BadRequest {
                field: "raw".into(),
                message: "the record must be one JSON object".into(),
            });
        };
        let rows = self
            .quarantine_for(consumer, dataset, self.engine.limits().max_rows)
            .await?;
        if !quarantine_row_exists(&rows, row)? {
            return Err(HubError::NotFound(format!(
                "no quarantined record of {dataset:?} at {:?} of {:?} in run {:?}",
                row.location, row.source, row.run_id
            )));
        }
        // From the check to the resolution, one re-ingest at a time: a double submit must not
        // store the record twice.
        let _one_at_a_time = self.reingest_lock.lock().await;
        if self
            .state
            .quarantine_resolutions(dataset)?
            .iter()
            .any(|r| r.run_id == row.run_id && r.source == row.source && r.location == row.location)
        {
            return Err(HubError::Conflict(
                "this quarantined record was already stored again".into(),
            ));
        }
        // A record of a text source (CSV) goes back as text, so each field is typed by its
        // column as the source's rows are, with an empty cell meaning no value, as the CSV
        // reader has it. Anything else goes back as the JSON record it is.
        let payload = if pipeline.source.yields_text() {
            let cells = fields
                .into_iter()
                .filter(|(_, v)| !matches!(v, Value::String(s) if s.is_empty()))
                .map(|(k, v)| match v {
                    Value::String(s) => (k, Value::String(s)),
                    other => (k, Value::String(other.to_string())),
                })
                .collect();
            Payload::Text(cells)
        } else {
            Payload::Json(Value::Object(fields))
        };
        let publish_id = format!("reingest-{}", uuid::Uuid::new_v4());
        let source: Arc<str> = format!("reingest:{}:{}", consumer.id, row.source).into();
        let report = self
            .publish_records(
                &pipeline,
                vec![record(0, payload)],
                &publish_id,
                source,
                fixed.len() as u64,
            )
            .await?;
        let stored = report.accepted == 1 && report.rejected.is_empty();
        self.audit(
            Some(&consumer.id),
            "quarantine_reingest",
            Some(&pipeline.name),
            json!({"publish_id": publish_id, "accepted": report.accepted, "rejected": report.rejected.len(),
                   "bytes": fixed.len(), "run_id": row.run_id, "source": row.source, "location": row.location}),
            if stored { "ok" } else { "refused" },
        );
        if stored {
            self.state
                .resolve_quarantined(&crate::state::QuarantineResolution {
                    dataset: dataset.to_string(),
                    run_id: row.run_id.to_string(),
                    source: row.source.to_string(),
                    location: row.location.to_string(),
                    resolved_at: self.clock.now(),
                    resolved_by: consumer.id.clone(),
                    publish_id: publish_id.clone(),
                })?;
        }
        Ok(ReingestOutcome {
            stored,
            report,
            publish_id,
        })
    }
}

/// Which quarantine row: the run that refused it, the file or URL it came from, and where in
/// that source it was.
#[derive(Debug, Clone, Copy)]
pub struct QuarantineRowId<'a> {
    pub run_id: &'a str,
    pub source: &'a str,
    pub location: &'a str,
}

/// What a re-ingest did: `stored` when the fixed record was accepted (and the quarantine
/// row marked resolved); otherwise `report.rejected` says why.
#[derive(Debug, Serialize)]
pub struct ReingestOutcome {
    pub stored: bool,
    pub report: PublishReport,
    pub publish_id: String,
}

/// Whether `rows` (the columns of `Hub::quarantine_for`: dataset, run_id, source, location,
/// ...) hold the quarantine row `id`.
fn quarantine_row_exists(
    rows: &crate::query::QueryResult,
    id: &QuarantineRowId<'_>,
) -> Result<bool, HubError> {
    let table = crate::query::to_json(rows)
        .map_err(|e| HubError::Query(crate::query::QueryError::Internal(e.to_string())))?;
    Ok(table["rows"].as_array().is_some_and(|rows| {
        rows.iter().any(|row| {
            let cell = |i: usize| row.get(i).and_then(Value::as_str);
            cell(1) == Some(id.run_id) && cell(2) == Some(id.source) && cell(3) == Some(id.location)
        })
    }))
}

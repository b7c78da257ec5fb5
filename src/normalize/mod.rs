//! Normalize: raw records → validated, typed Arrow rows, or quarantine with every reason.
//!
//! For each record: type text fields / apply declared coercions (`coerce`), validate against the
//! dataset's JSON Schema (formats checked), then convert to the table's Arrow types (`rows`). A
//! record failing any step is never dropped: it comes back as a [`Rejected`] with its raw payload.

mod coerce;
mod messages;
mod rows;
mod schema;

use std::borrow::Cow;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use chrono_tz::Tz;
use iochub_connectors::{Payload, RawBatch};
use serde::Serialize;
use serde_json::Value;

pub use schema::{
    Column, ColumnKind, DatasetSchema, INGESTED_AT, RUN_ID, SOURCE, SchemaError, timestamp_type,
};

use crate::config::Coercions;
use coerce::Coercer;
use rows::RowsBuilder;

/// Longest message kept per error (an `enum` of 40 values makes long messages).
const MAX_MESSAGE_CHARS: usize = 400;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer to the offending value (`""` = the record itself).
    pub pointer: String,
    pub message: String,
}

/// A record kept out of the table, with why.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub source: Arc<str>,
    pub location: String,
    /// The record as the source delivered it (JSON text, or the raw line).
    pub raw: String,
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Default)]
pub struct Normalized {
    pub fetched: usize,
    pub accepted: Option<RecordBatch>,
    /// Where each accepted row came from, and its raw text, in row order; kept only when
    /// `keep_raw` (checks after normalizing may still quarantine a row).
    pub accepted_locations: Vec<String>,
    pub accepted_raw: Vec<String>,
    pub rejected: Vec<Rejected>,
}

pub struct Normalizer {
    pub schema: Arc<DatasetSchema>,
    pub coercions: Coercions,
    pub time_zone: Tz,
    pub keep_raw: bool,
}

impl Normalizer {
    pub fn new(schema: Arc<DatasetSchema>, coercions: Coercions, time_zone: Tz) -> Self {
        Normalizer {
            schema,
            coercions,
            time_zone,
            keep_raw: false,
        }
    }

    pub fn normalize(&self, batch: RawBatch, run_id: &str, ingested_at_micros: i64) -> Normalized {
        let coercer = Coercer {
            schema: &self.schema,
            rules: &self.coercions,
            time_zone: self.time_zone,
        };
        let mut rows = RowsBuilder::new(&self.schema.columns, batch.records.len());
        let mut rejected = Vec::new();
        let mut accepted_locations = Vec::new();
        let mut accepted_raw = Vec::new();
        let fetched = batch.records.len();
        for record in batch.records {
            let reject = |raw: String, errors: Vec<FieldError>| Rejected {
                source: batch.source.clone(),
                location: record.location.clone(),
                raw,
                errors,
            };
            let (original, typed): (&Value, Cow<'_, Value>) = match &record.payload {
                Payload::Json(v) => (v, coercer.coerce_json(v)),
                Payload::Text(fields) => {
                    let typed = coercer.type_text(fields);
                    (&Value::Null, Cow::Owned(typed))
                }
                Payload::Unreadable { raw, error } => {
                    rejected.push(reject(
                        raw.clone(),
                        vec![FieldError {
                            pointer: String::new(),
                            message: format!("Không đọc được bản ghi ({error})."),
                        }],
                    ));
                    continue;
                }
            };
            let raw_text = || match &record.payload {
                Payload::Text(fields) => Value::Object(fields.clone()).to_string(),
                _ => original.to_string(),
            };
            if !self.schema.validator.is_valid(&typed) {
                let errors = self
                    .schema
                    .validator
                    .iter_errors(&typed)
                    .map(|e| FieldError {
                        pointer: e.instance_path().as_str().to_string(),
                        message: shorten(messages::explain(&e, &self.schema.columns)),
                    })
                    .collect();
                rejected.push(reject(raw_text(), errors));
                continue;
            }
            match rows.push(&typed, &batch.source) {
                // Kept only for checks that run after normalizing (an allocation a record).
                Ok(()) if self.keep_raw => {
                    accepted_locations.push(record.location.clone());
                    accepted_raw.push(raw_text());
                }
                Ok(()) => {}
                Err(errors) => {
                    let errors = errors
                        .into_iter()
                        .map(|(pointer, message)| FieldError { pointer, message })
                        .collect();
                    rejected.push(reject(raw_text(), errors));
                }
            }
        }
        let accepted = if rows.len() > 0 {
            match rows.finish(&self.schema.arrow, run_id, ingested_at_micros) {
                Ok(b) => Some(b),
                Err(e) => {
                    // Builders follow the schema they were made from, so this is a bug; the
                    // batch is not lost silently: it shows in quarantine and the run is partial.
                    tracing::error!(error = %e, "building the Arrow batch failed");
                    rejected.push(Rejected {
                        source: batch.source.clone(),
                        location: "batch".into(),
                        raw: String::new(),
                        errors: vec![FieldError {
                            pointer: String::new(),
                            message: format!("internal error building the batch: {e}"),
                        }],
                    });
                    None
                }
            }
        } else {
            None
        };
        Normalized {
            fetched,
            accepted,
            accepted_locations,
            accepted_raw,
            rejected,
        }
    }
}

fn shorten(mut message: String) -> String {
    if message.chars().count() > MAX_MESSAGE_CHARS {
        message = message.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use iochub_connectors::RawRecord;
    use serde_json::json;
    use std::path::Path;

    fn normalizer() -> Normalizer {
        let schema = DatasetSchema::compile(
            Path::new("t.json"),
            &json!({"type": "object", "required": ["id"], "properties": {
                "id": {"type": "string"},
                "n": {"type": "integer", "minimum": 0},
                "at": {"type": "string", "format": "date-time"},
                "email": {"type": "string", "format": "email"}
            }}),
        )
        .unwrap();
        Normalizer::new(
            Arc::new(schema),
            Coercions::default(),
            chrono_tz::Asia::Ho_Chi_Minh,
        )
    }

    fn batch(payloads: Vec<Payload>) -> RawBatch {
        RawBatch {
            bytes: 0,
            source: "test".into(),
            records: payloads
                .into_iter()
                .enumerate()
                .map(|(i, payload)| RawRecord {
                    location: format!("line {}", i + 1),
                    payload,
                })
                .collect(),
        }
    }

    #[test]
    fn good_rows_typed_bad_rows_quarantined_with_every_error() {
        let out = normalizer().normalize(
            batch(vec![
                Payload::Json(json!({"id": "a", "n": 1, "at": "2025-04-01T08:00:00+07:00"})),
                Payload::Json(json!({"n": -1, "at": "01/04/2025", "email": "not-an-email"})),
                Payload::Unreadable {
                    raw: "{\"id\": ".into(),
                    error: "not valid JSON".into(),
                },
            ]),
            "run-1",
            0,
        );
        assert_eq!(out.fetched, 3);
        let accepted = out.accepted.unwrap();
        assert_eq!(accepted.num_rows(), 1);
        let at = accepted
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .unwrap();
        // 08:00 at +07:00 is 01:00 UTC.
        assert_eq!(at.value(0), 1_743_469_200_000_000);
        assert_eq!(out.rejected.len(), 2);
        let pointers: Vec<&str> = out.rejected[0]
            .errors
            .iter()
            .map(|e| e.pointer.as_str())
            .collect();
        assert!(pointers.contains(&""), "missing required id: {pointers:?}");
        assert!(pointers.contains(&"/n"));
        assert!(pointers.contains(&"/at"));
        assert!(pointers.contains(&"/email"));
        assert_eq!(out.rejected[1].raw, "{\"id\": ");
        assert_eq!(out.rejected[1].location, "line 3");
    }
}

//! Normalize: raw records → validated, typed Arrow rows, or quarantine with every reason.
//!
//! For each record: type text fields / apply declared coercions (`coerce`), validate against the
//! dataset's JSON Schema (formats checked), then convert to the table's Arrow types (`rows`). A
//! record failing any step is never dropped: it comes back as a [`Rejected`] with its raw payload.

mod coerce;
mod fast;
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

/// Raw text kept for a record that cannot be read is cut at this size (as the connectors
/// cut what they cannot read).
const MAX_UNREADABLE_BYTES: usize = 64 * 1024;

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
        // The fast path types records as they are parsed; it only applies when no coercion
        // has to rewrite values first.
        let fast = self
            .schema
            .fast
            .as_ref()
            .filter(|_| self.coercions == Coercions::default());
        let mut cells = Vec::new();
        for record in &batch.records {
            let reject = |raw: String, errors: Vec<FieldError>| Rejected {
                source: batch.source.clone(),
                location: record.location.clone(),
                raw,
                errors,
            };
            let parsed: Value;
            let (original, typed): (&Value, Cow<'_, Value>) = match &record.payload {
                Payload::JsonText(text) => {
                    if let Some(plan) = fast
                        && plan.decode(text, &mut cells)
                    {
                        rows.push_cells(&mut cells, &batch.source);
                        if self.keep_raw {
                            accepted_locations.push(record.location.clone());
                            accepted_raw.push(text.clone());
                        }
                        continue;
                    }
                    match serde_json::from_str::<Value>(text) {
                        Ok(value) => {
                            parsed = value;
                            (&parsed, coercer.coerce_json(&parsed))
                        }
                        Err(e) => {
                            let raw =
                                text[..text.floor_char_boundary(MAX_UNREADABLE_BYTES)].to_string();
                            rejected.push(reject(raw, unreadable(&format!("not valid JSON: {e}"))));
                            continue;
                        }
                    }
                }
                Payload::Json(v) => (v, coercer.coerce_json(v)),
                Payload::Text(fields) => {
                    let typed = coercer.type_text(fields);
                    (&Value::Null, Cow::Owned(typed))
                }
                Payload::Unreadable { raw, error } => {
                    rejected.push(reject(raw.clone(), unreadable(error)));
                    continue;
                }
            };
            let raw_text = || match &record.payload {
                Payload::Text(fields) => Value::Object(fields.clone()).to_string(),
                // The line as it came, not re-serialized.
                Payload::JsonText(text) => text.clone(),
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

/// The one error of a record that could not be read as a record at all.
fn unreadable(error: &str) -> Vec<FieldError> {
    vec![FieldError {
        pointer: String::new(),
        message: format!("Không đọc được bản ghi ({error})."),
    }]
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

    /// A schema using every keyword the fast path checks itself, and some it leaves to the
    /// full validator (`const`, `uri`, an object with rules of its own).
    fn wide_schema() -> DatasetSchema {
        DatasetSchema::compile(
            Path::new("wide.json"),
            &json!({"type": "object", "required": ["id", "kind"], "properties": {
                "id": {"type": "string", "pattern": "^A-[0-9]{3}$"},
                "kind": {"type": "string", "enum": ["x", "y"]},
                "text": {"type": ["string", "null"], "minLength": 3, "maxLength": 5},
                "n": {"type": "integer", "minimum": 0, "maximum": 100},
                "f": {"type": ["number", "null"], "exclusiveMaximum": 1.5},
                "b": {"type": "boolean"},
                "d": {"type": "string", "format": "date"},
                "t": {"type": ["string", "null"], "format": "date-time"},
                "u": {"type": ["string", "null"], "format": "uri"},
                "c": {"type": "string", "const": "k"},
                "o": {"type": "object", "required": ["p"],
                      "properties": {"p": {"type": "string", "pattern": "^0[0-9]{2}$"},
                                     "q": {"type": ["integer", "null"]},
                                     "r": {"type": "number"},
                                     "s": {"type": ["string", "null"]},
                                     "v": {"type": ["string", "null"], "enum": ["a"]}}},
                "any": {"description": "anything"},
                "e": {"type": ["string", "null"], "enum": ["x", "y"]}
            }}),
        )
        .unwrap()
    }

    /// Records on both sides of every check, and inputs the fast path must hand over.
    const WIDE_RECORDS: &[&str] = &[
        r#"{"id":"A-001","kind":"x","text":"abc","n":5,"f":1.25,"b":true,"d":"2024-02-29","t":"2025-04-01T08:00:00+07:00","u":"http://example.com/a","c":"k","o":{"p":"012"},"any":[1,{"a":null}]}"#,
        r#"{"id":"A-002","kind":"y"}"#,
        r#"{"kind":"y","id":"A-003","text":null,"f":null,"t":null,"u":null,"any":null}"#,
        r#"{"id":"A-\u0030\u0030\u0034","kind":"x","text":"\"q\"\u0111"}"#,
        r#"{"id":"A-005","kind":"x","text":"đđđ"}"#,
        r#"{"id":"A-006","kind":"x","text":"đđđđđđ"}"#,
        r#"{"id":"A-007","kind":"x","text":"ab"}"#,
        r#"{"id":"A-008","kind":"x","n":5.0}"#,
        r#"{"id":"A-009","kind":"x","n":-1}"#,
        r#"{"id":"A-010","kind":"x","n":101}"#,
        r#"{"id":"A-011","kind":"x","n":"5"}"#,
        r#"{"id":"A-012","kind":"x","n":9007199254740993}"#,
        r#"{"id":"A-013","kind":"x","n":1e2}"#,
        r#"{"id":"A-014","kind":"x","f":1.5}"#,
        r#"{"id":"A-015","kind":"x","f":1}"#,
        r#"{"id":"A-016","kind":"x","b":"true"}"#,
        r#"{"id":"A-017","kind":"x","d":"2025-02-29"}"#,
        r#"{"id":"A-018","kind":"x","t":"2025-04-01t08:00:00z"}"#,
        r#"{"id":"A-019","kind":"x","t":"2025-04-01T08:00:60Z"}"#,
        r#"{"id":"A-020","kind":"x","t":"1969-12-31T23:59:59.9999999-00:30"}"#,
        r#"{"id":"A-021","kind":"x","u":"not a uri"}"#,
        r#"{"id":"A-022","kind":"x","c":"z"}"#,
        r#"{"id":"A-023","kind":"x","o":{"p":"12"}}"#,
        r#"{"id":"A-024","kind":"x","o":{"q":1}}"#,
        r#"{"id":"A-025","kind":"x","o":"text"}"#,
        r#"{"id":"A-026","kind":"x","kind":"y"}"#,
        r#"{"id":"A-027","kind":"x","zzz":{"deep":[1,2]}}"#,
        r#"{"id":"A-028"}"#,
        r#"[1,2]"#,
        r#"{"id":"A-030","kind":null}"#,
        r#"{"id":"B-031","kind":"z"}"#,
        r#"{"id":"A-032","kind":"x","b":false,"d":"2025-04-30","n":0,"f":-3}"#,
        r#"  {"id":"A-033","kind":"x"}  "#,
        r#"{"id":"A-034","kind":"x","o":{"s":"tab\there \u00e9 \"q\"","p":"012","q":-5,"r":2}}"#,
        r#"{"id":"A-035","kind":"x","o":{"p":"012","r":1.50,"q":null}}"#,
        r#"{"id":"A-036","kind":"x","o":{"p":"012","p":"013"}}"#,
        r#"{"id":"A-037","kind":"x","o":{"p":"012","extra":[1]}}"#,
        r#"{"id":"A-038","kind":"x","o":{}}"#,
        r#"{"id":"A-039","kind":"x","o":null}"#,
        r#"{"id":"A-040","kind":"x","e":null}"#,
        r#"{"id":"A-041","kind":"x","e":"y","o":{"p":"012","v":null}}"#,
        r#"{"id":"A-042","kind":"x","o":{"p":"012","v":"a"}}"#,
    ];

    fn rows_of(out: &Normalized) -> Vec<Vec<String>> {
        let batch = out.accepted.as_ref().unwrap();
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| {
                arrow::util::display::ArrayFormatter::try_new(
                    c.as_ref(),
                    &arrow::util::display::FormatOptions::default().with_null("∅"),
                )
                .unwrap()
            })
            .collect();
        (0..batch.num_rows())
            .map(|row| {
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_fast_path_accepts_and_types_exactly_what_the_full_path_does() {
        let schema = Arc::new(wide_schema());
        let plan = schema.fast.as_ref().expect("this schema has a fast plan");
        let mut cells = Vec::new();
        // The first record takes the fast path (so this test compares two paths, not one
        // with itself), and the duplicate key goes to the full path.
        assert!(plan.decode(WIDE_RECORDS[0], &mut cells));
        assert!(!plan.decode(WIDE_RECORDS[25], &mut cells));
        // An object column written back as text by the fast path.
        assert!(plan.decode(WIDE_RECORDS[33], &mut cells));
        let normalizer =
            Normalizer::new(schema, Coercions::default(), chrono_tz::Asia::Ho_Chi_Minh);
        let text = batch(
            WIDE_RECORDS
                .iter()
                .map(|r| Payload::JsonText(r.to_string()))
                .collect(),
        );
        let parsed = batch(
            WIDE_RECORDS
                .iter()
                .map(|r| Payload::Json(serde_json::from_str(r).unwrap()))
                .collect(),
        );
        let fast = normalizer.normalize(text, "run", 7);
        let full = normalizer.normalize(parsed, "run", 7);
        assert_eq!(rows_of(&fast), rows_of(&full));
        assert_eq!(fast.rejected.len(), full.rejected.len());
        for (a, b) in fast.rejected.iter().zip(&full.rejected) {
            assert_eq!(a.location, b.location);
            assert_eq!(a.errors, b.errors, "{}", a.raw);
        }
        // The escaped id, the 3-letter "đđđ", 5.0 and 1e2 as integers, 1 as a float, seven
        // decimals, a duplicate and an unknown key are accepted; the records breaking a rule
        // are not (line 18, a lowercase `t`, is whatever chrono makes of it, on both paths).
        let ids: Vec<String> = rows_of(&fast).into_iter().map(|r| r[0].clone()).collect();
        for id in [
            "A-004", "A-005", "A-008", "A-013", "A-015", "A-020", "A-026", "A-027", "A-033",
            "A-034", "A-035", "A-036", "A-037", "A-042",
        ] {
            assert!(ids.contains(&id.to_string()), "{id} missing from {ids:?}");
        }
        let mut rejected: Vec<&str> = fast
            .rejected
            .iter()
            .map(|r| r.location.as_str())
            .filter(|l| *l != "line 18")
            .collect();
        rejected.sort_unstable();
        let mut expected: Vec<String> = [
            6, 7, 9, 10, 11, 12, 14, 16, 17, 19, 21, 22, 23, 24, 25, 28, 29, 30, 31, 38, 39, 40, 41,
        ]
        .iter()
        .map(|n| format!("line {n}"))
        .collect();
        expected.sort_unstable();
        assert_eq!(rejected, expected);
        // A quarantined line keeps its text as it came.
        assert_eq!(
            fast.rejected
                .iter()
                .find(|r| r.location == "line 29")
                .unwrap()
                .raw,
            "[1,2]"
        );
    }

    #[test]
    fn text_that_is_not_json_is_quarantined_with_its_text() {
        let out = normalizer().normalize(
            batch(vec![
                Payload::JsonText(r#"{"id": "a"}"#.into()),
                Payload::JsonText(r#"{"id": "a""#.into()),
                Payload::JsonText(r#"{"id": "a"} trailing"#.into()),
                // Beyond the schema's keys, yet not JSON a parse accepts: a lone surrogate, a
                // number out of range, nesting past serde_json's limit.
                Payload::JsonText(r#"{"id": "a", "x": "\ud800"}"#.into()),
                Payload::JsonText(r#"{"id": "a", "x": 1e400}"#.into()),
                Payload::JsonText(format!(
                    r#"{{"id": "a", "x": {}{}}}"#,
                    "[".repeat(130),
                    "]".repeat(130)
                )),
            ]),
            "run-1",
            0,
        );
        assert_eq!(out.accepted.unwrap().num_rows(), 1);
        assert_eq!(out.rejected.len(), 5);
        assert!(
            out.rejected
                .iter()
                .all(|r| r.errors[0].message.contains("not valid JSON"))
        );
        assert_eq!(out.rejected[0].raw, r#"{"id": "a""#);
        assert!(
            out.rejected[0].errors[0]
                .message
                .starts_with("Không đọc được bản ghi (not valid JSON")
        );
        assert_eq!(out.rejected[1].location, "line 3");
        // A huge unreadable line is kept cut, at a character boundary.
        let long = format!("{{\"id\": \"{}", "đ".repeat(40_000));
        let out = normalizer().normalize(batch(vec![Payload::JsonText(long.clone())]), "run-2", 0);
        let raw = &out.rejected[0].raw;
        assert!(raw.len() <= MAX_UNREADABLE_BYTES && raw.len() > MAX_UNREADABLE_BYTES - 4);
        assert!(long.starts_with(raw.as_str()));
    }

    #[test]
    fn schemas_beyond_the_fast_path_have_no_plan() {
        let compile = |doc: Value| DatasetSchema::compile(Path::new("t.json"), &doc).unwrap();
        let with_ref = compile(json!({"type": "object", "$defs": {"s": {"type": "string"}},
            "properties": {"a": {"$ref": "#/$defs/s"}}}));
        assert!(with_ref.fast.is_none());
        let conditional = compile(
            json!({"type": "object", "properties": {"a": {"type": "string"}},
            "if": {"required": ["a"]}, "then": {"required": ["b"]}}),
        );
        assert!(conditional.fast.is_none());
        let open = compile(json!({"type": "object", "additionalProperties": false,
            "properties": {"a": {"type": "string"}}}));
        let plan = open.fast.as_ref().unwrap();
        let mut cells = Vec::new();
        assert!(plan.decode(r#"{"a": "x"}"#, &mut cells));
        assert!(!plan.decode(r#"{"a": "x", "b": 1}"#, &mut cells));
    }
}

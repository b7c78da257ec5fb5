//! Typing text fields and the coercions a pipeline declares for real-world input.
//!
//! Runs before validation, so a value that cannot be coerced stays as it was and validation
//! reports it against the schema (a clerk then sees `"N/A" is not of type "integer"`).

use std::borrow::Cow;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use chrono_tz::Tz;
use serde_json::{Map, Number, Value};

use super::schema::{ColumnKind, DatasetSchema};
use crate::config::{Coercions, DateFormat};

pub struct Coercer<'a> {
    pub schema: &'a DatasetSchema,
    pub rules: &'a Coercions,
    /// Zone of local date-times that arrive without an offset (`dd/mm/yyyy HH:MM`).
    pub time_zone: Tz,
}

impl Coercer<'_> {
    /// A record whose fields all arrived as text (CSV): each field typed by its column.
    pub fn type_text(&self, fields: &Map<String, Value>) -> Value {
        let mut out = Map::with_capacity(fields.len());
        for (name, value) in fields {
            let typed = match (self.schema.column(name), value) {
                (Some(column), Value::String(text)) => self
                    .coerce_declared(column.kind, value)
                    .map(Cow::into_owned)
                    .unwrap_or_else(|| type_text_value(column.kind, text, self.rules)),
                _ => value.clone(),
            };
            out.insert(name.clone(), typed);
        }
        Value::Object(out)
    }

    /// A JSON record: only the declared coercions, on top-level properties. Borrows when
    /// nothing changes, which is the common case.
    pub fn coerce_json<'v>(&self, record: &'v Value) -> Cow<'v, Value> {
        let Value::Object(fields) = record else {
            return Cow::Borrowed(record);
        };
        if *self.rules == Coercions::default() {
            return Cow::Borrowed(record);
        }
        let mut changed: Option<Map<String, Value>> = None;
        for (name, value) in fields {
            let Some(column) = self.schema.column(name) else {
                continue;
            };
            if let Some(new) = self.coerce_declared(column.kind, value) {
                changed
                    .get_or_insert_with(|| fields.clone())
                    .insert(name.clone(), new.into_owned());
            }
        }
        match changed {
            Some(map) => Cow::Owned(Value::Object(map)),
            None => Cow::Borrowed(record),
        }
    }

    /// The coerced value, or `None` when no declared coercion applies.
    fn coerce_declared<'v>(&self, kind: ColumnKind, value: &'v Value) -> Option<Cow<'v, Value>> {
        let Value::String(text) = value else {
            return None;
        };
        if text.is_empty() && self.rules.empty_as_null {
            return Some(Cow::Owned(Value::Null));
        }
        match (kind, self.rules.date_format) {
            (ColumnKind::Date, Some(DateFormat::DayMonthYear)) => {
                let date = NaiveDate::parse_from_str(text.trim(), "%d/%m/%Y").ok()?;
                Some(Cow::Owned(Value::String(
                    date.format("%Y-%m-%d").to_string(),
                )))
            }
            (ColumnKind::Timestamp, Some(DateFormat::DayMonthYear)) => {
                let local = parse_day_first_datetime(text.trim())?;
                let with_offset = local.and_local_timezone(self.time_zone).single()?;
                Some(Cow::Owned(Value::String(with_offset.to_rfc3339())))
            }
            (ColumnKind::Int64 | ColumnKind::Float64, _)
                if self.rules.thousands_separator.is_some() =>
            {
                let number = parse_localized_number(text, self.rules.thousands_separator)?;
                Some(Cow::Owned(number_value(kind, number)?))
            }
            _ => None,
        }
    }
}

fn parse_day_first_datetime(text: &str) -> Option<NaiveDateTime> {
    for format in ["%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(text, format) {
            return Some(dt);
        }
    }
    NaiveDate::parse_from_str(text, "%d/%m/%Y")
        .ok()
        .map(|d| d.and_time(NaiveTime::MIN))
}

/// `1.234.567` with separator `.` → 1234567; `1.234,5` → 1234.5 (the decimal mark is then `,`).
fn parse_localized_number(text: &str, thousands: Option<char>) -> Option<f64> {
    let text = text.trim();
    let plain: String = match thousands {
        Some(sep) => {
            let decimal = if sep == '.' { ',' } else { '.' };
            text.chars()
                .filter(|c| *c != sep)
                .map(|c| if c == decimal { '.' } else { c })
                .collect()
        }
        None => text.to_string(),
    };
    plain.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn number_value(kind: ColumnKind, number: f64) -> Option<Value> {
    if kind == ColumnKind::Int64 {
        if number.fract() != 0.0 || number.abs() > 9.0e15 {
            return None;
        }
        Some(Value::Number(Number::from(number as i64)))
    } else {
        Number::from_f64(number).map(Value::Number)
    }
}

/// Text typed by its column; text that does not fit stays text (and fails validation).
fn type_text_value(kind: ColumnKind, text: &str, rules: &Coercions) -> Value {
    let trimmed = text.trim();
    let typed = match kind {
        ColumnKind::Int64 => trimmed
            .parse::<i64>()
            .ok()
            .map(|n| Value::Number(n.into()))
            .or_else(|| {
                rules.thousands_separator.and_then(|_| {
                    number_value(
                        kind,
                        parse_localized_number(trimmed, rules.thousands_separator)?,
                    )
                })
            }),
        ColumnKind::Float64 => parse_localized_number(trimmed, rules.thousands_separator)
            .and_then(|n| number_value(kind, n)),
        ColumnKind::Boolean => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" => Some(Value::Bool(true)),
            "false" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        ColumnKind::Json => serde_json::from_str(trimmed).ok(),
        ColumnKind::Utf8 | ColumnKind::Date | ColumnKind::Timestamp => None,
    };
    typed.unwrap_or_else(|| Value::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn schema() -> DatasetSchema {
        DatasetSchema::compile(
            Path::new("t.json"),
            &json!({"type": "object", "properties": {
                "n": {"type": "integer"}, "x": {"type": "number"}, "b": {"type": "boolean"},
                "d": {"type": "string", "format": "date"},
                "t": {"type": "string", "format": "date-time"}, "s": {"type": "string"}
            }}),
        )
        .unwrap()
    }

    #[test]
    fn text_fields_are_typed_by_column() {
        let schema = schema();
        let rules = Coercions::default();
        let c = Coercer {
            schema: &schema,
            rules: &rules,
            time_zone: chrono_tz::Asia::Ho_Chi_Minh,
        };
        let typed = c.type_text(
            json!({"n": "42", "x": "0.5", "b": "true", "s": "007", "d": "2025-01-02"})
                .as_object()
                .unwrap(),
        );
        assert_eq!(
            typed,
            json!({"n": 42, "x": 0.5, "b": true, "s": "007", "d": "2025-01-02"})
        );
        let bad = c.type_text(json!({"n": "N/A", "x": "12,5"}).as_object().unwrap());
        assert_eq!(bad, json!({"n": "N/A", "x": "12,5"}));
    }

    #[test]
    fn declared_coercions() {
        let schema = schema();
        let rules = Coercions {
            date_format: Some(DateFormat::DayMonthYear),
            thousands_separator: Some('.'),
            empty_as_null: true,
        };
        let c = Coercer {
            schema: &schema,
            rules: &rules,
            time_zone: chrono_tz::Asia::Ho_Chi_Minh,
        };
        let input = json!({
            "n": "1.234.567", "x": "1.234,5", "d": "30/04/2025", "t": "05/06/2025 14:30", "s": ""
        });
        let out = c.coerce_json(&input);
        assert_eq!(
            out.into_owned(),
            json!({"n": 1234567, "x": 1234.5, "d": "2025-04-30", "t": "2025-06-05T14:30:00+07:00", "s": null})
        );
        let untouched = json!({"n": 5, "d": "2025-04-30"});
        assert!(matches!(c.coerce_json(&untouched), Cow::Borrowed(_)));
    }
}

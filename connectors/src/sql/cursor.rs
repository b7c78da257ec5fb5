//! The incremental cursor: where a run starts, how the overlap moves it back, and the
//! checkpoint that records where the run ended.
//!
//! The checkpoint is `{"cursor": <value as yielded>, "type": "<kind>"}`. The kind, taken from
//! the cursor column's SQL type, says how to bind the value next time, so a text cursor that
//! happens to look like a date is still bound as text.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeDelta};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ConnectorError;
use crate::record::ReadContext;

/// `overlap`: how far behind the checkpoint the next run starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Overlap {
    /// Units of an integer cursor, or seconds of a timestamp cursor.
    Integer(i64),
    Float(f64),
    /// A duration for a timestamp or date cursor: `"90s"`, `"5m"`, `"2h"`, `"1d"`, `"1h30m"`.
    Duration(String),
}

impl Overlap {
    pub(crate) fn check(&self) -> Result<(), String> {
        match self {
            Overlap::Integer(n) if *n < 0 => Err(format!("overlap {n} must not be negative")),
            Overlap::Float(f) if !f.is_finite() || *f < 0.0 => {
                Err(format!("overlap {f} must be a number ≥ 0"))
            }
            Overlap::Duration(d) => parse_duration(d).map(|_| ()),
            _ => Ok(()),
        }
    }

    fn is_zero(&self) -> bool {
        match self {
            Overlap::Integer(n) => *n == 0,
            Overlap::Float(f) => *f == 0.0,
            Overlap::Duration(d) => parse_duration(d).map(|d| d.is_zero()).unwrap_or(false),
        }
    }

    /// As a time span: a number is seconds.
    fn as_duration(&self) -> Result<TimeDelta, String> {
        match self {
            Overlap::Integer(n) => Ok(TimeDelta::seconds(*n)),
            Overlap::Float(f) => Ok(TimeDelta::milliseconds((f * 1000.0).round() as i64)),
            Overlap::Duration(d) => parse_duration(d),
        }
    }
}

/// `"90s"`, `"5m"`, `"2h"`, `"1d"`, `"1h30m"`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<TimeDelta, String> {
    let bad = || {
        format!(
            "overlap {text:?} is not a duration (like \"90s\", \"5m\", \"2h\", \"1d\", \"1h30m\")"
        )
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<u32>() {
        return Ok(TimeDelta::seconds(secs.into()));
    }
    let mut total = TimeDelta::zero();
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let part = match c {
            's' => TimeDelta::try_seconds(n),
            'm' => TimeDelta::try_minutes(n),
            'h' => TimeDelta::try_hours(n),
            'd' => TimeDelta::try_days(n),
            _ => None,
        }
        .ok_or_else(bad)?;
        total = total.checked_add(&part).ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// How a cursor value is bound, from the cursor column's SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CursorKind {
    Integer,
    Number,
    Timestamp,
    Date,
    Text,
}

/// A cursor value ready to bind. Timestamps are local times at the configured `time_zone`
/// (the session's time zone is set to the same offset, so they compare correctly with
/// columns with or without a time zone).
#[derive(Debug, Clone, PartialEq)]
pub enum BoundValue {
    Int(i64),
    Float(f64),
    Timestamp(NaiveDateTime),
    Date(NaiveDate),
    Text(String),
}

/// The lower bound of a run: `cursor > value`, or `cursor >= value` with an overlap.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    pub value: BoundValue,
    pub inclusive: bool,
}

impl Bound {
    pub fn operator(&self) -> &'static str {
        if self.inclusive { ">=" } else { ">" }
    }
}

pub(crate) fn checkpoint(value: Value, kind: CursorKind) -> Value {
    serde_json::json!({ "cursor": value, "type": kind })
}

/// Where this run starts: after the checkpoint, or (without one) after the pipeline's cursor;
/// `None` reads everything.
pub(crate) fn start(
    context: &ReadContext,
    overlap: Option<&Overlap>,
    offset: FixedOffset,
) -> Result<Option<Bound>, ConnectorError> {
    let from_checkpoint = context.checkpoint.as_ref().and_then(|c| {
        let parsed = parse_checkpoint(c, offset);
        if parsed.is_none() {
            // The contract for a checkpoint that cannot be read: start over (the hub's upsert
            // absorbs the re-read).
            tracing::warn!(checkpoint = %c, "sql checkpoint not understood; reading from the start");
        }
        parsed
    });
    let base = match from_checkpoint {
        Some(b) => b,
        None => match context.cursor.as_ref().filter(|v| !v.is_null()) {
            Some(v) => infer(v, offset).ok_or_else(|| {
                ConnectorError::Config(format!(
                    "the pipeline's cursor {v} cannot be compared with cursor_column"
                ))
            })?,
            None => return Ok(None),
        },
    };
    let Some(overlap) = overlap else {
        return Ok(Some(Bound {
            value: base,
            inclusive: false,
        }));
    };
    let value = back_by(base, overlap).map_err(ConnectorError::Config)?;
    Ok(Some(Bound {
        value,
        inclusive: true,
    }))
}

fn parse_checkpoint(checkpoint: &Value, offset: FixedOffset) -> Option<BoundValue> {
    let kind: CursorKind = serde_json::from_value(checkpoint.get("type")?.clone()).ok()?;
    parse_as(checkpoint.get("cursor")?, kind, offset)
}

fn parse_as(value: &Value, kind: CursorKind, offset: FixedOffset) -> Option<BoundValue> {
    match (kind, value) {
        (CursorKind::Integer, Value::Number(n)) => n.as_i64().map(BoundValue::Int),
        (CursorKind::Integer, Value::String(s)) => s.parse().ok().map(BoundValue::Int),
        (CursorKind::Number, Value::Number(n)) => n.as_f64().map(BoundValue::Float),
        (CursorKind::Number, Value::String(s)) => s.parse().ok().map(BoundValue::Float),
        (CursorKind::Timestamp, Value::String(s)) => parse_timestamp(s, offset),
        (CursorKind::Date, Value::String(s)) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .map(BoundValue::Date),
        (CursorKind::Text, Value::String(s)) => Some(BoundValue::Text(s.clone())),
        (CursorKind::Text, Value::Number(n)) => Some(BoundValue::Text(n.to_string())),
        _ => None,
    }
}

/// The pipeline's cursor has no kind: guess it from the value.
fn infer(value: &Value, offset: FixedOffset) -> Option<BoundValue> {
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(BoundValue::Int(i)),
            None => n.as_f64().map(BoundValue::Float),
        },
        Value::String(s) => Some(
            parse_timestamp(s, offset)
                .or_else(|| parse_as(value, CursorKind::Date, offset))
                .unwrap_or_else(|| BoundValue::Text(s.clone())),
        ),
        _ => None,
    }
}

/// RFC 3339 (converted to the configured offset), or a local time without an offset.
fn parse_timestamp(s: &str, offset: FixedOffset) -> Option<BoundValue> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(BoundValue::Timestamp(
            t.with_timezone(&offset).naive_local(),
        ));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(BoundValue::Timestamp)
}

fn back_by(value: BoundValue, overlap: &Overlap) -> Result<BoundValue, String> {
    let not_duration = |what: &str| {
        format!("overlap {overlap:?} is a duration, but cursor_column holds {what}: give a number")
    };
    Ok(match value {
        BoundValue::Int(i) => {
            let n = match overlap {
                Overlap::Integer(n) => *n,
                Overlap::Float(f) if f.fract() == 0.0 => *f as i64,
                Overlap::Float(f) => {
                    return Err(format!(
                        "overlap {f} must be a whole number for an integer cursor"
                    ));
                }
                Overlap::Duration(_) => return Err(not_duration("integers")),
            };
            BoundValue::Int(i.saturating_sub(n))
        }
        BoundValue::Float(x) => match overlap {
            Overlap::Integer(n) => BoundValue::Float(x - *n as f64),
            Overlap::Float(f) => BoundValue::Float(x - f),
            Overlap::Duration(_) => return Err(not_duration("numbers")),
        },
        BoundValue::Timestamp(t) => {
            let d = overlap.as_duration()?;
            BoundValue::Timestamp(t.checked_sub_signed(d).unwrap_or(NaiveDateTime::MIN))
        }
        // Whole days: `>=` already re-reads the last day.
        BoundValue::Date(date) => {
            let days = overlap.as_duration()?.num_days();
            BoundValue::Date(
                date.checked_sub_signed(TimeDelta::days(days))
                    .unwrap_or(NaiveDate::MIN),
            )
        }
        BoundValue::Text(t) if overlap.is_zero() => BoundValue::Text(t),
        BoundValue::Text(_) => {
            return Err(
                "overlap cannot be subtracted from a text cursor (only overlap = 0, which re-reads rows equal to the cursor)"
                    .into(),
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz() -> FixedOffset {
        FixedOffset::east_opt(7 * 3600).unwrap()
    }

    fn ctx(checkpoint: Option<Value>, cursor: Option<Value>) -> ReadContext {
        ReadContext { checkpoint, cursor }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap(), TimeDelta::minutes(5));
        assert_eq!(parse_duration("1h30m").unwrap(), TimeDelta::minutes(90));
        assert_eq!(parse_duration("2d").unwrap(), TimeDelta::days(2));
        assert_eq!(parse_duration("300").unwrap(), TimeDelta::seconds(300));
        for bad in ["", "m", "5x", "5 m", "-5m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn no_checkpoint_no_cursor_reads_everything() {
        assert_eq!(start(&ctx(None, None), None, tz()).unwrap(), None);
    }

    #[test]
    fn timestamp_checkpoint_with_overlap() {
        let c = checkpoint("2024-05-01T08:00:00+07:00".into(), CursorKind::Timestamp);
        let b = start(
            &ctx(Some(c), None),
            Some(&Overlap::Duration("5m".into())),
            tz(),
        )
        .unwrap()
        .unwrap();
        assert!(b.inclusive);
        let want = NaiveDate::from_ymd_opt(2024, 5, 1)
            .unwrap()
            .and_hms_opt(7, 55, 0)
            .unwrap();
        assert_eq!(b.value, BoundValue::Timestamp(want));
        // A UTC checkpoint is converted to the configured offset.
        let c = checkpoint("2024-05-01T01:00:00Z".into(), CursorKind::Timestamp);
        let b = start(&ctx(Some(c), None), None, tz()).unwrap().unwrap();
        assert!(!b.inclusive);
        let want = NaiveDate::from_ymd_opt(2024, 5, 1)
            .unwrap()
            .and_hms_opt(8, 0, 0)
            .unwrap();
        assert_eq!(b.value, BoundValue::Timestamp(want));
    }

    #[test]
    fn integer_cursor_and_overlap_kinds() {
        let c = checkpoint(100.into(), CursorKind::Integer);
        let b = start(
            &ctx(Some(c.clone()), None),
            Some(&Overlap::Integer(10)),
            tz(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(b.value, BoundValue::Int(90));
        assert!(
            start(
                &ctx(Some(c), None),
                Some(&Overlap::Duration("5m".into())),
                tz()
            )
            .is_err()
        );
    }

    #[test]
    fn checkpoint_wins_over_cursor_and_a_bad_one_starts_over() {
        let c = checkpoint("A-17".into(), CursorKind::Text);
        let b = start(&ctx(Some(c), Some(5.into())), None, tz())
            .unwrap()
            .unwrap();
        assert_eq!(b.value, BoundValue::Text("A-17".into()));
        let bad = serde_json::json!({"files": []});
        assert_eq!(start(&ctx(Some(bad), None), None, tz()).unwrap(), None);
        let b = start(&ctx(None, Some("2024-05-02".into())), None, tz())
            .unwrap()
            .unwrap();
        assert_eq!(
            b.value,
            BoundValue::Date(NaiveDate::from_ymd_opt(2024, 5, 2).unwrap())
        );
    }
}

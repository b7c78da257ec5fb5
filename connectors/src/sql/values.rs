//! SQL values to JSON, shared by the dialects.

use base64::Engine;
use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Number, Value};

/// `time_zone`: a fixed offset, `+07:00`, `-05:30`, `Z` or `UTC`.
pub(crate) fn parse_offset(text: &str) -> Result<FixedOffset, String> {
    let bad =
        || format!("time_zone {text:?} must be a UTC offset like \"+07:00\" (or \"Z\" / \"UTC\")");
    let t = text.trim();
    if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") {
        return FixedOffset::east_opt(0).ok_or_else(bad);
    }
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: i32 = h.parse().map_err(|_| bad())?;
    let m: i32 = m.parse().map_err(|_| bad())?;
    if h > 15 || m > 59 {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

/// `+07:00` for an offset (what both servers accept as a session time zone).
pub(crate) fn offset_text(offset: FixedOffset) -> String {
    let secs = offset.local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let secs = secs.abs();
    format!("{sign}{:02}:{:02}", secs / 3600, (secs % 3600) / 60)
}

/// A timestamp without time zone, read as a local time at `offset`.
pub(crate) fn local_timestamp(t: NaiveDateTime, offset: FixedOffset) -> Value {
    match offset.from_local_datetime(&t).single() {
        Some(dt) => Value::String(dt.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        // Unreachable for a fixed offset (no gaps or folds); kept total anyway.
        None => Value::String(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
    }
}

/// A timestamp with time zone, in UTC (`Z`), with as many fraction digits as it has.
pub(crate) fn utc_timestamp(t: DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

pub(crate) fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        // JSON has no NaN or infinity: keep them as the text PostgreSQL uses.
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// A `real`/`FLOAT` through its shortest decimal form, so 1.1 stays 1.1 rather than
/// 1.100000023841858.
pub(crate) fn float32(f: f32) -> Value {
    float(f.to_string().parse::<f64>().unwrap_or(f64::from(f)))
}

/// Digits a decimal may have and still go as a JSON number: every decimal of at most 15
/// significant digits survives the trip through an f64 and back.
const EXACT_DIGITS: usize = 15;

/// A NUMERIC/DECIMAL from its exact text (`-1234.5600`, `NaN`). Without a fraction and within
/// i64 it is a JSON integer; with at most 15 significant digits a JSON float; otherwise a JSON
/// string holding the exact value, so no digit is ever lost silently.
pub(crate) fn decimal(text: &str) -> Value {
    let t = text.trim();
    let (int_part, frac_part) = match t.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (t, None),
    };
    if frac_part.is_none()
        && let Ok(i) = int_part.parse::<i64>()
    {
        return Value::Number(i.into());
    }
    let is_decimal = !int_part.trim_start_matches(['-', '+']).is_empty()
        && int_part
            .trim_start_matches(['-', '+'])
            .bytes()
            .all(|b| b.is_ascii_digit())
        && frac_part.is_none_or(|f| f.bytes().all(|b| b.is_ascii_digit()));
    if !is_decimal {
        // NaN, Infinity: as the server wrote them.
        return Value::String(t.to_string());
    }
    let digits: String = int_part
        .trim_start_matches(['-', '+'])
        .chars()
        .chain(frac_part.unwrap_or("").trim_end_matches('0').chars())
        .collect();
    let significant = digits.trim_start_matches('0').len();
    if significant <= EXACT_DIGITS
        && let Ok(f) = t.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(t.to_string())
}

/// Binary values (bytea, BLOB) as standard base64 with padding.
pub(crate) fn bytes(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+07:00").unwrap().local_minus_utc(), 7 * 3600);
        assert_eq!(
            parse_offset("-05:30").unwrap().local_minus_utc(),
            -(5 * 3600 + 1800)
        );
        assert_eq!(parse_offset("Z").unwrap().local_minus_utc(), 0);
        for bad in ["7", "+7:00", "Asia/Ho_Chi_Minh", "+25:00", ""] {
            assert!(parse_offset(bad).is_err(), "{bad:?}");
        }
        assert_eq!(offset_text(parse_offset("-05:30").unwrap()), "-05:30");
        assert_eq!(offset_text(parse_offset("+07:00").unwrap()), "+07:00");
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal("12"), serde_json::json!(12));
        assert_eq!(decimal("-12.50"), serde_json::json!(-12.5));
        assert_eq!(decimal("0.000100"), serde_json::json!(0.0001));
        assert_eq!(
            decimal("123456789012.345"),
            serde_json::json!(123456789012.345)
        );
        assert_eq!(decimal("9223372036854775807"), serde_json::json!(i64::MAX));
        assert_eq!(
            decimal("1234567890123.4567"),
            Value::String("1234567890123.4567".into())
        );
        assert_eq!(
            decimal("99999999999999999999"),
            Value::String("99999999999999999999".into())
        );
        assert_eq!(decimal("NaN"), Value::String("NaN".into()));
    }

    #[test]
    fn floats() {
        assert_eq!(float32(1.1), serde_json::json!(1.1));
        assert_eq!(float(f64::NAN), Value::String("NaN".into()));
        assert_eq!(float(f64::NEG_INFINITY), Value::String("-Infinity".into()));
    }
}

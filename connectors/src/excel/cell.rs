//! One cell's value as the text a record carries.
//!
//! Text cells pass through untouched (no trimming, no normalization: a name with its
//! diacritics arrives exactly as typed). Cells the workbook has already typed are given in
//! their natural text form, so that the hub can type them by the dataset's schema like CSV
//! fields: numbers as Excel shows them at full precision, booleans as `true` / `false`, and
//! date cells as ISO 8601.

use calamine::{Data, ExcelDateTime};
use chrono::{FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};

#[derive(Debug, Clone, PartialEq)]
pub enum CellText {
    /// No value (an empty cell or an empty string): the field is left out.
    Empty,
    Text(String),
    /// An error value (`#DIV/0!`, `#REF!`) or a date that cannot exist; the row is unreadable.
    Error(String),
}

pub fn cell_text(data: &Data, offset: FixedOffset) -> CellText {
    match data {
        Data::Empty => CellText::Empty,
        Data::String(s) if s.is_empty() => CellText::Empty,
        Data::String(s) => CellText::Text(s.clone()),
        Data::Int(i) => CellText::Text(i.to_string()),
        Data::Float(f) => CellText::Text(number_text(*f)),
        Data::Bool(b) => CellText::Text(b.to_string()),
        Data::DateTime(dt) => date_text(dt, offset),
        // Already ISO 8601 in the file (cells of type `d`).
        Data::DateTimeIso(s) | Data::DurationIso(s) => CellText::Text(s.clone()),
        Data::Error(e) => CellText::Error(e.to_string()),
    }
}

/// A number as Excel shows it: Excel keeps 15 significant digits, so binary noise past them
/// (`0.30000000000000004` from `=0.1+0.2`) is not part of the value a clerk sees. Rust's
/// shortest round-trip form then prints `12.0` as `12` and never uses an exponent.
pub fn number_text(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let rounded: f64 = format!("{value:.14e}").parse().unwrap_or(value);
    if rounded == 0.0 {
        // Also turns -0 into 0.
        return "0".into();
    }
    rounded.to_string()
}

/// A date cell: `YYYY-MM-DD` when it has no time of day; otherwise
/// `YYYY-MM-DDTHH:MM:SS±HH:MM`, the wall-clock time in the workbook read at the configured
/// offset (Excel stores no zone); `HH:MM:SS` for a time without a date (serial below 1) and
/// for a duration (`[h]:mm:ss`, hours may pass 24).
fn date_text(dt: &ExcelDateTime, offset: FixedOffset) -> CellText {
    let serial = dt.as_f64();
    if dt.is_duration() {
        return CellText::Text(duration_text(serial));
    }
    let (year, month, day, hour, minute, second, milli) = dt.to_ymd_hms_milli();
    if (0.0..1.0).contains(&serial) {
        return CellText::Text(format!("{hour:02}:{minute:02}:{second:02}"));
    }
    let Some(date) = NaiveDate::from_ymd_opt(year.into(), month.into(), day.into()) else {
        // calamine keeps Excel's phantom 1900-02-29 (serial 60, the 1900 leap-year bug).
        return CellText::Error(format!(
            "date serial {serial} is {year:04}-{month:02}-{day:02}, a day that does not exist"
        ));
    };
    if (hour, minute, second, milli) == (0, 0, 0, 0) {
        return CellText::Text(date.format("%Y-%m-%d").to_string());
    }
    let time =
        NaiveTime::from_hms_milli_opt(hour.into(), minute.into(), second.into(), milli.into())
            .unwrap_or(NaiveTime::MIN);
    let local = NaiveDateTime::new(date, time);
    let format = if milli == 0 {
        "%Y-%m-%dT%H:%M:%S%:z"
    } else {
        "%Y-%m-%dT%H:%M:%S%.3f%:z"
    };
    match local.and_local_timezone(offset).single() {
        Some(at) => CellText::Text(at.format(format).to_string()),
        None => CellText::Error(format!("date-time {local} is out of range")),
    }
}

fn duration_text(days: f64) -> String {
    let total = (days * 86_400.0).round();
    let sign = if total < 0.0 { "-" } else { "" };
    // Bounded by Excel's date range, so the cast cannot overflow.
    let total = total.abs() as u64;
    format!(
        "{sign}{:02}:{:02}:{:02}",
        total / 3600,
        total / 60 % 60,
        total % 60
    )
}

/// `time_zone` setting: `+07:00`, `-05:30`, `Z` (the connectors' one offset syntax).
pub use crate::time::parse_offset;

/// `A` → 0, `Z` → 25, `AA` → 26.
pub fn column_index(letters: &str) -> Option<u32> {
    if letters.is_empty() || letters.len() > 3 {
        return None;
    }
    let mut n: u32 = 0;
    for c in letters.chars() {
        if !c.is_ascii_alphabetic() {
            return None;
        }
        n = n * 26 + (c.to_ascii_uppercase() as u32 - 'A' as u32 + 1);
    }
    Some(n - 1)
}

/// 0 → `A`, 26 → `AA`.
pub fn column_letters(mut index: u32) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::ExcelDateTimeType;

    fn vn() -> FixedOffset {
        parse_offset("+07:00").unwrap()
    }

    #[test]
    fn numbers_without_float_noise() {
        assert_eq!(number_text(12.0), "12");
        assert_eq!(number_text(0.1), "0.1");
        assert_eq!(number_text(0.1 + 0.2), "0.3");
        assert_eq!(number_text(-0.0), "0");
        assert_eq!(number_text(1234567.25), "1234567.25");
        assert_eq!(number_text(1e20), "100000000000000000000");
    }

    #[test]
    fn dates_times_and_the_phantom_leap_day() {
        let at = |v| {
            date_text(
                &ExcelDateTime::new(v, ExcelDateTimeType::DateTime, false),
                vn(),
            )
        };
        assert_eq!(at(45748.0), CellText::Text("2025-04-01".into()));
        assert_eq!(
            at(45748.5),
            CellText::Text("2025-04-01T12:00:00+07:00".into())
        );
        assert_eq!(at(0.375), CellText::Text("09:00:00".into()));
        assert_eq!(at(59.0), CellText::Text("1900-02-28".into()));
        assert_eq!(at(61.0), CellText::Text("1900-03-01".into()));
        assert!(matches!(at(60.0), CellText::Error(_)));
        let span = ExcelDateTime::new(1.5, ExcelDateTimeType::TimeDelta, false);
        assert_eq!(date_text(&span, vn()), CellText::Text("36:00:00".into()));
    }

    #[test]
    fn offsets_and_columns() {
        assert_eq!(parse_offset("+07:00").unwrap().local_minus_utc(), 7 * 3600);
        assert_eq!(
            parse_offset("-05:30").unwrap().local_minus_utc(),
            -(5 * 3600 + 1800)
        );
        assert!(parse_offset("7").is_none());
        assert!(parse_offset("+7:00").is_none());
        assert_eq!(column_index("A"), Some(0));
        assert_eq!(column_index("h"), Some(7));
        assert_eq!(column_index("AA"), Some(26));
        assert_eq!(column_index("A1"), None);
        assert_eq!(column_letters(0), "A");
        assert_eq!(column_letters(25), "Z");
        assert_eq!(column_letters(26), "AA");
        assert_eq!(column_letters(27), "AB");
    }
}

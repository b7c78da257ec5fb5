//! Durations and instants in connector settings and source data.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate};

/// `"90s"`, `"15m"`, `"6h"`, `"7d"`: the same spelling as the hub's pipeline durations.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (use s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    n.checked_mul(factor)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// An ISO 8601 instant with an offset (`2025-04-03T09:15:00+07:00`, `...Z`, fractions allowed).
/// Instants are compared parsed, never as text: `08:00+07:00` is earlier than `02:00Z`.
pub fn parse_instant(text: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(text.trim()).ok()
}

/// A settings value that is a date (`2025-01-01`, midnight at `offset`) or an instant.
pub fn parse_date_or_instant(text: &str, offset: FixedOffset) -> Option<DateTime<FixedOffset>> {
    if let Some(t) = parse_instant(text) {
        return Some(t);
    }
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    date.and_hms_opt(0, 0, 0)?
        .and_local_timezone(offset)
        .single()
}

/// `+07:00`, `-05:30`, `Z`.
pub fn parse_offset(text: &str) -> Option<FixedOffset> {
    let text = text.trim();
    if text == "Z" || text == "+00:00" {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 14 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// The larger of two instants given as text, keeping the source's own spelling of it.
pub fn later(current: Option<String>, candidate: &str) -> Option<String> {
    let Some(new) = parse_instant(candidate) else {
        return current;
    };
    match current.as_deref().and_then(parse_instant) {
        Some(old) if old >= new => current,
        _ => Some(candidate.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5").is_err());
    }

    #[test]
    fn instants_compare_by_time_not_text() {
        let max = later(None, "2025-04-01T08:00:00+07:00");
        // 02:00Z is 09:00+07:00: later, although it sorts earlier as text.
        let max = later(max, "2025-04-01T02:00:00Z");
        assert_eq!(max.as_deref(), Some("2025-04-01T02:00:00Z"));
        let max = later(max, "not a time");
        assert_eq!(max.as_deref(), Some("2025-04-01T02:00:00Z"));
        let max = later(max, "2025-04-01T08:30:00+07:00");
        assert_eq!(max.as_deref(), Some("2025-04-01T02:00:00Z"));
    }

    #[test]
    fn offsets_and_dates() {
        let ict = parse_offset("+07:00").unwrap();
        assert_eq!(ict.local_minus_utc(), 25_200);
        assert_eq!(parse_offset("Z").unwrap().local_minus_utc(), 0);
        assert!(parse_offset("07:00").is_none());
        let d = parse_date_or_instant("2025-01-01", ict).unwrap();
        assert_eq!(d.to_rfc3339(), "2025-01-01T00:00:00+07:00");
        assert!(parse_date_or_instant("01/01/2025", ict).is_none());
    }
}

//! Reporting periods: a month `2025-04`, a quarter `2025-Q2`, a half-year `2025-H1`, a year
//! `2025`. Bounds are `[start, end)` at local midnight in the hub's time zone.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    Month,
    Quarter,
    HalfYear,
    Year,
}

impl PeriodKind {
    /// Months in one period of this kind.
    fn months(self) -> u32 {
        match self {
            PeriodKind::Month => 1,
            PeriodKind::Quarter => 3,
            PeriodKind::HalfYear => 6,
            PeriodKind::Year => 12,
        }
    }
}

/// One period; `index` is the month (1–12), quarter (1–4) or half (1–2), 1 for a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    pub kind: PeriodKind,
    pub year: i32,
    pub index: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "kỳ báo cáo không hợp lệ {text:?}: {reason_vi} / invalid period {text:?}: {reason_en} (expected YYYY-MM, YYYY-Qn, YYYY-Hn or YYYY, e.g. 2025-04, 2025-Q2, 2025-H1, 2025)"
)]
pub struct PeriodError {
    pub text: String,
    pub reason_vi: &'static str,
    pub reason_en: &'static str,
}

/// Years accepted: wide enough for any archive, narrow enough to keep dates valid.
const YEARS: std::ops::RangeInclusive<i32> = 1900..=2999;

impl Period {
    pub fn parse(text: &str) -> Result<Period, PeriodError> {
        let fail = |reason_vi, reason_en| PeriodError {
            text: text.to_string(),
            reason_vi,
            reason_en,
        };
        let (year_text, rest) = match text.split_once('-') {
            Some((y, r)) => (y, Some(r)),
            None => (text, None),
        };
        if year_text.len() != 4 || !year_text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail("năm phải có 4 chữ số", "the year must be 4 digits"));
        }
        let year: i32 = year_text
            .parse()
            .map_err(|_| fail("năm không đọc được", "the year is unreadable"))?;
        if !YEARS.contains(&year) {
            return Err(fail(
                "năm phải từ 1900 đến 2999",
                "the year must be between 1900 and 2999",
            ));
        }
        let number = |digits: &str, len: usize| -> Option<u32> {
            (digits.len() == len && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse().ok())
                .flatten()
        };
        let (kind, index) = match rest {
            None => (PeriodKind::Year, 1),
            Some(r) if r.starts_with('Q') => match number(&r[1..], 1) {
                Some(q @ 1..=4) => (PeriodKind::Quarter, q),
                _ => {
                    return Err(fail(
                        "quý phải từ Q1 đến Q4",
                        "the quarter must be Q1 to Q4",
                    ));
                }
            },
            Some(r) if r.starts_with('H') => match number(&r[1..], 1) {
                Some(h @ 1..=2) => (PeriodKind::HalfYear, h),
                _ => {
                    return Err(fail(
                        "nửa năm phải là H1 hoặc H2",
                        "the half must be H1 or H2",
                    ));
                }
            },
            Some(r) => match number(r, 2) {
                Some(m @ 1..=12) => (PeriodKind::Month, m),
                _ => {
                    return Err(fail(
                        "tháng phải từ 01 đến 12",
                        "the month must be 01 to 12",
                    ));
                }
            },
        };
        Ok(Period { kind, year, index })
    }

    /// The first month, as (year, month).
    pub fn first_month(&self) -> (i32, u32) {
        (self.year, (self.index - 1) * self.kind.months() + 1)
    }

    /// The month after the last, as (year, month): the exclusive end.
    pub fn end_month(&self) -> (i32, u32) {
        let (y, m) = self.first_month();
        let next = m + self.kind.months();
        if next > 12 {
            (y + 1, next - 12)
        } else {
            (y, next)
        }
    }

    pub fn start_date(&self) -> NaiveDate {
        let (y, m) = self.first_month();
        // Valid by construction: the year is in range and the month is 1–12.
        NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The day after the last day (exclusive end).
    pub fn end_date(&self) -> NaiveDate {
        let (y, m) = self.end_month();
        NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(NaiveDate::MAX)
    }

    /// `[start, end)`: local midnights in `tz`, as instants.
    pub fn bounds(&self, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            local_midnight(self.start_date(), tz),
            local_midnight(self.end_date(), tz),
        )
    }

    /// The period of the same kind just before this one.
    pub fn previous(&self) -> Period {
        let count = 12 / self.kind.months();
        if self.index > 1 {
            Period {
                index: self.index - 1,
                ..*self
            }
        } else {
            Period {
                year: self.year - 1,
                index: count,
                ..*self
            }
        }
    }

    /// The period of `kind` that holds `day`.
    pub fn containing(kind: PeriodKind, day: NaiveDate) -> Period {
        Period {
            kind,
            year: day.year(),
            index: (day.month() - 1) / kind.months() + 1,
        }
    }

    /// The latest period of `kind` that has ended at `now` (in `tz`): what a schedule that
    /// fires after a period ends generates.
    pub fn latest_ended(kind: PeriodKind, now: DateTime<Utc>, tz: Tz) -> Period {
        Period::containing(kind, now.with_timezone(&tz).date_naive()).previous()
    }

    /// Whether the period is over at `now`.
    pub fn has_ended(&self, now: DateTime<Utc>, tz: Tz) -> bool {
        self.bounds(tz).1 <= now
    }

    /// "Tháng 4 năm 2025", "Quý II năm 2025", "6 tháng đầu năm 2025", "Năm 2025".
    pub fn label(&self) -> String {
        match self.kind {
            PeriodKind::Month => format!("Tháng {} năm {}", self.index, self.year),
            PeriodKind::Quarter => {
                let roman = ["I", "II", "III", "IV"][(self.index as usize - 1).min(3)];
                format!("Quý {roman} năm {}", self.year)
            }
            PeriodKind::HalfYear if self.index == 1 => format!("6 tháng đầu năm {}", self.year),
            PeriodKind::HalfYear => format!("6 tháng cuối năm {}", self.year),
            PeriodKind::Year => format!("Năm {}", self.year),
        }
    }
}

fn local_midnight(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    // Asia/Ho_Chi_Minh has no DST; elsewhere a midnight that falls in a gap starts at the
    // first valid instant after it.
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                .earliest()
        })
        .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc))
}

impl fmt::Display for Period {
    /// The canonical text: `2025-04`, `2025-Q2`, `2025-H1`, `2025`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PeriodKind::Month => write!(f, "{}-{:02}", self.year, self.index),
            PeriodKind::Quarter => write!(f, "{}-Q{}", self.year, self.index),
            PeriodKind::HalfYear => write!(f, "{}-H{}", self.year, self.index),
            PeriodKind::Year => write!(f, "{}", self.year),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HCM: Tz = chrono_tz::Asia::Ho_Chi_Minh;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_quarter_runs_from_the_first_of_april_to_the_first_of_july_local_time() {
        let q2 = Period::parse("2025-Q2").unwrap();
        assert_eq!(q2.kind, PeriodKind::Quarter);
        assert_eq!(
            q2.start_date(),
            NaiveDate::from_ymd_opt(2025, 4, 1).unwrap()
        );
        assert_eq!(q2.end_date(), NaiveDate::from_ymd_opt(2025, 7, 1).unwrap());
        let (start, end) = q2.bounds(HCM);
        assert_eq!(start, utc("2025-03-31T17:00:00Z"));
        assert_eq!(end, utc("2025-06-30T17:00:00Z"));
        assert_eq!(q2.label(), "Quý II năm 2025");
        assert_eq!(q2.to_string(), "2025-Q2");
        assert_eq!(q2.previous().to_string(), "2025-Q1");
        assert_eq!(
            Period::parse("2025-Q1").unwrap().previous().to_string(),
            "2024-Q4"
        );
    }

    #[test]
    fn months_halves_and_years() {
        let april = Period::parse("2025-04").unwrap();
        assert_eq!(april.label(), "Tháng 4 năm 2025");
        assert_eq!(
            april.end_date(),
            NaiveDate::from_ymd_opt(2025, 5, 1).unwrap()
        );
        let december = Period::parse("2024-12").unwrap();
        assert_eq!(
            december.end_date(),
            NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
        );
        assert_eq!(Period::parse("2025-01").unwrap().previous(), december);

        let h1 = Period::parse("2025-H1").unwrap();
        assert_eq!(h1.label(), "6 tháng đầu năm 2025");
        assert_eq!(
            h1.start_date(),
            NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
        );
        assert_eq!(h1.end_date(), NaiveDate::from_ymd_opt(2025, 7, 1).unwrap());
        assert_eq!(h1.previous().to_string(), "2024-H2");
        assert_eq!(
            Period::parse("2025-H2").unwrap().label(),
            "6 tháng cuối năm 2025"
        );

        let year = Period::parse("2025").unwrap();
        assert_eq!(year.label(), "Năm 2025");
        assert_eq!(
            year.end_date(),
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
        );
        assert_eq!(year.bounds(HCM).0, utc("2024-12-31T17:00:00Z"));
        assert_eq!(year.previous().to_string(), "2024");
    }

    #[test]
    fn bad_periods_are_refused_with_the_reason() {
        for bad in [
            "2025-13",
            "2025-00",
            "2025-4",
            "2025-Q5",
            "2025-Q0",
            "2025-H3",
            "25-04",
            "2025-",
            "",
            "abcd",
            "2025-04-01",
            "2025-q2",
            "3000",
            "2025-Q12",
            "２０２５",
        ] {
            let e = Period::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("invalid period"), "{bad}: {e}");
        }
        let e = Period::parse("2025-13").unwrap_err();
        assert!(e.to_string().contains("tháng phải từ 01 đến 12"), "{e}");
    }

    #[test]
    fn the_latest_ended_period_is_the_one_before_today() {
        // 1 April 2025, 00:30 in Hà Nội is still 31 March in UTC.
        let now = utc("2025-03-31T17:30:00Z");
        assert_eq!(
            Period::latest_ended(PeriodKind::Month, now, HCM).to_string(),
            "2025-03"
        );
        assert_eq!(
            Period::latest_ended(PeriodKind::Quarter, now, HCM).to_string(),
            "2025-Q1"
        );
        assert_eq!(
            Period::latest_ended(PeriodKind::HalfYear, now, HCM).to_string(),
            "2024-H2"
        );
        assert_eq!(
            Period::latest_ended(PeriodKind::Year, now, HCM).to_string(),
            "2024"
        );
        let april = Period::parse("2025-04").unwrap();
        assert!(!april.has_ended(now, HCM));
        assert!(april.has_ended(utc("2025-04-30T17:00:00Z"), HCM));
    }
}

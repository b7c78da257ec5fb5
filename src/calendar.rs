//! The working-day calendar: weekly rest days, holiday blocks and make-up working Saturdays,
//! from a TOML file (`calendar/holidays_vn.toml`), because the Government announces them
//! year by year. Deadlines follow Civil Code 2015 arts. 147–148: the day of receipt does not
//! count, and a period ends at the end of its last working day.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate, Weekday};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("cannot read the calendar {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("calendar {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    schema_version: u32,
    #[allow(dead_code)]
    timezone: String,
    weekly_rest_days: Vec<String>,
    #[serde(default, rename = "holiday")]
    holidays: Vec<HolidayBlock>,
    #[serde(default, rename = "makeup_workday")]
    makeup: Vec<MakeupDay>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayBlock {
    #[allow(dead_code)]
    year: i32,
    name: String,
    start: String,
    end: String,
    status: String,
    #[serde(default)]
    #[allow(dead_code)]
    source: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MakeupDay {
    date: String,
    #[serde(default)]
    #[allow(dead_code)]
    reason: Option<String>,
    status: String,
    #[serde(default)]
    #[allow(dead_code)]
    source: Option<String>,
}

/// Which days are working days for state agencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingCalendar {
    rest: Vec<Weekday>,
    /// Days off inside announced holiday blocks (status official, statutory or estimated).
    off: BTreeSet<NaiveDate>,
    /// Rest days that are working days (ngày làm bù).
    makeup: BTreeSet<NaiveDate>,
    rule: DeadlineRule,
}

/// How a period of working days is counted (`[calendar]` in `config.toml`). The default is
/// the Civil Code's (2015, arts. 147–148): the day of receipt does not count, and the period
/// ends at the end of its last working day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeadlineRule {
    /// Count the day of receipt as the first day when it is a working day.
    pub receipt_day_counts: bool,
    pub ends: DeadlineEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineEnd {
    /// 23:59:59.999999 local time of the last day.
    #[default]
    EndOfDay,
    /// The time of day of the receipt, on the last day.
    SameTime,
}

/// A holiday's status that makes its days off. `pending` (proposed, not yet law) does not.
fn in_force(status: &str) -> bool {
    matches!(status, "official" | "statutory" | "estimated")
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name {
        "Mon" => Weekday::Mon,
        "Tue" => Weekday::Tue,
        "Wed" => Weekday::Wed,
        "Thu" => Weekday::Thu,
        "Fri" => Weekday::Fri,
        "Sat" => Weekday::Sat,
        "Sun" => Weekday::Sun,
        _ => return None,
    })
}

impl WorkingCalendar {
    /// Monday to Friday, no holidays: what applies when no calendar file is configured.
    pub fn weekdays_only() -> Self {
        WorkingCalendar {
            rest: vec![Weekday::Sat, Weekday::Sun],
            off: BTreeSet::new(),
            makeup: BTreeSet::new(),
            rule: DeadlineRule::default(),
        }
    }

    /// The same calendar with another way of counting deadlines.
    pub fn with_rule(mut self, rule: DeadlineRule) -> Self {
        self.rule = rule;
        self
    }

    pub fn rule(&self) -> DeadlineRule {
        self.rule
    }

    pub fn load(path: &Path) -> Result<Self, CalendarError> {
        let text = std::fs::read_to_string(path).map_err(|source| CalendarError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, CalendarError> {
        let invalid = |message: String| CalendarError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: CalendarFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if file.schema_version != 1 {
            return Err(invalid(format!(
                "schema_version {} is not 1",
                file.schema_version
            )));
        }
        let rest = file
            .weekly_rest_days
            .iter()
            .map(|d| {
                weekday(d).ok_or_else(|| invalid(format!("weekly rest day {d:?} is not Mon..Sun")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let date = |text: &str, what: &str| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| invalid(format!("{what}: {text:?} is not YYYY-MM-DD")))
        };
        let mut off = BTreeSet::new();
        for h in &file.holidays {
            let (start, end) = (date(&h.start, &h.name)?, date(&h.end, &h.name)?);
            if end < start {
                return Err(invalid(format!("{}: ends before it starts", h.name)));
            }
            if !in_force(&h.status) {
                continue;
            }
            let mut day = start;
            while day <= end {
                off.insert(day);
                day = day
                    .succ_opt()
                    .ok_or_else(|| invalid(format!("{}: date out of range", h.name)))?;
            }
        }
        let mut makeup = BTreeSet::new();
        for m in &file.makeup {
            let day = date(&m.date, "makeup_workday")?;
            if in_force(&m.status) {
                makeup.insert(day);
            }
        }
        Ok(WorkingCalendar {
            rest,
            off,
            makeup,
            rule: DeadlineRule::default(),
        })
    }

    pub fn is_working_day(&self, day: NaiveDate) -> bool {
        if self.makeup.contains(&day) {
            return true;
        }
        !self.rest.contains(&day.weekday()) && !self.off.contains(&day)
    }

    /// The `n`-th working day after `from` (`from` itself does not count); `n = 0` is `from`.
    pub fn add_working_days(&self, from: NaiveDate, n: u32) -> NaiveDate {
        let mut day = from;
        let mut left = n;
        if self.rule.receipt_day_counts && n > 0 && self.is_working_day(from) {
            left -= 1;
        }
        while left > 0 {
            match day.succ_opt() {
                Some(next) => day = next,
                None => return day,
            }
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        day
    }

    /// Working days after `a` up to and including `b` (negative when `b` is before `a`).
    pub fn working_days_between(&self, a: NaiveDate, b: NaiveDate) -> i64 {
        let (low, high, sign) = if a <= b { (a, b, 1) } else { (b, a, -1) };
        let mut count = 0i64;
        let mut day = low;
        while day < high {
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
            if self.is_working_day(day) {
                count += 1;
            }
        }
        sign * count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar() -> WorkingCalendar {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("calendar/holidays_vn.toml");
        WorkingCalendar::load(&path).unwrap()
    }

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    /// The deadline vectors of the calendar's README: 3 working days, receipt day not counted.
    #[test]
    fn three_working_day_deadlines() {
        let c = calendar();
        for (received, due) in [
            ("2025-04-03", "2025-04-09"), // Hùng Vương block 5–7/4
            ("2025-04-25", "2025-04-29"), // Sat 26/4 is a make-up working day
            ("2025-04-23", "2025-04-26"), // the deadline falls on the make-up Saturday
            ("2025-04-29", "2025-05-07"), // 30/4–4/5 block
            ("2026-01-09", "2026-01-13"), // Sat 10/1/2026 is a make-up day
            ("2026-02-12", "2026-02-24"), // Tết 14–22/2/2026
            ("2026-04-23", "2026-04-29"), // Mon 27/4/2026 compensatory day
        ] {
            assert_eq!(
                c.add_working_days(d(received), 3),
                d(due),
                "received {received}"
            );
            assert_eq!(
                c.working_days_between(d(received), d(due)),
                3,
                "received {received}"
            );
        }
    }

    #[test]
    fn holidays_make_up_days_pending_days_and_year_boundaries() {
        let c = calendar();
        assert!(!c.is_working_day(d("2026-02-16")), "Tết");
        assert!(!c.is_working_day(d("2025-09-02")), "Quốc khánh");
        assert!(c.is_working_day(d("2026-01-10")), "make-up Saturday");
        assert!(!c.is_working_day(d("2026-01-17")), "an ordinary Saturday");
        assert!(
            c.is_working_day(d("2026-11-24")),
            "24/11 is pending, not yet a day off"
        );
        // New Year 2026 is off 1–4 January: the first working day of 2026 is Monday 5th.
        assert_eq!(c.add_working_days(d("2025-12-31"), 1), d("2026-01-05"));
        assert_eq!(c.working_days_between(d("2025-12-31"), d("2026-01-05")), 1);
        assert_eq!(c.working_days_between(d("2026-01-05"), d("2025-12-31")), -1);
        assert_eq!(c.add_working_days(d("2025-04-03"), 0), d("2025-04-03"));
    }

    #[test]
    fn a_broken_calendar_says_what_is_wrong() {
        let e = WorkingCalendar::parse(
            Path::new("c.toml"),
            "schema_version = 1\ntimezone = \"Asia/Ho_Chi_Minh\"\nweekly_rest_days = [\"Sun\"]\n\
             [[holiday]]\nyear = 2025\nname = \"X\"\nstart = \"2025-13-01\"\nend = \"2025-13-02\"\nstatus = \"official\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("2025-13-01"), "{e}");
    }

    #[test]
    fn the_deadline_rule_is_configurable() {
        let default = calendar();
        let counting = calendar().with_rule(DeadlineRule {
            receipt_day_counts: true,
            ends: DeadlineEnd::EndOfDay,
        });
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        // Thu 3/4/2025: not counted → Fri 4, Tue 8, Wed 9; counted → Thu 3, Fri 4, Tue 8.
        assert_eq!(
            default.add_working_days(day("2025-04-03"), 3),
            day("2025-04-09")
        );
        assert_eq!(
            counting.add_working_days(day("2025-04-03"), 3),
            day("2025-04-08")
        );
        // Received on a day off, the receipt day cannot count: the same either way.
        assert_eq!(
            counting.add_working_days(day("2025-04-06"), 3),
            day("2025-04-10")
        );
        assert_eq!(
            default.add_working_days(day("2025-04-06"), 3),
            day("2025-04-10")
        );
    }
}

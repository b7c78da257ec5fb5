//! Times as citizens' apps and departments write them, read in the hub's time zone (the one
//! parser of such text: `route_report`'s date uses it too).
//!
//! `local_timestamp(text)` reads ISO 8601 with an offset as it says, ISO 8601 without an
//! offset (or a bare `yyyy-mm-dd`) and Vietnamese `dd/mm/yyyy HH:MM[:SS]` (or a bare
//! `dd/mm/yyyy`) as local time in the
//! hub's zone, and gives NULL for anything else. `timestamp_form(text)` tells which of those it
//! was (`iso_offset`, `iso_local`, `vn_local`, `unreadable`), so a pipeline can flag a record
//! whose time had to be taken as local instead of refusing it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::DataType;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    IsoOffset,
    IsoLocal,
    VnLocal,
}

impl Form {
    fn name(self) -> &'static str {
        match self {
            Form::IsoOffset => "iso_offset",
            Form::IsoLocal => "iso_local",
            Form::VnLocal => "vn_local",
        }
    }
}

const ISO_LOCAL: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
];
const VN_LOCAL: &[&str] = &["%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M"];

/// The instant `text` names, and how it was written; `None` when it is no time we read.
pub fn parse(text: &str, tz: Tz) -> Option<(DateTime<Utc>, Form)> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some((t.with_timezone(&Utc), Form::IsoOffset));
    }
    let local = |naive: NaiveDateTime| tz.from_local_datetime(&naive).earliest();
    for format in ISO_LOCAL {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return local(naive).map(|t| (t.with_timezone(&Utc), Form::IsoLocal));
        }
    }
    for format in VN_LOCAL {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return local(naive).map(|t| (t.with_timezone(&Utc), Form::VnLocal));
        }
    }
    // A bare date: the start of that local day.
    let (day, form) = match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(day) => (day, Form::IsoLocal),
        Err(_) => (
            NaiveDate::parse_from_str(text, "%d/%m/%Y").ok()?,
            Form::VnLocal,
        ),
    };
    local(day.and_time(chrono::NaiveTime::MIN)).map(|t| (t.with_timezone(&Utc), form))
}

#[derive(Debug, PartialEq, Eq)]
struct LocalTime {
    form_only: bool,
    time_zone: Tz,
    signature: Signature,
}

impl std::hash::Hash for LocalTime {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.form_only.hash(state);
        self.time_zone.name().hash(state);
    }
}

impl ScalarUDFImpl for LocalTime {
    fn name(&self) -> &str {
        if self.form_only {
            "timestamp_form"
        } else {
            "local_timestamp"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if !matches!(
            args.first(),
            Some(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null)
        ) {
            return plan_err!("{} takes one text argument, not {args:?}", self.name());
        }
        Ok(if self.form_only {
            DataType::Utf8
        } else {
            crate::normalize::timestamp_type()
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let text = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let parsed = text.iter().map(|t| t.map(|t| parse(t, self.time_zone)));
        let out: ArrayRef = if self.form_only {
            Arc::new(StringArray::from_iter(parsed.map(|p| {
                p.map(|p| p.map_or("unreadable", |(_, form)| form.name()))
            })))
        } else {
            Arc::new(
                TimestampMicrosecondArray::from_iter(
                    parsed.map(|p| p.flatten().map(|(t, _)| t.timestamp_micros())),
                )
                .with_timezone("UTC"),
            )
        };
        debug_assert_eq!(out.len(), text.len());
        Ok(ColumnarValue::Array(out))
    }
}

/// `local_timestamp` and `timestamp_form` in the hub's time zone.
pub fn functions(time_zone: Tz) -> Vec<ScalarUDF> {
    [false, true]
        .into_iter()
        .map(|form_only| {
            ScalarUDF::from(LocalTime {
                form_only,
                time_zone,
                signature: Signature::any(1, Volatility::Immutable),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Option<(String, Form)> {
        parse(text, chrono_tz::Asia::Ho_Chi_Minh).map(|(t, f)| (t.to_rfc3339(), f))
    }

    #[test]
    fn each_form_is_read_in_the_right_zone() {
        assert_eq!(
            at("2025-04-03T09:15:00+07:00"),
            Some(("2025-04-03T02:15:00+00:00".into(), Form::IsoOffset))
        );
        assert_eq!(
            at("2025-05-05T10:00:00"),
            Some(("2025-05-05T03:00:00+00:00".into(), Form::IsoLocal))
        );
        assert_eq!(
            at("09/05/2025 09:00"),
            Some(("2025-05-09T02:00:00+00:00".into(), Form::VnLocal))
        );
        assert_eq!(
            at("31/12/2025"),
            Some(("2025-12-30T17:00:00+00:00".into(), Form::VnLocal))
        );
        assert_eq!(
            at("2025-06-30"),
            Some(("2025-06-29T17:00:00+00:00".into(), Form::IsoLocal))
        );
        assert_eq!(
            at("2025-06-30 23:30"),
            Some(("2025-06-30T16:30:00+00:00".into(), Form::IsoLocal))
        );
        assert_eq!(at("hôm qua"), None);
        assert_eq!(at("31/02/2025 10:00"), None, "no such day");
    }
}

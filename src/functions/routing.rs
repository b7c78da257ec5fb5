//! SQL functions over the administrative units (`units::Units`) and report text:
//!
//! - `unit_at(lon, lat [, at])`: the code of the unit whose area holds the point on `at`'s
//!   local date, or NULL.
//! - `unit_from_text(text [, at])`: the code of the unit `text` names (folded), or NULL.
//! - `unit_name(code [, at])`: the name of unit `code` valid on `at`.
//! - `route_report(lon, lat, reported_name, at)`: a struct `{code, name, handling_agency,
//!   method, note}` (see `units::route`); read as `route_report(...)['code']`.
//! - `vi_text_check(text)`: `vietnamese`, `missing_diacritics`, `other_language` or `empty`.
//!
//! `at` is a DATE, a timestamp (any time zone: its local date in the hub's zone counts) or
//! text (RFC 3339; without an offset it is local time; `dd/mm/yyyy [HH:MM]` too); without
//! `at`, today. NULL in, NULL out (`route_report` always answers: with no date it routes to
//! the fallback unit).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, StringArray, StringBuilder, StructArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Fields, Float64Type};
use chrono::NaiveDate;
use chrono_tz::Tz;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, SimpleScalarUDF,
    TypeSignature, Volatility,
};

use crate::units::{NameMatch, Units};
use crate::vi_text::check_language;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    UnitAt,
    UnitFromText,
    UnitName,
    RouteReport,
}

#[derive(Debug)]
struct UnitFunction {
    kind: Kind,
    units: Arc<Units>,
    time_zone: Tz,
    signature: Signature,
}

impl PartialEq for UnitFunction {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && Arc::ptr_eq(&self.units, &other.units)
            && self.time_zone == other.time_zone
    }
}

impl Eq for UnitFunction {}

impl Hash for UnitFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.time_zone.name().hash(state);
    }
}

/// The fields of `route_report`'s answer, in order.
pub fn route_fields() -> Fields {
    Fields::from(
        ["code", "name", "handling_agency", "method", "note"]
            .map(|name| Field::new(name, DataType::Utf8, true))
            .to_vec(),
    )
}

fn is_coordinate(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Null) || is_text(t)
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

fn is_when(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) | DataType::Null
    ) || is_text(t)
}

fn floats(array: &ArrayRef) -> Result<Float64Array> {
    Ok(cast(array, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

fn texts(array: &ArrayRef) -> Result<StringArray> {
    Ok(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
}

/// A date-time written as text, read as `local_timestamp` reads it (one parser for the
/// hub: the routing date and the deadline never disagree), as a local date.
fn parse_when(text: &str, tz: Tz) -> Option<NaiveDate> {
    crate::local_time::parse(text, tz).map(|(t, _)| t.with_timezone(&tz).date_naive())
}

/// The local date of each row of `at`, or today's for every row without one.
fn days(at: Option<&ArrayRef>, rows: usize, tz: Tz) -> Result<Vec<Option<NaiveDate>>> {
    match at {
        None => Ok(vec![
            Some(chrono::Utc::now().with_timezone(&tz).date_naive());
            rows
        ]),
        Some(a) if matches!(a.data_type(), DataType::Date64) => {
            super::local_dates(&cast(a, &DataType::Date32)?, tz)
        }
        Some(a) if is_text(a.data_type()) && !matches!(a.data_type(), DataType::Null) => {
            Ok(texts(a)?
                .iter()
                .map(|t| t.and_then(|t| parse_when(t, tz)))
                .collect())
        }
        Some(a) => super::local_dates(a, tz),
    }
}

impl ScalarUDFImpl for UnitFunction {
    fn name(&self) -> &str {
        match self.kind {
            Kind::UnitAt => "unit_at",
            Kind::UnitFromText => "unit_from_text",
            Kind::UnitName => "unit_name",
            Kind::RouteReport => "route_report",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let ok = match self.kind {
            Kind::UnitAt => {
                is_coordinate(&args[0])
                    && is_coordinate(&args[1])
                    && args.get(2).is_none_or(is_when)
            }
            Kind::UnitFromText | Kind::UnitName => {
                is_text(&args[0]) && args.get(1).is_none_or(is_when)
            }
            Kind::RouteReport => {
                is_coordinate(&args[0])
                    && is_coordinate(&args[1])
                    && is_text(&args[2])
                    && is_when(&args[3])
            }
        };
        if !ok {
            return Err(DataFusionError::Plan(format!(
                "{}: arguments of types {args:?} are not accepted",
                self.name()
            )));
        }
        Ok(match self.kind {
            Kind::RouteReport => DataType::Struct(route_fields()),
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let rows = arrays.first().map_or(args.number_rows, |a| a.len());
        let units = &self.units;
        let tz = self.time_zone;
        let out: ArrayRef = match self.kind {
            Kind::UnitAt => {
                let (lon, lat) = (floats(&arrays[0])?, floats(&arrays[1])?);
                let days = days(arrays.get(2), rows, tz)?;
                Arc::new(StringArray::from_iter((0..rows).map(|i| {
                    if lon.is_null(i) || lat.is_null(i) {
                        return None;
                    }
                    match units
                        .at_point(lon.value(i), lat.value(i), days[i]?)
                        .as_slice()
                    {
                        [one] => Some(one.code.clone()),
                        // Outside, or in overlapping areas: no unit is certain.
                        _ => None,
                    }
                })))
            }
            Kind::UnitFromText => {
                let text = texts(&arrays[0])?;
                let days = days(arrays.get(1), rows, tz)?;
                Arc::new(StringArray::from_iter(text.iter().zip(&days).map(
                    |(text, day)| match units.from_text(text?, (*day)?, false) {
                        NameMatch::One(unit) => Some(unit.code.clone()),
                        NameMatch::None | NameMatch::Many(_) => None,
                    },
                )))
            }
            Kind::UnitName => {
                let code = texts(&arrays[0])?;
                let days = days(arrays.get(1), rows, tz)?;
                Arc::new(StringArray::from_iter(code.iter().zip(&days).map(
                    |(code, day)| Some(units.by_code(code?.trim(), (*day)?)?.name.clone()),
                )))
            }
            Kind::RouteReport => {
                let (lon, lat) = (floats(&arrays[0])?, floats(&arrays[1])?);
                let reported = texts(&arrays[2])?;
                let days = days(arrays.get(3), rows, tz)?;
                let mut columns: [StringBuilder; 5] = Default::default();
                for (i, day) in days.iter().enumerate() {
                    let value = |a: &Float64Array| a.is_valid(i).then(|| a.value(i));
                    let route = units.route(
                        value(&lon),
                        value(&lat),
                        reported.is_valid(i).then(|| reported.value(i)),
                        *day,
                    );
                    let [code, name, agency, method, note] = &mut columns;
                    match route {
                        Some(r) => {
                            code.append_value(r.code);
                            name.append_value(r.name);
                            agency.append_option(r.handling_agency);
                            method.append_value(r.method.as_str());
                            note.append_option(r.note);
                        }
                        // Only without any unit at all (no fallback): nothing to say.
                        None => {
                            for c in [code, name, agency, method, note] {
                                c.append_null();
                            }
                        }
                    }
                }
                let columns: Vec<ArrayRef> = columns
                    .iter_mut()
                    .map(|c| Arc::new(c.finish()) as ArrayRef)
                    .collect();
                Arc::new(StructArray::try_new(route_fields(), columns, None)?)
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// The unit functions of one hub, over its units.
pub fn unit_functions(units: Arc<Units>, time_zone: Tz) -> Vec<ScalarUDF> {
    let any = |counts: &[usize]| {
        Signature::one_of(
            counts.iter().map(|n| TypeSignature::Any(*n)).collect(),
            // Not immutable: without `at` the answer depends on today's date.
            Volatility::Stable,
        )
    };
    [
        (Kind::UnitAt, any(&[2, 3])),
        (Kind::UnitFromText, any(&[1, 2])),
        (Kind::UnitName, any(&[1, 2])),
        (Kind::RouteReport, any(&[4])),
    ]
    .into_iter()
    .map(|(kind, signature)| {
        ScalarUDF::new_from_impl(UnitFunction {
            kind,
            units: units.clone(),
            time_zone,
            signature,
        })
    })
    .collect()
}

/// `vi_text_check(text)`: see `vi_text::check_language`.
pub fn vi_text_check_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(SimpleScalarUDF::new_with_signature(
        "vi_text_check",
        // Any string type (a Delta table's columns read as Utf8View), or NULL.
        Signature::string(1, Volatility::Immutable),
        DataType::Utf8,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let text = texts(&arrays[0])?;
            let out: StringArray = text
                .iter()
                .map(|t| Some(check_language(t).as_str()))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_dates_are_local_unless_they_say_otherwise() {
        let tz = chrono_tz::Asia::Ho_Chi_Minh;
        let d = |t: &str| parse_when(t, tz).map(|d| d.to_string());
        assert_eq!(d("2025-06-30T20:00:00Z").as_deref(), Some("2025-07-01"));
        assert_eq!(
            d("2025-06-30T20:00:00+07:00").as_deref(),
            Some("2025-06-30")
        );
        assert_eq!(d("2025-06-30T23:30:00").as_deref(), Some("2025-06-30"));
        assert_eq!(d("09/05/2025 09:00").as_deref(), Some("2025-05-09"));
        assert_eq!(d("2025-05-09").as_deref(), Some("2025-05-09"));
        assert_eq!(d("hôm qua"), None);
    }
}

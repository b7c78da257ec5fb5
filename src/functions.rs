//! SQL functions of the hub, usable in every query, pipeline transform, check and share view.
//! Here: the working-day calendar, `is_working_day(d)`, `add_working_days(d, n)`,
//! `working_days_between(a, b)`. A `DATE` is taken as is; a timestamp is first turned into the
//! hub's local date. `add_working_days` on a timestamp answers the end of that local working
//! day (the end of a deadline), as a UTC timestamp.
//!
//! ```sql
//! SELECT add_working_days(DATE '2025-04-03', 3);              -- 2025-04-09 (Hùng Vương block)
//! SELECT working_days_between(DATE '2025-04-29', DATE '2025-05-07');  -- 3
//! SELECT is_working_day(DATE '2025-04-26');                   -- true (make-up Saturday)
//! ```
//!
//! The administrative-unit and report-routing functions are in `routing.rs`; the masks in
//! `sharing::masks`; `functions::context` registers them all.

mod routing;

pub use routing::{route_fields, unit_functions, vi_text_check_udf};

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Int64Array, TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use chrono::{NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::calendar::{DeadlineEnd, WorkingCalendar};
use crate::units::Units;

const EPOCH_DAY: i32 = 719_163;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    IsWorkingDay,
    AddWorkingDays,
    WorkingDaysBetween,
}

#[derive(Debug)]
struct CalendarFunction {
    kind: Kind,
    calendar: Arc<WorkingCalendar>,
    time_zone: Tz,
    signature: Signature,
}

impl PartialEq for CalendarFunction {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && Arc::ptr_eq(&self.calendar, &other.calendar)
            && self.time_zone == other.time_zone
    }
}

impl Eq for CalendarFunction {}

impl Hash for CalendarFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.time_zone.name().hash(state);
    }
}

fn is_datetime(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) | DataType::Null
    )
}

fn plan_error(message: String) -> DataFusionError {
    DataFusionError::Plan(message)
}

/// Local dates of a date or timestamp column.
fn local_dates(array: &ArrayRef, tz: Tz) -> Result<Vec<Option<NaiveDate>>> {
    match array.data_type() {
        DataType::Date32 => Ok(array
            .as_primitive::<Date32Type>()
            .iter()
            .map(|d| d.and_then(|d| NaiveDate::from_num_days_from_ce_opt(d + EPOCH_DAY)))
            .collect()),
        DataType::Null => Ok(vec![None; array.len()]),
        _ => Ok(local_datetimes(array, tz)?
            .into_iter()
            .map(|t| t.map(|t| t.date()))
            .collect()),
    }
}

/// Local times of day of a timestamp column.
fn local_times(array: &ArrayRef, tz: Tz) -> Result<Vec<Option<NaiveTime>>> {
    Ok(local_datetimes(array, tz)?
        .into_iter()
        .map(|t| t.map(|t| t.time()))
        .collect())
}

/// A timestamp column (any unit or zone) as local date-times in `tz`.
fn local_datetimes(array: &ArrayRef, tz: Tz) -> Result<Vec<Option<chrono::NaiveDateTime>>> {
    let micros = cast(
        array,
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    )?;
    Ok(micros
        .as_primitive::<TimestampMicrosecondType>()
        .iter()
        .map(|t| {
            t.and_then(chrono::DateTime::from_timestamp_micros)
                .map(|t| t.with_timezone(&tz).naive_local())
        })
        .collect())
}

fn days(date: NaiveDate) -> i32 {
    chrono::Datelike::num_days_from_ce(&date) - EPOCH_DAY
}

impl ScalarUDFImpl for CalendarFunction {
    fn name(&self) -> &str {
        match self.kind {
            Kind::IsWorkingDay => "is_working_day",
            Kind::AddWorkingDays => "add_working_days",
            Kind::WorkingDaysBetween => "working_days_between",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let ok = match self.kind {
            Kind::IsWorkingDay => is_datetime(&args[0]),
            Kind::AddWorkingDays => is_datetime(&args[0]) && args[1].is_integer(),
            Kind::WorkingDaysBetween => is_datetime(&args[0]) && is_datetime(&args[1]),
        };
        if !ok {
            return Err(plan_error(format!(
                "{}: arguments of types {args:?} are not accepted",
                self.name()
            )));
        }
        Ok(match self.kind {
            Kind::IsWorkingDay => DataType::Boolean,
            Kind::WorkingDaysBetween => DataType::Int64,
            Kind::AddWorkingDays => match &args[0] {
                DataType::Date32 | DataType::Date64 => DataType::Date32,
                _ => crate::normalize::timestamp_type(),
            },
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let tz = self.time_zone;
        let first = local_dates(&arrays[0], tz)?;
        let out: ArrayRef = match self.kind {
            Kind::IsWorkingDay => Arc::new(BooleanArray::from_iter(
                first
                    .iter()
                    .map(|d| d.map(|d| self.calendar.is_working_day(d))),
            )),
            Kind::WorkingDaysBetween => {
                let second = local_dates(&arrays[1], tz)?;
                Arc::new(Int64Array::from_iter(first.iter().zip(&second).map(
                    |(a, b)| Some(self.calendar.working_days_between((*a)?, (*b)?)),
                )))
            }
            Kind::AddWorkingDays => {
                let n = cast(&arrays[1], &DataType::Int64)?;
                let n = n.as_primitive::<Int64Type>();
                let due: Vec<Option<NaiveDate>> = first
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let count = u32::try_from(n.is_valid(i).then(|| n.value(i))?).ok()?;
                        Some(self.calendar.add_working_days((*d)?, count))
                    })
                    .collect();
                if matches!(arrays[0].data_type(), DataType::Date32 | DataType::Date64) {
                    Arc::new(Date32Array::from_iter(due.iter().map(|d| d.map(days))))
                } else {
                    // The end of the last working day, local time: 23:59:59.999999; or, with
                    // `ends = "same_time"`, the time of day of the receipt.
                    let end_of_day = NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999)
                        .unwrap_or(NaiveTime::MIN);
                    let times = match self.calendar.rule().ends {
                        DeadlineEnd::EndOfDay => vec![Some(end_of_day); due.len()],
                        DeadlineEnd::SameTime => local_times(&arrays[0], tz)?,
                    };
                    Arc::new(
                        TimestampMicrosecondArray::from_iter(due.iter().zip(&times).map(
                            |(d, time)| {
                                d.zip(*time)
                                    .and_then(|(d, time)| {
                                        tz.from_local_datetime(&d.and_time(time)).earliest()
                                    })
                                    .map(|t| t.timestamp_micros())
                            },
                        ))
                        .with_timezone("UTC"),
                    )
                }
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// The calendar functions for one hub.
pub fn calendar_functions(calendar: Arc<WorkingCalendar>, time_zone: Tz) -> Vec<ScalarUDF> {
    [
        (Kind::IsWorkingDay, 1),
        (Kind::AddWorkingDays, 2),
        (Kind::WorkingDaysBetween, 2),
    ]
    .into_iter()
    .map(|(kind, arity)| {
        ScalarUDF::new_from_impl(CalendarFunction {
            kind,
            calendar: calendar.clone(),
            time_zone,
            signature: Signature::any(arity, Volatility::Immutable),
        })
    })
    .collect()
}

/// Registers every function of the hub (masks, calendar, units and routing, text checks,
/// JSON) in `ctx`: queries, transforms and share views all see the same ones.
pub fn register_all(
    ctx: &mut datafusion::prelude::SessionContext,
    calendar: Arc<WorkingCalendar>,
    units: Arc<Units>,
    time_zone: Tz,
) {
    ctx.register_udf(crate::sharing::masks::mask_phone_udf());
    ctx.register_udf(crate::sharing::masks::mask_initials_udf());
    for f in crate::local_time::functions(time_zone) {
        ctx.register_udf(f);
    }
    for f in calendar_functions(calendar, time_zone) {
        ctx.register_udf(f);
    }
    for f in unit_functions(units, time_zone) {
        ctx.register_udf(f);
    }
    ctx.register_udf(vi_text_check_udf());
    if let Err(e) = datafusion_functions_json::register_all(ctx) {
        tracing::error!(error = %e, "the JSON functions could not be registered");
    }
}

/// A context with the hub's functions and settings and no tables.
pub fn context(
    calendar: Arc<WorkingCalendar>,
    units: Arc<Units>,
    time_zone: Tz,
) -> datafusion::prelude::SessionContext {
    // `reorder_filters`: cheap predicates first in a scan (a top-k's dynamic filter on a
    // timestamp before a `LIKE` over text).
    let config = datafusion::prelude::SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .set_bool("datafusion.execution.parquet.reorder_filters", true);
    // Partial aggregations grouped by dictionary-encoded columns group by dictionary entry
    // (`storage::dictionary_aggregate`); the rule runs after DataFusion's own.
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(crate::storage::DictionaryAggregation))
        .build();
    let mut ctx = datafusion::prelude::SessionContext::new_with_state(state);
    ctx.add_optimizer_rule(crate::query::utc_interval::UtcIntervalAsDuration::rule());
    register_all(&mut ctx, calendar, units, time_zone);
    ctx
}

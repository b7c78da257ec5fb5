//! PostgreSQL: the session and the row → JSON mapping.
//!
//! The query runs in `BEGIN READ ONLY` with `SET LOCAL statement_timeout` and a `SET LOCAL TIME
//! ZONE` equal to `time_zone` (so a cursor bound as a local time compares correctly with
//! `timestamptz` columns). `SET LOCAL` rather than startup parameters, so the settings hold
//! behind a connection pooler too.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use futures::StreamExt;
use serde_json::{Map, Value};
use sqlx_core::column::Column;
use sqlx_core::connection::{ConnectOptions, Connection};
use sqlx_core::decode::Decode;
use sqlx_core::row::Row;
use sqlx_core::type_info::TypeInfo;
use sqlx_core::value::ValueRef;
use sqlx_postgres::{
    PgConnectOptions, PgConnection, PgRow, PgTypeInfo, PgTypeKind, PgValueFormat, PgValueRef,
    Postgres,
};

use super::cursor::{Bound, BoundValue, CursorKind};
use super::{RowStream, Settings, SqlRow, classify, column_error, connect, values};
use crate::ConnectorError;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Text,
    Json,
    Bytea,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Uuid,
}

impl Kind {
    fn of(ty: &PgTypeInfo) -> Option<Kind> {
        match ty.kind() {
            // An enum's values travel as their labels.
            PgTypeKind::Enum(_) => return Some(Kind::Text),
            PgTypeKind::Domain(base) => return Kind::of(base),
            _ => {}
        }
        if ty.name().eq_ignore_ascii_case("citext") {
            return Some(Kind::Text);
        }
        Some(match ty.oid()?.0 {
            16 => Kind::Bool,
            17 => Kind::Bytea,
            // "char", name, text, xml, bpchar, varchar, unknown (an untyped literal)
            18 | 19 | 25 | 142 | 705 | 1042 | 1043 => Kind::Text,
            20 => Kind::Int8,
            21 => Kind::Int2,
            23 => Kind::Int4,
            26 => Kind::Oid,
            114 | 3802 => Kind::Json,
            700 => Kind::Float4,
            701 => Kind::Float8,
            1082 => Kind::Date,
            1083 => Kind::Time,
            1114 => Kind::Timestamp,
            1184 => Kind::Timestamptz,
            1700 => Kind::Numeric,
            2950 => Kind::Uuid,
            _ => return None,
        })
    }

    fn cursor_kind(self) -> Option<CursorKind> {
        Some(match self {
            Kind::Int2 | Kind::Int4 | Kind::Int8 | Kind::Oid => CursorKind::Integer,
            Kind::Float4 | Kind::Float8 | Kind::Numeric => CursorKind::Number,
            Kind::Timestamp | Kind::Timestamptz => CursorKind::Timestamp,
            Kind::Date => CursorKind::Date,
            Kind::Text => CursorKind::Text,
            _ => return None,
        })
    }
}

struct Plan {
    columns: Vec<(String, String, Kind)>,
    cursor: Option<(usize, CursorKind)>,
}

/// The columns' kinds, decided once from the first row: an unmapped type fails the run at
/// once, naming the column and telling how to cast it.
fn plan(row: &PgRow, settings: &Settings, target: &str) -> Result<Plan, ConnectorError> {
    let mut columns = Vec::with_capacity(row.columns().len());
    for column in row.columns() {
        let name = column.name().to_string();
        let ty = column.type_info();
        let Some(kind) = Kind::of(ty) else {
            return Err(column_error(
                target,
                &name,
                ty.name(),
                format!(
                    "the postgres connector does not map this type to JSON; cast it in the query, e.g. {name}::text or to_json({name})"
                ),
            ));
        };
        columns.push((name, ty.name().to_string(), kind));
    }
    let cursor = match &settings.config.cursor_column {
        None => None,
        Some(wanted) => {
            let Some(index) = columns.iter().position(|(n, _, _)| n == wanted) else {
                return Err(ConnectorError::Config(format!(
                    "cursor_column {wanted:?} is not a column of the query's result (columns: {})",
                    columns
                        .iter()
                        .map(|c| c.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            let (name, sql_type, kind) = &columns[index];
            let Some(ck) = kind.cursor_kind() else {
                return Err(column_error(
                    target,
                    name,
                    sql_type,
                    "cannot be a cursor: use an integer, timestamp, date or text column",
                ));
            };
            Some((index, ck))
        }
    };
    Ok(Plan { columns, cursor })
}

pub(super) fn rows(
    settings: Arc<Settings>,
    url: String,
    target: Arc<str>,
    bound: Option<Bound>,
) -> RowStream {
    async_stream::try_stream! {
        let s = &*settings;
        let options = PgConnectOptions::from_str(&url)
            .map_err(|e| classify(e, &target, s))?
            .application_name("iochub");
        let mut conn = connect(options.connect(), &target, s).await?;
        // Our own numbers only in this text: the timeout and the validated offset.
        let setup = format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = {}; SET LOCAL TIME ZONE INTERVAL '{}' HOUR TO MINUTE",
            s.config.query_timeout_seconds.saturating_mul(1000),
            values::offset_text(s.offset),
        );
        execute(&mut conn, &setup)
            .await
            .map_err(|e| classify(e, &target, s))?;

        let sql = s.sql_text(bound.as_ref());
        let mut query = sqlx_core::query::query::<Postgres>(&sql);
        if let Some(b) = &bound {
            query = match &b.value {
                BoundValue::Int(v) => query.bind(*v),
                BoundValue::Float(v) => query.bind(*v),
                BoundValue::Timestamp(v) => query.bind(*v),
                BoundValue::Date(v) => query.bind(*v),
                BoundValue::Text(v) => query.bind(v.clone()),
            };
        }
        let mut stream = query.fetch(&mut conn);
        let mut plan_once: Option<Plan> = None;
        while let Some(row) = stream.next().await {
            let row = row.map_err(|e| classify(e, &target, s))?;
            let plan = match plan_once.take() {
                Some(p) => p,
                None => plan(&row, s, &target)?,
            };
            let converted = convert(&row, &plan, s, &target)?;
            plan_once = Some(plan);
            yield converted;
        }
        drop(stream);
        // Nothing to commit in a read-only transaction; a failure here changes nothing read.
        let _ = execute(&mut conn, "ROLLBACK").await;
        let _ = conn.close().await;
    }
    .boxed()
}

/// A statement through the simple-query protocol. Through `Executor::execute`, which returns
/// a boxed future: `RawSql::execute` is an `async fn` generic over the executor whose future
/// the compiler cannot prove `Send` inside `try_stream!`.
fn execute<'c>(
    conn: &'c mut PgConnection,
    sql: &'c str,
) -> futures::future::BoxFuture<'c, Result<(), sqlx_core::Error>> {
    use sqlx_core::executor::Executor;
    let running = conn.execute(sqlx_core::raw_sql::raw_sql(sql));
    Box::pin(async move { running.await.map(|_| ()) })
}

fn convert(row: &PgRow, plan: &Plan, s: &Settings, target: &str) -> Result<SqlRow, ConnectorError> {
    let mut values = Map::with_capacity(plan.columns.len());
    let mut bytes = 0u64;
    let mut cursor = None;
    for (i, (name, sql_type, kind)) in plan.columns.iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| classify(e, target, s))?;
        let value = if raw.is_null() {
            Value::Null
        } else {
            bytes += raw.as_bytes().map(|b| b.len() as u64).unwrap_or(0);
            value(raw, *kind, s).map_err(|e| column_error(target, name, sql_type, e))?
        };
        if let Some((ci, ck)) = plan.cursor
            && ci == i
            && !value.is_null()
        {
            cursor = Some((value.clone(), ck));
        }
        values.insert(name.clone(), value);
    }
    Ok(SqlRow {
        values,
        cursor,
        bytes,
    })
}

fn decode<'r, T: Decode<'r, Postgres>>(raw: PgValueRef<'r>) -> Result<T, String> {
    T::decode(raw).map_err(|e| format!("cannot decode: {e}"))
}

fn value(raw: PgValueRef<'_>, kind: Kind, s: &Settings) -> Result<Value, String> {
    Ok(match kind {
        Kind::Bool => Value::Bool(decode(raw)?),
        Kind::Int2 => decode::<i16>(raw)?.into(),
        Kind::Int4 => decode::<i32>(raw)?.into(),
        Kind::Int8 => decode::<i64>(raw)?.into(),
        Kind::Oid => decode::<sqlx_postgres::types::Oid>(raw)?.0.into(),
        Kind::Float4 => values::float32(decode(raw)?),
        Kind::Float8 => values::float(decode(raw)?),
        Kind::Numeric => values::decimal(&numeric_text(&raw)?),
        Kind::Text => Value::String(decode::<&str>(raw)?.to_string()),
        Kind::Json => decode::<Value>(raw)?,
        Kind::Bytea => values::bytes(decode::<&[u8]>(raw)?),
        Kind::Date => Value::String(decode::<NaiveDate>(raw)?.format("%Y-%m-%d").to_string()),
        Kind::Time => Value::String(decode::<NaiveTime>(raw)?.to_string()),
        Kind::Timestamp => values::local_timestamp(decode::<NaiveDateTime>(raw)?, s.offset),
        Kind::Timestamptz => values::utc_timestamp(decode::<DateTime<Utc>>(raw)?),
        Kind::Uuid => Value::String(uuid_text(&raw)?),
    })
}

/// The exact decimal text of a NUMERIC (sqlx decodes it only through rust_decimal or
/// bigdecimal, which we do not pull in for this).
fn numeric_text(raw: &PgValueRef<'_>) -> Result<String, String> {
    let buf = raw.as_bytes().map_err(|e| e.to_string())?;
    if raw.format() == PgValueFormat::Text {
        return String::from_utf8(buf.to_vec()).map_err(|e| e.to_string());
    }
    numeric_from_binary(buf)
}

/// PostgreSQL's binary NUMERIC: ndigits, weight, sign, dscale (each 16 bits), then ndigits
/// base-10000 digits, the first of weight `weight`.
fn numeric_from_binary(buf: &[u8]) -> Result<String, String> {
    use std::fmt::Write;
    let word = |i: usize| -> Result<u16, String> {
        buf.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| format!("numeric value of {} bytes is truncated", buf.len()))
    };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    let digits = (0..ndigits)
        .map(|i| word(4 + i))
        .collect::<Result<Vec<u16>, String>>()?;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        other => return Err(format!("numeric value has an unknown sign {other:#x}")),
    }
    let digit = |i: i32| -> u16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                let _ = write!(out, "{}", digit(i));
            } else {
                let _ = write!(out, "{:04}", digit(i));
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::with_capacity(dscale + 4);
        let mut i = weight + 1;
        while fraction.len() < dscale {
            let _ = write!(fraction, "{:04}", digit(i));
            i += 1;
        }
        fraction.truncate(dscale);
        out.push('.');
        out.push_str(&fraction);
    }
    Ok(out)
}

fn uuid_text(raw: &PgValueRef<'_>) -> Result<String, String> {
    let b = raw.as_bytes().map_err(|e| e.to_string())?;
    if raw.format() == PgValueFormat::Text {
        return String::from_utf8(b.to_vec()).map_err(|e| e.to_string());
    }
    if b.len() != 16 {
        return Err(format!("uuid of {} bytes", b.len()));
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// (label for the message, transient, is our statement timeout) from a SQLSTATE.
pub(super) fn classify_code(code: Option<&str>, message: &str) -> (String, bool, bool) {
    let Some(code) = code else {
        return ("no SQLSTATE".into(), false, false);
    };
    let timeout = code == "57014" && message.contains("statement timeout");
    let transient = code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (too many connections, disk full)
        || matches!(code, "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "57014");
    (format!("SQLSTATE {code}"), transient, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> String {
        let mut b = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale].iter().chain(digits) {
            b.extend_from_slice(&w.to_be_bytes());
        }
        numeric_from_binary(&b).unwrap()
    }

    #[test]
    fn numeric_binary() {
        // 12345.6789 = [1, 2345, 6789], weight 1
        assert_eq!(numeric(3, 1, 0, 4, &[1, 2345, 6789]), "12345.6789");
        // -0.0001 = [1], weight -1
        assert_eq!(numeric(1, -1, 0x4000, 4, &[1]), "-0.0001");
        // 0.00000012 = [12] at weight -2 → 0.0000 0012
        assert_eq!(numeric(1, -2, 0, 8, &[12]), "0.00000012");
        // 10^8 = [1] at weight 2, no trailing digits stored
        assert_eq!(numeric(1, 2, 0, 0, &[1]), "100000000");
        assert_eq!(numeric(0, 0, 0, 2, &[]), "0.00");
        assert_eq!(numeric(0, 0, 0xC000, 0, &[]), "NaN");
        assert!(numeric_from_binary(&[0, 2, 0, 0]).is_err());
    }

    #[test]
    fn sqlstate_classes() {
        assert!(!classify_code(Some("42601"), "syntax error").1);
        assert!(classify_code(Some("40P01"), "deadlock").1);
        let (_, t, timeout) = classify_code(
            Some("57014"),
            "canceling statement due to statement timeout",
        );
        assert!(t && timeout);
    }
}

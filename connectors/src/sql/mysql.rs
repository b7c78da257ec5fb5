//! MySQL and MariaDB: the session and the row → JSON mapping.
//!
//! The session's `time_zone` is set to the configured offset: DATETIME values are read as
//! local times at that offset, TIMESTAMP values (stored in UTC by the server) arrive converted
//! to it and are turned back into UTC, and a cursor bound as a local time compares correctly
//! with both. The statement timeout is MariaDB's `max_statement_time` or MySQL's
//! `max_execution_time`; the query then runs in `START TRANSACTION READ ONLY`.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use futures::StreamExt;
use serde_json::{Map, Value};
use sqlx_core::column::Column;
use sqlx_core::connection::{ConnectOptions, Connection};
use sqlx_core::decode::Decode;
use sqlx_core::error::{BoxDynError, DatabaseError, UnexpectedNullError};
use sqlx_core::row::Row;
use sqlx_core::type_info::TypeInfo;
use sqlx_core::value::ValueRef;
use sqlx_mysql::types::MySqlTime;
use sqlx_mysql::{
    MySql, MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlRow, MySqlValueRef,
};

use super::cursor::{Bound, BoundValue, CursorKind};
use super::{RowStream, Settings, SqlRow, classify, column_error, connect, values};
use crate::ConnectorError;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Null,
    /// TINYINT(1), MySQL's BOOLEAN.
    Bool,
    Int,
    UInt,
    Float,
    Double,
    Decimal,
    Text,
    Bytes,
    Bit,
    Json,
    Date,
    Time,
    DateTime,
    Timestamp,
}

impl Kind {
    /// By the name the driver gives the column type (it tells text from binary strings by
    /// the column's binary flag).
    fn of(name: &str) -> Option<Kind> {
        Some(match name {
            "NULL" => Kind::Null,
            "BOOLEAN" => Kind::Bool,
            "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => Kind::Int,
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
            | "BIGINT UNSIGNED" => Kind::UInt,
            "FLOAT" => Kind::Float,
            "DOUBLE" => Kind::Double,
            "DECIMAL" => Kind::Decimal,
            "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
            | "SET" => Kind::Text,
            "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => Kind::Bytes,
            "BIT" => Kind::Bit,
            "JSON" => Kind::Json,
            "DATE" => Kind::Date,
            "TIME" => Kind::Time,
            "DATETIME" => Kind::DateTime,
            "TIMESTAMP" => Kind::Timestamp,
            _ => return None,
        })
    }

    fn cursor_kind(self) -> Option<CursorKind> {
        Some(match self {
            Kind::Int | Kind::UInt => CursorKind::Integer,
            Kind::Float | Kind::Double | Kind::Decimal => CursorKind::Number,
            Kind::DateTime | Kind::Timestamp => CursorKind::Timestamp,
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

/// The columns' kinds, decided once from the first row.
fn plan(row: &MySqlRow, settings: &Settings, target: &str) -> Result<Plan, ConnectorError> {
    let mut columns = Vec::with_capacity(row.columns().len());
    for column in row.columns() {
        let name = column.name().to_string();
        let sql_type = column.type_info().name().to_string();
        let Some(kind) = Kind::of(&sql_type) else {
            return Err(column_error(
                target,
                &name,
                &sql_type,
                format!(
                    "the mysql connector does not map this type to JSON; convert it in the query, e.g. ST_AsText({name}) or CAST({name} AS CHAR)"
                ),
            ));
        };
        columns.push((name, sql_type, kind));
    }
    let cursor = match &settings.config.cursor_column {
        None => None,
        Some(wanted) => {
            // MySQL compares column names without regard to case.
            let Some(index) = columns
                .iter()
                .position(|(n, _, _)| n.eq_ignore_ascii_case(wanted))
            else {
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
                    "cannot be a cursor: use an integer, datetime, date or text column",
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
        let options = MySqlConnectOptions::from_str(&url)
            .map_err(|e| classify(e, &target, s))?
            .timezone(Some(values::offset_text(s.offset)))
            // Keep the server's own sql_mode: PIPES_AS_CONCAT would change what `||` means in
            // a query written for this database.
            .pipes_as_concat(false)
            .no_engine_substitution(false);
        let mut conn = connect(options.connect(), &target, s).await?;

        let version = server_version(&mut conn)
            .await
            .map_err(|e| classify(e, &target, s))?;
        let seconds = s.config.query_timeout_seconds;
        let timeout = if version.to_ascii_lowercase().contains("mariadb") {
            format!("SET SESSION max_statement_time = {seconds}")
        } else {
            format!("SET SESSION max_execution_time = {}", seconds.saturating_mul(1000))
        };
        for statement in [timeout.as_str(), "START TRANSACTION READ ONLY"] {
            execute(&mut conn, statement)
                .await
                .map_err(|e| classify(e, &target, s))?;
        }

        let sql = s.sql_text(bound.as_ref());
        let mut query = sqlx_core::query::query::<MySql>(&sql);
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
    conn: &'c mut MySqlConnection,
    sql: &'c str,
) -> futures::future::BoxFuture<'c, Result<(), sqlx_core::Error>> {
    use sqlx_core::executor::Executor;
    let running = conn.execute(sqlx_core::raw_sql::raw_sql(sql));
    Box::pin(async move { running.await.map(|_| ()) })
}

fn server_version(
    conn: &mut MySqlConnection,
) -> futures::future::BoxFuture<'_, Result<String, sqlx_core::Error>> {
    Box::pin(async move {
        sqlx_core::query_scalar::query_scalar("SELECT VERSION()")
            .fetch_one(conn)
            .await
    })
}

fn convert(
    row: &MySqlRow,
    plan: &Plan,
    s: &Settings,
    target: &str,
) -> Result<SqlRow, ConnectorError> {
    let mut values = Map::with_capacity(plan.columns.len());
    let mut bytes = 0u64;
    let mut cursor = None;
    for (i, (name, sql_type, kind)) in plan.columns.iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| classify(e, target, s))?;
        let value = if raw.is_null() {
            Value::Null
        } else {
            value(raw, *kind, s, &mut bytes).map_err(|e| column_error(target, name, sql_type, e))?
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

fn decode<'r, T: Decode<'r, MySql>>(raw: MySqlValueRef<'r>) -> Result<T, String> {
    T::decode(raw).map_err(|e| format!("cannot decode: {e}"))
}

/// MySQL's zero dates (`0000-00-00`) decode as "unexpected null": they become JSON null.
fn zero_date_as_null<T>(
    decoded: Result<T, BoxDynError>,
    to_json: impl FnOnce(T) -> Value,
) -> Result<Value, String> {
    match decoded {
        Ok(v) => Ok(to_json(v)),
        Err(e) if e.is::<UnexpectedNullError>() => Ok(Value::Null),
        Err(e) => Err(format!("cannot decode: {e}")),
    }
}

fn value(
    raw: MySqlValueRef<'_>,
    kind: Kind,
    s: &Settings,
    bytes: &mut u64,
) -> Result<Value, String> {
    // Sizes are approximate (the fixed-size binary forms are counted at 8 bytes).
    *bytes += 8;
    Ok(match kind {
        Kind::Null => Value::Null,
        Kind::Bool => Value::Bool(decode::<i8>(raw)? != 0),
        Kind::Int => decode::<i64>(raw)?.into(),
        Kind::UInt => decode::<u64>(raw)?.into(),
        Kind::Float => values::float32(decode(raw)?),
        Kind::Double => values::float(decode(raw)?),
        Kind::Decimal => {
            let text = decode::<&str>(raw)?;
            *bytes += text.len() as u64;
            values::decimal(text)
        }
        Kind::Text => {
            let text = decode::<&str>(raw)?;
            *bytes += text.len() as u64;
            Value::String(text.to_string())
        }
        Kind::Bytes => {
            let b = decode::<&[u8]>(raw)?;
            *bytes += b.len() as u64;
            // The protocol flags text columns with a binary collation (`utf8mb4_bin`, and every
            // MariaDB JSON column) exactly like BLOBs, and the driver does not expose the
            // collation that would tell them apart. The session is utf8mb4, so valid UTF-8 is
            // taken as the text it almost always is; anything else is base64.
            match std::str::from_utf8(b) {
                Ok(text) => Value::String(text.to_string()),
                Err(_) => values::bytes(b),
            }
        }
        Kind::Bit => {
            let b = decode::<&[u8]>(raw)?;
            // BIT(M) arrives big-endian, at most 8 bytes.
            b.iter()
                .fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
                .into()
        }
        Kind::Json => {
            let text = decode::<&str>(raw)?;
            *bytes += text.len() as u64;
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?
        }
        Kind::Date => zero_date_as_null(<NaiveDate as Decode<MySql>>::decode(raw), |d| {
            Value::String(d.format("%Y-%m-%d").to_string())
        })?,
        Kind::Time => match <NaiveTime as Decode<MySql>>::decode(raw.clone()) {
            Ok(t) => Value::String(t.to_string()),
            // TIME also holds durations (-838:59:59 to 838:59:59): as MySQL writes them.
            Err(_) => Value::String(decode::<MySqlTime>(raw)?.to_string()),
        },
        Kind::DateTime => zero_date_as_null(<NaiveDateTime as Decode<MySql>>::decode(raw), |t| {
            values::local_timestamp(t, s.offset)
        })?,
        Kind::Timestamp => zero_date_as_null(<NaiveDateTime as Decode<MySql>>::decode(raw), |t| {
            match s.offset.from_local_datetime(&t).single() {
                Some(dt) => values::utc_timestamp(dt.with_timezone(&Utc)),
                None => values::local_timestamp(t, s.offset),
            }
        })?,
    })
}

/// (label for the message, transient, is our statement timeout) from MySQL's error number.
pub(super) fn classify_code(e: &dyn DatabaseError) -> (String, bool, bool) {
    let Some(my) = e.try_downcast_ref::<MySqlDatabaseError>() else {
        return ("no error number".into(), false, false);
    };
    let number = my.number();
    let label = match my.code() {
        Some(state) => format!("error {number}, SQLSTATE {state}"),
        None => format!("error {number}"),
    };
    // 1969: MariaDB's max_statement_time; 3024: MySQL's max_execution_time.
    let timeout = matches!(number, 1969 | 3024);
    // Too many connections, shutdown, lock wait timeout, deadlock, connection killed, server
    // gone away / lost.
    let transient = timeout || matches!(number, 1040 | 1053 | 1205 | 1213 | 1927 | 2006 | 2013);
    (label, transient, timeout)
}

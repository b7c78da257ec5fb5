//! Validated JSON records → one Arrow `RecordBatch` in the table's schema.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate};
use serde_json::Value;

use super::schema::{Column, ColumnKind};

/// One typed cell, checked before anything of its row is appended.
pub(super) enum Cell<'a> {
    Null,
    Str(&'a str),
    Owned(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(i32),
    Micros(i64),
}

impl Cell<'_> {
    /// The same cell, owning its text.
    pub(super) fn into_owned(self) -> Cell<'static> {
        match self {
            Cell::Null => Cell::Null,
            Cell::Str(s) => Cell::Owned(s.to_string()),
            Cell::Owned(s) => Cell::Owned(s),
            Cell::Int(n) => Cell::Int(n),
            Cell::Float(n) => Cell::Float(n),
            Cell::Bool(v) => Cell::Bool(v),
            Cell::Date(d) => Cell::Date(d),
            Cell::Micros(t) => Cell::Micros(t),
        }
    }
}

enum Builder {
    Utf8(StringBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Builder {
    fn new(kind: ColumnKind, capacity: usize) -> Self {
        match kind {
            ColumnKind::Utf8 | ColumnKind::Json => {
                Builder::Utf8(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            ColumnKind::Int64 => Builder::Int64(Int64Builder::with_capacity(capacity)),
            ColumnKind::Float64 => Builder::Float64(Float64Builder::with_capacity(capacity)),
            ColumnKind::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(capacity)),
            ColumnKind::Date => Builder::Date(Date32Builder::with_capacity(capacity)),
            ColumnKind::Timestamp => Builder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            ),
        }
    }

    fn append(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (Builder::Utf8(b), Cell::Str(s)) => b.append_value(s),
            (Builder::Utf8(b), Cell::Owned(s)) => b.append_value(s),
            (Builder::Int64(b), Cell::Int(n)) => b.append_value(n),
            (Builder::Float64(b), Cell::Float(n)) => b.append_value(n),
            (Builder::Boolean(b), Cell::Bool(v)) => b.append_value(v),
            (Builder::Date(b), Cell::Date(d)) => b.append_value(d),
            (Builder::Timestamp(b), Cell::Micros(t)) => b.append_value(t),
            (Builder::Utf8(b), _) => b.append_null(),
            (Builder::Int64(b), _) => b.append_null(),
            (Builder::Float64(b), _) => b.append_null(),
            (Builder::Boolean(b), _) => b.append_null(),
            (Builder::Date(b), _) => b.append_null(),
            (Builder::Timestamp(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

pub(super) const UNIX_EPOCH_DAY: i32 = 719_163; // NaiveDate(1970-01-01).num_days_from_ce()

/// Converts one value of a validated record; an error names what did not fit.
pub(super) fn cell<'a>(kind: ColumnKind, value: Option<&'a Value>) -> Result<Cell<'a>, String> {
    let Some(value) = value else {
        return Ok(Cell::Null);
    };
    if value.is_null() {
        return Ok(Cell::Null);
    }
    Ok(match kind {
        ColumnKind::Json => Cell::Owned(value.to_string()),
        ColumnKind::Utf8 => match value {
            Value::String(s) => Cell::Str(s),
            other => Cell::Owned(other.to_string()),
        },
        ColumnKind::Int64 => match value {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Cell::Int(i),
                // JSON Schema's "integer" accepts 5.0; a 64-bit integer column takes it too.
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Cell::Int(f as i64),
                    _ => return Err(format!("{n} does not fit a 64-bit integer")),
                },
            },
            other => return Err(format!("expected an integer, found {other}")),
        },
        ColumnKind::Float64 => match value.as_f64() {
            Some(f) => Cell::Float(f),
            None => return Err(format!("expected a number, found {value}")),
        },
        ColumnKind::Boolean => match value {
            Value::Bool(b) => Cell::Bool(*b),
            other => return Err(format!("expected true or false, found {other}")),
        },
        ColumnKind::Date => {
            let text = value
                .as_str()
                .ok_or_else(|| format!("expected a date, found {value}"))?;
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| format!("{text:?} is not a date YYYY-MM-DD"))?;
            Cell::Date(chrono::Datelike::num_days_from_ce(&date) - UNIX_EPOCH_DAY)
        }
        ColumnKind::Timestamp => {
            let text = value
                .as_str()
                .ok_or_else(|| format!("expected a date-time, found {value}"))?;
            let parsed = DateTime::parse_from_rfc3339(text)
                .map_err(|_| format!("{text:?} is not an RFC 3339 date-time with an offset"))?;
            Cell::Micros(parsed.timestamp_micros())
        }
    })
}

pub struct RowsBuilder<'s> {
    columns: &'s [Column],
    builders: Vec<Builder>,
    sources: StringBuilder,
    rows: usize,
}

impl<'s> RowsBuilder<'s> {
    pub fn new(columns: &'s [Column], capacity: usize) -> Self {
        RowsBuilder {
            columns,
            builders: columns
                .iter()
                .map(|c| Builder::new(c.kind, capacity))
                .collect(),
            sources: StringBuilder::with_capacity(capacity, 0),
            rows: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    /// Appends a record, or returns per-field errors (pointer, message) and appends nothing.
    pub fn push(&mut self, record: &Value, source: &str) -> Result<(), Vec<(String, String)>> {
        let object = record.as_object();
        let mut cells = Vec::with_capacity(self.columns.len());
        let mut errors = Vec::new();
        for column in self.columns {
            match cell(column.kind, object.and_then(|o| o.get(&column.name))) {
                Ok(c) => cells.push(c),
                Err(message) => errors.push((format!("/{}", column.name), message)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        for (builder, c) in self.builders.iter_mut().zip(cells) {
            builder.append(c);
        }
        self.sources.append_value(source);
        self.rows += 1;
        Ok(())
    }

    /// Appends a row of cells already checked (the fast path's), one per column; leaves
    /// `cells` empty.
    pub fn push_cells(&mut self, cells: &mut Vec<Cell<'_>>, source: &str) {
        for (builder, c) in self.builders.iter_mut().zip(cells.drain(..)) {
            builder.append(c);
        }
        self.sources.append_value(source);
        self.rows += 1;
    }

    /// The batch in `schema` (columns + `_ingested_at`, `_run_id`, `_source`).
    pub fn finish(
        mut self,
        schema: &SchemaRef,
        run_id: &str,
        ingested_at_micros: i64,
    ) -> Result<RecordBatch, ArrowError> {
        let mut arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let mut ingested =
            TimestampMicrosecondBuilder::with_capacity(self.rows).with_timezone("UTC");
        let mut runs = StringBuilder::with_capacity(self.rows, self.rows * run_id.len());
        for _ in 0..self.rows {
            ingested.append_value(ingested_at_micros);
            runs.append_value(run_id);
        }
        arrays.push(Arc::new(ingested.finish()));
        arrays.push(Arc::new(runs.finish()));
        arrays.push(Arc::new(self.sources.finish()));
        RecordBatch::try_new(schema.clone(), arrays)
    }
}

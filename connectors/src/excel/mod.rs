//! `excel`: rows of one sheet of the `.xlsx` and `.xls` workbooks that departments drop into a
//! folder (path or glob, like `file`).
//!
//! Which files are taken, and when, is the shared inbox logic of [`crate::inbox`]: each file
//! once (again after it is replaced), never half-written, in name order. In each workbook one
//! sheet is read: a band of header rows (merged header cells give their text to every cell
//! they cover; the texts of a column's header rows are joined into one name), then data rows
//! until a blank row (departments put totals and notes under the table). Each data row is a
//! `Text` record like a CSV row; a row with an error cell (`#DIV/0!`) is kept as `Unreadable`.

mod cell;
mod table;
mod workbook;

use std::collections::BTreeMap;

use chrono::FixedOffset;
use serde::Deserialize;

use crate::inbox::Inbox;
use crate::record::{ReadContext, SourceStream};
use crate::registry::BuildContext;
use crate::{Connector, ConnectorError};

/// Unknown keys are not refused here but reported by the hub's config check (with their
/// line), which collects every one of them instead of stopping at the first.
#[derive(Debug, Clone, Deserialize)]
pub struct ExcelConfig {
    /// A path or glob, relative to the pipeline file's folder.
    pub path: String,
    /// The sheet to read, by name. Without `sheet` and `sheet_index`: the first sheet.
    #[serde(default)]
    pub sheet: Option<String>,
    /// The sheet to read by position, counted from 1 (as a clerk counts the tabs).
    #[serde(default)]
    pub sheet_index: Option<u32>,
    /// Row number (1-based) of the first header row.
    #[serde(default = "one")]
    pub header_row: u32,
    /// How many rows the header has; with 2 or more, a column's texts are joined.
    #[serde(default = "one")]
    pub header_rows: u32,
    /// Put between the texts of a column's header rows.
    #[serde(default = "default_separator")]
    pub header_separator: String,
    /// Row number of the first data row; default: the row under the header.
    #[serde(default)]
    pub first_data_row: Option<u32>,
    /// Row number of the last data row; default: up to the first blank row (or the end).
    #[serde(default)]
    pub last_data_row: Option<u32>,
    /// The table's columns, `"A:H"`; default: from the first to the last header cell.
    #[serde(default)]
    pub columns: Option<String>,
    /// A blank row ends the table (totals and notes under it are not read).
    #[serde(default = "yes")]
    pub stop_at_blank_row: bool,
    /// Records per batch handed to the hub.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Take a file only when it has not changed for this many seconds.
    #[serde(default)]
    pub settle_seconds: u64,
    /// UTC offset of the wall-clock date-times in the workbooks (Excel stores no zone).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Header text (after joining) → column name, since header texts are rarely SQL names.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_separator() -> String {
    " / ".into()
}
fn default_batch_size() -> usize {
    4096
}
fn default_time_zone() -> String {
    "+07:00".into()
}

#[derive(Debug, Clone)]
enum SheetChoice {
    Name(String),
    /// 0-based.
    Index(usize),
}

/// The settings in the form the reader uses: rows and columns 0-based, as calamine counts.
#[derive(Debug, Clone)]
struct Layout {
    sheet: SheetChoice,
    header_row: u32,
    header_rows: u32,
    header_separator: String,
    first_data_row: u32,
    last_data_row: Option<u32>,
    columns: Option<(u32, u32)>,
    stop_at_blank_row: bool,
    batch_size: usize,
    offset: FixedOffset,
    /// Keys in the form header names take (white space collapsed, NFC).
    rename: BTreeMap<String, String>,
}

impl ExcelConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = glob::Pattern::new(&self.path) {
            problems.push(format!("path {:?} is not a valid glob: {e}", self.path));
        }
        if self.sheet.is_some() && self.sheet_index.is_some() {
            problems.push("give sheet (a name) or sheet_index (a number), not both".into());
        }
        if self.sheet.as_deref() == Some("") {
            problems.push("sheet must not be empty".into());
        }
        if self.sheet_index == Some(0) {
            problems.push("sheet_index counts from 1 (the first sheet is 1)".into());
        }
        if self.header_row == 0 {
            problems.push("header_row counts from 1 (the first row is 1)".into());
        }
        if self.header_rows == 0 {
            problems.push("header_rows must be at least 1".into());
        }
        let under_header = self.header_row.saturating_add(self.header_rows);
        if let Some(first) = self.first_data_row
            && first < under_header
        {
            problems.push(format!(
                "first_data_row {first} is inside the header (rows {}–{}); it must be at least {under_header}",
                self.header_row,
                under_header - 1
            ));
        }
        let first = self.first_data_row.unwrap_or(under_header);
        if let Some(last) = self.last_data_row
            && last < first
        {
            problems.push(format!(
                "last_data_row {last} is above the first data row {first}"
            ));
        }
        if let Some(columns) = &self.columns
            && parse_columns(columns).is_none()
        {
            problems.push(format!(
                "columns {columns:?} must be a range of column letters such as \"A:H\""
            ));
        }
        if self.batch_size == 0 {
            problems.push("batch_size must be at least 1".into());
        }
        if cell::parse_offset(&self.time_zone).is_none() {
            problems.push(format!(
                "time_zone {:?} must be a UTC offset such as \"+07:00\"",
                self.time_zone
            ));
        }
        let mut targets = BTreeMap::new();
        for (header, name) in &self.rename {
            if name.trim().is_empty() {
                problems.push(format!("rename {header:?} gives an empty column name"));
            }
            if let Some(other) = targets.insert(name, header) {
                problems.push(format!(
                    "rename gives the name {name:?} to both {other:?} and {header:?}"
                ));
            }
        }
        problems
    }

    pub fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Connector>, ConnectorError> {
        let problems = self.validate();
        if !problems.is_empty() {
            return Err(ConnectorError::Config(problems.join("; ")));
        }
        let offset = cell::parse_offset(&self.time_zone)
            .ok_or_else(|| ConnectorError::Config(format!("time_zone {:?}", self.time_zone)))?;
        let sheet = match (&self.sheet, self.sheet_index) {
            (Some(name), _) => SheetChoice::Name(name.clone()),
            (None, Some(index)) => SheetChoice::Index(index.saturating_sub(1) as usize),
            (None, None) => SheetChoice::Index(0),
        };
        let header_row = self.header_row - 1;
        let layout = Layout {
            sheet,
            header_row,
            header_rows: self.header_rows,
            header_separator: self.header_separator.clone(),
            first_data_row: self
                .first_data_row
                .map_or(header_row + self.header_rows, |r| r - 1),
            last_data_row: self.last_data_row.map(|r| r - 1),
            columns: self.columns.as_deref().and_then(parse_columns),
            stop_at_blank_row: self.stop_at_blank_row,
            batch_size: self.batch_size,
            offset,
            rename: self
                .rename
                .iter()
                .map(|(k, v)| (table::clean_header(k), v.clone()))
                .collect(),
        };
        Ok(Box::new(ExcelConnector {
            inbox: Inbox::new(ctx, &self.path, self.settle_seconds),
            layout,
        }))
    }
}

/// `"A:H"` → (0, 7); one column `"C"` → (2, 2).
fn parse_columns(text: &str) -> Option<(u32, u32)> {
    let (a, b) = text.split_once(':').unwrap_or((text, text));
    let (a, b) = (cell::column_index(a.trim())?, cell::column_index(b.trim())?);
    (a <= b).then_some((a, b))
}

struct ExcelConnector {
    inbox: Inbox,
    layout: Layout,
}

impl Connector for ExcelConnector {
    fn read(&self, context: ReadContext) -> SourceStream {
        let layout = self.layout.clone();
        self.inbox.read(context.checkpoint, move |path, send| {
            workbook::read_workbook(path, &layout, send)
        })
    }
}

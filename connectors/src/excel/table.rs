//! Turns the cells of one sheet, in row order, into records: the header band becomes column
//! names, the data rows below it become `Text` records (or `Unreadable` ones).

use std::collections::{BTreeMap, HashSet};

use calamine::{Data, Dimensions};
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

use super::Layout;
use super::cell::{CellText, cell_text, column_letters};
use crate::inbox::Batcher;
use crate::record::{Payload, RawRecord};

/// What stopped reading a sheet early, or why it cannot be read at all.
#[derive(Debug)]
enum TableEnd {
    /// The table ended (blank row, `last_data_row`) or the run was abandoned: not an error.
    Done,
    Failed(String),
}

pub struct Table<'a, F> {
    layout: &'a Layout,
    sheet: &'a str,
    merges: Vec<Dimensions>,
    /// Texts of the header band, by (row, column), all columns (a merge that starts left of
    /// `columns` still gives its text to the columns inside).
    header_cells: BTreeMap<(u32, u32), String>,
    /// (column index, name) of every column of the table, once the header band is complete.
    columns: Option<Vec<(u32, String)>>,
    row: Option<u32>,
    row_cells: Vec<(u32, Data)>,
    /// The last data row turned into a record (to see blank rows, which have no cells at all).
    last_data_row: Option<u32>,
    /// The table has ended: later cells are not read.
    done: bool,
    out: Batcher<F>,
}

impl<'a, F: FnMut(Vec<RawRecord>, u64) -> bool> Table<'a, F> {
    pub fn new(layout: &'a Layout, sheet: &'a str, merges: Vec<Dimensions>, send: F) -> Self {
        let header_end = layout.header_row + layout.header_rows;
        let merges = merges
            .into_iter()
            .filter(|m| m.start.0 < header_end && m.end.0 >= layout.header_row)
            .collect();
        Table {
            layout,
            sheet,
            merges,
            header_cells: BTreeMap::new(),
            columns: None,
            row: None,
            row_cells: Vec::new(),
            last_data_row: None,
            done: false,
            out: Batcher::new(layout.batch_size, send),
        }
    }

    /// One cell (0-based row and column). Cells must come row by row, as workbooks store them.
    /// `Ok(false)`: the table has ended (or the run was abandoned), read no further.
    pub fn push(&mut self, row: u32, col: u32, data: Data) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        match self.row {
            Some(current) if row < current => {
                return Err(format!(
                    "cells are not stored in row order (row {} after row {})",
                    row + 1,
                    current + 1
                ));
            }
            Some(current) if row > current => {
                let cells = std::mem::take(&mut self.row_cells);
                if !self.end_row_or_stop(current, cells)? {
                    return Ok(false);
                }
            }
            _ => {}
        }
        self.row = Some(row);
        self.row_cells.push((col, data));
        Ok(true)
    }

    /// After the last cell: the last row, and the records still in the batch.
    pub fn finish(mut self) -> Result<(), String> {
        if !self.done
            && let Some(row) = self.row.take()
        {
            let cells = std::mem::take(&mut self.row_cells);
            self.end_row_or_stop(row, cells)?;
        }
        if self.columns.is_none() {
            // The sheet ended inside (or above) the header band.
            self.build_header()?;
        }
        self.out.flush();
        Ok(())
    }

    fn end_row_or_stop(&mut self, row: u32, cells: Vec<(u32, Data)>) -> Result<bool, String> {
        match self.end_row(row, cells) {
            Ok(()) => Ok(true),
            Err(TableEnd::Done) => {
                self.done = true;
                Ok(false)
            }
            Err(TableEnd::Failed(e)) => Err(e),
        }
    }

    fn end_row(&mut self, row: u32, cells: Vec<(u32, Data)>) -> Result<(), TableEnd> {
        let layout = self.layout;
        if row < layout.header_row {
            // A header cell merged down from above the band (header_row on the lower row of
            // a two-row header) keeps its text in its top-left cell, up here.
            for (col, data) in cells {
                if self.merges.iter().any(|m| m.start == (row, col))
                    && let CellText::Text(text) = cell_text(&data, layout.offset)
                {
                    self.header_cells.insert((row, col), text);
                }
            }
            return Ok(());
        }
        if row < layout.header_row + layout.header_rows {
            for (col, data) in cells {
                let text = match cell_text(&data, layout.offset) {
                    CellText::Text(t) | CellText::Error(t) => t,
                    CellText::Empty => continue,
                };
                self.header_cells.insert((row, col), text);
            }
            return Ok(());
        }
        if self.columns.is_none() {
            self.build_header().map_err(TableEnd::Failed)?;
        }
        if row < layout.first_data_row {
            return Ok(());
        }
        if layout.last_data_row.is_some_and(|last| row > last) {
            return Err(TableEnd::Done);
        }
        // A row with no cells at all is not in the stream: a gap is a blank row.
        let expected = self.last_data_row.map_or(layout.first_data_row, |r| r + 1);
        if layout.stop_at_blank_row && row > expected {
            return Err(TableEnd::Done);
        }
        let record = self.record(row, cells);
        let Some((record, bytes)) = record else {
            // Blank (every cell empty or spaces).
            if layout.stop_at_blank_row {
                return Err(TableEnd::Done);
            }
            return Ok(());
        };
        self.last_data_row = Some(row);
        self.out.add_bytes(bytes);
        if self.out.push(record) {
            Ok(())
        } else {
            Err(TableEnd::Done)
        }
    }

    /// The record of one data row, with the bytes of its cell texts; `None` for a blank row.
    fn record(&self, row: u32, mut cells: Vec<(u32, Data)>) -> Option<(RawRecord, usize)> {
        let columns = self.columns.as_deref().unwrap_or_default();
        let first = columns.first().map_or(0, |c| c.0);
        cells.sort_by_key(|c| c.0);
        let mut fields = Map::new();
        let mut errors = Vec::new();
        let mut bytes = 0;
        let mut blank = true;
        for (col, data) in &cells {
            let Some((_, name)) = col.checked_sub(first).and_then(|i| columns.get(i as usize))
            else {
                continue;
            };
            let text = match cell_text(data, self.layout.offset) {
                CellText::Empty => continue,
                CellText::Text(t) => t,
                CellText::Error(e) => {
                    errors.push(format!(
                        "cell {}{} ({name}) holds {e}",
                        column_letters(*col),
                        row + 1
                    ));
                    e
                }
            };
            blank &= text.trim().is_empty();
            bytes += text.len();
            fields.insert(name.clone(), Value::String(text));
        }
        if blank {
            return None;
        }
        let location = format!("sheet \"{}\" row {}", self.sheet, row + 1);
        let payload = if errors.is_empty() {
            Payload::Text(fields)
        } else {
            Payload::Unreadable {
                raw: Value::Object(fields).to_string(),
                error: errors.join("; "),
            }
        };
        Some((RawRecord { location, payload }, bytes))
    }

    /// Column names from the header band: merged cells give their text to every cell they
    /// cover, the texts of a column's header rows are joined top to bottom (a text repeated
    /// by a vertical merge counts once), `rename` applies, and empty or repeated names are
    /// made unique.
    fn build_header(&mut self) -> Result<(), String> {
        let layout = self.layout;
        let band = layout.header_row..layout.header_row + layout.header_rows;
        for merge in &self.merges {
            let Some(text) = self.header_cells.get(&merge.start).cloned() else {
                continue;
            };
            for row in merge.start.0.max(band.start)..=merge.end.0.min(band.end - 1) {
                for col in merge.start.1..=merge.end.1 {
                    self.header_cells
                        .entry((row, col))
                        .or_insert_with(|| text.clone());
                }
            }
        }
        let (first, last) = match layout.columns {
            Some(range) => range,
            None => {
                let mut cols = self
                    .header_cells
                    .keys()
                    .filter(|k| band.contains(&k.0))
                    .map(|k| k.1);
                let Some(start) = cols.next() else {
                    return Err(format!(
                        "no header text in row{} {} of sheet \"{}\" (set header_row)",
                        if layout.header_rows > 1 { "s" } else { "" },
                        rows_text(layout),
                        self.sheet
                    ));
                };
                cols.fold((start, start), |(a, b), c| (a.min(c), b.max(c)))
            }
        };
        let mut used_renames = HashSet::new();
        let mut taken = HashSet::new();
        let mut columns = Vec::new();
        for col in first..=last {
            let mut parts: Vec<String> = Vec::new();
            for row in band.clone() {
                if let Some(text) = self.header_cells.get(&(row, col)) {
                    let text = clean_header(text);
                    if !text.is_empty() && parts.last() != Some(&text) {
                        parts.push(text);
                    }
                }
            }
            let joined = parts.join(&layout.header_separator);
            let mut name = match layout.rename.get(&joined) {
                Some(new) => {
                    used_renames.insert(joined.clone());
                    new.clone()
                }
                None => joined,
            };
            if name.is_empty() {
                name = format!("column_{}", col + 1);
            }
            if !taken.insert(name.clone()) {
                let mut n = 2;
                while taken.contains(&format!("{name}_{n}")) {
                    n += 1;
                }
                name = format!("{name}_{n}");
                taken.insert(name.clone());
            }
            columns.push((col, name));
        }
        for key in layout.rename.keys() {
            if !used_renames.contains(key) {
                tracing::warn!(
                    sheet = self.sheet,
                    header = key.as_str(),
                    "rename names a header that this sheet does not have"
                );
            }
        }
        self.columns = Some(columns);
        self.header_cells.clear();
        Ok(())
    }
}

fn rows_text(layout: &Layout) -> String {
    let first = layout.header_row + 1;
    if layout.header_rows > 1 {
        format!("{first}–{}", first + layout.header_rows - 1)
    } else {
        first.to_string()
    }
}

/// Header texts become names: runs of white space (line breaks inside a header cell are
/// common) become one space, and the text is NFC so that `rename` keys typed with another
/// input method still match.
pub fn clean_header(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .nfc()
        .collect()
}

//! Opening one workbook file and feeding its sheet's cells, in row order, to a [`Table`].

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use calamine::{Data, Reader, Xls, Xlsx};
use unicode_normalization::UnicodeNormalization;

use super::table::Table;
use super::{Layout, SheetChoice};
use crate::ConnectorError;
use crate::record::RawRecord;

/// The first bytes of the two container formats: a zip archive (`.xlsx`) and an OLE compound
/// file (`.xls`, BIFF). The content decides, not the name: departments rename files.
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const CFB_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

pub fn read_workbook(
    path: &Path,
    layout: &Layout,
    send: impl FnMut(Vec<RawRecord>, u64) -> bool,
) -> Result<(), ConnectorError> {
    let fail = |message: String| ConnectorError::Workbook {
        path: path.to_path_buf(),
        message,
    };
    let io = |source| ConnectorError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Enough to tell the container, and to guess what a wrong file is.
    let mut head = [0u8; 512];
    let read = File::open(path)
        .and_then(|mut f| read_head(&mut f, &mut head))
        .map_err(io)?;
    let head = &head[..read];
    let file = BufReader::new(File::open(path).map_err(io)?);
    if head.starts_with(ZIP_MAGIC) {
        let mut book = Xlsx::new(file).map_err(|e| fail(format!("not a readable .xlsx: {e}")))?;
        let sheet = choose_sheet(&book.sheet_names(), &layout.sheet).map_err(fail)?;
        let merges = book
            .merge_cells_by_sheet_name(&sheet)
            .map_err(|e| fail(format!("sheet \"{sheet}\": {e}")))?;
        let mut table = Table::new(layout, &sheet, merges, send);
        // Streamed cell by cell, so a large sheet is never in memory whole.
        let mut cells = book
            .worksheet_cells_reader(&sheet)
            .map_err(|e| fail(format!("sheet \"{sheet}\": {e}")))?;
        loop {
            let cell = cells
                .next_cell()
                .map_err(|e| fail(format!("sheet \"{sheet}\": {e}")))?;
            let Some(cell) = cell else { break };
            let (row, col) = cell.get_position();
            let data = Data::from(cell.get_value().clone());
            if !table.push(row, col, data).map_err(&fail)? {
                break;
            }
        }
        table.finish().map_err(fail)
    } else if head.starts_with(CFB_MAGIC) {
        let mut book = Xls::new(file).map_err(|e| fail(format!("not a readable .xls: {e}")))?;
        let sheet = choose_sheet(&book.sheet_names(), &layout.sheet).map_err(fail)?;
        let merges = book
            .merge_cells_by_sheet_name(&sheet)
            .map_err(|e| fail(format!("sheet \"{sheet}\": {e}")))?;
        // calamine parses a BIFF workbook whole when it opens it (a .xls sheet has at most
        // 65,536 rows); the cells are then taken in row order like the streamed ones.
        let range = book
            .worksheet_range(&sheet)
            .map_err(|e| fail(format!("sheet \"{sheet}\": {e}")))?;
        let (top, left) = range.start().unwrap_or((0, 0));
        let mut table = Table::new(layout, &sheet, merges, send);
        for (row, col, data) in range.used_cells() {
            let (row, col) = (top + row as u32, left + col as u32);
            if !table.push(row, col, data.clone()).map_err(&fail)? {
                break;
            }
        }
        table.finish().map_err(fail)
    } else {
        Err(fail(not_a_workbook(head)))
    }
}

fn read_head(file: &mut File, head: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Says what the file looks like instead, since a wrong file is usually one of a few kinds.
fn not_a_workbook(head: &[u8]) -> String {
    let text = String::from_utf8_lossy(head)
        .trim_start()
        .to_ascii_lowercase();
    let hint = if head.is_empty() {
        " (the file is empty)"
    } else if text.starts_with('<') {
        " (it looks like HTML or XML: some programs save a web table with an .xls name; open it and save it as .xlsx)"
    } else if head.starts_with(b"%PDF") {
        " (it is a PDF)"
    } else if looks_like_text(head) {
        " (it looks like text, such as CSV: use kind = \"file\" with format = \"csv\")"
    } else {
        ""
    };
    format!("not an Excel workbook (.xlsx or .xls){hint}")
}

/// UTF-8 without control characters, allowing a character cut at the end of `head`.
fn looks_like_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !valid.is_empty()
        && valid
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\r' | '\n' | '\t'))
}

fn choose_sheet(names: &[String], choice: &SheetChoice) -> Result<String, String> {
    let listed = || {
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match choice {
        SheetChoice::Name(name) => names
            .iter()
            // NFC on both sides: a sheet name typed on another system may be decomposed.
            .find(|n| n.nfc().eq(name.nfc()))
            .cloned()
            .ok_or_else(|| format!("no sheet \"{name}\"; the sheets are {}", listed())),
        SheetChoice::Index(index) => names.get(*index).cloned().ok_or_else(|| {
            format!(
                "no sheet number {} (sheet_index counts from 1); the workbook has {}: {}",
                index + 1,
                names.len(),
                listed()
            )
        }),
    }
}

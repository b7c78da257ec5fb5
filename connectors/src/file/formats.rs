//! Reading one file of each format into batches of raw records. Runs on a blocking thread.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;

use super::{FileConfig, FileFormat};
use crate::ConnectorError;
use crate::inbox::Batcher;
use crate::record::{Payload, RawRecord};

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Raw text kept for a record that cannot be read is cut at this size.
const MAX_RAW_BYTES: usize = 64 * 1024;

/// Reads `path` and hands its records to `send` in batches; stops early when `send` returns
/// false (the run was abandoned).
pub fn read_file(
    path: &Path,
    config: &FileConfig,
    send: impl FnMut(Vec<RawRecord>, u64) -> bool,
) -> Result<(), ConnectorError> {
    let io = |source| ConnectorError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let bom_len = skip_bom(&mut reader).map_err(io)?;
    match config.format {
        FileFormat::Jsonl => read_jsonl(reader, config.batch_size, send).map_err(io),
        FileFormat::Json => read_json(reader, config, send).map_err(io),
        FileFormat::Csv => read_csv(path, reader, bom_len, config, send),
    }
}

fn skip_bom(reader: &mut BufReader<File>) -> std::io::Result<u64> {
    let head = reader.fill_buf()?;
    if head.starts_with(BOM) {
        reader.consume(BOM.len());
        return Ok(BOM.len() as u64);
    }
    Ok(0)
}

fn unreadable(location: String, raw: &[u8], error: String) -> RawRecord {
    let cut = &raw[..raw.len().min(MAX_RAW_BYTES)];
    RawRecord {
        location,
        payload: Payload::Unreadable {
            raw: String::from_utf8_lossy(cut).into_owned(),
            error,
        },
    }
}

fn read_jsonl(
    mut reader: impl BufRead,
    batch_size: usize,
    send: impl FnMut(Vec<RawRecord>, u64) -> bool,
) -> std::io::Result<()> {
    let mut out = Batcher::new(batch_size, send);
    let mut line = Vec::with_capacity(4096);
    let mut number = 0u64;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        out.add_bytes(read);
        number += 1;
        let text = trim_line_end(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let location = format!("line {number}");
        // Parsing is left to the hub (see `Payload::JsonText`); only text that is not UTF-8
        // is judged here, since a `String` cannot hold it.
        let record = match std::str::from_utf8(text) {
            Ok(text) => RawRecord {
                location,
                payload: Payload::JsonText(text.to_string()),
            },
            Err(_) => match serde_json::from_slice::<Value>(text) {
                Ok(value) => RawRecord {
                    location,
                    payload: Payload::Json(value),
                },
                Err(e) => unreadable(location, text, format!("not valid JSON: {e}")),
            },
        };
        if !out.push(record) {
            return Ok(());
        }
    }
    out.flush();
    Ok(())
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
        end -= 1;
    }
    &line[..end]
}

/// A JSON document must be parsed whole; a document that is not JSON, or has no array at
/// `records_at`, becomes one unreadable record so the publisher sees it in quarantine.
fn read_json(
    mut reader: impl Read,
    config: &FileConfig,
    send: impl FnMut(Vec<RawRecord>, u64) -> bool,
) -> std::io::Result<()> {
    let mut out = Batcher::new(config.batch_size, send);
    let mut text = Vec::new();
    reader.read_to_end(&mut text)?;
    out.add_bytes(text.len());
    let document: Value = match serde_json::from_slice(&text) {
        Ok(v) => v,
        Err(e) => {
            out.push(unreadable(
                "document".into(),
                &text,
                format!("not valid JSON: {e}"),
            ));
            out.flush();
            return Ok(());
        }
    };
    drop(text);
    let pointer = config.records_at.as_str();
    let records = match document.pointer(pointer) {
        Some(Value::Array(items)) => items,
        other => {
            let found = match other {
                None => "nothing".to_string(),
                Some(v) => json_kind(v).to_string(),
            };
            let raw = serde_json::to_vec(&document).unwrap_or_default();
            out.push(unreadable(
                "document".into(),
                &raw,
                format!("expected an array of records at {pointer:?}, found {found}"),
            ));
            out.flush();
            return Ok(());
        }
    };
    for (index, value) in records.iter().enumerate() {
        let record = RawRecord {
            location: format!("{pointer}/{index}"),
            payload: Payload::Json(value.clone()),
        };
        if !out.push(record) {
            return Ok(());
        }
    }
    out.flush();
    Ok(())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn read_csv(
    path: &Path,
    reader: BufReader<File>,
    bom_len: u64,
    config: &FileConfig,
    send: impl FnMut(Vec<RawRecord>, u64) -> bool,
) -> Result<(), ConnectorError> {
    let io = |source| ConnectorError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = Batcher::new(config.batch_size, send);
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(config.delimiter as u8)
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let headers: Vec<String> = match csv.byte_headers() {
        Ok(h) => h
            .iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_string())
            .collect(),
        Err(e) => return Err(io(std::io::Error::other(e))),
    };
    let mut row = csv::ByteRecord::new();
    let mut number = 0u64;
    loop {
        match csv.read_byte_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(io(std::io::Error::other(e))),
        }
        number += 1;
        out.add_bytes(row.as_slice().len() + row.len());
        let location = format!("row {number}");
        let record = if row.len() != headers.len() {
            let offset = row.position().map(|p| p.byte()).unwrap_or(0) + bom_len;
            let raw = raw_line_at(path, offset).unwrap_or_default();
            unreadable(
                location,
                raw.as_bytes(),
                format!(
                    "row has {} fields, the header has {}",
                    row.len(),
                    headers.len()
                ),
            )
        } else {
            text_record(location, &headers, &row, path, bom_len)
        };
        if !out.push(record) {
            return Ok(());
        }
    }
    out.flush();
    Ok(())
}

fn text_record(
    location: String,
    headers: &[String],
    row: &csv::ByteRecord,
    path: &Path,
    bom_len: u64,
) -> RawRecord {
    let mut fields = serde_json::Map::with_capacity(headers.len());
    for (name, cell) in headers.iter().zip(row.iter()) {
        let Ok(text) = std::str::from_utf8(cell) else {
            let offset = row.position().map(|p| p.byte()).unwrap_or(0) + bom_len;
            let raw = raw_line_at(path, offset).unwrap_or_default();
            return unreadable(
                location,
                raw.as_bytes(),
                format!("field {name:?} is not UTF-8 text (save the file as UTF-8)"),
            );
        };
        if !text.is_empty() {
            fields.insert(name.clone(), Value::String(text.to_string()));
        }
    }
    RawRecord {
        location,
        payload: Payload::Text(fields),
    }
}

/// The line that starts at byte `offset`, for quarantining a malformed row verbatim.
fn raw_line_at(path: &Path, offset: u64) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut line = Vec::new();
    BufReader::new(file)
        .take(MAX_RAW_BYTES as u64)
        .read_until(b'\n', &mut line)?;
    Ok(String::from_utf8_lossy(trim_line_end(&line)).into_owned())
}

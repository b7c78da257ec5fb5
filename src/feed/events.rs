//! Change rows as CloudEvents 1.0 (JSON format, batched mode): the wire contract with
//! receivers. Written as text directly: a record's `data` comes from Arrow's JSON writer, so
//! no row is turned into a `serde_json::Value` on the way.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::changelog::{CHANGED_AT, META_COLUMNS, OP, OP_DELETED, SEQ};

pub const CONTENT_TYPE: &str = "application/cloudevents-batch+json";
pub const TYPE_UPSERTED: &str = "vn.ioc.record.upserted";
pub const TYPE_DELETED: &str = "vn.ioc.record.deleted";

#[derive(Debug, thiserror::Error)]
#[error("building events: {0}")]
pub struct EventError(String);

/// One event, serialized, with its sequence.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: i64,
    pub json: String,
}

/// Turns feed rows (the consumer's columns plus `_seq`, `_op`, `_changed_at`) into events.
/// `dataset` names the event's source and id: the dataset or the `share.*` view.
pub fn to_events(
    hub_id: &str,
    dataset: &str,
    key: &[String],
    batch: &RecordBatch,
) -> Result<Vec<Event>, EventError> {
    let fail = |m: String| EventError(m);
    let schema = batch.schema();
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| fail(format!("feed rows have no {name} column")))
    };
    let seqs = column(SEQ)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| fail("_seq is not Int64".into()))?
        .clone();
    // Strings may come back as Utf8View from the Parquet reader.
    let ops = arrow::compute::cast(column(OP)?, &arrow::datatypes::DataType::Utf8)
        .map_err(|e| fail(format!("_op: {e}")))?;
    let ops = ops
        .as_string_opt::<i32>()
        .ok_or_else(|| fail("_op is not a string".into()))?
        .clone();
    let times = column(CHANGED_AT)?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| fail("_changed_at is not a timestamp".into()))?
        .clone();
    let data_indices: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !META_COLUMNS.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let data = batch
        .project(&data_indices)
        .map_err(|e| fail(e.to_string()))?;
    let lines = json_lines(&data)?;
    let options = FormatOptions::default();
    let key_formatters: Vec<ArrayFormatter> = key
        .iter()
        .filter_map(|k| data.column_by_name(k))
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<_, _>>()
        .map_err(|e| fail(e.to_string()))?;
    let has_key = !key.is_empty() && key_formatters.len() == key.len();
    let source = serde_json::to_string(&format!("iochub://{hub_id}/{dataset}"))
        .map_err(|e| fail(e.to_string()))?;
    let mut events = Vec::with_capacity(batch.num_rows());
    for (row, line) in lines.into_iter().enumerate() {
        let seq = seqs.value(row);
        let deleted = ops.value(row) == OP_DELETED;
        let time = chrono::DateTime::from_timestamp_micros(times.value(row))
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut json = String::with_capacity(line.len() + 320);
        json.push_str("{\"specversion\":\"1.0\",\"id\":");
        push_string(&mut json, &format!("{dataset}:{seq}"));
        json.push_str(",\"source\":");
        json.push_str(&source);
        json.push_str(",\"type\":\"");
        json.push_str(if deleted { TYPE_DELETED } else { TYPE_UPSERTED });
        json.push_str("\",\"time\":\"");
        json.push_str(&time);
        json.push('"');
        if has_key {
            let subject = key_formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect::<Vec<_>>()
                .join("/");
            json.push_str(",\"subject\":");
            push_string(&mut json, &subject);
        }
        json.push_str(",\"sequence\":\"");
        json.push_str(&seq.to_string());
        json.push_str("\",\"datacontenttype\":\"application/json\",\"data\":");
        if deleted {
            json.push_str(&key_only(&line, key)?);
        } else {
            json.push_str(&line);
        }
        json.push('}');
        events.push(Event { seq, json });
    }
    Ok(events)
}

/// The JSON array a batch is sent as.
pub fn batch_body(events: &[Event]) -> Vec<u8> {
    let size = events.iter().map(|e| e.json.len() + 1).sum::<usize>() + 2;
    let mut body = Vec::with_capacity(size);
    body.push(b'[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event.json.as_bytes());
    }
    body.push(b']');
    body
}

fn push_string(out: &mut String, value: &str) {
    // Serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into()));
}

/// One JSON object per row, nulls written out (a receiver sees every column it may read).
fn json_lines(batch: &RecordBatch) -> Result<Vec<String>, EventError> {
    let mut buffer = Vec::new();
    {
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::LineDelimited>(&mut buffer);
        writer.write(batch).map_err(|e| EventError(e.to_string()))?;
        writer.finish().map_err(|e| EventError(e.to_string()))?;
    }
    let text = String::from_utf8(buffer).map_err(|e| EventError(e.to_string()))?;
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.len() != batch.num_rows() {
        return Err(EventError(format!(
            "{} rows gave {} JSON lines",
            batch.num_rows(),
            lines.len()
        )));
    }
    Ok(lines)
}

/// A deleted record is told by its key alone (the log keeps the whole row, for share
/// filters; the receiver needs only which record to remove).
fn key_only(line: &str, key: &[String]) -> Result<String, EventError> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).map_err(|e| EventError(e.to_string()))?;
    object.retain(|name, _| key.contains(name));
    serde_json::to_string(&object).map_err(|e| EventError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    #[test]
    fn rows_become_cloudevents_with_key_subject_and_sequence() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("ten", DataType::Utf8, true),
            Field::new(SEQ, DataType::Int64, false),
            Field::new(OP, DataType::Utf8, false),
            Field::new(
                CHANGED_AT,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a1"), Some("a2")])),
                Arc::new(StringArray::from(vec![Some("Đồng Phú"), Some("Cũ")])),
                Arc::new(Int64Array::from(vec![7, 8])),
                Arc::new(StringArray::from(vec!["upserted", "deleted"])),
                Arc::new(TimestampMicrosecondArray::from(vec![0, 0]).with_timezone("UTC")),
            ],
        )
        .unwrap();
        let events = to_events("hub", "ds", &["id".into()], &batch).unwrap();
        let parsed: serde_json::Value =
            serde_json::from_slice(&batch_body(&events)).expect("a JSON array");
        assert_eq!(parsed[0]["id"], "ds:7");
        assert_eq!(parsed[0]["source"], "iochub://hub/ds");
        assert_eq!(parsed[0]["type"], TYPE_UPSERTED);
        assert_eq!(parsed[0]["subject"], "a1");
        assert_eq!(parsed[0]["sequence"], "7");
        assert_eq!(parsed[0]["data"]["ten"], "Đồng Phú");
        assert_eq!(parsed[0]["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(parsed[1]["type"], TYPE_DELETED);
        assert_eq!(parsed[1]["data"], serde_json::json!({"id": "a2"}));
    }
}

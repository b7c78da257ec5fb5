//! A dataset's JSON Schema, compiled: the validator and the table columns derived from it.
//!
//! Mapping (top-level properties become columns; the order of `properties` is kept):
//! `string` → Utf8, `string` + `format: date` → Date32, `string` + `format: date-time` →
//! Timestamp(µs, UTC), `integer` → Int64, `number` → Float64, `boolean` → Boolean; `object`,
//! `array`, a property without `type` or with several non-null types → Utf8 holding JSON text
//! (queryable with string functions, and lossless). `"null"` in a type list only makes the column
//! nullable; every column is nullable in Arrow since optional properties may be absent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

pub const INGESTED_AT: &str = "_ingested_at";
pub const RUN_ID: &str = "_run_id";
pub const SOURCE: &str = "_source";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Utf8,
    Int64,
    Float64,
    Boolean,
    Date,
    Timestamp,
    /// Object, array or mixed: stored as JSON text.
    Json,
}

impl ColumnKind {
    pub fn is_json(self) -> bool {
        self == ColumnKind::Json
    }

    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnKind::Utf8 | ColumnKind::Json => DataType::Utf8,
            ColumnKind::Int64 => DataType::Int64,
            ColumnKind::Float64 => DataType::Float64,
            ColumnKind::Boolean => DataType::Boolean,
            ColumnKind::Date => DataType::Date32,
            ColumnKind::Timestamp => timestamp_type(),
        }
    }

    /// The kind of a stored column (a transform's output), by its Arrow type.
    pub fn from_arrow(t: &DataType) -> ColumnKind {
        match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnKind::Utf8,
            DataType::Int64 => ColumnKind::Int64,
            DataType::Float64 => ColumnKind::Float64,
            DataType::Boolean => ColumnKind::Boolean,
            DataType::Date32 => ColumnKind::Date,
            DataType::Timestamp(..) => ColumnKind::Timestamp,
            _ => ColumnKind::Json,
        }
    }

    pub(super) fn from_property(property: &Value) -> ColumnKind {
        let types: Vec<&str> = match property.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let non_null: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
        match non_null.as_slice() {
            ["string"] => match property.get("format").and_then(Value::as_str) {
                Some("date") => ColumnKind::Date,
                Some("date-time") => ColumnKind::Timestamp,
                _ => ColumnKind::Utf8,
            },
            ["integer"] => ColumnKind::Int64,
            ["number"] | ["integer", "number"] | ["number", "integer"] => ColumnKind::Float64,
            ["boolean"] => ColumnKind::Boolean,
            _ => ColumnKind::Json,
        }
    }
}

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    pub description: String,
    /// `"x-pii": true`: personal data, masked for consumers without a grant.
    pub pii: bool,
    /// `"x-mask"`: how to mask it.
    pub mask: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read schema {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("schema {path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("schema {path} is not a valid JSON Schema: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("schema {path}: {message}")]
    Shape { path: PathBuf, message: String },
}

pub struct DatasetSchema {
    pub path: PathBuf,
    pub title: String,
    pub validator: jsonschema::Validator,
    /// The one-pass parse-and-check for JSON text records, when the schema allows one.
    pub fast: Option<super::fast::FastPlan>,
    /// The properties that become columns, in the schema's order.
    pub columns: Vec<Column>,
    /// The stored table's Arrow schema: the columns, then `_ingested_at`, `_run_id`, `_source`.
    pub arrow: SchemaRef,
}

impl std::fmt::Debug for DatasetSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetSchema")
            .field("path", &self.path)
            .field("columns", &self.columns)
            .field("fast", &self.fast.is_some())
            .finish_non_exhaustive()
    }
}

impl DatasetSchema {
    pub fn load(path: &Path) -> Result<Self, SchemaError> {
        let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let document: Value = serde_json::from_str(&text).map_err(|source| SchemaError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::compile(path, &document)
    }

    pub fn compile(path: &Path, document: &Value) -> Result<Self, SchemaError> {
        let invalid = |message: String| SchemaError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        jsonschema::meta::validate(document)
            .map_err(|e| invalid(format!("{e} (at {})", e.instance_path().as_str())))?;
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(document)
            .map_err(|e| invalid(e.to_string()))?;
        let shape = |message: &str| SchemaError::Shape {
            path: path.to_path_buf(),
            message: message.to_string(),
        };
        if document.get("type").and_then(Value::as_str) != Some("object") {
            return Err(shape(
                "the top level must be `\"type\": \"object\"` (one record)",
            ));
        }
        let Some(Value::Object(properties)) = document.get("properties") else {
            return Err(shape(
                "the top level needs `properties`: they become the table's columns",
            ));
        };
        let mut columns = Vec::with_capacity(properties.len());
        for (name, property) in properties {
            if name.starts_with('_') {
                return Err(shape(&format!(
                    "property {name:?}: names starting with '_' are reserved for the hub's columns"
                )));
            }
            columns.push(Column {
                name: name.clone(),
                kind: ColumnKind::from_property(property),
                description: property
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                pii: property
                    .get("x-pii")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                mask: property
                    .get("x-mask")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
        }
        let mut fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(&c.name, c.kind.arrow_type(), true))
            .collect();
        fields.push(Field::new(INGESTED_AT, timestamp_type(), false));
        fields.push(Field::new(RUN_ID, DataType::Utf8, false));
        fields.push(Field::new(SOURCE, DataType::Utf8, false));
        let fast = super::fast::FastPlan::compile(document, &columns);
        Ok(DatasetSchema {
            path: path.to_path_buf(),
            fast,
            title: document
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            validator,
            columns,
            arrow: Arc::new(Schema::new(fields)),
        })
    }

    /// The data columns only (what a transform sees as `input`).
    pub fn data_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.arrow.fields()[..self.columns.len()].to_vec(),
        ))
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(doc: Value) -> Result<DatasetSchema, SchemaError> {
        DatasetSchema::compile(Path::new("t.json"), &doc)
    }

    #[test]
    fn maps_json_schema_types_to_arrow() {
        let s = compile(json!({
            "type": "object",
            "properties": {
                "s": {"type": "string"},
                "d": {"type": "string", "format": "date"},
                "t": {"type": ["string", "null"], "format": "date-time"},
                "i": {"type": "integer"},
                "n": {"type": "number"},
                "b": {"type": "boolean"},
                "o": {"type": "object"},
                "m": {"type": ["string", "integer"]}
            }
        }))
        .unwrap();
        let kinds: Vec<_> = s
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("s", ColumnKind::Utf8),
                ("d", ColumnKind::Date),
                ("t", ColumnKind::Timestamp),
                ("i", ColumnKind::Int64),
                ("n", ColumnKind::Float64),
                ("b", ColumnKind::Boolean),
                ("o", ColumnKind::Json),
                ("m", ColumnKind::Json),
            ]
        );
        assert_eq!(s.arrow.fields().len(), 11);
        assert_eq!(s.arrow.field(10).name(), SOURCE);
    }

    #[test]
    fn rejects_invalid_json_schema_and_wrong_shape() {
        assert!(matches!(
            compile(json!({"type": "object", "properties": {"a": {"type": 12}}})),
            Err(SchemaError::Invalid { .. })
        ));
        assert!(matches!(
            compile(json!({"type": "array"})),
            Err(SchemaError::Shape { .. })
        ));
    }
}

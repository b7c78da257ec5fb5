//! The fast path for records that arrive as JSON text: the dataset's JSON Schema compiled
//! into one pass that parses a record straight into typed cells, checking each value as it
//! is read (types, `required`, enums, lengths, patterns, ranges, `date` / `date-time`, and
//! objects whose fields are all simple, written back as the JSON text the full path stores).
//!
//! It exists because parsing into `serde_json::Value` and walking that tree with the full
//! validator cost most of an ingest run (docs/PERFORMANCE.md). It keeps one rule: it may only
//! **accept** a record the full validator accepts, typed exactly as the full path types it.
//! Anything it does not handle or doubts (a failed check, a duplicate key, `5.0` for an
//! integer, a keyword it does not implement) returns "not sure", and the record takes the full
//! path (`Value` + jsonschema), which decides and words the errors. A rejected record's
//! messages therefore always come from the full validator.
//!
//! A property whose schema uses keywords this module does not implement keeps the fast parse
//! but is checked by a validator compiled from that property's own schema (`residual`). A
//! schema with `$ref`, or top-level keywords beyond `properties` / `required` /
//! `additionalProperties`, gets no fast plan at all.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::Value;

use super::rows::{Cell, UNIX_EPOCH_DAY, cell};
use super::schema::{Column, ColumnKind};

/// Keywords that validate nothing (annotations); allowed anywhere.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Keywords this module checks itself on a property.
const PROPERTY_KEYWORDS: &[&str] = &[
    "type",
    "enum",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "format",
];

/// Integers up to this magnitude are exact as `f64`, so comparing as `f64` is exact.
const EXACT_F64: f64 = 9_007_199_254_740_992.0;

/// The compiled pass for one dataset schema.
pub struct FastPlan {
    columns: Vec<FastColumn>,
    names: Names,
    required: Vec<usize>,
    /// `additionalProperties: false`: a key outside `properties` sends the record down the
    /// full path.
    closed: bool,
}

struct FastColumn {
    kind: ColumnKind,
    /// `"null"` is among the types (only meaningful without `residual`).
    nullable: bool,
    strings: StringChecks,
    numbers: NumberChecks,
    /// The property's own schema, compiled, when it uses keywords checked nowhere here (and
    /// for every object / array / untyped column without an `object` plan).
    residual: Option<jsonschema::Validator>,
    /// An object column whose properties are all simple, checked field by field.
    object: Option<ObjectPlan>,
}

/// An object column (`x_submitter`: name, address, phone) whose properties are all simple
/// columns of their own: each field is checked as it is read and written back as the compact
/// JSON text the full path stores (`Value::to_string()`: input order, serde_json's escaping
/// and number format). A key outside `properties`, or one seen twice, is "not sure".
struct ObjectPlan {
    names: Names,
    fields: Vec<FastColumn>,
    required: Vec<usize>,
}

impl ObjectPlan {
    fn compile(map: &serde_json::Map<String, Value>) -> Option<ObjectPlan> {
        for (keyword, value) in map {
            match keyword.as_str() {
                "type" => {
                    let object_or_null = match value {
                        Value::String(t) => t == "object",
                        Value::Array(ts) => {
                            ts.contains(&Value::from("object"))
                                && ts.iter().all(|t| t == "object" || t == "null")
                        }
                        _ => false,
                    };
                    if !object_or_null {
                        return None;
                    }
                }
                "properties" | "required" => {}
                "additionalProperties" if value.is_boolean() => {}
                k if is_annotation(k) => {}
                _ => return None,
            }
        }
        map.get("type")?;
        let properties = map.get("properties")?.as_object()?;
        let mut names: Vec<Box<str>> = Vec::with_capacity(properties.len());
        let mut fields = Vec::with_capacity(properties.len());
        for (name, property) in properties {
            let field = FastColumn::compile(ColumnKind::from_property(property), property)?;
            if field.kind == ColumnKind::Json || field.residual.is_some() {
                return None;
            }
            names.push(name.as_str().into());
            fields.push(field);
        }
        let mut required = Vec::new();
        if let Some(list) = map.get("required") {
            for name in list.as_array()? {
                required.push(names.iter().position(|n| Some(&**n) == name.as_str())?);
            }
        }
        Some(ObjectPlan {
            names: Names::new(names),
            fields,
            required,
        })
    }
}

/// An `enum` of strings: a short list is faster to scan than to hash into.
enum Allowed {
    Few(Vec<String>),
    Many(HashSet<String>),
}

impl Allowed {
    fn new(values: Vec<String>) -> Allowed {
        if values.len() <= 16 {
            Allowed::Few(values)
        } else {
            Allowed::Many(values.into_iter().collect())
        }
    }

    fn contains(&self, s: &str) -> bool {
        match self {
            Allowed::Few(list) => list.iter().any(|v| v == s),
            Allowed::Many(set) => set.contains(s),
        }
    }
}

#[derive(Default)]
struct StringChecks {
    allowed: Option<Allowed>,
    min_chars: Option<usize>,
    max_chars: Option<usize>,
    pattern: Option<regex::Regex>,
}

#[derive(Default)]
struct NumberChecks {
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
}

fn is_annotation(keyword: &str) -> bool {
    ANNOTATIONS.contains(&keyword) || keyword.starts_with("x-")
}

/// True when `value` (a schema, at any depth) contains a reference, which a property's
/// schema compiled on its own could not resolve.
fn has_reference(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| {
            matches!(k.as_str(), "$ref" | "$dynamicRef" | "$recursiveRef") || has_reference(v)
        }),
        Value::Array(items) => items.iter().any(has_reference),
        _ => false,
    }
}

impl FastPlan {
    /// The plan for `document`, or `None` when this schema is one for the full path only.
    pub fn compile(document: &Value, columns: &[Column]) -> Option<FastPlan> {
        let top = document.as_object()?;
        if has_reference(document) {
            return None;
        }
        let mut closed = false;
        for (keyword, value) in top {
            match keyword.as_str() {
                "type" if value == "object" => {}
                "properties" | "required" => {}
                "additionalProperties" => match value {
                    Value::Bool(allowed) => closed = !allowed,
                    _ => return None,
                },
                k if is_annotation(k) => {}
                _ => return None,
            }
        }
        let properties = top.get("properties")?.as_object()?;
        let mut plan_columns = Vec::with_capacity(columns.len());
        for column in columns {
            let property = properties.get(&column.name)?;
            plan_columns.push(FastColumn::compile(column.kind, property)?);
        }
        let names = Names::new(columns.iter().map(|c| c.name.as_str().into()).collect());
        let mut required = Vec::new();
        if let Some(list) = top.get("required") {
            for name in list.as_array()? {
                let position = columns
                    .iter()
                    .position(|c| Some(c.name.as_str()) == name.as_str())?;
                required.push(position);
            }
        }
        Some(FastPlan {
            columns: plan_columns,
            names,
            required,
            closed,
        })
    }

    /// Parses and checks one record into `cells` (one per column, in column order). `false`
    /// means "not sure": the record must take the full path; `cells` is then garbage.
    pub(super) fn decode<'de>(&self, text: &'de str, cells: &mut Vec<Cell<'de>>) -> bool {
        cells.clear();
        cells.resize_with(self.columns.len(), || Cell::Null);
        let mut seen = vec![false; self.columns.len()];
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let seed = RecordSeed {
            plan: self,
            cells,
            seen: &mut seen,
        };
        if seed.deserialize(&mut deserializer).is_err() || deserializer.end().is_err() {
            return false;
        }
        self.required.iter().all(|&i| seen[i])
    }
}

/// Property names and where each is, for looking keys up.
struct Names {
    list: Vec<Box<str>>,
    index: HashMap<Box<str>, usize>,
}

impl Names {
    fn new(list: Vec<Box<str>>) -> Names {
        let index = list.iter().cloned().zip(0..).collect();
        Names { list, index }
    }

    /// Where `key` is; tries `expected` (the one after the previous key) first, since records
    /// usually list their fields in the schema's order.
    fn position(&self, key: &str, expected: usize) -> Option<usize> {
        if self.list.get(expected).is_some_and(|n| **n == *key) {
            return Some(expected);
        }
        self.index.get(key).copied()
    }
}

impl FastColumn {
    fn compile(kind: ColumnKind, property: &Value) -> Option<FastColumn> {
        let map = property.as_object()?;
        let types: Vec<&str> = match map.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let nullable = types.contains(&"null");
        let residual_validator = || {
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(property)
                .ok()
        };
        let mut column = FastColumn {
            kind,
            nullable,
            strings: StringChecks::default(),
            numbers: NumberChecks::default(),
            residual: None,
            object: None,
        };
        if kind == ColumnKind::Json
            && let Some(plan) = ObjectPlan::compile(map)
        {
            column.object = Some(plan);
            return Some(column);
        }
        let all_known = map
            .keys()
            .all(|k| PROPERTY_KEYWORDS.contains(&k.as_str()) || is_annotation(k));
        let compiled =
            kind != ColumnKind::Json && all_known && column.compile_checks(map).is_some();
        if !compiled {
            column.strings = StringChecks::default();
            column.numbers = NumberChecks::default();
            let only_annotations = map.keys().all(|k| is_annotation(k));
            // An untyped column with no rule takes any value; otherwise the property's schema
            // decides (it was checked as part of the whole schema, so it compiles).
            if !only_annotations {
                column.residual = Some(residual_validator()?);
            }
        }
        Some(column)
    }

    /// Reads the keywords into checks; `None` when one of them is beyond this module.
    fn compile_checks(&mut self, map: &serde_json::Map<String, Value>) -> Option<()> {
        let is_string = matches!(
            self.kind,
            ColumnKind::Utf8 | ColumnKind::Date | ColumnKind::Timestamp
        );
        let is_number = matches!(self.kind, ColumnKind::Int64 | ColumnKind::Float64);
        let limit = |v: &Value| v.as_f64().filter(|f| f.abs() <= EXACT_F64);
        let count = |v: &Value| v.as_u64().map(|n| n as usize);
        for (keyword, value) in map {
            match keyword.as_str() {
                "enum" if is_string => {
                    let values = value.as_array()?;
                    let strings: Option<Vec<String>> = values
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect();
                    self.strings.allowed = Some(Allowed::new(strings?));
                }
                "minLength" if is_string => self.strings.min_chars = Some(count(value)?),
                "maxLength" if is_string => self.strings.max_chars = Some(count(value)?),
                "pattern" if is_string => {
                    self.strings.pattern = Some(compile_pattern(value.as_str()?)?)
                }
                "minimum" if is_number => self.numbers.minimum = Some(limit(value)?),
                "maximum" if is_number => self.numbers.maximum = Some(limit(value)?),
                "exclusiveMinimum" if is_number => {
                    self.numbers.exclusive_minimum = Some(limit(value)?)
                }
                "exclusiveMaximum" if is_number => {
                    self.numbers.exclusive_maximum = Some(limit(value)?)
                }
                // The column's kind already says which format it parses (`date` → Date32,
                // `date-time` → Timestamp); any other format is for the residual validator.
                "format" => match (self.kind, value.as_str()?) {
                    (ColumnKind::Date, "date") | (ColumnKind::Timestamp, "date-time") => {}
                    _ => return None,
                },
                "type" => {}
                k if is_annotation(k) => {}
                _ => return None,
            }
        }
        Some(())
    }

    fn string_ok(&self, s: &str) -> bool {
        let checks = &self.strings;
        if let Some(allowed) = &checks.allowed
            && !allowed.contains(s)
        {
            return false;
        }
        // A string has at most as many characters as bytes, and at least a quarter as many;
        // count only when the byte length does not settle it.
        if let Some(max) = checks.max_chars
            && s.len() > max
            && s.chars().count() > max
        {
            return false;
        }
        if let Some(min) = checks.min_chars
            && s.len() / 4 < min
            && s.chars().count() < min
        {
            return false;
        }
        checks.pattern.as_ref().is_none_or(|p| p.is_match(s))
    }

    /// `null` is valid here: among the types, and not shut out by an `enum` (an `enum` listing
    /// `null` is left to the residual validator, so a fast-path `enum` never has it).
    fn takes_null(&self) -> bool {
        self.nullable && self.strings.allowed.is_none()
    }

    fn number_ok(&self, f: f64) -> bool {
        let n = &self.numbers;
        n.minimum.is_none_or(|m| f >= m)
            && n.maximum.is_none_or(|m| f <= m)
            && n.exclusive_minimum.is_none_or(|m| f > m)
            && n.exclusive_maximum.is_none_or(|m| f < m)
    }

    /// A `date` / `date-time` column's text is a date / date-time.
    fn text_parses(&self, s: &str) -> bool {
        match self.kind {
            ColumnKind::Date => parse_date(s.as_bytes()).is_some(),
            ColumnKind::Timestamp => parse_date_time(s.as_bytes()).is_some(),
            _ => true,
        }
    }

    /// A checked scalar (`ScalarSeed` matched it to this column's kind) as this column's
    /// cell; `None` when a date or date-time does not parse.
    fn typed<'de>(&self, scalar: Scalar<'de>) -> Option<Cell<'de>> {
        Some(match (scalar, self.kind) {
            (Scalar::Null, _) => Cell::Null,
            (Scalar::Bool(v), _) => Cell::Bool(v),
            (Scalar::Int(v), ColumnKind::Int64) => Cell::Int(v),
            (Scalar::Int(v), _) => Cell::Float(v as f64),
            (Scalar::Float(v), _) => Cell::Float(v),
            (Scalar::Str(s), ColumnKind::Date) => Cell::Date(parse_date(s.as_bytes())?),
            (Scalar::Str(s), ColumnKind::Timestamp) => Cell::Micros(parse_date_time(s.as_bytes())?),
            (Scalar::Str(Cow::Borrowed(s)), _) => Cell::Str(s),
            (Scalar::Str(Cow::Owned(s)), _) => Cell::Owned(s),
        })
    }
}

/// A pattern the `regex` crate runs with the same meaning as ECMA-262: ASCII only, and only
/// constructs that mean the same in both. Left to the full validator: `\w`, `\s`, `\b` (they
/// differ), `.` and negated classes (the `regex` crate refuses them without Unicode), escapes
/// the `regex` crate gives a meaning of its own (`\<` is a word boundary there, a `<` in
/// ECMA-262), class set operations (`&&`, `--`, `~~`), POSIX classes, flag groups and `{,n}`.
fn compile_pattern(pattern: &str) -> Option<regex::Regex> {
    if !pattern.is_ascii() {
        return None;
    }
    let differs = ["&&", "--", "~~", "[:", "{,"];
    if differs.iter().any(|d| pattern.contains(d)) {
        return None;
    }
    let bytes = pattern.as_bytes();
    let mut in_class = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let next = *bytes.get(i + 1)?;
                if next != b'd' && !br".+*?()|[]{}^$/\-".contains(&next) {
                    return None;
                }
                i += 2;
                continue;
            }
            // `[]` is an empty class in ECMA-262 and a `]` in the `regex` crate; a `[` inside
            // a class is a nested class there and a plain `[` in ECMA-262.
            b'[' if in_class || bytes.get(i + 1) == Some(&b']') => return None,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'(' if bytes.get(i + 1) == Some(&b'?') && bytes.get(i + 2) != Some(&b':') => {
                return None;
            }
            // A repeat must be `{n}`, `{n,}` or `{n,m}`: anything else is literal text in
            // ECMA-262 but may still be a repeat to the `regex` crate (`{1, 3}`).
            b'{' if !in_class => {
                let body: Vec<u8> = bytes[i + 1..]
                    .iter()
                    .copied()
                    .take_while(|&b| b != b'}')
                    .collect();
                let commas = body.iter().filter(|&&b| b == b',').count();
                let well_formed = body.first().is_some_and(u8::is_ascii_digit)
                    && commas <= 1
                    && body.iter().all(|&b| b.is_ascii_digit() || b == b',');
                if !well_formed {
                    return None;
                }
            }
            _ => {}
        }
        i += 1;
    }
    regex::RegexBuilder::new(pattern)
        .unicode(false)
        .build()
        .ok()
}

fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// `YYYY-MM-DD` (a real calendar day) as days since 1970-01-01.
fn parse_date(s: &[u8]) -> Option<i32> {
    if s.len() != 10 {
        return None;
    }
    date_days(s)
}

fn date_days(s: &[u8]) -> Option<i32> {
    if s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let year = digits(&s[0..4])?;
    let date = NaiveDate::from_ymd_opt(year as i32, digits(&s[5..7])?, digits(&s[8..10])?)?;
    Some(date.num_days_from_ce() - UNIX_EPOCH_DAY)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as microseconds since the epoch, the way
/// `chrono::DateTime::parse_from_rfc3339(..).timestamp_micros()` reads it (digits past the
/// microsecond are cut). Only the plain forms: no leap second, lowercase `t`/`z` or space.
fn parse_date_time(s: &[u8]) -> Option<i64> {
    if s.len() < 20 || s[10] != b'T' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let days = i64::from(date_days(&s[..10])?);
    let (hour, minute, second) = (
        digits(&s[11..13])?,
        digits(&s[14..16])?,
        digits(&s[17..19])?,
    );
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &s[19..];
    let mut micros = 0i64;
    if rest.first() == Some(&b'.') {
        let count = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 || count > 9 {
            return None;
        }
        let fraction = &rest[1..1 + count];
        for i in 0..6 {
            micros = micros * 10 + fraction.get(i).map_or(0, |b| i64::from(b - b'0'));
        }
        rest = &rest[1 + count..];
    }
    let offset_seconds = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let seconds = i64::from(h * 3600 + m * 60);
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    Some(seconds * 1_000_000 + micros)
}

/// Builds one record's cells from its JSON object.
struct RecordSeed<'p, 'c, 'de> {
    plan: &'p FastPlan,
    cells: &'c mut Vec<Cell<'de>>,
    seen: &'c mut [bool],
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut expected = 0;
        while let Some(column) = map.next_key_seed(KeySeed {
            names: &self.plan.names,
            expected,
        })? {
            let Some(i) = column else {
                if self.plan.closed {
                    return Err(de::Error::custom("a key outside the schema"));
                }
                // Parsed, not skipped: serde's skipping checks less than a parse does (no
                // depth limit, lone surrogates, `1e400`), and the full path parses it.
                map.next_value::<Value>()?;
                continue;
            };
            if std::mem::replace(&mut self.seen[i], true) {
                return Err(de::Error::custom("a key twice"));
            }
            self.cells[i] = map.next_value_seed(ValueSeed(&self.plan.columns[i]))?;
            expected = i + 1;
        }
        Ok(())
    }
}

/// A key → its column or field (`None`: a key outside the schema).
struct KeySeed<'p> {
    names: &'p Names,
    expected: usize,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.names.position(key, self.expected))
    }
}

/// One value → its typed cell.
struct ValueSeed<'p>(&'p FastColumn);

fn unsure<E: de::Error>() -> E {
    E::custom("not for the fast path")
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Cell<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Cell<'de>, D::Error> {
        let column = self.0;
        if let Some(object) = &column.object {
            return deserializer.deserialize_any(ObjectVisitor { column, object });
        }
        let Some(residual) = &column.residual else {
            if column.kind == ColumnKind::Json {
                // No rule at all: any value, kept as JSON text.
                let value = Value::deserialize(deserializer)?;
                return Ok(json_cell(&value));
            }
            let scalar = ScalarSeed(column).deserialize(deserializer)?;
            return column.typed(scalar).ok_or_else(unsure);
        };
        let value = Value::deserialize(deserializer)?;
        if !residual.is_valid(&value) {
            return Err(unsure());
        }
        // The full path's conversion, for exactly the same cell.
        cell(column.kind, Some(&value))
            .map(Cell::into_owned)
            .map_err(|_| unsure())
    }
}

/// An object column's value → its JSON text (or null).
struct ObjectVisitor<'p> {
    column: &'p FastColumn,
    object: &'p ObjectPlan,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = Cell<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Cell<'de>, E> {
        if self.column.nullable {
            Ok(Cell::Null)
        } else {
            Err(unsure())
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell<'de>, A::Error> {
        let plan = self.object;
        let mut seen = vec![false; plan.fields.len()];
        let mut text = Vec::with_capacity(128);
        text.push(b'{');
        let mut expected = 0;
        while let Some(found) = map.next_key_seed(KeySeed {
            names: &plan.names,
            expected,
        })? {
            // A key outside `properties` would have to be written back as it came.
            let Some(i) = found else {
                return Err(unsure());
            };
            if std::mem::replace(&mut seen[i], true) {
                return Err(unsure());
            }
            expected = i + 1;
            if text.len() > 1 {
                text.push(b',');
            }
            serde_json::to_writer(&mut text, &*plan.names.list[i]).map_err(|_| unsure())?;
            text.push(b':');
            let field = &plan.fields[i];
            let value = map.next_value_seed(ScalarSeed(field))?;
            if let Scalar::Str(s) = &value
                && !field.text_parses(s)
            {
                return Err(unsure());
            }
            value.write(&mut text).map_err(|_| unsure())?;
        }
        text.push(b'}');
        if !plan.required.iter().all(|&i| seen[i]) {
            return Err(unsure());
        }
        String::from_utf8(text)
            .map(Cell::Owned)
            .map_err(|_| unsure())
    }
}

/// One checked scalar: the value of a simple column, or of an object column's field.
enum Scalar<'de> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'de, str>),
}

impl Scalar<'_> {
    /// As `Value::to_string()` writes it.
    fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Scalar::Null => serde_json::to_writer(out, &()),
            Scalar::Bool(v) => serde_json::to_writer(out, v),
            Scalar::Int(v) => serde_json::to_writer(out, v),
            Scalar::Float(v) => serde_json::to_writer(out, v),
            Scalar::Str(v) => serde_json::to_writer(out, &**v),
        }
    }
}

/// A value checked against a simple column's rules (type, null, enum, lengths, pattern,
/// range); dates are only parsed by whoever types it.
struct ScalarSeed<'p>(&'p FastColumn);

impl<'de> DeserializeSeed<'de> for ScalarSeed<'_> {
    type Value = Scalar<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> ScalarSeed<'_> {
    fn string<E: de::Error>(&self, s: Cow<'de, str>) -> Result<Scalar<'de>, E> {
        let string_kind = matches!(
            self.0.kind,
            ColumnKind::Utf8 | ColumnKind::Date | ColumnKind::Timestamp
        );
        if string_kind && self.0.string_ok(&s) {
            Ok(Scalar::Str(s))
        } else {
            Err(unsure())
        }
    }
}

impl<'de> Visitor<'de> for ScalarSeed<'_> {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a value of the column's type")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        self.string(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        self.string(Cow::Owned(s.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        if self.0.takes_null() {
            Ok(Scalar::Null)
        } else {
            Err(unsure())
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        match self.0.kind {
            ColumnKind::Boolean => Ok(Scalar::Bool(v)),
            _ => Err(unsure()),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        let f = v as f64;
        let number = matches!(self.0.kind, ColumnKind::Int64 | ColumnKind::Float64);
        if number && f.abs() <= EXACT_F64 && self.0.number_ok(f) {
            Ok(Scalar::Int(v))
        } else {
            Err(unsure())
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => Err(unsure()),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // `5.0` for an integer column is valid JSON Schema; the full path handles it.
        match self.0.kind {
            ColumnKind::Float64 if self.0.number_ok(v) => Ok(Scalar::Float(v)),
            _ => Err(unsure()),
        }
    }
}

fn json_cell(value: &Value) -> Cell<'static> {
    if value.is_null() {
        Cell::Null
    } else {
        Cell::Owned(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    #[test]
    fn date_times_read_as_chrono_reads_them() {
        let samples = [
            "2025-04-01T08:00:00+07:00",
            "2025-04-01T08:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "1900-02-28T00:00:00.5-11:30",
            "2024-02-29T23:59:59.123456789+00:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59-23:59",
            "2025-01-01T07:00:00.1234567+07:00",
        ];
        for s in samples {
            let expected = DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros();
            assert_eq!(parse_date_time(s.as_bytes()), Some(expected), "{s}");
        }
        for s in [
            "2025-02-29T00:00:00Z",
            "2025-04-01T24:00:00Z",
            "2025-04-01T08:00:60Z",
            "2025-04-01t08:00:00Z",
            "2025-04-01T08:00:00",
            "2025-04-01T08:00:00+7:00",
            "2025-04-01T08:00:00.Z",
            "2025-04-01T08:00:00.1234567890Z",
            "2025-4-01T08:00:00Z",
        ] {
            assert_eq!(parse_date_time(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn dates_read_as_chrono_reads_them() {
        for s in ["2025-04-01", "1969-12-31", "2024-02-29", "0001-01-01"] {
            let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
            assert_eq!(
                parse_date(s.as_bytes()),
                Some(date.num_days_from_ce() - UNIX_EPOCH_DAY)
            );
        }
        for s in [
            "2025-02-29",
            "2025-13-01",
            "2025-04-1",
            "2025/04/01",
            "20250401xx",
        ] {
            assert_eq!(parse_date(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn only_patterns_that_mean_the_same_in_both_engines_compile() {
        assert!(compile_pattern("^BPT-[0-9]{4}-[0-9]{7}$").is_some());
        assert!(compile_pattern(r"^0\d{9}$").is_some());
        assert!(compile_pattern(r"^\w+$").is_none());
        assert!(compile_pattern(r"^\s*x$").is_none());
        assert!(compile_pattern("^a.b$").is_none());
        assert!(compile_pattern("^[^a]$").is_none());
        assert!(compile_pattern("^đ$").is_none());
        assert!(compile_pattern(r"^\<a$").is_none());
        assert!(compile_pattern("^[a&&b]$").is_none());
        assert!(compile_pattern("^(?i)a$").is_none());
        assert!(compile_pattern("^(?:ab)+$").is_some());
        assert!(compile_pattern("^a{1, 3}$").is_none());
        assert!(compile_pattern("^[[a]]$").is_none());
        assert!(compile_pattern("^[]a]$").is_none());
        assert!(compile_pattern("^[a-z]{2,}-[0-9]{1,3}$").is_some());
        let digits = compile_pattern(r"^\d$").unwrap();
        // `\d` is ASCII only in ECMA-262; the Arabic-Indic digit must not match here.
        assert!(digits.is_match("7"));
        assert!(!digits.is_match("\u{0667}"));
    }
}

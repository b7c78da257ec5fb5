//! The field paths of `[source.fields]`: where in a FHIR resource a column's value is.
//!
//! A path is a chain of steps, evaluated on one value at a time (not FHIRPath's collections):
//!
//! - `name`: a field of an object (`status`, `address.district`);
//! - `[n]`: the n-th element of an array, from 0 (`telecom[0].value`);
//! - `[key=value]`: the first element of an array whose field `key` is `value`, compared as
//!   text (`identifier[system=https://moh.gov.vn/facility].value`, `telecom[system=phone]`);
//!   the value runs to the closing `]` and may hold `.`, `/`, `:` and `=`;
//! - `$` alone: the whole resource; `%entry` starts the path at the Bundle entry instead of
//!   the resource (`%entry.fullUrl`, `%entry.search.score`).
//!
//! A step that finds nothing (a missing field, an index past the end, no matching element, a
//! field of something that is not an object) makes the value `null`. Objects and arrays are
//! kept as JSON (the hub stores them in a column as JSON text).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
    Filter { key: String, value: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Root {
    Resource,
    Entry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    root: Root,
    steps: Vec<Step>,
}

impl FieldPath {
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let text = text.trim();
        if text == "$" {
            return Ok(FieldPath {
                root: Root::Resource,
                steps: Vec::new(),
            });
        }
        let (root, rest) = if text == "%entry" {
            (Root::Entry, "")
        } else if let Some(rest) = text.strip_prefix("%entry.") {
            (Root::Entry, rest)
        } else if text.starts_with('%') || text.starts_with('$') {
            return Err(format!(
                "path {text:?}: only `$` (alone) and `%entry` may start a path"
            ));
        } else {
            (Root::Resource, text)
        };
        if rest.is_empty() {
            return match root {
                Root::Entry => Ok(FieldPath {
                    root,
                    steps: Vec::new(),
                }),
                Root::Resource => Err("path is empty (use \"$\" for the whole resource)".into()),
            };
        }
        let steps = parse_steps(rest).map_err(|e| format!("path {text:?}: {e}"))?;
        Ok(FieldPath { root, steps })
    }

    /// The value at this path, or `null`.
    pub fn extract(&self, entry: &Value, resource: &Value) -> Value {
        let mut current = match self.root {
            Root::Resource => resource,
            Root::Entry => entry,
        };
        for step in &self.steps {
            let next = match (step, current) {
                (Step::Field(name), Value::Object(map)) => map.get(name),
                (Step::Index(i), Value::Array(items)) => items.get(*i),
                (Step::Filter { key, value }, Value::Array(items)) => items
                    .iter()
                    .find(|item| item.get(key).is_some_and(|v| same_text(v, value))),
                _ => None,
            };
            match next {
                Some(v) => current = v,
                None => return Value::Null,
            }
        }
        current.clone()
    }
}

fn same_text(v: &Value, text: &str) -> bool {
    match v {
        Value::String(s) => s == text,
        Value::Number(n) => n.to_string() == text,
        Value::Bool(b) => b.to_string() == text,
        _ => false,
    }
}

fn parse_steps(text: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut rest = text;
    // After a field or a bracket: `.` starts a field, `[` a bracket, the end ends the path.
    let mut expect_field = true;
    while !rest.is_empty() || expect_field {
        if expect_field {
            let end = rest.find(['.', '[', ']', '=']).unwrap_or(rest.len());
            let name = &rest[..end];
            if name.is_empty() {
                return Err(if rest.is_empty() {
                    "ends with '.'".into()
                } else {
                    format!("a field name is missing before {:?}", first(rest))
                });
            }
            steps.push(Step::Field(name.to_string()));
            rest = &rest[end..];
            expect_field = false;
            continue;
        }
        if let Some(after) = rest.strip_prefix('.') {
            rest = after;
            expect_field = true;
        } else if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']').ok_or("a '[' is not closed")?;
            steps.push(parse_bracket(&after[..close])?);
            rest = &after[close + 1..];
        } else {
            return Err(format!("unexpected {:?}", first(rest)));
        }
    }
    Ok(steps)
}

fn first(text: &str) -> char {
    text.chars().next().unwrap_or(' ')
}

fn parse_bracket(inside: &str) -> Result<Step, String> {
    if let Some((key, value)) = inside.split_once('=') {
        let key = key.trim();
        if key.is_empty() || key.contains(['.', '[']) {
            return Err(format!(
                "[{inside}]: the filter needs a field name before '='"
            ));
        }
        return Ok(Step::Filter {
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    inside
        .trim()
        .parse::<usize>()
        .map(Step::Index)
        .map_err(|_| format!("[{inside}] is neither an index nor a key=value filter"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(path: &str, resource: &Value) -> Value {
        FieldPath::parse(path)
            .unwrap()
            .extract(&json!({"fullUrl": "http://x/Location/1"}), resource)
    }

    #[test]
    fn paths_reach_fields_indexes_and_filtered_elements() {
        let r = json!({
            "id": "loc-1",
            "address": {"district": "Huyện Đồng Phú"},
            "telecom": [{"system": "email", "value": "a@b"}, {"system": "phone", "value": "0271"}],
            "identifier": [{"system": "https://moh.gov.vn/facility", "value": "70-DP-001"}],
            "position": {"latitude": 11.4, "longitude": 106.9},
            "extension": [{"url": "https://x.invalid/sd/bed-count", "valueInteger": 150}]
        });
        assert_eq!(get("address.district", &r), json!("Huyện Đồng Phú"));
        assert_eq!(get("telecom[0].value", &r), json!("a@b"));
        assert_eq!(get("telecom[system=phone].value", &r), json!("0271"));
        assert_eq!(
            get("identifier[system=https://moh.gov.vn/facility].value", &r),
            json!("70-DP-001")
        );
        assert_eq!(
            get(
                "extension[url=https://x.invalid/sd/bed-count].valueInteger",
                &r
            ),
            json!(150)
        );
        assert_eq!(
            get("position", &r),
            json!({"latitude": 11.4, "longitude": 106.9})
        );
        assert_eq!(get("$", &r), r);
        assert_eq!(get("%entry.fullUrl", &r), json!("http://x/Location/1"));
        // Missing, out of range, no match, wrong shape: null.
        assert_eq!(get("address.city", &r), Value::Null);
        assert_eq!(get("telecom[5].value", &r), Value::Null);
        assert_eq!(get("telecom[system=fax].value", &r), Value::Null);
        assert_eq!(get("id.value", &r), Value::Null);
        assert_eq!(get("address[0]", &r), Value::Null);
    }

    #[test]
    fn bad_paths_are_refused() {
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "a[",
            "a[x]",
            "a[=1]",
            "a]b",
            "[0]",
            "$.a",
            "%resource.id",
            "a[0]b",
            "a[0]ồ",
        ] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(FieldPath::parse("a[0][1].b").is_ok());
        assert!(FieldPath::parse("%entry").is_ok());
    }
}

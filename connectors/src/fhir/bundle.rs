//! One page of a FHIR search: the records in a searchset Bundle, its next link, and the
//! OperationOutcomes a server puts in place of (or beside) the data.

use serde_json::{Map, Value};
use url::Url;

use super::path::FieldPath;
use crate::ConnectorError;
use crate::record::{Payload, RawRecord};

pub struct Page {
    pub records: Vec<RawRecord>,
    /// The largest `meta.lastUpdated` of the records, as the server spelled it.
    pub last_updated: Option<String>,
    pub next: Option<Url>,
}

/// What the records of a page are made of.
pub struct Shape<'a> {
    pub resource_type: &'a str,
    /// Column name and path; empty = the resource itself is the record.
    pub fields: &'a [(String, FieldPath)],
}

pub fn read_page(
    document: &Value,
    url: &Url,
    page: u32,
    shape: &Shape<'_>,
) -> Result<Page, ConnectorError> {
    match document.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => {}
        Some("OperationOutcome") => {
            return Err(ConnectorError::Reported {
                url: url.to_string(),
                message: describe_outcome(document),
            });
        }
        other => {
            return Err(ConnectorError::InvalidResponse {
                url: url.to_string(),
                message: format!(
                    "expected a FHIR Bundle, got resourceType {}",
                    other.map_or_else(|| "(none)".to_string(), |t| format!("{t:?}"))
                ),
            });
        }
    }
    let entries = match document.get("entry") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(entries)) => entries.as_slice(),
        Some(_) => {
            return Err(ConnectorError::InvalidResponse {
                url: url.to_string(),
                message: "Bundle.entry is not an array".into(),
            });
        }
    };
    let mut records = Vec::with_capacity(entries.len());
    let mut last_updated = None;
    for (i, entry) in entries.iter().enumerate() {
        let location = format!("page {page} /entry/{i}");
        let resource = match entry.get("resource") {
            Some(r @ Value::Object(_)) => r,
            _ => {
                records.push(unreadable(location, entry, "entry has no resource object"));
                continue;
            }
        };
        let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
            records.push(unreadable(location, entry, "resource has no resourceType"));
            continue;
        };
        if resource_type == "OperationOutcome" {
            if has_errors(resource) {
                return Err(ConnectorError::Reported {
                    url: url.to_string(),
                    message: describe_outcome(resource),
                });
            }
            tracing::warn!(%url, outcome = %describe_outcome(resource), "FHIR server warning");
            continue;
        }
        // `_include`d resources (the Organization of a Location) are context, not rows of this
        // dataset; a resource of another type is not data either.
        let mode = entry.pointer("/search/mode").and_then(Value::as_str);
        if mode == Some("include") || resource_type != shape.resource_type {
            tracing::debug!(%url, resource_type, ?mode, "skipping entry that is not a match");
            continue;
        }
        if let Some(t) = resource
            .pointer("/meta/lastUpdated")
            .and_then(Value::as_str)
        {
            last_updated = crate::time::later(last_updated, t);
        }
        let record = if shape.fields.is_empty() {
            resource.clone()
        } else {
            let mut row = Map::with_capacity(shape.fields.len());
            for (column, path) in shape.fields {
                row.insert(column.clone(), path.extract(entry, resource));
            }
            Value::Object(row)
        };
        records.push(RawRecord {
            location,
            payload: Payload::Json(record),
        });
    }
    Ok(Page {
        records,
        last_updated,
        next: next_link(document, url)?,
    })
}

fn unreadable(location: String, entry: &Value, error: &str) -> RawRecord {
    RawRecord {
        location,
        payload: Payload::Unreadable {
            raw: entry.to_string(),
            error: error.to_string(),
        },
    }
}

/// `Bundle.link[relation=next].url`, resolved against the page's URL.
fn next_link(document: &Value, url: &Url) -> Result<Option<Url>, ConnectorError> {
    let Some(links) = document.get("link").and_then(Value::as_array) else {
        return Ok(None);
    };
    let Some(next) = links
        .iter()
        .find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))
    else {
        return Ok(None);
    };
    match next.get("url") {
        Some(Value::String(link)) if !link.is_empty() => {
            url.join(link)
                .map(Some)
                .map_err(|e| ConnectorError::InvalidResponse {
                    url: url.to_string(),
                    message: format!("next link {link:?} is not a URL: {e}"),
                })
        }
        _ => Err(ConnectorError::InvalidResponse {
            url: url.to_string(),
            message: "Bundle.link with relation \"next\" has no url".into(),
        }),
    }
}

fn has_errors(outcome: &Value) -> bool {
    issues(outcome).any(|issue| {
        matches!(
            issue.get("severity").and_then(Value::as_str),
            Some("error" | "fatal")
        )
    })
}

fn issues(outcome: &Value) -> impl Iterator<Item = &Value> {
    outcome
        .get("issue")
        .and_then(Value::as_array)
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
}

/// The issues of an OperationOutcome as one line: `error (not-supported): Unknown parameter`.
pub fn describe_outcome(outcome: &Value) -> String {
    let parts: Vec<String> = issues(outcome)
        .map(|issue| {
            let text = |p: &str| issue.pointer(p).and_then(Value::as_str);
            let severity = text("/severity").unwrap_or("issue");
            let code = text("/code").unwrap_or("unknown");
            let detail = text("/diagnostics")
                .or_else(|| text("/details/text"))
                .or_else(|| text("/details/coding/0/display"))
                .unwrap_or("(no diagnostics)");
            format!("{severity} ({code}): {detail}")
        })
        .collect();
    if parts.is_empty() {
        "OperationOutcome without issues".into()
    } else {
        format!("OperationOutcome: {}", parts.join("; "))
    }
}

/// For the HTTP client: an error response whose body is an OperationOutcome.
pub fn describe_error_body(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    (value.get("resourceType")?.as_str()? == "OperationOutcome").then(|| describe_outcome(&value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcome_in_a_bundle_fails_only_when_it_is_an_error() {
        let url = Url::parse("http://fhir.invalid/Location").unwrap();
        let shape = Shape {
            resource_type: "Location",
            fields: &[],
        };
        let warning = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "OperationOutcome",
                "issue": [{"severity": "warning", "code": "informational", "diagnostics": "slow"}]},
             "search": {"mode": "outcome"}},
            {"resource": {"resourceType": "Location", "id": "a", "meta": {"lastUpdated": "2025-01-02T00:00:00Z"}}},
            {"resource": {"resourceType": "Organization", "id": "o"}, "search": {"mode": "include"}},
            {"resource": {"resourceType": "Location", "id": "b"}, "search": {"mode": "include"}},
            {"fullUrl": "urn:x"}
        ]});
        let page = read_page(&warning, &url, 1, &shape).unwrap();
        assert_eq!(page.records.len(), 2);
        assert!(matches!(
            page.records[1].payload,
            Payload::Unreadable { .. }
        ));
        assert_eq!(page.records[1].location, "page 1 /entry/4");
        assert_eq!(page.last_updated.as_deref(), Some("2025-01-02T00:00:00Z"));
        assert!(page.next.is_none());

        let error = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "OperationOutcome",
                "issue": [{"severity": "fatal", "code": "exception", "details": {"text": "db down"}}]}}
        ]});
        let e = read_page(&error, &url, 1, &shape)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("fatal (exception): db down"), "{e}");
    }

    #[test]
    fn next_link_is_resolved_against_the_page() {
        let url = Url::parse("http://fhir.invalid/base/Location?_count=2").unwrap();
        let doc = json!({"resourceType": "Bundle", "link": [
            {"relation": "self", "url": "Location?_count=2"},
            {"relation": "next", "url": "Location?_count=2&_offset=2"}
        ]});
        let shape = Shape {
            resource_type: "Location",
            fields: &[],
        };
        let page = read_page(&doc, &url, 1, &shape).unwrap();
        assert_eq!(
            page.next.unwrap().as_str(),
            "http://fhir.invalid/base/Location?_count=2&_offset=2"
        );
    }
}

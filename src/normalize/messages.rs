//! Why a record was refused, in words a department's clerk reads: which field (its name and
//! the schema's Vietnamese description), what was expected, what was found.
//!
//! jsonschema's own messages ("-5 is less than the minimum of 0") are English and name no
//! field; the quarantine is read by the publisher's staff, so each error kind is said again
//! here. Kinds not listed keep the library's message after a Vietnamese lead.

use jsonschema::ValidationError;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use super::schema::Column;

/// Longest rendering of a found value inside a message.
const MAX_VALUE_CHARS: usize = 60;
/// Allowed values listed before "…".
const MAX_OPTIONS: usize = 6;

pub fn explain(error: &ValidationError<'_>, columns: &[Column]) -> String {
    let field = field_label(error.instance_path().as_str(), columns);
    let found = show(error.instance());
    let what = match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let path = format!("{}/{name}", error.instance_path().as_str());
            return format!(
                "Thiếu {}.",
                field_label(&path, columns).to_lowercase_first()
            );
        }
        ValidationErrorKind::Minimum { limit } => format!("phải lớn hơn hoặc bằng {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("phải nhỏ hơn hoặc bằng {limit}"),
        ValidationErrorKind::ExclusiveMinimum { limit } => format!("phải lớn hơn {limit}"),
        ValidationErrorKind::ExclusiveMaximum { limit } => format!("phải nhỏ hơn {limit}"),
        ValidationErrorKind::Enum { options } => {
            format!("phải là một trong các giá trị {}", list_options(options))
        }
        ValidationErrorKind::Constant { expected_value } => {
            format!("phải bằng {}", show(expected_value))
        }
        ValidationErrorKind::Pattern { pattern } => {
            format!("không đúng khuôn dạng quy định (mẫu {pattern})")
        }
        ValidationErrorKind::Type { kind } => format!("phải là {}", type_name(kind)),
        ValidationErrorKind::Format { format } => {
            format!("phải là {}", format_name(format))
        }
        ValidationErrorKind::MinLength { limit } => format!("phải có ít nhất {limit} ký tự"),
        ValidationErrorKind::MaxLength { limit } => {
            format!("không được dài quá {limit} ký tự")
        }
        ValidationErrorKind::MinItems { limit } => format!("phải có ít nhất {limit} phần tử"),
        ValidationErrorKind::MaxItems { limit } => {
            format!("không được có quá {limit} phần tử")
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            return format!(
                "{field} có trường không có trong cấu trúc dữ liệu trao đổi: {}.",
                unexpected.join(", ")
            );
        }
        _ => return format!("{field} không hợp lệ: {error}."),
    };
    format!("{field} {what}; giá trị nhận được: {found}.")
}

/// `Trường "received_direct" (Số hồ sơ tiếp nhận trực tiếp)` for a column; the path for a
/// nested value; "Bản ghi" for the record itself.
fn field_label(pointer: &str, columns: &[Column]) -> String {
    let path = pointer.trim_start_matches('/');
    if path.is_empty() {
        return "Bản ghi".into();
    }
    let description = columns
        .iter()
        .find(|c| c.name == path)
        .map(|c| first_clause(&c.description))
        .filter(|d| !d.is_empty());
    match description {
        Some(d) => format!("Trường \"{path}\" ({d})"),
        None => format!("Trường \"{path}\""),
    }
}

trait LowercaseFirst {
    fn to_lowercase_first(&self) -> String;
}

impl LowercaseFirst for String {
    /// "Trường …" inside a sentence: "Thiếu trường …".
    fn to_lowercase_first(&self) -> String {
        let mut chars = self.chars();
        match chars.next() {
            Some(first) => first.to_lowercase().chain(chars).collect(),
            None => String::new(),
        }
    }
}

/// A description's first sentence: enough to recognise the field.
fn first_clause(description: &str) -> String {
    let first = description
        .split_once(". ")
        .map_or(description, |(a, _)| a)
        .trim_end_matches('.');
    if first.chars().count() > 80 {
        first.chars().take(80).collect::<String>() + "…"
    } else {
        first.to_string()
    }
}

fn show(value: &Value) -> String {
    let text = match value {
        Value::String(s) => format!("\"{s}\""),
        Value::Null => "rỗng (null)".into(),
        other => other.to_string(),
    };
    if text.chars().count() > MAX_VALUE_CHARS {
        text.chars().take(MAX_VALUE_CHARS).collect::<String>() + "…"
    } else {
        text
    }
}

fn list_options(options: &Value) -> String {
    let Some(all) = options.as_array() else {
        return show(options);
    };
    let mut shown: Vec<String> = all.iter().take(MAX_OPTIONS).map(show).collect();
    if all.len() > MAX_OPTIONS {
        shown.push(format!("… ({} giá trị)", all.len()));
    }
    shown.join(", ")
}

fn type_name(kind: &TypeKind) -> String {
    let one = |t: &jsonschema::JsonType| -> &'static str {
        match t.to_string().as_str() {
            "integer" => "số nguyên",
            "number" => "số",
            "string" => "chuỗi ký tự",
            "boolean" => "giá trị đúng/sai",
            "object" => "đối tượng",
            "array" => "danh sách",
            "null" => "rỗng (null)",
            _ => "kiểu khác",
        }
    };
    match kind {
        TypeKind::Single(t) => one(t).to_string(),
        TypeKind::Multiple(set) => set
            .iter()
            .map(|t| one(&t))
            .collect::<Vec<_>>()
            .join(" hoặc "),
    }
}

fn format_name(format: &str) -> String {
    match format {
        "date" => "ngày theo dạng YYYY-MM-DD (ví dụ 2025-04-03)".into(),
        "date-time" => "thời điểm ISO 8601 có múi giờ (ví dụ 2025-04-03T09:15:00+07:00)".into(),
        "email" => "địa chỉ thư điện tử".into(),
        "uri" => "địa chỉ URI đầy đủ (ví dụ https://...)".into(),
        other => format!("giá trị theo định dạng {other}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::normalize::schema::ColumnKind;

    fn column(name: &str, description: &str) -> Column {
        Column {
            name: name.into(),
            kind: ColumnKind::Int64,
            description: description.into(),
            pii: false,
            mask: None,
        }
    }

    fn messages(schema: serde_json::Value, record: serde_json::Value) -> Vec<String> {
        let columns = vec![
            column("received", "Số hồ sơ tiếp nhận trong kỳ. Không âm."),
            column("day", "Ngày báo cáo"),
        ];
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        validator
            .iter_errors(&record)
            .map(|e| explain(&e, &columns))
            .collect()
    }

    #[test]
    fn a_clerk_reads_which_field_what_was_expected_and_what_came() {
        let schema = json!({
            "type": "object",
            "required": ["received", "agency"],
            "properties": {
                "received": {"type": "integer", "minimum": 0},
                "day": {"type": "string", "format": "date"},
                "kind": {"enum": ["a", "b", "c", "d", "e", "f", "g"]},
                "nested": {"type": "object", "properties": {"n": {"type": "integer"}}}
            }
        });
        let got = messages(
            schema.clone(),
            json!({"received": -5, "day": "31/04/2025", "kind": "x", "nested": {"n": "N/A"}}),
        );
        assert_eq!(
            got,
            vec![
                "Thiếu trường \"agency\".",
                "Trường \"received\" (Số hồ sơ tiếp nhận trong kỳ) phải lớn hơn hoặc bằng 0; giá trị nhận được: -5.",
                "Trường \"day\" (Ngày báo cáo) phải là ngày theo dạng YYYY-MM-DD (ví dụ 2025-04-03); giá trị nhận được: \"31/04/2025\".",
                "Trường \"kind\" phải là một trong các giá trị \"a\", \"b\", \"c\", \"d\", \"e\", \"f\", … (7 giá trị); giá trị nhận được: \"x\".",
                "Trường \"nested/n\" phải là số nguyên; giá trị nhận được: \"N/A\".",
            ]
        );
    }
}

//! The masks for personal data (Decree 13/2023), as SQL functions usable everywhere:
//! `mask_phone('0912345678')` → `091****678`, `mask_initials('Nguyễn Văn An')` → `N. V. A.`.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::cast::as_string_array;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

/// Keeps the first three and last three digits: enough to tell numbers apart, not to call.
pub fn mask_phone(text: &str) -> String {
    let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 3..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 6))
}

/// Initials of each word, upper-case with diacritics kept: `Trần thị Bình` → `T. T. B.`.
pub fn mask_initials(text: &str) -> String {
    text.split_whitespace()
        .filter_map(|w| w.chars().next())
        .map(|c| format!("{}.", c.to_uppercase()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn string_udf(name: &str, f: fn(&str) -> String) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let input = as_string_array(&arrays[0])?;
            let out: StringArray = input.iter().map(|v| v.map(f)).collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }),
    )
}

pub fn mask_phone_udf() -> ScalarUDF {
    string_udf("mask_phone", mask_phone)
}

pub fn mask_initials_udf() -> ScalarUDF {
    string_udf("mask_initials", mask_initials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_phone("0912345678"), "091****678");
        assert_eq!(mask_phone("0912 345 678"), "091****678");
        assert_eq!(mask_phone("09123"), "*****");
        assert_eq!(mask_initials("Nguyễn Văn An"), "N. V. A.");
        assert_eq!(mask_initials("  đặng  thị ánh "), "Đ. T. Á.");
    }
}

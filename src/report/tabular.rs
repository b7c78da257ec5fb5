//! The report as a table file: CSV (one file, every section in turn) and XLSX (one sheet per
//! section).
//!
//! CSV carries machine-readable values (the JSON's: `.` decimals, ratios as ratios, times in
//! UTC) and is UTF-8 with a byte-order mark, so Excel opens the Vietnamese text correctly.
//! XLSX is for people: numbers are numbers with Vietnamese-readable formats, percentages
//! are percent-formatted, times are local.

use rust_xlsxwriter::{Format as CellFormat, Workbook};
use serde_json::Value;

use super::{ColumnFormat, ReportDocument, ReportError, display, time_zone};

pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Layout: the report title and period on the first lines; then for each section a line
/// with its number and title, a header line of column labels, its rows, and an empty line.
pub fn to_csv(doc: &ReportDocument) -> Result<Vec<u8>, ReportError> {
    let mut out = BOM.to_vec();
    {
        let mut writer = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(&mut out);
        writer.write_record([doc.title.as_str()])?;
        writer.write_record([
            doc.period_label.as_str(),
            doc.period.as_str(),
            &doc.generated_at.to_rfc3339(),
        ])?;
        writer.write_record([""])?;
        for (i, section) in doc.sections.iter().enumerate() {
            writer.write_record([format!("{}. {}", i + 1, section.title)])?;
            writer.write_record(section.columns.iter().map(|c| defused(&c.label)))?;
            for row in &section.rows {
                writer.write_record(row.iter().map(raw))?;
            }
            writer.write_record([""])?;
        }
        writer.flush().map_err(csv::Error::from)?;
    }
    Ok(out)
}

fn raw(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => defused(s),
        other => other.to_string(),
    }
}

/// Text from departments that a spreadsheet would run as a formula (`=cmd|...`, `+`, `-`,
/// `@`, a tab or carriage return first) gets a leading `'`, which Excel shows as text.
pub(crate) fn defused(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_string(),
    }
}

/// Sheet names: at most 31 characters, none of `[]:*?/\`, unique in the workbook.
fn sheet_name(number: usize, title: &str, taken: &[String]) -> String {
    let clean: String = title
        .chars()
        .map(|c| if "[]:*?/\\".contains(c) { ' ' } else { c })
        .collect();
    let base: String = format!("{number}. {}", clean.trim())
        .chars()
        .take(31)
        .collect();
    let mut name = base.trim_end().to_string();
    let mut n = 2;
    while taken.iter().any(|t| t.eq_ignore_ascii_case(&name)) {
        let suffix = format!(" ({n})");
        name = base
            .chars()
            .take(31 - suffix.chars().count())
            .collect::<String>()
            + &suffix;
        n += 1;
    }
    name
}

pub fn to_xlsx(doc: &ReportDocument) -> Result<Vec<u8>, ReportError> {
    let tz = time_zone(doc);
    let mut workbook = Workbook::new();
    let bold = CellFormat::new().set_bold();
    let title = CellFormat::new().set_bold().set_font_size(13);
    let header = CellFormat::new()
        .set_bold()
        .set_text_wrap()
        .set_background_color("EEEEEE")
        .set_border(rust_xlsxwriter::FormatBorder::Thin);
    let integer = CellFormat::new().set_num_format("#,##0");
    let decimal = CellFormat::new().set_num_format("#,##0.0");
    let percent = CellFormat::new().set_num_format("0.0%");
    let mut taken = Vec::new();
    if doc.sections.is_empty() {
        let sheet = workbook.add_worksheet();
        sheet.write_string_with_format(0, 0, &doc.title, &title)?;
        sheet.write_string(1, 0, &doc.period_label)?;
    }
    for (i, section) in doc.sections.iter().enumerate() {
        let name = sheet_name(i + 1, &section.title, &taken);
        taken.push(name.clone());
        let sheet = workbook.add_worksheet();
        sheet.set_name(&name)?;
        sheet.write_string_with_format(0, 0, &doc.title, &title)?;
        sheet.write_string_with_format(1, 0, &doc.period_label, &bold)?;
        sheet.write_string_with_format(2, 0, format!("{}. {}", i + 1, section.title), &bold)?;
        let mut row: u32 = 3;
        if let Some(intro) = &section.intro {
            sheet.write_string(row, 0, intro)?;
            row += 1;
        }
        row += 1;
        for (c, column) in section.columns.iter().enumerate() {
            let c = u16::try_from(c).unwrap_or(u16::MAX);
            sheet.write_string_with_format(row, c, &column.label, &header)?;
            let width = column.label.chars().count().clamp(10, 40) as f64 + 2.0;
            sheet.set_column_width(c, width)?;
        }
        sheet.set_freeze_panes(row + 1, 0)?;
        for values in &section.rows {
            row += 1;
            for (c, (column, value)) in section.columns.iter().zip(values).enumerate() {
                let c = u16::try_from(c).unwrap_or(u16::MAX);
                match value {
                    Value::Null => {}
                    Value::Number(n) if column.format != ColumnFormat::Text => {
                        let x = n.as_f64().unwrap_or_default();
                        let format = match column.format {
                            ColumnFormat::Percent => &percent,
                            _ if n.is_i64() || n.is_u64() => &integer,
                            _ => &decimal,
                        };
                        sheet.write_number_with_format(row, c, x, format)?;
                    }
                    other => {
                        sheet.write_string(row, c, display(other, column, tz))?;
                    }
                }
            }
        }
        if section.rows.is_empty() {
            sheet.write_string(row + 1, 0, "Không có số liệu trong kỳ báo cáo.")?;
        }
    }
    Ok(workbook.save_to_buffer()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formulas_from_departments_are_text_in_csv() {
        assert_eq!(super::defused("=cmd|'/C calc'!A0"), "'=cmd|'/C calc'!A0");
        assert_eq!(super::defused("-5"), "'-5");
        assert_eq!(super::defused("Xã Tân Lợi"), "Xã Tân Lợi");
    }

    use super::*;

    #[test]
    fn sheet_names_fit_excel_rules() {
        let long = "Tình hình tiếp nhận và giải quyết hồ sơ thủ tục hành chính";
        let first = sheet_name(1, long, &[]);
        assert!(first.chars().count() <= 31, "{first}");
        let again = sheet_name(1, long, std::slice::from_ref(&first));
        assert_ne!(first, again);
        assert!(again.chars().count() <= 31, "{again}");
        assert_eq!(sheet_name(2, "a/b: c?", &[]), "2. a b  c");
    }
}

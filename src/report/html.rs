//! The report as one self-contained HTML page: Vietnamese, printable on A4, no external CSS,
//! script or font; charts are inline SVG. Every text from the data or the definition is
//! escaped (department data is untrusted).

use std::fmt::Write;

use super::{ReportDocument, SectionResult, chart, display, time_zone};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
@page { size: A4; margin: 18mm 15mm 18mm 20mm; }
* { box-sizing: border-box; }
body { font-family: "Times New Roman", "Liberation Serif", serif; font-size: 13pt; color: #111; margin: 0 auto; max-width: 210mm; padding: 12mm; line-height: 1.4; }
header.report { text-align: center; margin-bottom: 8mm; }
header.report .org { font-weight: bold; text-transform: uppercase; font-size: 12pt; }
header.report h1 { font-size: 16pt; margin: 6mm 0 2mm; text-transform: uppercase; }
header.report .period { font-weight: bold; font-size: 14pt; }
header.report .dates, header.report .generated { font-style: italic; font-size: 11pt; }
.provisional { border: 1px solid #a60; color: #a60; padding: 2mm 4mm; margin: 4mm 0; font-size: 11pt; }
section { margin-top: 8mm; }
section h2 { font-size: 14pt; margin: 0 0 2mm; }
section p.intro { margin: 0 0 3mm; text-align: justify; }
figure.chart { margin: 2mm 0 4mm; text-align: center; }
figure.chart svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; font-size: 11pt; }
th, td { border: 1px solid #444; padding: 1.2mm 2mm; vertical-align: top; }
th { background: #eee; text-align: center; }
td.num { text-align: right; white-space: nowrap; }
td.stt { text-align: center; }
p.empty { font-style: italic; }
p.truncated { font-size: 10pt; font-style: italic; }
footer { margin-top: 10mm; font-size: 10pt; color: #555; }
@media print {
  body { padding: 0; max-width: none; }
  section { break-inside: auto; }
  figure.chart, tr { break-inside: avoid; }
  thead { display: table-header-group; }
  h2 { break-after: avoid; }
  .provisional { border-color: #000; color: #000; }
}
"#;

pub fn to_html(doc: &ReportDocument) -> String {
    let tz = time_zone(doc);
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"vi\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} – {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&doc.title),
        escape(&doc.period_label),
    );
    let _ = write!(
        out,
        "<header class=\"report\">\n<div class=\"org\">{}</div>\n<h1>{}</h1>\n\
         <div class=\"period\">{}</div>\n\
         <div class=\"dates\">(Từ ngày {} đến hết ngày {})</div>\n\
         <div class=\"generated\">Lập lúc {}</div>\n</header>\n",
        escape(&doc.organisation),
        escape(&doc.title),
        escape(&doc.period_label),
        doc.first_day.format("%d/%m/%Y"),
        doc.last_day.format("%d/%m/%Y"),
        doc.generated_at
            .with_timezone(&tz)
            .format("%H:%M ngày %d/%m/%Y"),
    );
    if doc.revision > 0 {
        let _ = writeln!(
            out,
            "<p class=\"revision\">Bản điều chỉnh lần {}: số liệu được cập nhật do có dữ liệu gửi về sau khi kỳ báo cáo kết thúc.</p>",
            doc.revision
        );
    }
    if !doc.complete {
        out.push_str(
            "<p class=\"provisional\">Kỳ báo cáo chưa kết thúc: số liệu tạm tính đến thời điểm lập báo cáo.</p>\n",
        );
    }
    if let Some(d) = &doc.description {
        let _ = writeln!(out, "<p class=\"intro\">{}</p>", escape(d));
    }
    for (i, section) in doc.sections.iter().enumerate() {
        write_section(&mut out, i + 1, section, tz);
    }
    let _ = write!(
        out,
        "<footer>Báo cáo được lập tự động từ số liệu của các sở, ngành gửi về {} ({}, kỳ {}).</footer>\n</body>\n</html>\n",
        escape(&doc.organisation),
        escape(&doc.name),
        escape(&doc.period),
    );
    out
}

fn write_section(out: &mut String, number: usize, section: &SectionResult, tz: chrono_tz::Tz) {
    let _ = writeln!(
        out,
        "<section>\n<h2>{number}. {}</h2>",
        escape(&section.title)
    );
    if let Some(intro) = &section.intro {
        let _ = writeln!(out, "<p class=\"intro\">{}</p>", escape(intro));
    }
    if section.rows.is_empty() {
        out.push_str("<p class=\"empty\">Không có số liệu trong kỳ báo cáo.</p>\n</section>\n");
        return;
    }
    if let Some(svg) = chart::svg(section, tz) {
        let _ = writeln!(
            out,
            "<figure class=\"chart\" aria-label=\"{}\">{svg}</figure>",
            escape(&section.title)
        );
    }
    out.push_str("<table>\n<thead><tr><th>STT</th>");
    for c in &section.columns {
        let _ = write!(out, "<th>{}</th>", escape(&c.label));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (i, row) in section.rows.iter().enumerate() {
        let _ = write!(out, "<tr><td class=\"stt\">{}</td>", i + 1);
        for (c, value) in section.columns.iter().zip(row) {
            let class = if value.is_number() {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{}</td>", escape(&display(value, c, tz)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    if section.truncated {
        out.push_str(
            "<p class=\"truncated\">Bảng chỉ thể hiện một phần số liệu (vượt giới hạn số dòng của truy vấn).</p>\n",
        );
    }
    out.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::super::{ChartKind, ColumnFormat, ColumnResult};
    use super::*;
    use serde_json::json;

    fn doc(category: &str) -> ReportDocument {
        ReportDocument {
            name: "r".into(),
            title: "Báo cáo <b>thử</b>".into(),
            description: None,
            organisation: "Trung tâm IOC".into(),
            period: "2025-04".into(),
            period_label: "Tháng 4 năm 2025".into(),
            first_day: chrono::NaiveDate::from_ymd_opt(2025, 4, 1).unwrap(),
            last_day: chrono::NaiveDate::from_ymd_opt(2025, 4, 30).unwrap(),
            generated_at: chrono::DateTime::parse_from_rfc3339("2025-05-01T00:30:00Z")
                .unwrap()
                .with_timezone(&chrono::Utc),
            complete: true,
            revision: 0,
            time_zone: "Asia/Ho_Chi_Minh".into(),
            sections: vec![SectionResult {
                title: "Phản ánh theo lĩnh vực".into(),
                intro: Some("Số phản ánh \"mới\" & cũ".into()),
                chart: ChartKind::Bar,
                chart_series: vec![],
                columns: vec![
                    ColumnResult {
                        name: "name".into(),
                        label: "Lĩnh vực".into(),
                        type_name: "string".into(),
                        format: ColumnFormat::Auto,
                    },
                    ColumnResult {
                        name: "n".into(),
                        label: "Số phản ánh".into(),
                        type_name: "integer".into(),
                        format: ColumnFormat::Auto,
                    },
                    ColumnResult {
                        name: "rate".into(),
                        label: "Tỷ lệ".into(),
                        type_name: "number".into(),
                        format: ColumnFormat::Percent,
                    },
                ],
                rows: vec![
                    vec![json!(category), json!(1234), json!(0.925)],
                    vec![json!("Xả rác"), json!(5), json!(null)],
                ],
                truncated: false,
            }],
        }
    }

    #[test]
    fn every_value_is_escaped_and_numbers_are_vietnamese() {
        let html = to_html(&doc("<script>alert('x')</script>"));
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(!html.contains("<b>thử</b>"));
        assert!(html.contains("Báo cáo &lt;b&gt;thử&lt;/b&gt;"));
        assert!(html.contains("<td class=\"num\">1.234</td>"));
        assert!(html.contains("92,5 %"));
        assert!(html.contains("<svg"));
        assert!(html.contains("@media print"));
        assert!(html.contains("Tháng 4 năm 2025"));
        assert!(html.contains("Từ ngày 01/04/2025 đến hết ngày 30/04/2025"));
        assert!(html.contains("Lập lúc 07:30 ngày 01/05/2025"));
        // Self-contained: nothing is loaded from elsewhere.
        assert!(!html.contains("<link") && !html.contains("src=") && !html.contains("@import"));
    }
}

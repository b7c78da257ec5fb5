//! SQL: an editor box, the answer as a table, and the same answer as CSV. Both go through
//! `Hub::sql_as_with` (the consumer's catalog, limits and audit, exactly as `POST /api/v1/sql`)
//! and the CSV is `query::to_csv`, the API's own rendering. The SQL travels in a POST body,
//! never in a URL (where it would land in logs and history).

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::error::query_message;
use super::layout::{self, Chrome, Nav};
use super::{Console, ConsoleError, Posted, Rows, Viewer, cell_text, query_rows};
use crate::hub::HubError;

const EXAMPLE: &str = "SELECT assigned_unit_name, overdue\nFROM citizen_reports_overdue_by_unit\nORDER BY overdue DESC";

/// Rows shown on the page; the CSV has them all (up to `query.max_rows`).
const SHOWN: usize = 500;

enum Answer {
    None,
    Rows(Rows),
    Failed { message: String, detail: String },
}

fn editor(chrome: &Chrome, sql: &str, tables: &[String], answer: &Answer) -> Markup {
    let content = html! {
        form.sql method="post" action="/sql" {
            input type="hidden" name="csrf" value=(chrome.csrf());
            div.field {
                label for="sql-text" { "Câu lệnh SQL (chỉ đọc dữ liệu)" }
                textarea id="sql-text" name="sql" rows="8" spellcheck="false" required { (sql) }
            }
            div.actions {
                button type="submit" { "Chạy truy vấn" }
                button.secondary type="submit" formaction="/sql/csv" { "Tải kết quả CSV" }
            }
        }
        details.tables {
            summary { "Các bảng bạn được truy vấn (" (tables.len()) ")" }
            ul.columns { @for t in tables { li { code { (t) } } } }
        }
        @match answer {
            Answer::None => {}
            Answer::Failed { message, detail } => {
                div.notice.error role="alert" {
                    p { (message) }
                    p.detail { "Chi tiết: " (detail) }
                }
            }
            Answer::Rows(rows) => {
                section aria-labelledby="ket-qua" {
                    h2 id="ket-qua" { "Kết quả" }
                    p {
                        (layout::integer(rows.rows.len() as i64)) " dòng"
                        @if rows.truncated { " (đã cắt ở giới hạn số dòng của hệ thống)" }
                        @if rows.rows.len() > SHOWN { "; trang này hiển thị " (SHOWN) " dòng đầu, tệp CSV có đủ" }
                        "."
                    }
                    (table(rows, SHOWN))
                }
            }
        }
    };
    layout::page(chrome, Nav::Sql, "Truy vấn SQL", content)
}

/// A result as an HTML table (every cell escaped by maud).
pub fn table(rows: &Rows, max: usize) -> Markup {
    html! {
        div.table-wrap {
            table.data.compact {
                thead { tr { @for c in &rows.columns { th scope="col" { (c) } } } }
                tbody {
                    @for r in rows.rows.iter().take(max) {
                        tr { @for v in r { td { (cell_text(v)) } } }
                    }
                }
            }
        }
    }
}

async fn tables_of(console: &Console, viewer: &Viewer) -> Vec<String> {
    let mut names: Vec<String> = match console.hub.catalog_for(&viewer.consumer).await {
        Ok(c) => c
            .datasets
            .iter()
            .map(|d| d.name.clone())
            .chain(c.shares.iter().map(|g| format!("share.{}", g.name)))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.extend(console.hub.config.file.views.iter().map(|v| v.name.clone()));
    names
}

pub async fn page(State(console): State<Console>, viewer: Viewer) -> Markup {
    let chrome = Chrome::new(&console, &viewer);
    let tables = tables_of(&console, &viewer).await;
    editor(&chrome, EXAMPLE, &tables, &Answer::None)
}

pub async fn run(
    State(console): State<Console>,
    viewer: Viewer,
    headers: HeaderMap,
    form: Posted,
) -> Result<Markup, ConsoleError> {
    viewer.check_csrf(&headers, &form)?;
    let sql = form.required("sql", "Câu lệnh SQL")?.to_string();
    let chrome = Chrome::new(&console, &viewer);
    let tables = tables_of(&console, &viewer).await;
    // A failing query is shown on the page with the SQL kept, not as an error page.
    let answer = match query_rows(&console.hub, &viewer.consumer, &sql).await {
        Ok((_, rows)) => Answer::Rows(rows),
        Err(ConsoleError::Hub(HubError::Query(q))) => Answer::Failed {
            message: query_message(&q).to_string(),
            detail: q.to_string(),
        },
        Err(e) => return Err(e),
    };
    Ok(editor(&chrome, &sql, &tables, &answer))
}

pub async fn csv(
    State(console): State<Console>,
    viewer: Viewer,
    headers: HeaderMap,
    form: Posted,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&headers, &form)?;
    let sql = form.required("sql", "Câu lệnh SQL")?;
    // The rows go straight to CSV (no JSON cells for a page), audited like the page's query.
    let result = console
        .hub
        .sql_as_with(&viewer.consumer, sql, &|_| Ok(()), "console")
        .await?;
    let body = spreadsheet_csv(&result)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"ket-qua-truy-van.csv\"",
            ),
            (
                header::HeaderName::from_static("x-iochub-truncated"),
                if result.truncated { "true" } else { "false" },
            ),
        ],
        body,
    )
        .into_response())
}

/// The API's CSV made safe to open in a spreadsheet: a byte-order mark (so Excel reads the
/// Vietnamese text as UTF-8), and text cells that a spreadsheet would run as a formula
/// (citizens' and departments' text) prefixed with `'`. Numbers are left as they are.
fn spreadsheet_csv(result: &crate::query::QueryResult) -> Result<Vec<u8>, ConsoleError> {
    use arrow::datatypes::DataType;
    let internal = |e: &dyn std::fmt::Display| ConsoleError::Internal(e.to_string());
    let plain = crate::query::to_csv(result).map_err(|e| internal(&e))?;
    let text_column: Vec<bool> = result
        .schema
        .fields()
        .iter()
        .map(|f| {
            matches!(
                f.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        })
        .collect();
    let mut out = crate::report::tabular::BOM.to_vec();
    {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(plain.as_slice());
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(&mut out);
        for (line, record) in reader.records().enumerate() {
            let record = record.map_err(|e| internal(&e))?;
            let cells = record.iter().enumerate().map(|(i, cell)| {
                if line > 0 && text_column.get(i).copied().unwrap_or(false) {
                    crate::report::tabular::defused(cell)
                } else {
                    cell.to_string()
                }
            });
            writer.write_record(cells).map_err(|e| internal(&e))?;
        }
        writer.flush().map_err(|e| internal(&e))?;
    }
    Ok(out)
}

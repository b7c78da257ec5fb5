//! Dữ liệu: the catalog as the consumer may see it (`Hub::catalog_for`), a dataset's columns
//! (masked ones marked) and a preview (`Hub::sql_as_with`: the preview is masked exactly as
//! the consumer's SQL is), its quarantine with the reasons, and re-ingest of a fixed record
//! (`Hub::reingest`: the publish path, then the quarantine row is marked resolved).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{self, Chrome, Nav, badge};
use super::{Console, ConsoleError, Posted, Viewer, cell_text, query_rows};
use crate::hub::{DatasetInfo, HubError, QuarantineRowId};
use crate::sharing::{Mask, Role};

/// Rows in a dataset's preview, and quarantined records listed.
const PREVIEW_ROWS: usize = 20;
const QUARANTINE_ROWS: usize = 100;

fn mask_label(mask: Option<Mask>) -> &'static str {
    match mask {
        None => "Không",
        Some(Mask::Phone) => "Che một phần số điện thoại",
        Some(Mask::Initials) => "Chỉ hiện chữ cái đầu",
        Some(Mask::Hide) => "Ẩn",
        Some(Mask::RoundCoordinates) => "Làm tròn tọa độ",
    }
}

fn sharing_label(sharing: &str) -> &'static str {
    match sharing {
        "special" => "Đặc biệt (theo yêu cầu được duyệt)",
        _ => "Mặc định (mọi đơn vị, dữ liệu cá nhân được che)",
    }
}

pub async fn catalog(
    State(console): State<Console>,
    viewer: Viewer,
) -> Result<Markup, ConsoleError> {
    let hub = &console.hub;
    let chrome = Chrome::new(&console, &viewer);
    let tz = hub.time_zone();
    let catalog = hub.catalog_for(&viewer.consumer).await?;
    let content = html! {
        p { "Các bộ dữ liệu tài khoản của bạn được xem. Dữ liệu cá nhân được che theo quy định, trừ với đơn vị cung cấp." }
        div.table-wrap {
            table.data {
                thead { tr {
                    th scope="col" { "Bộ dữ liệu" }
                    th scope="col" { "Lĩnh vực" }
                    th scope="col" { "Chế độ chia sẻ" }
                    th scope="col" class="num" { "Số bản ghi" }
                    th scope="col" { "Cập nhật lần cuối" }
                } }
                tbody {
                    @for d in &catalog.datasets {
                        tr {
                            th scope="row" { a href={ "/du-lieu/" (d.name) } { (d.title) } br; code { (d.name) } }
                            td { (d.sector) }
                            td { (sharing_label(d.sharing)) }
                            td.num { @if let Some(n) = d.row_count { (layout::integer(n as i64)) } @else { "–" } }
                            td { @if let Some(t) = d.last_ingest { (layout::time(t, tz)) } @else { "–" } }
                        }
                    }
                }
            }
        }
        @if !catalog.shares.is_empty() {
            h2 { "Dữ liệu chia sẻ riêng cho đơn vị" }
            ul.plain {
                @for g in &catalog.shares {
                    li { code { "share." (g.name) } " – " (g.purpose) " (đến " (g.end_date.format("%d/%m/%Y")) ")" }
                }
            }
        }
    };
    Ok(layout::page(
        &chrome,
        Nav::Datasets,
        "Danh mục dữ liệu",
        content,
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct DatasetParams {
    #[serde(default)]
    ket_qua: Option<String>,
}

/// One quarantined record as the page shows it.
struct Quarantined {
    run_id: String,
    source: String,
    location: String,
    raw: String,
    reasons: Vec<(String, String)>,
    at: String,
    resolved: Option<crate::state::QuarantineResolution>,
}

/// `[{"pointer", "message"}]` → (pointer, message) pairs.
fn reasons(errors: &Value) -> Vec<(String, String)> {
    let parsed: Value = match errors {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        other => other.clone(),
    };
    match parsed {
        Value::Array(items) => items
            .iter()
            .map(|e| {
                (
                    e["pointer"].as_str().unwrap_or_default().to_string(),
                    e["message"]
                        .as_str()
                        .map_or_else(|| e.to_string(), str::to_string),
                )
            })
            .collect(),
        other => vec![(String::new(), cell_text(&other))],
    }
}

/// Raw JSON laid out for editing; other text as it is.
fn editable(raw: &str) -> String {
    serde_json::from_str::<Value>(raw)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| raw.to_string())
}

async fn quarantine(
    console: &Console,
    viewer: &Viewer,
    name: &str,
) -> Result<Vec<Quarantined>, ConsoleError> {
    let hub = &console.hub;
    let result = hub
        .quarantine_for(&viewer.consumer, name, QUARANTINE_ROWS)
        .await?;
    let rows = super::to_rows(&result)?;
    let resolutions = hub.quarantine_resolutions(&viewer.consumer, name)?;
    let tz = hub.time_zone();
    Ok(rows
        .rows
        .iter()
        .map(|r| {
            let text = |i: usize| r.get(i).map(cell_text).unwrap_or_default();
            let (run_id, source, location) = (text(1), text(2), text(3));
            Quarantined {
                resolved: resolutions
                    .iter()
                    .find(|x| x.run_id == run_id && x.source == source && x.location == location)
                    .cloned(),
                source,
                raw: text(4),
                reasons: reasons(r.get(5).unwrap_or(&Value::Null)),
                at: layout::time_text(&text(6), tz),
                run_id,
                location,
            }
        })
        .collect())
}

fn may_reingest(viewer: &Viewer, info: &DatasetInfo) -> bool {
    viewer.consumer.role == Role::Admin
        || info.publishers.iter().any(|p| p.id == viewer.consumer.id)
}

fn reingest_form(
    chrome: &Chrome,
    dataset: &str,
    row: &QuarantineRowId<'_>,
    text: &str,
    field_id: &str,
) -> Markup {
    html! {
        form.reingest method="post" action={ "/du-lieu/" (dataset) "/nop-lai" } {
            input type="hidden" name="csrf" value=(chrome.csrf());
            input type="hidden" name="run_id" value=(row.run_id);
            input type="hidden" name="source" value=(row.source);
            input type="hidden" name="location" value=(row.location);
            div.field {
                label for=(field_id) { "Bản ghi đã sửa (JSON: một đối tượng {\"cột\": giá trị, ...})" }
                textarea id=(field_id) name="raw" rows="8" spellcheck="false" required { (text) }
            }
            button type="submit" { "Nộp lại bản ghi đã sửa" }
        }
    }
}

pub async fn dataset(
    State(console): State<Console>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(params): Query<DatasetParams>,
) -> Result<Markup, ConsoleError> {
    let hub = &console.hub;
    let chrome = Chrome::new(&console, &viewer);
    let catalog = hub.catalog_for(&viewer.consumer).await?;
    let Some(info) = catalog.datasets.into_iter().find(|d| d.name == name) else {
        return Err(HubError::NotFound(format!("no dataset named {name:?}")).into());
    };
    // `name` is now a configured dataset name (an SQL identifier) the consumer may read.
    let preview = query_rows(
        hub,
        &viewer.consumer,
        &format!("SELECT * FROM \"{}\" LIMIT {PREVIEW_ROWS}", info.name),
    )
    .await;
    let visibility = hub.visibility_of(&viewer.consumer)?;
    let quarantined = if visibility.may_read_quarantine_of(&info.name) {
        Some(quarantine(&console, &viewer, &info.name).await?)
    } else {
        None
    };
    let reingest = may_reingest(&viewer, &info);
    let done = match params.ket_qua.as_deref() {
        Some("da-luu") => {
            Some("Bản ghi đã sửa được lưu vào bộ dữ liệu; mục cách ly được đánh dấu đã xử lý.")
        }
        _ => None,
    };
    let content = html! {
        @if let Some(d) = done { (layout::notice("ok", d)) }
        p { code { (info.name) } " – " (info.description) }
        dl.facts {
            dt { "Lĩnh vực" } dd { (info.sector) }
            dt { "Chế độ chia sẻ" } dd { (sharing_label(info.sharing)) }
            dt { "Khóa" } dd { @if info.key.is_empty() { "(không có: dữ liệu được nối thêm)" } @else { (info.key.join(", ")) } }
            dt { "Đơn vị cung cấp" } dd { @for (i, p) in info.publishers.iter().enumerate() { @if i > 0 { "; " } (p.agency) } }
        }
        section aria-labelledby="cac-cot" {
            h2 id="cac-cot" { "Các cột" }
            div.table-wrap {
                table.data.compact {
                    thead { tr {
                        th scope="col" { "Cột" }
                        th scope="col" { "Kiểu" }
                        th scope="col" { "Mô tả" }
                        th scope="col" { "Che dữ liệu cá nhân" }
                    } }
                    tbody {
                        @for c in &info.columns {
                            tr {
                                th scope="row" { code { (c.name) } }
                                td { (c.type_name) }
                                td { (c.description) }
                                td { @if c.mask.is_some() { (badge("warn", mask_label(c.mask))) } @else { (mask_label(None)) } }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="xem-truoc" {
            h2 id="xem-truoc" { "Xem trước " (PREVIEW_ROWS) " dòng" }
            @match &preview {
                Ok((_, rows)) => { (super::sql::table(rows, PREVIEW_ROWS)) }
                Err(e) => { (layout::notice("error", &format!("Không xem trước được: {e}"))) }
            }
        }
        @if let Some(items) = &quarantined {
            section aria-labelledby="cach-ly" {
                h2 id="cach-ly" { "Bản ghi bị cách ly (" (items.len()) ")" }
                @if items.is_empty() { p { "Không có bản ghi nào bị cách ly." } }
                @for (i, q) in items.iter().enumerate() {
                    article.quarantined {
                        h3 {
                            (q.location) " "
                            @if q.resolved.is_some() { (badge("ok", "Đã xử lý")) } @else { (badge("bad", "Đang cách ly")) }
                        }
                        p.detail { "Nguồn " code { (q.source) } ", lượt " code { (q.run_id) } ", lúc " (q.at) }
                        @if let Some(r) = &q.resolved {
                            p { "Đã nộp lại và lưu bởi " (r.resolved_by) " lúc " (layout::time(r.resolved_at, hub.time_zone())) "." }
                        }
                        h4 { "Lý do" }
                        ul.reasons {
                            @for (pointer, message) in &q.reasons {
                                li { @if !pointer.is_empty() { code { (pointer) } ": " } (message) }
                            }
                        }
                        @if reingest && q.resolved.is_none() {
                            details {
                                summary { "Sửa và nộp lại bản ghi này" }
                                (reingest_form(&chrome, &info.name, &QuarantineRowId { run_id: &q.run_id, source: &q.source, location: &q.location }, &editable(&q.raw), &format!("raw-{i}")))
                            }
                        } @else {
                            details {
                                summary { "Nội dung gốc" }
                                pre { (q.raw) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&chrome, Nav::Datasets, &info.title, content))
}

pub async fn reingest(
    State(console): State<Console>,
    viewer: Viewer,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Posted,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&headers, &form)?;
    let row = QuarantineRowId {
        run_id: form.required("run_id", "Lượt chạy")?,
        source: form.required("source", "Nguồn")?,
        location: form.required("location", "Vị trí bản ghi")?,
    };
    let raw = form.required("raw", "Bản ghi đã sửa")?;
    let chrome = Chrome::new(&console, &viewer);
    let problems: Vec<(String, String)> = match console
        .hub
        .reingest(&viewer.consumer, &name, &row, raw)
        .await
    {
        Ok(outcome) if outcome.stored => {
            return Ok(
                Redirect::to(&format!("/du-lieu/{name}?ket_qua=da-luu#cach-ly")).into_response(),
            );
        }
        Ok(outcome) => outcome
            .report
            .rejected
            .into_iter()
            .flat_map(|r| r.errors)
            .map(|e| (e.pointer, e.message))
            .collect(),
        // Not JSON, or not one object: the reason is the user's to fix, shown with the form.
        Err(HubError::BadRequest { field, message }) if field == "raw" => {
            vec![(String::new(), bad_json(&message))]
        }
        Err(e) => return Err(e.into()),
    };
    // Still refused: the reasons and the edited text come back; the quarantined original is
    // untouched (and this attempt is quarantined too, as every refused record is).
    let content = html! {
        div.notice.error role="alert" {
            p { "Bản ghi vẫn chưa hợp lệ nên chưa được lưu. Bản ghi gốc vẫn nằm trong khu cách ly." }
        }
        h2 { "Lý do" }
        ul.reasons {
            @for (pointer, message) in &problems {
                li { @if !pointer.is_empty() { code { (pointer) } ": " } (message) }
            }
        }
        h2 { "Sửa tiếp" }
        (reingest_form(&chrome, &name, &row, raw, "raw-again"))
        p { a href={ "/du-lieu/" (name) "#cach-ly" } { "Quay lại danh sách cách ly" } }
    };
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        layout::page(
            &chrome,
            Nav::Datasets,
            "Nộp lại bản ghi bị cách ly",
            content,
        ),
    )
        .into_response())
}

fn bad_json(message: &str) -> String {
    if message.contains("one JSON object") {
        "Bản ghi phải là một đối tượng JSON ({ ... }).".to_string()
    } else {
        format!("Nội dung không phải JSON hợp lệ ({message}).")
    }
}

//! Báo cáo: the periodic reports, their stored periods, and opening one as HTML or downloading
//! it as XLSX. Reading goes through `http::reports::read_audited`, the API's own path (the same
//! roles, period checks, stored generations and `report_read` audit line).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, Chrome, Nav, badge};
use super::{Console, ConsoleError, Viewer};
use crate::report::{Format, Period};

/// A report's own page is self-contained (its styles inline), so it gets a policy of its own:
/// nothing may load, inline styles may apply, nothing runs.
const REPORT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'";

fn refuse_unless_allowed(viewer: &Viewer) -> Result<(), ConsoleError> {
    crate::http::reports::may_read(&viewer.consumer)?;
    Ok(())
}

pub async fn page(State(console): State<Console>, viewer: Viewer) -> Result<Markup, ConsoleError> {
    refuse_unless_allowed(&viewer)?;
    let hub = &console.hub;
    let chrome = Chrome::new(&console, &viewer);
    let tz = hub.time_zone();
    let now = chrono::Utc::now();
    let listings = hub.report_listings();
    let content = html! {
        p { "Báo cáo định kỳ gửi lãnh đạo huyện và IOC tỉnh. Kỳ đã kết thúc được lưu lại; kỳ đang diễn ra được lập mới mỗi lần mở." }
        @for r in &listings {
            @let def = hub.report_def(&r.name).ok();
            section.report aria-labelledby={ "bc-" (r.name) } {
                h2 id={ "bc-" (r.name) } { (r.title) }
                @if let Some(d) = &r.description { p { (d) } }
                form.inline method="get" action={ "/bao-cao/" (r.name) } {
                    div.field {
                        label for={ "ky-" (r.name) } { "Kỳ báo cáo (ví dụ 2025-04, 2025-Q2, 2025-H1, 2025)" }
                        input id={ "ky-" (r.name) } name="ky" type="text" required
                            pattern="[0-9]{4}(-([0-9]{2}|Q[1-4]|H[12]))?" placeholder="2025-04";
                    }
                    div.field {
                        label for={ "dd-" (r.name) } { "Định dạng" }
                        select id={ "dd-" (r.name) } name="dinh_dang" {
                            option value="html" { "Xem trên trình duyệt (HTML)" }
                            option value="xlsx" { "Tải bảng tính (XLSX)" }
                        }
                    }
                    div.actions { button type="submit" { "Mở báo cáo" } }
                }
                @if let Some(def) = def {
                    p {
                        "Kỳ gần nhất đã kết thúc: "
                        @for (i, kind) in def.periods.iter().enumerate() {
                            @let p = Period::latest_ended(*kind, now, tz);
                            @if i > 0 { ", " }
                            a href={ "/bao-cao/" (r.name) "/" (p) } { (p.label()) }
                        }
                    }
                }
                h3 { "Các kỳ đã lưu" }
                @if r.stored.is_empty() {
                    p { "Chưa có kỳ nào được lưu." }
                } @else {
                    div.table-wrap {
                        table.data.compact {
                            thead { tr {
                                th scope="col" { "Kỳ" }
                                th scope="col" { "Lập lúc" }
                                th scope="col" { "Tình trạng" }
                                th scope="col" { "Mở" }
                            } }
                            tbody {
                                @for s in &r.stored {
                                    tr {
                                        th scope="row" { (s.period_label) }
                                        td { (layout::time(s.generated_at, tz)) }
                                        td { @if s.complete { (badge("ok", "Đầy đủ (kỳ đã kết thúc)")) } @else { (badge("warn", "Tạm tính (kỳ chưa kết thúc)")) } }
                                        td {
                                            a href={ "/bao-cao/" (r.name) "/" (s.period) } { "Xem HTML" }
                                            " · "
                                            a href={ "/bao-cao/" (r.name) "/" (s.period) "?dinh_dang=xlsx" } { "Tải XLSX" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        &chrome,
        Nav::Reports,
        "Báo cáo định kỳ",
        content,
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct OpenParams {
    #[serde(default)]
    ky: Option<String>,
    #[serde(default)]
    dinh_dang: Option<String>,
}

fn wanted(params: &OpenParams) -> Result<Format, ConsoleError> {
    match params.dinh_dang.as_deref().unwrap_or("html") {
        "html" => Ok(Format::Html),
        "xlsx" => Ok(Format::Xlsx),
        other => Err(ConsoleError::BadRequest(format!(
            "Định dạng «{other}» không được hỗ trợ: chọn HTML hoặc XLSX."
        ))),
    }
}

/// The period form's target: checks the period typed and goes to its address.
pub async fn choose(
    viewer: Viewer,
    Path(name): Path<String>,
    Query(params): Query<OpenParams>,
) -> Result<Response, ConsoleError> {
    refuse_unless_allowed(&viewer)?;
    let format = wanted(&params)?;
    let text = params.ky.as_deref().map(str::trim).unwrap_or_default();
    let period = Period::parse(text).map_err(|_| {
        ConsoleError::BadRequest(format!(
            "Kỳ báo cáo «{text}» không hợp lệ: viết dạng 2025-04 (tháng), 2025-Q2 (quý), 2025-H1 (6 tháng) hoặc 2025 (năm)."
        ))
    })?;
    // `name` goes back into a path: only a configured report name is accepted.
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ConsoleError::BadRequest("Tên báo cáo không hợp lệ.".into()));
    }
    let suffix = if format == Format::Xlsx {
        "?dinh_dang=xlsx"
    } else {
        ""
    };
    Ok(Redirect::to(&format!("/bao-cao/{name}/{period}{suffix}")).into_response())
}

pub async fn open(
    State(console): State<Console>,
    viewer: Viewer,
    Path((name, period)): Path<(String, String)>,
    Query(params): Query<OpenParams>,
) -> Result<Response, ConsoleError> {
    refuse_unless_allowed(&viewer)?;
    let format = wanted(&params)?;
    let (format, body) = crate::http::reports::read_audited(
        &console.hub,
        &viewer.consumer,
        &name,
        &period,
        Some(format.extension()),
        None,
        false,
    )
    .await?;
    let mut response = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    let headers = response.headers_mut();
    if format == Format::Html {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(REPORT_CSP),
        );
    } else if let Some(v) = crate::http::reports::attachment(&name, &period, format) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

//! Chia sẻ: special-request shares (Decree 47/2020): the pending requests with approve and
//! reject for the managing office, a consumer's own requests and a form to file one, the
//! shares in force with their end dates, and the audit log with filters (office only).
//! Decisions go through `Hub::decide_share_request`, which checks the role itself: the
//! buttons are hidden from others, and a forged POST is refused there too (403).

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{NaiveDate, TimeZone};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, Chrome, Nav, badge};
use super::{Console, ConsoleError, Posted, Viewer};
use crate::hub::{Decision, ShareView};
use crate::sharing::{Grant, GrantRequest, Role};
use crate::state::{AuditFilter, ShareStatus};

/// Audit lines shown at most.
const AUDIT_LIMIT: usize = 300;

#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    consumer: Option<String>,
    #[serde(default)]
    dataset: Option<String>,
    #[serde(default)]
    tu: Option<String>,
    #[serde(default)]
    den: Option<String>,
    /// What the last action did (after a redirect).
    #[serde(default)]
    ket_qua: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn status_badge(view: &ShareView) -> Markup {
    match view.request.status {
        ShareStatus::Pending if view.overdue => badge("bad", "Chờ duyệt – quá hạn"),
        ShareStatus::Pending => badge("warn", "Chờ duyệt"),
        ShareStatus::Approved if view.active => badge("ok", "Đang hiệu lực"),
        ShareStatus::Approved => badge("neutral", "Đã duyệt"),
        ShareStatus::Rejected => badge("bad", "Bị từ chối"),
        ShareStatus::Revoked => badge("neutral", "Đã thu hồi"),
        ShareStatus::Expired => badge("neutral", "Hết hạn"),
    }
}

fn what(grant: &Grant) -> Markup {
    html! {
        @if let Some(d) = &grant.dataset {
            "Bộ dữ liệu " code { (d) }
            @if let Some(cols) = &grant.columns { br; "Cột: " (cols.join(", ")) }
            @if let Some(f) = &grant.row_filter { br; "Điều kiện: " code { (f) } }
        }
        @if let Some(sql) = &grant.sql { "Truy vấn: " code { (sql) } }
    }
}

fn date(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

fn action_label(action: &str) -> &str {
    match action {
        "query" => "Truy vấn",
        "publish" => "Gửi dữ liệu",
        "quarantine_reingest" => "Nộp lại bản ghi cách ly",
        "share_filed" => "Gửi yêu cầu chia sẻ",
        "share_approved" => "Duyệt chia sẻ",
        "share_rejected" => "Từ chối chia sẻ",
        "share_revoked" => "Thu hồi chia sẻ",
        "share_expired" => "Chia sẻ hết hạn",
        "auth_failed" => "Đăng nhập thất bại",
        "console_sign_in" => "Đăng nhập bảng điều khiển",
        "console_sign_out" => "Đăng xuất",
        "report_read" => "Xem báo cáo",
        "feed_read" => "Đọc luồng thay đổi",
        other => other,
    }
}

/// Whether an audit line concerns `dataset`: its target, or a table its query read.
fn touches(event: &crate::state::AuditEvent, dataset: &str) -> bool {
    event.target.as_deref() == Some(dataset)
        || event.detail["dataset"].as_str() == Some(dataset)
        || event.detail["tables"]
            .as_array()
            .is_some_and(|ts| ts.iter().any(|t| t.as_str() == Some(dataset)))
}

fn day_bound(
    text: Option<&str>,
    tz: chrono_tz::Tz,
    next_day: bool,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ConsoleError> {
    let Some(text) = text else { return Ok(None) };
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        ConsoleError::BadRequest(format!("Ngày «{text}» không đúng dạng năm-tháng-ngày."))
    })?;
    let day = if next_day {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    let start = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    Ok(tz
        .from_local_datetime(&start)
        .earliest()
        .map(|t| t.with_timezone(&chrono::Utc)))
}

pub async fn page(
    State(console): State<Console>,
    viewer: Viewer,
    Query(filters): Query<Filters>,
) -> Result<Markup, ConsoleError> {
    let hub = &console.hub;
    let chrome = Chrome::new(&console, &viewer);
    let tz = hub.time_zone();
    let admin = viewer.consumer.role == Role::Admin;
    let requests = hub.share_requests_for(&viewer.consumer)?;
    let pending: Vec<&ShareView> = requests
        .iter()
        .filter(|r| r.request.status == ShareStatus::Pending)
        .collect();
    let grants = hub.active_grants_for(&viewer.consumer)?;
    let audit = if admin {
        let mut events = hub.audit_log(&AuditFilter {
            consumer: nonempty(&filters.consumer).map(str::to_string),
            action: None,
            since: day_bound(nonempty(&filters.tu), tz, false)?,
            until: day_bound(nonempty(&filters.den), tz, true)?,
            limit: if nonempty(&filters.dataset).is_some() {
                10_000
            } else {
                AUDIT_LIMIT
            },
        })?;
        if let Some(d) = nonempty(&filters.dataset) {
            events.retain(|e| touches(e, d));
        }
        events.truncate(AUDIT_LIMIT);
        Some(events)
    } else {
        None
    };
    let consumer_name = |id: &str| {
        hub.config
            .consumers
            .get(id)
            .map_or_else(|| id.to_string(), |c| c.agency.clone())
    };
    let done = match filters.ket_qua.as_deref() {
        Some("duyet") => Some("Đã duyệt yêu cầu chia sẻ."),
        Some("tu-choi") => Some("Đã từ chối yêu cầu chia sẻ."),
        Some("thu-hoi") => Some("Đã thu hồi chia sẻ."),
        Some("da-gui") => {
            Some("Đã gửi yêu cầu chia sẻ; Trung tâm IOC sẽ trả lời trong 2 ngày làm việc.")
        }
        _ => None,
    };
    let csrf = chrome.csrf().to_string();
    let content = html! {
        @if let Some(d) = done { (layout::notice("ok", d)) }
        section aria-labelledby="cho-duyet" {
            h2 id="cho-duyet" { @if admin { "Yêu cầu chờ duyệt" } @else { "Yêu cầu của đơn vị đang chờ duyệt" } }
            @if pending.is_empty() {
                p { "Không có yêu cầu nào đang chờ duyệt." }
            }
            @for r in &pending {
                article.request {
                    h3 { code { "share." (r.request.grant.name) } " – " (consumer_name(&r.request.grant.consumer)) " " (status_badge(r)) }
                    dl.facts {
                        dt { "Nội dung" } dd { (what(&r.request.grant)) }
                        dt { "Mục đích" } dd { (r.request.grant.purpose) }
                        dt { "Căn cứ pháp lý" } dd { (r.request.grant.legal_basis) }
                        dt { "Hiệu lực đến" } dd { (date(r.request.grant.end_date)) }
                        dt { "Gửi lúc" } dd { (layout::time(r.request.filed_at, tz)) }
                        dt { "Hạn trả lời" } dd { (date(r.request.decision_due)) }
                    }
                    @if admin {
                        div.decide {
                            form method="post" action={ "/chia-se/" (r.request.grant.id) "/approve" } {
                                input type="hidden" name="csrf" value=(csrf);
                                div.field {
                                    label for={ "ghi-chu-" (r.request.grant.id) } { "Ghi chú khi duyệt (không bắt buộc)" }
                                    input id={ "ghi-chu-" (r.request.grant.id) } name="note" type="text";
                                }
                                button type="submit" { "Duyệt" }
                            }
                            form method="post" action={ "/chia-se/" (r.request.grant.id) "/reject" } {
                                input type="hidden" name="csrf" value=(csrf);
                                div.field {
                                    label for={ "ly-do-" (r.request.grant.id) } { "Lý do từ chối (bắt buộc)" }
                                    input id={ "ly-do-" (r.request.grant.id) } name="note" type="text" required;
                                }
                                button.danger type="submit" { "Từ chối" }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="hieu-luc" {
            h2 id="hieu-luc" { "Chia sẻ đang hiệu lực" }
            @if grants.is_empty() {
                p { "Không có chia sẻ đặc biệt nào đang hiệu lực." }
            } @else {
                div.table-wrap {
                    table.data {
                        thead { tr {
                            th scope="col" { "Tên" }
                            th scope="col" { "Đơn vị khai thác" }
                            th scope="col" { "Nội dung" }
                            th scope="col" { "Mục đích" }
                            th scope="col" { "Hiệu lực đến" }
                            @if admin { th scope="col" { "Thao tác" } }
                        } }
                        tbody {
                            @for g in &grants {
                                tr {
                                    th scope="row" { code { "share." (g.name) } }
                                    td { (consumer_name(&g.consumer)) }
                                    td { (what(g)) }
                                    td { (g.purpose) }
                                    td { (date(g.end_date)) }
                                    @if admin {
                                        td {
                                            // Only requests can be revoked here; config grants change in grants/*.toml.
                                            @if requests.iter().any(|r| r.request.grant.id == g.id) {
                                                form method="post" action={ "/chia-se/" (g.id) "/revoke" } {
                                                    input type="hidden" name="csrf" value=(csrf);
                                                    button.danger type="submit" { "Thu hồi" }
                                                }
                                            } @else {
                                                span.detail { "Cấu hình sẵn (grants/)" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !admin {
            section aria-labelledby="yeu-cau-cua-toi" {
                h2 id="yeu-cau-cua-toi" { "Tất cả yêu cầu của đơn vị" }
                @if requests.is_empty() { p { "Đơn vị chưa gửi yêu cầu nào." } }
                ul.plain {
                    @for r in &requests {
                        li { code { "share." (r.request.grant.name) } " " (status_badge(r))
                            @if let Some(n) = &r.request.note { " – " (n) } }
                    }
                }
            }
            section aria-labelledby="gui-yeu-cau" {
                h2 id="gui-yeu-cau" { "Gửi yêu cầu chia sẻ đặc biệt" }
                form.grid method="post" action="/chia-se/yeu-cau" {
                    input type="hidden" name="csrf" value=(csrf);
                    div.field { label for="rq-name" { "Tên chia sẻ (chữ thường, số, dấu _)" } input id="rq-name" name="name" type="text" required pattern="[a-z][a-z0-9_]*"; }
                    div.field { label for="rq-dataset" { "Bộ dữ liệu" } input id="rq-dataset" name="dataset" type="text" required; }
                    div.field { label for="rq-columns" { "Các cột (cách nhau bởi dấu phẩy; để trống: tất cả)" } input id="rq-columns" name="columns" type="text"; }
                    div.field { label for="rq-filter" { "Điều kiện lọc dòng (SQL, không bắt buộc)" } input id="rq-filter" name="row_filter" type="text"; }
                    div.field { label for="rq-purpose" { "Mục đích sử dụng" } input id="rq-purpose" name="purpose" type="text" required; }
                    div.field { label for="rq-basis" { "Căn cứ pháp lý" } input id="rq-basis" name="legal_basis" type="text" required; }
                    div.field { label for="rq-end" { "Hiệu lực đến ngày" } input id="rq-end" name="end_date" type="date" required; }
                    div.actions { button type="submit" { "Gửi yêu cầu" } }
                }
            }
        }
        @if let Some(events) = &audit {
            section aria-labelledby="nhat-ky" {
                h2 id="nhat-ky" { "Nhật ký truy cập" }
                form.filters method="get" action="/chia-se" {
                    div.field {
                        label for="f-consumer" { "Đơn vị" }
                        select id="f-consumer" name="consumer" {
                            option value="" { "Tất cả" }
                            @for c in hub.config.consumers.all() {
                                option value=(c.id) selected[nonempty(&filters.consumer) == Some(c.id.as_str())] { (c.agency) }
                            }
                        }
                    }
                    div.field {
                        label for="f-dataset" { "Bộ dữ liệu" }
                        select id="f-dataset" name="dataset" {
                            option value="" { "Tất cả" }
                            @for p in &hub.config.pipelines {
                                option value=(p.name) selected[nonempty(&filters.dataset) == Some(p.name.as_str())] { (p.title) }
                            }
                        }
                    }
                    div.field { label for="f-tu" { "Từ ngày" } input id="f-tu" name="tu" type="date" value=[nonempty(&filters.tu)]; }
                    div.field { label for="f-den" { "Đến ngày" } input id="f-den" name="den" type="date" value=[nonempty(&filters.den)]; }
                    div.actions { button type="submit" { "Lọc" } }
                }
                p { (events.len()) " dòng" @if events.len() == AUDIT_LIMIT { " (hiển thị tối đa " (AUDIT_LIMIT) " dòng mới nhất)" } "." }
                div.table-wrap {
                    table.data.compact {
                        thead { tr {
                            th scope="col" { "Thời điểm" }
                            th scope="col" { "Đơn vị" }
                            th scope="col" { "Thao tác" }
                            th scope="col" { "Đối tượng" }
                            th scope="col" { "Kết quả" }
                        } }
                        tbody {
                            @for e in events {
                                tr {
                                    td { (layout::time(e.at, tz)) }
                                    td { (e.consumer.as_deref().unwrap_or("(không xác định)")) }
                                    td { (action_label(&e.action)) }
                                    td { (e.target.as_deref().unwrap_or("")) }
                                    td {
                                        @match e.outcome.as_str() {
                                            "ok" => { (badge("ok", "Thành công")) }
                                            "denied" => { (badge("bad", "Bị từ chối")) }
                                            other => { (badge("warn", other)) }
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
        Nav::Sharing,
        "Chia sẻ dữ liệu",
        content,
    ))
}

pub async fn decide(
    State(console): State<Console>,
    viewer: Viewer,
    Path((id, decision)): Path<(String, String)>,
    headers: HeaderMap,
    form: Posted,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&headers, &form)?;
    let (decision, done) = match decision.as_str() {
        "approve" => (Decision::Approve, "duyet"),
        "reject" => (Decision::Reject, "tu-choi"),
        "revoke" => (Decision::Revoke, "thu-hoi"),
        _ => return Err(ConsoleError::BadRequest("Thao tác không hợp lệ.".into())),
    };
    let note = form.get("note").map(str::trim).filter(|n| !n.is_empty());
    if decision == Decision::Reject && note.is_none() && viewer.consumer.role == Role::Admin {
        return Err(ConsoleError::BadRequest(
            "Từ chối yêu cầu chia sẻ phải nêu rõ lý do.".into(),
        ));
    }
    console
        .hub
        .decide_share_request(&viewer.consumer, &id, decision, note)
        .await?;
    Ok(Redirect::to(&format!("/chia-se?ket_qua={done}")).into_response())
}

pub async fn file(
    State(console): State<Console>,
    viewer: Viewer,
    headers: HeaderMap,
    form: Posted,
) -> Result<Response, ConsoleError> {
    viewer.check_csrf(&headers, &form)?;
    let optional = |name: &str| {
        form.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let request = GrantRequest {
        name: form.required("name", "Tên chia sẻ")?.to_string(),
        purpose: form.required("purpose", "Mục đích sử dụng")?.to_string(),
        legal_basis: form.required("legal_basis", "Căn cứ pháp lý")?.to_string(),
        dataset: Some(form.required("dataset", "Bộ dữ liệu")?.to_string()),
        columns: optional("columns").map(|c| {
            c.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        }),
        row_filter: optional("row_filter"),
        sql: None,
        end_date: form.required("end_date", "Hiệu lực đến ngày")?.to_string(),
    };
    console
        .hub
        .file_share_request(&viewer.consumer, request)
        .await?;
    Ok(Redirect::to("/chia-se?ket_qua=da-gui").into_response())
}

//! Tổng quan: every data connection the consumer operates (status, last run, freshness against
//! its allowed staleness, records and quarantined of the last run), the feed's lag per
//! subscription target, and the alerts (stale datasets, parked subscriptions, overdue citizen
//! reports, share requests past their deadline).

use axum::extract::State;
use chrono::Utc;
use maud::{Markup, html};

use super::layout::{self, Chrome, Nav, badge};
use super::{Console, ConsoleError, Viewer, query_rows};
use crate::hub::PipelineStatus;
use crate::ingest::RunStatus;
use crate::sharing::Role;

/// Freshness past this share of the allowed staleness is amber: the next missed run makes
/// the dataset stale.
const AMBER_SHARE: f64 = 0.75;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    Ageing,
    Stale,
    /// No staleness is set: nothing to compare against.
    Unbounded,
}

pub fn freshness(status: &PipelineStatus) -> Freshness {
    match (status.max_staleness_seconds, status.freshness_seconds) {
        (None, _) => Freshness::Unbounded,
        (Some(_), None) => Freshness::Stale,
        (Some(_), Some(_)) if status.stale => Freshness::Stale,
        (Some(max), Some(age)) if age as f64 > max as f64 * AMBER_SHARE => Freshness::Ageing,
        _ => Freshness::Fresh,
    }
}

fn freshness_badge(status: &PipelineStatus) -> Markup {
    let (class, text) = match freshness(status) {
        Freshness::Fresh => ("ok", "Đúng hạn"),
        Freshness::Ageing => ("warn", "Sắp quá hạn"),
        Freshness::Stale => ("bad", "Quá hạn"),
        Freshness::Unbounded => ("neutral", "Không đặt hạn"),
    };
    badge(class, text)
}

fn run_badge(status: &PipelineStatus) -> Markup {
    if status.running {
        return badge("info", "Đang chạy");
    }
    match &status.last_run {
        // Records are sent in: there is no run to wait for.
        None if status.kind == "push" => badge("neutral", "Nhận dữ liệu gửi đến"),
        None => badge("neutral", "Chưa chạy"),
        Some(r) => match r.status {
            RunStatus::Succeeded => badge("ok", "Thành công"),
            RunStatus::Partial => badge("warn", "Có bản ghi bị cách ly"),
            RunStatus::Failed => badge("bad", "Lỗi"),
        },
    }
}

pub async fn page(State(console): State<Console>, viewer: Viewer) -> Result<Markup, ConsoleError> {
    let hub = &console.hub;
    let chrome = Chrome::new(&console, &viewer);
    let tz = hub.time_zone();
    let now = Utc::now();
    let consumer = &viewer.consumer;
    let admin = consumer.role == Role::Admin;
    // The same rule as `GET /api/v1/pipelines`: the office sees every connection, a
    // publisher its own.
    let statuses: Vec<PipelineStatus> = hub
        .config
        .pipelines
        .iter()
        .filter(|p| admin || p.publishers.contains(&consumer.id))
        .map(|p| hub.pipeline_status(p, now))
        .collect();
    let subscriptions = if admin {
        hub.subscription_statuses().await?
    } else {
        Vec::new()
    };
    // Overdue citizen reports as this consumer may see them (the view is absent for a reader
    // who cannot see the dataset, and then there is nothing to say).
    // A reader who sees the reports but whose check failed (a timeout, say) is told so: an
    // all-clear must never stand for "could not look".
    let sees_reports = hub
        .visibility_of(consumer)
        .is_ok_and(|v| v.dataset("citizen_reports").is_some());
    let mut overdue_unchecked = false;
    let overdue = if sees_reports {
        match query_rows(
            hub,
            consumer,
            "SELECT assigned_unit_name, overdue FROM citizen_reports_overdue_by_unit ORDER BY overdue DESC, assigned_unit_name",
        )
        .await
        {
            Ok((_, rows)) => Some(rows.rows),
            Err(e) => {
                tracing::warn!(error = %e, "overview: the overdue check failed");
                overdue_unchecked = true;
                None
            }
        }
    } else {
        None
    };
    let overdue_total: i64 = overdue
        .iter()
        .flatten()
        .filter_map(|r| r.get(1).and_then(|v| v.as_i64()))
        .sum();
    let stale: Vec<&PipelineStatus> = statuses
        .iter()
        .filter(|s| freshness(s) == Freshness::Stale)
        .collect();
    let parked: Vec<(String, String, Option<String>)> = subscriptions
        .iter()
        .flat_map(|s| {
            s.targets
                .iter()
                .filter(|t| t.parked)
                .map(|t| (s.id.clone(), t.target.clone(), t.parked_reason.clone()))
        })
        .collect();
    let overdue_shares = if admin {
        hub.overdue_share_requests()
    } else {
        0
    };

    let content = html! {
        // The wall screen reloads this page every two minutes (console.js).
        div data-refresh="120" hidden {}
        section aria-labelledby="canh-bao" {
            h2 id="canh-bao" { "Cảnh báo" }
            @if overdue_unchecked {
                (layout::notice("error", "Không kiểm tra được phản ánh quá hạn lúc này (truy vấn lỗi hoặc quá thời gian); xem trang Phản ánh hiện trường."))
            }
            @if stale.is_empty() && parked.is_empty() && overdue_total == 0 && overdue_shares == 0 && !overdue_unchecked {
                (layout::notice("ok", "Không có cảnh báo: dữ liệu đúng hạn, luồng chia sẻ hoạt động, không có phản ánh quá hạn."))
            } @else {
                ul.alerts {
                    @for s in &stale {
                        li.bad {
                            (badge("bad", "Dữ liệu quá hạn"))
                            " " strong { (s.title) } " (" code { (s.name) } "): "
                            @match s.freshness_seconds {
                                Some(age) => { "cập nhật lần cuối " (layout::duration(age)) " trước" }
                                None => { "chưa từng nhận dữ liệu thành công" }
                            }
                            @if let Some(max) = s.max_staleness_seconds {
                                ", hạn cho phép " (layout::duration(max as i64)) "."
                            }
                        }
                    }
                    @for (id, target, reason) in &parked {
                        li.bad {
                            (badge("bad", "Luồng chia sẻ tạm dừng"))
                            " Thuê bao " code { (id) } ", dữ liệu " code { (target) }
                            @if let Some(r) = reason { ": " (r) }
                            ". Cần quản trị viên kiểm tra bên nhận rồi cho chạy lại."
                        }
                    }
                    @if overdue_total > 0 {
                        li.warn {
                            (badge("warn", "Phản ánh quá hạn"))
                            " " strong { (layout::integer(overdue_total)) } " phản ánh hiện trường quá hạn 3 ngày làm việc chưa trả lời. "
                            a href="/phan-anh" { "Xem danh sách" }
                        }
                    }
                    @if overdue_shares > 0 {
                        li.warn {
                            (badge("warn", "Yêu cầu chia sẻ quá hạn"))
                            " " strong { (overdue_shares) } " yêu cầu chia sẻ đặc biệt đã quá hạn trả lời. "
                            a href="/chia-se" { "Xử lý" }
                        }
                    }
                }
            }
        }
        section aria-labelledby="ket-noi" {
            h2 id="ket-noi" { "Kết nối dữ liệu" }
            @if statuses.is_empty() {
                (layout::notice("info", "Trạng thái kết nối chỉ hiển thị cho Trung tâm IOC và đơn vị cung cấp dữ liệu. Xem các bộ dữ liệu bạn được khai thác ở trang «Dữ liệu»."))
            } @else {
                div.table-wrap {
                    table.data {
                        caption { "Mỗi kết nối: trạng thái lần chạy gần nhất, độ mới so với hạn cho phép, số bản ghi nhận và bị cách ly." }
                        thead {
                            tr {
                                th scope="col" { "Kết nối" }
                                th scope="col" { "Trạng thái" }
                                th scope="col" { "Lần chạy gần nhất" }
                                th scope="col" { "Độ mới" }
                                th scope="col" class="num" { "Bản ghi nhận" }
                                th scope="col" class="num" { "Bị cách ly" }
                                th scope="col" { "Lần chạy tới" }
                            }
                        }
                        tbody {
                            @for s in &statuses {
                                tr {
                                    th scope="row" {
                                        a href={ "/du-lieu/" (s.name) } { (s.title) }
                                        br;
                                        code { (s.name) }
                                    }
                                    td {
                                        (run_badge(s))
                                        @if let Some(e) = s.last_run.as_ref().and_then(|r| r.error.as_ref()) {
                                            p.detail { (e) }
                                        }
                                    }
                                    td { @if let Some(r) = &s.last_run { (layout::time(r.finished_at, tz)) } @else { "–" } }
                                    td {
                                        (freshness_badge(s))
                                        p.detail {
                                            @match s.freshness_seconds {
                                                Some(age) => { (layout::duration(age)) " trước" }
                                                None => { "chưa có dữ liệu" }
                                            }
                                            @if let Some(max) = s.max_staleness_seconds {
                                                " / cho phép " (layout::duration(max as i64))
                                            }
                                        }
                                    }
                                    td.num { @if let Some(r) = &s.last_run { (layout::integer(r.accepted as i64)) } @else { "–" } }
                                    td.num { @if let Some(r) = &s.last_run { (layout::integer(r.rejected as i64)) } @else { "–" } }
                                    td { @if let Some(n) = s.next_run { (layout::time(n, tz)) } @else { "–" } }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if admin {
            section aria-labelledby="luong-chia-se" {
                h2 id="luong-chia-se" { "Luồng dữ liệu gửi đi (độ trễ theo thuê bao)" }
                @if subscriptions.is_empty() {
                    (layout::notice("info", "Chưa cấu hình thuê bao nào."))
                }
                @for s in &subscriptions {
                    h3 {
                        "Thuê bao " code { (s.id) } " – " (s.consumer)
                        " "
                        @if s.sink == "disabled" { (badge("neutral", "Chưa bật (chưa có địa chỉ nhận)")) } @else { (badge("info", s.sink)) }
                    }
                    div.table-wrap {
                        table.data.compact {
                            thead {
                                tr {
                                    th scope="col" { "Dữ liệu" }
                                    th scope="col" class="num" { "Đã gửi đến" }
                                    th scope="col" class="num" { "Thay đổi mới nhất" }
                                    th scope="col" class="num" { "Chờ gửi" }
                                    th scope="col" { "Độ trễ" }
                                    th scope="col" { "Tình trạng" }
                                }
                            }
                            tbody {
                                @for t in &s.targets {
                                    tr {
                                        th scope="row" { code { (t.target) } }
                                        td.num { (layout::integer(t.position)) }
                                        td.num { (layout::integer(t.last_sequence)) }
                                        td.num { (layout::integer(t.pending)) }
                                        td { @if t.pending == 0 { "0" } @else { (layout::duration(t.lag_seconds as i64)) } }
                                        td {
                                            @if t.parked { (badge("bad", "Tạm dừng")) }
                                            @else if t.log_error.is_some() { (badge("bad", "Lỗi nhật ký thay đổi")) }
                                            @else if t.pending > 0 { (badge("warn", "Đang chờ")) }
                                            @else { (badge("ok", "Đã đồng bộ")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(rows) = overdue.as_ref().filter(|r| !r.is_empty()) {
            section aria-labelledby="qua-han" {
                h2 id="qua-han" { "Phản ánh quá hạn theo đơn vị" }
                ul.plain {
                    @for r in rows {
                        li { (super::cell_text(&r[0])) ": " strong { (super::cell_text(&r[1])) } }
                    }
                }
            }
        }
    };
    Ok(layout::page(&chrome, Nav::Overview, "Tổng quan", content))
}

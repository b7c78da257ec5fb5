//! Phản ánh hiện trường: for a chosen period, the citizen reports by handling unit and
//! deadline status (`sla_status`, computed at query time), each unit's on-time rate as a chart,
//! a map of the units coloured by overdue count, and the overdue reports one by one. Every
//! figure is a query as the signed-in consumer (its masks and catalog).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use chrono::{NaiveDate, TimeZone};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, CITIZEN_REPORTS, Chrome, Nav};
use super::map::{self, MapUnit};
use super::{Console, ConsoleError, Viewer, cell_text, query_rows};
use crate::hub::HubError;

/// `sla_status` values in column order, with their Vietnamese headings.
const STATUSES: &[(&str, &str)] = &[
    ("open_in_time", "Đang xử lý, còn hạn"),
    ("open_overdue", "Quá hạn, chưa trả lời"),
    ("answered_on_time", "Trả lời đúng hạn"),
    ("answered_late", "Trả lời quá hạn"),
    ("answered_unknown_time", "Đã trả lời, không rõ thời điểm"),
    ("", "Không tính được hạn"),
];

#[derive(Debug, Default, Deserialize)]
pub struct PeriodParams {
    #[serde(default)]
    tu: Option<String>,
    #[serde(default)]
    den: Option<String>,
}

fn parse_day(text: Option<&str>, label: &str) -> Result<Option<NaiveDate>, ConsoleError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| {
                ConsoleError::BadRequest(format!("«{label}» phải là một ngày (năm-tháng-ngày)."))
            }),
    }
}

/// `received_at` bounds as SQL: literals made from parsed dates only, at local midnight.
fn period_condition(from: Option<NaiveDate>, to: Option<NaiveDate>, tz: chrono_tz::Tz) -> String {
    let literal = |d: NaiveDate| {
        let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        let at = tz
            .from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%:z").to_string())
            .unwrap_or_else(|| format!("{d}T00:00:00Z"));
        format!("TIMESTAMP '{at}'")
    };
    let mut parts = vec!["TRUE".to_string()];
    if let Some(f) = from {
        parts.push(format!("received_at >= {}", literal(f)));
    }
    if let Some(t) = to {
        // The end date is included: up to the next midnight.
        parts.push(format!(
            "received_at < {}",
            literal(t.succ_opt().unwrap_or(t))
        ));
    }
    parts.join(" AND ")
}

/// One handling unit's counts by status.
#[derive(Default)]
struct UnitCounts {
    name: String,
    by_status: BTreeMap<String, i64>,
}

impl UnitCounts {
    fn get(&self, status: &str) -> i64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }

    fn total(&self) -> i64 {
        self.by_status.values().sum()
    }

    /// Answered on time among those answered with a known time; `None` before any.
    fn on_time_rate(&self) -> Option<f64> {
        let (on_time, late) = (self.get("answered_on_time"), self.get("answered_late"));
        (on_time + late > 0).then(|| on_time as f64 / (on_time + late) as f64)
    }
}

/// On-time rate per unit as horizontal bars, each with its percentage written beside it.
/// A handling unit as the stored reports name it: code and name.
type UnitKey = (String, String);

fn rate_chart(units: &[(&UnitKey, &UnitCounts)]) -> Markup {
    const W: f64 = 760.0;
    const LABEL: f64 = 300.0;
    const BAR: f64 = 360.0;
    const ROW: f64 = 30.0;
    let rated: Vec<(&UnitKey, &UnitCounts, f64)> = units
        .iter()
        .filter_map(|(code, u)| u.on_time_rate().map(|r| (*code, *u, r)))
        .collect();
    if rated.is_empty() {
        return html! { p { "Chưa có phản ánh nào đã trả lời trong kỳ để tính tỷ lệ đúng hạn." } };
    }
    let height = ROW * rated.len() as f64 + 30.0;
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (W) " " (height) }
            role="img" aria-labelledby="bieu-do-tieu-de" {
            title id="bieu-do-tieu-de" { "Tỷ lệ trả lời đúng hạn theo đơn vị" }
            line x1=(LABEL) y1="4" x2=(LABEL) y2=(height - 22.0) stroke="#5a6b7b" stroke-width="1" {}
            @for (i, (_, u, rate)) in rated.iter().enumerate() {
                @let y = 6.0 + ROW * i as f64;
                text x=(LABEL - 8.0) y=(y + 15.0) text-anchor="end" font-size="14" fill="#111" { (u.name) }
                rect x=(LABEL) y=(y) width=(format!("{:.1}", (BAR * rate).max(1.0))) height="20"
                     fill=(if *rate >= 0.8 { "#1f7a4d" } else if *rate >= 0.5 { "#b06d00" } else { "#b3261e" }) {}
                text x=(format!("{:.1}", LABEL + BAR * rate + 8.0)) y=(y + 15.0) font-size="14" fill="#111" {
                    (crate::report::number::percent(*rate))
                    " (" (u.get("answered_on_time")) "/" (u.get("answered_on_time") + u.get("answered_late")) ")"
                }
            }
            text x=(LABEL) y=(height - 6.0) font-size="12" fill="#333" { "0 %" }
            text x=(LABEL + BAR) y=(height - 6.0) font-size="12" fill="#333" text-anchor="end" { "100 %" }
        }
    }
}

pub async fn page(
    State(console): State<Console>,
    viewer: Viewer,
    Query(params): Query<PeriodParams>,
) -> Result<Markup, ConsoleError> {
    let hub = &console.hub;
    let chrome = Chrome::new(&console, &viewer);
    let tz = hub.time_zone();
    if hub
        .visibility_of(&viewer.consumer)?
        .dataset(CITIZEN_REPORTS)
        .is_none()
    {
        return Err(HubError::NotFound("no dataset named \"citizen_reports\"".into()).into());
    }
    let from = parse_day(params.tu.as_deref(), "Từ ngày")?;
    let to = parse_day(params.den.as_deref(), "Đến ngày")?;
    let condition = period_condition(from, to, tz);
    let (_, counts) = query_rows(
        hub,
        &viewer.consumer,
        &format!(
            "SELECT assigned_unit_code, assigned_unit_name, coalesce(sla_status, '') AS status, count(*) AS n \
             FROM citizen_reports WHERE {condition} GROUP BY 1, 2, 3"
        ),
    )
    .await?;
    // By code and name: after the 2025 merger a new commune kept an old one's code (25363
    // was Thị trấn Tân Phú and is Xã Đồng Phú), and the two must not be counted as one.
    let mut units: BTreeMap<UnitKey, UnitCounts> = BTreeMap::new();
    for r in &counts.rows {
        let code = r.first().map(cell_text).unwrap_or_default();
        let name = r.get(1).map(cell_text).unwrap_or_default();
        let entry = units.entry((code, name.clone())).or_default();
        entry.name = name;
        let status = r.get(2).map(cell_text).unwrap_or_default();
        *entry.by_status.entry(status).or_default() +=
            r.get(3).and_then(|v| v.as_i64()).unwrap_or(0);
    }
    let mut ordered: Vec<(&UnitKey, &UnitCounts)> = units.iter().collect();
    ordered.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    let (_, overdue) = query_rows(
        hub,
        &viewer.consumer,
        &format!(
            "SELECT service_request_id, assigned_unit_name, service_name, received_at, due_at, working_days_overdue \
             FROM citizen_reports_overdue WHERE {condition} ORDER BY due_at, service_request_id"
        ),
    )
    .await?;

    // The map: the units with areas on the period's last day (today when open-ended); after
    // the 2025 merger no area is known yet, so the last day any area was valid is drawn
    // instead, and the caption says so.
    let units_config = &hub.config.units;
    let day = to.unwrap_or_else(|| hub.today());
    let map_day = if units_config.has_areas_on(day) {
        Some(day)
    } else {
        units_config
            .all()
            .iter()
            .filter(|u| u.area.is_some())
            .filter_map(|u| u.validity.until)
            .filter(|d| *d < day)
            .max()
    };
    let overdue_of = |code: &str, name: &str| {
        units
            .get(&(code.to_string(), name.to_string()))
            .map_or(0, |c| c.get("open_overdue"))
    };
    // Drawing older areas than the period's units: each former unit's area also carries the
    // count of the unit it merged into on `day` (found by its name, which the successor
    // lists among its aliases), so a successor's overdue reports are never shown as none.
    let drawn_earlier = map_day.is_some_and(|d| d != day);
    let map_units: Vec<MapUnit<'_>> = map_day
        .map(|d| {
            units_config
                .valid_on(d)
                .filter_map(|u| {
                    let successor = match units_config.from_text(&u.name, day, true) {
                        crate::units::NameMatch::One(s) if drawn_earlier => {
                            overdue_of(&s.code, &s.name)
                        }
                        _ => 0,
                    };
                    u.area.as_ref().map(|area| MapUnit {
                        code: &u.code,
                        name: &u.name,
                        area,
                        count: overdue_of(&u.code, &u.name) + successor,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let period_text = match (from, to) {
        (None, None) => "toàn bộ thời gian".to_string(),
        (Some(f), None) => format!("từ {}", f.format("%d/%m/%Y")),
        (None, Some(t)) => format!("đến {}", t.format("%d/%m/%Y")),
        (Some(f), Some(t)) => format!("từ {} đến {}", f.format("%d/%m/%Y"), t.format("%d/%m/%Y")),
    };
    let total: i64 = units.values().map(UnitCounts::total).sum();
    let content = html! {
        form.filters method="get" action="/phan-anh" {
            div.field { label for="tu" { "Từ ngày" } input id="tu" name="tu" type="date" value=[from.map(|d| d.to_string())]; }
            div.field { label for="den" { "Đến ngày" } input id="den" name="den" type="date" value=[to.map(|d| d.to_string())]; }
            div.actions { button type="submit" { "Xem" } }
        }
        p.lead { "Kỳ: " strong { (period_text) } ". Tổng số phản ánh: " strong { (layout::integer(total)) } ". Hạn xử lý: 3 ngày làm việc, không tính ngày tiếp nhận." }
        section aria-labelledby="theo-don-vi" {
            h2 id="theo-don-vi" { "Số phản ánh theo đơn vị và tình trạng" }
            div.table-wrap {
                table.data.compact {
                    thead { tr {
                        th scope="col" { "Đơn vị xử lý" }
                        @for (_, label) in STATUSES { th scope="col" class="num" { (label) } }
                        th scope="col" class="num" { "Tổng" }
                    } }
                    tbody {
                        @for (_, u) in &ordered {
                            tr {
                                th scope="row" { (u.name) }
                                @for (status, _) in STATUSES {
                                    td class={ "num" @if *status == "open_overdue" && u.get(status) > 0 { " alert" } } { (u.get(status)) }
                                }
                                td.num { (u.total()) }
                            }
                        }
                    }
                }
            }
        }
        div.two {
            section aria-labelledby="dung-han" {
                h2 id="dung-han" { "Tỷ lệ trả lời đúng hạn theo đơn vị" }
                (rate_chart(&ordered))
            }
            section aria-labelledby="ban-do" {
                h2 id="ban-do" { "Bản đồ phản ánh quá hạn theo đơn vị" }
                (map::svg(&map_units, "Bản đồ các xã, thị trấn tô màu theo số phản ánh quá hạn"))
                @if let Some(d) = map_day {
                    p.detail { "Ranh giới đơn vị hành chính ngày " (d.format("%d/%m/%Y")) " (sơ đồ gần đúng, không dùng cho mục đích pháp lý)." }
                    @if drawn_earlier {
                        p.detail { "Chưa có ranh giới của các đơn vị sau sắp xếp ngày 01/7/2025: mỗi đơn vị cũ được tô theo số phản ánh quá hạn của chính nó cộng với của đơn vị mới mà nó được sáp nhập vào." }
                    }
                }
                ul.legend aria-label="Chú giải" {
                    @for n in [0, 1, 3] {
                        @let (fill, _) = map::class_of(n);
                        li {
                            svg.swatch xmlns="http://www.w3.org/2000/svg" width="18" height="18" aria-hidden="true" {
                                rect width="18" height="18" fill=(fill) stroke="#33475b" {}
                            }
                            " " (map::legend_of(n))
                        }
                    }
                }
            }
        }
        section aria-labelledby="ds-qua-han" {
            h2 id="ds-qua-han" { "Danh sách phản ánh quá hạn chưa trả lời (" (overdue.rows.len()) ")" }
            @if overdue.rows.is_empty() {
                p { "Không có phản ánh quá hạn trong kỳ." }
            } @else {
                div.table-wrap {
                    table.data.compact {
                        thead { tr {
                            th scope="col" { "Mã phản ánh" }
                            th scope="col" { "Đơn vị xử lý" }
                            th scope="col" { "Lĩnh vực" }
                            th scope="col" { "Tiếp nhận" }
                            th scope="col" { "Hạn xử lý" }
                            th scope="col" class="num" { "Số ngày làm việc quá hạn" }
                        } }
                        tbody {
                            @for r in &overdue.rows {
                                @let t = |i: usize| r.get(i).map(cell_text).unwrap_or_default();
                                tr {
                                    th scope="row" { code { (t(0)) } }
                                    td { (t(1)) }
                                    td { (t(2)) }
                                    td { (layout::time_text(&t(3), tz)) }
                                    td { (layout::time_text(&t(4), tz)) }
                                    td.num { (t(5)) }
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
        Nav::Citizen,
        "Phản ánh hiện trường",
        content,
    ))
}

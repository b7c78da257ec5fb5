//! The page shell: `lang="vi"`, a skip link, the header with who is signed in, the navigation
//! (only the pages the consumer may use), one `h1` per page, and the embedded assets.
//! Also the small formatting helpers every page shares (times, numbers, roles).

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::{Console, Viewer, asset_url};
use crate::sharing::Role;

/// The pages of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Citizen,
    Datasets,
    Sql,
    Sharing,
    Reports,
}

impl Nav {
    fn href(self) -> &'static str {
        match self {
            Nav::Overview => "/",
            Nav::Citizen => "/phan-anh",
            Nav::Datasets => "/du-lieu",
            Nav::Sql => "/sql",
            Nav::Sharing => "/chia-se",
            Nav::Reports => "/bao-cao",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Nav::Overview => "Tổng quan",
            Nav::Citizen => "Phản ánh hiện trường",
            Nav::Datasets => "Dữ liệu",
            Nav::Sql => "SQL",
            Nav::Sharing => "Chia sẻ",
            Nav::Reports => "Báo cáo",
        }
    }
}

/// Who the page is for: what the header and the navigation show.
pub struct Chrome {
    hub_name: String,
    agency: String,
    role: Role,
    csrf: String,
    pages: Vec<Nav>,
}

impl Chrome {
    pub fn new(console: &Console, viewer: &Viewer) -> Self {
        let hub = &console.hub;
        let sees_citizen = hub
            .visibility_of(&viewer.consumer)
            .map(|v| v.dataset(CITIZEN_REPORTS).is_some())
            .unwrap_or(false);
        let mut pages = vec![Nav::Overview];
        if sees_citizen {
            pages.push(Nav::Citizen);
        }
        pages.extend([Nav::Datasets, Nav::Sql, Nav::Sharing]);
        if may_read_reports(viewer.consumer.role) {
            pages.push(Nav::Reports);
        }
        Chrome {
            hub_name: hub.config.file.hub.name.clone(),
            agency: viewer.consumer.agency.clone(),
            role: viewer.consumer.role,
            csrf: viewer.session.csrf.clone(),
            pages,
        }
    }

    pub fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The dataset the citizen-reports page reads.
pub const CITIZEN_REPORTS: &str = "citizen_reports";

/// Periodic reports are for the managing office and the province (as in the API).
pub fn may_read_reports(role: Role) -> bool {
    matches!(role, Role::Admin | Role::Province)
}

pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Admin => "Quản trị (Trung tâm IOC)",
        Role::Publisher => "Đơn vị cung cấp dữ liệu",
        Role::Agency => "Cơ quan khai thác dữ liệu",
        Role::Province => "IOC tỉnh",
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " – iochub" }
            // No favicon request (it would be one more 404 in every log).
            link rel="icon" href="data:,";
            link rel="stylesheet" href=(asset_url("console.css"));
            script src=(asset_url("console.js")) defer {}
        }
    }
}

/// A page of the signed-in console; `content` starts below the page's `h1` (its sections
/// use `h2`, then `h3`).
pub fn page(chrome: &Chrome, active: Nav, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="vi" {
            (head(title))
            body {
                a.skip href="#noi-dung" { "Bỏ qua phần điều hướng" }
                header.top {
                    div.brand {
                        span.logo aria-hidden="true" { "IOC" }
                        span.hub { (chrome.hub_name) }
                    }
                    div.who {
                        span { (chrome.agency) }
                        span.role { (role_label(chrome.role)) }
                        form method="post" action="/dang-xuat" {
                            input type="hidden" name="csrf" value=(chrome.csrf);
                            button.link type="submit" { "Đăng xuất" }
                        }
                    }
                }
                nav.main aria-label="Các trang" {
                    ul {
                        @for item in &chrome.pages {
                            li {
                                a href=(item.href())
                                  aria-current=[(*item == active).then_some("page")] {
                                    (item.label())
                                }
                            }
                        }
                    }
                }
                main id="noi-dung" tabindex="-1" {
                    h1 { (title) }
                    (content)
                }
                footer.bottom {
                    p { "iochub – Trung tâm tích hợp dữ liệu. Mọi thao tác được ghi nhật ký." }
                }
            }
        }
    }
}

/// A page without navigation: sign-in and error pages.
pub fn bare(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="vi" {
            (head(title))
            body.bare {
                a.skip href="#noi-dung" { "Bỏ qua phần điều hướng" }
                main id="noi-dung" tabindex="-1" {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

/// `dd/mm/yyyy HH:MM` in the hub's time zone (as Vietnamese documents write times).
pub fn time(at: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    at.with_timezone(&tz).format("%d/%m/%Y %H:%M").to_string()
}

/// A time as the query answer wrote it (RFC 3339, or without an offset: UTC), shown in the
/// hub's zone; text that is not a time is shown as it is.
pub fn time_text(text: &str, tz: chrono_tz::Tz) -> String {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return time(t.with_timezone(&Utc), tz);
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| time(t.and_utc(), tz))
        .unwrap_or_else(|_| text.to_string())
}

/// A duration in words: "5 phút", "3 giờ 10 phút", "2 ngày 4 giờ".
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} giây"),
        (0, 0, m) => format!("{m} phút"),
        (0, h, 0) => format!("{h} giờ"),
        (0, h, m) => format!("{h} giờ {m} phút"),
        (d, 0, _) => format!("{d} ngày"),
        (d, h, _) => format!("{d} ngày {h} giờ"),
    }
}

pub fn integer(n: i64) -> String {
    crate::report::number::integer(n)
}

/// A status shown by colour *and* word (`class` picks the colour; the text carries it).
pub fn badge(class: &str, text: &str) -> Markup {
    html! { span class={ "badge " (class) } { (text) } }
}

/// An informational or warning box.
pub fn notice(class: &str, text: &str) -> Markup {
    html! { div class={ "notice " (class) } role=[(class == "error").then_some("alert")] { p { (text) } } }
}

//! The district's routing rule for a citizen report: the commune where the problem is; when
//! the system cannot tell which, the fallback unit. In order:
//! 1. valid coordinates inside a unit valid on the report's date → that unit (`coordinates`);
//! 2. else a reported commune name that matches one territorial unit valid on that date
//!    (`reported_name`);
//! 3. else the fallback unit (`fallback`).
//!
//! Coordinates that are missing, (0, 0), out of range, apparently swapped (never swapped
//! back: the strict policy), or outside every unit are an unknown location. The `note` tells
//! the handling unit, in Vietnamese, why the report came by name or to the fallback, so
//! nothing is guessed silently.

use chrono::NaiveDate;

use super::{AdminUnit, NameMatch, Units};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Coordinates,
    ReportedName,
    Fallback,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Coordinates => "coordinates",
            Method::ReportedName => "reported_name",
            Method::Fallback => "fallback",
        }
    }
}

/// Where a report goes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub code: String,
    pub name: String,
    pub handling_agency: Option<String>,
    pub method: Method,
    pub note: Option<String>,
}

impl Route {
    fn to(unit: &AdminUnit, method: Method, note: Option<String>) -> Route {
        Route {
            code: unit.code.clone(),
            name: unit.name.clone(),
            handling_agency: unit.handling_agency.clone(),
            method,
            note,
        }
    }
}

/// Why coordinates cannot locate a report; `None`: they are usable.
fn coordinate_problem(lon: Option<f64>, lat: Option<f64>) -> Option<String> {
    let (Some(lon), Some(lat)) = (lon, lat) else {
        return Some("Không có tọa độ".into());
    };
    if !lon.is_finite() || !lat.is_finite() {
        return Some("Tọa độ không phải là số hợp lệ".into());
    }
    if lon == 0.0 && lat == 0.0 {
        return Some("Tọa độ (0, 0) không hợp lệ (lỗi GPS)".into());
    }
    if lat.abs() > 90.0 {
        if lat.abs() <= 180.0 && lon.abs() <= 90.0 {
            return Some(format!(
                "Vĩ độ {lat} nằm ngoài khoảng -90..90 (kinh độ {lon}): có thể vĩ độ và kinh độ bị đảo, hệ thống không tự đảo lại"
            ));
        }
        return Some(format!("Tọa độ ({lon}, {lat}) không hợp lệ"));
    }
    if lon.abs() > 180.0 {
        return Some(format!("Tọa độ ({lon}, {lat}) không hợp lệ"));
    }
    None
}

fn names_of(units: &[&AdminUnit]) -> String {
    units
        .iter()
        .map(|u| u.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Units {
    /// Routes one report: its coordinates (WGS84), the commune name it reported, its date
    /// (local). See the module's doc for the rule.
    pub fn route(
        &self,
        lon: Option<f64>,
        lat: Option<f64>,
        reported: Option<&str>,
        day: Option<NaiveDate>,
    ) -> Option<Route> {
        let fallback = self.fallback(day)?;
        let to_fallback = |why: String| {
            Route::to(
                fallback,
                Method::Fallback,
                Some(format!("{why}; chuyển {}", fallback.name)),
            )
        };
        let Some(day) = day else {
            return Some(to_fallback(
                "Không có thời điểm phản ánh nên không xác định được đơn vị hành chính có hiệu lực"
                    .into(),
            ));
        };
        let reported = reported.map(str::trim).filter(|r| !r.is_empty());
        let by_name = reported.map(|r| (r, self.from_text(r, day, true)));
        let shown = day.format("%d/%m/%Y");

        let location_problem = match (coordinate_problem(lon, lat), lon, lat) {
            (Some(problem), _, _) => problem,
            (None, Some(lon), Some(lat)) => {
                let here = self.at_point(lon, lat, day);
                match here.as_slice() {
                    [unit] => {
                        let note = match &by_name {
                            Some((_, NameMatch::One(named))) if named.code == unit.code => None,
                            Some((text, _)) => Some(format!(
                                "Tên xã phản ánh '{text}' không khớp đơn vị theo tọa độ ({}); chuyển theo tọa độ",
                                unit.name
                            )),
                            None => None,
                        };
                        return Some(Route::to(unit, Method::Coordinates, note));
                    }
                    [] if !self.has_areas_on(day) => format!(
                        "Chưa có ranh giới các xã có hiệu lực ngày {shown} nên không xác định được xã theo tọa độ"
                    ),
                    [] => format!(
                        "Tọa độ ({lon}, {lat}) nằm ngoài địa bàn các xã, thị trấn có hiệu lực ngày {shown}"
                    ),
                    many => format!(
                        "Tọa độ ({lon}, {lat}) thuộc nhiều đơn vị ({}), dữ liệu ranh giới chồng lấn",
                        names_of(many)
                    ),
                }
            }
            // `coordinate_problem` answers Some for a missing coordinate.
            (None, _, _) => "Không có tọa độ".into(),
        };
        Some(match by_name {
            Some((text, NameMatch::One(unit))) => Route::to(
                unit,
                Method::ReportedName,
                Some(format!(
                    "{location_problem}; chuyển theo tên xã phản ánh '{text}'"
                )),
            ),
            Some((text, NameMatch::Many(units))) => to_fallback(format!(
                "{location_problem}; tên xã '{text}' khớp nhiều đơn vị ({})",
                names_of(&units)
            )),
            Some((text, NameMatch::None)) => to_fallback(format!(
                "{location_problem}; không khớp tên xã '{text}' với đơn vị nào có hiệu lực ngày {shown}"
            )),
            None => to_fallback(format!("{location_problem}; không có tên xã phản ánh")),
        })
    }
}

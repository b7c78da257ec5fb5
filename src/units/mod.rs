//! The organisation's administrative units as configuration: who they are (code, names, type,
//! the body that handles their reports), when they exist (a validity period: communes were
//! merged on 1 July 2025 and codes were reused, so a unit is keyed by code *and* period),
//! and where (a polygon from a GeoJSON file, built once at load and shared).
//!
//! `Units` answers the questions routing asks: which unit holds a point on a date
//! (`at_point`), which unit a typed name means on a date (`from_text`), and the district's
//! routing policy itself (`route`). The SQL functions over it live in `functions::routing`.
//! Knows no SQL, no tables and no config file format beyond `[[organisation.units]]`'s
//! entries; `config` turns its errors into `file:line` problems.

mod load;
mod names;
mod route;

use std::fmt;

use chrono::NaiveDate;
use geo::{Contains, Intersects, MultiPolygon, Point};
use serde::Deserialize;

pub use load::{Location, UnitsError};
pub use names::NameMatch;
pub use route::{Method, Route};

/// One `[[organisation.units]]` entry as written in `config.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct UnitConfig {
    /// The GSO code (or, for offices, any short id). `code` is accepted for `id`.
    #[serde(alias = "code")]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `xa`, `thi_tran`, `phuong`, `dac_khu` or `office`; from the GeoJSON when not given.
    #[serde(default, rename = "type", alias = "unit_type")]
    pub unit_type: Option<UnitType>,
    /// The body that handles the unit's reports ("UBND xã Tân Lập").
    #[serde(default)]
    pub handling_agency: Option<String>,
    /// `"YYYY-MM-DD"`, inclusive; none: since always.
    #[serde(default)]
    pub valid_from: Option<String>,
    /// `"YYYY-MM-DD"`, inclusive (the last day the unit exists); none: still valid.
    #[serde(default)]
    pub valid_until: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitType {
    Xa,
    ThiTran,
    Phuong,
    DacKhu,
    /// Not a territory: an office such as the fallback unit.
    Office,
}

impl UnitType {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "xa" => UnitType::Xa,
            "thi_tran" => UnitType::ThiTran,
            "phuong" => UnitType::Phuong,
            "dac_khu" => UnitType::DacKhu,
            "office" => UnitType::Office,
            _ => return None,
        })
    }
}

/// The days a unit exists, both ends inclusive; an open end is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Validity {
    pub from: Option<NaiveDate>,
    pub until: Option<NaiveDate>,
}

impl Validity {
    pub fn contains(&self, day: NaiveDate) -> bool {
        self.from.is_none_or(|f| f <= day) && self.until.is_none_or(|u| day <= u)
    }

    pub fn overlaps(&self, other: &Validity) -> bool {
        let starts_before_other_ends = match (self.from, other.until) {
            (Some(f), Some(u)) => f <= u,
            _ => true,
        };
        let other_starts_before_end = match (other.from, self.until) {
            (Some(f), Some(u)) => f <= u,
            _ => true,
        };
        starts_before_other_ends && other_starts_before_end
    }
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.from, self.until) {
            (None, None) => write!(f, "all dates"),
            (Some(from), None) => write!(f, "from {from}"),
            (None, Some(until)) => write!(f, "until {until}"),
            (Some(from), Some(until)) => write!(f, "{from}..{until}"),
        }
    }
}

/// A unit as the hub uses it: config.toml's entry completed from its GeoJSON feature.
#[derive(Debug, Clone)]
pub struct AdminUnit {
    pub code: String,
    pub name: String,
    pub aliases: Vec<String>,
    pub unit_type: Option<UnitType>,
    pub handling_agency: Option<String>,
    pub validity: Validity,
    pub area: Option<MultiPolygon<f64>>,
    /// Folded names to match typed text against (`names.rs`).
    keys: Vec<names::NameKey>,
}

impl AdminUnit {
    /// Whether the unit's area holds the point, boundary included only on its west and south
    /// edges (the samples' convention): a point on an edge two units share belongs to one.
    pub fn covers(&self, lon: f64, lat: f64) -> bool {
        let Some(area) = &self.area else {
            return false;
        };
        let point = Point::new(lon, lat);
        if area.contains(&point) {
            return true;
        }
        if !area.intersects(&point) {
            return false;
        }
        // On the boundary: it is ours when a step to the north-east is inside, which holds
        // on the west and south edges and the south-west corner only.
        const STEP: f64 = 1e-9;
        area.contains(&Point::new(lon + STEP, lat + STEP))
    }

    pub fn is_territory(&self) -> bool {
        self.unit_type != Some(UnitType::Office)
    }
}

/// Every unit of the organisation, over time.
#[derive(Debug, Clone)]
pub struct Units {
    units: Vec<AdminUnit>,
    fallback: String,
}

impl Units {
    /// All units, in config order.
    pub fn all(&self) -> &[AdminUnit] {
        &self.units
    }

    /// The units that exist on `day`.
    pub fn valid_on(&self, day: NaiveDate) -> impl Iterator<Item = &AdminUnit> {
        self.units.iter().filter(move |u| u.validity.contains(day))
    }

    /// The unit with `code` on `day`.
    pub fn by_code(&self, code: &str, day: NaiveDate) -> Option<&AdminUnit> {
        self.valid_on(day).find(|u| u.code == code)
    }

    /// The unit that handles what no other unit can take, as it is on `day` (or, when its
    /// entries do not cover that day, its first entry: a report is never left without one).
    pub fn fallback(&self, day: Option<NaiveDate>) -> Option<&AdminUnit> {
        day.and_then(|d| self.by_code(&self.fallback, d))
            .or_else(|| self.units.iter().find(|u| u.code == self.fallback))
    }

    pub fn fallback_code(&self) -> &str {
        &self.fallback
    }

    /// Whether any unit valid on `day` has an area: after the 2025 merger none has yet.
    pub fn has_areas_on(&self, day: NaiveDate) -> bool {
        self.valid_on(day).any(|u| u.area.is_some())
    }

    /// The units valid on `day` whose area holds the point (one, with non-overlapping areas).
    pub fn at_point(&self, lon: f64, lat: f64, day: NaiveDate) -> Vec<&AdminUnit> {
        self.valid_on(day).filter(|u| u.covers(lon, lat)).collect()
    }

    /// The unit valid on `day` that `text` names (folded: case, diacritics, the leading
    /// "xã", "thị trấn", "phường"...), among all units or only the territorial ones.
    pub fn from_text(&self, text: &str, day: NaiveDate, territory_only: bool) -> NameMatch<'_> {
        names::find(
            self.valid_on(day)
                .filter(|u| !territory_only || u.is_territory()),
            text,
        )
    }
}

#[cfg(test)]
mod tests;

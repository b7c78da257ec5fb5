//! Building `Units` from `[[organisation.units]]` and the GeoJSON file of their areas.
//!
//! Precedence: what config.toml says wins. A GeoJSON feature is matched to the one entry with
//! its `properties.code` whose declared period overlaps the feature's (`valid_from`,
//! `valid_until` properties); it gives the unit its polygon, and fills `type` (`unit_type`),
//! `handling_agency`, `valid_from` and `valid_until` where the entry is silent. Its
//! `full_name` and `name` become names to match, like aliases.
//! Every problem is collected, none stops the others.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use geo::{Coord, LineString, MultiPolygon, Polygon};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{AdminUnit, UnitConfig, UnitType, Units, Validity, names};

/// Where a problem is: a key of config.toml (`organisation.units.3.valid_from`) or a line of
/// another file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    ConfigKey(String),
    File { path: PathBuf, line: Option<usize> },
}

#[derive(Debug, thiserror::Error)]
pub enum UnitsError {
    #[error("fallback_unit {0:?} is not the id of any [[organisation.units]]")]
    UnknownFallback(String),
    #[error(
        "unit {code:?} is declared twice for overlapping periods ({first_period} at units[{first}], {period})"
    )]
    Duplicate {
        index: usize,
        code: String,
        first: usize,
        first_period: Validity,
        period: Validity,
    },
    #[error("unit {code:?}: {field} {value:?} is not a date YYYY-MM-DD")]
    BadDate {
        index: usize,
        code: String,
        field: &'static str,
        value: String,
    },
    #[error("unit {code:?}: valid_until {until} is before valid_from {from}")]
    EmptyPeriod {
        index: usize,
        code: String,
        from: NaiveDate,
        until: NaiveDate,
    },
    #[error("cannot read the units GeoJSON {}: {source}", path.display())]
    GeoJsonRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a GeoJSON FeatureCollection: {message}")]
    GeoJsonInvalid {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("feature {feature} ({code}): the geometry is {found}, not a Polygon or MultiPolygon")]
    NotPolygon {
        path: PathBuf,
        line: usize,
        feature: usize,
        code: String,
        found: String,
    },
    #[error("feature {feature} ({code}): {message}")]
    Feature {
        path: PathBuf,
        line: usize,
        feature: usize,
        code: String,
        message: String,
    },
}

impl UnitsError {
    pub fn location(&self) -> Location {
        let unit = |index: &usize, key: &str| {
            Location::ConfigKey(format!("organisation.units.{index}.{key}"))
        };
        match self {
            UnitsError::UnknownFallback(_) => {
                Location::ConfigKey("organisation.fallback_unit".into())
            }
            UnitsError::Duplicate { index, .. } => unit(index, "id"),
            UnitsError::BadDate { index, field, .. } => unit(index, field),
            UnitsError::EmptyPeriod { index, .. } => unit(index, "valid_until"),
            UnitsError::GeoJsonRead { .. } => {
                Location::ConfigKey("organisation.units_geojson".into())
            }
            UnitsError::GeoJsonInvalid { path, line, .. } => Location::File {
                path: path.clone(),
                line: *line,
            },
            UnitsError::NotPolygon { path, line, .. } | UnitsError::Feature { path, line, .. } => {
                Location::File {
                    path: path.clone(),
                    line: Some(*line),
                }
            }
        }
    }
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

/// A unit entry while it is being completed.
struct Draft {
    unit: AdminUnit,
    /// The names to fold into keys once the type is known.
    names: Vec<String>,
    /// The period config.toml declares, before a feature fills an open end: what features
    /// are matched against, so the order of features does not matter.
    declared: Validity,
    /// The feature that gave the polygon, for "two features for one unit".
    feature: Option<usize>,
}

impl Units {
    /// Units with nothing but `fallback` (tests, and a config that failed to load its units).
    pub fn fallback_only(fallback: &str, name: &str) -> Units {
        let mut units = Units {
            units: Vec::new(),
            fallback: fallback.to_string(),
        };
        units.units.push(AdminUnit {
            code: fallback.to_string(),
            name: name.to_string(),
            aliases: Vec::new(),
            unit_type: Some(UnitType::Office),
            handling_agency: Some(name.to_string()),
            validity: Validity::default(),
            area: None,
            keys: names::keys_of([name], Some(UnitType::Office)),
        });
        units
    }

    /// The units of `entries`, completed from the GeoJSON at `geojson` (already resolved
    /// against the config file's folder), and every problem found on the way.
    pub fn build(
        entries: &[UnitConfig],
        fallback: &str,
        geojson: Option<&Path>,
    ) -> (Units, Vec<UnitsError>) {
        let mut errors = Vec::new();
        let mut drafts: Vec<Draft> = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| draft(index, entry, &mut errors))
            .collect();
        if let Some(path) = geojson {
            apply_geojson(path, entries, &mut drafts, &mut errors);
        }
        for i in 0..drafts.len() {
            let unit = &drafts[i].unit;
            if let Some(first) = drafts[..i]
                .iter()
                .position(|d| d.unit.code == unit.code && d.unit.validity.overlaps(&unit.validity))
            {
                errors.push(UnitsError::Duplicate {
                    index: i,
                    code: unit.code.clone(),
                    first,
                    first_period: drafts[first].unit.validity,
                    period: unit.validity,
                });
            }
        }
        if !drafts.iter().any(|d| d.unit.code == fallback) {
            errors.push(UnitsError::UnknownFallback(fallback.to_string()));
        }
        let units = drafts
            .into_iter()
            .map(|d| {
                let mut unit = d.unit;
                unit.keys = names::keys_of(d.names.iter().map(String::as_str), unit.unit_type);
                unit
            })
            .collect();
        (
            Units {
                units,
                fallback: fallback.to_string(),
            },
            errors,
        )
    }
}

fn draft(index: usize, entry: &UnitConfig, errors: &mut Vec<UnitsError>) -> Draft {
    let mut date = |field: &'static str, value: &Option<String>| {
        let text = value.as_deref()?;
        let parsed = parse_date(text);
        if parsed.is_none() {
            errors.push(UnitsError::BadDate {
                index,
                code: entry.id.clone(),
                field,
                value: text.to_string(),
            });
        }
        parsed
    };
    let validity = Validity {
        from: date("valid_from", &entry.valid_from),
        until: date("valid_until", &entry.valid_until),
    };
    if let (Some(from), Some(until)) = (validity.from, validity.until)
        && until < from
    {
        errors.push(UnitsError::EmptyPeriod {
            index,
            code: entry.id.clone(),
            from,
            until,
        });
    }
    let mut names = vec![entry.name.clone()];
    names.extend(entry.aliases.iter().cloned());
    Draft {
        unit: AdminUnit {
            code: entry.id.clone(),
            name: entry.name.clone(),
            aliases: entry.aliases.clone(),
            unit_type: entry.unit_type,
            handling_agency: entry.handling_agency.clone(),
            validity,
            area: None,
            keys: Vec::new(),
        },
        names,
        declared: validity,
        feature: None,
    }
}

#[derive(serde::Deserialize)]
struct Collection<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow)]
    features: Vec<&'a RawValue>,
}

fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn apply_geojson(
    path: &Path,
    entries: &[UnitConfig],
    drafts: &mut [Draft],
    errors: &mut Vec<UnitsError>,
) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(source) => {
            errors.push(UnitsError::GeoJsonRead {
                path: path.to_path_buf(),
                source,
            });
            return;
        }
    };
    let invalid = |line: Option<usize>, message: String| UnitsError::GeoJsonInvalid {
        path: path.to_path_buf(),
        line,
        message,
    };
    let collection: Collection<'_> = match serde_json::from_str(&text) {
        Ok(c) => c,
        Err(e) => {
            errors.push(invalid(Some(e.line()), e.to_string()));
            return;
        }
    };
    if collection.kind != "FeatureCollection" {
        errors.push(invalid(
            Some(1),
            format!("\"type\" is {:?}", collection.kind),
        ));
        return;
    }
    for (feature, raw) in collection.features.iter().enumerate() {
        // The raw value borrows from `text`: its address tells where the feature starts.
        let offset = (raw.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        let line = line_at(&text, offset);
        let at = FeatureAt {
            path,
            line,
            feature,
        };
        if let Err(e) = apply_feature(&at, raw.get(), entries, drafts) {
            errors.push(e);
        }
    }
}

struct FeatureAt<'a> {
    path: &'a Path,
    line: usize,
    feature: usize,
}

impl FeatureAt<'_> {
    fn error(&self, code: &str, message: impl Into<String>) -> UnitsError {
        UnitsError::Feature {
            path: self.path.to_path_buf(),
            line: self.line,
            feature: self.feature,
            code: code.to_string(),
            message: message.into(),
        }
    }
}

fn apply_feature(
    at: &FeatureAt<'_>,
    raw: &str,
    entries: &[UnitConfig],
    drafts: &mut [Draft],
) -> Result<(), UnitsError> {
    let value: Value = serde_json::from_str(raw).map_err(|e| at.error("?", e.to_string()))?;
    let properties = value.get("properties").and_then(Value::as_object);
    let text = |key: &str| -> Option<String> {
        match properties?.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let Some(code) = text("code") else {
        return Err(at.error("?", "properties.code is missing"));
    };
    let date = |key: &str| -> Result<Option<NaiveDate>, UnitsError> {
        match text(key) {
            None => Ok(None),
            Some(t) => parse_date(&t)
                .map(Some)
                .ok_or_else(|| at.error(&code, format!("{key} {t:?} is not a date YYYY-MM-DD"))),
        }
    };
    let period = Validity {
        from: date("valid_from")?,
        until: date("valid_until")?,
    };
    let unit_type = match text("unit_type") {
        None => None,
        Some(t) => Some(UnitType::parse(&t).ok_or_else(|| {
            at.error(
                &code,
                format!("unit_type {t:?} is not one of xa, thi_tran, phuong, dac_khu, office"),
            )
        })?),
    };
    let area = geometry(at, &code, value.get("geometry"))?;
    // The entry's own declared period (before any filling) decides which one a feature is.
    let candidates: Vec<usize> = drafts
        .iter()
        .enumerate()
        .filter(|(_, d)| d.unit.code == code && d.declared.overlaps(&period))
        .map(|(i, _)| i)
        .collect();
    let index = match candidates.as_slice() {
        [one] => *one,
        [] => {
            return Err(at.error(
                &code,
                format!(
                    "no [[organisation.units]] entry has id {code:?} for a period overlapping {period}"
                ),
            ));
        }
        many => {
            return Err(at.error(
                &code,
                format!(
                    "{} [[organisation.units]] entries (units{:?}) fit; give them non-overlapping valid_from/valid_until",
                    many.len(),
                    many
                ),
            ));
        }
    };
    let entry = &entries[index];
    let draft = &mut drafts[index];
    if let Some(previous) = draft.feature {
        return Err(at.error(
            &code,
            format!("units[{index}] already has its polygon from feature {previous}"),
        ));
    }
    draft.feature = Some(at.feature);
    draft.unit.area = Some(area);
    // config.toml wins: the feature only fills what the entry leaves out.
    if entry.unit_type.is_none() {
        draft.unit.unit_type = unit_type;
    }
    if entry.handling_agency.is_none() {
        draft.unit.handling_agency = text("handling_agency");
    }
    if entry.valid_from.is_none() {
        draft.unit.validity.from = period.from;
    }
    if entry.valid_until.is_none() {
        draft.unit.validity.until = period.until;
    }
    draft
        .names
        .extend([text("full_name"), text("name")].into_iter().flatten());
    Ok(())
}

/// A position `[lon, lat, ...]` in WGS84 range.
fn position(value: &Value) -> Result<Coord<f64>, String> {
    let numbers = value
        .as_array()
        .filter(|a| a.len() >= 2)
        .ok_or_else(|| format!("position {value} is not [lon, lat]"))?;
    let (Some(x), Some(y)) = (numbers[0].as_f64(), numbers[1].as_f64()) else {
        return Err(format!("position {value} is not [lon, lat]"));
    };
    if !(-180.0..=180.0).contains(&x) || !(-90.0..=90.0).contains(&y) {
        return Err(format!(
            "position [{x}, {y}] is outside lon -180..180 / lat -90..90"
        ));
    }
    Ok(Coord { x, y })
}

fn ring(value: &Value) -> Result<LineString<f64>, String> {
    let points = value
        .as_array()
        .ok_or_else(|| "a ring is not an array of positions".to_string())?
        .iter()
        .map(position)
        .collect::<Result<Vec<_>, _>>()?;
    if points.len() < 4 || points.first() != points.last() {
        return Err("a ring needs at least 4 positions, the last equal to the first".into());
    }
    Ok(LineString::new(points))
}

fn polygon(value: &Value) -> Result<Polygon<f64>, String> {
    let rings = value
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| "a polygon is not a non-empty array of rings".to_string())?;
    let exterior = ring(&rings[0])?;
    let holes = rings[1..].iter().map(ring).collect::<Result<Vec<_>, _>>()?;
    Ok(Polygon::new(exterior, holes))
}

fn geometry(
    at: &FeatureAt<'_>,
    code: &str,
    value: Option<&Value>,
) -> Result<MultiPolygon<f64>, UnitsError> {
    let not_polygon = |found: String| UnitsError::NotPolygon {
        path: at.path.to_path_buf(),
        line: at.line,
        feature: at.feature,
        code: code.to_string(),
        found,
    };
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Err(not_polygon("null".into()));
    };
    let kind = value.get("type").and_then(Value::as_str).unwrap_or("?");
    let coordinates = value.get("coordinates").unwrap_or(&Value::Null);
    let result = match kind {
        "Polygon" => polygon(coordinates).map(|p| MultiPolygon::new(vec![p])),
        "MultiPolygon" => coordinates
            .as_array()
            .ok_or_else(|| "MultiPolygon coordinates are not an array".to_string())
            .and_then(|ps| ps.iter().map(polygon).collect::<Result<Vec<_>, _>>())
            .map(MultiPolygon::new),
        other => return Err(not_polygon(format!("a {other}"))),
    };
    result.map_err(|message| at.error(code, message))
}

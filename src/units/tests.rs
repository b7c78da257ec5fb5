use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("test date")
}

const BEFORE: &str = "2025-05-01";
const AFTER: &str = "2025-08-01";

/// The units of the shipped config.toml with the shipped GeoJSON.
fn shipped() -> Units {
    #[derive(serde::Deserialize)]
    struct File {
        organisation: crate::config::Organisation,
    }
    let text = std::fs::read_to_string(repo().join("config.toml")).expect("config.toml");
    let file: File = toml::from_str(&text).expect("config.toml parses");
    let org = file.organisation;
    let geojson = org.units_geojson.as_ref().map(|p| repo().join(p));
    let (units, errors) = Units::build(&org.units, &org.fallback_unit, geojson.as_deref());
    assert!(errors.is_empty(), "{errors:?}");
    units
}

fn code_at(units: &Units, lon: f64, lat: f64, on: &str) -> Option<String> {
    match units.at_point(lon, lat, day(on)).as_slice() {
        [one] => Some(one.code.clone()),
        [] => None,
        many => panic!("overlapping units {many:?}"),
    }
}

fn named(units: &Units, text: &str, on: &str) -> Option<(String, String)> {
    match units.from_text(text, day(on), false) {
        NameMatch::One(u) => Some((u.code.clone(), u.name.clone())),
        NameMatch::None => None,
        NameMatch::Many(many) => panic!("{text}: several units {many:?}"),
    }
}

#[test]
fn the_geojson_fills_type_agency_and_area_and_config_wins() {
    let units = shipped();
    let tan_lap = units.by_code("25381", day(BEFORE)).expect("Tân Lập");
    assert_eq!(tan_lap.unit_type, Some(UnitType::Xa));
    assert_eq!(tan_lap.handling_agency.as_deref(), Some("UBND xã Tân Lập"));
    assert!(tan_lap.area.is_some());
    let tt = units.by_code("25363", day(BEFORE)).expect("TT Tân Phú");
    assert_eq!(tt.unit_type, Some(UnitType::ThiTran));
    // After the merger the same code is another unit, declared in config.toml only.
    let dong_phu = units.by_code("25363", day(AFTER)).expect("Xã Đồng Phú");
    assert_eq!(dong_phu.name, "Xã Đồng Phú");
    assert!(dong_phu.area.is_none());
    assert_eq!(
        dong_phu.handling_agency.as_deref(),
        Some("UBND xã Đồng Phú")
    );
    assert_eq!(
        units
            .by_code("25387", day("2025-06-30"))
            .map(|u| u.name.as_str()),
        Some("Xã Thuận Phú")
    );
    assert_eq!(
        units
            .by_code("25387", day("2025-07-01"))
            .map(|u| u.name.as_str()),
        Some("Xã Thuận Lợi")
    );
    assert!(units.by_code("25393", day(AFTER)).is_none());
    assert_eq!(
        units.fallback(Some(day(AFTER))).map(|u| u.code.as_str()),
        Some("VP_HDND_UBND")
    );
}

#[test]
fn points_in_the_schematic_rectangles() {
    let units = shipped();
    assert_eq!(
        code_at(&units, 107.0, 11.48, BEFORE).as_deref(),
        Some("25378")
    );
    assert_eq!(
        code_at(&units, 106.79, 11.6, BEFORE).as_deref(),
        Some("25387")
    );
    // The Đồng Xoài gap belongs to no unit.
    assert_eq!(code_at(&units, 106.852, 11.5305, BEFORE), None);
    // Outside the district.
    assert_eq!(code_at(&units, 106.7, 10.8, BEFORE), None);
    // Shared edges: west and south edges are inclusive, so each edge point has one unit.
    // x = 106.9 is TT Tân Phú's east edge and Tân Hưng's west edge.
    assert_eq!(
        code_at(&units, 106.9, 11.45, BEFORE).as_deref(),
        Some("25375")
    );
    // y = 11.52 is Tân Hưng's north edge and Tân Phước's south edge.
    assert_eq!(
        code_at(&units, 106.93, 11.52, BEFORE).as_deref(),
        Some("25372")
    );
    // The district's outer east edge (x = 107.08) is nobody's.
    assert_eq!(code_at(&units, 107.08, 11.4, BEFORE), None);
    // The south-west corner of Tân Lập is its own.
    assert_eq!(
        code_at(&units, 106.8, 11.33, BEFORE).as_deref(),
        Some("25381")
    );
}

#[test]
fn after_the_merger_no_polygon_is_valid() {
    let units = shipped();
    assert!(units.has_areas_on(day("2025-06-30")));
    assert!(!units.has_areas_on(day("2025-07-01")));
    assert_eq!(
        code_at(&units, 107.0, 11.48, "2025-06-30").as_deref(),
        Some("25378")
    );
    assert_eq!(code_at(&units, 107.0, 11.48, "2025-07-01"), None);
}

#[test]
fn names_fold_case_diacritics_and_type_words() {
    let units = shipped();
    let tan_loi = Some(("25378".to_string(), "Xã Tân Lợi".to_string()));
    assert_eq!(named(&units, "xa tan loi", BEFORE), tan_loi);
    assert_eq!(named(&units, "XÃ TÂN LỢI", BEFORE), tan_loi);
    assert_eq!(named(&units, "  Tân   Lợi ", BEFORE), tan_loi);
    assert_eq!(
        named(&units, "x\u{e3} ta\u{302}n lo\u{31b}\u{323}i", BEFORE),
        tan_loi
    );
    // Not in this district, even though "Tân ..." names abound here.
    assert_eq!(named(&units, "Phường Tân Bình", BEFORE), None);
    assert_eq!(named(&units, "Xã Tân Thành", BEFORE), None);
    // A type the text states must agree: a phường Tân Lợi is another place.
    assert_eq!(named(&units, "Phường Tân Lợi", BEFORE), None);
    assert_eq!(named(&units, "P. Tân Lợi", BEFORE), None);
    assert_eq!(named(&units, "Xã Tân Phú", BEFORE), None);
    let tt = Some(("25363".to_string(), "Thị trấn Tân Phú".to_string()));
    assert_eq!(named(&units, "TT. Tân Phú", BEFORE), tt);
    assert_eq!(named(&units, "thi tran tan phu", BEFORE), tt);
    assert_eq!(named(&units, "Tân Phú", BEFORE), tt);
    assert_eq!(
        named(&units, "Đồng Tâm", BEFORE).map(|n| n.0).as_deref(),
        Some("25369")
    );
    assert_eq!(named(&units, "", BEFORE), None);
    assert_eq!(named(&units, "Xã", BEFORE), None);
}

#[test]
fn names_resolve_to_the_units_of_the_reports_date() {
    let units = shipped();
    let new_tan_loi = Some(("25378".to_string(), "Xã Tân Lợi".to_string()));
    assert_eq!(named(&units, "xa tan loi", AFTER), new_tan_loi);
    // Old names are aliases of the unit they merged into.
    assert_eq!(named(&units, "Xã Tân Hưng", AFTER), new_tan_loi);
    assert_eq!(
        named(&units, "Xã Tân Hưng", BEFORE).map(|n| n.0).as_deref(),
        Some("25375")
    );
    assert_eq!(
        named(&units, "Thuận Lợi", BEFORE).map(|n| n.0).as_deref(),
        Some("25366")
    );
    assert_eq!(
        named(&units, "Thuận Lợi", AFTER).map(|n| n.0).as_deref(),
        Some("25387")
    );
    assert_eq!(
        named(&units, "Thị trấn Tân Phú", AFTER),
        Some(("25363".to_string(), "Xã Đồng Phú".to_string()))
    );
}

fn route(units: &Units, lon: Option<f64>, lat: Option<f64>, name: Option<&str>) -> Route {
    units
        .route(lon, lat, name, Some(day(BEFORE)))
        .expect("a fallback unit")
}

#[test]
fn routing_policy() {
    let units = shipped();
    let r = route(&units, Some(107.0), Some(11.48), None);
    assert_eq!((r.code.as_str(), r.method), ("25378", Method::Coordinates));
    assert_eq!(r.handling_agency.as_deref(), Some("UBND xã Tân Lợi"));
    assert_eq!(r.note, None);

    // Coordinates win over a name that disagrees, and the note says so.
    let r = route(&units, Some(107.0), Some(11.48), Some("Xã Tân Lập"));
    assert_eq!((r.code.as_str(), r.method), ("25378", Method::Coordinates));
    assert!(
        r.note
            .as_deref()
            .is_some_and(|n| n.contains("'Xã Tân Lập'")),
        "{r:?}"
    );
    let r = route(&units, Some(107.0), Some(11.48), Some("Tân Lợi"));
    assert_eq!(r.note, None);

    let r = route(&units, Some(0.0), Some(0.0), Some("xa tan loi"));
    assert_eq!((r.code.as_str(), r.method), ("25378", Method::ReportedName));
    assert_eq!(
        r.note.as_deref(),
        Some("Tọa độ (0, 0) không hợp lệ (lỗi GPS); chuyển theo tên xã phản ánh 'xa tan loi'")
    );

    // Swapped: never swapped back, even though (106.9312, 11.5421) is in Tân Phước.
    let r = route(&units, Some(11.5421), Some(106.9312), None);
    assert_eq!(
        (r.code.as_str(), r.method),
        ("VP_HDND_UBND", Method::Fallback)
    );
    let note = r.note.unwrap_or_default();
    assert!(
        note.contains("bị đảo") && note.contains("không tự đảo"),
        "{note}"
    );
    assert!(
        note.ends_with("chuyển Văn phòng HĐND và UBND huyện Đồng Phú"),
        "{note}"
    );

    let r = route(
        &units,
        Some(106.852),
        Some(11.5305),
        Some("Phường Tân Bình"),
    );
    assert_eq!(
        (r.code.as_str(), r.method),
        ("VP_HDND_UBND", Method::Fallback)
    );
    assert_eq!(
        r.note.as_deref(),
        Some(
            "Tọa độ (106.852, 11.5305) nằm ngoài địa bàn các xã, thị trấn có hiệu lực ngày 01/05/2025; \
             không khớp tên xã 'Phường Tân Bình' với đơn vị nào có hiệu lực ngày 01/05/2025; \
             chuyển Văn phòng HĐND và UBND huyện Đồng Phú"
        )
    );

    let r = route(&units, None, None, None);
    assert_eq!(r.method, Method::Fallback);
    assert!(
        r.note
            .is_some_and(|n| n.starts_with("Không có tọa độ; không có tên xã"))
    );

    // The office is no place: naming it is not a location.
    let r = route(
        &units,
        None,
        None,
        Some("Văn phòng HĐND và UBND huyện Đồng Phú"),
    );
    assert_eq!(r.method, Method::Fallback);

    let r = units
        .route(Some(107.0), Some(11.48), None, None)
        .expect("fallback");
    assert_eq!(r.method, Method::Fallback);
    assert!(r.note.is_some_and(|n| n.contains("Không có thời điểm")));
}

#[test]
fn after_the_merger_reports_route_by_name_and_say_why() {
    let units = shipped();
    let r = units
        .route(
            Some(107.0),
            Some(11.48),
            Some("Xã Tân Lợi"),
            Some(day(AFTER)),
        )
        .expect("route");
    assert_eq!((r.code.as_str(), r.method), ("25378", Method::ReportedName));
    assert_eq!(r.name, "Xã Tân Lợi");
    assert!(r.note.is_some_and(|n| n.starts_with("Chưa có ranh giới")));
}

fn entry(id: &str, name: &str) -> UnitConfig {
    UnitConfig {
        id: id.into(),
        name: name.into(),
        aliases: Vec::new(),
        unit_type: None,
        handling_agency: None,
        valid_from: None,
        valid_until: None,
    }
}

fn geojson(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("units.geojson");
    std::fs::write(&path, text).expect("write GeoJSON");
    path
}

const SQUARE: &str =
    r#"{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}"#;

#[test]
fn config_problems_are_all_reported_with_where() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut a = entry("1", "Xã A");
    a.valid_until = Some("2025-06-30".into());
    let mut a_again = entry("1", "Xã A mới");
    a_again.valid_from = Some("2025-06-01".into());
    let mut bad_date = entry("2", "Xã B");
    bad_date.valid_from = Some("01/07/2025".into());
    let mut empty = entry("3", "Xã C");
    empty.valid_from = Some("2025-07-01".into());
    empty.valid_until = Some("2025-06-30".into());
    let path = geojson(
        dir.path(),
        &format!(
            r#"{{"type": "FeatureCollection", "features": [
  {{"type": "Feature", "properties": {{"code": "3"}}, "geometry": {SQUARE}}},
  {{"type": "Feature", "properties": {{"code": "1", "valid_until": "2025-05-31"}},
    "geometry": {{"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}}},
  {{"type": "Feature", "properties": {{"code": "9"}}, "geometry": {SQUARE}}}
]}}"#
        ),
    );
    let entries = [a, a_again, bad_date, empty];
    let (_, errors) = Units::build(&entries, "NOPE", Some(&path));
    let shown: Vec<(Location, String)> = errors
        .iter()
        .map(|e| (e.location(), e.to_string()))
        .collect();
    let has = |location: Location, text: &str| {
        assert!(
            shown
                .iter()
                .any(|(l, m)| *l == location && m.contains(text)),
            "missing {location:?} {text:?} in {shown:#?}"
        );
    };
    let key = |k: &str| Location::ConfigKey(k.into());
    let line = |n: usize| Location::File {
        path: path.clone(),
        line: Some(n),
    };
    has(
        key("organisation.units.1.id"),
        "declared twice for overlapping periods (until 2025-06-30 at units[0], from 2025-06-01)",
    );
    has(
        key("organisation.units.2.valid_from"),
        "\"01/07/2025\" is not a date",
    );
    has(key("organisation.units.3.valid_until"), "before valid_from");
    has(key("organisation.fallback_unit"), "\"NOPE\"");
    has(line(3), "the geometry is a LineString, not a Polygon");
    has(line(5), "no [[organisation.units]] entry has id \"9\"");
    assert_eq!(errors.len(), 6, "{shown:#?}");
}

#[test]
fn a_feature_matches_by_code_and_period() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut old = entry("1", "Xã Cũ");
    old.valid_until = Some("2025-06-30".into());
    old.handling_agency = Some("UBND xã Cũ (config)".into());
    let mut new = entry("1", "Xã Mới");
    new.valid_from = Some("2025-07-01".into());
    let path = geojson(
        dir.path(),
        &format!(
            r#"{{"type": "FeatureCollection", "features": [{{"type": "Feature",
  "properties": {{"code": "1", "unit_type": "xa", "valid_until": "2025-06-30", "handling_agency": "UBND xã Cũ (GeoJSON)", "full_name": "Xã Cổ"}},
  "geometry": {SQUARE}}}]}}"#
        ),
    );
    let (units, errors) = Units::build(&[entry("VP", "Văn phòng"), old, new], "VP", Some(&path));
    assert!(errors.is_empty(), "{errors:?}");
    let old = units.by_code("1", day("2025-01-01")).expect("old unit");
    assert!(old.area.is_some());
    assert_eq!(old.unit_type, Some(UnitType::Xa));
    assert_eq!(old.handling_agency.as_deref(), Some("UBND xã Cũ (config)"));
    let new = units.by_code("1", day(AFTER)).expect("new unit");
    assert!(new.area.is_none());
    assert_eq!(
        code_at(&units, 0.5, 0.5, "2025-01-01").as_deref(),
        Some("1")
    );
    // The feature's full_name is a name to match.
    assert_eq!(
        named(&units, "xa co", "2025-01-01").map(|n| n.0).as_deref(),
        Some("1")
    );
}

#[test]
fn unreadable_geojson_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.geojson");
    let (_, errors) = Units::build(&[entry("VP", "VP")], "VP", Some(&missing));
    assert!(
        matches!(errors.as_slice(), [UnitsError::GeoJsonRead { .. }]),
        "{errors:?}"
    );
    assert_eq!(
        errors[0].location(),
        Location::ConfigKey("organisation.units_geojson".into())
    );

    let path = geojson(
        dir.path(),
        "{\"type\": \"FeatureCollection\",\n \"features\": [ oops ]}",
    );
    let (_, errors) = Units::build(&[entry("VP", "VP")], "VP", Some(&path));
    assert!(
        matches!(
            errors.as_slice(),
            [UnitsError::GeoJsonInvalid { line: Some(2), .. }]
        ),
        "{errors:?}"
    );
}

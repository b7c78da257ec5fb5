//! Administrative units and report routing through SQL, on the shipped config and samples:
//! every line of `samples/feedback.jsonl` goes through `route_report`, and the expectations
//! are worked out by hand from `samples/communes.geojson`'s rectangles and samples/README.md.

use std::path::Path;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};
use iochub::Hub;
use iochub::config::{self, Overrides};
use serde_json::{Value, json};

use crate::common::{JSONL_INBOX, TestHub, count, rows};
use crate::config_check::iochub;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

async fn shipped_hub(data_dir: &Path) -> std::sync::Arc<Hub> {
    let overrides = Overrides {
        data_dir: Some(data_dir.to_path_buf()),
        ..Default::default()
    };
    let config = config::load(&repo().join("config.toml"), &overrides).unwrap();
    Hub::open(config).await.unwrap()
}

/// Line → (unit code, method). Lines with usable coordinates: the rectangle of
/// communes.geojson that holds (long, lat), west/south edges inclusive, read off the
/// feature bounds (x0..x1, y0..y1):
/// 25363 TT Tân Phú 106.85–106.90 × 11.395–11.47; 25366 Thuận Lợi 106.83–106.90 × 11.575–11.655;
/// 25369 Đồng Tâm 106.96–107.06 × 11.52–11.655; 25372 Tân Phước 106.90–106.96 × 11.52–11.59;
/// 25375 Tân Hưng 106.90–106.99 × 11.44–11.52; 25378 Tân Lợi 106.99–107.08 × 11.44–11.52;
/// 25381 Tân Lập 106.80–106.90 × 11.33–11.395; 25384 Tân Hòa 106.90–107.08 × 11.33–11.44;
/// 25387 Thuận Phú 106.76–106.83 × 11.575–11.655; 25390 Đồng Tiến 106.90–106.96 × 11.59–11.655;
/// 25393 Tân Tiến 106.80–106.85 × 11.395–11.47.
/// Every report is dated before 1 July 2025, so the pre-merger units apply.
const EXPECTED: &[(usize, &str, &str)] = &[
    (1, "25363", "coordinates"),  // 106.887372, 11.421832
    (2, "25366", "coordinates"),  // 106.839498, 11.615497
    (3, "25369", "coordinates"),  // 107.047557, 11.601328
    (4, "25372", "coordinates"),  // 106.93087, 11.528307
    (5, "25375", "coordinates"),  // 106.962425, 11.454283
    (6, "25378", "coordinates"),  // 107.001673, 11.455753
    (7, "25381", "coordinates"),  // 106.819751, 11.366255
    (8, "25384", "coordinates"),  // 107.018227, 11.344426
    (9, "25387", "coordinates"),  // 106.791203, 11.626205
    (10, "25390", "coordinates"), // 106.953962, 11.596268
    (11, "25393", "coordinates"), // 106.826312, 11.438376
    (12, "25363", "coordinates"), // 106.887358, 11.448874
    (13, "25366", "coordinates"), // 106.837478, 11.621952
    (14, "25369", "coordinates"), // 107.047428, 11.565489
    (15, "25372", "coordinates"), // 106.952337, 11.57413
    (16, "25375", "coordinates"), // 106.932018, 11.482696
    (17, "25378", "coordinates"), // 107.016515, 11.457057
    (18, "25381", "coordinates"), // 106.853101, 11.387955
    (19, "25384", "coordinates"), // 107.04991, 11.40559
    (20, "25387", "coordinates"), // 106.80674, 11.604667
    (21, "25390", "coordinates"), // 106.929524, 11.634383
    (22, "25393", "coordinates"), // 106.821582, 11.412215
    (23, "25363", "coordinates"), // 106.876293, 11.424818
    (24, "25366", "coordinates"), // 106.877703, 11.592486
    (25, "25369", "coordinates"), // 107.055174, 11.539505
    (26, "25372", "coordinates"), // 106.9285, 11.579316
    (27, "25375", "coordinates"), // 106.980559, 11.447872
    (28, "25378", "coordinates"), // 107.036595, 11.493485
    (29, "25381", "coordinates"), // 106.882053, 11.351921
    (30, "25384", "coordinates"), // 107.060816, 11.418089
    (31, "25387", "coordinates"), // 106.784514, 11.610505
    (32, "25390", "coordinates"), // 106.935819, 11.649612
    (33, "25393", "coordinates"), // 106.805529, 11.414752
    (34, "25363", "coordinates"), // 106.872112, 11.433677
    (35, "25366", "coordinates"), // 106.880065, 11.634785
    (36, "25369", "coordinates"), // 107.043847, 11.605623
    (37, "25372", "coordinates"), // 106.938551, 11.538486
    (38, "25375", "coordinates"), // 106.98038, 11.505096
    (39, "25378", "coordinates"), // 106.995808, 11.500522
    (40, "25381", "coordinates"), // 106.865203, 11.382119
    (41, "25384", "coordinates"), // 106.932758, 11.369854
    (42, "25387", "coordinates"), // 106.787178, 11.61069
    (43, "25390", "coordinates"), // 106.955183, 11.614848
    (44, "25393", "coordinates"), // 106.829962, 11.415862
    (45, "25363", "coordinates"), // 106.868919, 11.458835
    (46, "25366", "coordinates"), // 106.850756, 11.602062
    (47, "25369", "coordinates"), // 106.970336, 11.645387
    (48, "25372", "coordinates"), // 106.955562, 11.525301
    (49, "25384", "coordinates"), // 106.952388, 11.403
    (50, "25366", "coordinates"), // 106.839761, 11.579849
    (51, "25369", "coordinates"), // 106.982306, 11.564155
    // In the Đồng Xoài gap (106.80–106.90 × 11.47–11.575), and "Phường Tân Bình" is not here.
    (52, "VP_HDND_UBND", "fallback"),
    // No coordinates, "Xã Tân Thành" is not a unit of the district.
    (53, "VP_HDND_UBND", "fallback"),
    // No coordinates, "xa tan loi" folds to Xã Tân Lợi.
    (54, "25378", "reported_name"),
    (55, "25381", "coordinates"), // 106.871202, 11.378857 ("09/05/2025 09:00")
    (56, "25387", "coordinates"), // 106.781329, 11.592099 (no offset)
    (57, "25390", "coordinates"), // 106.955263, 11.636158
    (58, "25393", "coordinates"), // 106.816494, 11.41137
    // lat 106.9312 is no latitude; swapped back it would be Tân Phước 25372: never done.
    (59, "VP_HDND_UBND", "fallback"),
    (60, "VP_HDND_UBND", "fallback"), // (0, 0): GPS failure, no name
    (61, "25384", "coordinates"),     // 106.910611, 11.374347
    (62, "25381", "coordinates"),     // 106.822854, 11.34733
    (63, "25378", "coordinates"),     // 107.035706, 11.445755
];

/// `requested_datetime` as a timestamp: an offset if it has one, else local time (+07:00),
/// also in the "dd/mm/yyyy HH:MM" of line 55.
fn requested_at(text: &str) -> DateTime<FixedOffset> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return t;
    }
    let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%d/%m/%Y %H:%M"))
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    FixedOffset::east_opt(7 * 3600)
        .unwrap()
        .from_local_datetime(&local)
        .unwrap()
}

fn sql_text(v: &Value) -> String {
    match v.as_str() {
        Some(s) => format!("'{}'", s.replace('\'', "''")),
        None => "CAST(NULL AS VARCHAR)".into(),
    }
}

fn sql_number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) => format!("CAST({f} AS DOUBLE)"),
        None => "CAST(NULL AS DOUBLE)".into(),
    }
}

fn feedback() -> Vec<Value> {
    std::fs::read_to_string(repo().join("samples/feedback.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn every_sample_report_is_routed_as_the_regulation_says() {
    let data = tempfile::tempdir().unwrap();
    let hub = shipped_hub(data.path()).await;
    let lines = feedback();
    assert_eq!(lines.len(), EXPECTED.len());
    // One VALUES table for all lines, so the functions run over arrays, not one row each.
    let values: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = requested_at(r["requested_datetime"].as_str().unwrap());
            format!(
                "({}, {}, {}, {}, TIMESTAMP '{}')",
                i + 1,
                sql_number(&r["long"]),
                sql_number(&r["lat"]),
                sql_text(&r["x_reported_commune"]),
                at.to_rfc3339()
            )
        })
        .collect();
    let sql = format!(
        "SELECT line, r['code'], r['method'], r['name'], r['handling_agency'], r['note'] \
         FROM (SELECT line, route_report(lon, lat, name, at) AS r \
               FROM (VALUES {}) AS t(line, lon, lat, name, at)) ORDER BY line",
        values.join(", ")
    );
    let routed = rows(&hub, &sql).await;
    let got: Vec<(usize, String, String)> = routed
        .iter()
        .map(|r| {
            (
                r[0].as_u64().unwrap() as usize,
                r[1].as_str().unwrap().to_string(),
                r[2].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(usize, String, String)> = EXPECTED
        .iter()
        .map(|(l, c, m)| (*l, c.to_string(), m.to_string()))
        .collect();
    assert_eq!(got, expected);

    let row = |line: usize| &routed[line - 1];
    let note = |line: usize| row(line)[5].as_str().unwrap_or_default().to_string();
    assert_eq!(row(1)[3], json!("Thị trấn Tân Phú"));
    assert_eq!(row(1)[4], json!("UBND thị trấn Tân Phú"));
    assert_eq!(row(1)[5], Value::Null, "coordinates and name agree");
    assert_eq!(row(54)[4], json!("UBND xã Tân Lợi"));
    assert_eq!(
        note(54),
        "Không có tọa độ; chuyển theo tên xã phản ánh 'xa tan loi'"
    );
    assert_eq!(row(52)[3], json!("Văn phòng HĐND và UBND huyện Đồng Phú"));
    assert!(
        note(52).starts_with("Tọa độ (106.852, 11.5305) nằm ngoài địa bàn")
            && note(52).contains("không khớp tên xã 'Phường Tân Bình'")
            && note(52).ends_with("chuyển Văn phòng HĐND và UBND huyện Đồng Phú"),
        "{}",
        note(52)
    );
    assert!(note(53).contains("'Xã Tân Thành'"), "{}", note(53));
    assert!(note(59).contains("không tự đảo"), "{}", note(59));
    assert!(
        note(60).starts_with("Tọa độ (0, 0) không hợp lệ (lỗi GPS); không có tên xã phản ánh"),
        "{}",
        note(60)
    );
    // Every fallback and name route says why; no coordinate route is silent about a
    // disagreeing name either (none disagree in the samples).
    for (line, _, method) in EXPECTED {
        assert_eq!(
            *method != "coordinates",
            !note(*line).is_empty(),
            "line {line}: {:?}",
            row(*line)
        );
    }
}

#[tokio::test]
async fn the_stored_reports_route_the_same_from_their_text_columns() {
    let data = tempfile::tempdir().unwrap();
    let hub = shipped_hub(data.path()).await;
    let report = hub.run("citizen_reports", "test").await.unwrap();
    assert!(report.error.is_none(), "{report:?}");
    // Straight from the table: numbers, Utf8View text and the requested_datetime text as it
    // came (line 56 without an offset, line 55 "09/05/2025 09:00", both local time).
    let routed = rows(
        &hub,
        "SELECT service_request_id, route_report(long, lat, x_reported_commune, requested_datetime)['code'] \
         FROM citizen_reports ORDER BY service_request_id",
    )
    .await;
    let lines = feedback();
    // The last line with an id wins (line 63 repeats line 6's id).
    let mut expected = std::collections::BTreeMap::new();
    for (r, (_, code, _)) in lines.iter().zip(EXPECTED) {
        expected.insert(r["service_request_id"].as_str().unwrap().to_string(), *code);
    }
    let got: std::collections::BTreeMap<String, &str> = routed
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_str().unwrap()))
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn unit_functions_follow_validity_and_folding() {
    let data = tempfile::tempdir().unwrap();
    let hub = shipped_hub(data.path()).await;
    let one = |sql: &'static str| {
        let hub = hub.clone();
        async move { rows(&hub, sql).await.remove(0) }
    };
    assert_eq!(
        one("SELECT unit_at(107.0, 11.48, DATE '2025-05-01'), unit_at(107.0, 11.48, DATE '2025-06-30'), \
             unit_at(107.0, 11.48, DATE '2025-07-01'), unit_at(106.852, 11.5305, DATE '2025-05-01')")
        .await,
        // After the merger no unit has a polygon: NULL, not the old commune.
        vec![json!("25378"), json!("25378"), Value::Null, Value::Null]
    );
    // The local date counts: 20:00 UTC on 30 June is already 1 July in Đồng Phú.
    assert_eq!(
        one(
            "SELECT unit_at(107.0, 11.48, TIMESTAMP '2025-06-30T16:59:00Z'), \
                    unit_at(107.0, 11.48, TIMESTAMP '2025-06-30T20:00:00Z'), \
                    unit_at(107.0, 11.48, '2025-06-30T23:00:00')"
        )
        .await,
        vec![json!("25378"), Value::Null, json!("25378")]
    );
    assert_eq!(
        count(
            &hub,
            "SELECT count(*) FROM (VALUES (1)) WHERE \
             unit_at(107.0, 11.48) IS NOT DISTINCT FROM unit_at(107.0, 11.48, CURRENT_DATE)"
        )
        .await,
        1,
        "without `at`, today"
    );
    assert_eq!(
        one("SELECT unit_from_text('xa tan loi', DATE '2025-05-01'), unit_from_text('Phường Tân Bình', DATE '2025-05-01'), \
             unit_from_text('Xã Tân Thành', DATE '2025-05-01'), unit_from_text('Xã Tân Hòa', DATE '2025-08-01'), \
             unit_from_text('Thuận Lợi', DATE '2025-05-01'), unit_from_text('Thuận Lợi', DATE '2025-08-01')")
        .await,
        vec![
            json!("25378"),
            Value::Null,
            Value::Null,
            json!("25378"),
            json!("25366"),
            json!("25387")
        ]
    );
    assert_eq!(
        one(
            "SELECT unit_name('25387', DATE '2025-05-01'), unit_name('25387', DATE '2025-08-01'), \
             unit_name('25393', DATE '2025-08-01'), unit_name('VP_HDND_UBND', DATE '2030-01-01')"
        )
        .await,
        vec![
            json!("Xã Thuận Phú"),
            json!("Xã Thuận Lợi"),
            Value::Null,
            json!("Văn phòng HĐND và UBND huyện Đồng Phú")
        ]
    );
    // A report after the merger: no polygon, so by name, to the new commune.
    assert_eq!(
        one("SELECT r['code'], r['name'], r['handling_agency'], r['method'] FROM \
             (SELECT route_report(107.0, 11.48, 'Xã Tân Lợi', TIMESTAMP '2025-08-01T09:00:00+07:00') AS r)")
        .await,
        vec![
            json!("25378"),
            json!("Xã Tân Lợi"),
            json!("UBND xã Tân Lợi"),
            json!("reported_name")
        ]
    );
    assert_eq!(
        one(
            "SELECT route_report(107.0, 11.48, 'Xã Tân Hưng', DATE '2025-08-01')['code'], \
                    route_report(107.0, 11.48, 'Xã Tân Hưng', DATE '2025-05-01')['code']"
        )
        .await,
        vec![json!("25378"), json!("25378")]
    );
    // NULL in, NULL out.
    assert_eq!(
        one(
            "SELECT unit_at(NULL, NULL, NULL), unit_from_text(NULL), unit_name(NULL, NULL), \
             vi_text_check(NULL), vi_text_check('  ')"
        )
        .await,
        vec![
            Value::Null,
            Value::Null,
            Value::Null,
            json!("empty"),
            json!("empty")
        ]
    );
    assert_eq!(
        one("SELECT mask_phone('0912345678')").await,
        vec![json!("091****678")]
    );
}

#[tokio::test]
async fn vi_text_check_on_the_sample_descriptions() {
    let data = tempfile::tempdir().unwrap();
    let hub = shipped_hub(data.path()).await;
    let values: Vec<String> = feedback()
        .iter()
        .enumerate()
        .map(|(i, r)| format!("({}, {})", i + 1, sql_text(&r["description"])))
        .collect();
    let sql = format!(
        "SELECT line, vi_text_check(d) FROM (VALUES {}) AS t(line, d) ORDER BY line",
        values.join(", ")
    );
    for r in rows(&hub, &sql).await {
        let line = r[0].as_u64().unwrap();
        let expected = match line {
            57 => "other_language",
            58 => "missing_diacritics",
            _ => "vietnamese",
        };
        assert_eq!(r[1], json!(expected), "line {line}");
    }
}

#[tokio::test]
async fn the_functions_work_in_transforms_and_checks() {
    let t = TestHub::new();
    t.add_pipeline("reports", &["id"], JSONL_INBOX);
    let path = t.path().join("pipelines/reports.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[source]",
        "transform = \"SELECT id, n, route_report(NULL, NULL, name, day)['method'] AS method, vi_text_check(name) AS language FROM input\"\n\n\
         [[checks]]\nname = \"vietnamese\"\nrule = \"vi_text_check(name) <> 'other_language'\"\nmessage = \"Nội dung phải bằng tiếng Việt\"\n\n[source]",
    );
    std::fs::write(&path, text).unwrap();
    t.write(
        "inbox/a.jsonl",
        "{\"id\": \"a\", \"n\": 1, \"name\": \"Rác thải đổ tràn lan\", \"day\": \"2025-05-01\"}\n\
         {\"id\": \"b\", \"n\": 2, \"name\": \"Garbage is everywhere on the road\", \"day\": \"2025-05-01\"}\n",
    );
    let hub = t.open().await;
    let report = hub.run("reports", "test").await.unwrap();
    assert_eq!((report.accepted, report.rejected), (1, 1), "{report:?}");
    assert_eq!(
        rows(&hub, "SELECT id, method, language FROM reports").await,
        vec![vec![json!("a"), json!("fallback"), json!("vietnamese")]]
    );
}

#[test]
fn check_reports_bad_unit_config_with_file_and_line() {
    let t = TestHub::new();
    let config = std::fs::read_to_string(t.config_path()).unwrap();
    let config = config
        .replace(
            "fallback_unit = \"VP\"",
            "fallback_unit = \"VP\"\nunits_geojson = \"units.geojson\"",
        )
        .replace(
            "[[organisation.units]]\nid = \"VP\"",
            "[[organisation.units]]\nid = \"1\"\nname = \"Xã Một\"\nvalid_until = \"2025-06-30\"\n\n\
             [[organisation.units]]\nid = \"1\"\nname = \"Xã Một mới\"\nvalid_from = \"2025-06-01\"\n\n\
             [[organisation.units]]\nid = \"2\"\nname = \"Xã Hai\"\nvalid_from = \"1/7/2025\"\n\n\
             [[organisation.units]]\nid = \"VP\"",
        );
    t.write("config.toml", &config);
    t.write(
        "units.geojson",
        "{\"type\": \"FeatureCollection\", \"features\": [\n\
         {\"type\": \"Feature\", \"properties\": {\"code\": \"2\"},\n\
          \"geometry\": {\"type\": \"Point\", \"coordinates\": [106.9, 11.5]}}\n]}\n",
    );
    let path = t.config_path();
    let (ok, out) = iochub(&["--config", path.to_str().unwrap(), "check"]);
    assert!(!ok, "check must fail:\n{out}");
    let line_of = |needle: &str| config.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let duplicate = format!(
        "config.toml:{}: unit \"1\" is declared twice for overlapping periods",
        // The second `id = "1"`.
        config
            .lines()
            .enumerate()
            .filter(|(_, l)| *l == "id = \"1\"")
            .nth(1)
            .unwrap()
            .0
            + 1
    );
    let bad_date = format!(
        "config.toml:{}: unit \"2\": valid_from \"1/7/2025\" is not a date",
        line_of("1/7/2025")
    );
    for e in [
        duplicate.as_str(),
        bad_date.as_str(),
        "units.geojson:2: feature 0 (2): the geometry is a Point, not a Polygon or MultiPolygon",
    ] {
        assert!(out.contains(e), "missing {e:?} in:\n{out}");
    }

    // An unreadable GeoJSON and an unknown fallback unit.
    let broken = config
        .replace("units.geojson", "missing.geojson")
        .replace("fallback_unit = \"VP\"", "fallback_unit = \"NOPE\"");
    t.write("config.toml", &broken);
    let (ok, out) = iochub(&["--config", path.to_str().unwrap(), "check"]);
    assert!(!ok);
    let line_of = |needle: &str| broken.lines().position(|l| l.contains(needle)).unwrap() + 1;
    for e in [
        format!(
            "config.toml:{}: cannot read the units GeoJSON",
            line_of("missing.geojson")
        ),
        format!(
            "config.toml:{}: fallback_unit \"NOPE\" is not the id of any",
            line_of("fallback_unit")
        ),
    ] {
        assert!(out.contains(&e), "missing {e:?} in:\n{out}");
    }
}

//! The shipped `ioc_operation` report over the shipped samples, figure by figure.
//!
//! The expected figures were computed from the sample files by `reports_expected.py` (next to
//! this file: plain Python over `samples/`, not the hub's code), with the quarantined rows
//! that `samples.rs` lists left out and keyed records taking their last version.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use iochub::Hub;
use iochub::config::{self, Overrides};
use iochub::report::{self, Format, Period, ReportDocument, SectionResult};
use serde_json::{Value, json};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped config with its data in `data_dir`, and the token made for each consumer
/// whose `IOCHUB_TOKEN_*` variable is unset.
async fn shipped(data_dir: &Path) -> (Arc<Hub>, BTreeMap<String, String>) {
    let overrides = Overrides {
        data_dir: Some(data_dir.to_path_buf()),
        ..Default::default()
    };
    let config = config::load(&repo().join("config.toml"), &overrides).unwrap();
    let tokens = config
        .generated_tokens
        .iter()
        .map(|t| (t.consumer.clone(), t.token.clone()))
        .collect();
    (Hub::open(config).await.unwrap(), tokens)
}

fn section<'a>(doc: &'a ReportDocument, title: &str) -> &'a SectionResult {
    doc.sections
        .iter()
        .find(|s| s.title == title)
        .unwrap_or_else(|| panic!("no section {title:?}"))
}

/// Rows keyed by the value of column `key`, each as column name → value.
fn by(section: &SectionResult, key: &str) -> BTreeMap<String, BTreeMap<String, Value>> {
    section
        .rows
        .iter()
        .map(|row| {
            let cells: BTreeMap<String, Value> = section
                .columns
                .iter()
                .zip(row)
                .map(|(c, v)| (c.name.clone(), v.clone()))
                .collect();
            (cells[key].as_str().unwrap().to_string(), cells)
        })
        .collect()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn ratio(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test]
async fn the_operation_report_matches_the_samples_figure_by_figure() {
    let data = tempfile::tempdir().unwrap();
    let (hub, _) = shipped(data.path()).await;
    let runs = hub.run_all("test").await;
    assert!(runs.iter().all(|r| r.error.is_none()), "{runs:#?}");

    // April 2025: citizen reports by category (received, closed, still open).
    let april = hub
        .generate_report("ioc_operation", &Period::parse("2025-04").unwrap())
        .await
        .unwrap();
    assert_eq!(april.period_label, "Tháng 4 năm 2025");
    assert!(april.complete);
    let categories = by(
        section(&april, "Phản ánh hiện trường theo lĩnh vực"),
        "service_code",
    );
    let expected = [
        ("TTBB", 6, 2, 4),
        ("NTHAI", 4, 1, 3),
        ("LCLLD", 3, 0, 3),
        ("XDKP", 3, 2, 1),
        ("ABC", 1, 0, 1),
        ("KHAC", 1, 0, 1),
        ("VPQC", 1, 1, 0),
        ("XRAC", 1, 0, 1),
    ];
    assert_eq!(categories.len(), expected.len(), "{categories:#?}");
    for (code, received, closed, open) in expected {
        let row = &categories[code];
        assert_eq!(
            (
                int(&row["received"]),
                int(&row["closed"]),
                int(&row["open"])
            ),
            (received, closed, open),
            "{code}"
        );
    }
    assert_eq!(categories["TTBB"]["service_name"], "Tụ tập buôn bán");
    // Largest first.
    let first = &section(&april, "Phản ánh hiện trường theo lĩnh vực").rows[0];
    assert_eq!(first[1], "TTBB");

    // By status: 20 reports in April.
    let statuses = by(
        section(&april, "Phản ánh hiện trường theo tình trạng xử lý"),
        "status_name",
    );
    for (status, n) in [("Mới tiếp nhận", 7), ("Đang xử lý", 7), ("Đã xử lý", 6)] {
        assert_eq!(int(&statuses[status]["reports"]), n, "{status}");
        assert!((ratio(&statuses[status]["share"]) - n as f64 / 20.0).abs() < 1e-12);
    }
    assert_eq!(statuses.len(), 3);
    // By handling unit (routing and deadlines by hand, see reports_expected.py): received,
    // answered on time, answered late, open past the deadline; every open April report is
    // overdue today.
    let units = by(
        section(&april, "Phản ánh hiện trường theo đơn vị xử lý"),
        "assigned_unit_code",
    );
    let expected_units = [
        ("25363", 2, 1, 0, 1),
        ("25366", 2, 2, 0, 0),
        ("25369", 1, 1, 0, 0),
        ("25372", 2, 1, 0, 1),
        ("25375", 2, 1, 0, 1),
        ("25378", 1, 0, 0, 1),
        ("25381", 1, 0, 0, 1),
        ("25384", 3, 0, 0, 3),
        ("25387", 1, 0, 0, 1),
        ("25390", 2, 0, 0, 2),
        ("25393", 1, 0, 0, 1),
        ("VP_HDND_UBND", 2, 0, 0, 2),
    ];
    assert_eq!(units.len(), expected_units.len(), "{units:#?}");
    for (code, received, on_time, late, overdue) in expected_units {
        let row = &units[code];
        assert_eq!(
            (
                int(&row["received"]),
                int(&row["answered_on_time"]),
                int(&row["answered_late"]),
                int(&row["open_overdue"]),
            ),
            (received, on_time, late, overdue),
            "{code}"
        );
        assert!((ratio(&row["on_time_rate"]) - on_time as f64 / received as f64).abs() < 1e-12);
    }
    let standing = &section(&april, "Đơn vị xử lý phản ánh tốt nhất và chậm nhất").rows;
    assert_eq!(standing.len(), 2, "{standing:?}");
    assert_eq!(
        (standing[0][0].clone(), standing[0][1].clone()),
        ("Tốt nhất".into(), "Xã Thuận Lợi".into())
    );
    assert_eq!(
        (standing[1][0].clone(), standing[1][1].clone()),
        ("Chậm nhất".into(), "Xã Tân Hòa".into())
    );
    // Data timeliness per publisher: every shipped dataset ran once just now, within its
    // allowed staleness; the quarantine share is the run's.
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let now = hub
        .generate_report("ioc_operation", &Period::parse(&month).unwrap())
        .await
        .unwrap();
    let publishers = by(
        section(
            &now,
            "Tính kịp thời, chất lượng dữ liệu của các đơn vị cung cấp",
        ),
        "title",
    );
    let schools = &publishers["Trường học"];
    assert_eq!(schools["publishers"], "phong_gddt");
    assert_eq!(schools["timeliness"], "Kịp thời");
    assert!((ratio(&schools["quarantine_rate"]) - 5.0 / 28.0).abs() < 1e-12);
    // The dossiers cover January to March only.
    assert!(
        section(&april, "Giải quyết thủ tục hành chính theo cơ quan")
            .rows
            .is_empty()
    );

    // 2025-Q1: dossiers per agency (received, of which online, resolved, resolved in time,
    // late), only the 33 accepted rows.
    let q1 = hub
        .generate_report("ioc_operation", &Period::parse("2025-Q1").unwrap())
        .await
        .unwrap();
    assert_eq!(q1.period_label, "Quý I năm 2025");
    let agencies = by(
        section(&q1, "Giải quyết thủ tục hành chính theo cơ quan"),
        "agency_code",
    );
    let expected = [
        ("DP-KTHT", 128, 80, 130, 130, 0),
        ("DP-LDTBXH", 210, 118, 196, 193, 3),
        ("DP-TNMT", 262, 116, 233, 232, 1),
        ("DP-TP", 638, 356, 606, 594, 12),
        ("DP-VP", 95, 62, 91, 91, 0),
        ("DP-VPDKDD", 1897, 1227, 1929, 1798, 131),
        ("DP-X25363", 512, 307, 495, 487, 8),
        ("DP-X25366", 363, 182, 325, 322, 3),
        ("DP-X25369", 457, 253, 456, 446, 10),
        ("DP-X25381", 385, 197, 357, 353, 4),
        ("DP-X25384", 436, 191, 409, 402, 7),
    ];
    assert_eq!(agencies.len(), expected.len(), "{agencies:#?}");
    for (code, received, online, resolved, in_time, late) in expected {
        let row = &agencies[code];
        assert_eq!(int(&row["received"]), received, "{code}");
        assert_eq!(int(&row["received_online"]), online, "{code}");
        assert_eq!(int(&row["resolved"]), resolved, "{code}");
        assert_eq!(int(&row["late"]), late, "{code}");
        let rate = ratio(&row["on_time_rate"]);
        assert!(
            (rate - in_time as f64 / resolved as f64).abs() < 1e-12,
            "{code}: {rate}"
        );
    }
    let first = &section(&q1, "Giải quyết thủ tục hành chính theo cơ quan").rows[0];
    assert_eq!(first[1], "DP-VPDKDD", "largest intake first");
    let total = &section(&q1, "Giải quyết thủ tục hành chính: tổng hợp toàn huyện").rows[0];
    assert_eq!(
        (
            int(&total[0]),
            int(&total[1]),
            int(&total[3]),
            int(&total[5])
        ),
        (11, 5383, 5227, 179)
    );
    assert!((ratio(&total[2]) - 3089.0 / 5383.0).abs() < 1e-12);
    assert!((ratio(&total[4]) - 5048.0 / 5227.0).abs() < 1e-12);

    // Health in Q1, by measure (the row of an unknown facility is quarantined).
    let health = by(
        section(&q1, "Y tế: một số chỉ tiêu chủ yếu"),
        "measure_code",
    );
    for (code, total, facilities) in [
        ("IMM_DOSES", 239, 4),
        ("IPD_ADMISSIONS", 1579, 1),
        ("OPD_VISITS", 23753, 6),
    ] {
        assert_eq!(int(&health[code]["total"]), total, "{code}");
        assert_eq!(int(&health[code]["facilities"]), facilities, "{code}");
    }
    // Schools by level (22 stored: five rows quarantined, a repeated id replaced).
    let schools = by(section(&q1, "Giáo dục: mạng lưới trường lớp"), "level_name");
    for (level, n, classes, pupils, teachers) in [
        ("Mầm non", 6, 66, 1774, 145),
        ("Tiểu học", 9, 200, 6241, 290),
        ("Trung học cơ sở", 5, 116, 4295, 226),
        ("Trung học phổ thông", 1, 20, 814, 44),
        ("Liên cấp", 1, 15, 483, 27),
    ] {
        let row = &schools[level];
        assert_eq!(
            (
                int(&row["schools"]),
                int(&row["classes"]),
                int(&row["pupils"]),
                int(&row["teachers"])
            ),
            (n, classes, pupils, teachers),
            "{level}"
        );
    }

    // Data connections: the runs just made fall in the current month.
    let started = runs[0]
        .started_at
        .with_timezone(&hub.time_zone())
        .date_naive();
    let now = Period::containing(report::PeriodKind::Month, started);
    let current = hub.generate_report("ioc_operation", &now).await.unwrap();
    assert!(!current.complete, "the current month has not ended");
    let connections = by(
        section(&current, "Tình hình kết nối, đồng bộ dữ liệu"),
        "pipeline",
    );
    assert_eq!(connections.len(), 7, "{connections:#?}");
    for (pipeline, accepted, quarantined) in [
        ("citizen_reports", 63, 0),
        ("dossier_stats", 33, 7),
        ("health_aggregates", 27, 4),
        ("schools", 23, 5),
    ] {
        let row = &connections[pipeline];
        assert_eq!(int(&row["runs"]), 1, "{pipeline}");
        assert_eq!(ratio(&row["success_rate"]), 1.0, "{pipeline}");
        assert_eq!(int(&row["accepted"]), accepted, "{pipeline}");
        assert_eq!(int(&row["quarantined"]), quarantined, "{pipeline}");
        assert!(row["last_success"].is_string(), "{pipeline}");
    }
    assert_eq!(connections["schools"]["title"], "Trường học");
    // April 2025 had no runs at all (they happen now).
    assert!(
        section(&april, "Tình hình kết nối, đồng bộ dữ liệu")
            .rows
            .is_empty()
    );

    // HTML: Vietnamese headings, the period, Vietnamese numbers, a chart.
    let html = String::from_utf8(report::render(&q1, Format::Html).unwrap()).unwrap();
    for text in [
        "Báo cáo tình hình hoạt động của Trung tâm Điều hành thông minh",
        "Trung tâm Điều hành thông minh huyện Đồng Phú",
        "Quý I năm 2025",
        "Từ ngày 01/01/2025 đến hết ngày 31/03/2025",
        "7. Giải quyết thủ tục hành chính theo cơ quan",
        "<th>Tỷ lệ đúng hạn</th>",
        "<td class=\"num\">1.897</td>",
        "<td class=\"num\">93,2 %</td>",
        "<td class=\"num\">5.383</td>",
        "<td class=\"num\">23.753</td>",
        "@media print",
    ] {
        assert!(html.contains(text), "{text:?} missing");
    }
    assert!(html.matches("<svg").count() >= 4, "charts are inline SVG");
    assert!(!html.contains("<script") && !html.contains("<link"));

    // Stored, with its generation time; generating again replaces it.
    let stored = data.path().join("reports/ioc_operation/2025-Q1.json");
    let first: ReportDocument = serde_json::from_slice(&std::fs::read(&stored).unwrap()).unwrap();
    assert_eq!(first, q1);
    assert!(
        data.path()
            .join("reports/ioc_operation/2025-Q1.html")
            .is_file()
    );
    let again = hub
        .generate_report("ioc_operation", &Period::parse("2025-Q1").unwrap())
        .await
        .unwrap();
    // Nothing changed since: the stored generation stands (no revision, same time).
    let kept: ReportDocument = serde_json::from_slice(&std::fs::read(&stored).unwrap()).unwrap();
    assert_eq!(again, q1);
    assert_eq!((kept.generated_at, kept.revision), (q1.generated_at, 0));
    let listed = hub.report_listings();
    let periods: Vec<&str> = listed[0].stored.iter().map(|s| s.period.as_str()).collect();
    let now_text = now.to_string();
    assert_eq!(periods, ["2025-Q1", "2025-04", now_text.as_str()]);

    // XLSX: one sheet per section, numbers as numbers.
    let xlsx = report::render(&q1, Format::Xlsx).unwrap();
    use calamine::Reader;
    let mut book: calamine::Xlsx<_> = calamine::Xlsx::new(Cursor::new(xlsx)).unwrap();
    let names = book.sheet_names();
    assert_eq!(names.len(), q1.sections.len(), "{names:?}");
    let dossier_sheet = names.iter().find(|n| n.starts_with("7. ")).unwrap().clone();
    let range = book.worksheet_range(&dossier_sheet).unwrap();
    let cells: Vec<Vec<calamine::Data>> = range.rows().map(|r| r.to_vec()).collect();
    let header = cells
        .iter()
        .position(|r| r.first() == Some(&calamine::Data::String("Cơ quan".into())))
        .expect("a header row");
    let first = &cells[header + 1];
    assert_eq!(first[1], calamine::Data::String("DP-VPDKDD".into()));
    assert_eq!(first[2], calamine::Data::Float(1897.0));

    // CSV: a byte-order mark, then section titles and tables.
    let csv = report::render(&q1, Format::Csv).unwrap();
    assert!(csv.starts_with(b"\xEF\xBB\xBF"));
    let text = String::from_utf8(csv[3..].to_vec()).unwrap();
    assert!(text.contains("7. Giải quyết thủ tục hành chính theo cơ quan\n"));
    assert!(text.contains("Phòng Tư pháp huyện Đồng Phú,DP-TP,638,356,606,"));
}

#[tokio::test]
async fn reports_over_http_are_for_the_office_and_the_province_and_escape_department_data() {
    let data = tempfile::tempdir().unwrap();
    let (hub, tokens) = shipped(data.path()).await;
    hub.run_all("test").await;
    // A department's record carrying markup, in June 2025.
    let publisher = hub.authenticate(&tokens["phan_anh"]).unwrap();
    let hostile = json!([{
        "service_request_id": "BPT-2025-XSS001",
        "jurisdiction_id": "dongphu.binhphuoc",
        "service_code": "KHAC",
        "service_name": "<script>alert('x')</script>",
        "description": "Thử dữ liệu có mã độc trong tên lĩnh vực.",
        "status": "open",
        "x_status_detail": "moi_tiep_nhan",
        "service_notice": "Thời hạn xử lý, trả lời: 03 ngày làm việc.",
        "requested_datetime": "2025-06-10T08:00:00+07:00",
        "address": "ấp 1, xã Tân Lập",
        "x_channel": "binh_phuoc_today_app",
        "x_language": "vi",
        "x_submitter": {"full_name": "Nguyễn Văn A", "address": "ấp 1", "phone": "0912345678"}
    }]);
    let published = hub
        .publish(
            &publisher,
            "citizen_reports",
            "application/json",
            hostile.to_string().as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(published.accepted, 1, "{published:?}");

    let addr = crate::common::serve(hub.clone()).await;
    let client = |consumer: &str| crate::common::client_with(&tokens[consumer]);
    let url = |path: &str| format!("http://{addr}/api/v1/reports{path}");

    let admin = client("ioc_admin");
    let june = admin
        .get(url("/ioc_operation/2025-06"))
        .send()
        .await
        .unwrap();
    assert_eq!(june.status(), 200);
    assert!(
        june.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = june.text().await.unwrap();
    assert!(html.contains("Tháng 6 năm 2025"));
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "the hostile name is shown escaped"
    );
    assert!(!html.contains("<script"), "no markup from the data");

    // The province reads it too, here as JSON through Accept; then as XLSX by ?format.
    let province = client("ioc_tinh");
    let answer = province
        .get(url("/ioc_operation/2025-04"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["period_label"], "Tháng 4 năm 2025");
    assert_eq!(body["sections"][1]["columns"][2]["label"], "Số phản ánh");
    assert_eq!(body["sections"][1]["rows"][0][2], 6);
    let xlsx = province
        .get(url("/ioc_operation/2025-Q1?format=xlsx"))
        .send()
        .await
        .unwrap();
    assert_eq!(xlsx.status(), 200);
    assert!(
        xlsx.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("ioc_operation_2025-Q1.xlsx")
    );
    assert!(xlsx.bytes().await.unwrap().starts_with(b"PK"));

    // An agency may not; a bad period and an unknown report say so in JSON.
    let agency = client("phong_tnmt");
    let refused = agency
        .get(url("/ioc_operation/2025-04"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(
        agency.get(url("")).send().await.unwrap().status(),
        403,
        "nor list them"
    );
    let bad = admin
        .get(url("/ioc_operation/2025-13"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let error: Value = bad.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("tháng phải từ 01 đến 12") && message.contains("invalid period"),
        "{message}"
    );
    // A period that has not begun is refused, and nothing is stored for it.
    let future = admin
        .get(url("/ioc_operation/2999-Q1"))
        .send()
        .await
        .unwrap();
    assert_eq!(future.status(), 400);
    let error: Value = future.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chưa bắt đầu"),
        "{error}"
    );
    let unknown = admin.get(url("/no_such/2025-04")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let error: Value = unknown.json().await.unwrap();
    assert_eq!(error["error"]["code"], "not_found");
    let format = admin
        .get(url("/ioc_operation/2025-04?format=pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(format.status(), 400);

    // Listed with the stored periods.
    let listing: Value = admin
        .get(url(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let report = &listing["reports"][0];
    assert_eq!(report["name"], "ioc_operation");
    assert_eq!(
        report["title"],
        "Báo cáo tình hình hoạt động của Trung tâm Điều hành thông minh"
    );
    let stored: Vec<&str> = report["stored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["period"].as_str().unwrap())
        .collect();
    assert_eq!(stored, ["2025-Q1", "2025-04", "2025-06"]);

    // Every read is audited, refusals too.
    let audited = crate::common::rows(
        &hub,
        "SELECT consumer, outcome FROM audit WHERE action = 'report_read' ORDER BY seq",
    )
    .await;
    assert!(audited.contains(&vec![json!("ioc_tinh"), json!("ok")]));
    assert!(audited.contains(&vec![json!("phong_tnmt"), json!("denied")]));
    // Consumers other than the office do not see the run history in SQL.
    let tnmt = hub.authenticate(&tokens["phong_tnmt"]).unwrap();
    assert!(
        hub.sql_as(&tnmt, "SELECT count(*) FROM runs")
            .await
            .is_err()
    );
    let office = hub.authenticate(&tokens["ioc_admin"]).unwrap();
    let result = hub
        .sql_as(&office, "SELECT count(*) FROM runs")
        .await
        .unwrap();
    assert_eq!(result.row_count, 1);
}

/// A citizen report of April 2025 that reaches the hub after the month was reported.
fn late_april_report() -> Value {
    json!([crate::common::citizen_report(
        "BPT-2025-LATE01",
        "2025-04-21T09:00:00+07:00",
        "Xã Tân Lập"
    )])
}

/// The published records of the provincial IOC's report share, as (period, revision, document).
async fn province_reports(
    hub: &Hub,
    tokens: &BTreeMap<String, String>,
) -> Vec<(String, i64, Value)> {
    let province = hub.authenticate(&tokens["ioc_tinh"]).unwrap();
    let page = hub
        .feed_read(&province, "share.ioc_reports_ioc_tinh", 0, 100)
        .await
        .unwrap();
    page.events
        .iter()
        .map(|e| {
            let event: Value = serde_json::from_str(&e.json).unwrap();
            let data = &event["data"];
            let document: Value =
                serde_json::from_str(data["document"].as_str().expect("document as JSON text"))
                    .unwrap();
            (
                data["period"].as_str().unwrap().to_string(),
                data["revision"].as_i64().unwrap(),
                document,
            )
        })
        .collect()
}

#[tokio::test]
async fn ended_reports_reach_the_province_on_its_feed_and_late_data_makes_a_revision() {
    let data = tempfile::tempdir().unwrap();
    let overrides = Overrides {
        data_dir: Some(data.path().to_path_buf()),
        ..Default::default()
    };
    let config = config::load(&repo().join("config.toml"), &overrides).unwrap();
    let tokens: BTreeMap<String, String> = config
        .generated_tokens
        .iter()
        .map(|t| (t.consumer.clone(), t.token.clone()))
        .collect();
    // 2 May 2025, 07:00 in Bình Phước: the scheduled fire after April ended.
    let clock = crate::common::ManualClock::new("2025-05-02T00:00:00Z");
    let hub = Hub::open_with_clock(config, clock.clone()).await.unwrap();
    hub.run_all("test").await;

    let first = hub.generate_ended_reports("ioc_operation").await.unwrap();
    let first: Vec<String> = first.iter().map(|p| p.to_string()).collect();
    assert_eq!(first, ["2025-04", "2025-Q1", "2024-H2", "2024"]);
    let published = province_reports(&hub, &tokens).await;
    let mut periods: Vec<(String, i64)> =
        published.iter().map(|(p, r, _)| (p.clone(), *r)).collect();
    periods.sort();
    assert_eq!(
        periods,
        [("2024", 0), ("2024-H2", 0), ("2025-04", 0), ("2025-Q1", 0)]
            .map(|(p, r)| (p.to_string(), r))
    );
    // What the province receives is the stored document itself.
    let april = Period::parse("2025-04").unwrap();
    let stored = hub.report("ioc_operation", &april, false).await.unwrap();
    let (_, _, sent) = published.iter().find(|(p, _, _)| p == "2025-04").unwrap();
    assert_eq!(sent, &serde_json::to_value(&stored).unwrap());
    let received = |doc: &Value| -> i64 {
        let section = doc["sections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["title"] == "Phản ánh hiện trường theo lĩnh vực")
            .expect("the citizen-report section");
        let columns: Vec<&str> = section["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        let at = columns.iter().position(|c| *c == "received").unwrap();
        section["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[at].as_i64().unwrap_or(0))
            .sum()
    };
    let received_before = received(sent);

    // The next day's fire with nothing new: nothing is generated again for the feed.
    clock.advance(chrono::Duration::days(1));
    assert!(
        hub.generate_ended_reports("ioc_operation")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(province_reports(&hub, &tokens).await.len(), 4);

    // A report of 21 April arrives late: the next fire revises April, and only April.
    let publisher = hub.authenticate(&tokens["phan_anh"]).unwrap();
    let late = hub
        .publish(
            &publisher,
            "citizen_reports",
            "application/json",
            late_april_report().to_string().as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(late.accepted, 1, "{late:?}");
    clock.advance(chrono::Duration::days(1));
    let revised = hub.generate_ended_reports("ioc_operation").await.unwrap();
    assert_eq!(
        revised.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        ["2025-04"]
    );
    let published = province_reports(&hub, &tokens).await;
    assert_eq!(published.len(), 5, "one more change: April's revision");
    let (period, revision, document) = published.last().unwrap();
    assert_eq!((period.as_str(), *revision), ("2025-04", 1));
    assert_eq!(received(document), received_before + 1);
    let stored = hub.report("ioc_operation", &april, false).await.unwrap();
    assert_eq!(stored.revision, 1);
    let html = report::render(&stored, Format::Html).unwrap();
    let html = String::from_utf8(html).unwrap();
    assert!(
        html.contains("Bản điều chỉnh lần 1"),
        "the revision is said on the page"
    );

    // An agency without the grant sees no report dataset at all.
    let agency = hub.authenticate(&tokens["phong_tnmt"]).unwrap();
    assert!(hub.feed_read(&agency, "ioc_reports", 0, 10).await.is_err());
}

#[tokio::test]
async fn a_report_that_cannot_be_published_is_not_stored_so_it_is_tried_again() {
    let t = crate::common::TestHub::new();
    // The receiving dataset wants a field the report record does not have.
    let mut schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schemas/ioc_reports.schema.json")).unwrap(),
    )
    .unwrap();
    schema["required"]
        .as_array_mut()
        .unwrap()
        .push(json!("signed_by"));
    schema["properties"]["signed_by"] = json!({"type": "string"});
    t.write("schemas/out.schema.json", schema.to_string());
    t.write(
        "pipelines/out.toml",
        "name = \"out\"\ntitle = \"Báo cáo\"\nsector = \"ioc\"\nschema = \"../schemas/out.schema.json\"\n\
         key = [\"report\", \"period\"]\nsharing = \"default\"\n\n[source]\nkind = \"push\"\n",
    );
    t.write(
        "reports/r.toml",
        "name = \"r\"\ntitle = \"Báo cáo thử\"\npublish_to = \"out\"\n\n\
         [[sections]]\ntitle = \"Một\"\nsql = \"SELECT 1 AS x\"\n",
    );
    let clock = crate::common::ManualClock::new("2025-05-02T00:00:00Z");
    let hub = t.open_with_clock(clock).await;
    let april = Period::parse("2025-04").unwrap();

    let err = hub.generate_report("r", &april).await.unwrap_err();
    assert!(
        err.to_string().contains("does not fit dataset \"out\""),
        "{err}"
    );
    assert!(
        iochub::report::ReportStore::new(&hub.config.data_dir)
            .load("r", &april)
            .unwrap()
            .is_none(),
        "nothing stored, so the next fire generates and publishes again"
    );
    // The refused record is kept, with its reason, like any reject.
    let kept = crate::common::rows(
        &hub,
        "SELECT raw, errors FROM quarantine WHERE dataset = 'out'",
    )
    .await;
    assert_eq!(kept.len(), 1);
    assert!(
        kept[0][0]
            .as_str()
            .unwrap()
            .contains("\"period\":\"2025-04\"")
    );
    assert!(kept[0][1].as_str().unwrap().contains("signed_by"));
}

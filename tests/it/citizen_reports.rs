//! The shipped `citizen_reports` pipeline on the samples, record by record: routing, the
//! 3-working-day deadline, Article 7 flags, `sla_status`, the overdue views and watch.
//! Every expectation is derived by hand from `samples/feedback.jsonl`, the units' rectangles in
//! `samples/communes.geojson` and the calendar (`samples/README.md`), not by the code.

use std::collections::BTreeMap;
use std::path::Path;

use iochub::config::{self, Overrides};
use serde_json::Value;

use crate::common::rows;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Line of `feedback.jsonl` → its unit by hand. Lines 1–48 (and 55–58, 61–63) by their
/// point's rectangle; 54 by the reported name "xa tan loi"; 52, 53, 59, 60 to the office
/// (a point in the Đồng Xoài gap, no point and an unknown name, swapped, (0,0)).
const UNIT_OF_LINE: &[(&str, &[u32])] = &[
    ("25363", &[1, 12, 23, 34, 45]),
    ("25366", &[2, 13, 24, 35, 46, 50]),
    ("25369", &[3, 14, 25, 36, 47, 51]),
    ("25372", &[4, 15, 26, 37, 48]),
    ("25375", &[5, 16, 27, 38]),
    ("25378", &[17, 28, 39, 54, 63]),
    ("25381", &[7, 18, 29, 40, 55, 62]),
    ("25384", &[8, 19, 30, 41, 49, 61]),
    ("25387", &[9, 20, 31, 42, 56]),
    ("25390", &[10, 21, 32, 43, 57]),
    ("25393", &[11, 22, 33, 44, 58]),
    ("VP_HDND_UBND", &[52, 53, 59, 60]),
];

fn id_of_line(line: u32) -> String {
    // Line n holds report 1000 + n - 1; line 63 repeats line 6's id (…1005) and wins.
    let n = if line == 63 { 1005 } else { 999 + line };
    format!("BPT-2025-00{n}")
}

#[tokio::test]
async fn reports_are_routed_given_deadlines_flagged_and_tracked() {
    let data = tempfile::tempdir().unwrap();
    let overrides = Overrides {
        data_dir: Some(data.path().to_path_buf()),
        ..Default::default()
    };
    let config = config::load(&repo().join("config.toml"), &overrides).unwrap();
    let hub = iochub::Hub::open(config).await.unwrap();
    let report = hub.run("citizen_reports", "test").await.unwrap();
    assert_eq!(
        (report.accepted, report.rejected),
        (63, 0),
        "never quarantined"
    );

    let stored: BTreeMap<String, Vec<Value>> = rows(
        &hub,
        "SELECT service_request_id, assigned_unit_code, routing_method, \
                CAST(due_at AS VARCHAR), \
                sla_status, article7_valid, validity_notes, routing_note, assigned_unit_name \
         FROM citizen_reports",
    )
    .await
    .into_iter()
    .map(|r| (r[0].as_str().unwrap().to_string(), r))
    .collect();
    assert_eq!(stored.len(), 62);

    for (unit, lines) in UNIT_OF_LINE {
        for line in *lines {
            let row = &stored[&id_of_line(*line)];
            assert_eq!(row[1], *unit, "line {line}");
            let method = match *line {
                54 => "reported_name",
                52 | 53 | 59 | 60 => "fallback",
                _ => "coordinates",
            };
            assert_eq!(row[2], method, "line {line}");
        }
    }
    let office = &stored[&id_of_line(60)];
    assert_eq!(office[8], "Văn phòng HĐND và UBND huyện Đồng Phú");
    let note = office[7].as_str().unwrap();
    assert!(
        note.contains("(0, 0)"),
        "the handling unit is told why: {note}"
    );

    // Deadlines (local end of day), by hand from the calendar: the holiday vectors of lines
    // 1–7 (line 6's id is line 63's report now), and the coerced times of lines 55 and 56.
    for (line, due) in [
        (1, "2025-04-09"),  // Thu 3/4: Fri 4, (Hùng Vương 5–7/4), Tue 8, Wed 9
        (2, "2025-04-29"),  // Fri 25/4: make-up Sat 26, Mon 28, Tue 29
        (3, "2025-05-05"),  // Sat 26/4 (make-up): Mon 28, Tue 29, (30/4–4/5), Mon 5
        (4, "2025-05-07"),  // Tue 29/4: (30/4–4/5), Mon 5, Tue 6, Wed 7
        (5, "2025-05-07"),  // Sat 3/5, inside the block: Mon 5, Tue 6, Wed 7
        (7, "2025-06-04"),  // Fri 30/5 23:50: Mon 2, Tue 3, Wed 4
        (63, "2025-06-11"), // Fri 6/6: Mon 9, Tue 10, Wed 11
        (55, "2025-05-14"), // "09/05/2025 09:00" (Fri): Mon 12, Tue 13, Wed 14
        (56, "2025-05-08"), // "2025-05-05T10:00:00" read as local (Mon): Tue 6, Wed 7, Thu 8
    ] {
        // The end of that day in Việt Nam (23:59:59.999999 +07:00), stored in UTC.
        assert_eq!(
            stored[&id_of_line(line)][3],
            format!("{due}T16:59:59.999999Z"),
            "line {line}"
        );
    }

    // Article 7 and format flags of the deliberately bad lines; the warning case stays valid.
    for (line, valid, note) in [
        (49, false, "Thiếu số điện thoại người phản ánh"),
        (
            50,
            false,
            "Số điện thoại người phản ánh không đúng định dạng",
        ),
        (51, false, "Thiếu họ tên người phản ánh"),
        (55, true, "Thời điểm gửi dạng ngày/tháng/năm giờ:phút"),
        (56, true, "Thời điểm gửi không có múi giờ"),
        (57, false, "Nội dung không phải tiếng Việt"),
        (58, true, "Cảnh báo: nội dung tiếng Việt không dấu"),
        (61, false, "Lĩnh vực ABC không thuộc 7 lĩnh vực quy định"),
        (62, true, "Thời điểm cập nhật sớm hơn thời điểm gửi"),
    ] {
        let row = &stored[&id_of_line(line)];
        assert_eq!(row[5], valid, "line {line}");
        assert!(
            row[6].as_str().unwrap().contains(note),
            "line {line}: {:?}",
            row[6]
        );
    }
    let clean = &stored[&id_of_line(1)];
    assert_eq!(
        (clean[5].clone(), clean[6].clone()),
        (Value::Bool(true), Value::from(""))
    );
    // The flags never repeat personal data.
    let everything = serde_json::to_string(&stored).unwrap();
    assert!(
        !everything.contains("09123"),
        "a phone number in a flag column"
    );

    // sla_status: answered ones by their answer time against the deadline (line 2 answered
    // 28/4 01:40, due 29/4: on time); every open report is past its 2025 deadline today.
    assert_eq!(stored[&id_of_line(2)][4], "answered_on_time");
    let open = stored.values().filter(|r| r[4] == "open_overdue").count();
    assert_eq!(open, 37, "the 37 reports still open in the samples");

    // The overdue views, per unit (open lines of each unit above).
    let by_unit: BTreeMap<String, i64> = rows(
        &hub,
        "SELECT assigned_unit_code, overdue FROM citizen_reports_overdue_by_unit",
    )
    .await
    .into_iter()
    .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_i64().unwrap()))
    .collect();
    let expected: BTreeMap<String, i64> = [
        ("25363", 4), // 1, 12, 23, 34
        ("25366", 2), // 35, 50
        ("25369", 3), // 14, 47, 51
        ("25372", 1), // 15
        ("25375", 1), // 38
        ("25378", 4), // 17, 28, 54, 63
        ("25381", 4), // 7, 29, 55, 62
        ("25384", 5), // 8, 30, 41, 49, 61
        ("25387", 3), // 31, 42, 56
        ("25390", 3), // 10, 32, 57
        ("25393", 3), // 22, 33, 58
        ("VP_HDND_UBND", 4),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(by_unit, expected);
    let listed = rows(&hub, "SELECT count(*) FROM citizen_reports_overdue").await;
    assert_eq!(listed[0][0], 37);

    // The watch's metric matches the view.
    let watch = iochub::overdue::Watch::new(hub.config.file.overdue.clone().unwrap()).unwrap();
    let check = watch.check(&hub).await.unwrap();
    assert_eq!(check.by_unit.get("25384"), Some(&5));
    assert!(
        hub.metrics
            .encode()
            .contains("iochub_overdue{unit=\"VP_HDND_UBND\"} 4")
    );
}

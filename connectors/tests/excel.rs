//! The `excel` connector against real workbooks: `.xlsx` files written here with
//! rust_xlsxwriter, and a small `.xls` made once with xlwt (`fixtures/make_xls.py`).

use std::path::{Path, PathBuf};

use futures::StreamExt;
use iochub_connectors::{
    BuildContext, Connector, ConnectorError, Payload, RawBatch, ReadContext, SourceConfig,
    SourceEvent,
};
use rust_xlsxwriter::{ExcelDateTime, Format, Formula, Workbook, Worksheet};
use serde_json::{Value, json};

fn connector(dir: &Path, settings: Value) -> Box<dyn Connector> {
    let config = SourceConfig::deserialize("excel", settings)
        .expect("settings deserialize")
        .expect("excel is a known kind");
    assert_eq!(config.validate(), Vec::<String>::new());
    config
        .build(&BuildContext {
            base_dir: dir.to_path_buf(),
            state_dir: dir.join("state"),
        })
        .expect("connector builds")
}

struct Run {
    batches: Vec<RawBatch>,
    checkpoint: Option<Value>,
}

impl Run {
    fn records(&self) -> Vec<(&str, &Payload)> {
        self.batches
            .iter()
            .flat_map(|b| b.records.iter())
            .map(|r| (r.location.as_str(), &r.payload))
            .collect()
    }

    /// The `Text` records as JSON objects (panics on any other payload).
    fn rows(&self) -> Vec<Value> {
        self.records()
            .into_iter()
            .map(|(location, p)| match p {
                Payload::Text(map) => Value::Object(map.clone()),
                other => panic!("{location}: expected a text record, got {other:?}"),
            })
            .collect()
    }
}

async fn run(c: &dyn Connector, checkpoint: Option<Value>) -> Result<Run, ConnectorError> {
    let mut stream = c.read(ReadContext {
        checkpoint,
        cursor: None,
    });
    let mut batches = Vec::new();
    let mut checkpoint = None;
    while let Some(event) = stream.next().await {
        match event? {
            SourceEvent::Batch(b) => {
                assert!(checkpoint.is_none(), "the checkpoint must come last");
                batches.push(b);
            }
            SourceEvent::Checkpoint(c) => {
                assert!(checkpoint.is_none(), "at most one checkpoint");
                checkpoint = Some(c);
            }
        }
    }
    Ok(Run {
        batches,
        checkpoint,
    })
}

fn write_row(ws: &mut Worksheet, row: u32, cells: &[&str]) {
    for (col, text) in cells.iter().enumerate() {
        if !text.is_empty() {
            ws.write_string(row, col as u16, *text).unwrap();
        }
    }
}

fn save(book: &mut Workbook, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    book.save(&path).unwrap();
    path
}

/// Two sheets: notes first, the table second.
fn two_sheet_workbook(dir: &Path) {
    let mut book = Workbook::new();
    let notes = book.add_worksheet();
    notes.set_name("Ghi chú").unwrap();
    write_row(notes, 0, &["Nội dung"]);
    write_row(notes, 1, &["Số liệu tháng 4"]);
    let ws = book.add_worksheet();
    ws.set_name("Hồ sơ").unwrap();
    write_row(ws, 0, &["Mã hồ sơ", "Người nộp"]);
    write_row(ws, 1, &["HS-001", "Nguyễn Văn An"]);
    write_row(ws, 2, &["HS-002", "Trần Thị Bình"]);
    save(&mut book, dir, "ho_so.xlsx");
}

#[tokio::test]
async fn sheet_by_name_by_index_and_first_by_default() {
    let dir = tempfile::tempdir().unwrap();
    two_sheet_workbook(dir.path());
    let expected = vec![
        json!({"Mã hồ sơ": "HS-001", "Người nộp": "Nguyễn Văn An"}),
        json!({"Mã hồ sơ": "HS-002", "Người nộp": "Trần Thị Bình"}),
    ];

    let by_name = connector(dir.path(), json!({"path": "*.xlsx", "sheet": "Hồ sơ"}));
    let got = run(by_name.as_ref(), None).await.unwrap();
    assert_eq!(got.rows(), expected);
    assert_eq!(got.records()[0].0, "sheet \"Hồ sơ\" row 2");

    let by_index = connector(dir.path(), json!({"path": "*.xlsx", "sheet_index": 2}));
    assert_eq!(run(by_index.as_ref(), None).await.unwrap().rows(), expected);

    let first = connector(dir.path(), json!({"path": "*.xlsx"}));
    assert_eq!(
        run(first.as_ref(), None).await.unwrap().rows(),
        vec![json!({"Nội dung": "Số liệu tháng 4"})]
    );

    let missing = connector(dir.path(), json!({"path": "*.xlsx", "sheet": "Không có"}));
    let err = run(missing.as_ref(), None).await.err().unwrap().to_string();
    assert!(err.contains("ho_so.xlsx"), "{err}");
    assert!(err.contains("no sheet \"Không có\""), "{err}");
    assert!(err.contains("\"Ghi chú\", \"Hồ sơ\""), "{err}");

    let past_end = connector(dir.path(), json!({"path": "*.xlsx", "sheet_index": 3}));
    let err = run(past_end.as_ref(), None)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no sheet number 3"), "{err}");
}

#[tokio::test]
async fn header_row_below_a_title() {
    let dir = tempfile::tempdir().unwrap();
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    ws.merge_range(
        0,
        0,
        0,
        2,
        "BÁO CÁO TIẾP NHẬN HỒ SƠ QUÝ I/2025",
        &Format::new(),
    )
    .unwrap();
    write_row(ws, 1, &["Đơn vị: UBND xã Tân Lập"]);
    write_row(ws, 2, &["Xã", "Số hồ sơ", "Ghi chú"]);
    write_row(ws, 3, &["Tân Lập"]);
    ws.write_number(3, 1, 41.0).unwrap();
    write_row(ws, 4, &["Tân Tiến", "", "đúng hạn"]);
    ws.write_number(4, 1, 17.0).unwrap();
    save(&mut book, dir.path(), "bao_cao.xlsx");

    let c = connector(dir.path(), json!({"path": "bao_cao.xlsx", "header_row": 3}));
    let got = run(c.as_ref(), None).await.unwrap();
    assert_eq!(
        got.rows(),
        vec![
            json!({"Xã": "Tân Lập", "Số hồ sơ": "41"}),
            json!({"Xã": "Tân Tiến", "Số hồ sơ": "17", "Ghi chú": "đúng hạn"}),
        ]
    );
    let locations: Vec<_> = got.records().iter().map(|r| r.0.to_string()).collect();
    assert_eq!(
        locations,
        ["sheet \"Sheet1\" row 4", "sheet \"Sheet1\" row 5"]
    );

    // first_data_row skips a units row under the header; columns narrows the table.
    let c = connector(
        dir.path(),
        json!({"path": "bao_cao.xlsx", "header_row": 3, "first_data_row": 5, "columns": "A:B"}),
    );
    assert_eq!(
        run(c.as_ref(), None).await.unwrap().rows(),
        vec![json!({"Xã": "Tân Tiến", "Số hồ sơ": "17"})]
    );
}

/// The one-stop-shop layout: "Tiếp nhận" merged over "Trực tuyến" | "Trực tiếp", and
/// "STT" / "Lĩnh vực" merged down over both header rows.
fn two_row_header_workbook(dir: &Path) {
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    ws.set_name("Tổng hợp").unwrap();
    let merged = Format::new();
    ws.merge_range(0, 0, 1, 0, "STT", &merged).unwrap();
    ws.merge_range(0, 1, 1, 1, "Lĩnh vực", &merged).unwrap();
    ws.merge_range(0, 2, 0, 3, "Tiếp nhận", &merged).unwrap();
    write_row(ws, 1, &["", "", "Trực tuyến", "Trực tiếp"]);
    ws.write_number(2, 0, 1.0).unwrap();
    ws.write_string(2, 1, "Đất đai").unwrap();
    ws.write_number(2, 2, 120.0).unwrap();
    ws.write_number(2, 3, 35.0).unwrap();
    save(&mut book, dir, "tong_hop.xlsx");
}

#[tokio::test]
async fn two_row_merged_header_gives_joined_names() {
    let dir = tempfile::tempdir().unwrap();
    two_row_header_workbook(dir.path());
    let c = connector(
        dir.path(),
        json!({"path": "tong_hop.xlsx", "header_rows": 2}),
    );
    assert_eq!(
        run(c.as_ref(), None).await.unwrap().rows(),
        vec![json!({
            "STT": "1",
            "Lĩnh vực": "Đất đai",
            "Tiếp nhận / Trực tuyến": "120",
            "Tiếp nhận / Trực tiếp": "35",
        })]
    );

    // rename maps the joined texts to SQL-friendly names; keys are matched as NFC text.
    let c = connector(
        dir.path(),
        json!({
            "path": "tong_hop.xlsx",
            "header_rows": 2,
            "rename": {
                "STT": "stt",
                "Lĩnh vực": "linh_vuc",
                "Tiếp nhận / Trực tuyến": "tiep_nhan_truc_tuyen",
                "Tiếp nhận /   Trực tiếp": "tiep_nhan_truc_tiep",
            }
        }),
    );
    assert_eq!(
        run(c.as_ref(), None).await.unwrap().rows(),
        vec![json!({
            "stt": "1",
            "linh_vuc": "Đất đai",
            "tiep_nhan_truc_tuyen": "120",
            "tiep_nhan_truc_tiep": "35",
        })]
    );
}

#[tokio::test]
async fn vertically_merged_header_fills_down() {
    let dir = tempfile::tempdir().unwrap();
    two_row_header_workbook(dir.path());
    // Only the lower header row is the header: "STT" and "Lĩnh vực" live in row 1, merged
    // down into row 2, and must fill down to it.
    let c = connector(
        dir.path(),
        json!({"path": "tong_hop.xlsx", "header_row": 2}),
    );
    assert_eq!(
        run(c.as_ref(), None).await.unwrap().rows(),
        vec![json!({"STT": "1", "Lĩnh vực": "Đất đai", "Trực tuyến": "120", "Trực tiếp": "35"})]
    );
}

#[tokio::test]
async fn duplicate_and_empty_header_names_are_made_unique() {
    let dir = tempfile::tempdir().unwrap();
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    write_row(ws, 0, &["Tên", "", "Tên", "  Số\nđiện thoại "]);
    write_row(ws, 1, &["An", "x", "Bình", "0912345678"]);
    save(&mut book, dir.path(), "trung.xlsx");
    let c = connector(dir.path(), json!({"path": "trung.xlsx"}));
    assert_eq!(
        run(c.as_ref(), None).await.unwrap().rows(),
        vec![json!({"Tên": "An", "column_2": "x", "Tên_2": "Bình", "Số điện thoại": "0912345678"})]
    );
}

#[tokio::test]
async fn excel_dates_become_iso_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    let day = Format::new().set_num_format("dd/mm/yyyy");
    let stamp = Format::new().set_num_format("dd/mm/yyyy hh:mm");
    let clock = Format::new().set_num_format("hh:mm");
    write_row(ws, 0, &["Ngày nhận", "Lúc", "Giờ", "Ngày (số)", "Năm 1900"]);
    // A number cell formatted as a date: serial 45748 is 2025-04-01.
    ws.write_number_with_format(1, 0, 45748.0, &day).unwrap();
    let at = ExcelDateTime::from_ymd(2025, 4, 1)
        .unwrap()
        .and_hms(8, 30, 0)
        .unwrap();
    ws.write_datetime_with_format(1, 1, &at, &stamp).unwrap();
    ws.write_number_with_format(1, 2, 0.75, &clock).unwrap();
    // Not marked as a date in the workbook: stays a number.
    ws.write_number(1, 3, 45748.0).unwrap();
    // Serial 61 is 1900-03-01: the phantom 1900-02-29 (serial 60) is counted.
    ws.write_number_with_format(1, 4, 61.0, &day).unwrap();
    save(&mut book, dir.path(), "ngay.xlsx");

    let c = connector(dir.path(), json!({"path": "ngay.xlsx"}));
    assert_eq!(
        run(c.as_ref(), None).await.unwrap().rows(),
        vec![json!({
            "Ngày nhận": "2025-04-01",
            "Lúc": "2025-04-01T08:30:00+07:00",
            "Giờ": "18:00:00",
            "Ngày (số)": "45748",
            "Năm 1900": "1900-03-01",
        })]
    );

    let c = connector(
        dir.path(),
        json!({"path": "ngay.xlsx", "time_zone": "+00:00"}),
    );
    let rows = run(c.as_ref(), None).await.unwrap().rows();
    assert_eq!(rows[0]["Lúc"], "2025-04-01T08:30:00+00:00");
}

#[tokio::test]
async fn numbers_and_booleans_without_float_noise() {
    let dir = tempfile::tempdir().unwrap();
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    write_row(ws, 0, &["a", "b", "c", "d", "e", "f"]);
    ws.write_number(1, 0, 12.0).unwrap();
    ws.write_number(1, 1, 0.1).unwrap();
    // A formula whose stored result carries binary noise past Excel's 15 digits.
    ws.write_formula(
        1,
        2,
        Formula::new("=0.1+0.2").set_result("0.30000000000000004"),
    )
    .unwrap();
    ws.write_number(1, 3, -1234567.25).unwrap();
    ws.write_boolean(1, 4, true).unwrap();
    ws.write_number(1, 5, 1e15).unwrap();
    save(&mut book, dir.path(), "so.xlsx");
    let c = connector(dir.path(), json!({"path": "so.xlsx"}));
    assert_eq!(
        run(c.as_ref(), None).await.unwrap().rows(),
        vec![json!({
            "a": "12", "b": "0.1", "c": "0.3", "d": "-1234567.25", "e": "true",
            "f": "1000000000000000",
        })]
    );
}

#[tokio::test]
async fn vietnamese_text_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let composed = "Trường Tiểu học Nguyễn Bỉnh Khiêm, phường Đồng Xoài";
    // The same letters decomposed (base letter + combining marks), as some systems type them.
    let decomposed = "Tie\u{302}\u{301}p nha\u{323}\u{302}n";
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    // A decomposed header still matches its composed rename key.
    write_row(ws, 0, &["Tên đơn vị", "Ghi chu\u{301}"]);
    write_row(ws, 1, &[composed, decomposed]);
    write_row(ws, 2, &["  có khoảng trắng  ", "Ả Ấ Ầ Ẩ Ẫ Ậ ư ơ đ Đ"]);
    save(&mut book, dir.path(), "tieng_viet.xlsx");
    let c = connector(
        dir.path(),
        json!({"path": "tieng_viet.xlsx", "rename": {"Ghi chú": "ghi_chu"}}),
    );
    let rows = run(c.as_ref(), None).await.unwrap().rows();
    assert_eq!(
        rows[0]["Tên đơn vị"].as_str().unwrap().as_bytes(),
        composed.as_bytes()
    );
    assert_eq!(
        rows[0]["ghi_chu"].as_str().unwrap().as_bytes(),
        decomposed.as_bytes()
    );
    assert_eq!(rows[1]["Tên đơn vị"], "  có khoảng trắng  ");
    assert_eq!(rows[1]["ghi_chu"], "Ả Ấ Ầ Ẩ Ẫ Ậ ư ơ đ Đ");
}

fn table_with_totals(dir: &Path) {
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    write_row(ws, 0, &["Xã", "Số hộ"]);
    write_row(ws, 1, &["Tân Lập", "120"]);
    write_row(ws, 2, &["Tân Tiến", "98"]);
    // Row 4 is left blank (a cell with only spaces counts as blank too: row 5).
    write_row(ws, 4, &["   "]);
    write_row(ws, 5, &["Tổng cộng", "218"]);
    write_row(ws, 7, &["Người lập biểu: Lê Văn C"]);
    save(&mut book, dir, "tong.xlsx");
}

#[tokio::test]
async fn blank_row_ends_the_table() {
    let dir = tempfile::tempdir().unwrap();
    table_with_totals(dir.path());
    let c = connector(dir.path(), json!({"path": "tong.xlsx"}));
    assert_eq!(
        run(c.as_ref(), None).await.unwrap().rows(),
        vec![
            json!({"Xã": "Tân Lập", "Số hộ": "120"}),
            json!({"Xã": "Tân Tiến", "Số hộ": "98"}),
        ]
    );

    // Without the stop, blank rows are skipped and what is under them is read.
    let c = connector(
        dir.path(),
        json!({"path": "tong.xlsx", "stop_at_blank_row": false}),
    );
    let got = run(c.as_ref(), None).await.unwrap();
    assert_eq!(got.rows().len(), 4);
    assert_eq!(got.records()[2].0, "sheet \"Sheet1\" row 6");

    // last_data_row ends the table too.
    let c = connector(
        dir.path(),
        json!({"path": "tong.xlsx", "stop_at_blank_row": false, "last_data_row": 2}),
    );
    assert_eq!(
        run(c.as_ref(), None).await.unwrap().rows(),
        vec![json!({"Xã": "Tân Lập", "Số hộ": "120"})]
    );
}

#[tokio::test]
async fn error_cell_makes_the_row_unreadable_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    ws.set_name("Tỉ lệ").unwrap();
    write_row(ws, 0, &["Xã", "Đạt", "Tổng", "Tỉ lệ"]);
    write_row(ws, 1, &["Tân Lập"]);
    ws.write_number(1, 1, 9.0).unwrap();
    ws.write_number(1, 2, 10.0).unwrap();
    ws.write_number(1, 3, 0.9).unwrap();
    write_row(ws, 2, &["Tân Tiến"]);
    ws.write_number(2, 1, 0.0).unwrap();
    ws.write_number(2, 2, 0.0).unwrap();
    ws.write_formula(2, 3, Formula::new("=B3/C3").set_result("#DIV/0!"))
        .unwrap();
    write_row(ws, 3, &["Tân Hòa"]);
    ws.write_number(3, 1, 5.0).unwrap();
    save(&mut book, dir.path(), "ti_le.xlsx");

    let c = connector(dir.path(), json!({"path": "ti_le.xlsx"}));
    let got = run(c.as_ref(), None).await.unwrap();
    let records = got.records();
    assert_eq!(records.len(), 3, "the bad row is kept, not dropped");
    assert!(matches!(records[0].1, Payload::Text(_)));
    assert!(matches!(records[2].1, Payload::Text(_)));
    let (location, payload) = records[1];
    assert_eq!(location, "sheet \"Tỉ lệ\" row 3");
    let Payload::Unreadable { raw, error } = payload else {
        panic!("expected an unreadable record, got {payload:?}");
    };
    assert!(error.contains("D3") && error.contains("#DIV/0!"), "{error}");
    assert!(error.contains("Tỉ lệ"), "{error}");
    let raw: Value = serde_json::from_str(raw).unwrap();
    assert_eq!(
        raw,
        json!({"Xã": "Tân Tiến", "Đạt": "0", "Tổng": "0", "Tỉ lệ": "#DIV/0!"})
    );
}

#[tokio::test]
async fn a_file_is_taken_once_and_again_after_replacement() {
    let dir = tempfile::tempdir().unwrap();
    two_sheet_workbook(dir.path());
    // Never taken: a workbook still being written, and a dotfile (LibreOffice's lock file).
    std::fs::copy(
        dir.path().join("ho_so.xlsx"),
        dir.path().join("moi.xlsx.tmp"),
    )
    .unwrap();
    std::fs::write(dir.path().join(".~lock.ho_so.xlsx#"), b"lock").unwrap();
    // Excel's owner file beside a workbook a clerk has open: matches *.xlsx, is no workbook.
    std::fs::write(dir.path().join("~$ho_so.xlsx"), b"\x0bNguyen Van A").unwrap();
    let c = connector(dir.path(), json!({"path": "*", "sheet": "Hồ sơ"}));

    let first = run(c.as_ref(), None).await.unwrap();
    assert_eq!(first.rows().len(), 2);
    assert_eq!(first.batches.len(), 1);
    assert!(first.batches[0].source.ends_with("ho_so.xlsx"));
    let checkpoint = first.checkpoint.clone().expect("a checkpoint");

    let again = run(c.as_ref(), Some(checkpoint.clone())).await.unwrap();
    assert!(
        again.batches.is_empty(),
        "an unchanged file is not read again"
    );
    assert!(again.checkpoint.is_some());

    // The department sends a corrected workbook under the same name.
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    ws.set_name("Hồ sơ").unwrap();
    write_row(ws, 0, &["Mã hồ sơ", "Người nộp"]);
    write_row(ws, 1, &["HS-001", "Nguyễn Văn An"]);
    write_row(ws, 2, &["HS-002", "Trần Thị Bình"]);
    write_row(ws, 3, &["HS-003", "Phạm Minh Châu"]);
    save(&mut book, dir.path(), "ho_so.xlsx");
    let replaced = run(c.as_ref(), Some(checkpoint)).await.unwrap();
    assert_eq!(replaced.rows().len(), 3);
    assert_eq!(replaced.rows()[2]["Người nộp"], "Phạm Minh Châu");
}

#[tokio::test]
async fn settle_seconds_waits_for_a_fresh_file() {
    let dir = tempfile::tempdir().unwrap();
    two_sheet_workbook(dir.path());
    let c = connector(
        dir.path(),
        json!({"path": "*.xlsx", "sheet": "Hồ sơ", "settle_seconds": 3600}),
    );
    let got = run(c.as_ref(), None).await.unwrap();
    assert!(
        got.batches.is_empty(),
        "a file changed just now is not taken yet"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_workbook_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bao_cao.xlsx"), "Xã,Số hộ\nTân Lập,120\n").unwrap();
    let c = connector(dir.path(), json!({"path": "bao_cao.xlsx"}));
    let err = run(c.as_ref(), None).await.err().expect("the run fails");
    assert!(matches!(err, ConnectorError::Workbook { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("bao_cao.xlsx"), "{text}");
    assert!(text.contains("not an Excel workbook"), "{text}");
    assert!(text.contains("CSV"), "{text}");

    // A web page saved with an .xls name, as some portals export.
    std::fs::write(
        dir.path().join("xuat.xls"),
        "<html><body><table><tr><td>1</td></tr></table></body></html>",
    )
    .unwrap();
    let c = connector(dir.path(), json!({"path": "xuat.xls"}));
    let text = run(c.as_ref(), None).await.err().unwrap().to_string();
    assert!(text.contains("xuat.xls") && text.contains("HTML"), "{text}");

    // A damaged zip: the container is right, the content is not.
    std::fs::write(dir.path().join("hong.xlsx"), b"PK\x03\x04 not really a zip").unwrap();
    let c = connector(dir.path(), json!({"path": "hong.xlsx"}));
    let text = run(c.as_ref(), None).await.err().unwrap().to_string();
    assert!(
        text.contains("hong.xlsx") && text.contains(".xlsx"),
        "{text}"
    );

    // A failed run yields no checkpoint: the file is not marked taken.
    let c = connector(dir.path(), json!({"path": "bao_cao.xlsx"}));
    let mut stream = c.read(ReadContext::default());
    let mut saw_checkpoint = false;
    while let Some(event) = stream.next().await {
        if let Ok(SourceEvent::Checkpoint(_)) = event {
            saw_checkpoint = true;
        }
    }
    assert!(!saw_checkpoint);
}

#[tokio::test]
async fn a_sheet_without_header_text_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    write_row(ws, 0, &["Tiêu đề"]);
    save(&mut book, dir.path(), "trong.xlsx");
    let c = connector(dir.path(), json!({"path": "trong.xlsx", "header_row": 3}));
    let text = run(c.as_ref(), None).await.err().unwrap().to_string();
    assert!(
        text.contains("trong.xlsx") && text.contains("no header text in row 3"),
        "{text}"
    );
}

#[tokio::test]
async fn a_large_sheet_comes_in_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    write_row(ws, 0, &["Mã", "Số tiền", "Ghi chú"]);
    for i in 1..=20_000u32 {
        ws.write_string(i, 0, format!("HS-{i:05}")).unwrap();
        ws.write_number(i, 1, f64::from(i) * 1.5).unwrap();
        ws.write_string(i, 2, "đã xử lý").unwrap();
    }
    save(&mut book, dir.path(), "lon.xlsx");
    let c = connector(dir.path(), json!({"path": "lon.xlsx", "batch_size": 1000}));
    let got = run(c.as_ref(), None).await.unwrap();
    assert_eq!(got.batches.len(), 20);
    assert!(got.batches.iter().all(|b| b.records.len() == 1000));
    assert!(got.batches.iter().all(|b| b.bytes > 0));
    let records = got.records();
    assert_eq!(records.len(), 20_000);
    assert_eq!(records[19_999].0, "sheet \"Sheet1\" row 20001");
    let rows = got.rows();
    assert_eq!(rows[19_999]["Mã"], "HS-20000");
    assert_eq!(rows[19_999]["Số tiền"], "30000");
    assert_eq!(rows[0]["Số tiền"], "1.5");
}

#[tokio::test]
async fn xls_with_merged_two_row_header() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/truong_hoc.xls");
    std::fs::copy(&fixture, dir.path().join("truong_hoc.xls")).unwrap();
    let c = connector(
        dir.path(),
        json!({
            "path": "*.xls",
            "sheet": "Trường học",
            "header_row": 2,
            "header_rows": 2,
            "rename": {"Số học sinh / Nữ": "hoc_sinh_nu"},
        }),
    );
    let got = run(c.as_ref(), None).await.unwrap();
    assert_eq!(
        got.rows(),
        vec![
            json!({
                "STT": "1", "Tên trường": "Trường Tiểu học Tân Phú", "Số học sinh / Nam": "312",
                "hoc_sinh_nu": "298", "Ngày báo cáo": "2025-04-01",
            }),
            json!({
                "STT": "2", "Tên trường": "Trường THCS Đồng Xoài", "Số học sinh / Nam": "450",
                "hoc_sinh_nu": "433.5", "Ngày báo cáo": "2025-04-02",
            }),
        ]
    );
    assert_eq!(got.records()[0].0, "sheet \"Trường học\" row 4");

    // By index, and with the lower header row only (the merged cells fill down).
    let c = connector(
        dir.path(),
        json!({"path": "*.xls", "sheet_index": 2, "header_row": 3}),
    );
    let rows = run(c.as_ref(), None).await.unwrap().rows();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["Tên trường"], "Trường Tiểu học Tân Phú");
    assert_eq!(rows[0]["Nữ"], "298");
}

#[test]
fn settings_are_checked_before_reading() {
    let problems = |settings: Value| {
        SourceConfig::deserialize("excel", settings)
            .unwrap()
            .unwrap()
            .validate()
    };
    assert!(iochub_connectors::KINDS.contains(&"excel"));
    assert_eq!(problems(json!({"path": "a.xlsx"})), Vec::<String>::new());
    let all = problems(json!({
        "path": "[",
        "sheet": "A",
        "sheet_index": 0,
        "header_row": 0,
        "columns": "1:H",
        "time_zone": "Asia/Ho_Chi_Minh",
        "batch_size": 0,
        "rename": {"Xã": "xa", "Phường": "xa"},
    }))
    .join("\n");
    for expected in [
        "not a valid glob",
        "not both",
        "sheet_index counts from 1",
        "header_row counts from 1",
        "columns \"1:H\"",
        "time_zone",
        "batch_size",
        "gives the name \"xa\"",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    let inside = problems(json!({"path": "a.xlsx", "header_rows": 2, "first_data_row": 2}));
    assert!(inside[0].contains("inside the header"), "{inside:?}");
    let above = problems(json!({"path": "a.xlsx", "first_data_row": 5, "last_data_row": 4}));
    assert!(above[0].contains("above the first data row"), "{above:?}");
}

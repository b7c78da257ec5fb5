//! The shipped default config on the shipped samples: what lands, what is quarantined and why.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iochub::Hub;
use iochub::config::{self, Overrides};
use serde_json::Value;

use crate::common::{count, rows};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped `config.toml` with its data in `data_dir`.
async fn shipped_hub(data_dir: &Path) -> std::sync::Arc<Hub> {
    let overrides = Overrides {
        data_dir: Some(data_dir.to_path_buf()),
        ..Default::default()
    };
    let config = config::load(&repo().join("config.toml"), &overrides).unwrap();
    Hub::open(config).await.unwrap()
}

#[tokio::test]
async fn sample_bad_records_end_up_in_quarantine_with_reasons() {
    let data = tempfile::tempdir().unwrap();
    let hub = shipped_hub(data.path()).await;
    let reports = hub.run_all("test").await;
    assert_eq!(reports.len(), 7);
    assert!(reports.iter().all(|r| r.error.is_none()), "{reports:#?}");

    let quarantined = rows(&hub, "SELECT dataset, location, errors FROM quarantine").await;
    let mut by_dataset: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &quarantined {
        let errors: Value = serde_json::from_str(r[2].as_str().unwrap()).unwrap();
        assert!(
            errors
                .as_array()
                .is_some_and(|e| !e.is_empty() && e.iter().all(|x| x["message"].is_string())),
            "every quarantined record says why: {r:?}"
        );
        by_dataset
            .entry(r[0].as_str().unwrap().to_string())
            .or_default()
            .push(r[1].as_str().unwrap().to_string());
    }
    for locations in by_dataset.values_mut() {
        locations.sort_by_key(|l| {
            l.split(['/', ' '])
                .filter_map(|n| n.parse::<u32>().ok())
                .next_back()
        });
    }
    let expected: BTreeMap<String, Vec<String>> = [
        // Rows 34 and 38 break the balance check (38 also repeats 2025-01/DP-KTHT).
        (
            "dossier_stats",
            vec![
                "row 34", "row 35", "row 36", "row 37", "row 38", "row 39", "row 40",
            ],
        ),
        (
            "health_facilities",
            vec!["/entry/16", "/entry/17", "/entry/18"],
        ),
        (
            "health_aggregates",
            vec!["row 28", "row 29", "row 30", "row 31"],
        ),
        // Row 23: more girls than pupils (a check); row 26 repeats a school id: the last wins.
        (
            "schools",
            vec!["row 23", "row 24", "row 25", "row 27", "row 28"],
        ),
        ("cameras", vec!["/cameras/17", "/cameras/18", "/cameras/19"]),
        // Line 45 ends before it starts (a check); 46 is stored without its sub_label.
        (
            "camera_events",
            vec![
                "line 43", "line 44", "line 45", "line 47", "line 48", "line 49",
            ],
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(by_dataset, expected);

    // Camera events are flattened by the pipeline's transform, one row per event; the
    // face-recognition name of line 46 (biometric data) is stored nowhere.
    assert_eq!(count(&hub, "SELECT count(*) FROM camera_events").await, 16);
    let everything = rows(&hub, "SELECT * FROM camera_events").await;
    let text = serde_json::to_string(&everything).unwrap();
    assert!(
        !text.contains("Tèo") && !text.contains("sub_label"),
        "biometric data stored: {text}"
    );
    let columns = rows(
        &hub,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'camera_events'",
    )
    .await;
    assert!(
        columns
            .iter()
            .all(|c| c[0] != "payload" && c[0] != "sub_label"),
        "{columns:?}"
    );
    let started = rows(&hub, "SELECT CAST(started_at AS VARCHAR) FROM camera_events WHERE event_id = '1748820655.498219-77kt4z'").await;
    assert!(
        started[0][0]
            .as_str()
            .is_some_and(|t| t.starts_with("2025-06-01T23:30:55")),
        "epoch seconds became a timestamp: {started:?}"
    );
    assert_eq!(
        count(
            &hub,
            "SELECT count(*) FROM camera_events WHERE ended_at >= started_at"
        )
        .await,
        11
    );
    // Citizen reports are never quarantined for content; line 63 repeats line 6's id.
    assert_eq!(
        count(&hub, "SELECT count(*) FROM citizen_reports").await,
        62
    );
    assert_eq!(
        count(&hub, "SELECT count(*) FROM schools").await,
        22,
        "23 accepted, one duplicate id"
    );
    let unbalanced = rows(
        &hub,
        "SELECT errors FROM quarantine WHERE dataset = 'dossier_stats' AND location = 'row 34'",
    )
    .await;
    assert!(
        unbalanced[0][0]
            .as_str()
            .unwrap()
            .contains("Số hồ sơ không cân đối"),
        "{unbalanced:?}"
    );
    let truncated = rows(
        &hub,
        "SELECT errors FROM quarantine WHERE dataset = 'camera_events' AND location = 'line 47'",
    )
    .await;
    assert!(truncated[0][0].as_str().unwrap().contains("not valid JSON"));
}

/// The README's first command, as a user runs it: `iochub serve` on the default config.
#[test]
fn serve_on_the_default_config_ingests_and_answers_sql() {
    let data = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_iochub"))
        .current_dir(repo())
        .args(["serve", "--data-dir"])
        .arg(data.path())
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--pg-addr", "127.0.0.1:0"])
        .env("IOCHUB_TOKEN_IOC_ADMIN", crate::common::ADMIN)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start iochub serve");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcome = runtime.block_on(async {
        let client = crate::common::admin_client();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if Instant::now() > deadline {
                return Err("no data after 60 s".to_string());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let Ok(response) = client
                .post(format!("http://127.0.0.1:{port}/api/v1/sql"))
                .json(&serde_json::json!({"sql": "SELECT (SELECT count(*) FROM citizen_reports) + (SELECT count(*) FROM schools) AS n"}))
                .send()
                .await
            else {
                continue;
            };
            let body: Value = response.json().await.map_err(|e| e.to_string())?;
            if body["rows"][0][0].as_i64() == Some(62 + 22) {
                return Ok(());
            }
        }
    });
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    outcome.unwrap();
    // Consumers whose token variable is unset get a random token, printed once.
    let printed = String::from_utf8_lossy(&output.stderr);
    assert!(
        printed.contains("token for consumer mot_cua (IOCHUB_TOKEN_MOT_CUA is unset"),
        "{printed}"
    );
    assert!(
        !printed.contains("token for consumer ioc_admin"),
        "a set variable is used, not replaced"
    );
}

#[tokio::test]
async fn the_pre_approved_grant_of_the_shipped_config_works_until_its_end_date() {
    let data = tempfile::tempdir().unwrap();
    let overrides = Overrides {
        data_dir: Some(data.path().to_path_buf()),
        ..Default::default()
    };
    let config = config::load(&repo().join("config.toml"), &overrides).unwrap();
    let clock = crate::common::ManualClock::new("2026-06-01T02:00:00Z");
    let hub = Hub::open_with_clock(config, clock.clone()).await.unwrap();
    hub.run("cameras", "test").await.unwrap();
    let province = hub.config.consumers.get("ioc_tinh").unwrap().clone();
    let agency = hub.config.consumers.get("phong_tnmt").unwrap().clone();
    let count = "SELECT count(*) FROM share.cameras_ioc_tinh";
    let rows = hub.sql_as(&province, count).await.unwrap();
    assert_eq!(
        iochub::query::to_json(&rows).unwrap()["rows"],
        serde_json::json!([[16]])
    );
    assert!(
        hub.sql_as(&province, "SELECT stream_url FROM share.cameras_ioc_tinh")
            .await
            .is_err(),
        "only the granted columns"
    );
    assert!(
        hub.sql_as(&province, "SELECT count(*) FROM cameras")
            .await
            .is_err(),
        "the dataset itself stays special"
    );
    assert!(
        hub.sql_as(&agency, count).await.is_err(),
        "another consumer does not see it"
    );
    clock.advance(chrono::Duration::days(600)); // past 2027-12-31
    assert!(
        hub.sql_as(&province, count).await.is_err(),
        "it stops working after its end date"
    );
}

#[tokio::test]
async fn calendar_functions_answer_in_sql_with_the_shipped_calendar() {
    let data = tempfile::tempdir().unwrap();
    let hub = shipped_hub(data.path()).await;
    let got = rows(
        &hub,
        "SELECT CAST(add_working_days(DATE '2025-04-03', 3) AS VARCHAR), \
                working_days_between(DATE '2025-04-29', DATE '2025-05-07'), \
                is_working_day(DATE '2025-04-26'), is_working_day(DATE '2026-02-16'), \
                add_working_days(TIMESTAMP '2026-02-12T02:00:00Z', 3)",
    )
    .await;
    assert_eq!(
        got[0],
        vec![
            Value::from("2025-04-09"),
            Value::from(3),
            Value::from(true),
            Value::from(false),
            // Tết 14–22/2/2026: due at the end of Tuesday 24/2, local time (16:59:59.999999 UTC).
            Value::from("2026-02-24T16:59:59.999999Z"),
        ]
    );
    let wrong = hub.sql("SELECT add_working_days('soon', 3)").await;
    assert!(wrong.is_err(), "a text argument is refused at planning");
}

#[tokio::test]
async fn the_deadline_rule_comes_from_the_config() {
    // The shipped config with the other rule: the receipt day counts, and the deadline falls
    // at the receipt's time of day.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("config.toml"))
        .unwrap()
        .replace(
            "[calendar]\nfile = \"calendar/holidays_vn.toml\"",
            &format!(
                "[calendar]\nfile = {:?}",
                repo().join("calendar/holidays_vn.toml")
            ),
        )
        .replace("receipt_day_counts = false", "receipt_day_counts = true")
        .replace(
            "deadline_ends = \"end_of_day\"",
            "deadline_ends = \"same_time\"",
        )
        .replace(
            "pipelines_dir = \"pipelines\"",
            &format!("pipelines_dir = {:?}", repo().join("pipelines")),
        )
        .replace(
            "dir = \"reports\"",
            &format!("dir = {:?}", repo().join("reports")),
        )
        .replace(
            "units_geojson = \"samples/communes.geojson\"",
            &format!(
                "units_geojson = {:?}",
                repo().join("samples/communes.geojson")
            ),
        )
        .replace(
            "grants_dir = \"grants\"",
            &format!("grants_dir = {:?}", repo().join("grants")),
        );
    assert!(text.contains("receipt_day_counts = true") && text.contains("\"same_time\""));
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let overrides = Overrides {
        data_dir: Some(dir.path().join("data")),
        ..Default::default()
    };
    let config = config::load(&path, &overrides).unwrap_or_else(|e| panic!("{e}"));
    let hub = Hub::open(config).await.unwrap();
    let got = rows(
        &hub,
        // Thu 3/4/2025 09:15 +07:00: Thu 3 (counted), Fri 4, Tue 8, at 09:15 local.
        "SELECT CAST(add_working_days(TIMESTAMP '2025-04-03T02:15:00Z', 3) AS VARCHAR)",
    )
    .await;
    assert_eq!(got[0][0], Value::from("2025-04-08T02:15:00Z"));
}

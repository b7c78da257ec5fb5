//! `iochub demo`'s sources: the shipped config with the demo's `[source]` overlay, pulling the
//! samples over the network (MQTT broker on 127.0.0.1:1883, FHIR and Open311 served locally)
//! must store what the file-based pipelines store.

use std::path::Path;
use std::sync::Arc;

use iochub::Hub;
use iochub::config::{self, Overrides};

use crate::common::{count, rows};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The shipped config with `overlay` (a sources file's text) in force.
async fn hub_with_sources(data: &Path, overlay: &str) -> Arc<Hub> {
    let overlay_path = data.join("sources.toml");
    std::fs::write(&overlay_path, overlay).unwrap();
    let overrides = Overrides {
        data_dir: Some(data.join("data")),
        sources_overlay: Some(overlay_path),
        ..Default::default()
    };
    let config = config::load(&repo().join("config.toml"), &overrides)
        .unwrap_or_else(|e| panic!("the overlay loads: {e}"));
    Hub::open(config).await.unwrap()
}

#[tokio::test]
async fn camera_events_over_mqtt_match_the_file_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("{}/frigate/events", unique("iochub-it"));
    let overlay = format!(
        "[camera_events]\nkind = \"mqtt\"\ntopic = {topic:?}\nclient_id = {:?}\nidle_ms = 500\n",
        unique("iochub-it")
    );
    let hub = hub_with_sources(dir.path(), &overlay).await;
    assert_eq!(
        hub.config
            .pipelines
            .iter()
            .find(|p| p.name == "camera_events")
            .unwrap()
            .source_kind,
        "mqtt"
    );

    // The first run makes the broker session; what is published after it waits there.
    let first = hub.run("camera_events", "test").await.unwrap();
    assert_eq!((first.fetched, first.error.clone()), (0, None));
    let published = iochub::demo::mqtt::publish_camera_events(
        &repo().join("samples"),
        "127.0.0.1",
        1883,
        &topic,
    )
    .await
    .unwrap();
    assert_eq!(published, 50);
    let second = hub.run("camera_events", "test").await.unwrap();
    assert_eq!(second.error, None);
    assert_eq!((second.fetched, second.rejected), (50, 6));

    // The same rows as the file-based pipeline stores (see samples.rs), and the same bad
    // lines quarantined, now located by message number on the topic.
    assert_eq!(count(&hub, "SELECT count(*) FROM camera_events").await, 16);
    let locations: Vec<String> = rows(
        &hub,
        "SELECT location FROM quarantine WHERE dataset = 'camera_events' ORDER BY location",
    )
    .await
    .into_iter()
    .map(|r| r[0].as_str().unwrap().to_string())
    .collect();
    let expected: Vec<String> = [43, 44, 45, 47, 48, 49]
        .iter()
        .map(|n| format!("message {n} on {topic}"))
        .collect();
    assert_eq!(locations, expected);
    let everything =
        serde_json::to_string(&rows(&hub, "SELECT * FROM camera_events").await).unwrap();
    assert!(!everything.contains("Tèo"), "biometric data stored");
    assert_eq!(
        count(
            &hub,
            &format!("SELECT count(*) FROM camera_events WHERE topic = '{topic}'")
        )
        .await,
        16
    );

    // Committed: the next run has nothing new and stores nothing twice.
    let third = hub.run("camera_events", "test").await.unwrap();
    assert_eq!((third.fetched, third.error), (0, None));
    assert_eq!(
        count(
            &hub,
            "SELECT count(*) FROM quarantine WHERE dataset = 'camera_events'"
        )
        .await,
        6
    );
}

#[tokio::test]
async fn an_overlay_naming_no_pipeline_is_a_config_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sources.toml");
    std::fs::write(&path, "[no_such_dataset]\nkind = \"mqtt\"\ntopic = \"x\"\n\n[camera_events]\nkind = \"mqtt\"\ntopic = \"x\"\nbogus = 1\n").unwrap();
    let overrides = Overrides {
        data_dir: Some(dir.path().join("data")),
        sources_overlay: Some(path),
        ..Default::default()
    };
    let problems = config::load(&repo().join("config.toml"), &overrides)
        .expect_err("refused")
        .to_string();
    assert!(
        problems.contains("no pipeline is named \"no_such_dataset\""),
        "{problems}"
    );
    assert!(
        problems.contains("sources.toml:8: unknown key `camera_events.bogus`"),
        "{problems}"
    );
    assert!(
        problems.contains("sources.toml:1: no pipeline is named"),
        "{problems}"
    );
    assert_eq!(
        problems.matches("no pipeline is named").count(),
        1,
        "{problems}"
    );
}

#[tokio::test]
async fn health_facilities_over_fhir_and_reports_over_open311() {
    let dir = tempfile::tempdir().unwrap();
    let data = iochub::demo::DemoData::load(&repo().join("samples")).unwrap();
    let (addr, _server) = iochub::demo::serve("127.0.0.1:0".parse().unwrap(), data)
        .await
        .unwrap();
    // The shipped demo sources, pointed at this test's port.
    let shipped = std::fs::read_to_string(repo().join("demo/sources.toml")).unwrap();
    let overlay = shipped.replace("127.0.0.1:8090", &addr.to_string());
    let hub = hub_with_sources(dir.path(), &overlay).await;

    let reports = hub.run("citizen_reports", "test").await.unwrap();
    assert_eq!(reports.error, None);
    // 63 reports; line 63 repeats line 6's id, so it updates that report.
    assert_eq!(
        count(&hub, "SELECT count(*) FROM citizen_reports").await,
        62
    );
    let sources = rows(&hub, "SELECT DISTINCT _source FROM citizen_reports").await;
    assert!(
        sources
            .iter()
            .all(|s| s[0].as_str().unwrap().contains("/open311/requests.json?")),
        "{sources:?}"
    );
    let again = hub.run("citizen_reports", "test").await.unwrap();
    assert_eq!(again.error, None);
    // From the newest updated_datetime stored on (2025-06-19T19:59+07:00, one report): the
    // window starts there, so that one report comes again and nothing older.
    assert_eq!(reports.fetched, 63);
    assert_eq!(
        again.fetched, 1,
        "the second run asks only from the checkpoint"
    );

    let facilities = hub.run("health_facilities", "test").await.unwrap();
    assert_eq!(facilities.error, None);
    // 18 Locations in the sample; the 3 bad ones (entries 16-18 of the file) are quarantined.
    assert_eq!((facilities.fetched, facilities.rejected), (18, 3));
    assert_eq!(
        count(&hub, "SELECT count(*) FROM health_facilities").await,
        15
    );
    let urls = rows(
        &hub,
        "SELECT \"fullUrl\" FROM health_facilities ORDER BY 1 LIMIT 1",
    )
    .await;
    assert!(
        urls[0][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("http://{addr}/fhir/Location/")),
        "{urls:?}"
    );
    let second = hub.run("health_facilities", "test").await.unwrap();
    assert_eq!(
        (second.fetched, second.error),
        (0, None),
        "nothing changed since"
    );
}

//! The `mqtt` connector against the Mosquitto broker on 127.0.0.1:1883.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use iochub_connectors::{
    BuildContext, ConnectorError, Payload, RawRecord, ReadContext, SourceConfig, SourceEvent,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::{Value, json};

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn connector_config(topic: &str, client_id: &str, port: u16) -> SourceConfig {
    let settings: toml::Value = toml::from_str(&format!(
        "topic = {topic:?}\nclient_id = {client_id:?}\nport = {port}\n\
         idle_ms = 400\nconnect_timeout_seconds = 3\nbatch_size = 2\n"
    ))
    .unwrap();
    SourceConfig::deserialize("mqtt", settings)
        .unwrap()
        .unwrap()
}

fn build(config: &SourceConfig, state: &Path) -> Box<dyn iochub_connectors::Connector> {
    config
        .build(&BuildContext {
            base_dir: state.to_path_buf(),
            state_dir: state.join("camera_events"),
        })
        .unwrap()
}

struct Read {
    records: Vec<RawRecord>,
    batch_sizes: Vec<usize>,
    checkpoint: Option<Value>,
}

async fn read(
    config: &SourceConfig,
    state: &Path,
    checkpoint: Option<Value>,
) -> Result<Read, ConnectorError> {
    let mut stream = build(config, state).read(ReadContext {
        checkpoint,
        cursor: None,
    });
    let mut out = Read {
        records: Vec::new(),
        batch_sizes: Vec::new(),
        checkpoint: None,
    };
    while let Some(event) = stream.next().await {
        match event? {
            SourceEvent::Batch(b) => {
                assert!(b.source.starts_with("mqtt://127.0.0.1:"), "{}", b.source);
                out.batch_sizes.push(b.records.len());
                out.records.extend(b.records);
            }
            SourceEvent::Checkpoint(c) => {
                assert!(out.checkpoint.is_none(), "one checkpoint, last");
                out.checkpoint = Some(c);
            }
        }
    }
    Ok(out)
}

/// Publishes with QoS 1 and waits for the broker's acknowledgements.
async fn publish(topic: &str, payloads: &[Vec<u8>]) {
    let mut options = MqttOptions::new(unique("pub"), "127.0.0.1", 1883);
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    for p in payloads {
        client
            .publish(topic, QoS::AtLeastOnce, false, p.clone())
            .await
            .unwrap();
    }
    let mut acked = 0;
    tokio::time::timeout(Duration::from_secs(10), async {
        while acked < payloads.len() {
            if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.unwrap() {
                acked += 1;
            }
        }
        client.disconnect().await.unwrap();
        while !matches!(
            eventloop.poll().await,
            Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)
        ) {}
    })
    .await
    .expect("the broker acknowledged every publish");
}

fn event(id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"type": "new", "after": {"id": id, "camera": "dp_cho_tan_phu", "label": "người đi bộ"}}))
        .unwrap()
}

fn ids(records: &[RawRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| match &r.payload {
            Payload::Json(v) => v["payload"]["after"]["id"].as_str().unwrap().to_string(),
            other => panic!("not JSON: {other:?}"),
        })
        .collect()
}

/// The spool's segment files (its lock file aside).
fn spool_segments(state: &Path) -> usize {
    std::fs::read_dir(state.join("camera_events/mqtt-spool"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "jsonl")
        })
        .count()
}

#[tokio::test]
async fn events_published_while_away_arrive_and_stay_spooled_until_committed() {
    let state = tempfile::tempdir().unwrap();
    let topic = unique("iochub-test/frigate/events");
    let config = connector_config(&topic, &unique("iochub-test"), 1883);

    // First run: the session and its subscription are made; nothing is there yet.
    let first = read(&config, state.path(), None).await.unwrap();
    assert!(first.records.is_empty());
    assert_eq!(first.checkpoint, None);

    // The hub is away: the broker keeps these for its persistent session.
    publish(&topic, &[event("e1"), event("e2"), event("e3")]).await;

    let second = read(&config, state.path(), None).await.unwrap();
    assert_eq!(ids(&second.records), ["e1", "e2", "e3"]);
    assert_eq!(second.batch_sizes, [2, 1], "bounded batches");
    assert_eq!(second.checkpoint, Some(json!({"seq": 3})));
    let Payload::Json(envelope) = &second.records[0].payload else {
        unreachable!()
    };
    assert_eq!(envelope["topic"], json!(topic));
    assert_eq!(envelope["payload"]["after"]["label"], json!("người đi bộ"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(envelope["received_at"].as_str().unwrap()).is_ok()
    );
    assert_eq!(second.records[0].location, format!("message 1 on {topic}"));

    // The run that read them never committed (the hub crashed): the broker was acknowledged,
    // but the spool still has them, so the next run yields them again.
    let retried = read(&config, state.path(), None).await.unwrap();
    assert_eq!(ids(&retried.records), ["e1", "e2", "e3"]);

    // Committed up to 3: they leave the spool; new events get the next numbers.
    publish(&topic, &[event("e4")]).await;
    let third = read(&config, state.path(), Some(json!({"seq": 3})))
        .await
        .unwrap();
    assert_eq!(ids(&third.records), ["e4"]);
    assert_eq!(third.checkpoint, Some(json!({"seq": 4})));
    let segments = spool_segments(state.path());
    assert_eq!(segments, 1, "the committed segments were removed");

    let idle = read(&config, state.path(), Some(json!({"seq": 4})))
        .await
        .unwrap();
    assert!(idle.records.is_empty());
    assert_eq!(idle.checkpoint, None);
    let segments = spool_segments(state.path());
    assert_eq!(segments, 0, "nothing left once all is committed");
}

#[tokio::test]
async fn a_message_that_is_not_json_is_kept_for_quarantine() {
    let state = tempfile::tempdir().unwrap();
    let topic = unique("iochub-test/garbage");
    let config = connector_config(&topic, &unique("iochub-test"), 1883);
    read(&config, state.path(), None).await.unwrap();
    publish(
        &topic,
        &[b"{not json".to_vec(), vec![0xff, 0xfe], event("ok")],
    )
    .await;
    let out = read(&config, state.path(), None).await.unwrap();
    assert_eq!(out.records.len(), 3);
    match &out.records[0].payload {
        Payload::Unreadable { raw, error } => {
            assert_eq!(raw, "{not json");
            assert!(error.contains("not JSON"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    match &out.records[1].payload {
        Payload::Unreadable { raw, error } => {
            assert_eq!(raw, "//4=");
            assert!(error.contains("base64"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ids(&out.records[2..]), ["ok"]);
}

#[tokio::test]
async fn a_broker_that_is_down_is_a_transient_error() {
    let state = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = connector_config("t", &unique("iochub-test"), port);
    let error = match read(&config, state.path(), None).await {
        Err(e) => e,
        Ok(_) => panic!("read from a closed port"),
    };
    assert!(error.is_transient(), "{error}");
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
}

#[test]
fn settings_are_checked() {
    let settings: toml::Value =
        toml::from_str("topic = \"\"\npassword_env = \"X\"\nbatch_size = 0").unwrap();
    let config = SourceConfig::deserialize("mqtt", settings)
        .unwrap()
        .unwrap();
    let problems = config.validate().join("; ");
    assert!(problems.contains("topic must not be empty"), "{problems}");
    assert!(
        problems.contains("password_env needs a username"),
        "{problems}"
    );
    assert!(problems.contains("batch_size"), "{problems}");
}

#[tokio::test]
async fn an_oversized_message_is_quarantined_and_the_next_ones_still_arrive() {
    let state = tempfile::tempdir().unwrap();
    let topic = unique("iochub-test/big");
    let settings: toml::Value = toml::from_str(&format!(
        "topic = {topic:?}\nclient_id = {:?}\nidle_ms = 400\nmax_payload_bytes = 1000\n",
        unique("iochub-test")
    ))
    .unwrap();
    let config = SourceConfig::deserialize("mqtt", settings)
        .unwrap()
        .unwrap();
    read(&config, state.path(), None).await.unwrap();
    publish(&topic, &[vec![b'x'; 5000], event("after-the-big-one")]).await;
    let out = read(&config, state.path(), None).await.unwrap();
    assert_eq!(out.records.len(), 2);
    match &out.records[0].payload {
        Payload::Unreadable { error, .. } => {
            assert!(error.contains("5000 bytes"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ids(&out.records[1..]), ["after-the-big-one"]);
    // Acknowledged: the broker does not send it again.
    let next = read(&config, state.path(), Some(json!({"seq": 2})))
        .await
        .unwrap();
    assert!(next.records.is_empty());
}

//! What the connector tests share: building a connector from settings, reading it to the end,
//! and a local HTTP server.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::net::SocketAddr;
use std::path::PathBuf;

use futures::StreamExt;
use iochub_connectors::{
    BuildContext, Connector, ConnectorError, Payload, ReadContext, SourceConfig, SourceEvent,
};
use serde_json::Value;

/// The repository's sample data (the same files as the shared samples).
pub fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../samples")
        .join(name)
}

/// Builds connector `kind` from settings given as JSON (the hub gives TOML; both go through
/// the same `Deserialize`).
pub fn connector(kind: &str, settings: Value) -> Box<dyn Connector> {
    let config = SourceConfig::deserialize(kind, settings)
        .expect("settings deserialize")
        .expect("kind is known");
    let problems = config.validate();
    assert!(problems.is_empty(), "settings problems: {problems:?}");
    config
        .build(&BuildContext {
            base_dir: PathBuf::from("."),
            state_dir: std::env::temp_dir().join("iochub-connector-tests"),
        })
        .expect("connector builds")
}

/// One batch as the hub would see it.
#[derive(Debug)]
pub struct Batch {
    pub source: String,
    pub records: Vec<Value>,
    pub locations: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub batches: Vec<Batch>,
    pub checkpoint: Option<Value>,
}

impl Outcome {
    pub fn records(&self) -> Vec<&Value> {
        self.batches.iter().flat_map(|b| &b.records).collect()
    }

    /// The values of `field` in all records, in order.
    pub fn strings(&self, field: &str) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| r[field].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// Reads the connector to the end; unreadable records become `{"unreadable": error}`.
pub async fn read(
    connector: &dyn Connector,
    checkpoint: Option<Value>,
    cursor: Option<Value>,
) -> Result<Outcome, ConnectorError> {
    let mut stream = connector.read(ReadContext { checkpoint, cursor });
    let mut outcome = Outcome::default();
    while let Some(event) = stream.next().await {
        match event? {
            SourceEvent::Batch(batch) => {
                assert!(
                    outcome.checkpoint.is_none(),
                    "a batch came after the checkpoint"
                );
                let mut records = Vec::new();
                let mut locations = Vec::new();
                for r in batch.records {
                    locations.push(r.location);
                    records.push(match r.payload {
                        Payload::Json(v) => v,
                        Payload::JsonText(t) => serde_json::from_str(&t).unwrap_or_else(
                            |e| serde_json::json!({ "unreadable": format!("not valid JSON: {e}") }),
                        ),
                        Payload::Text(m) => Value::Object(m),
                        Payload::Unreadable { error, .. } => {
                            serde_json::json!({ "unreadable": error })
                        }
                    });
                }
                outcome.batches.push(Batch {
                    source: batch.source.to_string(),
                    records,
                    locations,
                });
            }
            SourceEvent::Checkpoint(c) => {
                assert!(outcome.checkpoint.is_none(), "two checkpoints");
                outcome.checkpoint = Some(c);
            }
        }
    }
    Ok(outcome)
}

/// Serves `app` on 127.0.0.1 at a free port, for the rest of the test.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("test server");
    });
    addr
}

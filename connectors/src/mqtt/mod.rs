//! `mqtt`: events from an MQTT broker topic (Frigate NVR's `frigate/events`, sensors).
//!
//! Each run connects with a persistent session (clean session off, a fixed client id) and QoS 1,
//! so the broker keeps what is published while the hub is away (between runs, or down) and
//! hands it over at the next connect. The run drains what the broker has until the topic has
//! been quiet for `idle_ms`, writes every message to the durable spool (`spool.rs`) and only
//! then acknowledges it, disconnects, and yields everything in the spool that no committed run
//! has stored yet. The checkpoint is the spool sequence of the last message yielded; a message
//! leaves the spool only after the hub committed it (to the table or to quarantine).

mod spool;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::record::{Payload, RawBatch, RawRecord, ReadContext, SourceEvent, SourceStream};
use crate::registry::BuildContext;
use crate::{Connector, ConnectorError};
use spool::{Spool, SpooledMessage};

#[derive(Debug, Clone, Deserialize)]
pub struct MqttConfig {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// A topic filter (`frigate/events`, `sensors/+/state`).
    pub topic: String,
    /// The session's name at the broker; the broker keeps messages for it while the hub is
    /// away. Default: `iochub-<pipeline>`. Two hubs must not share one.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the password (never the password itself).
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_seconds: u64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u64,
    /// A drain ends when no message came for this long.
    #[serde(default = "default_idle_ms")]
    pub idle_ms: u64,
    /// ... or after this long in all (a busy topic never goes quiet).
    #[serde(default = "default_max_drain")]
    pub max_drain_seconds: u64,
    /// ... or after this many messages.
    #[serde(default = "default_max_messages")]
    pub max_messages: usize,
    /// Larger messages are not kept: each becomes an unreadable record (its size and topic)
    /// for the quarantine, acknowledged like any other.
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: usize,
    /// Wrap each message as `{topic, received_at, payload}` (true), or use the payload alone.
    #[serde(default = "default_true")]
    pub envelope: bool,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    1883
}
fn default_keep_alive() -> u64 {
    30
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_idle_ms() -> u64 {
    1000
}
fn default_max_drain() -> u64 {
    30
}
fn default_max_messages() -> usize {
    100_000
}
fn default_max_payload() -> usize {
    1024 * 1024
}
fn default_true() -> bool {
    true
}
fn default_batch_size() -> usize {
    4096
}

impl MqttConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.topic.is_empty() {
            problems.push("topic must not be empty".into());
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 128)
        {
            problems.push("client_id must be 1 to 128 characters".into());
        }
        if self.password_env.is_some() && self.username.is_none() {
            problems.push("password_env needs a username".into());
        }
        if self.keep_alive_seconds < 5 {
            problems.push("keep_alive_seconds must be at least 5".into());
        }
        if self.idle_ms == 0 || self.max_drain_seconds == 0 || self.max_messages == 0 {
            problems.push("idle_ms, max_drain_seconds and max_messages must be at least 1".into());
        }
        if self.batch_size == 0 {
            problems.push("batch_size must be at least 1".into());
        }
        problems
    }

    pub fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Connector>, ConnectorError> {
        let problems = self.validate();
        if !problems.is_empty() {
            return Err(ConnectorError::Config(problems.join("; ")));
        }
        let pipeline = ctx
            .state_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pipeline".into());
        let password = match &self.password_env {
            None => None,
            Some(var) => {
                Some(std::env::var(var).map_err(|_| ConnectorError::MissingEnv(var.to_string()))?)
            }
        };
        Ok(Box::new(MqttConnector {
            inner: Arc::new(Inner {
                client_id: self
                    .client_id
                    .clone()
                    .unwrap_or_else(|| format!("iochub-{pipeline}")),
                spool_dir: ctx.state_dir.join("mqtt-spool"),
                password,
                config: self.clone(),
            }),
        }))
    }
}

struct Inner {
    config: MqttConfig,
    client_id: String,
    spool_dir: PathBuf,
    password: Option<String>,
}

struct MqttConnector {
    inner: Arc<Inner>,
}

impl Connector for MqttConnector {
    fn read(&self, context: ReadContext) -> SourceStream {
        let inner = self.inner.clone();
        async_stream::try_stream! {
            let committed = committed_seq(context.checkpoint.as_ref());
            let dir = inner.spool_dir.clone();
            let mut spool = blocking(move || Spool::open(&dir, committed)).await?;
            let writer = spool.writer(spool.next_seq(committed))?;
            let (closed, failed) = drain(&inner, writer).await?;
            spool.add_segment(closed);
            let segments = spool.pending_segments(committed);
            if let Some(error) = failed {
                // What is already spooled is safe and acknowledged: store it rather than let
                // a broker problem hold it back. With nothing to store, the run fails.
                if segments.is_empty() {
                    Err(error)?;
                } else {
                    tracing::warn!(client_id = %inner.client_id, error = %error, "the MQTT broker failed during the drain; storing what is spooled");
                }
            }
            let (tx, mut rx) = mpsc::channel(2);
            let batch_size = inner.config.batch_size;
            let envelope = inner.config.envelope;
            let source: Arc<str> = format!(
                "mqtt://{}:{}/{}", inner.config.host, inner.config.port, inner.config.topic
            ).into();
            tokio::task::spawn_blocking(move || {
                read_pending(&segments, committed, batch_size, envelope, &tx)
            });
            let mut last = committed;
            while let Some(item) = rx.recv().await {
                let (records, bytes, batch_last) = item?;
                last = batch_last;
                yield SourceEvent::Batch(RawBatch { source: source.clone(), records, bytes });
            }
            if last > committed {
                yield SourceEvent::Checkpoint(json!({ "seq": last }));
            }
        }
        .boxed()
    }
}

fn committed_seq(checkpoint: Option<&Value>) -> u64 {
    checkpoint
        .and_then(|c| c.get("seq"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConnectorError> + Send + 'static,
) -> Result<T, ConnectorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConnectorError::Config(format!("spool task failed: {e}")))?
}

type PendingBatch = Result<(Vec<RawRecord>, u64, u64), ConnectorError>;

/// Streams the spooled messages after `committed` as record batches (on a blocking thread).
fn read_pending(
    segments: &[PathBuf],
    committed: u64,
    batch_size: usize,
    envelope: bool,
    tx: &mpsc::Sender<PendingBatch>,
) {
    let mut records = Vec::with_capacity(batch_size.min(4096));
    let mut bytes = 0u64;
    let mut last = committed;
    for path in segments {
        let messages = match spool::read_segment(path) {
            Ok(m) => m,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        for message in messages {
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            if message.seq <= committed {
                continue;
            }
            last = message.seq;
            bytes += message.text.as_ref().map_or(0, String::len) as u64;
            records.push(to_record(message, envelope));
            if records.len() >= batch_size {
                let full = std::mem::replace(&mut records, Vec::with_capacity(batch_size));
                if tx.blocking_send(Ok((full, bytes, last))).is_err() {
                    return;
                }
                bytes = 0;
            }
        }
    }
    if !records.is_empty() {
        let _ = tx.blocking_send(Ok((records, bytes, last)));
    }
}

fn to_record(message: SpooledMessage, envelope: bool) -> RawRecord {
    let location = format!("message {} on {}", message.seq, message.topic);
    if let Some(size) = message.oversized {
        return RawRecord {
            location,
            payload: Payload::Unreadable {
                raw: String::new(),
                error: format!(
                    "the message has {size} bytes, more than max_payload_bytes: not kept"
                ),
            },
        };
    }
    let Some(text) = message.text else {
        return RawRecord {
            location,
            payload: Payload::Unreadable {
                raw: message.base64.unwrap_or_default(),
                error: "the message is not UTF-8 text (kept in base64)".into(),
            },
        };
    };
    let payload = match serde_json::from_str::<Value>(&text) {
        Err(e) => Payload::Unreadable {
            raw: text,
            error: format!("the message is not JSON: {e}"),
        },
        Ok(value) if envelope => Payload::Json(json!({
            "topic": message.topic,
            "received_at": message.received_at,
            "payload": value,
        })),
        Ok(value) => Payload::Json(value),
    };
    RawRecord { location, payload }
}

/// The largest packet MQTT 3.1.1 allows (a remaining length of 268,435,455 bytes).
const MQTT_MAX_PACKET: usize = 268_435_455 + 5;

type Closed = Option<(PathBuf, u64, u64)>;

/// One visit to the broker: take what it has for our session, spool it, acknowledge it.
/// Returns the closed segment and, when the broker failed part-way, the error (what was
/// synced before it stays spooled; the rest was never acknowledged).
async fn drain(
    inner: &Inner,
    mut writer: spool::SegmentWriter,
) -> Result<(Closed, Option<ConnectorError>), ConnectorError> {
    let config = &inner.config;
    let url = format!("mqtt://{}:{}", config.host, config.port);
    let mut options = MqttOptions::new(&inner.client_id, &config.host, config.port);
    options
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(config.keep_alive_seconds))
        // The client itself never refuses a message (it would fail the connection, and the
        // broker would send the same message at every connect): size is checked per message.
        .set_max_packet_size(MQTT_MAX_PACKET, 64 * 1024);
    if let Some(user) = &config.username {
        options.set_credentials(user, inner.password.clone().unwrap_or_default());
    }
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    let (events_tx, mut events) = mpsc::channel(1024);
    // The event loop runs on its own task so that waiting for the next message with a
    // timeout never cancels it half-way through a packet.
    let pump = tokio::spawn(async move {
        loop {
            let event = eventloop.poll().await;
            let failed = event.is_err();
            if events_tx.send(event).await.is_err() || failed {
                break;
            }
        }
    });
    let result = drain_events(inner, &client, &mut events, &mut writer, &url).await;
    let _ = client.disconnect().await;
    // Wait for the disconnect to go out, so every acknowledgement before it went out too.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(event) = events.recv().await {
            if matches!(event, Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)) {
                break;
            }
        }
    })
    .await;
    pump.abort();
    match result {
        Ok(count) => {
            tracing::debug!(client_id = %inner.client_id, count, "drained the MQTT session");
            let closed = blocking(move || writer.close()).await?;
            Ok((closed, None))
        }
        Err(error) => {
            let closed = blocking(move || writer.abort()).await?;
            Ok((closed, Some(error)))
        }
    }
}

async fn drain_events(
    inner: &Inner,
    client: &AsyncClient,
    events: &mut mpsc::Receiver<Result<Event, rumqttc::ConnectionError>>,
    writer: &mut spool::SegmentWriter,
    url: &str,
) -> Result<usize, ConnectorError> {
    let config = &inner.config;
    let connect_timeout = Duration::from_secs(config.connect_timeout_seconds);
    let connection_error = |e: rumqttc::ConnectionError| ConnectorError::Connect {
        url: url.to_string(),
        message: e.to_string(),
    };
    // Connected and subscribed first: only then does a quiet topic mean "nothing more".
    let subscribed = tokio::time::timeout(connect_timeout, async {
        let mut early = Vec::new();
        client
            .subscribe(&config.topic, QoS::AtLeastOnce)
            .await
            .map_err(|e| ConnectorError::Connect {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        loop {
            match events.recv().await {
                None => {
                    return Err(ConnectorError::Connect {
                        url: url.to_string(),
                        message: "the connection closed".into(),
                    });
                }
                Some(Err(e)) => return Err(connection_error(e)),
                Some(Ok(Event::Incoming(Packet::SubAck(ack)))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        return Err(ConnectorError::Connect {
                            url: url.to_string(),
                            message: format!(
                                "the broker refused the subscription to {:?}",
                                config.topic
                            ),
                        });
                    }
                    return Ok(early);
                }
                // A persistent session's queued messages may arrive before the SUBACK.
                Some(Ok(Event::Incoming(Packet::Publish(p)))) => early.push(p),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .map_err(|_| ConnectorError::Timeout {
        url: url.to_string(),
        seconds: config.connect_timeout_seconds,
    })??;

    let mut seq = writer.first();
    let mut count = 0usize;
    let mut unacked = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(config.max_drain_seconds);
    let idle = Duration::from_millis(config.idle_ms);
    for publish in subscribed {
        spool_one(writer, &mut seq, &publish, config.max_payload_bytes)?;
        unacked.push(publish);
    }
    loop {
        // Everything received so far is made durable, then acknowledged.
        if !unacked.is_empty() {
            writer.sync()?;
            count += unacked.len();
            for publish in unacked.drain(..) {
                client
                    .ack(&publish)
                    .await
                    .map_err(|e| ConnectorError::Connect {
                        url: url.to_string(),
                        message: e.to_string(),
                    })?;
            }
        }
        if count >= config.max_messages || tokio::time::Instant::now() >= deadline {
            return Ok(count);
        }
        let wait = idle.min(deadline - tokio::time::Instant::now());
        let first = match tokio::time::timeout(wait, events.recv()).await {
            Err(_) => return Ok(count),
            Ok(None) => {
                return Err(ConnectorError::Connect {
                    url: url.to_string(),
                    message: "the connection closed".into(),
                });
            }
            Ok(Some(event)) => event,
        };
        // Take whatever else is already here, so one fsync covers many messages.
        let mut next = Some(first);
        while let Some(event) = next.take() {
            match event {
                Err(e) => return Err(connection_error(e)),
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    spool_one(writer, &mut seq, &publish, config.max_payload_bytes)?;
                    unacked.push(publish);
                }
                Ok(_) => {}
            }
            if unacked.len() + count < config.max_messages && unacked.len() < 1024 {
                next = events.try_recv().ok();
            }
        }
    }
}

fn spool_one(
    writer: &mut spool::SegmentWriter,
    seq: &mut u64,
    publish: &rumqttc::Publish,
    max_payload: usize,
) -> Result<(), ConnectorError> {
    let received_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let message = if publish.payload.len() > max_payload {
        SpooledMessage::oversized(*seq, &publish.topic, received_at, publish.payload.len())
    } else {
        SpooledMessage::new(*seq, &publish.topic, received_at, &publish.payload)
    };
    writer.append(&message)?;
    *seq += 1;
    Ok(())
}

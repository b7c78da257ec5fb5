//! Where a batch of events goes: an HTTP receiver (signed per Standard Webhooks), a NATS
//! JetStream subject, or an MQTT topic. A sink only sends and reports; retrying, ordering and
//! positions are the delivery loop's.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::events::{CONTENT_TYPE, Event, batch_body};
use super::subscription::{MqttSinkConfig, NatsSinkConfig, SinkConfig, Subscription};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth trying again soon: timeouts, connection errors, 408, 429, 5xx, broker errors.
    #[error("{0}")]
    Retry(String),
    /// The receiver refused the batch (another 4xx): retried, but parks the subscription if
    /// it goes on for `park_after`.
    #[error("{0}")]
    Refused(String),
    /// The subscription cannot send at all (no secret): fixed only by configuration.
    #[error("{0}")]
    Misconfigured(String),
}

pub enum Sink {
    Http(HttpSink),
    Nats(Box<NatsSink>),
    Mqtt(MqttSink),
}

impl Sink {
    pub fn build(subscription: &Subscription, config: &SinkConfig) -> Result<Sink, SendError> {
        Ok(match config {
            SinkConfig::Http { url } => Sink::Http(HttpSink::new(subscription, url)?),
            SinkConfig::Nats(c) => Sink::Nats(Box::new(NatsSink::new(c.clone()))),
            SinkConfig::Mqtt(c) => {
                Sink::Mqtt(MqttSink::new(&subscription.id, c, subscription.timeout))
            }
        })
    }

    /// Sends one batch. `target` is the dataset (or `share.*` view) the events are from;
    /// `batch_id` is the same on every attempt of the batch.
    pub async fn send(
        &mut self,
        target: &str,
        batch_id: &str,
        events: &[Event],
    ) -> Result<(), SendError> {
        match self {
            Sink::Http(s) => s.send(batch_id, Bytes::from(batch_body(events))).await,
            Sink::Nats(s) => s.send(target, events).await,
            Sink::Mqtt(s) => s.send(target, events).await,
        }
    }
}

pub struct HttpSink {
    client: reqwest::Client,
    url: String,
    signer: standardwebhooks::Webhook,
}

impl HttpSink {
    fn new(subscription: &Subscription, url: &str) -> Result<Self, SendError> {
        let secret = subscription.secret.as_deref().ok_or_else(|| {
            SendError::Misconfigured(format!(
                "the signing secret is missing: set the environment variable {}",
                subscription.secret_env.as_deref().unwrap_or("(secret_env)")
            ))
        })?;
        if !secret.starts_with("whsec_") {
            return Err(SendError::Misconfigured(
                "the signing secret must have the form whsec_<base64>".into(),
            ));
        }
        let signer = standardwebhooks::Webhook::new(secret).map_err(|e| {
            SendError::Misconfigured(format!("the signing secret is not whsec_<base64>: {e}"))
        })?;
        // No redirects: a 30x would turn the POST into a bodiless GET whose 2xx would count
        // as a delivery. A redirect is a refusal the operator must look at.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(subscription.timeout)
            .connect_timeout(subscription.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| SendError::Misconfigured(e.to_string()))?;
        Ok(HttpSink {
            client,
            url: url.to_string(),
            signer,
        })
    }

    async fn send(&self, batch_id: &str, body: Bytes) -> Result<(), SendError> {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = self
            .signer
            .sign(batch_id, timestamp, &body)
            .map_err(|e| SendError::Misconfigured(format!("signing: {e}")))?;
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header("webhook-id", batch_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                SendError::Retry(format!("sending to {}: {}", self.url, error_chain(&e)))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        let message = format!("{} answered {status}: {text}", self.url);
        match status.as_u16() {
            408 | 429 | 500..=599 => Err(SendError::Retry(message)),
            _ => Err(SendError::Refused(message)),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// NATS JetStream: one message per event on `<prefix>.<target>`, with `Nats-Msg-Id` set to
/// the event id so the stream drops a repeat within its duplicate window.
pub struct NatsSink {
    config: NatsSinkConfig,
    jetstream: Option<async_nats::jetstream::Context>,
}

impl NatsSink {
    fn new(config: NatsSinkConfig) -> Self {
        NatsSink {
            config,
            jetstream: None,
        }
    }

    async fn connect(&mut self) -> Result<&async_nats::jetstream::Context, SendError> {
        if self.jetstream.is_none() {
            let client = async_nats::connect(&self.config.url)
                .await
                .map_err(|e| SendError::Retry(format!("NATS {}: {e}", self.config.url)))?;
            let jetstream = async_nats::jetstream::new(client);
            jetstream
                .get_or_create_stream(async_nats::jetstream::stream::Config {
                    name: self.config.stream.clone(),
                    subjects: vec![format!("{}.>", self.config.subject_prefix)],
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    SendError::Retry(format!("JetStream stream {}: {e}", self.config.stream))
                })?;
            self.jetstream = Some(jetstream);
        }
        self.jetstream
            .as_ref()
            .ok_or_else(|| SendError::Retry("not connected".into()))
    }

    async fn send(&mut self, target: &str, events: &[Event]) -> Result<(), SendError> {
        let subject = format!("{}.{target}", self.config.subject_prefix);
        let result = self.publish(&subject, target, events).await;
        if result.is_err() {
            // Reconnect on the next attempt rather than trust a broken connection.
            self.jetstream = None;
        }
        result
    }

    async fn publish(
        &mut self,
        subject: &str,
        target: &str,
        events: &[Event],
    ) -> Result<(), SendError> {
        let jetstream = self.connect().await?.clone();
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("{target}:{}", event.seq).as_str());
            headers.insert("Content-Type", "application/cloudevents+json");
            let ack = jetstream
                .publish_with_headers(
                    subject.to_string(),
                    headers,
                    Bytes::from(event.json.clone()),
                )
                .await
                .map_err(|e| SendError::Retry(format!("JetStream publish: {e}")))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| SendError::Retry(format!("JetStream ack: {e}")))?;
        }
        Ok(())
    }
}

/// MQTT: one QoS 1 message per event on `<prefix>/<target>`; a batch counts as sent when
/// the broker has acknowledged every message of it.
pub struct MqttSink {
    client: rumqttc::AsyncClient,
    acks: mpsc::UnboundedReceiver<Result<(), String>>,
    prefix: String,
    timeout: Duration,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl MqttSink {
    fn new(subscription: &str, config: &MqttSinkConfig, timeout: Duration) -> Self {
        let id = config
            .client_id
            .clone()
            .unwrap_or_else(|| format!("iochub-{subscription}"));
        let mut options = rumqttc::MqttOptions::new(id, config.host.clone(), config.port);
        options.set_keep_alive(Duration::from_secs(30));
        // The broker keeps the session (and unacknowledged messages) across reconnects.
        options.set_clean_session(false);
        options.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
        let (tx, acks) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                        if tx.send(Ok(())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if tx.send(Err(e.to_string())).is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        MqttSink {
            client,
            acks,
            prefix: config.topic_prefix.clone(),
            timeout,
            driver,
        }
    }

    async fn send(&mut self, target: &str, events: &[Event]) -> Result<(), SendError> {
        // Publishing waits when rumqttc's queue is full (broker down): bound the whole batch.
        match tokio::time::timeout(self.timeout, self.publish_and_wait(target, events)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Retry(format!(
                "MQTT: the batch was not acknowledged within {:?}",
                self.timeout
            ))),
        }
    }

    /// Note: acknowledgements are counted, not matched by packet id; after a reconnect the
    /// broker may acknowledge messages of an earlier attempt of this same batch, which carry
    /// the same events.
    async fn publish_and_wait(&mut self, target: &str, events: &[Event]) -> Result<(), SendError> {
        // Acknowledgements left over from an attempt that timed out belong to nobody now.
        while self.acks.try_recv().is_ok() {}
        let topic = format!("{}/{target}", self.prefix);
        for event in events {
            self.client
                .publish(
                    topic.clone(),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    event.json.clone().into_bytes(),
                )
                .await
                .map_err(|e| SendError::Retry(format!("MQTT publish: {e}")))?;
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut acknowledged = 0;
        while acknowledged < events.len() {
            match tokio::time::timeout_at(deadline, self.acks.recv()).await {
                Ok(Some(Ok(()))) => acknowledged += 1,
                Ok(Some(Err(e))) => return Err(SendError::Retry(format!("MQTT: {e}"))),
                Ok(None) => return Err(SendError::Retry("MQTT connection task ended".into())),
                Err(_) => {
                    return Err(SendError::Retry(format!(
                        "MQTT: {acknowledged} of {} messages acknowledged in time",
                        events.len()
                    )));
                }
            }
        }
        Ok(())
    }
}

//! Publishes the sample Frigate messages to the local MQTT broker, as a camera NVR would.

use std::path::Path;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::Value;

use super::{DemoError, read_sample};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Sample(#[from] DemoError),
    #[error("MQTT broker {addr}: {message}")]
    Broker { addr: String, message: String },
}

/// Makes the broker keep messages for `client_id`'s persistent session on `topic` (subscribes
/// with QoS 1 and leaves), so what the demo publishes next waits for the hub's first run
/// however long the hub takes to start.
pub async fn ensure_session(
    host: &str,
    port: u16,
    client_id: &str,
    topic: &str,
) -> Result<(), PublishError> {
    let broker = |message: String| PublishError::Broker {
        addr: format!("{host}:{port}"),
        message,
    };
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(10));
    // Acknowledging nothing: what the session already holds stays for the hub.
    options.set_manual_acks(true);
    let (client, mut eventloop) = AsyncClient::new(options, 8);
    client
        .subscribe(topic, QoS::AtLeastOnce)
        .await
        .map_err(|e| broker(e.to_string()))?;
    let subscribed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(broker(e.to_string())),
            }
        }
    })
    .await
    .map_err(|_| broker("no SUBACK in 10 s".into()))?;
    subscribed?;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while !matches!(
            eventloop.poll().await,
            Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)
        ) {}
    })
    .await;
    Ok(())
}

/// Sends each sample line's `payload` (QoS 1) to `topic`; returns how many the broker
/// acknowledged. A line that is not JSON is sent as its raw text, so the hub's quarantine
/// shows it.
pub async fn publish_camera_events(
    samples: &Path,
    host: &str,
    port: u16,
    topic: &str,
) -> Result<usize, PublishError> {
    let text = read_sample(&samples.join("camera_events.jsonl"))?;
    let payloads: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(v) => v
                .get("payload")
                .map(|p| p.to_string().into_bytes())
                .unwrap_or_else(|| line.as_bytes().to_vec()),
            Err(_) => line.as_bytes().to_vec(),
        })
        .collect();
    let addr = format!("{host}:{port}");
    let broker = |message: String| PublishError::Broker {
        addr: addr.clone(),
        message,
    };
    let mut options = MqttOptions::new(format!("iochub-demo-{}", std::process::id()), host, port);
    options.set_keep_alive(Duration::from_secs(10));
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, payloads.len().max(1) + 8);
    for payload in &payloads {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload.clone())
            .await
            .map_err(|e| broker(e.to_string()))?;
    }
    let mut acked = 0usize;
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while acked < payloads.len() {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => return Err(broker(e.to_string())),
            }
        }
        let _ = client.disconnect().await;
        while !matches!(
            eventloop.poll().await,
            Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)
        ) {}
        Ok(())
    })
    .await;
    match waited {
        Ok(Ok(())) => Ok(acked),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(broker(format!(
            "only {acked} of {} messages acknowledged in 20 s",
            payloads.len()
        ))),
    }
}

//! `[[subscriptions]]` in config.toml: who receives the feed, where, and how.

use std::time::Duration;

use serde::Deserialize;

use crate::config::parse_duration;

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionConfig {
    pub id: String,
    /// Whose sharing rights apply (masking and special shares included).
    pub consumer: String,
    /// The receiver's HTTPS (or loopback HTTP) address. Unset or empty: the subscription is
    /// disabled (the shipped province subscription waits for its address this way).
    #[serde(default)]
    pub url: Option<String>,
    /// Dataset names, `share.<name>` views, or `"*"` for everything the consumer may see.
    #[serde(default = "all")]
    pub datasets: Vec<String>,
    /// The environment variable holding the `whsec_...` secret (HTTP only).
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How long a batch waits to fill before it is sent anyway.
    #[serde(default = "default_max_batch_delay")]
    pub max_batch_delay: String,
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// The longest wait between two attempts of a batch.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: String,
    /// A receiver that keeps refusing a batch (4xx other than 408/429) for this long parks
    /// the subscription until an admin resumes it.
    #[serde(default = "default_park_after")]
    pub park_after: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Publish to NATS JetStream instead of HTTP.
    #[serde(default)]
    pub nats: Option<NatsSinkConfig>,
    /// Publish to an MQTT broker instead of HTTP.
    #[serde(default)]
    pub mqtt: Option<MqttSinkConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NatsSinkConfig {
    /// `nats://127.0.0.1:4222`
    pub url: String,
    /// The JetStream stream, created (for `<subject_prefix>.>`) if missing.
    pub stream: String,
    /// Events of dataset `d` go to `<subject_prefix>.<d>`.
    pub subject_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MqttSinkConfig {
    pub host: String,
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// Events of dataset `d` go to `<topic_prefix>/<d>`, QoS 1.
    pub topic_prefix: String,
    /// Stable, so the broker keeps the session across restarts.
    #[serde(default)]
    pub client_id: Option<String>,
}

fn all() -> Vec<String> {
    vec!["*".into()]
}
fn default_batch_size() -> usize {
    500
}
fn default_max_batch_delay() -> String {
    "200ms".into()
}
fn default_timeout() -> String {
    "30s".into()
}
fn default_max_backoff() -> String {
    "5m".into()
}
fn default_park_after() -> String {
    "1h".into()
}
fn default_mqtt_port() -> u16 {
    1883
}
fn yes() -> bool {
    true
}

pub const MAX_BATCH_SIZE: usize = 10_000;

/// Where a subscription delivers.
#[derive(Debug, Clone)]
pub enum SinkConfig {
    Http { url: String },
    Nats(NatsSinkConfig),
    Mqtt(MqttSinkConfig),
}

/// A checked subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub consumer: String,
    pub datasets: Vec<String>,
    /// `None`: disabled (no address yet, or `enabled = false`).
    pub sink: Option<SinkConfig>,
    pub secret_env: Option<String>,
    /// The `whsec_` secret, read from `secret_env` at load (a test may set it directly).
    pub secret: Option<String>,
    pub batch_size: usize,
    pub max_batch_delay: Duration,
    pub timeout: Duration,
    pub max_backoff: Duration,
    pub park_after: Duration,
}

impl Subscription {
    /// Checks one `[[subscriptions]]` entry; `Err` lists each problem with its key.
    pub fn from_config(c: &SubscriptionConfig) -> Result<Subscription, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut duration = |key: &str, text: &str| match parse_duration(text) {
            Ok(d) => d,
            Err(e) => {
                problems.push((key.to_string(), format!("{key}: {e}")));
                Duration::ZERO
            }
        };
        let max_batch_delay = duration("max_batch_delay", &c.max_batch_delay);
        let timeout = duration("timeout", &c.timeout);
        let max_backoff = duration("max_backoff", &c.max_backoff);
        let park_after = duration("park_after", &c.park_after);
        if c.id.is_empty()
            || !c
                .id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            problems.push((
                "id".into(),
                "id must be a non-empty identifier (letters, digits, '-', '_')".into(),
            ));
        }
        if c.batch_size == 0 || c.batch_size > MAX_BATCH_SIZE {
            problems.push((
                "batch_size".into(),
                format!("batch_size must be between 1 and {MAX_BATCH_SIZE}"),
            ));
        }
        if c.datasets.is_empty() {
            problems.push((
                "datasets".into(),
                "name at least one dataset, or \"*\"".into(),
            ));
        }
        let url = c.url.as_deref().map(str::trim).filter(|u| !u.is_empty());
        let sinks = [url.is_some(), c.nats.is_some(), c.mqtt.is_some()];
        if sinks.iter().filter(|s| **s).count() > 1 {
            problems.push((
                "url".into(),
                "choose one of url, [subscriptions.nats] and [subscriptions.mqtt]".into(),
            ));
        }
        if let Some(u) = url {
            match url::Url::parse(u) {
                Ok(parsed) if parsed.scheme() == "https" => {}
                Ok(parsed) if parsed.scheme() == "http" => {
                    if !is_loopback_url(&parsed) {
                        problems.push((
                            "url".into(),
                            format!("{u:?}: records would cross the network in clear; use https (plain http only to this machine)"),
                        ));
                    }
                }
                _ => problems.push(("url".into(), format!("{u:?} is not an http(s) URL"))),
            }
            if c.secret_env.is_none() {
                problems.push((
                    "secret_env".into(),
                    "an HTTP subscription is signed: set secret_env to the environment variable holding its whsec_ secret".into(),
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let sink = match (url, &c.nats, &c.mqtt) {
            _ if !c.enabled => None,
            (Some(u), _, _) => Some(SinkConfig::Http { url: u.to_string() }),
            (_, Some(n), _) => Some(SinkConfig::Nats(n.clone())),
            (_, _, Some(m)) => Some(SinkConfig::Mqtt(m.clone())),
            _ => None,
        };
        let secret = c
            .secret_env
            .as_ref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|s| !s.is_empty());
        Ok(Subscription {
            id: c.id.clone(),
            consumer: c.consumer.clone(),
            datasets: c.datasets.clone(),
            sink,
            secret_env: c.secret_env.clone(),
            secret,
            batch_size: c.batch_size,
            max_batch_delay,
            timeout,
            max_backoff,
            park_after,
        })
    }

    pub fn sink_kind(&self) -> &'static str {
        match &self.sink {
            None => "disabled",
            Some(SinkConfig::Http { .. }) => "http",
            Some(SinkConfig::Nats(_)) => "nats",
            Some(SinkConfig::Mqtt(_)) => "mqtt",
        }
    }
}

/// Whether `url` points at this machine (the one place plain `http` is accepted for data).
pub fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

//! The feed: every committed change of a dataset, numbered, delivered to subscribers as
//! signed CloudEvents batches, in order and at least once, as each subscriber may see it.
//!
//! - `changelog`: the per-dataset change log (Delta tables under `<data_dir>/changes/`).
//! - `events`: change rows → CloudEvents JSON (the wire contract).
//! - `subscription`: `[[subscriptions]]` in config.toml.
//! - `sink`: HTTP (Standard Webhooks signatures), NATS JetStream, MQTT.
//! - `delivery`: one loop per subscription and target; retries, parking, positions.
//!
//! Reading the feed as a consumer (masking, shares) is `Hub::feed_read` in `hub/feed.rs`.

mod appended_file;
pub mod changelog;
pub mod delivery;
pub mod events;
pub mod sink;
pub mod subscription;

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;

pub use changelog::Changelog;
pub use subscription::{SinkConfig, Subscription, SubscriptionConfig, is_loopback_url};

/// What the delivery loops know that is not persisted: the last error and delivery.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetRuntime {
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// Events delivered since the hub started.
    pub delivered_events: u64,
}

/// The feed's shared state: the change log and what each delivery loop reports.
pub struct Feed {
    pub changelog: Changelog,
    runtime: Mutex<HashMap<(String, String), TargetRuntime>>,
    /// Wakes parked loops when an admin resumes a subscription.
    pub resumed: Notify,
}

impl Feed {
    pub fn new(changelog: Changelog) -> Self {
        Feed {
            changelog,
            runtime: Mutex::new(HashMap::new()),
            resumed: Notify::new(),
        }
    }

    pub fn runtime(&self, subscription: &str, target: &str) -> TargetRuntime {
        self.runtime
            .lock()
            .ok()
            .and_then(|m| m.get(&(subscription.into(), target.into())).cloned())
            .unwrap_or_default()
    }

    pub fn update(&self, subscription: &str, target: &str, f: impl FnOnce(&mut TargetRuntime)) {
        if let Ok(mut map) = self.runtime.lock() {
            f(map
                .entry((subscription.to_string(), target.to_string()))
                .or_default());
        }
    }
}

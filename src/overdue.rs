//! Watching for items past their deadline (`[overdue]`): every `check_seconds` the hub runs
//! the configured query as the IOC, sets `iochub_overdue{unit}` from its rows, and announces
//! each item that is overdue for the first time to the webhook, once (remembered in the state
//! store, so a restart does not announce it again; a failed POST is tried at the next check).
//!
//! Time-dependent status comes from the query itself (a `[[computed]]` column such as
//! `sla_status`), so an item becomes overdue here without any new data arriving.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::Hub;
use crate::config::OverdueConfig;

/// What `kind` the state store files the announcements under.
const KIND: &str = "overdue";

#[derive(Debug, thiserror::Error)]
pub enum OverdueError {
    #[error("the overdue query failed: {0}")]
    Query(String),
    #[error("the overdue query must give text columns id and unit: {0}")]
    Shape(String),
    #[error("the overdue webhook: {0}")]
    Webhook(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// What one check saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Check {
    /// Overdue items per unit, now.
    pub by_unit: BTreeMap<String, usize>,
    /// Items announced by this check (newly overdue, and the webhook took them).
    pub announced: Vec<String>,
}

pub struct Watch {
    config: OverdueConfig,
    client: reqwest::Client,
    signer: Option<standardwebhooks::Webhook>,
}

impl Watch {
    pub fn new(config: OverdueConfig) -> Result<Self, OverdueError> {
        let signer = match &config.secret_env {
            None => None,
            Some(var) => {
                let secret = std::env::var(var).map_err(|_| {
                    OverdueError::Webhook(format!("environment variable {var} is not set"))
                })?;
                Some(standardwebhooks::Webhook::new(&secret).map_err(|e| {
                    OverdueError::Webhook(format!("{var} is not a whsec_<base64> secret: {e}"))
                })?)
            }
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.timeout_seconds))
            .build()
            .map_err(|e| OverdueError::Webhook(e.to_string()))?;
        Ok(Watch {
            config,
            client,
            signer,
        })
    }

    /// One check: counts, metric, and the announcement of what is newly overdue.
    pub async fn check(&self, hub: &Hub) -> Result<Check, OverdueError> {
        let result = hub
            .sql(&self.config.sql)
            .await
            .map_err(|e| OverdueError::Query(e.to_string()))?;
        let json =
            crate::query::to_json(&result).map_err(|e| OverdueError::Query(e.to_string()))?;
        let columns: Vec<String> = json["columns"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(|c| c["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let (Some(id_at), Some(unit_at)) = (
            columns.iter().position(|c| c == "id"),
            columns.iter().position(|c| c == "unit"),
        ) else {
            return Err(OverdueError::Shape(columns.join(", ")));
        };
        let mut by_unit = BTreeMap::new();
        let mut items = Vec::new();
        for row in json["rows"].as_array().into_iter().flatten() {
            let Some(row) = row.as_array() else { continue };
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            let id = row.get(id_at).map(text).unwrap_or_default();
            let unit = row.get(unit_at).map(text).unwrap_or_default();
            *by_unit.entry(unit).or_insert(0) += 1;
            let item: serde_json::Map<String, Value> =
                columns.iter().cloned().zip(row.iter().cloned()).collect();
            items.push((id, Value::Object(item)));
        }
        hub.metrics.set_overdue(&by_unit);
        let mut check = Check {
            by_unit,
            announced: Vec::new(),
        };
        let Some(url) = &self.config.webhook_url else {
            return Ok(check);
        };
        let ids: Vec<String> = items.iter().map(|(id, _)| id.clone()).collect();
        let seen = hub.state.notified(KIND, &ids)?;
        let new: Vec<(String, Value)> = items
            .into_iter()
            .filter(|(id, _)| !seen.contains(id))
            .collect();
        if new.is_empty() {
            return Ok(check);
        }
        let new_ids: Vec<String> = new.iter().map(|(id, _)| id.clone()).collect();
        self.post(url, &new_ids, new.into_iter().map(|(_, v)| v).collect())
            .await?;
        hub.state.mark_notified(KIND, &new_ids)?;
        check.announced = new_ids;
        Ok(check)
    }

    async fn post(&self, url: &str, ids: &[String], items: Vec<Value>) -> Result<(), OverdueError> {
        let body = json!({
            "type": "iochub.overdue",
            "hub_time": chrono::Utc::now().to_rfc3339(),
            "count": items.len(),
            "items": items,
        })
        .to_string();
        // The same set of items gets the same id, so a receiver can drop a repeat.
        let message_id = {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(ids.join("\n").as_bytes());
            format!("overdue_{}", &hex::encode(digest)[..32])
        };
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &message_id);
        if let Some(signer) = &self.signer {
            let timestamp = chrono::Utc::now().timestamp();
            let signature = signer
                .sign(&message_id, timestamp, body.as_bytes())
                .map_err(|e| OverdueError::Webhook(format!("signing: {e}")))?;
            request = request
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| OverdueError::Webhook(format!("{url}: {e}")))?;
        if !response.status().is_success() {
            return Err(OverdueError::Webhook(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        Ok(())
    }
}

/// Checks every `check_seconds` until `stop` turns true. Errors are logged and tried again.
pub fn start(
    hub: Arc<Hub>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let config = hub.config.file.overdue.clone()?;
    let every = Duration::from_secs(config.check_seconds);
    let watch = match Watch::new(config) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "overdue watch not started");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        loop {
            match watch.check(&hub).await {
                Ok(check) if !check.announced.is_empty() => {
                    tracing::info!(
                        count = check.announced.len(),
                        "newly overdue items announced"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "overdue check"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }))
}

//! The feed as a consumer sees it: the changes of a dataset or share, through the same
//! visibility as SQL (masking, special shares), and the status of every subscription.

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::logical_expr::{LogicalPlanBuilder, col, lit};
use serde::Serialize;
use serde_json::Value;

use super::{Hub, HubError};
use crate::feed::changelog::{META_COLUMNS, SEQ, key_predicate};
use crate::feed::events::{self, Event};
use crate::feed::{Subscription, TargetRuntime};
use crate::query::QueryError;
use crate::sharing::Consumer;
use crate::sharing::catalog::{CatalogError, feed_dataset_plan, feed_share_plan};
use crate::storage::{StorageError, TableStore};

/// The most a pull request may ask for at once.
pub const MAX_FEED_LIMIT: usize = 10_000;

#[derive(Debug)]
pub struct FeedPage {
    pub events: Vec<Event>,
    /// Pass as `after` to read on: every change up to here has been read.
    pub next: i64,
    /// The dataset's newest change.
    pub last_sequence: i64,
}

#[derive(Debug, Serialize)]
pub struct SubscriptionStatus {
    pub id: String,
    pub consumer: String,
    /// `http`, `nats`, `mqtt`, or `disabled` (no address yet, or `enabled = false`).
    pub sink: &'static str,
    pub targets: Vec<TargetStatus>,
}

#[derive(Debug, Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub dataset: String,
    /// The last acknowledged sequence.
    pub position: i64,
    pub last_sequence: i64,
    pub pending: i64,
    /// Age of the oldest change not yet acknowledged (0 when none is pending).
    pub lag_seconds: f64,
    pub parked: bool,
    pub parked_reason: Option<String>,
    /// Why the dataset's change log could not be extended (new changes wait until it can).
    pub log_error: Option<String>,
    #[serde(flatten)]
    pub runtime: TargetRuntime,
}

fn target_not_found(target: &str) -> HubError {
    HubError::NotFound(format!("no dataset or share named {target:?}"))
}

/// The dataset behind a feed target in `visibility` (`share.x` is its grant's dataset).
fn target_dataset(
    visibility: &crate::sharing::Visibility,
    target: &str,
) -> Result<String, HubError> {
    match target.strip_prefix("share.") {
        Some(name) => dataset_share(visibility, target, name).map(|(_, d)| d),
        None => visibility
            .dataset(target)
            .map(|v| v.dataset.clone())
            .ok_or_else(|| target_not_found(target)),
    }
}

/// The consumer's share `name` and its dataset; an SQL share has no feed.
fn dataset_share<'v>(
    visibility: &'v crate::sharing::Visibility,
    target: &str,
    name: &str,
) -> Result<(&'v crate::sharing::Grant, String), HubError> {
    let grant = visibility
        .shares
        .iter()
        .find(|g| g.name == name)
        .ok_or_else(|| target_not_found(target))?;
    let dataset = grant.dataset.clone().ok_or_else(|| HubError::BadRequest {
        field: "dataset".into(),
        message: format!(
            "share.{name} is an SQL share, not the changes of one dataset: it has no feed"
        ),
    })?;
    Ok((grant, dataset))
}

fn catalog_error(e: CatalogError) -> HubError {
    HubError::Query(QueryError::Share(e.to_string()))
}

fn plan_error(e: datafusion::error::DataFusionError) -> HubError {
    HubError::Query(QueryError::Execution(e.strip_backtrace()))
}

impl Hub {
    /// The dataset behind a feed target (`share.x` is its grant's dataset), as `consumer`
    /// may see it; not found otherwise.
    pub fn feed_dataset_of(&self, consumer: &str, target: &str) -> Result<String, HubError> {
        let consumer = self
            .config
            .consumers
            .get(consumer)
            .ok_or_else(|| target_not_found(target))?;
        target_dataset(&self.visibility_of(consumer)?, target)
    }

    /// The targets of a subscription: its datasets, or for `"*"` every dataset and dataset
    /// share its consumer may see now.
    pub fn feed_targets(&self, subscription: &Subscription) -> Result<Vec<String>, HubError> {
        let mut targets = Vec::new();
        for name in &subscription.datasets {
            if name != "*" {
                targets.push(name.clone());
                continue;
            }
            let consumer = self
                .config
                .consumers
                .get(&subscription.consumer)
                .ok_or_else(|| HubError::NotFound(subscription.consumer.clone()))?;
            let visibility = self.visibility_of(consumer)?;
            targets.extend(visibility.datasets.iter().map(|d| d.dataset.clone()));
            targets.extend(
                visibility
                    .shares
                    .iter()
                    .filter(|g| g.dataset.is_some())
                    .map(|g| format!("share.{}", g.name)),
            );
        }
        targets.sort();
        targets.dedup();
        Ok(targets)
    }

    /// Up to `limit` changes of `target` after sequence `after`, as `consumer` may see them.
    pub async fn feed_read(
        &self,
        consumer: &Consumer,
        target: &str,
        after: i64,
        limit: usize,
    ) -> Result<FeedPage, HubError> {
        let limit = limit.clamp(1, MAX_FEED_LIMIT);
        let after = after.max(0);
        let visibility = self.visibility_of(consumer)?;
        let changelog = &self.feed.changelog;
        let dataset = target_dataset(&visibility, target)?;
        // The sequence first, then the log: `catch_up` publishes a new log before its new
        // sequence, so the log read here holds at least every change up to `last_sequence`.
        let last_sequence = changelog.last_seq(&dataset);
        let upper = after.saturating_add(limit as i64).min(last_sequence);
        if upper <= after {
            return Ok(FeedPage {
                events: Vec::new(),
                next: after,
                last_sequence,
            });
        }
        let changes = changelog.read(&dataset, after, upper).await?;
        let plan = match target.strip_prefix("share.") {
            Some(name) => {
                let (grant, _) = dataset_share(&visibility, target, name)?;
                feed_share_plan(
                    grant,
                    &changes,
                    changelog.key(&dataset),
                    &META_COLUMNS,
                    self.engine.context(),
                )
                .map_err(catalog_error)?
            }
            None => {
                let view = visibility
                    .dataset(target)
                    .ok_or_else(|| target_not_found(target))?;
                feed_dataset_plan(view, &changes, &META_COLUMNS).map_err(plan_error)?
            }
        };
        let plan = LogicalPlanBuilder::from(plan)
            .filter(col(SEQ).gt(lit(after)).and(col(SEQ).lt_eq(lit(upper))))
            .and_then(|b| b.sort(vec![col(SEQ).sort(true, false)]))
            .and_then(|b| b.build())
            .map_err(plan_error)?;
        let batches: Vec<RecordBatch> = self
            .engine
            .context()
            .execute_logical_plan(plan)
            .await
            .map_err(plan_error)?
            .collect()
            .await
            .map_err(plan_error)?;
        let key = changelog.key(&dataset).to_vec();
        let mut out = Vec::new();
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            let page = events::to_events(&self.config.file.hub.id, target, &key, batch)
                .map_err(|e| HubError::Query(QueryError::Execution(e.to_string())))?;
            out.extend(page);
        }
        Ok(FeedPage {
            events: out,
            next: upper,
            last_sequence,
        })
    }

    /// Every subscription, and each of its targets' position, backlog and errors.
    pub async fn subscription_statuses(&self) -> Result<Vec<SubscriptionStatus>, HubError> {
        let now = chrono::Utc::now().timestamp_micros();
        let mut out = Vec::new();
        for s in &self.config.subscriptions {
            let mut targets = Vec::new();
            for target in self.feed_targets(s).unwrap_or_default() {
                let dataset = self
                    .feed_dataset_of(&s.consumer, &target)
                    .unwrap_or_else(|_| target.clone());
                let position = self
                    .state
                    .feed_position(&s.id, &target)?
                    .unwrap_or_default();
                let last_sequence = self.feed.changelog.last_seq(&dataset);
                let pending = (last_sequence - position.position).max(0);
                let lag_seconds = if pending > 0 {
                    self.feed
                        .changelog
                        .changed_at(&dataset, position.position + 1)
                        .await
                        .map_or(0.0, |t| ((now - t).max(0) as f64) / 1e6)
                } else {
                    0.0
                };
                self.metrics.set_feed_lag(&s.id, &target, lag_seconds);
                let log_error = self.feed.changelog.error(&dataset);
                targets.push(TargetStatus {
                    runtime: self.feed.runtime(&s.id, &target),
                    target,
                    dataset,
                    position: position.position,
                    last_sequence,
                    pending,
                    lag_seconds,
                    parked: position.parked.is_some(),
                    parked_reason: position.parked,
                    log_error,
                });
            }
            out.push(SubscriptionStatus {
                id: s.id.clone(),
                consumer: s.consumer.clone(),
                sink: s.sink_kind(),
                targets,
            });
        }
        Ok(out)
    }

    /// Deletes records by key (a publisher's own dataset); each becomes a `deleted` change.
    pub async fn delete_records(
        &self,
        consumer: &Consumer,
        name: &str,
        keys: Vec<serde_json::Map<String, Value>>,
    ) -> Result<usize, HubError> {
        let pipeline = self.published_by(consumer, name)?;
        if pipeline.key.is_empty() {
            return Err(HubError::BadRequest {
                field: "key".into(),
                message: format!("{name} has no key: its records cannot be deleted one by one"),
            });
        }
        if keys.is_empty() || keys.len() > MAX_FEED_LIMIT {
            return Err(HubError::BadRequest {
                field: "keys".into(),
                message: format!("send between 1 and {MAX_FEED_LIMIT} keys"),
            });
        }
        for (i, k) in keys.iter().enumerate() {
            if pipeline
                .key
                .iter()
                .any(|c| k.get(c).is_none_or(Value::is_null))
                || k.len() != pipeline.key.len()
            {
                return Err(HubError::BadRequest {
                    field: format!("keys[{i}]"),
                    message: format!("each key is an object with exactly {:?}", pipeline.key),
                });
            }
        }
        let predicate =
            key_predicate(&pipeline.table_schema, &pipeline.key, &keys).map_err(|message| {
                HubError::BadRequest {
                    field: "keys".into(),
                    message,
                }
            })?;
        let delete_id = format!("delete-{}", uuid::Uuid::new_v4());
        let deleted = self
            .delete_where(&pipeline, predicate, &keys, &delete_id)
            .await?;
        self.audit(
            Some(&consumer.id),
            "delete",
            Some(name),
            serde_json::json!({"delete_id": delete_id, "keys": keys.len(), "deleted": deleted}),
            "ok",
        );
        Ok(deleted)
    }

    async fn delete_where(
        &self,
        pipeline: &Arc<crate::config::Pipeline>,
        predicate: datafusion::logical_expr::Expr,
        keys: &[serde_json::Map<String, Value>],
        delete_id: &str,
    ) -> Result<usize, HubError> {
        let name = pipeline.name.clone();
        let mut metadata = std::collections::HashMap::new();
        metadata.insert("iochub.pipeline".to_string(), Value::from(name.clone()));
        metadata.insert("iochub.run_id".to_string(), Value::from(delete_id));
        metadata.insert(
            crate::feed::changelog::META_DELETED_KEYS.to_string(),
            Value::Array(keys.iter().cloned().map(Value::Object).collect()),
        );
        let deleted = std::sync::atomic::AtomicUsize::new(0);
        self.commit_to(&name, |_store: &TableStore, table| async {
            let (table, metrics) = table
                .delete()
                .with_predicate(predicate)
                .with_commit_properties(
                    deltalake::kernel::transaction::CommitProperties::default()
                        .with_metadata(metadata),
                )
                .await
                .map_err(|source| StorageError::Delta {
                    table: name.clone(),
                    source: Box::new(source),
                })?;
            deleted.store(
                metrics.num_deleted_rows.unwrap_or(0),
                std::sync::atomic::Ordering::SeqCst,
            );
            Ok(table)
        })
        .await?;
        self.catch_up_changes(&name).await;
        Ok(deleted.into_inner())
    }
}

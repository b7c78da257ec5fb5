//! Delivery: one loop per subscription and target (dataset or `share.*` view).
//!
//! A loop reads the next batch after its acknowledged position, sends it until the sink
//! acknowledges it (backoff with jitter, capped), then persists the new position. The next
//! batch of that target waits, so each target's events arrive in sequence order. Only one
//! batch is in memory per loop, whatever the backlog. A receiver that keeps refusing a batch
//! (4xx) for `park_after` parks the target: it waits, its position kept, until an admin
//! resumes the subscription.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Subscription;
use super::sink::{SendError, Sink};
use crate::hub::{Hub, HubError};
use crate::state::FeedPosition;

/// How often a `"*"` subscription looks for datasets or shares it did not have.
const RESCAN: Duration = Duration::from_secs(60);
/// How long a loop waits before trying again after a read error (a share that expired,
/// a table that could not be read).
const READ_RETRY: Duration = Duration::from_secs(30);

/// Starts a delivery loop for every enabled subscription, and the change logs' repair loop;
/// they stop when `shutdown` is true.
pub fn start(hub: Arc<Hub>, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut tasks: Vec<JoinHandle<()>> = hub
        .config
        .subscriptions
        .iter()
        .filter(|s| s.sink.is_some())
        .map(|s| {
            let hub = hub.clone();
            let subscription = Arc::new(s.clone());
            let shutdown = shutdown.clone();
            tokio::spawn(run_subscription(hub, subscription, shutdown))
        })
        .collect();
    tasks.push(tokio::spawn(repair_logs(hub, shutdown)));
    tasks
}

/// A change log that could not be extended after a commit (disk full, a bug) is tried
/// again every minute, not only at the dataset's next commit, which may be a day away.
async fn repair_logs(hub: Arc<Hub>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if sleep_or_stop(RESCAN, &mut shutdown).await {
            return;
        }
        for pipeline in &hub.config.pipelines {
            if hub.feed.changelog.error(&pipeline.name).is_some() {
                hub.catch_up_changes(&pipeline.name).await;
            }
        }
    }
}

async fn run_subscription(
    hub: Arc<Hub>,
    subscription: Arc<Subscription>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut started: HashSet<String> = HashSet::new();
    let mut loops = Vec::new();
    loop {
        match hub.feed_targets(&subscription) {
            Ok(targets) => {
                for target in targets {
                    if started.insert(target.clone()) {
                        loops.push(tokio::spawn(run_target(
                            hub.clone(),
                            subscription.clone(),
                            target,
                            shutdown.clone(),
                        )));
                    }
                }
            }
            Err(e) => tracing::warn!(subscription = %subscription.id, error = %e, "feed targets"),
        }
        let wildcard = subscription.datasets.iter().any(|d| d == "*");
        tokio::select! {
            _ = tokio::time::sleep(RESCAN), if wildcard => {}
            _ = wait_true(&mut shutdown) => break,
        }
    }
    for l in loops {
        let _ = l.await;
    }
}

async fn wait_true(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

enum Outcome {
    Delivered,
    Parked,
    Stopped,
}

/// The loop of one target.
async fn run_target(
    hub: Arc<Hub>,
    subscription: Arc<Subscription>,
    target: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(sink_config) = subscription.sink.clone() else {
        return;
    };
    let feed = &hub.feed;
    // What the target needs, retried until it is there: a share may be approved, a secret
    // set, later; the loop never gives up on its own.
    let (mut grows, mut sink) = loop {
        let ready = hub
            .feed_dataset_of(&subscription.consumer, &target)
            .map_err(|e| e.to_string())
            .and_then(|dataset| {
                feed.changelog
                    .subscribe(&dataset)
                    .ok_or_else(|| format!("no change log for {dataset}"))
            })
            .and_then(|grows| {
                Sink::build(&subscription, &sink_config)
                    .map(|sink| (grows, sink))
                    .map_err(|e| e.to_string())
            });
        match ready {
            Ok(ready) => break ready,
            Err(e) => {
                record_error(&hub, &subscription, &target, &e);
                if sleep_or_stop(READ_RETRY, &mut shutdown).await {
                    return;
                }
            }
        }
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        let position = match hub.state.feed_position(&subscription.id, &target) {
            Ok(p) => p.unwrap_or_default(),
            Err(e) => {
                record_error(&hub, &subscription, &target, &e.to_string());
                if sleep_or_stop(READ_RETRY, &mut shutdown).await {
                    return;
                }
                continue;
            }
        };
        hub.metrics.set_feed_position(
            &subscription.id,
            &target,
            position.position,
            position.parked.is_some(),
        );
        if position.parked.is_some() {
            let resumed = feed.resumed.notified();
            tokio::select! {
                _ = resumed => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = wait_true(&mut shutdown) => return,
            }
            continue;
        }
        let last = *grows.borrow_and_update();
        hub.metrics
            .set_feed_pending(&subscription.id, &target, last - position.position);
        if last <= position.position {
            tokio::select! {
                _ = grows.changed() => {}
                _ = wait_true(&mut shutdown) => return,
            }
            continue;
        }
        // A partial batch waits a little for more changes, up to max_batch_delay.
        if ((last - position.position) as usize) < subscription.batch_size {
            let deadline = tokio::time::Instant::now() + subscription.max_batch_delay;
            loop {
                let pending = *grows.borrow_and_update() - position.position;
                if pending as usize >= subscription.batch_size {
                    break;
                }
                tokio::select! {
                    _ = grows.changed() => {}
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = wait_true(&mut shutdown) => return,
                }
            }
        }
        let Some(consumer) = hub.config.consumers.get(&subscription.consumer).cloned() else {
            return;
        };
        // A batch that was in flight when the hub stopped goes again as it was.
        let limit = match position.inflight {
            Some(upper) if upper > position.position => (upper - position.position) as usize,
            _ => subscription.batch_size,
        };
        let page = match hub
            .feed_read(&consumer, &target, position.position, limit)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                record_error(&hub, &subscription, &target, &e.to_string());
                if sleep_or_stop(READ_RETRY, &mut shutdown).await {
                    return;
                }
                continue;
            }
        };
        if position.inflight != Some(page.next) {
            let saved = hub.state.save_feed_position(
                &subscription.id,
                &target,
                &FeedPosition {
                    inflight: Some(page.next),
                    ..position.clone()
                },
            );
            if let Err(e) = saved {
                record_error(&hub, &subscription, &target, &e.to_string());
                if sleep_or_stop(READ_RETRY, &mut shutdown).await {
                    return;
                }
                continue;
            }
        }
        let outcome = if page.events.is_empty() {
            // Every change in the range is outside the consumer's rows: nothing to send.
            Outcome::Delivered
        } else {
            let batch_id = format!(
                "{}_{}_{}-{}",
                subscription.id,
                target,
                position.position + 1,
                page.next
            );
            let batch = Batch {
                id: &batch_id,
                after: position.position,
                upper: page.next,
                events: &page.events,
            };
            deliver(
                &hub,
                &subscription,
                &target,
                &mut sink,
                &batch,
                &mut shutdown,
            )
            .await
        };
        match outcome {
            Outcome::Stopped => return,
            Outcome::Parked => continue,
            Outcome::Delivered => {
                let saved = hub.state.save_feed_position(
                    &subscription.id,
                    &target,
                    &FeedPosition {
                        position: page.next,
                        parked: None,
                        inflight: None,
                    },
                );
                if let Err(e) = saved {
                    // Delivered but not recorded: the batch goes again (at least once).
                    record_error(&hub, &subscription, &target, &e.to_string());
                    if sleep_or_stop(READ_RETRY, &mut shutdown).await {
                        return;
                    }
                }
                let count = page.events.len() as u64;
                feed.update(&subscription.id, &target, |r| {
                    r.last_delivered_at = Some(Utc::now());
                    r.delivered_events += count;
                });
                hub.metrics
                    .observe_feed_delivered(&subscription.id, &target, count);
            }
        }
    }
}

struct Batch<'a> {
    id: &'a str,
    /// The acknowledged position the batch follows.
    after: i64,
    /// The position once it is acknowledged.
    upper: i64,
    events: &'a [super::events::Event],
}

/// Sends one batch until it is acknowledged, parked, or the hub stops.
async fn deliver(
    hub: &Hub,
    subscription: &Subscription,
    target: &str,
    sink: &mut Sink,
    batch: &Batch<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> Outcome {
    let (batch_id, events) = (batch.id, batch.events);
    let first = events.first().map_or(0, |e| e.seq);
    let last = events.last().map_or(0, |e| e.seq);
    let mut attempt: u32 = 0;
    let mut refused_since: Option<tokio::time::Instant> = None;
    loop {
        attempt += 1;
        let result = sink.send(target, batch_id, events).await;
        let outcome = match &result {
            Ok(()) => "delivered",
            Err(_) => "failed",
        };
        hub.audit(
            Some(&subscription.consumer),
            "feed.deliver",
            Some(target),
            json!({
                "subscription": subscription.id,
                "batch_id": batch_id,
                "first_sequence": first,
                "last_sequence": last,
                "events": events.len(),
                "attempt": attempt,
                "error": result.as_ref().err().map(|e| e.to_string()),
            }),
            outcome,
        );
        let error = match result {
            Ok(()) => return Outcome::Delivered,
            Err(e) => e,
        };
        record_error(hub, subscription, target, &error.to_string());
        hub.metrics.observe_feed_failure(&subscription.id, target);
        match &error {
            SendError::Refused(_) | SendError::Misconfigured(_) => {
                let since = *refused_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= subscription.park_after {
                    let parked = hub.state.save_feed_position(
                        &subscription.id,
                        target,
                        &FeedPosition {
                            position: batch.after,
                            parked: Some(error.to_string()),
                            inflight: Some(batch.upper),
                        },
                    );
                    if parked.is_ok() {
                        tracing::warn!(subscription = %subscription.id, target, error = %error, "feed parked");
                        hub.audit(
                            None,
                            "feed.park",
                            Some(target),
                            json!({"subscription": subscription.id, "batch_id": batch_id, "reason": error.to_string()}),
                            "parked",
                        );
                        return Outcome::Parked;
                    }
                }
            }
            SendError::Retry(_) => refused_since = None,
        }
        if sleep_or_stop(backoff(attempt, subscription.max_backoff), shutdown).await {
            return Outcome::Stopped;
        }
    }
}

/// 0.5 s doubling per attempt up to `cap`, with "full jitter" over the upper half so that
/// many subscriptions recovering at once do not hit a receiver together.
fn backoff(attempt: u32, cap: Duration) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1u32 << attempt.min(20).saturating_sub(1));
    let ceiling = base.min(cap).as_millis() as u64;
    let half = ceiling / 2;
    Duration::from_millis(half + iochub_connectors::retry::jitter(half.max(1)))
}

/// Sleeps; true if the hub is stopping.
async fn sleep_or_stop(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => *shutdown.borrow(),
        _ = wait_true(shutdown) => true,
    }
}

fn record_error(hub: &Hub, subscription: &Subscription, target: &str, message: &str) {
    tracing::warn!(subscription = %subscription.id, target, error = message, "feed delivery");
    hub.feed.update(&subscription.id, target, |r| {
        r.last_error = Some(message.to_string());
        r.last_error_at = Some(Utc::now());
    });
}

/// Resumes every parked target of a subscription; false if there is no such subscription.
pub fn resume(hub: &Hub, subscription: &str) -> Result<usize, HubError> {
    let Some(s) = hub
        .config
        .subscriptions
        .iter()
        .find(|s| s.id == subscription)
    else {
        return Err(HubError::NotFound(format!(
            "no subscription named {subscription:?}"
        )));
    };
    let mut resumed = 0;
    for target in hub.feed_targets(s)? {
        if let Some(mut p) = hub.state.feed_position(&s.id, &target)?
            && p.parked.is_some()
        {
            p.parked = None;
            hub.state.save_feed_position(&s.id, &target, &p)?;
            resumed += 1;
        }
    }
    hub.feed.resumed.notify_waiters();
    Ok(resumed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let cap = Duration::from_secs(300);
        assert!(backoff(1, cap) <= Duration::from_millis(500));
        assert!(backoff(1, cap) >= Duration::from_millis(250));
        assert!(backoff(6, cap) >= Duration::from_secs(8));
        for attempt in [20, 30, 1000] {
            let wait = backoff(attempt, cap);
            assert!(wait <= cap && wait >= cap / 2, "{wait:?}");
        }
    }
}

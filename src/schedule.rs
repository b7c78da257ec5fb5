//! Cron scheduling of pipeline runs.
//!
//! Each pipeline fires on its cron expression, evaluated in the hub's time zone. A pipeline
//! still running when it fires again is skipped, not queued (it never runs twice at once); a
//! global semaphore bounds concurrent runs; an optional jitter spreads runs that share a fire
//! time. After downtime, a pipeline whose fire time passed while the hub was down runs once at
//! start, not once per missed fire. Time comes from a [`Clock`], so tests drive it by hand.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures::future::BoxFuture;
use tokio::sync::{Semaphore, watch};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once `now() >= at`.
    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// Starts one run of the named pipeline; resolves when the run is over.
pub type Dispatch = Arc<dyn Fn(String) -> BoxFuture<'static, ()> + Send + Sync>;
/// Told when a fire is skipped because the pipeline is still running.
pub type OnSkip = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Clone)]
pub struct Job {
    pub name: String,
    pub schedule: cron::Schedule,
}

#[derive(Clone)]
pub struct Settings {
    pub time_zone: Tz,
    pub max_concurrent_runs: usize,
    pub jitter: Duration,
}

/// The first fire time strictly after `after`, in the schedule's time zone.
pub fn next_fire(schedule: &cron::Schedule, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
    schedule
        .after(&after.with_timezone(&tz))
        .next()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether a fire time passed between the last run's start and `now` (the hub was down or busy
/// then). Those fires are owed exactly one run.
pub fn missed_fire(
    schedule: &cron::Schedule,
    last_run: DateTime<Utc>,
    now: DateTime<Utc>,
    tz: Tz,
) -> bool {
    next_fire(schedule, last_run, tz).is_some_and(|t| t <= now)
}

/// The pipelines to run as soon as the hub starts: those that never ran (when
/// `ingest_on_start`), and those whose fire time passed while the hub was down, once each
/// however many fires were missed.
pub fn due_at_start(
    jobs: &[(Job, Option<DateTime<Utc>>)],
    now: DateTime<Utc>,
    tz: Tz,
    ingest_on_start: bool,
) -> Vec<String> {
    jobs.iter()
        .filter(|(job, last_run)| match last_run {
            None => ingest_on_start,
            Some(last) => missed_fire(&job.schedule, *last, now, tz),
        })
        .map(|(job, _)| job.name.clone())
        .collect()
}

pub struct Scheduler {
    jobs: Vec<Job>,
    clock: Arc<dyn Clock>,
    dispatch: Dispatch,
    on_skip: OnSkip,
    settings: Settings,
    running: Arc<Mutex<HashSet<String>>>,
    permits: Arc<Semaphore>,
    /// Each job's next fire, fixed when the scheduler is made (so no fire between making and
    /// running it is lost).
    next: Vec<Option<DateTime<Utc>>>,
}

impl Scheduler {
    pub fn new(
        jobs: Vec<Job>,
        clock: Arc<dyn Clock>,
        dispatch: Dispatch,
        on_skip: OnSkip,
        settings: Settings,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(settings.max_concurrent_runs.max(1)));
        let now = clock.now();
        let next = jobs
            .iter()
            .map(|j| next_fire(&j.schedule, now, settings.time_zone))
            .collect();
        Scheduler {
            next,
            jobs,
            clock,
            dispatch,
            on_skip,
            settings,
            running: Arc::new(Mutex::new(HashSet::new())),
            permits,
        }
    }

    /// Fires `start_now` at once (missed fires, first runs), then every job on its schedule,
    /// until `shutdown` turns true. Runs already started are not waited for here.
    pub async fn run(self, start_now: Vec<String>, mut shutdown: watch::Receiver<bool>) {
        for name in start_now {
            self.fire(&name);
        }
        let tz = self.settings.time_zone;
        let mut next = self.next.clone();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let Some(at) = next.iter().flatten().min().copied() else {
                // No job will ever fire again (all schedules exhausted); wait for shutdown.
                let _ = shutdown.changed().await;
                return;
            };
            tokio::select! {
                _ = self.clock.sleep_until(at) => {}
                _ = shutdown.changed() => continue,
            }
            let now = self.clock.now();
            for (job, due) in self.jobs.iter().zip(next.iter_mut()) {
                if due.is_some_and(|t| t <= now) {
                    self.fire(&job.name);
                    *due = next_fire(&job.schedule, now, tz);
                }
            }
        }
    }

    fn fire(&self, name: &str) {
        {
            let Ok(mut running) = self.running.lock() else {
                return;
            };
            if !running.insert(name.to_string()) {
                tracing::info!(
                    pipeline = name,
                    "still running from its last fire; this fire is skipped"
                );
                (self.on_skip)(name);
                return;
            }
        }
        let name = name.to_string();
        let running = self.running.clone();
        let permits = self.permits.clone();
        let dispatch = self.dispatch.clone();
        let jitter = self.settings.jitter;
        tokio::spawn(async move {
            if let Ok(_permit) = permits.acquire_owned().await {
                if !jitter.is_zero() {
                    let wait = iochub_connectors::retry::jitter(jitter.as_millis() as u64);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                dispatch(name.clone()).await;
            }
            if let Ok(mut r) = running.lock() {
                r.remove(&name);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn schedule(text: &str) -> cron::Schedule {
        cron::Schedule::from_str(text).unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn fires_in_the_hub_time_zone() {
        // 07:00 every day in Hà Nội is 00:00 UTC.
        let s = schedule("0 0 7 * * *");
        let next = next_fire(&s, at("2025-04-01T05:00:00Z"), chrono_tz::Asia::Ho_Chi_Minh).unwrap();
        assert_eq!(next, at("2025-04-02T00:00:00Z"));
    }

    #[test]
    fn a_fire_missed_during_downtime_is_owed() {
        let s = schedule("0 0 * * * *");
        let tz = chrono_tz::Asia::Ho_Chi_Minh;
        assert!(missed_fire(
            &s,
            at("2025-04-01T05:10:00Z"),
            at("2025-04-01T09:30:00Z"),
            tz
        ));
        assert!(!missed_fire(
            &s,
            at("2025-04-01T05:10:00Z"),
            at("2025-04-01T05:50:00Z"),
            tz
        ));
    }
}

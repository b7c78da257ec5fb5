//! The scheduler driven by a hand-controlled clock: no sleeps decide the outcome.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use iochub::schedule::{self, Dispatch, Job, OnSkip, Scheduler, Settings};

use crate::common::ManualClock;
use tokio::sync::{Semaphore, watch};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn job(name: &str, cron: &str) -> Job {
    Job {
        name: name.into(),
        schedule: cron::Schedule::from_str(cron).unwrap(),
    }
}

/// Records runs; each run holds a permit of `gate` until the test releases it.
#[derive(Default)]
struct Recorder {
    started: Mutex<HashMap<String, usize>>,
    running: AtomicUsize,
    most_at_once: AtomicUsize,
    skipped: Mutex<Vec<String>>,
}

fn dispatch(recorder: Arc<Recorder>, gate: Arc<Semaphore>) -> Dispatch {
    Arc::new(move |name: String| {
        let recorder = recorder.clone();
        let gate = gate.clone();
        Box::pin(async move {
            *recorder.started.lock().unwrap().entry(name).or_default() += 1;
            let now = recorder.running.fetch_add(1, Ordering::SeqCst) + 1;
            recorder.most_at_once.fetch_max(now, Ordering::SeqCst);
            let _ = gate.acquire().await.map(|p| p.forget());
            recorder.running.fetch_sub(1, Ordering::SeqCst);
        })
    })
}

fn on_skip(recorder: Arc<Recorder>) -> OnSkip {
    Arc::new(move |name: &str| recorder.skipped.lock().unwrap().push(name.to_string()))
}

fn settings(max: usize) -> Settings {
    Settings {
        time_zone: chrono_tz::Asia::Ho_Chi_Minh,
        max_concurrent_runs: max,
        jitter: Duration::ZERO,
    }
}

/// Waits (in real time, briefly) until `check` holds; the scheduler runs on other tasks.
async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached: {what}");
}

fn started(r: &Recorder, name: &str) -> usize {
    r.started.lock().unwrap().get(name).copied().unwrap_or(0)
}

#[tokio::test]
async fn runs_on_each_fire_and_never_overlaps_itself() {
    let clock = ManualClock::new("2025-04-01T00:00:30Z");
    let recorder = Arc::new(Recorder::default());
    let gate = Arc::new(Semaphore::new(0));
    let scheduler = Scheduler::new(
        vec![job("every_minute", "0 * * * * *")],
        clock.clone(),
        dispatch(recorder.clone(), gate.clone()),
        on_skip(recorder.clone()),
        settings(4),
    );
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(scheduler.run(vec![], stopped));
    tokio::task::yield_now().await;
    assert_eq!(
        started(&recorder, "every_minute"),
        0,
        "nothing before the first fire"
    );

    clock.advance(chrono::Duration::seconds(30));
    until("step 1", || started(&recorder, "every_minute") == 1).await;
    // The run is still going when the next two fires come: both are skipped, not queued.
    clock.advance(chrono::Duration::minutes(1));
    until("step 2", || recorder.skipped.lock().unwrap().len() == 1).await;
    clock.advance(chrono::Duration::minutes(1));
    until("step 3", || recorder.skipped.lock().unwrap().len() == 2).await;
    assert_eq!(started(&recorder, "every_minute"), 1);

    gate.add_permits(1);
    until("step 4", || recorder.running.load(Ordering::SeqCst) == 0).await;
    clock.advance(chrono::Duration::minutes(1));
    until("step 5", || started(&recorder, "every_minute") == 2).await;
    assert_eq!(recorder.most_at_once.load(Ordering::SeqCst), 1);
    gate.add_permits(10);
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn the_global_limit_bounds_concurrent_runs() {
    let clock = ManualClock::new("2025-04-01T00:00:30Z");
    let recorder = Arc::new(Recorder::default());
    let gate = Arc::new(Semaphore::new(0));
    let jobs = vec![
        job("a", "0 * * * * *"),
        job("b", "0 * * * * *"),
        job("c", "0 * * * * *"),
    ];
    let scheduler = Scheduler::new(
        jobs,
        clock.clone(),
        dispatch(recorder.clone(), gate.clone()),
        on_skip(recorder.clone()),
        settings(2),
    );
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(scheduler.run(vec![], stopped));
    clock.advance(chrono::Duration::seconds(30));
    until("step 6", || recorder.running.load(Ordering::SeqCst) == 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        recorder.running.load(Ordering::SeqCst),
        2,
        "the third waits for a slot"
    );
    gate.add_permits(1);
    until("step 7", || {
        recorder.started.lock().unwrap().values().sum::<usize>() == 3
    })
    .await;
    assert_eq!(recorder.most_at_once.load(Ordering::SeqCst), 2);
    gate.add_permits(10);
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn missed_fires_after_downtime_run_once_at_start() {
    let tz = chrono_tz::Asia::Ho_Chi_Minh;
    let hourly = job("hourly", "0 0 * * * *");
    let daily = job("daily", "0 0 7 * * *");
    let never = job("never_ran", "0 0 7 * * *");
    // The hub was down from 01:10 to 06:30 UTC: five hourly fires and no daily fire missed.
    let now = at("2025-04-01T06:30:00Z");
    let history = vec![
        (hourly.clone(), Some(at("2025-04-01T01:10:00Z"))),
        (daily.clone(), Some(at("2025-04-01T00:00:05Z"))),
        (never.clone(), None),
    ];
    assert_eq!(
        schedule::due_at_start(&history, now, tz, true),
        vec!["hourly", "never_ran"]
    );
    assert_eq!(
        schedule::due_at_start(&history, now, tz, false),
        vec!["hourly"]
    );

    // Started with what is due, the scheduler runs it once, then only on the next fire.
    let clock = ManualClock::new("2025-04-01T06:30:00Z");
    let recorder = Arc::new(Recorder::default());
    let gate = Arc::new(Semaphore::new(100));
    let scheduler = Scheduler::new(
        vec![hourly],
        clock.clone(),
        dispatch(recorder.clone(), gate),
        on_skip(recorder.clone()),
        settings(2),
    );
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(scheduler.run(vec!["hourly".into()], stopped));
    until("step 8", || started(&recorder, "hourly") == 1).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        started(&recorder, "hourly"),
        1,
        "one catch-up run, not five"
    );
    clock.advance(chrono::Duration::minutes(30));
    until("step 9", || started(&recorder, "hourly") == 2).await;
    stop.send(true).unwrap();
    task.await.unwrap();
}

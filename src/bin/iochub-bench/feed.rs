//! `iochub-bench --feed`: the push feed under load.
//!
//! 1. Backlog: N reports are ingested (in a child process, so this process's peak RSS is the
//!    feed's alone), then a subscription starts from position 0 and delivers all N changes
//!    to a receiver on 127.0.0.1 that verifies every signature. Events per second, peak RSS.
//! 2. Steady: `--steady-batch` reports published every `--steady-batch` ms (1,000 events/s)
//!    for `--steady-seconds`;
//!    the receiver measures each event's latency from its commit (`time`) to its receipt.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use iochub::Hub;
use iochub::config::{self, Overrides};
use serde::Deserialize;
use serde_json::json;

use super::{Args, Rng, peak_rss_mb, report};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The publisher of the steady phase (its token's hash is in the bench config).
pub const PUBLISHER: &str = "bench_pub";
pub const PUBLISHER_TOKEN: &str = "bench-publisher-token-0123456789";

#[derive(Default)]
struct Receiver {
    events: AtomicU64,
    batches: AtomicU64,
    highest: AtomicI64,
    /// Batches that started after a gap (must stay 0).
    gaps: AtomicU64,
    bad_signatures: AtomicU64,
    /// Milliseconds from commit to receipt, while recording.
    latencies: Mutex<Option<Vec<i64>>>,
}

#[derive(Deserialize)]
struct Lite {
    sequence: String,
    time: String,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = chrono::Utc::now().timestamp_millis();
    let verified = standardwebhooks::Webhook::new(SECRET)
        .and_then(|w| w.verify(&body, &headers))
        .is_ok();
    if !verified {
        r.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(events) = serde_json::from_slice::<Vec<Lite>>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let seqs: Vec<i64> = events
        .iter()
        .filter_map(|e| e.sequence.parse().ok())
        .collect();
    if let Some(first) = seqs.first()
        && *first > r.highest.load(Ordering::SeqCst) + 1
    {
        r.gaps.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(last) = seqs.last() {
        r.highest.fetch_max(*last, Ordering::SeqCst);
    }
    if let Ok(mut guard) = r.latencies.lock()
        && let Some(latencies) = guard.as_mut()
    {
        for e in &events {
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&e.time) {
                latencies.push(now - t.timestamp_millis());
            }
        }
    }
    r.events.fetch_add(events.len() as u64, Ordering::Relaxed);
    r.batches.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

async fn wait_for_sequence(r: &Receiver, sequence: i64, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while r.highest.load(Ordering::SeqCst) < sequence {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {sequence} delivered after {limit:?}",
            r.highest.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let hub_dir = args.out.join("hub");
    let marker = hub_dir.join("feed-backlog.count");
    let have = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    if have != Some(args.records) {
        eprintln!("ingesting {} reports in a child process", args.records);
        let status = std::process::Command::new(std::env::current_exe()?)
            .args([
                "--records",
                &args.records.to_string(),
                "--no-queries",
                "--out",
            ])
            .arg(&args.out)
            .stdout(std::process::Stdio::null())
            .status()
            .context("running the ingest")?;
        anyhow::ensure!(status.success(), "the ingest failed");
        std::fs::write(&marker, args.records.to_string())?;
    }
    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config_path = hub_dir.join("config.toml");
    let mut text = std::fs::read_to_string(&config_path)?;
    if let Some(i) = text.find("\n[[subscriptions]]") {
        text.truncate(i);
    }
    text.push_str(&format!(
        "\n[[subscriptions]]\nid = \"bench\"\nconsumer = \"{PUBLISHER}\"\nurl = \"http://{addr}/hook\"\n\
         datasets = [\"reports\"]\nsecret_env = \"IOCHUB_BENCH_FEED_SECRET\"\nbatch_size = {}\n\
         max_batch_delay = \"{}ms\"\n",
        args.feed_batch_size, args.feed_batch_delay_ms
    ));
    std::fs::write(&config_path, text)?;
    let mut config =
        config::load(&config_path, &Overrides::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    for s in &mut config.subscriptions {
        s.secret = Some(SECRET.into());
    }
    let hub = Hub::open(config).await.context("opening the bench hub")?;
    // Start from the beginning every time.
    hub.state
        .save_feed_position("bench", "reports", &iochub::state::FeedPosition::default())?;
    let backlog = hub.feed.changelog.last_seq("reports");
    anyhow::ensure!(
        backlog >= args.records as i64,
        "the change log has {backlog} changes, expected {}",
        args.records
    );

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let loops = iochub::feed::delivery::start(hub.clone(), stopped);
    wait_for_sequence(&receiver, backlog, Duration::from_secs(3600)).await?;
    let backlog_seconds = started.elapsed().as_secs_f64();
    let backlog_rss = peak_rss_mb();
    let backlog_events = receiver.events.load(Ordering::Relaxed);

    // Steady phase: 1,000 events/s in commits of 100.
    *receiver
        .latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))? = Some(Vec::new());
    let consumer = hub
        .config
        .consumers
        .get(PUBLISHER)
        .context("the bench publisher")?
        .clone();
    let mut rng = Rng(99);
    // `steady_batch` events per commit, as many commits a second as make 1,000 events/s.
    let per_commit = args.steady_batch.max(1);
    let mut ticker = tokio::time::interval(Duration::from_millis(per_commit as u64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ticks = args.steady_seconds * 1000 / per_commit;
    let steady_started = Instant::now();
    let mut published = 0usize;
    for tick in 0..ticks {
        ticker.tick().await;
        let records: Vec<serde_json::Value> = (0..per_commit)
            .map(|i| report(args.records + tick * per_commit + i, &mut rng))
            .collect();
        let body = serde_json::to_vec(&records)?;
        let result = hub
            .publish(&consumer, "reports", "application/json", &body)
            .await?;
        published += result.accepted;
    }
    let steady_rate = published as f64 / steady_started.elapsed().as_secs_f64();
    wait_for_sequence(
        &receiver,
        backlog + published as i64,
        Duration::from_secs(120),
    )
    .await?;
    let mut latencies = receiver
        .latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .take()
        .unwrap_or_default();
    latencies.sort_unstable();
    stop.send(true)?;
    for l in loops {
        let _ = l.await;
    }
    let out = json!({
        "backlog": {
            "events": backlog,
            "received": backlog_events,
            "seconds": backlog_seconds,
            "events_per_second": backlog as f64 / backlog_seconds,
            "batch_size": args.feed_batch_size,
            "peak_rss_mb": backlog_rss,
        },
        "steady": {
            "events_per_commit": per_commit,
            "events": published,
            "events_per_second": steady_rate,
            "latency_ms": {
                "p50": percentile(&latencies, 0.50),
                "p99": percentile(&latencies, 0.99),
                "max": latencies.last().copied().unwrap_or(0),
            },
        },
        "batches": receiver.batches.load(Ordering::Relaxed),
        "gaps": receiver.gaps.load(Ordering::Relaxed),
        "bad_signatures": receiver.bad_signatures.load(Ordering::Relaxed),
        "peak_rss_mb": peak_rss_mb(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

//! The `iochub` command.

/// mimalloc: ingest allocates many small values per record; glibc malloc spent a third of
/// the CPU time in the kernel returning memory (measured with /usr/bin/time on 5M records).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;

use iochub::Hub;
use iochub::config::{self, Overrides};
use iochub::schedule::{self, Scheduler};

#[derive(Parser)]
#[command(
    name = "iochub",
    version,
    about = "Data-integration hub for a local Intelligent Operations Centre"
)]
struct Cli {
    /// The hub's config file; pipelines and data paths in it are relative to its folder.
    #[arg(
        long,
        global = true,
        default_value = "config.toml",
        env = "IOCHUB_CONFIG"
    )]
    config: PathBuf,
    /// Use this data directory instead of the config's `hub.data_dir`.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub: ingest on start, then serve the HTTP API and the PostgreSQL endpoint.
    Serve {
        /// Listen here instead of the config's `http.addr`.
        #[arg(long)]
        http_addr: Option<SocketAddr>,
        /// The PostgreSQL endpoint listens here instead of the config's `postgres.addr`.
        #[arg(long)]
        pg_addr: Option<SocketAddr>,
    },
    /// Serve the samples as local network sources (FHIR on /fhir, Open311 on /open311, Frigate
    /// events to the MQTT broker) and run the hub with the demo pipelines pulling from them.
    Demo {
        /// The `[source]` of each dataset that the demo pulls from its local sources.
        #[arg(long, default_value = "demo/sources.toml")]
        sources: PathBuf,
        /// The samples the demo sources serve (relative to the config file's folder).
        #[arg(long, default_value = "samples")]
        samples: PathBuf,
        /// Listen here instead of the config's `http.addr`.
        #[arg(long)]
        http_addr: Option<SocketAddr>,
        /// The PostgreSQL endpoint listens here instead of the config's `postgres.addr`.
        #[arg(long)]
        pg_addr: Option<SocketAddr>,
        /// Do not publish the sample camera events to the MQTT broker.
        #[arg(long)]
        no_mqtt: bool,
    },
    /// Load and check the config and every pipeline; report every problem with file and line.
    Check,
    /// Run one pipeline now and print what it fetched, accepted and rejected.
    Run {
        /// The pipeline (dataset) name.
        pipeline: String,
    },
    /// Run a read-only SQL query over the datasets and print the result as a table (as the
    /// local operator, who holds the data files: nothing is masked).
    Sql {
        /// The query, e.g. "SELECT count(*) FROM citizen_reports".
        query: String,
    },
    /// Generate a periodic report (e.g. `report ioc_operation 2025-04 --out bao_cao.html`)
    /// from the local tables, store it, and write it to a file.
    Report {
        /// The report's name (`reports/<name>.toml`).
        name: String,
        /// The period: 2025-04 (month), 2025-Q2, 2025-H1 or 2025.
        period: String,
        /// html, json, csv or xlsx; by default from the extension of --out.
        #[arg(long)]
        format: Option<String>,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Manage consumer tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Print a new random token for CONSUMER once, and the line to put in config.toml.
    New {
        /// The consumer's id in config.toml.
        consumer: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,deltalake=warn,deltalake_core=warn,datafusion=warn,buoyant_kernel=warn,buoyant_kernel_engine=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let (http_addr, pg_addr) = match &cli.command {
        Command::Serve { http_addr, pg_addr }
        | Command::Demo {
            http_addr, pg_addr, ..
        } => (*http_addr, *pg_addr),
        _ => (None, None),
    };
    let mut overrides = Overrides {
        http_addr,
        pg_addr,
        data_dir: cli.data_dir.clone(),
        sources_overlay: None,
    };
    if let Command::Demo { sources, .. } = &cli.command {
        overrides.sources_overlay = Some(config::resolve_path(&cli.config, sources));
        // The demo keeps its tables apart from the file-based hub's.
        if overrides.data_dir.is_none() {
            overrides.data_dir = Some(config::resolve_path(&cli.config, Path::new("data/demo")));
        }
    }
    if let Command::Token {
        action: TokenAction::New { consumer },
    } = &cli.command
    {
        let token = iochub::sharing::consumers::new_token()?;
        let hash = hex::encode(iochub::sharing::consumers::hash_token(&token));
        println!(
            "token for {consumer} (shown once; give it to the consumer, keep no copy):\n  {token}"
        );
        println!(
            "put this in its [[consumers]] entry in config.toml, instead of token_env:\n  token_sha256 = \"{hash}\""
        );
        return Ok(ExitCode::SUCCESS);
    }
    let config = match config::load(&cli.config, &overrides) {
        Ok(c) => c,
        Err(problems) => {
            eprint!("{problems}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match cli.command {
        Command::Check => {
            println!(
                "{}: ok ({} pipelines: {}; {} reports: {})",
                cli.config.display(),
                config.pipelines.len(),
                config
                    .pipelines
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                config.reports.len(),
                config
                    .reports
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { .. } => serve(config).await,
        Command::Demo {
            samples, no_mqtt, ..
        } => {
            let samples = config::resolve_path(&cli.config, &samples);
            start_demo_sources(&samples, &config, !no_mqtt).await?;
            serve(config).await
        }
        Command::Token { .. } => Ok(ExitCode::SUCCESS),
        Command::Run { pipeline } => {
            let report = match run_on_daemon(&config, &pipeline).await? {
                Some(report) => report,
                None => {
                    let hub = Hub::open(config).await?;
                    hub.run(&pipeline, "cli").await?
                }
            };
            println!(
                "{}: {:?} in {:.2} s: fetched {}, accepted {}, rejected {}{}",
                report.pipeline,
                report.status,
                report.duration_seconds(),
                report.fetched,
                report.accepted,
                report.rejected,
                report
                    .error
                    .as_ref()
                    .map(|e| format!("\nerror: {e}"))
                    .unwrap_or_default()
            );
            Ok(if report.error.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Report {
            name,
            period,
            format,
            out,
        } => {
            let format_text =
                format.or_else(|| out.extension().and_then(|e| e.to_str()).map(str::to_string));
            let format = match format_text.as_deref().map(iochub::report::Format::parse) {
                Some(Some(f)) => f,
                Some(None) => anyhow::bail!(
                    "unsupported format {:?}: html, json, csv or xlsx",
                    format_text.unwrap_or_default()
                ),
                None => iochub::report::Format::Html,
            };
            if config.report(&name).is_none() {
                anyhow::bail!(
                    "no report named {name:?} (reports: {})",
                    config
                        .reports
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let period = iochub::report::Period::parse(&period)?;
            let ingest_first = config.file.hub.ingest_on_start;
            let hub = Hub::open(config).await?;
            // As `serve` does at start: a pipeline that never ran is run once, so a report
            // from a fresh data directory has data (`hub.ingest_on_start = false` skips it).
            if ingest_first {
                for pipeline in &hub.config.pipelines {
                    if hub.last_run(&pipeline.name).is_none() {
                        let run = hub.run(&pipeline.name, "cli").await?;
                        eprintln!(
                            "{}: first run, {:?}: accepted {}, rejected {}",
                            run.pipeline, run.status, run.accepted, run.rejected
                        );
                    }
                }
            }
            let doc = hub.generate_report(&name, &period).await?;
            let bytes = iochub::report::render(&doc, format)?;
            std::fs::write(&out, bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "{}: {} ({} sections{}) written to {}",
                doc.title,
                doc.period_label,
                doc.sections.len(),
                if doc.complete {
                    ""
                } else {
                    ", period not over: provisional"
                },
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Sql { query: sql } => {
            let hub = Hub::open(config).await?;
            let result = hub.sql(&sql).await?;
            let table = arrow::util::pretty::pretty_format_batches(&result.batches)?;
            println!("{table}");
            println!(
                "{} row(s){}",
                result.row_count,
                if result.truncated {
                    " (truncated: raise query.max_rows to see more)"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Where the demo's sources (`demo/sources.toml`) expect the demo servers.
const DEMO_SOURCES_ADDR: &str = "127.0.0.1:8090";

/// Starts the demo's FHIR and Open311 sources, and publishes the sample camera events to the
/// MQTT broker for the `camera_events` pipeline's session (made first, so nothing published
/// is lost however long the hub takes to start).
async fn start_demo_sources(
    samples: &Path,
    config: &config::HubConfig,
    mqtt: bool,
) -> anyhow::Result<()> {
    let data = iochub::demo::DemoData::load(samples)?;
    let addr: SocketAddr = DEMO_SOURCES_ADDR.parse()?;
    let (bound, _task) = iochub::demo::serve(addr, data).await?;
    tracing::info!(
        "demo sources: FHIR at http://{bound}/fhir/Location, Open311 at http://{bound}/open311/requests.json"
    );
    let mqtt_source = config.pipelines.iter().find_map(|p| match &p.source {
        iochub_connectors::SourceConfig::Mqtt(c) if mqtt => Some((
            c.host.clone(),
            c.port,
            c.client_id
                .clone()
                .unwrap_or_else(|| format!("iochub-{}", p.name)),
            c.topic.clone(),
        )),
        _ => None,
    });
    if let Some((host, port, client_id, topic)) = mqtt_source {
        let samples = samples.to_path_buf();
        tokio::spawn(async move {
            let published = async {
                iochub::demo::mqtt::ensure_session(&host, port, &client_id, &topic).await?;
                iochub::demo::mqtt::publish_camera_events(&samples, &host, port, &topic).await
            };
            match published.await {
                Ok(n) => {
                    tracing::info!(messages = n, %topic, "demo: published the sample camera events")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "demo: could not publish the sample camera events (is Mosquitto running?)")
                }
            }
        });
    }
    Ok(())
}

/// Asks a running daemon (at the config's HTTP address) to run the pipeline. `None` when no
/// daemon answers there, so the caller runs it in this process instead.
async fn run_on_daemon(
    config: &config::HubConfig,
    pipeline: &str,
) -> anyhow::Result<Option<iochub::ingest::RunReport>> {
    let url = format!(
        "http://{}/api/v1/pipelines/{pipeline}/run",
        config.file.http.addr
    );
    let client = reqwest::Client::new();
    let mut request = client.post(&url);
    if let Ok(token) = std::env::var("IOCHUB_TOKEN") {
        request = request.bearer_auth(token);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .context("the daemon's answer is not JSON")?;
    if !status.is_success() {
        let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
            " (set IOCHUB_TOKEN to an admin's or the dataset publisher's token)"
        } else {
            ""
        };
        anyhow::bail!(
            "the running hub refused: {}{hint}",
            body["error"]["message"].as_str().unwrap_or("unknown error")
        );
    }
    eprintln!("(run by the hub running at {})", config.file.http.addr);
    Ok(Some(serde_json::from_value(body["run"].clone())?))
}

async fn serve(config: config::HubConfig) -> anyhow::Result<ExitCode> {
    let addr = config.file.http.addr;
    let hub_settings = config.file.hub.clone();
    // Tokens made for consumers whose variable is unset: shown once, kept nowhere.
    for t in &config.generated_tokens {
        eprintln!(
            "token for consumer {} ({} is unset; this token lasts until the hub stops): {}",
            t.consumer, t.env, t.token
        );
    }
    let hub = Hub::open(config).await.context("opening the tables")?;
    match hub.prune_audit() {
        Ok(0) => {}
        Ok(n) => tracing::info!(lines = n, "audit lines past retention removed"),
        Err(e) => tracing::warn!(error = %e, "could not apply the audit retention"),
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!("listening on http://{bound}");
    let postgres = if hub.config.file.postgres.enabled {
        let endpoint = iochub::pg::bind(&hub)
            .await
            .context("starting the PostgreSQL endpoint")?;
        tracing::info!(
            "PostgreSQL protocol on {} (user = consumer id, password = its token)",
            endpoint.local_addr()?
        );
        Some(tokio::spawn(endpoint.run()))
    } else {
        None
    };

    let (stop_scheduler, scheduler_stopped) = tokio::sync::watch::channel(false);
    let scheduler = start_scheduler(&hub, &hub_settings);
    let scheduler_task = tokio::spawn(scheduler.0.run(scheduler.1, scheduler_stopped.clone()));
    let (reports, reports_now) = report_scheduler(&hub);
    let reports_task = tokio::spawn(reports.run(reports_now, scheduler_stopped.clone()));
    // The feed's delivery loops stop with the scheduler; an unacknowledged batch is sent
    // again after the restart (at least once).
    let overdue = iochub::overdue::start(hub.clone(), scheduler_stopped.clone());
    let deliveries = iochub::feed::delivery::start(hub.clone(), scheduler_stopped);

    let server = axum::serve(
        listener,
        iochub::http::router(hub.clone())
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal());
    server.await?;
    if let Some(postgres) = postgres {
        postgres.abort();
    }
    // The signal arrived and the server stopped accepting requests: no new runs start, and
    // runs in progress get the grace period. An abandoned run commits nothing.
    hub.begin_shutdown();
    let _ = stop_scheduler.send(true);
    let _ = scheduler_task.await;
    let _ = reports_task.await;
    for d in deliveries {
        let _ = d.await;
    }
    if let Some(o) = overdue {
        let _ = o.await;
    }
    let grace = std::time::Duration::from_secs(hub_settings.shutdown_grace_seconds);
    if hub.wait_idle(grace).await {
        tracing::info!("all runs finished; bye");
    } else {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "runs still in progress were abandoned; nothing of them was committed"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The scheduler for every pipeline, and the pipelines to run at once: those never run (when
/// `ingest_on_start`) and those whose fire time passed while the hub was down.
fn start_scheduler(hub: &Arc<Hub>, settings: &config::HubSection) -> (Scheduler, Vec<String>) {
    let tz = hub.config.time_zone;
    let jobs: Vec<schedule::Job> = hub
        .config
        .pipelines
        .iter()
        .filter_map(|p| {
            Some(schedule::Job {
                name: p.name.clone(),
                schedule: p.schedule.clone()?,
            })
        })
        .collect();
    let history: Vec<_> = jobs
        .iter()
        .map(|j| (j.clone(), hub.last_run(&j.name).map(|r| r.started_at)))
        .collect();
    let start_now =
        schedule::due_at_start(&history, chrono::Utc::now(), tz, settings.ingest_on_start);
    if !start_now.is_empty() {
        tracing::info!(pipelines = ?start_now, "running now: never run, or a scheduled run was missed while the hub was down");
    }
    let for_dispatch = hub.clone();
    let dispatch: schedule::Dispatch = Arc::new(move |name: String| {
        let hub = for_dispatch.clone();
        Box::pin(async move {
            if let Err(e) = hub.try_run(&name, "schedule").await {
                tracing::info!(pipeline = %name, reason = %e, "scheduled run not started");
            }
        })
    });
    let for_skip = hub.clone();
    let on_skip: schedule::OnSkip = Arc::new(move |name: &str| for_skip.metrics.observe_skip(name));
    let scheduler = Scheduler::new(
        jobs,
        Arc::new(schedule::SystemClock),
        dispatch,
        on_skip,
        schedule::Settings {
            time_zone: tz,
            max_concurrent_runs: settings.max_concurrent_runs,
            jitter: std::time::Duration::from_secs(settings.jitter_seconds),
        },
    );
    (scheduler, start_now)
}

/// A second scheduler, for the reports that have a `schedule`: each fire generates the
/// periods that have just ended (`Hub::generate_ended_reports`). At start every scheduled
/// report is fired once, so a period that ended while the hub was down is not missed.
fn report_scheduler(hub: &Arc<Hub>) -> (Scheduler, Vec<String>) {
    let jobs: Vec<schedule::Job> = hub
        .config
        .reports
        .iter()
        .filter_map(|r| {
            Some(schedule::Job {
                name: r.name.clone(),
                schedule: r.schedule.clone()?,
            })
        })
        .collect();
    let start_now = jobs.iter().map(|j| j.name.clone()).collect();
    let for_dispatch = hub.clone();
    let dispatch: schedule::Dispatch = Arc::new(move |name: String| {
        let hub = for_dispatch.clone();
        Box::pin(async move {
            match hub.generate_ended_reports(&name).await {
                Ok(periods) if periods.is_empty() => {}
                Ok(periods) => {
                    let periods: Vec<String> = periods.iter().map(|p| p.to_string()).collect();
                    tracing::info!(report = %name, ?periods, "scheduled report generated");
                }
                Err(e) => tracing::warn!(report = %name, error = %e, "scheduled report failed"),
            }
        })
    });
    let on_skip: schedule::OnSkip = Arc::new(|name: &str| {
        tracing::info!(
            report = name,
            "report still generating; this fire is skipped"
        );
    });
    let scheduler = Scheduler::new(
        jobs,
        Arc::new(schedule::SystemClock),
        dispatch,
        on_skip,
        schedule::Settings {
            time_zone: hub.config.time_zone,
            // Reports are heavy queries; one at a time keeps them off the ingest's way.
            max_concurrent_runs: 1,
            jitter: std::time::Duration::ZERO,
        },
    );
    (scheduler, start_now)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the hub");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: no new runs; waiting for runs in progress");
}

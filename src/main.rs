//! The `iochub` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use iochub::Hub;
use iochub::config::{self, Overrides};

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
    /// Run the hub: ingest on start, then serve the HTTP API.
    Serve {
        /// Listen here instead of the config's `http.addr`.
        #[arg(long)]
        http_addr: Option<SocketAddr>,
    },
    /// Load and check the config and every pipeline; report every problem with file and line.
    Check,
    /// Run one pipeline now and print what it fetched, accepted and rejected.
    Run {
        /// The pipeline (dataset) name.
        pipeline: String,
    },
    /// Run a read-only SQL query over the datasets and print the result as a table.
    Sql {
        /// The query, e.g. "SELECT count(*) FROM citizen_reports".
        query: String,
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
    let http_addr = match &cli.command {
        Command::Serve { http_addr } => *http_addr,
        _ => None,
    };
    let overrides = Overrides {
        http_addr,
        data_dir: cli.data_dir.clone(),
    };
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
                "{}: ok ({} pipelines: {})",
                cli.config.display(),
                config.pipelines.len(),
                config
                    .pipelines
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { .. } => serve(config).await,
        Command::Run { pipeline } => {
            let hub = Hub::open(config).await?;
            let report = hub.run(&pipeline).await?;
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

async fn serve(config: config::HubConfig) -> anyhow::Result<ExitCode> {
    let addr = config.file.http.addr;
    let ingest_on_start = config.file.hub.ingest_on_start;
    let hub = Hub::open(config).await.context("opening the tables")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!("listening on http://{bound}");
    if ingest_on_start {
        let hub = hub.clone();
        tokio::spawn(async move {
            let reports = hub.run_all().await;
            tracing::info!(pipelines = reports.len(), "start-up ingest finished");
        });
    }
    axum::serve(listener, iochub::http::router(hub))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

//! `iochub-bench`: end-to-end ingest and query benchmark on synthetic citizen reports.
//!
//! Generates N reports as JSON lines (Vietnamese text, ~670 bytes each), ingests them through
//! the real pipeline (file connector → JSON Schema validation with formats → Arrow → Delta
//! table), then runs the four queries of `bench/queries.sql`. Prints one JSON object. Run it
//! through `bench/run.sh`, which also measures DuckDB and Polars on the same file.
//! `--feed` measures the push feed instead (see `feed.rs`).

mod feed;

/// mimalloc: ingest allocates many small values per record; glibc malloc spent a third of
/// the CPU time in the kernel returning memory (measured with /usr/bin/time on 5M records).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use iochub::Hub;
use iochub::config::{self, Overrides};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Ingest and query benchmark on synthetic citizen reports")]
struct Args {
    /// Number of reports to generate.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Working folder (the JSONL file, the bench hub and its tables).
    #[arg(long, default_value = "/var/tmp/iochub-bench")]
    out: PathBuf,
    /// Ingest into a dataset keyed by service_request_id (MERGE) instead of appending.
    #[arg(long)]
    keyed: bool,
    /// The queries file.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/queries.sql"))]
    queries: PathBuf,
    /// Skip the queries (for memory measurements of ingest alone).
    #[arg(long)]
    no_queries: bool,
    /// Also print each query's `EXPLAIN ANALYZE` (to stderr), for profiling.
    #[arg(long)]
    explain: bool,
    /// Also time each query in a bare DataFusion context over the table's Parquet files
    /// (Parquet filter pushdown off and on), to tell the hub's own cost from the engine's.
    #[arg(long)]
    compare: bool,
    /// Query the table a previous run left instead of ingesting again.
    #[arg(long)]
    reuse: bool,
    /// Timed runs per query (the median is reported), after one warm-up run. Shared
    /// virtual machines vary by a third between runs; more runs steady the median.
    #[arg(long, default_value_t = 15)]
    repeat: usize,
    /// Run only the queries whose name contains this (for profiling one query).
    #[arg(long)]
    only: Option<String>,
    /// Measure the push feed: deliver the backlog of `--records` changes, then a steady
    /// 1,000 events/s.
    #[arg(long)]
    feed: bool,
    #[arg(long, default_value_t = 1000)]
    feed_batch_size: usize,
    #[arg(long, default_value_t = 200)]
    feed_batch_delay_ms: u64,
    /// Length of the feed's steady phase.
    #[arg(long, default_value_t = 30)]
    steady_seconds: usize,
    /// Events per publish in the steady phase (one commit each, every this-many ms).
    #[arg(long, default_value_t = 200)]
    steady_batch: usize,
}

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Phản ánh hiện trường (benchmark)",
  "type": "object",
  "required": ["service_request_id", "service_code", "description", "status", "requested_datetime", "x_submitter"],
  "properties": {
    "service_request_id": {"type": "string", "pattern": "^BPT-[0-9]{4}-[0-9]{7}$"},
    "jurisdiction_id": {"type": "string"},
    "service_code": {"enum": ["LCLLD", "VPQC", "TTBB", "XDKP", "XRAC", "NTHAI", "KHAC"], "type": "string"},
    "service_name": {"type": "string"},
    "description": {"type": "string", "minLength": 10, "maxLength": 4000},
    "status": {"type": "string", "enum": ["open", "closed"]},
    "status_notes": {"type": ["string", "null"]},
    "agency_responsible": {"type": "string"},
    "service_notice": {"type": ["string", "null"]},
    "requested_datetime": {"type": "string", "format": "date-time"},
    "updated_datetime": {"type": ["string", "null"], "format": "date-time"},
    "expected_datetime": {"type": ["string", "null"], "format": "date-time"},
    "address": {"type": ["string", "null"]},
    "address_id": {"type": ["string", "null"]},
    "zipcode": {"type": ["string", "null"]},
    "lat": {"type": ["number", "null"], "minimum": -90, "maximum": 90},
    "long": {"type": ["number", "null"], "minimum": -180, "maximum": 180},
    "media_url": {"type": ["string", "null"], "format": "uri"},
    "x_status_detail": {"type": "string", "enum": ["moi_tiep_nhan", "dang_xu_ly", "da_xu_ly"]},
    "x_channel": {"type": "string"},
    "x_language": {"type": "string"},
    "x_reported_commune": {"type": ["string", "null"]},
    "x_submitter": {
      "type": "object",
      "required": ["full_name", "phone"],
      "properties": {
        "full_name": {"type": "string", "minLength": 1},
        "address": {"type": ["string", "null"]},
        "phone": {"type": "string", "pattern": "^0[0-9]{9}$"}
      }
    }
  }
}"#;

const COMMUNES: &[&str] = &[
    "Thị trấn Tân Phú",
    "Xã Thuận Lợi",
    "Xã Đồng Tâm",
    "Xã Tân Phước",
    "Xã Tân Hưng",
    "Xã Tân Lợi",
    "Xã Tân Lập",
    "Xã Tân Hòa",
    "Xã Thuận Phú",
    "Xã Đồng Tiến",
    "Xã Tân Tiến",
];
const CATEGORIES: &[(&str, &str, &str)] = &[
    (
        "LCLLD",
        "Lấn chiếm lòng lề đường",
        "Hộ kinh doanh lấn chiếm vỉa hè, để bàn ghế tràn ra lòng đường",
    ),
    (
        "VPQC",
        "Vi phạm quảng cáo",
        "Biển quảng cáo treo trên cột điện, che khuất biển báo ở ngã tư",
    ),
    (
        "TTBB",
        "Tụ tập buôn bán",
        "Tụ tập buôn bán hàng rong trước cổng trường vào giờ tan học",
    ),
    (
        "XDKP",
        "Xây dựng không phép",
        "Công trình đang xây dựng không phép, lấn hành lang đường bộ",
    ),
    (
        "XRAC",
        "Xả rác",
        "Có người đổ rác thải sinh hoạt ven đường, bốc mùi hôi thối",
    ),
    (
        "NTHAI",
        "Nước thải",
        "Nước thải từ cơ sở chăn nuôi chảy ra mương, gây ô nhiễm",
    ),
    (
        "KHAC",
        "Khác",
        "Đèn chiếu sáng đường liên ấp hư hỏng nhiều ngày chưa sửa",
    ),
];
const NAMES: &[&str] = &[
    "Nguyễn Văn An",
    "Trần Thị Bình",
    "Lê Hoàng Cường",
    "Phạm Thị Dung",
    "Hoàng Văn Em",
    "Võ Thị Hồng",
];

/// SplitMix64: deterministic, so every run and every peer sees the same file.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Report number `i` (0-based) of the synthetic stream.
fn report(i: usize, rng: &mut Rng) -> serde_json::Value {
    let start = chrono::DateTime::parse_from_rfc3339("2025-01-01T07:00:00+07:00")
        .expect("a valid constant");
    let (code, name, text) = CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize];
    let commune = COMMUNES[rng.below(COMMUNES.len() as u64) as usize];
    let requested = start + chrono::Duration::minutes(rng.below(181 * 24 * 60) as i64);
    let closed = rng.below(10) < 7;
    let updated = requested + chrono::Duration::hours(2 + rng.below(24 * 7) as i64);
    json!({
        "service_request_id": format!("BPT-2025-{:07}", i + 1),
        "jurisdiction_id": "dongphu.binhphuoc.gov.vn",
        "service_code": code,
        "service_name": name,
        "description": text,
        "status": if closed { "closed" } else { "open" },
        "status_notes": if closed { json!("Đã xử lý xong") } else { json!(null) },
        "agency_responsible": format!("UBND {}", commune.to_lowercase()),
        "requested_datetime": requested.to_rfc3339(),
        "updated_datetime": updated.to_rfc3339(),
        "address": format!("Tổ {}, ấp {}, {}", 1 + rng.below(12), 1 + rng.below(8), commune),
        "lat": (1_130_000 + rng.below(36_000)) as f64 / 100_000.0,
        "long": (10_676_000 + rng.below(38_000)) as f64 / 100_000.0,
        "media_url": null,
        "x_status_detail": if closed { "da_xu_ly" } else { "dang_xu_ly" },
        "x_channel": "app",
        "x_language": "vi",
        "x_reported_commune": commune,
        "x_submitter": {
            "full_name": NAMES[rng.below(NAMES.len() as u64) as usize],
            "address": null,
            "phone": format!("09{:08}", rng.below(100_000_000)),
        },
    })
}

fn generate(path: &Path, records: usize) -> anyhow::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut rng = Rng(20250401);
    let mut bytes = 0u64;
    for i in 0..records {
        let line = report(i, &mut rng).to_string();
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        bytes += line.len() as u64 + 1;
    }
    out.flush()?;
    Ok(bytes)
}

fn write_hub(dir: &Path, jsonl: &Path, keyed: bool) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("pipelines"))?;
    std::fs::create_dir_all(dir.join("schemas"))?;
    std::fs::write(dir.join("schemas/report.schema.json"), SCHEMA)?;
    let key = if keyed {
        "key = [\"service_request_id\"]\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join("pipelines/reports.toml"),
        format!(
            "name = \"reports\"\ntitle = \"Phản ánh (benchmark)\"\nsector = \"citizen_feedback\"\n\
             schema = \"../schemas/report.schema.json\"\n{key}sharing = \"default\"\npublishers = [\"{publisher}\"]\nschedule = \"0 0 * * * *\"\n\n\
             [source]\nkind = \"file\"\npath = {:?}\nformat = \"jsonl\"\n",
            jsonl.display().to_string(),
            publisher = feed::PUBLISHER,
        ),
    )?;
    let config = dir.join("config.toml");
    let token_hash = hex::encode(iochub::sharing::consumers::hash_token(
        feed::PUBLISHER_TOKEN,
    ));
    std::fs::write(
        &config,
        format!(
            "[hub]\nid = \"bench\"\nname = \"Benchmark\"\ningest_on_start = false\n\n[query]\nmax_rows = 100000\n\n\
             [organisation]\nname = \"Bench\"\nlevel = \"district\"\nfallback_unit = \"VP\"\n\n\
             [[organisation.units]]\nid = \"VP\"\nname = \"Văn phòng\"\n\n\
             [[consumers]]\nid = \"{}\"\nagency = \"Benchmark\"\nrole = \"publisher\"\ntoken_sha256 = \"{token_hash}\"\n",
            feed::PUBLISHER
        ),
    )?;
    Ok(config)
}

/// The median time of `runs` runs of `run`, after one warm-up run that is not timed.
async fn median_seconds(
    runs: usize,
    mut run: impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    run().await?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        run().await?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The median of `runs` runs of `sql` in a plain DataFusion context with the table's
/// Parquet files registered as `reports` (a table that was only appended to, so every file
/// in its folder is live).
async fn bare_datafusion(
    table: &Path,
    sql: &str,
    pushdown: bool,
    runs: usize,
) -> anyhow::Result<f64> {
    use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
    let config = SessionConfig::new()
        .set_bool("datafusion.execution.parquet.pushdown_filters", pushdown)
        .set_bool("datafusion.execution.parquet.reorder_filters", pushdown);
    let ctx = SessionContext::new_with_config(config);
    ctx.register_parquet(
        "reports",
        table.to_string_lossy().as_ref(),
        ParquetReadOptions::default(),
    )
    .await?;
    median_seconds(runs, async || {
        ctx.sql(sql).await?.collect().await?;
        Ok(())
    })
    .await
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn dir_bytes(dir: &Path, extension: &str) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                total += dir_bytes(&p, extension);
            } else if p.extension().is_some_and(|x| x == extension) {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

fn parse_queries(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("-- name:") {
            out.push((name.trim().to_string(), String::new()));
        } else if let Some((_, sql)) = out.last_mut()
            && !line.trim_start().starts_with("--")
        {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    if args.feed {
        return feed::run(&args).await;
    }
    let jsonl = args.out.join("reports.jsonl");
    let marker = args.out.join("reports.count");
    let have = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    if have != Some(args.records) || !jsonl.exists() {
        eprintln!(
            "generating {} reports into {}",
            args.records,
            jsonl.display()
        );
        generate(&jsonl, args.records)?;
        std::fs::write(&marker, args.records.to_string())?;
    }
    let bytes = std::fs::metadata(&jsonl)?.len();
    let hub_dir = args.out.join("hub");
    let reuse = args.reuse && hub_dir.join("data/tables/reports/_delta_log").is_dir();
    if !reuse {
        let _ = std::fs::remove_dir_all(&hub_dir);
    }
    let config_path = write_hub(&hub_dir, &jsonl, args.keyed)?;
    let config =
        config::load(&config_path, &Overrides::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let hub = Hub::open(config).await.context("opening the bench hub")?;

    let started = Instant::now();
    if !reuse {
        let report = hub.run("reports", "test").await?;
        anyhow::ensure!(report.error.is_none(), "ingest failed: {:?}", report.error);
        anyhow::ensure!(
            report.accepted == args.records,
            "accepted {} of {}",
            report.accepted,
            args.records
        );
    }
    let ingest_seconds = started.elapsed().as_secs_f64();
    let ingest_rss = peak_rss_mb();

    let mut queries = serde_json::Map::new();
    if args.compare {
        // What a query costs the hub beyond reading data: its session and catalog
        // (`SELECT 1`), then those plus setting up a scan of the table (one batch read).
        for sql in ["SELECT 1", "SELECT service_code FROM reports LIMIT 1"] {
            let seconds = median_seconds(21, async || {
                hub.sql(sql).await?;
                Ok(())
            })
            .await?;
            eprintln!("{sql}: hub {:.2} ms", seconds * 1e3);
        }
    }
    if !args.no_queries {
        let text = std::fs::read_to_string(&args.queries)
            .with_context(|| format!("reading {}", args.queries.display()))?;
        for (name, sql) in parse_queries(&text) {
            if args
                .only
                .as_ref()
                .is_some_and(|only| !name.contains(only.as_str()))
            {
                continue;
            }
            let mut rows = 0;
            let seconds = median_seconds(args.repeat, async || {
                rows = hub
                    .sql(&sql)
                    .await
                    .with_context(|| format!("query {name}"))?
                    .row_count;
                Ok(())
            })
            .await?;
            if args.explain {
                let plan = hub
                    .sql(&format!("EXPLAIN ANALYZE {sql}"))
                    .await
                    .with_context(|| format!("explaining {name}"))?;
                let text = iochub::query::to_csv(&plan)?;
                eprintln!("== {name}\n{}", String::from_utf8_lossy(&text));
            }
            if args.compare {
                let table = hub_dir.join("data/tables/reports");
                for pushdown in [false, true] {
                    let bare = bare_datafusion(&table, &sql, pushdown, args.repeat).await?;
                    eprintln!(
                        "{name}: hub {:.1} ms, bare DataFusion (pushdown {pushdown}) {:.1} ms",
                        seconds * 1e3,
                        bare * 1e3
                    );
                }
            }
            queries.insert(name, json!({"seconds": seconds, "rows": rows}));
        }
    }
    let out = json!({
        "records": args.records,
        "bytes": bytes,
        "keyed": args.keyed,
        "ingest_seconds": ingest_seconds,
        "records_per_second": args.records as f64 / ingest_seconds,
        "mb_per_second": bytes as f64 / 1e6 / ingest_seconds,
        "peak_rss_mb": ingest_rss,
        "parquet_bytes": dir_bytes(&hub_dir.join("data/tables/reports"), "parquet"),
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "queries": queries,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

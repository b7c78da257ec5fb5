//! `config.toml`: the hub itself, its organisation, limits, and (later) its consumers.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct HubFile {
    pub hub: HubSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub query: QuerySection,
    pub organisation: Organisation,
    /// Who may call the API: the managing office, the departments, agencies, the province.
    #[serde(default)]
    pub consumers: Vec<crate::sharing::ConsumerConfig>,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub sharing: SharingSection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub calendar: CalendarSection,
    /// Push feeds: who receives every change, where, signed with which secret.
    #[serde(default)]
    pub subscriptions: Vec<crate::feed::SubscriptionConfig>,
    /// The PostgreSQL wire-protocol endpoint.
    #[serde(default)]
    pub postgres: PostgresSection,
    /// Named SQL views over the datasets (e.g. open overdue reports per unit), in every
    /// reader's catalog, over what that reader may see.
    #[serde(default)]
    pub views: Vec<ViewConfig>,
    /// Watching for items past their deadline: a gauge per unit, and a webhook per new one.
    #[serde(default)]
    pub overdue: Option<OverdueConfig>,
    /// Periodic reports (`reports/*.toml`).
    #[serde(default)]
    pub reports: ReportsSection,
}

/// `[reports]`: where the report definitions are.
#[derive(Debug, Clone, Deserialize)]
pub struct ReportsSection {
    /// Folder of report definitions (`*.toml`), relative to the config file.
    #[serde(default = "default_reports_dir")]
    pub dir: PathBuf,
}

fn default_reports_dir() -> PathBuf {
    "reports".into()
}

impl Default for ReportsSection {
    fn default() -> Self {
        ReportsSection {
            dir: default_reports_dir(),
        }
    }
}

/// `[overdue]`: an SQL query (run as the IOC) whose rows are the items overdue now, each
/// with an `id` and a `unit` column; any other columns go into the notification as they are.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct OverdueConfig {
    pub sql: String,
    #[serde(default = "default_check_seconds")]
    pub check_seconds: u64,
    /// Where each newly overdue item is announced (a POST of JSON), once.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Environment variable holding a `whsec_...` secret: the POST is then signed the
    /// Standard Webhooks way, like the feed.
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default = "default_webhook_timeout")]
    pub timeout_seconds: u64,
}

fn default_check_seconds() -> u64 {
    60
}
fn default_webhook_timeout() -> u64 {
    10
}

/// `[[views]]`: a SELECT over datasets. Each reader plans it over its own catalog, so masks
/// and visibility hold; a reader who cannot see a table it reads does not have the view.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ViewConfig {
    pub name: String,
    /// Vietnamese, for the catalog and the console.
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub sql: String,
}

/// `[postgres]`: where psql and BI tools connect (user = consumer id, password = token).
#[derive(Debug, Clone, Deserialize)]
pub struct PostgresSection {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Never 5432 by default: a real PostgreSQL may hold it.
    #[serde(default = "default_pg_addr")]
    pub addr: SocketAddr,
    /// PEM certificate chain and PKCS#8 key, relative to the config file.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Refuse a client that did not start TLS before sending its password.
    #[serde(default)]
    pub require_tls: bool,
    #[serde(default = "default_pg_connections")]
    pub max_connections: usize,
}

fn default_pg_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5433))
}
fn default_pg_connections() -> usize {
    64
}

impl Default for PostgresSection {
    fn default() -> Self {
        PostgresSection {
            enabled: true,
            addr: default_pg_addr(),
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            max_connections: default_pg_connections(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CalendarSection {
    /// The working-day calendar (holidays, make-up Saturdays), relative to the config file.
    /// Without one, working days are Monday to Friday.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Count the day of receipt as the first working day (default: it does not count).
    #[serde(default)]
    pub receipt_day_counts: bool,
    /// Where a deadline ends on its last day: `"end_of_day"` (default) or `"same_time"`.
    #[serde(default)]
    pub deadline_ends: crate::calendar::DeadlineEnd,
}

impl CalendarSection {
    pub fn rule(&self) -> crate::calendar::DeadlineRule {
        crate::calendar::DeadlineRule {
            receipt_day_counts: self.receipt_day_counts,
            ends: self.deadline_ends,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSection {
    /// Requests per minute per consumer, on average.
    #[serde(default = "default_rate")]
    pub requests_per_minute: u32,
    /// Requests a consumer may make at once above the average.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_rate() -> u32 {
    600
}
fn default_burst() -> u32 {
    60
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            requests_per_minute: default_rate(),
            burst: default_burst(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SharingSection {
    /// Folder of pre-approved grants (`*.toml`), relative to the config file.
    #[serde(default = "default_grants_dir")]
    pub grants_dir: PathBuf,
    /// Working days the providing side has to decide a special request (Decree 47/2020).
    #[serde(default = "default_decision_days")]
    pub decision_working_days: u32,
}

fn default_grants_dir() -> PathBuf {
    "grants".into()
}
fn default_decision_days() -> u32 {
    2
}

impl Default for SharingSection {
    fn default() -> Self {
        SharingSection {
            grants_dir: default_grants_dir(),
            decision_working_days: default_decision_days(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuditSection {
    /// Audit lines older than this are removed when `serve` starts.
    #[serde(default = "default_retention")]
    pub retention_days: u32,
}

fn default_retention() -> u32 {
    365 * 5
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            retention_days: default_retention(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct HubSection {
    /// Short identifier used in feeds and URIs (`iochub://<id>/...`).
    pub id: String,
    pub name: String,
    /// Tables, quarantine and state; relative to the config file's folder.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Folder of `*.toml` pipeline files; relative to the config file's folder.
    #[serde(default = "default_pipelines_dir")]
    pub pipelines_dir: PathBuf,
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Run every pipeline that has never run once when `serve` starts.
    #[serde(default = "yes")]
    pub ingest_on_start: bool,
    /// Pipeline runs allowed at the same time, all pipelines together.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_runs: usize,
    /// Each scheduled run starts after a random delay below this, so pipelines sharing a
    /// schedule do not all hit their sources at the same second.
    #[serde(default)]
    pub jitter_seconds: u64,
    /// On SIGTERM/SIGINT, runs in progress get this long to finish; then they are abandoned
    /// (nothing of an unfinished run is ever committed).
    #[serde(default = "default_grace")]
    pub shutdown_grace_seconds: u64,
}

fn default_concurrency() -> usize {
    2
}
fn default_grace() -> u64 {
    30
}

fn default_data_dir() -> PathBuf {
    "data".into()
}
fn default_pipelines_dir() -> PathBuf {
    "pipelines".into()
}
fn default_time_zone() -> String {
    "Asia/Ho_Chi_Minh".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSection {
    #[serde(default = "default_addr")]
    pub addr: SocketAddr,
    /// Largest request body accepted (413 above it).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// The console's address as browsers see it when a reverse proxy (TLS) sits in front,
    /// `https://host[:port]`: forms posted from it pass the origin check even when the proxy
    /// sends another `Host`.
    #[serde(default)]
    pub public_origin: Option<String>,
}

fn default_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body() -> usize {
    16 * 1024 * 1024
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            addr: default_addr(),
            max_body_bytes: default_max_body(),
            public_origin: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct QuerySection {
    /// A query still running after this long is cancelled.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Memory one query may use for sorts, joins and aggregations.
    #[serde(default = "default_memory")]
    pub memory_limit_mb: usize,
    /// Rows returned at most; the answer says `truncated` when there were more.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
}

fn default_timeout() -> u64 {
    30
}
fn default_memory() -> usize {
    512
}
fn default_max_rows() -> usize {
    10_000
}

impl Default for QuerySection {
    fn default() -> Self {
        QuerySection {
            timeout_seconds: default_timeout(),
            memory_limit_mb: default_memory(),
            max_rows: default_max_rows(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OrgLevel {
    Province,
    District,
    CommuneCluster,
    Commune,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Organisation {
    pub name: String,
    pub level: OrgLevel,
    /// Id of the unit that handles what cannot be attributed to another unit.
    pub fallback_unit: String,
    /// GeoJSON FeatureCollection of the units' areas, relative to the config file; features
    /// are matched to units by `properties.code` and validity (see `units`).
    #[serde(default)]
    pub units_geojson: Option<PathBuf>,
    #[serde(default)]
    pub units: Vec<Unit>,
}

/// One `[[organisation.units]]` entry: code, names, type, handling agency, validity.
pub use crate::units::UnitConfig as Unit;

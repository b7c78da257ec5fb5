//! SQL over every dataset with DataFusion: read-only, bounded in time, memory and rows.
//!
//! Who sees what is decided by the catalog each query runs in (`sharing::catalog`): it holds
//! only the views the consumer may read. Read-only is decided on the logical plan, not the
//! SQL text: `SQLOptions::verify_plan`
//! refuses DDL (CREATE [EXTERNAL] TABLE/VIEW, DROP), DML (INSERT, UPDATE, DELETE, COPY ... TO)
//! and statements (SET, BEGIN, PREPARE) before anything runs. URL tables are left disabled, and
//! the only default table functions (`range`, `generate_series`) read no files, so no query can
//! reach the server's files. Each query gets its own memory pool and runs in its own task, so a
//! query that panics or exhausts its pool fails alone.

pub mod computed;
mod format;
pub mod utc_interval;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

pub use format::{to_arrow_ipc, to_csv, to_json, type_name};

use crate::config::QuerySection;
use crate::sharing::catalog::{self, HubLogs, PlanGuard, Sources};
use crate::sharing::{Grant, Visibility};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("only read-only queries are allowed: {0}")]
    NotAllowed(String),
    #[error("{0}")]
    Invalid(String),
    /// Failed while computing: only the kind of failure is told, never a value, so an error
    /// cannot show data outside the consumer's view (a row its filter excludes, a masked
    /// column).
    #[error("the query failed while reading data: {0}")]
    Execution(String),
    #[error("the query did not finish within {0} s and was cancelled")]
    Timeout(u64),
    #[error("the query needs more memory than the {0} MB allowed: {1}")]
    TooMuchMemory(usize, String),
    #[error("{0}")]
    Share(String),
    #[error("internal error while running the query: {0}")]
    Internal(String),
}

#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub row_count: usize,
    /// There were more rows than `max_rows`; only the first `max_rows` are here.
    pub truncated: bool,
    /// The tables and views the query read (for the audit log).
    pub tables: Vec<String>,
}

/// Dataset name → its table, unmasked.
type Tables = HashMap<String, Arc<dyn TableProvider>>;

/// Every dataset's table and the quarantine, unmasked. Queries never see these directly:
/// each gets a catalog of views built for its consumer (`sharing::catalog`).
pub struct QueryEngine {
    base: SessionContext,
    datasets: RwLock<HashMap<String, Arc<dyn TableProvider>>>,
    quarantine: RwLock<Option<Arc<dyn TableProvider>>>,
    limits: QuerySection,
    /// `[[views]]`, planned in each query's catalog.
    views: Vec<crate::config::ViewConfig>,
}

impl QueryEngine {
    /// `base` holds the settings and functions every query gets (see `functions::context`).
    pub fn new(limits: QuerySection, base: SessionContext) -> Self {
        QueryEngine {
            base,
            datasets: RwLock::new(HashMap::new()),
            quarantine: RwLock::new(None),
            limits,
            views: Vec::new(),
        }
    }

    /// The hub's `[[views]]`, in every catalog from now on.
    pub fn with_views(mut self, views: Vec<crate::config::ViewConfig>) -> Self {
        self.views = views;
        self
    }

    pub fn limits(&self) -> &QuerySection {
        &self.limits
    }

    /// Registers (or replaces, after a commit) the table `name`.
    pub fn register(&self, name: &str, provider: Arc<dyn TableProvider>) -> Result<(), QueryError> {
        if name == crate::storage::quarantine::TABLE {
            *self.quarantine.write().map_err(poisoned)? = Some(provider);
        } else {
            self.datasets
                .write()
                .map_err(poisoned)?
                .insert(name.to_string(), provider);
        }
        Ok(())
    }

    /// The base context (functions, settings; no tables), for registering functions.
    pub fn context(&self) -> &SessionContext {
        &self.base
    }

    fn per_query_base(&self) -> Result<SessionContext, QueryError> {
        let memory_bytes = self.limits.memory_limit_mb * 1024 * 1024;
        let mut runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(memory_bytes, 1.0)
            .build()
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        // Each query gets its own memory pool (its limit), but the caches of Parquet
        // footers and file listings are shared: re-reading them cost every query.
        let shared = self.base.runtime_env();
        runtime.cache_manager = shared.cache_manager.clone();
        runtime.object_store_registry = shared.object_store_registry.clone();
        let runtime = Arc::new(runtime);
        let state = SessionStateBuilder::new_from_existing(self.base.state())
            .with_runtime_env(runtime)
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    fn snapshot(&self) -> Result<(Tables, Arc<dyn TableProvider>), QueryError> {
        let datasets = self.datasets.read().map_err(poisoned)?.clone();
        let quarantine = self
            .quarantine
            .read()
            .map_err(poisoned)?
            .clone()
            .ok_or_else(|| QueryError::Internal("the quarantine table is not open".into()))?;
        Ok((datasets, quarantine))
    }

    /// Checks that a share compiles (its dataset, row filter or SQL), without running it.
    pub async fn check_grant(&self, grant: &Grant) -> Result<(), QueryError> {
        let (datasets, quarantine) = self.snapshot()?;
        let sources = Sources {
            datasets: &datasets,
            quarantine,
            logs: None,
            views: &[],
        };
        let visibility = Visibility {
            consumer: grant.consumer.clone(),
            role: crate::sharing::Role::Agency,
            datasets: Vec::new(),
            shares: vec![grant.clone()],
            quarantine: crate::sharing::QuarantineScope::None,
            audit: false,
        };
        catalog::consumer_context(&self.base, &sources, &visibility)
            .await
            .map(|_| ())
            .map_err(|e| QueryError::Share(e.to_string()))
    }

    /// Runs `sql` in a catalog holding only what `visibility` allows.
    pub async fn query(
        &self,
        visibility: &Visibility,
        sql: &str,
        logs: Option<HubLogs>,
    ) -> Result<QueryResult, QueryError> {
        self.query_with(visibility, sql, logs, &|_| Ok(())).await
    }

    /// The context a query of `visibility` runs in (its own memory pool, only its views),
    /// extended by `extend` (the PostgreSQL endpoint adds `pg_catalog` there: built from
    /// this catalog, it lists only what the consumer may see), and the guard its plans
    /// must pass.
    pub async fn session(
        &self,
        visibility: &Visibility,
        logs: Option<HubLogs>,
        extend: &CatalogExtension,
    ) -> Result<(SessionContext, PlanGuard), QueryError> {
        let base = self.per_query_base()?;
        let (datasets, quarantine) = self.snapshot()?;
        let sources = Sources {
            datasets: &datasets,
            quarantine,
            logs,
            views: &self.views,
        };
        let (ctx, guard) = catalog::consumer_context(&base, &sources, visibility)
            .await
            .map_err(|e| QueryError::Share(e.to_string()))?;
        extend(&ctx).map_err(QueryError::Internal)?;
        Ok((ctx, guard))
    }

    /// `query`, in a session extended by `extend`.
    pub async fn query_with(
        &self,
        visibility: &Visibility,
        sql: &str,
        logs: Option<HubLogs>,
        extend: &CatalogExtension,
    ) -> Result<QueryResult, QueryError> {
        let limits = self.limits.clone();
        let (ctx, guard) = self.session(visibility, logs, extend).await?;
        let sql = sql.to_string();
        let max_rows = limits.max_rows;
        let task = tokio::spawn(async move { run(ctx, guard, &sql, max_rows).await });
        let abort = task.abort_handle();
        match tokio::time::timeout(Duration::from_secs(limits.timeout_seconds), task).await {
            Err(_) => {
                abort.abort();
                Err(QueryError::Timeout(limits.timeout_seconds))
            }
            Ok(Err(join)) if join.is_panic() => {
                tracing::error!(error = %join, "query task panicked");
                Err(QueryError::Internal(
                    "the query crashed its worker (it was stopped; the hub is fine)".into(),
                ))
            }
            Ok(Err(join)) => Err(QueryError::Internal(join.to_string())),
            Ok(Ok(result)) => result.map_err(|e| classify(e, limits.memory_limit_mb)),
        }
    }
}

/// Registers more (read-only, consumer-scoped) tables or functions in a query's context.
pub type CatalogExtension = dyn Fn(&SessionContext) -> Result<(), String> + Send + Sync;

fn poisoned<T>(_: T) -> QueryError {
    QueryError::Internal("table registry lock poisoned".into())
}

fn tables_read(plan: &LogicalPlan) -> Vec<String> {
    let mut names = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let name = scan.table_name.to_string();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names
}

async fn run(
    ctx: SessionContext,
    guard: PlanGuard,
    sql: &str,
    max_rows: usize,
) -> Result<QueryResult, Failure> {
    let plan = ctx
        .state()
        .create_logical_plan(sql)
        .await
        .map_err(Failure::Planning)?;
    catalog::read_only()
        .verify_plan(&plan)
        .map_err(|e| Failure::NotAllowed(e.find_root().message().to_string()))?;
    guard.check(&plan).map_err(Failure::NotAllowed)?;
    let tables = tables_read(&plan);
    let frame = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(Failure::Planning)?;
    let mut stream = frame.execute_stream().await.map_err(Failure::Planning)?;
    let schema = stream.schema();
    let mut batches = Vec::new();
    let mut row_count = 0;
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(Failure::Execution)?;
        let room = max_rows - row_count;
        if batch.num_rows() > room {
            batches.push(batch.slice(0, room));
            row_count += room;
            truncated = true;
            break;
        }
        row_count += batch.num_rows();
        batches.push(batch);
        if row_count == max_rows {
            // One more row would mean the answer is cut; look without keeping it.
            truncated = loop {
                match stream.next().await {
                    Some(Ok(b)) if b.num_rows() == 0 => continue,
                    Some(Ok(_)) => break true,
                    Some(Err(e)) => return Err(Failure::Execution(e)),
                    None => break false,
                }
            };
            break;
        }
    }
    Ok(QueryResult {
        schema,
        batches,
        row_count,
        truncated,
        tables,
    })
}

enum Failure {
    NotAllowed(String),
    Planning(DataFusionError),
    Execution(DataFusionError),
}

fn classify(failure: Failure, memory_mb: usize) -> QueryError {
    match failure {
        Failure::NotAllowed(m) => QueryError::NotAllowed(m),
        Failure::Planning(e) | Failure::Execution(e)
            if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) =>
        {
            QueryError::TooMuchMemory(memory_mb, e.find_root().message().to_string())
        }
        Failure::Planning(e) => QueryError::Invalid(e.find_root().strip_backtrace()),
        Failure::Execution(e) => QueryError::Execution(execution_kind(e.find_root()).to_string()),
    }
}

/// What went wrong, without the values involved.
fn execution_kind(error: &DataFusionError) -> &'static str {
    use arrow::error::ArrowError;
    match error {
        DataFusionError::ArrowError(inner, _) => match inner.as_ref() {
            ArrowError::CastError(_) | ArrowError::ParseError(_) => {
                "a value could not be converted to the requested type (TRY_CAST gives NULL instead)"
            }
            ArrowError::DivideByZero => "division by zero",
            ArrowError::ComputeError(_) | ArrowError::ArithmeticOverflow(_) => {
                "a computation failed (overflow or invalid input)"
            }
            _ => "an error in the data engine",
        },
        DataFusionError::Execution(_) => "an expression could not be evaluated on some row",
        _ => "an error in the data engine",
    }
}

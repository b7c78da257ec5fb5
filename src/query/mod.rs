//! SQL over every dataset with DataFusion: read-only, bounded in time, memory and rows.
//!
//! Read-only is decided on the logical plan, not the SQL text: `SQLOptions::verify_plan`
//! refuses DDL (CREATE [EXTERNAL] TABLE/VIEW, DROP), DML (INSERT, UPDATE, DELETE, COPY ... TO)
//! and statements (SET, BEGIN, PREPARE) before anything runs. URL tables are left disabled, and
//! the only default table functions (`range`, `generate_series`) read no files, so no query can
//! reach the server's files. Each query gets its own memory pool and runs in its own task, so a
//! query that panics or exhausts its pool fails alone.

mod format;

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;

pub use format::{to_arrow_ipc, to_csv, to_json, type_name};

use crate::config::QuerySection;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("only read-only queries are allowed: {0}")]
    NotAllowed(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the query did not finish within {0} s and was cancelled")]
    Timeout(u64),
    #[error("the query needs more memory than the {0} MB allowed: {1}")]
    TooMuchMemory(usize, String),
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
}

pub struct QueryEngine {
    ctx: SessionContext,
    limits: QuerySection,
}

fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl QueryEngine {
    pub fn new(limits: QuerySection) -> Self {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
        QueryEngine {
            ctx: SessionContext::new_with_config(config),
            limits,
        }
    }

    pub fn limits(&self) -> &QuerySection {
        &self.limits
    }

    /// Registers (or replaces, after a commit) the table `name`.
    pub fn register(&self, name: &str, provider: Arc<dyn TableProvider>) -> Result<(), QueryError> {
        let _ = self.ctx.deregister_table(name);
        self.ctx
            .register_table(name, provider)
            .map(|_| ())
            .map_err(|e| QueryError::Internal(e.to_string()))
    }

    /// The session context, for registering functions.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    pub async fn query(&self, sql: &str) -> Result<QueryResult, QueryError> {
        let limits = self.limits.clone();
        let memory_bytes = limits.memory_limit_mb * 1024 * 1024;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(memory_bytes, 1.0)
            .build_arc()
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        let state = SessionStateBuilder::new_from_existing(self.ctx.state())
            .with_runtime_env(runtime)
            .build();
        let ctx = SessionContext::new_with_state(state);
        let sql = sql.to_string();
        let max_rows = limits.max_rows;
        let task = tokio::spawn(async move { run(ctx, &sql, max_rows).await });
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

async fn run(ctx: SessionContext, sql: &str, max_rows: usize) -> Result<QueryResult, Failure> {
    let plan = ctx
        .state()
        .create_logical_plan(sql)
        .await
        .map_err(Failure::DataFusion)?;
    read_only()
        .verify_plan(&plan)
        .map_err(|e| Failure::NotAllowed(e.find_root().message().to_string()))?;
    let frame = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(Failure::DataFusion)?;
    let mut stream = frame.execute_stream().await.map_err(Failure::DataFusion)?;
    let schema = stream.schema();
    let mut batches = Vec::new();
    let mut row_count = 0;
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(Failure::DataFusion)?;
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
                    Some(Err(e)) => return Err(Failure::DataFusion(e)),
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
    })
}

enum Failure {
    NotAllowed(String),
    DataFusion(DataFusionError),
}

fn classify(failure: Failure, memory_mb: usize) -> QueryError {
    match failure {
        Failure::NotAllowed(m) => QueryError::NotAllowed(m),
        Failure::DataFusion(e) => match e.find_root() {
            DataFusionError::ResourcesExhausted(m) => {
                QueryError::TooMuchMemory(memory_mb, m.clone())
            }
            root => QueryError::Invalid(root.strip_backtrace()),
        },
    }
}

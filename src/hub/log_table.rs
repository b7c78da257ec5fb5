//! The hub's own logs (`audit`, `runs`) as SQL tables: read from the state store when a query
//! scans one, not on every query, and off the async threads (the store is SQLite).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// One log: its columns, and the whole of it as one batch (a blocking read).
pub(super) trait LogSource: Send + Sync + 'static {
    fn schema(&self) -> SchemaRef;
    fn batch(&self) -> Result<RecordBatch>;
}

pub(super) struct LogTable<S>(Arc<S>);

impl<S: LogSource> LogTable<S> {
    pub(super) fn new(source: S) -> Self {
        LogTable(Arc::new(source))
    }
}

impl<S> std::fmt::Debug for LogTable<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::any::type_name::<S>())
    }
}

#[async_trait]
impl<S: LogSource> TableProvider for LogTable<S> {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let source = self.0.clone();
        let batch = tokio::task::spawn_blocking(move || source.batch())
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        let table = MemTable::try_new(self.0.schema(), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}

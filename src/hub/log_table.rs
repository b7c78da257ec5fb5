//! The hub's own logs (`audit`, `runs`) as SQL tables: read from the state store when a query
//! scans one, not on every query, and off the async threads (the store is SQLite).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

/// One log: its columns, and what a scan reads as one batch (a blocking read).
pub(super) trait LogSource: Send + Sync + 'static {
    fn schema(&self) -> SchemaRef;
    /// A timestamp column the source can read by range (so a year's report reads that
    /// year's rows, not a capped "newest N"); `None` reads the whole log each time.
    fn time_column(&self) -> Option<&'static str> {
        None
    }
    /// The rows, at least those whose time column is within `window` (more is fine: the
    /// query's own filter still runs).
    fn batch(&self, window: TimeWindow) -> Result<RecordBatch>;
}

/// Bounds on a log's time column taken from a query's filters, both inclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TimeWindow {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl TimeWindow {
    /// The window that every filter of the form `column <op> timestamp` allows (others are
    /// left to the query). Conjunctions arrive as separate filters.
    pub(super) fn from_filters(column: &str, filters: &[Expr]) -> TimeWindow {
        let mut window = TimeWindow::default();
        for filter in filters {
            let Some((op, at)) = time_bound(column, filter) else {
                continue;
            };
            match op {
                Operator::Gt | Operator::GtEq => {
                    window.from = Some(window.from.map_or(at, |f| f.max(at)));
                }
                Operator::Lt | Operator::LtEq => {
                    window.to = Some(window.to.map_or(at, |t| t.min(at)));
                }
                _ => {}
            }
        }
        window
    }
}

/// `column <op> literal` (or `literal <op> column`, turned around) with a timestamp literal.
fn time_bound(column: &str, filter: &Expr) -> Option<(Operator, DateTime<Utc>)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = filter else {
        return None;
    };
    let (op, value) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) if c.name == column => (*op, v),
        (Expr::Literal(v, _), Expr::Column(c)) if c.name == column => (op.swap()?, v),
        _ => return None,
    };
    let micros = match value {
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000)?,
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000)?,
        ScalarValue::TimestampMicrosecond(Some(v), _) => *v,
        ScalarValue::TimestampNanosecond(Some(v), _) => v.div_euclid(1_000),
        _ => return None,
    };
    Some((op, DateTime::from_timestamp_micros(micros)?))
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

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: the scan reads by the time bounds it understands, the filter runs as well.
        Ok(filters
            .iter()
            .map(|f| match self.0.time_column() {
                Some(column) if time_bound(column, f).is_some() => {
                    TableProviderFilterPushDown::Inexact
                }
                _ => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let source = self.0.clone();
        let window = source
            .time_column()
            .map(|c| TimeWindow::from_filters(c, filters))
            .unwrap_or_default();
        let batch = tokio::task::spawn_blocking(move || source.batch(window))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        let table = MemTable::try_new(self.0.schema(), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}

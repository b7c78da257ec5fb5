//! Columns computed when a table is read, not when it is written: values that depend on the
//! time of the query, such as a citizen report's `sla_status` (an open report becomes overdue
//! without any new data arriving).
//!
//! `ComputedTable` wraps a dataset's table provider: its schema is the stored columns plus the
//! computed ones, and its scan is the stored table's scan with a projection that evaluates the
//! computed expressions (`now()` is the query's start time, as everywhere in DataFusion). To
//! the rest of the engine, sharing and the plan guard included, it is simply the dataset's
//! table.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, ExprSchemable, TableProviderFilterPushDown};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::prelude::SessionContext;

/// One computed column: its name and its expression over the stored columns.
#[derive(Debug, Clone)]
pub struct ComputedColumn {
    pub name: String,
    pub expr: Expr,
    pub field: Field,
    /// What the column means (Vietnamese), for the catalog.
    pub description: String,
}

impl ComputedColumn {
    /// Plans `sql` over `stored` with the hub's functions; the error is DataFusion's message.
    pub fn plan(
        functions: &SessionContext,
        stored: &SchemaRef,
        name: &str,
        sql: &str,
    ) -> std::result::Result<Self, String> {
        let df_schema =
            DFSchema::try_from(stored.as_ref().clone()).map_err(|e| e.strip_backtrace())?;
        let expr = functions
            .parse_sql_expr(sql, &df_schema)
            .map_err(|e| e.strip_backtrace())?;
        let data_type = expr.get_type(&df_schema).map_err(|e| e.strip_backtrace())?;
        Ok(ComputedColumn {
            name: name.to_string(),
            expr,
            field: Field::new(name, data_type, true),
            description: String::new(),
        })
    }
}

#[derive(Debug)]
pub struct ComputedTable {
    inner: Arc<dyn TableProvider>,
    columns: Arc<Vec<ComputedColumn>>,
    schema: SchemaRef,
}

impl ComputedTable {
    /// `inner` as is when nothing is computed.
    pub fn wrap(
        inner: Arc<dyn TableProvider>,
        columns: Arc<Vec<ComputedColumn>>,
    ) -> Arc<dyn TableProvider> {
        if columns.is_empty() {
            return inner;
        }
        let stored = inner.schema();
        let fields = stored
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .chain(columns.iter().map(|c| c.field.clone()))
            .collect::<Vec<_>>();
        let schema = Arc::new(Schema::new_with_metadata(fields, stored.metadata().clone()));
        Arc::new(ComputedTable {
            inner,
            columns,
            schema,
        })
    }

    fn stored_len(&self) -> usize {
        self.inner.schema().fields().len()
    }

    /// Whether `filter` reads stored columns only (then the stored table may use it).
    fn on_stored_columns(&self, filter: &Expr) -> bool {
        let stored = self.inner.schema();
        filter
            .column_refs()
            .iter()
            .all(|c| stored.index_of(c.name()).is_ok())
    }
}

#[async_trait]
impl TableProvider for ComputedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        filters
            .iter()
            .map(|f| {
                if self.on_stored_columns(f) {
                    Ok(self
                        .inner
                        .supports_filters_pushdown(&[f])?
                        .pop()
                        .unwrap_or(TableProviderFilterPushDown::Unsupported))
                } else {
                    Ok(TableProviderFilterPushDown::Unsupported)
                }
            })
            .collect()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let stored = self.inner.schema();
        let stored_len = self.stored_len();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        // The stored columns to read: those asked for, and those the computed ones use.
        let mut needed: BTreeSet<usize> =
            wanted.iter().copied().filter(|i| *i < stored_len).collect();
        for i in wanted.iter().filter(|i| **i >= stored_len) {
            for c in self.columns[i - stored_len].expr.column_refs() {
                needed.insert(stored.index_of(c.name())?);
            }
        }
        let needed: Vec<usize> = needed.into_iter().collect();
        let stored_filters: Vec<Expr> = filters
            .iter()
            .filter(|f| self.on_stored_columns(f))
            .cloned()
            .collect();
        let plan = self
            .inner
            .scan(state, Some(&needed), &stored_filters, limit)
            .await?;
        let read = plan.schema();
        let read_df = DFSchema::try_from(read.as_ref().clone())?;
        let simplifier = ExprSimplifier::new(
            SimplifyContext::builder()
                .with_schema(Arc::new(read_df.clone()))
                .with_query_execution_start_time(state.execution_props().query_execution_start_time)
                .build(),
        );
        let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::with_capacity(wanted.len());
        for i in wanted {
            if i < stored_len {
                let name = stored.field(i).name();
                exprs.push((
                    Arc::new(Column::new(name, read.index_of(name)?)),
                    name.clone(),
                ));
            } else {
                let column = &self.columns[i - stored_len];
                // `now()` and friends become the query's start time here.
                let expr = simplifier.simplify(column.expr.clone())?;
                exprs.push((
                    state.create_physical_expr(expr, &read_df)?,
                    column.name.clone(),
                ));
            }
        }
        Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
    }
}

//! A consumer's own SQL catalog: only views built from its `Visibility`, so no SQL form
//! (`SELECT *`, joins, subqueries, CTEs, UNION, information_schema, table functions) can reach
//! around it. Enforcement by construction, not by rewriting SQL text; plus a check of every
//! plan before it runs (defense in depth).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider, TableProvider,
};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Column, DFSchema, ScalarValue, TableReference};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast, col, lit};
use datafusion::prelude::{SQLOptions, SessionContext};

use super::masks::{mask_initials_udf, mask_phone_udf};
use super::{ColumnView, DatasetView, Grant, Mask, QuarantineScope, Visibility};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A grant that cannot be compiled fails the query rather than returning data.
    #[error("share {name:?} cannot be used: {message}")]
    Grant { name: String, message: String },
    #[error("building the catalog: {0}")]
    Internal(String),
}

/// What a consumer's catalog is built from.
pub struct Sources<'a> {
    /// Every dataset's table, unmasked. Never registered in a consumer's catalog as is.
    pub datasets: &'a HashMap<String, Arc<dyn TableProvider>>,
    pub quarantine: Arc<dyn TableProvider>,
    /// The hub's own logs, for consumers who may read them.
    pub logs: Option<HubLogs>,
    /// `[[views]]`, planned in each consumer's catalog over its own views.
    pub views: &'a [crate::config::ViewConfig],
}

/// The hub's own logs as SQL tables: `audit` (the audit log) and `runs` (the run history).
/// Admins and the local operator see them (`Visibility::audit`).
#[derive(Clone)]
pub struct HubLogs {
    pub audit: Arc<dyn TableProvider>,
    pub runs: Arc<dyn TableProvider>,
}

/// Refuses a plan that scans a raw dataset table anywhere but inside one of the consumer's
/// views. (DataFusion inlines a view's plan while planning SQL, so raw scans are there, but
/// only within an exact copy of a view plan built here.)
pub struct PlanGuard {
    raw: Vec<Arc<dyn TableProvider>>,
    views: Vec<LogicalPlan>,
}

fn same(a: &Arc<dyn TableProvider>, b: &Arc<dyn TableProvider>) -> bool {
    std::ptr::eq(Arc::as_ptr(a) as *const (), Arc::as_ptr(b) as *const ())
}

impl PlanGuard {
    pub fn check(&self, plan: &LogicalPlan) -> Result<(), String> {
        if self.allowed(plan) {
            Ok(())
        } else {
            Err("the query reaches data outside your catalog; refused".into())
        }
    }

    fn allowed(&self, node: &LogicalPlan) -> bool {
        if self.views.iter().any(|v| v == node) {
            return true;
        }
        if let LogicalPlan::TableScan(scan) = node {
            let raw = source_as_provider(&scan.source)
                .map_or(true, |p| self.raw.iter().any(|r| same(r, &p)));
            if raw {
                return false;
            }
        }
        let mut ok = true;
        let walked = node.apply_subqueries(|sub| {
            ok &= self.allowed(sub);
            Ok(if ok {
                TreeNodeRecursion::Continue
            } else {
                TreeNodeRecursion::Stop
            })
        });
        ok && walked.is_ok() && node.inputs().into_iter().all(|input| self.allowed(input))
    }
}

fn internal(e: DataFusionError) -> CatalogError {
    CatalogError::Internal(e.strip_backtrace())
}

const BASE: &str = "base";

fn base_scan(
    name: &str,
    provider: &Arc<dyn TableProvider>,
) -> Result<LogicalPlanBuilder, DataFusionError> {
    LogicalPlanBuilder::scan(
        TableReference::partial(BASE, name),
        provider_as_source(provider.clone()),
        None,
    )
}

fn masked(column: Expr, mask: Mask, data_type: &DataType) -> Expr {
    match mask {
        Mask::Phone => mask_phone_udf().call(vec![cast(column, DataType::Utf8)]),
        Mask::Initials => mask_initials_udf().call(vec![cast(column, DataType::Utf8)]),
        Mask::RoundCoordinates => {
            datafusion::functions::math::round().call(vec![column, lit(2i64)])
        }
        Mask::Hide => cast(lit(ScalarValue::Null), data_type.clone()),
    }
}

/// `SELECT <columns, masked> FROM base.<dataset>` as a view.
fn dataset_view(
    view: &DatasetView,
    provider: &Arc<dyn TableProvider>,
) -> Result<LogicalPlan, DataFusionError> {
    projected_view(view, provider, &[])
}

/// The consumer's view of a dataset's change log: its columns, masked as in its catalog,
/// plus the log's own columns (`keep`).
pub(crate) fn feed_dataset_plan(
    view: &DatasetView,
    changes: &Arc<dyn TableProvider>,
    keep: &[&str],
) -> Result<LogicalPlan, DataFusionError> {
    projected_view(view, changes, keep)
}

/// A dataset share's rows and columns, over the dataset's change log. SQL shares are not
/// changes of one dataset, so they have no feed.
pub(crate) fn feed_share_plan(
    grant: &Grant,
    changes: &Arc<dyn TableProvider>,
    key: &[String],
    keep: &[&str],
    owner: &SessionContext,
) -> Result<LogicalPlan, CatalogError> {
    let fail = |message: String| CatalogError::Grant {
        name: grant.name.clone(),
        message,
    };
    let Some(dataset) = &grant.dataset else {
        return Err(fail(
            "an SQL share is not the changes of one dataset; it has no feed (query it instead)"
                .into(),
        ));
    };
    if let Some(columns) = &grant.columns
        && let Some(missing) = key.iter().find(|k| !columns.contains(k))
    {
        return Err(fail(format!(
            "the share leaves out the key column {missing:?}, so its feed could not say which record changed or was deleted"
        )));
    }
    let relation = TableReference::partial(BASE, dataset.as_str());
    let builder = base_scan(dataset, changes).map_err(|e| fail(e.strip_backtrace()))?;
    let builder = with_row_filter(builder, grant, owner)?;
    let columns: Vec<String> = match &grant.columns {
        Some(c) => c.clone(),
        None => changes
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !keep.contains(&n.as_str()))
            .collect(),
    };
    let exprs: Vec<Expr> = columns
        .iter()
        .map(String::as_str)
        .chain(keep.iter().copied())
        .map(|c| col(Column::new(Some(relation.clone()), c)))
        .collect();
    builder
        .project(exprs)
        .and_then(|b| b.build())
        .map_err(|e| fail(e.strip_backtrace()))
}

fn projected_view(
    view: &DatasetView,
    provider: &Arc<dyn TableProvider>,
    keep: &[&str],
) -> Result<LogicalPlan, DataFusionError> {
    let schema = provider.schema();
    let relation = TableReference::partial(BASE, view.dataset.as_str());
    let exprs: Vec<Expr> = view
        .columns
        .iter()
        .filter_map(|(name, access)| {
            let field = schema.field_with_name(name).ok()?;
            let column = col(Column::new(Some(relation.clone()), name));
            let expr = match access {
                ColumnView::Clear => column,
                ColumnView::Masked(mask) => masked(column, *mask, field.data_type()),
            };
            Some(expr.alias(name))
        })
        .chain(
            keep.iter()
                .map(|name| col(Column::new(Some(relation.clone()), *name))),
        )
        .collect();
    base_scan(&view.dataset, provider)?.project(exprs)?.build()
}

/// The grant's row filter (SQL, planned in the owner's context) on top of `builder`.
fn with_row_filter(
    builder: LogicalPlanBuilder,
    grant: &Grant,
    owner: &SessionContext,
) -> Result<LogicalPlanBuilder, CatalogError> {
    let Some(filter) = &grant.row_filter else {
        return Ok(builder);
    };
    let fail = |message: String| CatalogError::Grant {
        name: grant.name.clone(),
        message,
    };
    let schema: DFSchema = builder.schema().as_ref().clone();
    let predicate = owner
        .parse_sql_expr(filter, &schema)
        .map_err(|e| fail(format!("row filter: {}", e.strip_backtrace())))?;
    builder
        .filter(predicate)
        .map_err(|e| fail(e.strip_backtrace()))
}

async fn share_view(
    grant: &Grant,
    sources: &Sources<'_>,
    owner: &SessionContext,
) -> Result<LogicalPlan, CatalogError> {
    let fail = |message: String| CatalogError::Grant {
        name: grant.name.clone(),
        message,
    };
    let plan = match (&grant.dataset, &grant.sql) {
        (Some(dataset), None) => {
            let provider = sources
                .datasets
                .get(dataset)
                .ok_or_else(|| fail(format!("dataset {dataset:?} no longer exists")))?;
            let builder = base_scan(dataset, provider).map_err(|e| fail(e.strip_backtrace()))?;
            let mut builder = with_row_filter(builder, grant, owner)?;
            if let Some(columns) = &grant.columns {
                let exprs: Vec<Expr> = columns
                    .iter()
                    .map(|c| {
                        col(Column::new(
                            Some(TableReference::partial(BASE, dataset.as_str())),
                            c,
                        ))
                    })
                    .collect();
                builder = builder
                    .project(exprs)
                    .map_err(|e| fail(e.strip_backtrace()))?;
            }
            builder.build().map_err(|e| fail(e.strip_backtrace()))?
        }
        (None, Some(sql)) => {
            let plan = owner
                .state()
                .create_logical_plan(sql)
                .await
                .map_err(|e| fail(e.strip_backtrace()))?;
            read_only()
                .verify_plan(&plan)
                .map_err(|e| fail(e.strip_backtrace()))?;
            plan
        }
        _ => {
            return Err(fail(
                "a share names either a dataset or an SQL query".into(),
            ));
        }
    };
    Ok(plan)
}

/// A view that calls itself a table. To its consumer a dataset *is* a table (it cannot see
/// what the view is built on), and clients list tables: psql's `\dt`, DBeaver, Metabase,
/// `information_schema.tables`. Planning still inlines the view's plan (`get_logical_plan`),
/// which the `PlanGuard` relies on.
#[derive(Debug)]
struct ConsumerTable(ViewTable);

#[async_trait::async_trait]
impl TableProvider for ConsumerTable {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Base
    }

    fn get_logical_plan(&self) -> Option<std::borrow::Cow<'_, LogicalPlan>> {
        self.0.get_logical_plan()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        self.0.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }
}

pub fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// A context in which every dataset is registered unmasked under its name: where share
/// queries written by the managing office are planned, never where consumers query.
fn owner_context(
    base: &SessionContext,
    sources: &Sources<'_>,
) -> Result<SessionContext, CatalogError> {
    let (ctx, public, _) = empty_context(base)?;
    for (name, provider) in sources.datasets {
        public
            .register_table(name.clone(), provider.clone())
            .map_err(internal)?;
    }
    Ok(ctx)
}

/// A context with the base's settings and functions, and an empty catalog of its own (the
/// default catalog with `public` and `share` schemas).
pub(crate) fn empty_context(
    base: &SessionContext,
) -> Result<
    (
        SessionContext,
        Arc<MemorySchemaProvider>,
        Arc<MemorySchemaProvider>,
    ),
    CatalogError,
> {
    let catalogs = Arc::new(MemoryCatalogProviderList::new());
    let catalog = Arc::new(MemoryCatalogProvider::new());
    let public = Arc::new(MemorySchemaProvider::new());
    let share = Arc::new(MemorySchemaProvider::new());
    catalog
        .register_schema("public", public.clone())
        .map_err(internal)?;
    catalog
        .register_schema("share", share.clone())
        .map_err(internal)?;
    let options = base.state().config().options().catalog.clone();
    catalogs.register_catalog(options.default_catalog, catalog);
    let state = SessionStateBuilder::new_from_existing(base.state())
        .with_catalog_list(catalogs)
        .build();
    Ok((SessionContext::new_with_state(state), public, share))
}

/// The consumer's context and the guard its plans must pass.
pub async fn consumer_context(
    base: &SessionContext,
    sources: &Sources<'_>,
    visibility: &Visibility,
) -> Result<(SessionContext, PlanGuard), CatalogError> {
    let (ctx, public, share) = empty_context(base)?;
    let mut views = Vec::new();
    let as_view = |plan: &LogicalPlan| {
        Arc::new(ConsumerTable(ViewTable::new(plan.clone(), None))) as Arc<dyn TableProvider>
    };
    for view in &visibility.datasets {
        if let Some(provider) = sources.datasets.get(&view.dataset) {
            let plan = dataset_view(view, provider).map_err(internal)?;
            public
                .register_table(view.dataset.clone(), as_view(&plan))
                .map_err(internal)?;
            views.push(plan);
        }
    }
    if !visibility.shares.is_empty() {
        let owner = owner_context(base, sources)?;
        for grant in &visibility.shares {
            let plan = share_view(grant, sources, &owner).await?;
            share
                .register_table(grant.name.clone(), as_view(&plan))
                .map_err(internal)?;
            views.push(plan);
        }
    }
    match &visibility.quarantine {
        QuarantineScope::None => {}
        QuarantineScope::All => {
            public
                .register_table(
                    crate::storage::quarantine::TABLE.into(),
                    sources.quarantine.clone(),
                )
                .map_err(internal)?;
        }
        QuarantineScope::Datasets(names) => {
            let list: Vec<Expr> = names.iter().map(|n| lit(n.as_str())).collect();
            let plan = base_scan(crate::storage::quarantine::TABLE, &sources.quarantine)
                .and_then(|b| b.filter(col("dataset").in_list(list, false)))
                .and_then(|b| b.build())
                .map_err(internal)?;
            public
                .register_table(crate::storage::quarantine::TABLE.into(), as_view(&plan))
                .map_err(internal)?;
            views.push(plan);
        }
    }
    // Hub views read the consumer's own views, so masks and visibility carry over, and the
    // guard accepts them (their raw scans sit inside copies of those views). A view over a
    // table this consumer cannot see does not plan, and is not in its catalog.
    for hub_view in sources.views {
        if let Ok(plan) = ctx.state().create_logical_plan(&hub_view.sql).await {
            public
                .register_table(hub_view.name.clone(), as_view(&plan))
                .map_err(internal)?;
        }
    }
    if visibility.audit
        && let Some(logs) = &sources.logs
    {
        public
            .register_table("audit".into(), logs.audit.clone())
            .map_err(internal)?;
        public
            .register_table("runs".into(), logs.runs.clone())
            .map_err(internal)?;
    }
    let mut raw: Vec<Arc<dyn TableProvider>> = sources.datasets.values().cloned().collect();
    if visibility.quarantine != QuarantineScope::All {
        raw.push(sources.quarantine.clone());
    }
    Ok((ctx, PlanGuard { raw, views }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sharing::Role;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::record_batch::RecordBatch;
    use datafusion::datasource::MemTable;

    fn table() -> Arc<dyn TableProvider> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("phone", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("0912345678"), None])),
            ],
        )
        .unwrap();
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())
    }

    fn visibility(shares: Vec<Grant>) -> Visibility {
        Visibility {
            consumer: "c".into(),
            role: Role::Agency,
            datasets: vec![DatasetView {
                dataset: "t".into(),
                columns: vec![
                    ("id".into(), ColumnView::Clear),
                    ("phone".into(), ColumnView::Masked(Mask::Phone)),
                ],
            }],
            shares,
            quarantine: QuarantineScope::None,
            audit: false,
        }
    }

    #[tokio::test]
    async fn the_guard_refuses_a_raw_scan_and_accepts_the_views() {
        let raw = table();
        let datasets = HashMap::from([("t".to_string(), raw.clone())]);
        let sources = Sources {
            datasets: &datasets,
            quarantine: table(),
            logs: None,
            views: &[],
        };
        let base = SessionContext::new();
        let (ctx, guard) = consumer_context(&base, &sources, &visibility(vec![]))
            .await
            .unwrap();
        let through_view = ctx
            .state()
            .create_logical_plan("SELECT * FROM t")
            .await
            .unwrap();
        assert!(guard.check(&through_view).is_ok());
        let around = LogicalPlanBuilder::scan("t", provider_as_source(raw), None)
            .unwrap()
            .build()
            .unwrap();
        assert!(
            guard.check(&around).is_err(),
            "a scan of the raw table outside a view is refused"
        );
        let rows = ctx
            .sql("SELECT phone FROM t WHERE id = 1")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let shown = rows[0]
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .value(0)
            .to_string();
        assert_eq!(shown, "091****678");
    }

    #[tokio::test]
    async fn a_grant_that_does_not_compile_fails_the_catalog_instead_of_showing_data() {
        let datasets = HashMap::from([("t".to_string(), table())]);
        let sources = Sources {
            datasets: &datasets,
            quarantine: table(),
            logs: None,
            views: &[],
        };
        let broken = Grant {
            id: "g".into(),
            name: "g".into(),
            consumer: "c".into(),
            purpose: "p".into(),
            legal_basis: "l".into(),
            dataset: Some("t".into()),
            columns: None,
            row_filter: Some("no_such_column = 1".into()),
            sql: None,
            end_date: chrono::NaiveDate::from_ymd_opt(2099, 1, 1).unwrap(),
        };
        let error = consumer_context(&SessionContext::new(), &sources, &visibility(vec![broken]))
            .await
            .err()
            .expect("must fail");
        assert!(
            error.to_string().contains("share \"g\" cannot be used"),
            "{error}"
        );
    }
}

//! `pg_catalog` for a consumer, with object ids that stay the same from one query to the
//! next.
//!
//! Every query runs in a fresh catalog (the consumer's views over the tables' newest
//! versions). datafusion-pg-catalog numbers relations (`pg_class.oid`) per schema provider,
//! in the order it happens to list them, so a provider built per query would give `people`
//! one oid in psql's first `\d` query and another in the next. Here each consumer keeps one
//! provider, reading whatever catalog the current query has through `CurrentCatalogs`, so an
//! oid, once given, stays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider};
use datafusion::prelude::SessionContext;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::{
    PgCatalogSchemaProvider, PgCatalogStaticTables, setup_pg_catalog,
};

/// The catalog list of the consumer's current query.
#[derive(Debug)]
struct CurrentCatalogs(RwLock<Arc<dyn CatalogProviderList>>);

impl CurrentCatalogs {
    fn current(&self) -> Arc<dyn CatalogProviderList> {
        match self.0.read() {
            Ok(list) => list.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, list: Arc<dyn CatalogProviderList>) {
        match self.0.write() {
            Ok(mut current) => *current = list,
            Err(poisoned) => *poisoned.into_inner() = list,
        }
    }
}

impl CatalogProviderList for CurrentCatalogs {
    fn register_catalog(
        &self,
        name: String,
        catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        self.current().register_catalog(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        self.current().catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        self.current().catalog(name)
    }
}

fn default_catalog(ctx: &SessionContext) -> String {
    ctx.state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone()
}

struct ConsumerCatalog {
    current: Arc<CurrentCatalogs>,
    pg_catalog: Arc<dyn SchemaProvider>,
}

/// One `pg_catalog` per consumer (consumers are configuration, so this stays small).
#[derive(Default)]
pub struct PgCatalogs {
    consumers: Mutex<HashMap<String, Arc<ConsumerCatalog>>>,
}

impl PgCatalogs {
    /// Installs PostgreSQL's functions (`current_database`, `pg_get_expr`,
    /// `has_table_privilege`...) and type names (`regclass`...) in the base context that
    /// every query context is made from: once, instead of in each query's.
    pub fn install_functions(base: &SessionContext) -> Result<(), String> {
        setup_pg_catalog(base, &default_catalog(base), EmptyContextProvider)
            .map_err(|e| e.to_string())
    }

    /// Adds the consumer's `pg_catalog` to its query context.
    pub fn extend(&self, consumer: &str, ctx: &SessionContext) -> Result<(), String> {
        let catalog_name = default_catalog(ctx);
        let entry = self.entry(consumer)?;
        entry.current.set(ctx.state().catalog_list().clone());
        let catalog = ctx
            .catalog(&catalog_name)
            .ok_or_else(|| format!("no catalog {catalog_name}"))?;
        catalog
            .register_schema("pg_catalog", entry.pg_catalog.clone())
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    fn entry(&self, consumer: &str) -> Result<Arc<ConsumerCatalog>, String> {
        let mut consumers = self
            .consumers
            .lock()
            .map_err(|_| "pg_catalog cache poisoned".to_string())?;
        if let Some(entry) = consumers.get(consumer) {
            return Ok(entry.clone());
        }
        let empty: Arc<dyn CatalogProviderList> =
            Arc::new(datafusion::catalog::MemoryCatalogProviderList::new());
        let current = Arc::new(CurrentCatalogs(RwLock::new(empty)));
        let list: Arc<dyn CatalogProviderList> = current.clone();
        let static_tables = Arc::new(PgCatalogStaticTables::try_new().map_err(|e| e.to_string())?);
        let pg_catalog =
            PgCatalogSchemaProvider::try_new(list, static_tables, EmptyContextProvider)
                .map_err(|e| e.to_string())?;
        let entry = Arc::new(ConsumerCatalog {
            current,
            pg_catalog: Arc::new(pg_catalog),
        });
        consumers.insert(consumer.to_string(), entry.clone());
        Ok(entry)
    }
}

//! Queries over the PostgreSQL protocol, each in its consumer's catalog.
//!
//! - Simple protocol (psql, most BI tools' metadata queries): each statement is parsed with
//!   datafusion-postgres's PostgreSQL-compatible parser; `SET`/`SHOW`/`BEGIN`/`COMMIT` are
//!   answered by its hooks; anything else must be a query and runs through
//!   `Hub::sql_as_with`, the very path of SQL over HTTP (read-only check, plan guard,
//!   timeout, memory limit, row cap, audit), in a catalog extended with `pg_catalog`.
//! - Extended protocol (prepared statements, binary results: psycopg, asyncpg, JDBC): a
//!   datafusion-postgres `DfSessionService` over the consumer's session does the protocol
//!   work, with `GuardHook` last among its hooks: it refuses anything but a query at Parse
//!   time, checks the plan (read-only, guard), caps the rows, keeps the hub's statement
//!   timeout, and audits each execution.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatementAst;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::{DfSessionService, Parser};
use futures::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::DataRow;
use pgwire::messages::response::NoticeResponse;
use pgwire::types::format::FormatOptions;
use serde_json::json;

use super::auth::{LoggedIn, METADATA_STATEMENT_TIMEOUT, TokenAuth};
use super::catalog::PgCatalogs;
use crate::hub::{Hub, HubError};
use crate::query::QueryError;
use crate::sharing::Consumer;
use crate::sharing::catalog::{PlanGuard, read_only};

type DfStatement = (String, Option<(Statement, LogicalPlan)>);

pub struct Handlers {
    startup: Arc<TokenAuth>,
    queries: Arc<Queries>,
}

impl Handlers {
    pub fn new(hub: Arc<Hub>, require_tls: bool) -> Result<Self, String> {
        PgCatalogs::install_functions(hub.engine.context())?;
        Ok(Handlers {
            startup: Arc::new(TokenAuth::new(hub.clone(), require_tls)),
            queries: Arc::new(Queries::new(hub)),
        })
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }
}

pub struct Queries {
    hub: Arc<Hub>,
    parser: Arc<ConsumerParser>,
    /// `pg_catalog` per consumer: built from the consumer's catalog alone, so `\dt` and
    /// schema browsers list only its views.
    catalogs: Arc<PgCatalogs>,
}

impl Queries {
    fn new(hub: Arc<Hub>) -> Self {
        let catalogs = Arc::new(PgCatalogs::default());
        let parser = Arc::new(ConsumerParser {
            hub: hub.clone(),
            catalogs: catalogs.clone(),
            describe: DfSessionService::new(Arc::new(SessionContext::new())).query_parser(),
        });
        Queries {
            hub,
            parser,
            catalogs,
        }
    }
}

/// A PostgreSQL error response: severity (`ERROR`, `FATAL`), SQLSTATE and message.
pub(super) fn failure(severity: &str, code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.into(),
        code.into(),
        message.into(),
    )))
}

fn error(code: &str, message: impl Into<String>) -> PgWireError {
    failure("ERROR", code, message)
}

/// The hub's errors as PostgreSQL errors with SQLSTATE codes.
fn pg_error(e: HubError) -> PgWireError {
    let message = e.to_string();
    let code = match &e {
        HubError::Query(q) => match q {
            QueryError::NotAllowed(m)
                if m.contains("DDL") || m.contains("DML") || m.contains("Statement") =>
            {
                "25006" // read_only_sql_transaction
            }
            QueryError::NotAllowed(_) => "42501", // insufficient_privilege
            QueryError::Invalid(m) if m.contains("not found") => "42P01", // undefined_table
            QueryError::Invalid(_) => "42601",    // syntax / planning
            QueryError::Execution(_) => "22000",  // data_exception
            QueryError::Timeout(_) => "57014",    // query_canceled
            QueryError::TooMuchMemory(..) => "53200", // out_of_memory
            QueryError::Share(_) => "42501",
            QueryError::Internal(_) => "XX000",
        },
        HubError::Forbidden(_) => "42501",
        HubError::NotFound(_) => "42P01",
        _ => "XX000",
    };
    error(code, message)
}

fn consumer_of(hub: &Hub, client: &(impl ClientInfo + ?Sized)) -> PgWireResult<Consumer> {
    client
        .session_extensions()
        .get::<LoggedIn>()
        .and_then(|logged_in| hub.config.consumers.get(&logged_in.0))
        .cloned()
        .ok_or_else(|| error("28000", "not logged in"))
}

/// A statement refused before it ran, audited like a refused SQL request over HTTP.
fn audit_refusal(hub: &Hub, consumer: &Consumer, sql: &str) {
    hub.audit(
        Some(&consumer.id),
        "query",
        None,
        json!({"sql": sql, "channel": "postgres", "error": READ_ONLY}),
        "error",
    );
}

/// The consumer's request allowance (`[auth]`), shared with its HTTP requests.
fn rate_check(hub: &Hub, consumer: &Consumer) -> PgWireResult<()> {
    hub.rate_check(&consumer.id).map_err(|wait| {
        error(
            "53400",
            format!(
                "too many requests from {}; try again in {} s",
                consumer.id,
                wait.as_secs_f64().ceil().max(1.0)
            ),
        )
    })
}

fn is_query(statement: &Statement) -> bool {
    matches!(statement, Statement::Query(_))
}

/// A query string of more statements than this is refused (each runs and is kept in
/// memory until all are done).
const MAX_STATEMENTS: usize = 20;

const READ_ONLY: &str = "this endpoint is read-only: only queries (SELECT, WITH, VALUES) and SET, SHOW, BEGIN, COMMIT are accepted";

/// The statement timeout is the hub's, at most: a client's `SET statement_timeout` may
/// shorten it, never lengthen or remove it.
fn clamp_timeout(hub: &Hub, client: &mut (impl ClientInfo + ?Sized)) {
    let limit = hub.engine.limits().timeout_seconds * 1000;
    let current = client
        .metadata()
        .get(METADATA_STATEMENT_TIMEOUT)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0 && *ms <= limit);
    let value = current.unwrap_or(limit);
    client
        .metadata_mut()
        .insert(METADATA_STATEMENT_TIMEOUT.into(), value.to_string());
}

fn session_hooks() -> Vec<Arc<dyn QueryHook>> {
    vec![Arc::new(SetShowHook), Arc::new(TransactionStatementHook)]
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let consumer = consumer_of(&self.hub, client)?;
        let statements = PostgresCompatibilityParser::new()
            .parse(query)
            .map_err(|e| error("42601", e.to_string()))?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        if statements.len() > MAX_STATEMENTS {
            return Err(error(
                "54000",
                format!("at most {MAX_STATEMENTS} statements in one query string"),
            ));
        }
        let mut responses = Vec::new();
        'statements: for statement in statements {
            // A context of its own: SET may change it, and must change nothing shared.
            let scratch = SessionContext::new();
            for hook in session_hooks() {
                if let Some(response) = hook.handle_simple_query(&statement, &scratch, client).await
                {
                    clamp_timeout(&self.hub, client);
                    responses.push(response?);
                    continue 'statements;
                }
            }
            // Each statement is one request of the consumer's allowance, as over HTTP.
            rate_check(&self.hub, &consumer)?;
            let sql = statement.to_string();
            if !is_query(&statement) {
                audit_refusal(&self.hub, &consumer, &sql);
                return Err(error("25006", READ_ONLY));
            }
            let catalogs = self.catalogs.clone();
            let consumer_id = consumer.id.clone();
            let extend = move |ctx: &SessionContext| catalogs.extend(&consumer_id, ctx);
            let result = self
                .hub
                .sql_as_with(&consumer, &sql, &extend, "postgres")
                .await
                .map_err(pg_error)?;
            if result.truncated {
                let notice = NoticeResponse::from(ErrorInfo::new(
                    "NOTICE".into(),
                    "01000".into(),
                    format!(
                        "the result was cut at {} rows (query.max_rows); add LIMIT/OFFSET or filter",
                        result.row_count
                    ),
                ));
                futures::SinkExt::send(client, PgWireBackendMessage::NoticeResponse(notice))
                    .await?;
            }
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            let encoded = encode_batches(&result.schema, result.batches, options)?;
            responses.push(Response::Query(encoded));
        }
        Ok(responses)
    }
}

/// Rows already computed (and capped) as a text-format answer. Not through a DataFrame:
/// a join may return two columns of one name, which a DataFrame's schema refuses.
fn encode_batches(
    schema: &arrow::datatypes::Schema,
    batches: Vec<arrow::record_batch::RecordBatch>,
    options: Arc<FormatOptions>,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(arrow_schema_to_pg_fields(
        schema,
        &Format::UnifiedText,
        Some(options),
    )?);
    let rows: Vec<PgWireResult<DataRow>> = batches
        .into_iter()
        .flat_map(|batch| encode_recordbatch(fields.clone(), batch))
        .collect();
    Ok(QueryResponse::new(fields, futures::stream::iter(rows)))
}

/// One query's protocol service: the consumer's session, datafusion-postgres's hooks, and
/// the guard last.
async fn service_for(
    hub: &Arc<Hub>,
    catalogs: &Arc<PgCatalogs>,
    client: &(impl ClientInfo + ?Sized),
) -> PgWireResult<DfSessionService> {
    let consumer = consumer_of(hub, client)?;
    rate_check(hub, &consumer)?;
    let extend = {
        let catalogs = catalogs.clone();
        let consumer_id = consumer.id.clone();
        move |ctx: &SessionContext| catalogs.extend(&consumer_id, ctx)
    };
    let (ctx, guard) = hub
        .session_for(&consumer, &extend)
        .await
        .map_err(pg_error)?;
    let mut hooks = session_hooks();
    hooks.push(Arc::new(GuardHook {
        hub: hub.clone(),
        consumer,
        guard,
    }));
    Ok(DfSessionService::new_with_hooks(Arc::new(ctx), hooks))
}

pub struct ConsumerParser {
    hub: Arc<Hub>,
    catalogs: Arc<PgCatalogs>,
    /// Describes parsed statements (types come from the plan alone, not from a context).
    describe: Arc<Parser>,
}

#[async_trait]
impl QueryParser for ConsumerParser {
    type Statement = DfStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let service = service_for(&self.hub, &self.catalogs, client).await?;
        service.query_parser().parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.describe.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.describe.get_result_schema(stmt, column_format)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = DfStatement;
    type QueryParser = ConsumerParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let service = service_for(&self.hub, &self.catalogs, client).await?;
        // Planned again in today's catalog: a share revoked or expired since Parse must not
        // keep answering through the plan made then (drivers keep prepared statements for
        // the life of a pooled connection).
        let fresh = service
            .query_parser()
            .parse_sql(
                client,
                &portal.statement.statement.0,
                &portal.statement.parameter_types,
            )
            .await?;
        let Some(fresh) = fresh else {
            return Ok(Response::EmptyQuery);
        };
        let mut replanned: Portal<DfStatement> = Portal::default();
        replanned.name = portal.name.clone();
        replanned.statement = Arc::new(StoredStatement::new(
            portal.statement.id.clone(),
            fresh,
            portal.statement.parameter_types.clone(),
        ));
        replanned.parameter_format = portal.parameter_format.clone();
        replanned.parameters = portal.parameters.clone();
        replanned.result_column_format = portal.result_column_format.clone();
        replanned.state = portal.state.clone();
        let portal = replanned;
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_secs(self.hub.engine.limits().timeout_seconds);
        let response = ExtendedQueryHandler::do_query(&service, client, &portal, max_rows)
            .await
            .map_err(sanitized)?;
        Ok(match response {
            // The rows are computed while they are sent: the deadline must cover the stream,
            // not only the planning before it.
            Response::Query(mut query) => {
                let rows =
                    std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
                query.data_rows = Box::pin(within(rows, deadline));
                Response::Query(query)
            }
            other => other,
        })
    }
}

/// An error while computing, told by its kind only: a message with a value in it could
/// show data outside the consumer's view (as over HTTP, see `query::execution_kind`).
fn sanitized(e: PgWireError) -> PgWireError {
    match e {
        PgWireError::ApiError(_) => error("22000", "the query failed while reading data"),
        other => other,
    }
}

/// The rows of `rows` until `deadline`; then a `57014` error, and the stream (and the
/// computation behind it) is dropped.
fn within(
    rows: pgwire::api::results::SendableRowStream,
    deadline: tokio::time::Instant,
) -> impl futures::Stream<Item = PgWireResult<DataRow>> + Send {
    use futures::StreamExt;
    futures::stream::unfold(Some(rows), move |rows| async move {
        let mut rows = rows?;
        match tokio::time::timeout_at(deadline, rows.next()).await {
            Ok(Some(row)) => Some((row.map_err(sanitized), Some(rows))),
            Ok(None) => None,
            Err(_) => Some((
                Err(error(
                    "57014",
                    "canceling statement due to statement timeout (query.timeout_seconds)",
                )),
                None,
            )),
        }
    })
}

/// Last among the hooks of a prepared statement: what the others did not answer must be a
/// query that passes the same checks as SQL over HTTP.
struct GuardHook {
    hub: Arc<Hub>,
    consumer: Consumer,
    guard: PlanGuard,
}

#[async_trait]
impl QueryHook for GuardHook {
    async fn handle_simple_query(
        &self,
        _statement: &Statement,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // The simple protocol has its own handler (`Queries::do_query`); refuse anything
        // that would reach datafusion-postgres's unguarded path.
        Some(Err(error("XX000", "simple queries are not handled here")))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if !is_query(statement) {
            audit_refusal(&self.hub, &self.consumer, &statement.to_string());
            return Some(Err(error("25006", READ_ONLY)));
        }
        let plan = match ctx
            .state()
            .statement_to_plan(DfStatementAst::Statement(Box::new(statement.clone())))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                return Some(Err(pg_error(HubError::Query(QueryError::Invalid(
                    e.find_root().strip_backtrace(),
                )))));
            }
        };
        if let Err(e) = read_only().verify_plan(&plan) {
            return Some(Err(error("25006", e.find_root().strip_backtrace())));
        }
        if let Err(m) = self.guard.check(&plan) {
            return Some(Err(error("42501", m)));
        }
        let max_rows = self.hub.engine.limits().max_rows;
        Some(
            LogicalPlanBuilder::from(plan)
                .limit(0, Some(max_rows))
                .and_then(|b| b.build())
                .map_err(|e| error("XX000", e.strip_backtrace())),
        )
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        params: &ParamValues,
        _ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        clamp_timeout(&self.hub, client);
        let parameters = match params {
            ParamValues::List(list) => list.len(),
            ParamValues::Map(map) => map.len(),
        };
        self.hub.audit(
            Some(&self.consumer.id),
            "query",
            None,
            json!({"sql": statement.to_string(), "channel": "postgres", "prepared": true, "parameters": parameters}),
            "ok",
        );
        // Planned and checked at Parse; datafusion-postgres runs it with the portal's result
        // formats (binary for asyncpg) in this consumer's session.
        None
    }
}

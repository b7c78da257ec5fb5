//! The hub's side of sharing: authentication, each consumer's view, audited queries, the
//! catalog and quarantine per consumer, special-request shares and the audit log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{Value, json};

use super::{ColumnInfo, DatasetInfo, Hub, HubError, PublisherInfo};
use crate::query::QueryResult;
use crate::sharing::{self, ColumnView, Consumer, Grant, GrantRequest, Role, Visibility};
use crate::state::{AuditEvent, AuditFilter, ShareRequest, ShareStatus};
use crate::storage::TableStore;

#[derive(Debug, Serialize)]
pub struct ShareView {
    #[serde(flatten)]
    pub request: ShareRequest,
    /// Undecided after its decision deadline.
    pub overdue: bool,
    /// Queryable now as `share.<name>` by its consumer.
    pub active: bool,
}

#[derive(Debug, Serialize)]
pub struct CatalogView {
    pub datasets: Vec<DatasetInfo>,
    /// The consumer's own active shares, queryable as `share.<name>`.
    pub shares: Vec<Grant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
    Revoke,
}

impl Hub {
    pub fn today(&self) -> NaiveDate {
        self.clock
            .now()
            .with_timezone(&self.config.time_zone)
            .date_naive()
    }

    pub fn authenticate(&self, token: &str) -> Option<Consumer> {
        self.config.consumers.authenticate(token).cloned()
    }

    /// Takes one request from the consumer's allowance, or says how long to wait.
    pub fn rate_check(&self, consumer: &str) -> Result<(), Duration> {
        self.rate_limiter.check(consumer, Instant::now())
    }

    /// Whether `key` has a request left, without spending it.
    pub fn rate_peek(&self, key: &str) -> Result<(), Duration> {
        self.rate_limiter.peek(key, Instant::now())
    }

    /// Appends to the audit log; a failure to write it is logged loudly but does not stop
    /// the service (the log line says what could not be recorded).
    pub fn audit(
        &self,
        consumer: Option<&str>,
        action: &str,
        target: Option<&str>,
        detail: Value,
        outcome: &str,
    ) {
        let event = AuditEvent {
            seq: 0,
            at: self.clock.now(),
            consumer: consumer.map(str::to_string),
            action: action.to_string(),
            target: target.map(str::to_string),
            detail,
            outcome: outcome.to_string(),
        };
        if let Err(e) = self.state.append_audit(&event) {
            tracing::error!(error = %e, action, "could not write the audit log");
        }
    }

    pub fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, HubError> {
        Ok(self.state.audit(filter)?)
    }

    /// Removes audit lines past the configured retention.
    pub fn prune_audit(&self) -> Result<usize, HubError> {
        let days = i64::from(self.config.file.audit.retention_days);
        Ok(self
            .state
            .prune_audit(self.clock.now() - chrono::Duration::days(days))?)
    }

    /// Approved shares that work today: pre-approved ones from config, and approved requests.
    /// Requests found past their end date are marked expired (and audited) on the way.
    fn active_grants(&self) -> Result<Vec<Grant>, HubError> {
        let today = self.today();
        let mut grants: Vec<Grant> = self
            .config
            .grants
            .iter()
            .filter(|g| g.active_on(today))
            .cloned()
            .collect();
        for request in self.state.share_requests(None)? {
            if request.status != ShareStatus::Approved {
                continue;
            }
            if request.grant.active_on(today) {
                grants.push(request.grant);
            } else if self.state.decide_share_request(
                &request.grant.id,
                &[ShareStatus::Approved],
                ShareStatus::Expired,
                "hub",
                Some("end date passed"),
                self.clock.now(),
            )? {
                self.audit(
                    Some(&request.grant.consumer),
                    "share_expired",
                    Some(&request.grant.id),
                    json!({"name": request.grant.name, "end_date": request.grant.end_date}),
                    "ok",
                );
            }
        }
        Ok(grants)
    }

    /// The shares in force today that `consumer` may list: every one for the managing
    /// office, its own otherwise.
    pub fn active_grants_for(&self, consumer: &Consumer) -> Result<Vec<Grant>, HubError> {
        Ok(self
            .active_grants()?
            .into_iter()
            .filter(|g| consumer.role == Role::Admin || g.consumer == consumer.id)
            .collect())
    }

    /// The quarantine rows of `dataset` that were fixed and stored again (console re-ingest),
    /// for whoever may read that quarantine.
    pub fn quarantine_resolutions(
        &self,
        consumer: &Consumer,
        dataset: &str,
    ) -> Result<Vec<crate::state::QuarantineResolution>, HubError> {
        if !self
            .visibility_of(consumer)?
            .may_read_quarantine_of(dataset)
        {
            return Err(HubError::Forbidden(format!(
                "only the publishers of {dataset:?} and the managing office may read its quarantine"
            )));
        }
        Ok(self.state.quarantine_resolutions(dataset)?)
    }

    /// What `consumer` may see now: the one answer every interface enforces.
    pub fn visibility_of(&self, consumer: &Consumer) -> Result<Visibility, HubError> {
        let grants = self.active_grants()?;
        Ok(sharing::visibility(
            consumer,
            &self.config.pipelines,
            &grants,
            self.today(),
        ))
    }

    /// The `audit` and `runs` tables, read from the state store when scanned.
    fn hub_logs(&self) -> Option<crate::sharing::catalog::HubLogs> {
        let pipelines = self
            .config
            .pipelines
            .iter()
            .map(|p| super::runs_table::PipelineInfo {
                name: p.name.clone(),
                title: p.title.clone(),
                publishers: p.publishers.join(", "),
                max_staleness_seconds: p.max_staleness.map(|d| d.as_secs() as i64),
            })
            .collect();
        Some(crate::sharing::catalog::HubLogs {
            audit: Arc::new(super::log_table::LogTable::new(
                super::audit_table::AuditTable::new(self.state.clone()),
            )),
            runs: Arc::new(super::log_table::LogTable::new(
                super::runs_table::RunsTable::new(self.state.clone(), pipelines),
            )),
        })
    }

    /// Runs SQL as `consumer`, within its catalog; every query is audited.
    pub async fn sql_as(&self, consumer: &Consumer, sql: &str) -> Result<QueryResult, HubError> {
        self.sql_as_with(consumer, sql, &|_| Ok(()), "http").await
    }

    /// `sql_as` in a session extended by `extend`, audited with the `channel` it came by.
    pub async fn sql_as_with(
        &self,
        consumer: &Consumer,
        sql: &str,
        extend: &crate::query::CatalogExtension,
        channel: &str,
    ) -> Result<QueryResult, HubError> {
        let started = Instant::now();
        let visibility = self.visibility_of(consumer)?;
        let logs = if visibility.audit {
            self.hub_logs()
        } else {
            None
        };
        let outcome = self.engine.query_with(&visibility, sql, logs, extend).await;
        let (result, detail) = match &outcome {
            Ok(r) => (
                "ok",
                json!({"sql": sql, "tables": r.tables, "rows": r.row_count, "truncated": r.truncated}),
            ),
            Err(e) => ("error", json!({"sql": sql, "error": e.to_string()})),
        };
        let mut detail = detail;
        detail["duration_ms"] = json!(started.elapsed().as_millis() as u64);
        detail["channel"] = json!(channel);
        self.audit(Some(&consumer.id), "query", None, detail, result);
        Ok(outcome?)
    }

    /// The session a consumer's prepared statements are planned and run in (see
    /// `QueryEngine::session`).
    pub async fn session_for(
        &self,
        consumer: &Consumer,
        extend: &crate::query::CatalogExtension,
    ) -> Result<
        (
            datafusion::prelude::SessionContext,
            crate::sharing::catalog::PlanGuard,
        ),
        HubError,
    > {
        let visibility = self.visibility_of(consumer)?;
        let logs = if visibility.audit {
            self.hub_logs()
        } else {
            None
        };
        Ok(self.engine.session(&visibility, logs, extend).await?)
    }

    /// SQL as the local operator (the command line), who holds the data files anyway.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult, HubError> {
        let visibility = sharing::operator_visibility(&self.config.pipelines);
        let logs = self.hub_logs();
        Ok(self.engine.query(&visibility, sql, logs).await?)
    }

    /// The datasets `consumer` may read, with columns (masked ones marked) and publishers,
    /// and its active shares.
    pub async fn catalog_for(&self, consumer: &Consumer) -> Result<CatalogView, HubError> {
        let visibility = self.visibility_of(consumer)?;
        let mut datasets = Vec::new();
        for view in &visibility.datasets {
            let Ok(p) = self.pipeline(&view.dataset) else {
                continue;
            };
            let stats = match self.tables.get(&p.name) {
                Some(lock) => TableStore::stats_of(&*lock.lock().await).await,
                None => Default::default(),
            };
            let hub_columns = [
                crate::normalize::INGESTED_AT,
                crate::normalize::RUN_ID,
                crate::normalize::SOURCE,
            ];
            let columns = p
                .query_schema
                .fields()
                .iter()
                .filter(|f| !hub_columns.contains(&f.name().as_str()))
                .map(|f| ColumnInfo {
                    name: f.name().clone(),
                    type_name: crate::query::type_name(f.data_type()),
                    description: p
                        .schema
                        .column(f.name())
                        .map(|c| c.description.clone())
                        .or_else(|| {
                            p.computed
                                .iter()
                                .find(|c| c.name == *f.name())
                                .map(|c| c.description.clone())
                        })
                        .unwrap_or_default(),
                    mask: view.columns.iter().find(|(n, _)| n == f.name()).and_then(
                        |(_, v)| match v {
                            ColumnView::Masked(m) => Some(*m),
                            ColumnView::Clear => None,
                        },
                    ),
                })
                .collect();
            datasets.push(DatasetInfo {
                name: p.name.clone(),
                title: p.title.clone(),
                description: p.description.clone(),
                sector: p.sector.clone(),
                sharing: p.sharing.as_str(),
                key: p.key.clone(),
                columns,
                publishers: p
                    .publishers
                    .iter()
                    .filter_map(|id| self.config.consumers.get(id))
                    .map(|c| PublisherInfo {
                        id: c.id.clone(),
                        agency: c.agency.clone(),
                        focal_officer: c.focal_officer.clone(),
                    })
                    .collect(),
                row_count: stats.rows,
                last_ingest: self.state.load(&p.name).ok().and_then(|s| s.last_success),
            });
        }
        Ok(CatalogView {
            datasets,
            shares: visibility.shares,
        })
    }

    /// Quarantined records of one dataset, newest first: its publishers and admins only.
    pub async fn quarantine_for(
        &self,
        consumer: &Consumer,
        name: &str,
        limit: usize,
    ) -> Result<QueryResult, HubError> {
        let visibility = self.visibility_of(consumer)?;
        if visibility.dataset(name).is_none() || self.pipeline(name).is_err() {
            return Err(HubError::NotFound(format!("no dataset named {name:?}")));
        }
        if !visibility.may_read_quarantine_of(name) {
            return Err(HubError::Forbidden(format!(
                "only the publishers of {name:?} and the managing office may read its quarantine"
            )));
        }
        // `name` is a configured dataset name (an SQL identifier), checked above.
        let sql = format!(
            "SELECT dataset, run_id, source, location, raw, errors, quarantined_at FROM quarantine \
             WHERE dataset = '{name}' ORDER BY quarantined_at DESC, location LIMIT {limit}"
        );
        Ok(self.engine.query(&visibility, &sql, None).await?)
    }

    /// Files a special-request share; it waits for the managing office's decision.
    pub async fn file_share_request(
        &self,
        consumer: &Consumer,
        request: GrantRequest,
    ) -> Result<ShareRequest, HubError> {
        let bad = |field: &str, message: String| HubError::BadRequest {
            field: field.to_string(),
            message,
        };
        let (end_date, ()) = request
            .check(&self.config.pipelines)
            .map_err(|p| bad(p.field, p.message))?;
        let today = self.today();
        if end_date < today {
            return Err(bad(
                "end_date",
                format!("end_date {end_date} is already past"),
            ));
        }
        let taken = self
            .state
            .share_requests(Some(&consumer.id))?
            .into_iter()
            .any(|r| {
                r.grant.name == request.name
                    && matches!(r.status, ShareStatus::Pending | ShareStatus::Approved)
            });
        if taken
            || self
                .config
                .grants
                .iter()
                .any(|g| g.consumer == consumer.id && g.name == request.name)
        {
            return Err(HubError::Conflict(format!(
                "you already have a share named {:?}",
                request.name
            )));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let grant = request.into_grant(id.clone(), consumer.id.clone(), end_date);
        // A share that cannot be compiled (bad filter, bad SQL) is refused now, not at use.
        self.engine.check_grant(&grant).await.map_err(|e| {
            bad(
                if grant.sql.is_some() {
                    "sql"
                } else {
                    "row_filter"
                },
                e.to_string(),
            )
        })?;
        let filed = ShareRequest {
            grant,
            status: ShareStatus::Pending,
            filed_at: self.clock.now(),
            decision_due: self
                .config
                .calendar
                .add_working_days(today, self.config.file.sharing.decision_working_days),
            decided_at: None,
            decided_by: None,
            note: None,
        };
        self.state.file_share_request(&filed)?;
        self.audit(
            Some(&consumer.id),
            "share_filed",
            Some(&id),
            json!({"name": filed.grant.name, "dataset": filed.grant.dataset, "purpose": filed.grant.purpose, "end_date": filed.grant.end_date}),
            "ok",
        );
        Ok(filed)
    }

    fn share_view(&self, request: ShareRequest, today: NaiveDate) -> ShareView {
        ShareView {
            overdue: request.status == ShareStatus::Pending && today > request.decision_due,
            active: request.status == ShareStatus::Approved && request.grant.active_on(today),
            request,
        }
    }

    /// All requests for the managing office; a consumer's own otherwise.
    pub fn share_requests_for(&self, consumer: &Consumer) -> Result<Vec<ShareView>, HubError> {
        // Sweep expiries first so the statuses shown are today's.
        self.active_grants()?;
        let today = self.today();
        let own = (consumer.role != Role::Admin).then_some(consumer.id.as_str());
        Ok(self
            .state
            .share_requests(own)?
            .into_iter()
            .map(|r| self.share_view(r, today))
            .collect())
    }

    /// Requests undecided past their deadline (for the metric and the operator's alerts).
    pub fn overdue_share_requests(&self) -> usize {
        let today = self.today();
        self.state
            .share_requests(None)
            .map(|rs| {
                rs.iter()
                    .filter(|r| r.status == ShareStatus::Pending && today > r.decision_due)
                    .count()
            })
            .unwrap_or(0)
    }

    pub async fn decide_share_request(
        &self,
        admin: &Consumer,
        id: &str,
        decision: Decision,
        note: Option<&str>,
    ) -> Result<ShareView, HubError> {
        if admin.role != Role::Admin {
            return Err(HubError::Forbidden(
                "only the managing office decides share requests".into(),
            ));
        }
        let request = self
            .state
            .share_requests(None)?
            .into_iter()
            .find(|r| r.grant.id == id)
            .ok_or_else(|| HubError::NotFound(format!("no share request {id:?}")))?;
        let (from, to, action): (&[ShareStatus], ShareStatus, &str) = match decision {
            Decision::Approve => (
                &[ShareStatus::Pending],
                ShareStatus::Approved,
                "share_approved",
            ),
            Decision::Reject => (
                &[ShareStatus::Pending],
                ShareStatus::Rejected,
                "share_rejected",
            ),
            Decision::Revoke => (
                &[ShareStatus::Approved],
                ShareStatus::Revoked,
                "share_revoked",
            ),
        };
        if decision == Decision::Reject && note.is_none_or(|n| n.trim().is_empty()) {
            return Err(HubError::BadRequest {
                field: "note".into(),
                message: "a refusal must give its reasons".into(),
            });
        }
        if decision == Decision::Approve {
            // The tables may have changed since filing: compile again before approving.
            self.engine
                .check_grant(&request.grant)
                .await
                .map_err(|e| HubError::Conflict(e.to_string()))?;
        }
        if !self
            .state
            .decide_share_request(id, from, to, &admin.id, note, self.clock.now())?
        {
            return Err(HubError::Conflict(format!(
                "request {id:?} is {}; it cannot be moved to {}",
                request.status.as_str(),
                to.as_str()
            )));
        }
        self.audit(
            Some(&admin.id),
            action,
            Some(id),
            json!({"name": request.grant.name, "consumer": request.grant.consumer, "note": note}),
            "ok",
        );
        let updated = self
            .state
            .share_requests(None)?
            .into_iter()
            .find(|r| r.grant.id == id)
            .ok_or_else(|| HubError::NotFound(format!("no share request {id:?}")))?;
        Ok(self.share_view(updated, self.today()))
    }
}

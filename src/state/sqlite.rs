//! The SQLite state store: one file, `<data_dir>/state.sqlite`, in WAL mode.

use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    AuditEvent, AuditFilter, FeedPosition, PipelineState, QuarantineResolution, ShareRequest,
    ShareStatus, StateError, StateStore,
};
use crate::ingest::{RunReport, RunStatus};
use crate::sharing::Grant;

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: pipeline positions and run history.
    "CREATE TABLE pipeline_state (
        pipeline TEXT PRIMARY KEY,
        run_sequence INTEGER NOT NULL,
        checkpoint TEXT,
        cursor TEXT,
        last_success TEXT,
        updated_at TEXT NOT NULL
     );
     CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        pipeline TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        status TEXT NOT NULL,
        fetched INTEGER NOT NULL,
        accepted INTEGER NOT NULL,
        rejected INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        error TEXT,
        error_class TEXT
     );
     CREATE INDEX runs_by_pipeline ON runs (pipeline, started_at DESC);",
    // 2: special-request shares and the audit log. The log refuses updates; only retention
    // (prune_audit) deletes, and no API exposes either.
    "CREATE TABLE share_requests (
        id TEXT PRIMARY KEY,
        consumer TEXT NOT NULL,
        name TEXT NOT NULL,
        purpose TEXT NOT NULL,
        legal_basis TEXT NOT NULL,
        dataset TEXT,
        columns TEXT,
        row_filter TEXT,
        sql TEXT,
        end_date TEXT NOT NULL,
        status TEXT NOT NULL,
        filed_at TEXT NOT NULL,
        decision_due TEXT NOT NULL,
        decided_at TEXT,
        decided_by TEXT,
        note TEXT
     );
     CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        consumer TEXT,
        action TEXT NOT NULL,
        target TEXT,
        detail TEXT NOT NULL,
        outcome TEXT NOT NULL
     );
     CREATE INDEX audit_by_time ON audit (at);
     CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // 3: feed subscriptions: how far each target of each subscription has been acknowledged,
    // and whether an admin must resume it.
    "CREATE TABLE feed_positions (
        subscription TEXT NOT NULL,
        target TEXT NOT NULL,
        position INTEGER NOT NULL,
        inflight INTEGER,
        parked TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (subscription, target)
     );",
    // Notifications sent (an overdue report is announced once, across restarts).
    "CREATE TABLE notifications (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        notified_at TEXT NOT NULL,
        PRIMARY KEY (kind, id)
     );",
    // 5: quarantined records fixed and stored again from the console. The quarantine Delta
    // table stays append-only; a row is known by (dataset, run_id, location).
    "CREATE TABLE quarantine_resolutions (
        dataset TEXT NOT NULL,
        run_id TEXT NOT NULL,
        source TEXT NOT NULL,
        location TEXT NOT NULL,
        resolved_at TEXT NOT NULL,
        resolved_by TEXT NOT NULL,
        publish_id TEXT NOT NULL,
        PRIMARY KEY (dataset, run_id, source, location)
     );",
];

pub struct SqliteStateStore {
    connection: Mutex<Connection>,
}

impl SqliteStateStore {
    pub fn open(data_dir: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StateError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let mut connection = Connection::open(data_dir.join("state.sqlite"))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        migrate(&mut connection)?;
        Ok(SqliteStateStore {
            connection: Mutex::new(connection),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let connection = self
            .connection
            .lock()
            .map_err(|_| StateError::Corrupt("state store lock poisoned".into()))?;
        f(&connection)
    }
}

fn migrate(connection: &mut Connection) -> Result<(), StateError> {
    let applied: i64 = connection.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        let tx = connection.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

fn to_json(value: &Option<serde_json::Value>) -> Option<String> {
    value.as_ref().map(|v| v.to_string())
}

fn from_json(text: Option<String>) -> Result<Option<serde_json::Value>, StateError> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StateError::Corrupt(e.to_string())))
        .transpose()
}

fn time(text: String) -> Result<DateTime<Utc>, StateError> {
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StateError::Corrupt(format!("{text:?}: {e}")))
}

fn date(text: String) -> Result<chrono::NaiveDate, StateError> {
    chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map_err(|e| StateError::Corrupt(format!("{text:?}: {e}")))
}

const SHARE_COLUMNS: &str = "id, consumer, name, purpose, legal_basis, dataset, columns, row_filter, sql, end_date, \
                             status, filed_at, decision_due, decided_at, decided_by, note";

fn share_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Vec<Option<String>>> {
    (0..16).map(|i| r.get::<_, Option<String>>(i)).collect()
}

fn share_from_values(v: Vec<Option<String>>) -> Result<ShareRequest, StateError> {
    let mut it = v.into_iter();
    let mut next = || it.next().flatten();
    let required = |x: Option<String>, what: &str| {
        x.ok_or_else(|| StateError::Corrupt(format!("share request without {what}")))
    };
    let id = required(next(), "id")?;
    let consumer = required(next(), "consumer")?;
    let name = required(next(), "name")?;
    let purpose = required(next(), "purpose")?;
    let legal_basis = required(next(), "legal_basis")?;
    let dataset = next();
    let columns = next()
        .map(|c| {
            serde_json::from_str::<Vec<String>>(&c).map_err(|e| StateError::Corrupt(e.to_string()))
        })
        .transpose()?;
    let row_filter = next();
    let sql = next();
    let end_date = date(required(next(), "end_date")?)?;
    let status_text = required(next(), "status")?;
    let status = ShareStatus::parse(&status_text)
        .ok_or_else(|| StateError::Corrupt(format!("status {status_text:?}")))?;
    let filed_at = time(required(next(), "filed_at")?)?;
    let decision_due = date(required(next(), "decision_due")?)?;
    let decided_at = next().map(time).transpose()?;
    let decided_by = next();
    let note = next();
    Ok(ShareRequest {
        grant: Grant {
            id,
            name,
            consumer,
            purpose,
            legal_basis,
            dataset,
            columns,
            row_filter,
            sql,
            end_date,
        },
        status,
        filed_at,
        decision_due,
        decided_at,
        decided_by,
        note,
    })
}

impl StateStore for SqliteStateStore {
    fn feed_position(
        &self,
        subscription: &str,
        target: &str,
    ) -> Result<Option<FeedPosition>, StateError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT position, parked, inflight FROM feed_positions WHERE subscription = ?1 AND target = ?2",
                params![subscription, target],
                |r| {
                    Ok(FeedPosition {
                        position: r.get(0)?,
                        parked: r.get(1)?,
                        inflight: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
    }

    fn notified(
        &self,
        kind: &str,
        ids: &[String],
    ) -> Result<std::collections::HashSet<String>, StateError> {
        self.with(|c| {
            let mut statement =
                c.prepare_cached("SELECT 1 FROM notifications WHERE kind = ?1 AND id = ?2")?;
            let mut seen = std::collections::HashSet::new();
            for id in ids {
                if statement.exists(params![kind, id])? {
                    seen.insert(id.clone());
                }
            }
            Ok(seen)
        })
    }

    fn mark_notified(&self, kind: &str, ids: &[String]) -> Result<(), StateError> {
        let mut connection = self
            .connection
            .lock()
            .map_err(|_| StateError::Corrupt("state store lock poisoned".into()))?;
        let tx = connection.transaction()?;
        let now = Utc::now().to_rfc3339();
        for id in ids {
            tx.execute(
                "INSERT OR IGNORE INTO notifications (kind, id, notified_at) VALUES (?1, ?2, ?3)",
                params![kind, id, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn save_feed_position(
        &self,
        subscription: &str,
        target: &str,
        position: &FeedPosition,
    ) -> Result<(), StateError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO feed_positions (subscription, target, position, parked, inflight, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (subscription, target) DO UPDATE SET
                    position = excluded.position, parked = excluded.parked,
                    inflight = excluded.inflight, updated_at = excluded.updated_at",
                params![
                    subscription,
                    target,
                    position.position,
                    position.parked,
                    position.inflight,
                    Utc::now().to_rfc3339()
                ],
            )?;
            Ok(())
        })
    }

    fn file_share_request(&self, request: &ShareRequest) -> Result<(), StateError> {
        let g = &request.grant;
        self.with(|c| {
            c.execute(
                &format!("INSERT INTO share_requests ({SHARE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
                params![
                    g.id,
                    g.consumer,
                    g.name,
                    g.purpose,
                    g.legal_basis,
                    g.dataset,
                    g.columns.as_ref().map(|c| serde_json::to_string(c).unwrap_or_default()),
                    g.row_filter,
                    g.sql,
                    g.end_date.format("%Y-%m-%d").to_string(),
                    request.status.as_str(),
                    request.filed_at.to_rfc3339(),
                    request.decision_due.format("%Y-%m-%d").to_string(),
                    request.decided_at.map(|t| t.to_rfc3339()),
                    request.decided_by,
                    request.note,
                ],
            )?;
            Ok(())
        })
    }

    fn share_requests(&self, consumer: Option<&str>) -> Result<Vec<ShareRequest>, StateError> {
        self.with(|c| {
            let mut statement = c.prepare(&format!(
                "SELECT {SHARE_COLUMNS} FROM share_requests WHERE ?1 IS NULL OR consumer = ?1 ORDER BY filed_at DESC"
            ))?;
            let rows = statement.query_map(params![consumer], share_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(share_from_values(row?)?);
            }
            Ok(out)
        })
    }

    fn decide_share_request(
        &self,
        id: &str,
        from: &[ShareStatus],
        to: ShareStatus,
        by: &str,
        note: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, StateError> {
        self.with(|c| {
            let current: Option<String> = c
                .query_row("SELECT status FROM share_requests WHERE id = ?1", params![id], |r| r.get(0))
                .optional()?;
            let Some(current) = current.and_then(|s| ShareStatus::parse(&s)) else {
                return Ok(false);
            };
            if !from.contains(&current) {
                return Ok(false);
            }
            c.execute(
                "UPDATE share_requests SET status = ?2, decided_at = ?3, decided_by = ?4, note = COALESCE(?5, note) WHERE id = ?1",
                params![id, to.as_str(), at.to_rfc3339(), by, note],
            )?;
            Ok(true)
        })
    }

    fn append_audit(&self, event: &AuditEvent) -> Result<(), StateError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO audit (at, consumer, action, target, detail, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    event.at.to_rfc3339(),
                    event.consumer,
                    event.action,
                    event.target,
                    event.detail.to_string(),
                    event.outcome,
                ],
            )?;
            Ok(())
        })
    }

    fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StateError> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT seq, at, consumer, action, target, detail, outcome FROM audit
                 WHERE (?1 IS NULL OR consumer = ?1) AND (?2 IS NULL OR action = ?2)
                   AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4)
                 ORDER BY seq DESC LIMIT ?5",
            )?;
            let rows = statement.query_map(
                params![
                    filter.consumer,
                    filter.action,
                    filter.since.map(|t| t.to_rfc3339()),
                    filter.until.map(|t| t.to_rfc3339()),
                    filter.limit.max(1) as i64
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, at, consumer, action, target, detail, outcome) = row?;
                out.push(AuditEvent {
                    seq,
                    at: time(at)?,
                    consumer,
                    action,
                    target,
                    detail: serde_json::from_str(&detail)
                        .map_err(|e| StateError::Corrupt(e.to_string()))?,
                    outcome,
                });
            }
            Ok(out)
        })
    }

    fn resolve_quarantined(&self, resolution: &QuarantineResolution) -> Result<bool, StateError> {
        self.with(|c| {
            let inserted = c.execute(
                "INSERT OR IGNORE INTO quarantine_resolutions
                 (dataset, run_id, source, location, resolved_at, resolved_by, publish_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    resolution.dataset,
                    resolution.run_id,
                    resolution.source,
                    resolution.location,
                    resolution.resolved_at.to_rfc3339(),
                    resolution.resolved_by,
                    resolution.publish_id
                ],
            )?;
            Ok(inserted == 1)
        })
    }

    fn quarantine_resolutions(
        &self,
        dataset: &str,
    ) -> Result<Vec<QuarantineResolution>, StateError> {
        self.with(|c| {
            let mut statement = c.prepare_cached(
                "SELECT dataset, run_id, source, location, resolved_at, resolved_by, publish_id
                 FROM quarantine_resolutions WHERE dataset = ?1",
            )?;
            let rows = statement.query_map(params![dataset], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (dataset, run_id, source, location, at, resolved_by, publish_id) = row?;
                let resolved_at = DateTime::parse_from_rfc3339(&at)
                    .map_err(|e| StateError::Corrupt(format!("resolved_at {at:?}: {e}")))?
                    .with_timezone(&Utc);
                out.push(QuarantineResolution {
                    dataset,
                    run_id,
                    source,
                    location,
                    resolved_at,
                    resolved_by,
                    publish_id,
                });
            }
            Ok(out)
        })
    }

    fn prune_audit(&self, before: DateTime<Utc>) -> Result<usize, StateError> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM audit WHERE at < ?1",
                params![before.to_rfc3339()],
            )?)
        })
    }

    fn load(&self, pipeline: &str) -> Result<PipelineState, StateError> {
        self.with(|c| {
            let row = c
                .query_row(
                    "SELECT run_sequence, checkpoint, cursor, last_success FROM pipeline_state WHERE pipeline = ?1",
                    params![pipeline],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, Option<String>>(3)?,
                        ))
                    },
                )
                .optional()?;
            let Some((run_sequence, checkpoint, cursor, last_success)) = row else {
                return Ok(PipelineState::default());
            };
            Ok(PipelineState {
                checkpoint: from_json(checkpoint)?,
                cursor: from_json(cursor)?,
                run_sequence,
                last_success: last_success.map(time).transpose()?,
            })
        })
    }

    fn save(&self, pipeline: &str, state: &PipelineState) -> Result<(), StateError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO pipeline_state (pipeline, run_sequence, checkpoint, cursor, last_success, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (pipeline) DO UPDATE SET run_sequence = excluded.run_sequence,
                   checkpoint = excluded.checkpoint, cursor = excluded.cursor,
                   last_success = excluded.last_success, updated_at = excluded.updated_at",
                params![
                    pipeline,
                    state.run_sequence,
                    to_json(&state.checkpoint),
                    to_json(&state.cursor),
                    state.last_success.map(|t| t.to_rfc3339()),
                    Utc::now().to_rfc3339(),
                ],
            )?;
            Ok(())
        })
    }

    fn record_run(&self, run: &RunReport) -> Result<(), StateError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO runs (run_id, pipeline, started_at, finished_at, status, fetched,
                   accepted, rejected, bytes, attempts, trigger, error, error_class)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    run.run_id,
                    run.pipeline,
                    run.started_at.to_rfc3339(),
                    run.finished_at.to_rfc3339(),
                    run.status.as_str(),
                    run.fetched as i64,
                    run.accepted as i64,
                    run.rejected as i64,
                    run.bytes as i64,
                    run.attempts,
                    run.trigger,
                    run.error,
                    run.error_class,
                ],
            )?;
            Ok(())
        })
    }

    fn runs_between(
        &self,
        pipeline: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<RunReport>, StateError> {
        // Times are stored as RFC 3339 in UTC, which sort as text in time order; the open
        // ends are text below and above every stored time.
        let from = from.map_or_else(|| "0".to_string(), |t| t.to_rfc3339());
        let to = to.map_or_else(|| "A".to_string(), |t| t.to_rfc3339());
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT run_id, pipeline, started_at, finished_at, status, fetched, accepted, rejected,
                        bytes, attempts, trigger, error, error_class
                 FROM runs WHERE pipeline = ?1 AND started_at >= ?2 AND started_at <= ?3
                 ORDER BY started_at DESC LIMIT ?4",
            )?;
            let rows = statement.query_map(params![pipeline, from, to, limit as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, u32>(9)?,
                    r.get::<_, String>(10)?,
                    r.get::<_, Option<String>>(11)?,
                    r.get::<_, Option<String>>(12)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (run_id, pipeline, started, finished, status, fetched, accepted, rejected, bytes, attempts, trigger, error, error_class) = row?;
                out.push(RunReport {
                    run_id,
                    pipeline,
                    started_at: time(started)?,
                    finished_at: time(finished)?,
                    status: RunStatus::parse(&status)
                        .ok_or_else(|| StateError::Corrupt(format!("run status {status:?}")))?,
                    fetched: fetched as usize,
                    accepted: accepted as usize,
                    rejected: rejected as usize,
                    bytes: bytes as u64,
                    attempts,
                    trigger,
                    error,
                    error_class,
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_log_is_append_only_and_pruned_by_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStateStore::open(dir.path()).unwrap();
        let now = Utc::now();
        for (days_ago, action) in [(400, "old"), (1, "new")] {
            store
                .append_audit(&AuditEvent {
                    seq: 0,
                    at: now - chrono::Duration::days(days_ago),
                    consumer: Some("c".into()),
                    action: action.into(),
                    target: None,
                    detail: serde_json::json!({}),
                    outcome: "ok".into(),
                })
                .unwrap();
        }
        let tampering = store.with(|c| Ok(c.execute("UPDATE audit SET outcome = 'denied'", [])?));
        assert!(tampering.is_err(), "lines cannot be changed");
        assert_eq!(
            store
                .prune_audit(now - chrono::Duration::days(365))
                .unwrap(),
            1
        );
        let left = store
            .audit(&AuditFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            left.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["new"]
        );
        assert_eq!(left[0].outcome, "ok");
    }

    #[test]
    fn state_and_runs_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let state = PipelineState {
            checkpoint: Some(serde_json::json!({"taken": {"a.csv": {"size": 1}}})),
            cursor: Some(serde_json::json!("2025-04-01T00:00:00Z")),
            run_sequence: 7,
            last_success: Some(Utc::now()),
        };
        {
            let store = SqliteStateStore::open(dir.path()).unwrap();
            assert_eq!(store.load("p").unwrap(), PipelineState::default());
            store.save("p", &state).unwrap();
            let now = Utc::now();
            for (i, status) in [RunStatus::Failed, RunStatus::Succeeded]
                .into_iter()
                .enumerate()
            {
                store
                    .record_run(&RunReport {
                        pipeline: "p".into(),
                        run_id: format!("r{i}"),
                        started_at: now + chrono::Duration::seconds(i as i64),
                        finished_at: now + chrono::Duration::seconds(i as i64 + 1),
                        status,
                        fetched: 3,
                        accepted: 2,
                        rejected: 1,
                        bytes: 100,
                        attempts: 1,
                        trigger: "schedule".into(),
                        error: None,
                        error_class: None,
                    })
                    .unwrap();
            }
        }
        let store = SqliteStateStore::open(dir.path()).unwrap();
        let loaded = store.load("p").unwrap();
        assert_eq!(loaded.checkpoint, state.checkpoint);
        assert_eq!(loaded.cursor, state.cursor);
        assert_eq!(loaded.run_sequence, 7);
        let runs = store.runs("p", 10).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].run_id, "r1", "newest first");
        assert_eq!(
            store.last_run("p").unwrap().unwrap().status,
            RunStatus::Succeeded
        );
    }
}

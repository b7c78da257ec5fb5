//! `reports/*.toml`: periodic report definitions, checked at load like pipelines: unknown
//! keys, a bad cron, and section SQL that does not plan (against every dataset's columns,
//! the quarantine, `audit` and `runs`) are problems with their file and line.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use serde::Deserialize;

use super::diagnostics::TomlSource;
use super::{Pipeline, Problem, is_identifier, parse_schedule, read_toml_files};
use crate::report::{ChartKind, ColumnSpec, Period, PeriodKind, ReportDef, SectionDef};

#[derive(Debug, Deserialize)]
struct ReportFile {
    name: String,
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default = "default_periods")]
    periods: Vec<PeriodKind>,
    /// A `push` dataset keyed by (`report`, `period`) that receives every complete
    /// generation as a record, so the change feed carries reports to its subscribers.
    #[serde(default)]
    publish_to: Option<String>,
    /// For how long after a period ends each scheduled fire generates its report again; a
    /// generation whose figures changed (data sent late) is stored as the next revision.
    #[serde(default)]
    revise_for: Option<String>,
    sections: Vec<SectionFile>,
}

fn default_periods() -> Vec<PeriodKind> {
    vec![PeriodKind::Month]
}

#[derive(Debug, Deserialize)]
struct SectionFile {
    title: String,
    #[serde(default)]
    intro: Option<String>,
    sql: String,
    #[serde(default)]
    chart: ChartKind,
    #[serde(default)]
    chart_series: Vec<String>,
    #[serde(default)]
    columns: BTreeMap<String, ColumnSpec>,
}

/// Every report in `dir`, checked; a missing folder means no reports.
pub(super) fn load_reports(
    dir: &Path,
    functions: &SessionContext,
    pipelines: &[Arc<Pipeline>],
    tz: chrono_tz::Tz,
    problems: &mut Vec<Problem>,
) -> Vec<Arc<ReportDef>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let planner = match planning_context(functions, pipelines) {
        Ok(ctx) => ctx,
        Err(message) => {
            problems.push(Problem {
                file: dir.to_path_buf(),
                line: None,
                message: format!("cannot check the reports: {message}"),
            });
            return Vec::new();
        }
    };
    let mut reports: Vec<Arc<ReportDef>> = Vec::new();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for (file, text) in read_toml_files(entries, problems) {
        let source = TomlSource::new(&file, &text);
        let before = problems.len();
        let Some(parsed) = source.deserialize::<ReportFile>(problems) else {
            continue;
        };
        if let Some(first) = names.get(&parsed.name) {
            problems.push(source.problem(
                Some("name"),
                format!(
                    "report name {:?} is already used by {}",
                    parsed.name,
                    first.display()
                ),
            ));
            continue;
        }
        names.insert(parsed.name.clone(), file.clone());
        if let Some(report) = check_report(&source, parsed, &planner, pipelines, tz, problems)
            && problems.len() == before
        {
            reports.push(Arc::new(report));
        }
    }
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    reports
}

/// A context with an empty table of the right columns for every table a report may read.
/// A context with an empty table of each dataset's columns (and the hub's own tables): SQL
/// written in the config (reports, views, the overdue query) is planned there at load, so
/// its mistakes are reported with their line.
pub(super) fn planning_context(
    functions: &SessionContext,
    pipelines: &[Arc<Pipeline>],
) -> Result<SessionContext, String> {
    let (ctx, public, _) =
        crate::sharing::catalog::empty_context(functions).map_err(|e| e.to_string())?;
    let mut tables: Vec<(String, arrow::datatypes::SchemaRef)> = pipelines
        .iter()
        .map(|p| (p.name.clone(), p.query_schema.clone()))
        .collect();
    tables.push((
        crate::storage::quarantine::TABLE.to_string(),
        crate::storage::quarantine::schema(),
    ));
    tables.extend(
        crate::hub::log_table_schemas()
            .into_iter()
            .map(|(n, s)| (n.to_string(), s)),
    );
    for (name, schema) in tables {
        let table = MemTable::try_new(schema, vec![vec![]]).map_err(|e| e.strip_backtrace())?;
        public
            .register_table(name, Arc::new(table) as Arc<dyn TableProvider>)
            .map_err(|e| e.strip_backtrace())?;
    }
    Ok(ctx)
}

fn check_report(
    source: &TomlSource<'_>,
    file: ReportFile,
    planner: &SessionContext,
    pipelines: &[Arc<Pipeline>],
    tz: chrono_tz::Tz,
    problems: &mut Vec<Problem>,
) -> Option<ReportDef> {
    if !is_identifier(&file.name) {
        problems.push(source.problem(
            Some("name"),
            format!(
                "name {:?} must be an identifier: lower-case letters, digits and '_', starting with a letter",
                file.name
            ),
        ));
    }
    if file.title.trim().is_empty() {
        problems.push(source.problem(Some("title"), "title is empty"));
    }
    let schedule = match file.schedule.as_deref().map(parse_schedule) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            problems.push(source.problem(Some("schedule"), e));
            None
        }
    };
    let revise_for = match file.revise_for.as_deref().map(super::parse_duration) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            problems.push(source.problem(Some("revise_for"), e));
            None
        }
    };
    if let Some(dataset) = &file.publish_to
        && let Err(e) = check_publish_dataset(dataset, pipelines)
    {
        problems.push(source.problem(Some("publish_to"), e));
    }
    if file.periods.is_empty() {
        problems.push(source.problem(
            Some("periods"),
            "periods must name at least one of month, quarter, half_year, year",
        ));
    }
    if file.sections.is_empty() {
        problems.push(source.problem(Some("sections"), "a report needs at least one [[sections]]"));
    }
    // Any period will do to plan: placeholders become literals of the same types.
    let sample = Period::parse("2025-01").ok()?;
    let mut sections = Vec::new();
    for (i, s) in file.sections.into_iter().enumerate() {
        let at = |key: &str| format!("sections.{i}.{key}");
        let sql = match crate::report::substitute(&s.sql, &sample, tz) {
            Ok(sql) => sql,
            Err(e) => {
                problems
                    .push(source.problem(Some(&at("sql")), format!("section {:?}: {e}", s.title)));
                continue;
            }
        };
        match plan_columns(planner, &sql) {
            Ok(columns) => {
                for name in s.columns.keys() {
                    if !columns.contains(name) {
                        problems.push(source.problem(
                            Some(&at("columns")),
                            format!(
                                "section {:?}: column {name:?} is not in the query's result ({})",
                                s.title,
                                columns.join(", ")
                            ),
                        ));
                    }
                }
                for name in &s.chart_series {
                    if !columns.contains(name) {
                        problems.push(source.problem(
                            Some(&at("chart_series")),
                            format!(
                                "section {:?}: chart series {name:?} is not in the query's result",
                                s.title
                            ),
                        ));
                    }
                }
            }
            Err(e) => problems.push(source.problem(
                Some(&at("sql")),
                format!("section {:?}: the query does not plan: {e}", s.title),
            )),
        }
        sections.push(SectionDef {
            title: s.title,
            intro: s.intro,
            sql: s.sql,
            chart: s.chart,
            chart_series: s.chart_series,
            columns: s.columns,
        });
    }
    Some(ReportDef {
        file: source.path.to_path_buf(),
        name: file.name,
        title: file.title,
        description: file.description,
        schedule_text: file.schedule,
        schedule,
        periods: file.periods,
        publish_to: file.publish_to,
        revise_for,
        sections,
    })
}

/// A dataset can receive reports if it is pushed (nothing else writes it), keyed by report
/// and period (a revision replaces the record), and its schema has every field of the record.
fn check_publish_dataset(dataset: &str, pipelines: &[Arc<Pipeline>]) -> Result<(), String> {
    let pipeline = pipelines
        .iter()
        .find(|p| p.name == dataset)
        .ok_or_else(|| format!("publish_to: no dataset named {dataset:?}"))?;
    if !pipeline.is_push() {
        return Err(format!(
            "publish_to: dataset {dataset:?} has a {:?} source; reports go to a dataset with `kind = \"push\"`",
            pipeline.source_kind
        ));
    }
    if pipeline.key != ["report", "period"] {
        return Err(format!(
            "publish_to: dataset {dataset:?} must have key = [\"report\", \"period\"]"
        ));
    }
    let missing: Vec<&str> = crate::report::PUBLISHED_FIELDS
        .iter()
        .copied()
        .filter(|f| pipeline.schema.column(f).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "publish_to: the schema of {dataset:?} lacks {}",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// The result's column names, if `sql` plans as a read-only query.
fn plan_columns(planner: &SessionContext, sql: &str) -> Result<Vec<String>, String> {
    let plan = futures::executor::block_on(planner.state().create_logical_plan(sql))
        .map_err(|e| e.find_root().strip_backtrace())?;
    crate::sharing::catalog::read_only()
        .verify_plan(&plan)
        .map_err(|e| e.find_root().message().to_string())?;
    Ok(plan
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect())
}

//! Loading and checking the configuration: `config.toml` and every `pipelines/*.toml`.
//!
//! Loading never stops at the first mistake: every problem in every file is collected, with
//! its file and line, so `iochub check` (and a refused `serve`) can show them all at once.

mod diagnostics;
mod hub;
mod pipeline;
mod report;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use iochub_connectors::{BuildContext, SourceConfig};

pub use diagnostics::{ConfigErrors, Problem};
pub use hub::{
    AuditSection, AuthSection, HttpSection, HubFile, HubSection, OrgLevel, Organisation,
    OverdueConfig, PostgresSection, QuerySection, ReportsSection, SharingSection, Unit, ViewConfig,
};
pub use pipeline::{Check, Coercions, CursorConfig, DateFormat, RunRetry, Sharing, parse_duration};

use crate::normalize::{ColumnKind, DatasetSchema};
use crate::sharing::{Consumers, GeneratedToken, Grant, Role};
use diagnostics::{TomlSource, resolve};

/// Names that hub tables own; a dataset may not take them.
const RESERVED_NAMES: &[&str] = &[
    "quarantine",
    "audit",
    "information_schema",
    "share",
    "pg_catalog",
    "runs",
];

/// A path from the config file (relative to its folder unless absolute).
pub fn resolve_path(config_file: &Path, path: &Path) -> PathBuf {
    resolve(config_file, path)
}

/// Command-line settings that win over the config file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub http_addr: Option<SocketAddr>,
    pub pg_addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    /// A TOML file of `[<dataset>]` tables, each replacing that pipeline's `[source]`:
    /// `iochub demo` points datasets at its local network sources so.
    pub sources_overlay: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct HubConfig {
    pub path: PathBuf,
    pub file: HubFile,
    pub data_dir: PathBuf,
    pub time_zone: chrono_tz::Tz,
    pub pipelines: Vec<Arc<Pipeline>>,
    pub consumers: Consumers,
    /// Tokens made at load because their environment variable was unset; `serve` prints
    /// them once.
    pub generated_tokens: Vec<GeneratedToken>,
    /// Pre-approved shares from `grants/*.toml`.
    pub grants: Vec<Grant>,
    pub calendar: Arc<crate::calendar::WorkingCalendar>,
    /// The administrative units over time, their areas parsed once (`[organisation]`).
    pub units: Arc<crate::units::Units>,
    /// Checked `[[subscriptions]]`.
    pub subscriptions: Vec<crate::feed::Subscription>,
    /// Checked report definitions (`reports/*.toml`), in name order.
    pub reports: Vec<Arc<crate::report::ReportDef>>,
}

impl HubConfig {
    pub fn pipeline(&self, name: &str) -> Option<&Arc<Pipeline>> {
        self.pipelines.iter().find(|p| p.name == name)
    }

    pub fn report(&self, name: &str) -> Option<&Arc<crate::report::ReportDef>> {
        self.reports.iter().find(|r| r.name == name)
    }
}

/// A checked pipeline, ready to run.
#[derive(Debug)]
pub struct Pipeline {
    pub file: PathBuf,
    pub name: String,
    pub title: String,
    pub description: String,
    pub sector: String,
    pub schema_path: PathBuf,
    pub schema: Arc<DatasetSchema>,
    pub key: Vec<String>,
    pub sharing: Sharing,
    pub publishers: Vec<String>,
    pub schedule_text: Option<String>,
    pub schedule: Option<cron::Schedule>,
    pub max_staleness: Option<Duration>,
    pub source_kind: String,
    pub source: SourceConfig,
    pub build_context: BuildContext,
    pub coerce: Coercions,
    pub cursor: Option<CursorConfig>,
    pub run_retry: RunRetry,
    pub transform: Option<String>,
    pub checks: Vec<Check>,
    /// The stored table's columns: the schema's (or the transform's output), then the hub's.
    pub table_schema: arrow::datatypes::SchemaRef,
    /// Columns computed at each read (`[[computed]]`), after the stored ones.
    pub computed: Arc<Vec<crate::query::computed::ComputedColumn>>,
    /// The stored columns and the computed ones: what queries see.
    pub query_schema: arrow::datatypes::SchemaRef,
}

impl Pipeline {
    /// Records are sent in (`POST .../records`, the hub's own reports); nothing is pulled.
    pub fn is_push(&self) -> bool {
        matches!(self.source, SourceConfig::Push(_))
    }
}

pub fn load(path: &Path, overrides: &Overrides) -> Result<HubConfig, ConfigErrors> {
    let mut problems = Vec::new();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Err(ConfigErrors(vec![Problem {
                file: path.to_path_buf(),
                line: None,
                message: format!("cannot read the config file: {e}"),
            }]));
        }
    };
    let source = TomlSource::new(path, &text);
    let Some(mut file) = source.deserialize::<HubFile>(&mut problems) else {
        return Err(ConfigErrors(problems));
    };
    let time_zone = match file.hub.time_zone.parse::<chrono_tz::Tz>() {
        Ok(tz) => tz,
        Err(_) => {
            problems.push(source.problem(
                Some("hub.time_zone"),
                format!(
                    "time_zone {:?} is not an IANA time zone name such as \"Asia/Ho_Chi_Minh\"",
                    file.hub.time_zone
                ),
            ));
            chrono_tz::Asia::Ho_Chi_Minh
        }
    };
    if let Some(addr) = overrides.http_addr {
        file.http.addr = addr;
    }
    if let Some(addr) = overrides.pg_addr {
        file.postgres.addr = addr;
    }
    // Checked after the command-line overrides: `--pg-addr 0.0.0.0:5433` must meet the same
    // TLS rule as the file.
    check_hub(&source, &file, &mut problems);
    let data_dir = match &overrides.data_dir {
        Some(d) => d.clone(),
        None => resolve(path, &file.hub.data_dir),
    };
    let calendar = match &file.calendar.file {
        None => crate::calendar::WorkingCalendar::weekdays_only(),
        Some(relative) => match crate::calendar::WorkingCalendar::load(&resolve(path, relative)) {
            Ok(c) => c,
            Err(e) => {
                problems.push(source.problem(Some("calendar.file"), e.to_string()));
                crate::calendar::WorkingCalendar::weekdays_only()
            }
        },
    };
    let calendar = Arc::new(calendar.with_rule(file.calendar.rule()));
    let units = Arc::new(load_units(&source, &file, &mut problems));
    let functions = crate::functions::context(calendar.clone(), units.clone(), time_zone);
    let pipelines_dir = resolve(path, &file.hub.pipelines_dir);
    let overlay_text = overrides.sources_overlay.as_ref().map(|path| {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            problems.push(Problem {
                file: path.clone(),
                line: None,
                message: format!("cannot read the sources overlay: {e}"),
            });
            String::new()
        });
        (path.clone(), text)
    });
    let overlay = overlay_text
        .as_ref()
        .map(|(path, text)| SourcesOverlay::parse(path, text, &mut problems));
    let context = PipelineContext {
        data_dir: &data_dir,
        functions: &functions,
        overlay: overlay.as_ref(),
    };
    let pipelines = load_pipelines(&pipelines_dir, &context, &mut problems);
    if let Some(overlay) = &overlay {
        overlay.check_all_used(&mut problems);
    }
    let mut generated_tokens = Vec::new();
    let consumers = match Consumers::from_config(&file.consumers, &mut generated_tokens) {
        Ok(c) => c,
        Err(list) => {
            for (i, message) in list {
                problems.push(source.problem(Some(&format!("consumers.{i}")), message));
            }
            Consumers::default()
        }
    };
    check_publishers(&pipelines, &consumers, &mut problems);
    check_views(&source, &file, &pipelines, &functions, &mut problems);
    check_overdue(&source, &file, &pipelines, &functions, &mut problems);
    let grants_dir = resolve(path, &file.sharing.grants_dir);
    let grants = load_grants(&grants_dir, &pipelines, &consumers, &mut problems);
    let subscriptions = check_subscriptions(
        &source,
        &file,
        &pipelines,
        &consumers,
        &grants,
        &mut problems,
    );
    let reports = report::load_reports(
        &resolve(path, &file.reports.dir),
        &functions,
        &pipelines,
        time_zone,
        &mut problems,
    );
    if problems.is_empty() {
        Ok(HubConfig {
            path: path.to_path_buf(),
            file,
            data_dir,
            time_zone,
            pipelines,
            consumers,
            generated_tokens,
            grants,
            calendar,
            units,
            subscriptions,
            reports,
        })
    } else {
        Err(ConfigErrors(problems))
    }
}

/// The `*.toml` files of a folder, in name order (so problems are reported in a stable order).
/// Each `*.toml` file of a folder with its text, in name order; a file that cannot be read
/// is a problem of its own and is left out.
fn read_toml_files(
    entries: std::fs::ReadDir,
    problems: &mut Vec<Problem>,
) -> Vec<(PathBuf, String)> {
    toml_files(entries)
        .into_iter()
        .filter_map(|file| match std::fs::read_to_string(&file) {
            Ok(text) => Some((file, text)),
            Err(e) => {
                problems.push(Problem {
                    file,
                    line: None,
                    message: format!("cannot read the file: {e}"),
                });
                None
            }
        })
        .collect()
}

fn toml_files(entries: std::fs::ReadDir) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn check_hub(source: &TomlSource<'_>, file: &HubFile, problems: &mut Vec<Problem>) {
    if file.hub.id.is_empty()
        || !file
            .hub
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        problems.push(source.problem(
            Some("hub.id"),
            "hub.id must be a non-empty identifier (letters, digits, '-', '_')",
        ));
    }
    let pg = &file.postgres;
    if pg.tls_cert.is_some() != pg.tls_key.is_some() {
        problems.push(source.problem(
            Some("postgres"),
            "set both postgres.tls_cert and postgres.tls_key, or neither",
        ));
    }
    if pg.require_tls && pg.tls_cert.is_none() {
        problems.push(source.problem(
            Some("postgres.require_tls"),
            "require_tls needs postgres.tls_cert and postgres.tls_key",
        ));
    }
    if pg.enabled && !pg.addr.ip().is_loopback() && !pg.require_tls {
        problems.push(source.problem(
            Some("postgres.addr"),
            format!(
                "{} is reachable from other machines: passwords (tokens) would cross the network in clear; set tls_cert, tls_key and require_tls = true",
                pg.addr
            ),
        ));
    }
    if file.query.max_rows == 0
        || file.query.timeout_seconds == 0
        || file.query.memory_limit_mb == 0
    {
        problems.push(source.problem(
            Some("query"),
            "query.max_rows, query.timeout_seconds and query.memory_limit_mb must be at least 1",
        ));
    }
}

/// The organisation's units, completed from their GeoJSON; each problem at its config key's
/// line, or at the GeoJSON feature's line.
fn load_units(
    source: &TomlSource<'_>,
    file: &HubFile,
    problems: &mut Vec<Problem>,
) -> crate::units::Units {
    let org = &file.organisation;
    let geojson = org.units_geojson.as_ref().map(|p| resolve(source.path, p));
    let (units, errors) =
        crate::units::Units::build(&org.units, &org.fallback_unit, geojson.as_deref());
    for e in errors {
        problems.push(match e.location() {
            crate::units::Location::ConfigKey(key) => source.problem(Some(&key), e.to_string()),
            crate::units::Location::File { path, line } => Problem {
                file: path,
                line,
                message: e.to_string(),
            },
        });
    }
    units
}

/// What every pipeline is checked against: where connectors keep state, the SQL functions
/// for transforms and checks, and the demo's replacement sources.
struct PipelineContext<'a> {
    data_dir: &'a Path,
    functions: &'a datafusion::prelude::SessionContext,
    overlay: Option<&'a SourcesOverlay<'a>>,
}

/// `--sources` file: `[<dataset>]` tables that replace those pipelines' `[source]`.
struct SourcesOverlay<'a> {
    source: TomlSource<'a>,
    tables: toml::Table,
    /// The datasets whose pipeline file asked for its source (valid or not).
    used: std::cell::RefCell<std::collections::HashSet<String>>,
}

impl<'a> SourcesOverlay<'a> {
    fn parse(path: &'a Path, text: &'a str, problems: &mut Vec<Problem>) -> Self {
        let source = TomlSource::new(path, text);
        let tables = match text.parse::<toml::Table>() {
            Ok(t) => t,
            Err(e) => {
                problems.push(source.problem(None, format!("not valid TOML: {}", e.message())));
                toml::Table::new()
            }
        };
        SourcesOverlay {
            source,
            tables,
            used: Default::default(),
        }
    }

    fn source_of(&self, dataset: &str) -> Option<&toml::Table> {
        self.used.borrow_mut().insert(dataset.to_string());
        self.tables.get(dataset).and_then(toml::Value::as_table)
    }

    fn check_all_used(&self, problems: &mut Vec<Problem>) {
        let used = self.used.borrow();
        for name in self.tables.keys() {
            if !used.contains(name) {
                problems.push(
                    self.source
                        .problem(Some(name), format!("no pipeline is named {name:?}")),
                );
            }
        }
    }
}

fn load_pipelines(
    dir: &Path,
    context: &PipelineContext<'_>,
    problems: &mut Vec<Problem>,
) -> Vec<Arc<Pipeline>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem {
                file: dir.to_path_buf(),
                line: None,
                message: format!("cannot read the pipelines folder: {e}"),
            });
            return Vec::new();
        }
    };
    let mut pipelines: Vec<Arc<Pipeline>> = Vec::new();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for (file, text) in read_toml_files(entries, problems) {
        let source = TomlSource::new(&file, &text);
        let (name, pipeline) = load_pipeline(&source, context, problems);
        // Names are checked for duplicates even when a file has other problems, so that
        // every mistake shows in one pass.
        if let Some(name) = name {
            if let Some(first) = names.get(&name) {
                problems.push(source.problem(
                    Some("name"),
                    format!(
                        "dataset name {name:?} is already used by {}",
                        first.display()
                    ),
                ));
                continue;
            }
            names.insert(name, file.clone());
        }
        if let Some(pipeline) = pipeline {
            pipelines.push(Arc::new(pipeline));
        }
    }
    pipelines
}

/// Accepts the usual 5-field cron (minute first) as well as the `cron` crate's 6/7 fields
/// (seconds first).
pub fn parse_schedule(text: &str) -> Result<cron::Schedule, String> {
    let fields = text.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {text}")
    } else {
        text.to_string()
    };
    cron::Schedule::from_str(&full)
        .map_err(|e| format!("schedule {text:?} is not a valid cron expression: {e}"))
}

/// The dataset name (when the file could be read that far) and the pipeline (when it is valid).
fn load_pipeline(
    source: &TomlSource<'_>,
    context: &PipelineContext<'_>,
    problems: &mut Vec<Problem>,
) -> (Option<String>, Option<Pipeline>) {
    let before = problems.len();
    let Some(file) = source.deserialize::<pipeline::PipelineFile>(problems) else {
        return (None, None);
    };
    let name = file.name.clone();
    let pipeline = check_pipeline(source, file, context, problems, before);
    (Some(name), pipeline)
}

fn check_pipeline(
    source: &TomlSource<'_>,
    file: pipeline::PipelineFile,
    context: &PipelineContext<'_>,
    problems: &mut Vec<Problem>,
    before: usize,
) -> Option<Pipeline> {
    let functions = context.functions;
    let state_dir = context.data_dir.join("connectors").join(&file.name);
    if !is_identifier(&file.name) {
        problems.push(source.problem(
            Some("name"),
            format!(
                "name {:?} must be an SQL identifier: lower-case letters, digits and '_', starting with a letter",
                file.name
            ),
        ));
    } else if RESERVED_NAMES.contains(&file.name.as_str()) {
        problems.push(source.problem(
            Some("name"),
            format!("name {:?} is reserved for the hub's own tables", file.name),
        ));
    }
    let schedule = match file.schedule.as_deref().map(parse_schedule) {
        None => Some(None),
        Some(Ok(s)) => Some(Some(s)),
        Some(Err(e)) => {
            problems.push(source.problem(Some("schedule"), e));
            None
        }
    };
    let max_staleness = match file.max_staleness.as_deref().map(parse_duration) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            problems.push(source.problem(Some("max_staleness"), e));
            None
        }
    };
    let schema_path = resolve(source.path, &file.schema);
    let schema = match DatasetSchema::load(&schema_path) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            problems.push(source.problem(Some("schema"), e.to_string()));
            None
        }
    };
    // With a transform, the stored columns are its output, planned here against the schema.
    let table_schema = match (&schema, &file.transform) {
        (Some(s), None) => Some(s.arrow.clone()),
        (Some(s), Some(sql)) => {
            let personal: Vec<String> = s
                .columns
                .iter()
                .filter(|c| c.pii)
                .map(|c| c.name.clone())
                .collect();
            if let Ok(leaks) = crate::transform::unmasked_personal_outputs(
                functions,
                s.data_schema(),
                sql,
                &personal,
            ) {
                for (column, carried) in leaks {
                    problems.push(source.problem(
                        Some("transform"),
                        format!(
                            "transform: column {column:?} carries personal data ({}) under a name masks do not cover (they go by the schema's x-pii property names): keep the personal property's name, wrap it in a mask_* function, or leave it out",
                            carried.join(", ")
                        ),
                    ));
                }
            }
            match crate::transform::output_schema(functions, s.data_schema(), sql) {
                Ok(out) => Some(crate::transform::with_meta_fields(&out)),
                Err(e) => {
                    problems.push(source.problem(Some("transform"), format!("transform: {e}")));
                    None
                }
            }
        }
        (None, _) => None,
    };
    let computed = plan_computed(
        source,
        &file,
        schema.as_deref(),
        table_schema.as_ref(),
        functions,
        problems,
    );
    if let Some(schema) = &schema {
        for (i, check) in file.checks.iter().enumerate() {
            if let Err(e) =
                crate::transform::check_rule(functions, schema.data_schema(), &check.rule)
            {
                problems.push(source.problem(
                    Some(&format!("checks.{i}.rule")),
                    format!("check {:?}: {e}", check.name),
                ));
            }
        }
    }
    if let (Some(schema), Some(table)) = (&schema, &table_schema) {
        let transformed = file.transform.is_some();
        let kind_of = |name: &str| -> Option<ColumnKind> {
            if transformed {
                table
                    .field_with_name(name)
                    .ok()
                    .map(|f| ColumnKind::from_arrow(f.data_type()))
            } else {
                schema.column(name).map(|c| c.kind)
            }
        };
        let of_what = if transformed {
            "a column of the transform's output"
        } else {
            "a property of the schema"
        };
        for (i, key) in file.key.iter().enumerate() {
            match kind_of(key) {
                None => problems.push(source.problem(
                    Some(&format!("key.{i}")),
                    format!("key column {key:?} is not {of_what}"),
                )),
                Some(k) if k.is_json() => problems.push(source.problem(
                    Some(&format!("key.{i}")),
                    format!("key column {key:?} is an object or array; a key must be a scalar"),
                )),
                Some(_) => {}
            }
        }
        if let Some(cursor) = &file.cursor {
            match kind_of(&cursor.field) {
                None => problems.push(source.problem(
                    Some("cursor.field"),
                    format!("cursor field {:?} is not {of_what}", cursor.field),
                )),
                Some(k) if k.is_json() || k == ColumnKind::Boolean => {
                    problems.push(source.problem(
                        Some("cursor.field"),
                        format!(
                            "cursor field {:?} must be a string, number, date or date-time",
                            cursor.field
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    if file.run_retry.attempts == 0 {
        problems.push(source.problem(
            Some("run_retry.attempts"),
            "run_retry.attempts must be at least 1",
        ));
    }
    let (source_kind, source_config) = match context
        .overlay
        .and_then(|o| Some((o, o.source_of(&file.name)?)))
    {
        Some((overlay, table)) => load_source(&overlay.source, table, &file.name, problems),
        None => load_source(source, &file.source, "source", problems),
    };
    if source_kind == "push" && file.schedule.is_some() {
        problems.push(source.problem(
            Some("schedule"),
            "a push dataset is sent in, never pulled: remove `schedule`",
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(Pipeline {
        file: source.path.to_path_buf(),
        name: file.name,
        title: file.title,
        description: file.description,
        sector: file.sector,
        schema_path,
        schema: schema?,
        key: file.key,
        sharing: file.sharing,
        publishers: file.publishers,
        schedule_text: file.schedule,
        schedule: schedule?,
        max_staleness,
        source_kind,
        source: source_config?,
        build_context: BuildContext {
            base_dir: source.path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            state_dir,
        },
        coerce: file.coerce,
        cursor: file.cursor,
        run_retry: file.run_retry,
        transform: file.transform,
        checks: file.checks,
        query_schema: query_schema(table_schema.as_ref()?, &computed),
        computed: Arc::new(computed),
        table_schema: table_schema?,
    })
}

/// Plans each `[[computed]]` column over the stored columns; problems carry their line.
fn plan_computed(
    source: &TomlSource<'_>,
    file: &pipeline::PipelineFile,
    schema: Option<&DatasetSchema>,
    table_schema: Option<&arrow::datatypes::SchemaRef>,
    functions: &datafusion::prelude::SessionContext,
    problems: &mut Vec<Problem>,
) -> Vec<crate::query::computed::ComputedColumn> {
    let Some(stored) = table_schema else {
        return Vec::new();
    };
    let personal: Vec<String> = schema
        .map(|s| {
            s.columns
                .iter()
                .filter(|c| c.pii)
                .map(|c| c.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut planned: Vec<crate::query::computed::ComputedColumn> = Vec::new();
    for (i, spec) in file.computed.iter().enumerate() {
        let at = format!("computed.{i}");
        if !is_identifier(&spec.name) || spec.name.starts_with('_') {
            problems.push(source.problem(
                Some(&format!("{at}.name")),
                format!(
                    "computed column name {:?} must be an SQL identifier not starting with _",
                    spec.name
                ),
            ));
            continue;
        }
        if stored.field_with_name(&spec.name).is_ok() || planned.iter().any(|c| c.name == spec.name)
        {
            problems.push(source.problem(
                Some(&format!("{at}.name")),
                format!(
                    "computed column {:?} is already a column of the table",
                    spec.name
                ),
            ));
            continue;
        }
        match crate::query::computed::ComputedColumn::plan(functions, stored, &spec.name, &spec.sql)
        {
            Ok(c) if !personal_refs(&c.expr, &personal).is_empty() => {
                problems.push(source.problem(
                    Some(&format!("{at}.sql")),
                    format!(
                        "computed column {:?} reads personal data ({}); masks go by column name, so it would show it unmasked",
                        spec.name,
                        personal_refs(&c.expr, &personal).join(", ")
                    ),
                ));
            }
            Ok(mut c) => {
                c.description = spec.description.clone();
                planned.push(c);
            }
            Err(e) => problems.push(source.problem(
                Some(&format!("{at}.sql")),
                format!("computed column {:?}: {e}", spec.name),
            )),
        }
    }
    planned
}

fn query_schema(
    stored: &arrow::datatypes::SchemaRef,
    computed: &[crate::query::computed::ComputedColumn],
) -> arrow::datatypes::SchemaRef {
    if computed.is_empty() {
        return stored.clone();
    }
    let fields: Vec<arrow::datatypes::Field> = stored
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .chain(computed.iter().map(|c| c.field.clone()))
        .collect();
    Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        stored.metadata().clone(),
    ))
}

/// `at` is where the table sits in its file: `source` in a pipeline, the dataset's name in a
/// sources overlay.
fn load_source(
    source: &TomlSource<'_>,
    table: &toml::Table,
    at: &str,
    problems: &mut Vec<Problem>,
) -> (String, Option<SourceConfig>) {
    let mut settings = table.clone();
    let kind = match settings.remove("kind") {
        Some(toml::Value::String(k)) => k,
        _ => {
            problems.push(source.problem(
                Some(at),
                format!(
                    "{at}.kind is missing; one of: {}",
                    iochub_connectors::KINDS.join(", ")
                ),
            ));
            return (String::new(), None);
        }
    };
    let mut unknown = Vec::new();
    let parsed = SourceConfig::deserialize(
        &kind,
        serde_ignored::Deserializer::new(settings, &mut |path: serde_ignored::Path<'_>| {
            unknown.push(diagnostics::clean_path(&path))
        }),
    );
    for key in unknown {
        let dotted = format!("{at}.{key}");
        problems.push(source.problem(
            Some(&dotted),
            format!("unknown key `{dotted}` for connector {kind:?}"),
        ));
    }
    match parsed {
        Ok(Some(config)) => {
            for p in config.validate() {
                problems.push(source.problem(Some(at), format!("{at}: {p}")));
            }
            (kind, Some(config))
        }
        Ok(None) => {
            problems.push(source.problem(
                Some(&format!("{at}.kind")),
                format!(
                    "unknown connector kind {kind:?}; one of: {}",
                    iochub_connectors::KINDS.join(", ")
                ),
            ));
            (kind, None)
        }
        Err(e) => {
            problems.push(source.problem(Some(at), format!("{at}: {}", e.message().trim())));
            (kind, None)
        }
    }
}

/// Each `[[views]]` must be named like a table no dataset or hub table uses, and plan over the
/// datasets' columns (empty tables of their schemas stand in for the data).
fn check_views(
    source: &TomlSource<'_>,
    file: &HubFile,
    pipelines: &[Arc<Pipeline>],
    functions: &datafusion::prelude::SessionContext,
    problems: &mut Vec<Problem>,
) {
    if file.views.is_empty() {
        return;
    }
    let Ok(ctx) = report::planning_context(functions, pipelines) else {
        return;
    };
    let mut seen: Vec<&str> = Vec::new();
    for (i, view) in file.views.iter().enumerate() {
        let at = format!("views.{i}");
        let name = view.name.as_str();
        if !is_identifier(name)
            || RESERVED_NAMES.contains(&name)
            || pipelines.iter().any(|p| p.name == name)
            || seen.contains(&name)
        {
            problems.push(source.problem(
                Some(&format!("{at}.name")),
                format!("view name {name:?} must be an SQL identifier that no dataset, other view or hub table uses"),
            ));
            continue;
        }
        seen.push(name);
        if let Err(e) = plan_select(&ctx, &view.sql) {
            problems
                .push(source.problem(Some(&format!("{at}.sql")), format!("view {name:?}: {e}")));
        }
    }
}

/// Plans a read-only query (no I/O: empty in-memory tables and SQL text); its columns.
fn plan_select(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
) -> Result<arrow::datatypes::SchemaRef, String> {
    futures::executor::block_on(ctx.sql_with_options(sql, crate::sharing::catalog::read_only()))
        .map(|frame| Arc::new(frame.schema().as_arrow().clone()))
        .map_err(|e| e.strip_backtrace())
}

/// The personal-data columns (`x-pii`) that `expr` reads.
fn personal_refs(expr: &datafusion::logical_expr::Expr, personal: &[String]) -> Vec<String> {
    let mut found: Vec<String> = expr
        .column_refs()
        .iter()
        .map(|c| c.name().to_string())
        .filter(|n| personal.contains(n))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The personal-data columns any expression of `plan` reads (datasets' `x-pii` columns).
fn plan_personal_refs(
    plan: &datafusion::logical_expr::LogicalPlan,
    pipelines: &[Arc<Pipeline>],
) -> Vec<String> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let personal: Vec<String> = pipelines
        .iter()
        .flat_map(|p| {
            p.schema
                .columns
                .iter()
                .filter(|c| c.pii)
                .map(|c| c.name.clone())
        })
        .collect();
    let mut found = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        for e in node.expressions() {
            found.extend(personal_refs(&e, &personal));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found.sort();
    found.dedup();
    found
}

/// `[overdue]`: its query plans and has `id` and `unit`; its webhook is a URL the feed would
/// accept (plain `http` only to a loopback address).
fn check_overdue(
    source: &TomlSource<'_>,
    file: &HubFile,
    pipelines: &[Arc<Pipeline>],
    functions: &datafusion::prelude::SessionContext,
    problems: &mut Vec<Problem>,
) {
    let Some(overdue) = &file.overdue else {
        return;
    };
    if let Ok(ctx) = report::planning_context(functions, pipelines) {
        // What the watch sends leaves the hub unmasked: it may not read personal data.
        if let Ok(plan) = futures::executor::block_on(ctx.state().create_logical_plan(&overdue.sql))
        {
            let personal = plan_personal_refs(&plan, pipelines);
            if !personal.is_empty() {
                problems.push(source.problem(
                    Some("overdue.sql"),
                    format!(
                        "the overdue query reads personal data ({}), which the webhook would send unmasked",
                        personal.join(", ")
                    ),
                ));
            }
        }
        match plan_select(&ctx, &overdue.sql) {
            Ok(schema) => {
                for column in ["id", "unit"] {
                    if schema.field_with_name(column).is_err() {
                        problems.push(source.problem(
                            Some("overdue.sql"),
                            format!("the overdue query must give a column named {column:?}"),
                        ));
                    }
                }
            }
            Err(e) => problems.push(source.problem(Some("overdue.sql"), format!("overdue: {e}"))),
        }
    }
    if overdue.check_seconds == 0 {
        problems.push(source.problem(
            Some("overdue.check_seconds"),
            "overdue.check_seconds must be at least 1",
        ));
    }
    if let Some(url) = &overdue.webhook_url {
        match url::Url::parse(url) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u) if u.scheme() == "http" && crate::feed::is_loopback_url(&u) => {}
            Ok(_) => problems.push(source.problem(
                Some("overdue.webhook_url"),
                "overdue.webhook_url must be https (plain http only to a loopback address)",
            )),
            Err(e) => problems.push(source.problem(
                Some("overdue.webhook_url"),
                format!("overdue.webhook_url is not a URL: {e}"),
            )),
        }
    }
}

fn check_publishers(
    pipelines: &[Arc<Pipeline>],
    consumers: &Consumers,
    problems: &mut Vec<Problem>,
) {
    for p in pipelines {
        for id in &p.publishers {
            let ok = consumers
                .get(id)
                .is_some_and(|c| matches!(c.role, Role::Publisher | Role::Admin));
            if !ok {
                let text = std::fs::read_to_string(&p.file).unwrap_or_default();
                let source = TomlSource::new(&p.file, &text);
                problems.push(source.problem(
                    Some("publishers"),
                    format!("publisher {id:?} is not a consumer with role \"publisher\" or \"admin\" in config.toml"),
                ));
            }
        }
    }
}

/// A pre-approved share, `grants/<name>.toml`.
#[derive(Debug, serde::Deserialize)]
struct GrantFile {
    name: String,
    consumer: String,
    purpose: String,
    legal_basis: String,
    #[serde(default)]
    dataset: Option<String>,
    #[serde(default)]
    columns: Option<Vec<String>>,
    #[serde(default)]
    row_filter: Option<String>,
    #[serde(default)]
    sql: Option<String>,
    /// `"YYYY-MM-DD"`: the last day the share works.
    end_date: String,
}

fn load_grants(
    dir: &Path,
    pipelines: &[Arc<Pipeline>],
    consumers: &Consumers,
    problems: &mut Vec<Problem>,
) -> Vec<Grant> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        // No folder, no pre-approved grants.
        return Vec::new();
    };
    let files = toml_files(entries);
    let mut grants: Vec<Grant> = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let source = TomlSource::new(&file, &text);
        let Some(g) = source.deserialize::<GrantFile>(problems) else {
            continue;
        };
        let request = crate::sharing::GrantRequest {
            name: g.name,
            purpose: g.purpose,
            legal_basis: g.legal_basis,
            dataset: g.dataset,
            columns: g.columns,
            row_filter: g.row_filter,
            sql: g.sql,
            end_date: g.end_date,
        };
        let mut ok = true;
        if consumers.get(&g.consumer).is_none() {
            problems.push(source.problem(
                Some("consumer"),
                format!("consumer {:?} is not in config.toml", g.consumer),
            ));
            ok = false;
        }
        match request.check(pipelines) {
            Ok((end_date, _)) if ok => {
                if grants
                    .iter()
                    .any(|x| x.consumer == g.consumer && x.name == request.name)
                {
                    problems.push(source.problem(
                        Some("name"),
                        format!(
                            "consumer {:?} already has a share named {:?}",
                            g.consumer, request.name
                        ),
                    ));
                    continue;
                }
                let stem = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                grants.push(request.into_grant(format!("config:{stem}"), g.consumer, end_date));
            }
            Ok(_) => {}
            Err(e) => problems.push(source.problem(Some(e.field), e.message)),
        }
    }
    grants
}

/// Checks every `[[subscriptions]]`: its settings, its consumer, and that each dataset it
/// names exists (a `share.<name>` must be a grant of that consumer's).
fn check_subscriptions(
    source: &TomlSource<'_>,
    file: &HubFile,
    pipelines: &[Arc<Pipeline>],
    consumers: &Consumers,
    grants: &[Grant],
    problems: &mut Vec<Problem>,
) -> Vec<crate::feed::Subscription> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, config) in file.subscriptions.iter().enumerate() {
        let at = |key: &str| format!("subscriptions.{i}.{key}");
        if !seen.insert(config.id.clone()) {
            problems.push(source.problem(
                Some(&at("id")),
                format!("subscription id {:?} is used twice", config.id),
            ));
        }
        if consumers.get(&config.consumer).is_none() {
            problems.push(source.problem(
                Some(&at("consumer")),
                format!("consumer {:?} is not in [[consumers]]", config.consumer),
            ));
        }
        for name in &config.datasets {
            let known = match name.strip_prefix("share.") {
                _ if name == "*" => true,
                Some(share) => grants.iter().any(|g| g.name == share),
                None => pipelines.iter().any(|p| &p.name == name),
            };
            if !known {
                problems.push(source.problem(
                    Some(&at("datasets")),
                    format!("{name:?} is not a dataset, a share.<grant>, or \"*\""),
                ));
            }
        }
        match crate::feed::Subscription::from_config(config) {
            Ok(s) => out.push(s),
            Err(list) => {
                for (key, message) in list {
                    problems.push(source.problem(Some(&at(&key)), message));
                }
            }
        }
    }
    out
}

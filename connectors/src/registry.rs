//! Maps a pipeline's `source.kind` to the connector's config struct.

use std::path::PathBuf;

use serde::Deserialize;

use crate::{Connector, ConnectorError, excel, fhir, file, http_json, mqtt, open311, push, sql};

/// The connector kinds this build knows.
pub const KINDS: &[&str] = &[
    "file",
    "excel",
    "http_json",
    "fhir",
    "open311",
    "mqtt",
    "postgres",
    "mysql",
    "push",
];

/// What a connector may need from the hub when it is built.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Folder that relative paths in the settings are relative to (the pipeline file's folder).
    pub base_dir: PathBuf,
    /// A folder of the hub's data directory that belongs to this pipeline's connector, for
    /// durable local state (the MQTT spool). Created by the connector when it needs it.
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub enum SourceConfig {
    File(file::FileConfig),
    Excel(Box<excel::ExcelConfig>),
    HttpJson(Box<http_json::HttpJsonConfig>),
    Mqtt(Box<mqtt::MqttConfig>),
    Postgres(Box<sql::SqlConfig>),
    /// MySQL and MariaDB.
    Mysql(Box<sql::SqlConfig>),
    Fhir(Box<fhir::FhirConfig>),
    Open311(Box<open311::Open311Config>),
    /// Records are sent in (`POST .../records`); nothing is pulled.
    Push(push::PushConfig),
}

impl SourceConfig {
    /// Deserializes the settings of connector `kind` (the `[source]` table without `kind`).
    /// Returns `Ok(None)` for an unknown kind so the caller can report it with its position.
    pub fn deserialize<'de, D>(kind: &str, settings: D) -> Result<Option<Self>, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        Ok(Some(match kind {
            "file" => SourceConfig::File(file::FileConfig::deserialize(settings)?),
            "excel" => SourceConfig::Excel(Box::new(excel::ExcelConfig::deserialize(settings)?)),
            "http_json" => {
                SourceConfig::HttpJson(Box::new(http_json::HttpJsonConfig::deserialize(settings)?))
            }
            "mqtt" => SourceConfig::Mqtt(Box::new(mqtt::MqttConfig::deserialize(settings)?)),
            "postgres" => SourceConfig::Postgres(Box::new(sql::SqlConfig::deserialize(settings)?)),
            "mysql" => SourceConfig::Mysql(Box::new(sql::SqlConfig::deserialize(settings)?)),
            "fhir" => SourceConfig::Fhir(Box::new(fhir::FhirConfig::deserialize(settings)?)),
            "open311" => {
                SourceConfig::Open311(Box::new(open311::Open311Config::deserialize(settings)?))
            }
            "push" => SourceConfig::Push(push::PushConfig::deserialize(settings)?),
            _ => return Ok(None),
        }))
    }

    /// Whether the records are text cells (CSV rows, workbook cells) that the hub types by
    /// column, rather than JSON values.
    pub fn yields_text(&self) -> bool {
        match self {
            SourceConfig::File(c) => c.format == file::FileFormat::Csv,
            SourceConfig::Excel(_) => true,
            _ => false,
        }
    }

    /// Checks what can be checked without touching the source (paths, URLs, pointers).
    pub fn validate(&self) -> Vec<String> {
        match self {
            SourceConfig::File(c) => c.validate(),
            SourceConfig::Excel(c) => c.validate(),
            SourceConfig::HttpJson(c) => c.validate(),
            SourceConfig::Mqtt(c) => c.validate(),
            SourceConfig::Postgres(c) | SourceConfig::Mysql(c) => c.validate(),
            SourceConfig::Fhir(c) => c.validate(),
            SourceConfig::Open311(c) => c.validate(),
            SourceConfig::Push(c) => c.validate(),
        }
    }

    pub fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Connector>, ConnectorError> {
        match self {
            SourceConfig::File(c) => c.build(ctx),
            SourceConfig::Excel(c) => c.build(ctx),
            SourceConfig::HttpJson(c) => c.build(ctx),
            SourceConfig::Mqtt(c) => c.build(ctx),
            SourceConfig::Postgres(c) => c.build(ctx, sql::Dialect::Postgres),
            SourceConfig::Mysql(c) => c.build(ctx, sql::Dialect::Mysql),
            SourceConfig::Fhir(c) => c.build(ctx),
            SourceConfig::Open311(c) => c.build(ctx),
            SourceConfig::Push(c) => c.build(ctx),
        }
    }
}

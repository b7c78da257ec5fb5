//! Maps a pipeline's `source.kind` to the connector's config struct.

use std::path::PathBuf;

use serde::Deserialize;

use crate::{Connector, ConnectorError, fhir, file, http_json, open311};

/// The connector kinds this build knows.
pub const KINDS: &[&str] = &["file", "http_json", "fhir", "open311"];

/// What a connector may need from the hub when it is built.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Folder that relative paths in the settings are relative to (the pipeline file's folder).
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub enum SourceConfig {
    File(file::FileConfig),
    HttpJson(Box<http_json::HttpJsonConfig>),
    Fhir(Box<fhir::FhirConfig>),
    Open311(Box<open311::Open311Config>),
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
            "http_json" => {
                SourceConfig::HttpJson(Box::new(http_json::HttpJsonConfig::deserialize(settings)?))
            }
            "fhir" => SourceConfig::Fhir(Box::new(fhir::FhirConfig::deserialize(settings)?)),
            "open311" => {
                SourceConfig::Open311(Box::new(open311::Open311Config::deserialize(settings)?))
            }
            _ => return Ok(None),
        }))
    }

    /// Checks what can be checked without touching the source (paths, URLs, pointers).
    pub fn validate(&self) -> Vec<String> {
        match self {
            SourceConfig::File(c) => c.validate(),
            SourceConfig::HttpJson(c) => c.validate(),
            SourceConfig::Fhir(c) => c.validate(),
            SourceConfig::Open311(c) => c.validate(),
        }
    }

    pub fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Connector>, ConnectorError> {
        match self {
            SourceConfig::File(c) => c.build(ctx),
            SourceConfig::HttpJson(c) => c.build(ctx),
            SourceConfig::Fhir(c) => c.build(ctx),
            SourceConfig::Open311(c) => c.build(ctx),
        }
    }
}

//! `push`: a dataset whose records are sent in, never pulled.
//!
//! Departments (or the hub itself, for generated reports) publish such a dataset through
//! `POST /api/v1/datasets/{name}/records`. The pipeline still names a source so that every
//! dataset is declared the same way; this one has no settings and, if it is run, reads nothing.

use futures::stream;
use serde::Deserialize;

use crate::{BuildContext, Connector, ConnectorError, ReadContext, SourceStream};

/// No settings: a key under `[source]` besides `kind` is reported by the hub's config check
/// with its line, like any connector's unknown key.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PushConfig {}

impl PushConfig {
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }

    pub fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn Connector>, ConnectorError> {
        Ok(Box::new(PushConnector))
    }
}

struct PushConnector;

impl Connector for PushConnector {
    fn read(&self, _context: ReadContext) -> SourceStream {
        // Nothing to pull: a run of a push dataset fetches no record and commits nothing.
        Box::pin(stream::empty())
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::SourceConfig;

    #[tokio::test]
    async fn a_push_source_reads_nothing() {
        let ok = SourceConfig::deserialize("push", toml::Value::Table(toml::Table::new()))
            .expect("no settings")
            .expect("known kind");
        let ctx = BuildContext {
            base_dir: ".".into(),
            state_dir: ".".into(),
        };
        let connector = ok.build(&ctx).expect("builds");
        let events: Vec<_> = connector.read(ReadContext::default()).collect().await;
        assert!(events.is_empty());
    }
}

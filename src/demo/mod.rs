//! `iochub demo`: the shipped samples served as the network systems a district really runs,
//! on 127.0.0.1, so the network connectors can be seen working on a machine with no sector
//! systems.
//!
//! - `fhir.rs`: the health department's FHIR R4 server (`GET /fhir/Location`, paged
//!   searchset Bundles, `_lastUpdated`, `_count`, `_sort`).
//! - `open311.rs`: the citizen-feedback app's GeoReport v2 API (`GET /open311/requests.json`
//!   with `start_date`/`end_date` on `updated_datetime`, `services.json`).
//! - `mqtt.rs`: Frigate's `frigate/events` messages, published to the local MQTT broker.
//!
//! `demo/sources.toml` gives the datasets fed by these their `[source]` (the others still read
//! `samples/`). Nothing here is used by `serve`.

pub mod fhir;
pub mod mqtt;
pub mod open311;

use std::net::SocketAddr;
use std::path::Path;

use axum::Router;

/// What the demo sources serve, loaded from the samples folder.
pub struct DemoData {
    pub fhir: fhir::FhirData,
    pub open311: open311::Open311Data,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot read sample {path}: {message}")]
    Sample { path: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl DemoData {
    pub fn load(samples: &Path) -> Result<Self, DemoError> {
        Ok(DemoData {
            fhir: fhir::FhirData::load(&samples.join("health_facilities.json"))?,
            open311: open311::Open311Data::load(&samples.join("feedback.jsonl"))?,
        })
    }
}

/// The FHIR and Open311 routes on one router (`/fhir/...`, `/open311/...`).
pub fn router(data: DemoData) -> Router {
    Router::new()
        .nest("/fhir", fhir::router(data.fhir))
        .nest("/open311", open311::router(data.open311))
}

/// Binds the demo sources and serves them until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    data: DemoData,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), DemoError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DemoError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| DemoError::Bind { addr, source })?;
    let app = router(data);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the demo sources stopped");
        }
    });
    Ok((bound, task))
}

fn read_sample(path: &Path) -> Result<String, DemoError> {
    std::fs::read_to_string(path).map_err(|e| DemoError::Sample {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

//! The PostgreSQL wire-protocol endpoint, for psql, DBeaver, Excel/Power BI (ODBC), Metabase,
//! Grafana and drivers (psycopg, asyncpg, JDBC).
//!
//! Built on `pgwire` and `datafusion-postgres` (its query parser with PostgreSQL
//! compatibility rewrites, `pg_catalog`, `SET`/`SHOW`/`BEGIN` hooks and Arrow → wire
//! encoding). What is the hub's own:
//! - `auth.rs`: user = consumer id, password = its token (cleartext, so TLS when configured;
//!   tokens are kept only as SHA-256 hashes, which rules out SCRAM's stored verifiers).
//! - `handler.rs`: every query runs in the consumer's own catalog (only its views, and a
//!   `pg_catalog` built from them), through the same read-only check, plan guard, limits
//!   and audit as SQL over HTTP. datafusion-postgres's stock handler plans with plain
//!   `ctx.sql`, which would run `COPY ... TO` and `CREATE EXTERNAL TABLE`; nothing here
//!   reaches it.

mod auth;
mod catalog;
mod handler;

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::rustls;

use crate::hub::Hub;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("TLS: {0}")]
    Tls(String),
    #[error("setting up pg_catalog: {0}")]
    Setup(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// The TLS acceptor for the configured certificate and key (PEM; key in PKCS#8, PKCS#1 or
/// SEC1 form).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, PgError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| PgError::Tls(format!("{}: {e}", path.display())))
    };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_reader_iter(BufReader::new(&read(cert)?[..]))
            .collect::<Result<_, _>>()
            .map_err(|e| PgError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(PgError::Tls(format!(
            "{}: no certificate in it",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| PgError::Tls(format!("{}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| PgError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| PgError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds the configured address (before anything else starts, so a taken port fails the
/// start) and returns the endpoint to run.
pub async fn bind(hub: &Arc<Hub>) -> Result<Endpoint, PgError> {
    let settings = &hub.config.file.postgres;
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(
            &crate::config::resolve_path(&hub.config.path, cert),
            &crate::config::resolve_path(&hub.config.path, key),
        )?),
        _ => None,
    };
    let listener = TcpListener::bind(settings.addr)
        .await
        .map_err(|source| PgError::Bind {
            addr: settings.addr,
            source,
        })?;
    let handlers =
        handler::Handlers::new(hub.clone(), settings.require_tls).map_err(PgError::Setup)?;
    Ok(Endpoint {
        listener,
        tls,
        handlers: Arc::new(handlers),
        max_connections: settings.max_connections,
    })
}

pub struct Endpoint {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handlers: Arc<handler::Handlers>,
    max_connections: usize,
}

impl Endpoint {
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until the task is dropped.
    pub async fn run(self) {
        let limit = Arc::new(Semaphore::new(self.max_connections.max(1)));
        loop {
            let (socket, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "postgres: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "postgres: too many connections; refused");
                continue;
            };
            let handlers = self.handlers.clone();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                    tracing::debug!(%peer, error = %e, "postgres connection ended");
                }
            });
        }
    }
}

//! Login: the user name is a consumer id, the password its API token.
//!
//! Cleartext password authentication, because the hub keeps only SHA-256 hashes of tokens
//! (SCRAM would need a verifier derived from the token itself). With `require_tls`, a client
//! that did not start TLS is refused before it can send its password.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::sink::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, LoginInfo, StartupHandler, finish_authentication,
    protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use serde_json::json;

use crate::hub::Hub;

/// Where the statement timeout is kept in a connection's metadata (datafusion-postgres reads
/// it there when it runs a prepared statement).
pub const METADATA_STATEMENT_TIMEOUT: &str = "statement_timeout_ms";

/// The consumer a connection logged in as; set only when its token was accepted.
pub struct LoggedIn(pub String);

pub struct TokenAuth {
    hub: Arc<Hub>,
    require_tls: bool,
    parameters: DefaultServerParameterProvider,
}

impl TokenAuth {
    pub fn new(hub: Arc<Hub>, require_tls: bool) -> Self {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = "16.6 (iochub)".into();
        parameters.is_superuser = false;
        parameters.default_transaction_read_only = true;
        TokenAuth {
            hub,
            require_tls,
            parameters,
        }
    }
}

fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    super::handler::failure("FATAL", code, message)
}

#[async_trait]
impl StartupHandler for TokenAuth {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                // A client does not set the hub's own session settings.
                client.metadata_mut().remove(METADATA_STATEMENT_TIMEOUT);
                if self.require_tls && !client.is_secure() {
                    return Err(fatal(
                        "28000",
                        "this server accepts passwords only over TLS: connect with sslmode=require",
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?;
                let login = LoginInfo::from_client_info(client);
                let user = login.user().unwrap_or_default().to_string();
                let consumer = self
                    .hub
                    .authenticate(&password.password)
                    .filter(|c| c.id == user);
                let Some(consumer) = consumer else {
                    self.hub.audit(
                        None,
                        "auth_failed",
                        None,
                        json!({"channel": "postgres", "user": user, "peer": client.socket_addr().ip().to_string()}),
                        "denied",
                    );
                    // The same answer for an unknown user and a wrong token.
                    return Err(fatal(
                        "28P01",
                        format!("password authentication failed for user \"{user}\""),
                    ));
                };
                let timeout_ms = self.hub.engine.limits().timeout_seconds * 1000;
                client
                    .metadata_mut()
                    .insert(METADATA_STATEMENT_TIMEOUT.into(), timeout_ms.to_string());
                // In the session's extensions, which no startup parameter can reach (they
                // all land in the metadata).
                client
                    .session_extensions()
                    .insert(LoggedIn(consumer.id.clone()));
                finish_authentication(client, &self.parameters).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

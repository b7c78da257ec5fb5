//! One request, retried on transient failures.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use url::Url;

use super::{Auth, HttpJsonConfig, HttpMethod, snippet};
use crate::ConnectorError;

pub async fn fetch_with_retries(
    client: &reqwest::Client,
    config: &HttpJsonConfig,
    url: &Url,
) -> Result<bytes::Bytes, ConnectorError> {
    let mut attempt = 1;
    loop {
        match fetch_once(client, config, url).await {
            Ok(body) => return Ok(body),
            Err((error, retry_after)) => {
                if !error.is_transient() || attempt >= config.retry.max_attempts {
                    return Err(error);
                }
                let backoff = config.retry.backoff(attempt);
                let wait = retry_after
                    .map(|d| d.min(Duration::from_millis(config.retry.max_backoff_ms)))
                    .unwrap_or(backoff);
                tracing::warn!(%url, attempt, error = %error, wait_ms = wait.as_millis() as u64, "retrying request");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

type Failure = (ConnectorError, Option<Duration>);

async fn fetch_once(
    client: &reqwest::Client,
    config: &HttpJsonConfig,
    url: &Url,
) -> Result<bytes::Bytes, Failure> {
    let mut request = match config.method {
        HttpMethod::Get => client.get(url.clone()),
        HttpMethod::Post => client.post(url.clone()),
    };
    request = request.headers(headers(config).map_err(|e| (e, None))?);
    if let Some(body) = &config.body {
        request = request.json(body);
    }
    request = match &config.auth {
        None => request,
        Some(Auth::Bearer { token_env }) => {
            request.bearer_auth(env(token_env).map_err(|e| (e, None))?)
        }
        Some(Auth::Basic {
            username_env,
            password_env,
        }) => request.basic_auth(
            env(username_env).map_err(|e| (e, None))?,
            Some(env(password_env).map_err(|e| (e, None))?),
        ),
    };
    let response = request
        .send()
        .await
        .map_err(|e| (transport_error(config, url, e), None))?;
    let status = response.status();
    if !status.is_success() {
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.unwrap_or_default();
        return Err((
            ConnectorError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body: snippet(&body),
            },
            retry_after,
        ));
    }
    response
        .bytes()
        .await
        .map_err(|e| (transport_error(config, url, e), None))
}

fn headers(config: &HttpJsonConfig) -> Result<HeaderMap, ConnectorError> {
    let mut map = HeaderMap::new();
    map.insert(
        reqwest::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in &config.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ConnectorError::Config(format!("header {name:?}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| ConnectorError::Config(format!("header {name:?}: {e}")))?;
        map.insert(name, value);
    }
    Ok(map)
}

fn env(name: &str) -> Result<String, ConnectorError> {
    std::env::var(name).map_err(|_| ConnectorError::MissingEnv(name.to_string()))
}

fn transport_error(config: &HttpJsonConfig, url: &Url, error: reqwest::Error) -> ConnectorError {
    if error.is_timeout() {
        ConnectorError::Timeout {
            url: url.to_string(),
            seconds: config.timeout_seconds,
        }
    } else {
        // Connection refused, reset, DNS: all worth another try.
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        ConnectorError::Connect {
            url: url.to_string(),
            message,
        }
    }
}

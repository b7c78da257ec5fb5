//! How to get from one page to the next.

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::HttpJsonConfig;
use crate::ConnectorError;

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// `?page=1`, `?page=2`, ... until a page is empty or shorter than `size`.
    Page {
        param: String,
        #[serde(default = "one")]
        start: u64,
        #[serde(default)]
        size_param: Option<String>,
        #[serde(default)]
        size: Option<u64>,
    },
    /// `?offset=0&limit=100`, `?offset=100&limit=100`, ... until a page is shorter than `limit`.
    Offset {
        param: String,
        limit_param: String,
        limit: u64,
    },
    /// The body holds the URL of the next page (absolute or relative) at `pointer`.
    NextLink { pointer: String },
    /// The body holds a token at `pointer`, sent back as query parameter `param`. With
    /// `resume = true` the last token seen is kept in the checkpoint and the next run starts
    /// from it (a change feed), instead of from the first page.
    Cursor {
        pointer: String,
        param: String,
        #[serde(default)]
        resume: bool,
    },
}

fn one() -> u64 {
    1
}

impl Pagination {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self {
            Pagination::Page {
                size_param, size, ..
            } => {
                if size_param.is_some() != size.is_some() {
                    problems.push("pagination: size_param and size go together".into());
                }
                if *size == Some(0) {
                    problems.push("pagination: size must be at least 1".into());
                }
            }
            Pagination::Offset { limit, .. } if *limit == 0 => {
                problems.push("pagination: limit must be at least 1".into())
            }
            Pagination::NextLink { pointer } | Pagination::Cursor { pointer, .. }
                if !pointer.starts_with('/') =>
            {
                problems.push(format!(
                    "pagination: pointer {pointer:?} must be a JSON pointer starting with '/'"
                ))
            }
            _ => {}
        }
        problems
    }
}

fn base_url(config: &HttpJsonConfig) -> Result<Url, ConnectorError> {
    let mut url = Url::parse(&config.url)
        .map_err(|e| ConnectorError::Config(format!("url {:?}: {e}", config.url)))?;
    if !config.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &config.query {
            pairs.append_pair(k, v);
        }
    }
    Ok(url)
}

fn with_params(mut url: Url, params: &[(&str, String)]) -> Url {
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in params {
            pairs.append_pair(k, v);
        }
    }
    url
}

/// The token to start from, when the pagination resumes and a previous run left one.
pub fn resume_token(config: &HttpJsonConfig, checkpoint: Option<&Value>) -> Option<String> {
    if !resumes(config) {
        return None;
    }
    checkpoint?.get("token")?.as_str().map(str::to_string)
}

pub fn resumes(config: &HttpJsonConfig) -> bool {
    matches!(
        config.pagination,
        Some(Pagination::Cursor { resume: true, .. })
    )
}

/// The non-empty token in a page's body, for cursor pagination.
pub fn token_in(config: &HttpJsonConfig, document: &Value) -> Option<String> {
    let Some(Pagination::Cursor { pointer, .. }) = &config.pagination else {
        return None;
    };
    match document.pointer(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The URL every page starts from: the configured URL and query, plus the cursor parameter.
pub fn start_url(
    config: &HttpJsonConfig,
    cursor: Option<(&Value, &str)>,
) -> Result<Url, ConnectorError> {
    let mut base = base_url(config)?;
    if let Some((value, param)) = cursor {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        base = with_params(base, &[(param, text)]);
    }
    Ok(base)
}

pub fn first_request(
    config: &HttpJsonConfig,
    start: &Url,
    resume: Option<&str>,
) -> Result<Option<Url>, ConnectorError> {
    let base = start.clone();
    if let (Some(token), Some(Pagination::Cursor { param, .. })) = (resume, &config.pagination) {
        return Ok(Some(with_params(
            base,
            &[(param.as_str(), token.to_string())],
        )));
    }
    Ok(Some(match &config.pagination {
        Some(Pagination::Page {
            param,
            start: first_page,
            size_param,
            size,
        }) => {
            let mut params = vec![(param.as_str(), first_page.to_string())];
            if let (Some(sp), Some(s)) = (size_param, size) {
                params.push((sp.as_str(), s.to_string()));
            }
            with_params(base, &params)
        }
        Some(Pagination::Offset {
            param,
            limit_param,
            limit,
        }) => with_params(
            base,
            &[
                (param.as_str(), "0".into()),
                (limit_param.as_str(), limit.to_string()),
            ],
        ),
        _ => base,
    }))
}

fn query_value_text(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The next page's URL, or `None` when the last page has been read.
pub fn next_request(
    config: &HttpJsonConfig,
    start: &Url,
    current: &Url,
    document: &Value,
    records_on_page: usize,
) -> Result<Option<Url>, ConnectorError> {
    let count = records_on_page as u64;
    let query_value = |name: &str| {
        current
            .query_pairs()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    Ok(match &config.pagination {
        None => None,
        Some(Pagination::Page {
            param,
            start: first_page,
            size_param,
            size,
        }) => {
            if count == 0 || size.is_some_and(|s| count < s) {
                return Ok(None);
            }
            let next = query_value(param).unwrap_or(*first_page) + 1;
            let mut params = vec![(param.as_str(), next.to_string())];
            if let (Some(sp), Some(s)) = (size_param, size) {
                params.push((sp.as_str(), s.to_string()));
            }
            Some(with_params(start.clone(), &params))
        }
        Some(Pagination::Offset {
            param,
            limit_param,
            limit,
        }) => {
            if count < *limit {
                return Ok(None);
            }
            let next = query_value(param).unwrap_or(0) + count;
            Some(with_params(
                start.clone(),
                &[
                    (param.as_str(), next.to_string()),
                    (limit_param.as_str(), limit.to_string()),
                ],
            ))
        }
        Some(Pagination::NextLink { pointer }) => match document.pointer(pointer) {
            None | Some(Value::Null) => None,
            Some(Value::String(link)) if link.is_empty() => None,
            Some(Value::String(link)) => {
                let next = current
                    .join(link)
                    .map_err(|e| ConnectorError::InvalidResponse {
                        url: current.to_string(),
                        message: format!("next link {link:?} is not a URL: {e}"),
                    })?;
                crate::http::check_same_origin(start, &next, current)?;
                Some(next)
            }
            Some(other) => {
                return Err(ConnectorError::InvalidResponse {
                    url: current.to_string(),
                    message: format!("next link at {pointer:?} is not a string: {other}"),
                });
            }
        },
        Some(Pagination::Cursor { pointer, param, .. }) => {
            // An empty page ends the read: change feeds keep handing out a token when they
            // have nothing new.
            if count == 0 {
                return Ok(None);
            }
            let token = match document.pointer(pointer) {
                None | Some(Value::Null) => return Ok(None),
                Some(Value::String(s)) if s.is_empty() => return Ok(None),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(other) => {
                    return Err(ConnectorError::InvalidResponse {
                        url: current.to_string(),
                        message: format!("cursor at {pointer:?} is not a string: {other}"),
                    });
                }
            };
            if query_value_text(current, param).as_deref() == Some(token.as_str()) {
                return Ok(None);
            }
            Some(with_params(start.clone(), &[(param.as_str(), token)]))
        }
    })
}

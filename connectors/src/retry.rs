//! Exponential backoff with jitter, shared by connectors that talk to networks.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct RetryConfig {
    /// Attempts per request, the first included.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_initial_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_ms")]
    pub max_backoff_ms: u64,
}

fn default_attempts() -> u32 {
    5
}
fn default_initial_ms() -> u64 {
    500
}
fn default_max_ms() -> u64 {
    30_000
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_attempts(),
            initial_backoff_ms: default_initial_ms(),
            max_backoff_ms: default_max_ms(),
        }
    }
}

impl RetryConfig {
    /// Delay before attempt `attempt + 1` (attempt counts from 1): doubling from the initial
    /// backoff, capped, with "full jitter" in the upper half so that many pipelines retrying
    /// the same failed server do not all come back at the same instant.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
        let capped = exp.min(self.max_backoff_ms);
        let half = capped / 2;
        Duration::from_millis(half + jitter(half + 1))
    }
}

/// A number in `0..bound` that differs between calls; good enough to spread retries (used by
/// the hub's run retries and scheduler too).
pub fn jitter(bound: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish() % bound.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let r = RetryConfig {
            max_attempts: 10,
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
        };
        for _ in 0..50 {
            let first = r.backoff(1).as_millis();
            assert!((50..=100).contains(&first), "first backoff {first}");
            let third = r.backoff(3).as_millis();
            assert!((200..=400).contains(&third), "third backoff {third}");
            let late = r.backoff(20).as_millis();
            assert!((500..=1000).contains(&late), "capped backoff {late}");
        }
    }
}

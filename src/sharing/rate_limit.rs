//! A token bucket per consumer: `requests_per_minute` on average, bursts up to `burst`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(requests_per_minute: u32, burst: u32) -> Self {
        RateLimiter {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(requests_per_minute.max(1)) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key`'s bucket holds a request now, without taking it (or how long until it
    /// will).
    pub fn peek(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let Ok(buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let Some((tokens, last)) = buckets.get(key) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        let tokens = (tokens + elapsed * self.per_second).min(self.burst);
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
        }
    }

    /// Takes one request from `key`'s bucket, or says how long until one is available.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_per_consumer() {
        let limiter = RateLimiter::new(60, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("a", t0).is_ok());
        }
        let wait = limiter.check("a", t0).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        assert!(limiter.check("b", t0).is_ok(), "buckets are per consumer");
        assert!(
            limiter.check("a", t0 + Duration::from_secs(1)).is_ok(),
            "one per second refills"
        );
    }
}

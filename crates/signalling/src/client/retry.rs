//! When a throttled or unavailable request is tried again, and how long to wait.

use std::time::{Duration, SystemTime};

/// When and how often a throttled or unavailable request is tried again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Wait before the first retry when the service gives no `Retry-After`; doubled each retry.
    pub initial_backoff: Duration,
    /// Cap on the backoff.
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the error is returned instead.
    pub max_retry_after: Duration,
    /// Retry a 504 on a POST (create call, actions) too. Off by default: a gateway timeout
    /// does not say whether the service acted, and Graph has no idempotency key, so a
    /// retried create-call can place a second call. 429 and 503 are always retried (the
    /// request was refused, not processed); GET and DELETE are retried on 504 (idempotent).
    pub retry_gateway_timeout_on_post: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            retry_gateway_timeout_on_post: false,
        }
    }
}

impl RetryPolicy {
    /// How long to wait before attempt `attempt + 1` after attempt `attempt` (1-based) failed
    /// with a retryable status; `None` when not to retry.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        match retry_after {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait),
            None => {
                let factor = 1u32
                    .checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX);
                Some(
                    self.initial_backoff
                        .saturating_mul(factor)
                        .min(self.max_backoff),
                )
            }
        }
    }
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(42));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(42))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(42));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn backoff_is_exponential_bounded_and_finite() {
        let policy = RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let delays: Vec<_> = (1..=6).map(|a| policy.delay(a, None)).collect();
        assert_eq!(
            delays,
            vec![
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(400)),
                Some(Duration::from_millis(500)),
                Some(Duration::from_millis(500)),
                None,
            ]
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(policy.delay(1, Some(Duration::from_secs(11))), None);
        let huge = RetryPolicy {
            max_attempts: u32::MAX,
            ..policy
        };
        assert_eq!(huge.delay(200, None), Some(Duration::from_millis(500)));
    }
}

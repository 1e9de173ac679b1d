//! When a failed request is sent again, and after how long: exponential backoff with full
//! jitter, never less than what the server asked for, within the configured bounds.

use crate::jira::error::JiraError;
use crate::settings::RateLimitSettings;
use std::time::Duration;

/// The retry rules of a client.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub base: Duration,
    pub max: Duration,
    /// The longest server-announced wait honoured; a longer one fails at once.
    pub max_server_wait: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Give up and return the error.
    Fail,
    /// Send again after this delay.
    RetryAfter(Duration),
}

impl RetryPolicy {
    pub fn from_settings(limits: &RateLimitSettings) -> RetryPolicy {
        RetryPolicy {
            max_retries: limits.max_retries,
            base: Duration::from_millis(limits.backoff_base_ms),
            max: Duration::from_millis(limits.backoff_max_ms),
            max_server_wait: Duration::from_secs(limits.max_retry_after_secs),
        }
    }

    /// The backoff ceiling before retry number `retry` (1 for the first retry):
    /// `base × 2^(retry-1)`, capped at `max`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2_u32.saturating_pow(retry.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry number `retry`: full jitter (`unit` in [0, 1) times the
    /// ceiling), so parallel tasks that failed together do not retry together, and never less
    /// than `server_wait` (`Retry-After` or a quota reset).
    pub fn delay(&self, retry: u32, unit: f64, server_wait: Option<Duration>) -> Duration {
        let jittered = self.ceiling(retry).mul_f64(unit.clamp(0.0, 1.0));
        server_wait.map_or(jittered, |wait| wait.max(jittered))
    }

    /// Whether to retry after `err` on attempt number `attempt` (1 for the first), and when.
    /// Permanent failures, spent retries and a server wait beyond the bound end the request.
    pub fn next(&self, err: &JiraError, attempt: u32, unit: f64) -> Next {
        let server_wait = err.retry_after();
        if !err.is_retryable()
            || attempt > self.max_retries
            || server_wait.is_some_and(|wait| wait > self.max_server_wait)
        {
            return Next::Fail;
        }
        Next::RetryAfter(self.delay(attempt, unit, server_wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 4,
            base: Duration::from_secs(2),
            max: Duration::from_secs(30),
            max_server_wait: Duration::from_secs(300),
        }
    }

    fn server(status: u16, retry_after: Option<u64>) -> JiraError {
        JiraError::Server {
            endpoint: "GET /x".into(),
            status,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn the_ceiling_doubles_from_the_base_up_to_the_cap() {
        let secs: Vec<u64> = (1..=7).map(|r| policy().ceiling(r).as_secs()).collect();
        assert_eq!(secs, vec![2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(policy().ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let p = policy();
        assert_eq!(p.delay(3, 0.0, None), Duration::ZERO);
        assert_eq!(p.delay(3, 0.5, None), Duration::from_secs(4));
        assert_eq!(p.delay(3, 0.999, None), Duration::from_secs_f64(7.992));
        assert_eq!(
            p.delay(3, 7.0, None),
            Duration::from_secs(8),
            "unit is clamped"
        );
    }

    #[test]
    fn the_server_wait_is_the_floor_and_a_zero_wait_leaves_the_backoff() {
        let p = policy();
        assert_eq!(
            p.delay(1, 0.9, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.delay(4, 0.5, Some(Duration::from_secs(3))),
            Duration::from_secs(8)
        );
        assert_eq!(
            p.delay(2, 0.5, Some(Duration::ZERO)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn retries_stop_after_max_retries_on_permanent_errors_and_on_waits_beyond_the_bound() {
        let p = policy();
        assert_eq!(
            p.next(&server(503, None), 1, 0.5),
            Next::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            p.next(&server(503, None), 4, 0.5),
            Next::RetryAfter(Duration::from_secs(8))
        );
        assert_eq!(p.next(&server(503, None), 5, 0.5), Next::Fail);
        assert_eq!(p.next(&server(501, None), 1, 0.5), Next::Fail);
        let unauthorized = JiraError::Unauthorized { host: "h".into() };
        assert_eq!(p.next(&unauthorized, 1, 0.5), Next::Fail);
        assert_eq!(
            p.next(&server(503, Some(300)), 1, 0.5),
            Next::RetryAfter(Duration::from_secs(300))
        );
        assert_eq!(p.next(&server(503, Some(301)), 1, 0.5), Next::Fail);
    }
}

//! Counters of what a client did, kept for the client's lifetime and for each stream run.
//!
//! A run is a task-local scope ([`RunScope::scope`]) around the run's future: the requests its
//! tasks send are counted in it, whatever client clone sends them, so runs of several streams
//! in parallel on one client keep separate books. Labels are bounded: endpoints are the fixed
//! paths jira-sync calls with ids collapsed, statuses are classes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What a client's requests did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestMetrics {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Requests sent again after a transient failure.
    pub retries: u64,
    /// 429 responses.
    pub throttled: u64,
    /// Requests that got no complete response (connection, timeout, reset).
    pub transport_errors: u64,
    /// Responses by exact HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests by endpoint (`POST /rest/api/3/search/jql`) and status class (`2xx`, `4xx`,
    /// `429`, `5xx`, `none` when no response came).
    pub endpoints: BTreeMap<String, BTreeMap<String, u64>>,
    /// Times the site was paused for everyone by a `Retry-After` or a quota reset.
    pub pauses: u64,
    /// Time requests waited for the steady-rate limiter, summed over requests.
    pub limiter_wait_ms: u64,
    /// Time requests waited for adaptive pacing (the site reported pressure).
    pub pacing_wait_ms: u64,
    /// Time requests waited because Jira asked for it (`Retry-After`, quota reset).
    pub retry_after_wait_ms: u64,
    /// Time spent sleeping between retries beyond any wait Jira asked for.
    pub backoff_wait_ms: u64,
}

impl RequestMetrics {
    /// Counts one attempt: its endpoint and its status, or `None` when no response came.
    pub fn attempt(&mut self, endpoint: &str, status: Option<u16>) {
        self.requests += 1;
        let class = match status {
            None => {
                self.transport_errors += 1;
                "none"
            }
            Some(429) => {
                self.throttled += 1;
                "429"
            }
            Some(code) => match code {
                100..=199 => "1xx",
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            },
        };
        if let Some(code) = status {
            *self.statuses.entry(code).or_default() += 1;
        }
        *self
            .endpoints
            .entry(endpoint.to_owned())
            .or_default()
            .entry(class.to_owned())
            .or_default() += 1;
    }

    /// One line for the end-of-run log: `212 requests, 3 retries, 1 429, waited 1.2 s on the
    /// limiter, 3.0 s on Retry-After`.
    pub fn summary(&self) -> String {
        let secs = |ms: u64| Duration::from_millis(ms).as_secs_f64();
        format!(
            "{} requests, {} retries, {} 429s, {} errors without response; waited {:.1} s on \
             the limiter, {:.1} s on adaptive pacing, {:.1} s on Retry-After, {:.1} s in backoff",
            self.requests,
            self.retries,
            self.throttled,
            self.transport_errors,
            secs(self.limiter_wait_ms),
            secs(self.pacing_wait_ms),
            secs(self.retry_after_wait_ms),
            secs(self.backoff_wait_ms),
        )
    }
}

/// `METHOD /path` with ids, keys and other per-record segments collapsed to `{id}`, so the
/// label set stays the fixed set of endpoints jira-sync calls.
pub fn endpoint_label(method: &str, path: &str) -> String {
    let segments: Vec<&str> = path
        .split('/')
        .map(|s| {
            // Version segments (`3`, `v1`) are short; ids (`10000`), keys (`OPS-17`) and uuids
            // are not.
            if s.len() > 2 && s.bytes().any(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                s
            }
        })
        .collect();
    format!("{method} {}", segments.join("/"))
}

tokio::task_local! {
    static CURRENT: Arc<RunScope>;
}

/// The books of one stream run.
#[derive(Debug, Default)]
pub struct RunScope {
    metrics: Mutex<RequestMetrics>,
}

impl RunScope {
    pub fn new() -> Arc<RunScope> {
        Arc::new(RunScope::default())
    }

    /// Runs `work` with this scope current: requests sent inside it count here.
    pub async fn scope<F: Future>(self: &Arc<Self>, work: F) -> F::Output {
        CURRENT.scope(self.clone(), work).await
    }

    pub fn snapshot(&self) -> RequestMetrics {
        lock(&self.metrics).clone()
    }

    /// Applies `change` to the current run's metrics, if a run is current.
    pub(crate) fn with_current(change: impl FnOnce(&mut RequestMetrics)) {
        let _ = CURRENT.try_with(|scope| change(&mut lock(&scope.metrics)));
    }
}

/// Locks counters whose data stays consistent even if a holder panicked.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_versions_and_collapse_ids_and_keys() {
        assert_eq!(
            endpoint_label("POST", "/rest/api/3/search/jql"),
            "POST /rest/api/3/search/jql"
        );
        assert_eq!(
            endpoint_label("GET", "/rest/api/3/issue/OPS-17"),
            "GET /rest/api/3/issue/{id}"
        );
        assert_eq!(
            endpoint_label("GET", "/rest/api/2/project/10000/statuses"),
            "GET /rest/api/2/project/{id}/statuses"
        );
        assert_eq!(
            endpoint_label("GET", "/admin/v1/orgs/1a2b3c4d-aaaa/events-stream"),
            "GET /admin/v1/orgs/{id}/events-stream"
        );
    }

    #[test]
    fn attempts_are_counted_by_endpoint_and_status_class() {
        let mut m = RequestMetrics::default();
        m.attempt("GET /a", Some(200));
        m.attempt("GET /a", Some(429));
        m.attempt("GET /a", Some(503));
        m.attempt("GET /b", None);
        assert_eq!((m.requests, m.throttled, m.transport_errors), (4, 1, 1));
        let a = &m.endpoints["GET /a"];
        assert_eq!((a["2xx"], a["429"], a["5xx"]), (1, 1, 1));
        assert_eq!(m.endpoints["GET /b"]["none"], 1);
        assert_eq!(m.statuses.get(&503), Some(&1));
    }

    #[tokio::test]
    async fn requests_count_in_the_scope_they_run_in_and_nowhere_else() {
        let first = RunScope::new();
        let second = RunScope::new();
        let count = || RunScope::with_current(|m| m.attempt("GET /x", Some(200)));
        first
            .scope(async {
                count();
                count();
            })
            .await;
        second.scope(async { count() }).await;
        count();
        assert_eq!(first.snapshot().requests, 2);
        assert_eq!(second.snapshot().requests, 1);
    }
}

//! The only code that speaks HTTP to Jira: authentication, pacing, concurrency, retries and the
//! classification of every response into data or a [`JiraError`].
//!
//! Every request waits for three gates before it is sent: a shared pause that a `Retry-After`
//! sets for the whole client (so one 429 slows every task, not just the one that got it), the
//! steady-rate limiter, and a cap on requests in flight. Transient failures are retried with
//! exponential backoff and full jitter, never less than the server's `Retry-After`.

use crate::config::{AuthMode, JiraSettings, RateLimitSettings};
use crate::jira::error::{JiraError, Origin, parse_retry_after};
use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;

/// A client for one Jira site. Cheap to clone; clones share the limiter, pause and metrics.
#[derive(Clone)]
pub struct JiraClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    host: String,
    limiter: DefaultDirectRateLimiter,
    in_flight: Semaphore,
    /// No request is sent before this instant: set from `Retry-After` on a 429 or 503.
    paused_until: Mutex<Option<Instant>>,
    retry: RetryPolicy,
    metrics: Mutex<ClientMetrics>,
}

struct RetryPolicy {
    max_retries: usize,
    base: Duration,
    max: Duration,
    max_retry_after: Duration,
}

/// Cumulative counters since the client was built.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClientMetrics {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Requests that were sent again after a transient failure.
    pub retries: u64,
    /// Responses by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// 429 responses.
    pub throttled: u64,
    /// Requests that got no response (connection, timeout, reset).
    pub transport_errors: u64,
    /// Time spent waiting for the steady-rate limiter, summed over requests.
    pub limiter_wait_ms: u64,
    /// Time spent waiting because Jira sent `Retry-After`, summed over requests.
    pub retry_after_wait_ms: u64,
    /// Time spent sleeping between retries, summed over requests.
    pub backoff_wait_ms: u64,
}

/// What one request needs on each attempt.
struct Call<'a> {
    method: Method,
    url: Url,
    query: &'a [(&'a str, String)],
    body: Option<&'a serde_json::Value>,
    endpoint: String,
}

impl JiraClient {
    /// Builds the client: one connection pool, the auth header, the limiter and retry policy.
    pub fn new(jira: &JiraSettings, limits: &RateLimitSettings) -> Result<Self, JiraError> {
        let setup = |detail: String| JiraError::Setup { detail };
        let token = jira
            .token()
            .ok_or_else(|| setup("jira.api_token is not set".to_owned()))?;
        let credentials = match jira.auth {
            AuthMode::Basic => {
                use base64::Engine;
                let pair = format!("{}:{}", jira.email, token.expose_secret());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            AuthMode::Bearer => format!("Bearer {}", token.expose_secret()),
        };
        // The error of `from_str` never quotes the value, so the token cannot leak through it.
        let mut auth = HeaderValue::from_str(&credentials).map_err(|_| {
            setup("jira.api_token contains characters not allowed in a header".to_owned())
        })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, auth);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .user_agent(concat!("jira-sync/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .gzip(true)
            .connect_timeout(Duration::from_secs(limits.connect_timeout_secs))
            .timeout(Duration::from_secs(limits.request_timeout_secs))
            .tcp_keepalive(Duration::from_secs(60))
            .build()
            .map_err(|e| setup(format!("{e}: the system may lack CA certificates")))?;
        let period = Duration::from_secs_f64(1.0 / limits.requests_per_second.max(0.001));
        let burst = NonZeroU32::new(limits.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .ok_or_else(|| setup("rate_limit.requests_per_second is too high".to_owned()))?
            .allow_burst(burst);
        let inner = Inner {
            http,
            base_url: jira.base_url.clone(),
            host: jira.host(),
            limiter: RateLimiter::direct(quota),
            in_flight: Semaphore::new(limits.max_in_flight.max(1)),
            paused_until: Mutex::new(None),
            retry: RetryPolicy {
                max_retries: limits.max_retries as usize,
                base: Duration::from_millis(limits.backoff_base_ms),
                max: Duration::from_millis(limits.backoff_max_ms),
                max_retry_after: Duration::from_secs(limits.max_retry_after_secs),
            },
            metrics: Mutex::new(ClientMetrics::default()),
        };
        Ok(JiraClient {
            inner: Arc::new(inner),
        })
    }

    /// The site's base URL, as configured.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// `GET path?query`, decoded from JSON. `path` is absolute, e.g. `/rest/api/3/myself`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, JiraError> {
        self.request(Method::GET, path, query, None).await
    }

    /// `POST path` with a JSON body, decoded from JSON.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, JiraError> {
        self.request(Method::POST, path, &[], Some(body)).await
    }

    /// A snapshot of the cumulative counters.
    pub fn metrics(&self) -> ClientMetrics {
        self.metrics_lock().clone()
    }

    #[tracing::instrument(skip_all, fields(method = %method, path = path))]
    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, JiraError> {
        let url = self
            .inner
            .base_url
            .join(path)
            .map_err(|e| JiraError::Setup {
                detail: format!("cannot build a URL from {path}: {e}"),
            })?;
        let call = Call {
            endpoint: format!("{method} {path}"),
            method,
            url,
            query,
            body,
        };
        let policy = &self.inner.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.base)
            .with_max_delay(policy.max)
            .with_max_times(policy.max_retries);
        let call = &call;
        let mut attempt = 0_u32;
        let once = move || {
            attempt += 1;
            self.attempt(call, attempt)
        };
        // A Retry-After longer than the configured bound fails now, as rate limited, rather
        // than holding the whole sync for up to an hour.
        let retryable = |e: &JiraError| {
            e.is_retryable()
                && e.retry_after()
                    .is_none_or(|ra| ra <= policy.max_retry_after)
        };
        // Full jitter spreads the retries of many tasks; Retry-After is the floor.
        let delay = |e: &JiraError, backoff: Option<Duration>| {
            backoff.map(|d| {
                let jittered = d.mul_f64(rand::random::<f64>());
                e.retry_after().map_or(jittered, |ra| ra.max(jittered))
            })
        };
        let notify = |e: &JiraError, delay: Duration| {
            let delay_ms = delay.as_millis() as u64;
            tracing::warn!(endpoint = %call.endpoint, delay_ms, "retrying after {e}");
            let mut m = self.metrics_lock();
            m.retries += 1;
            m.backoff_wait_ms += delay_ms;
        };
        once.retry(backoff)
            .sleep(tokio::time::sleep)
            .when(retryable)
            .adjust(delay)
            .notify(notify)
            .await
    }

    /// Sends the request once (after the shared gates) and classifies the response.
    async fn attempt<T: DeserializeOwned>(
        &self,
        call: &Call<'_>,
        attempt: u32,
    ) -> Result<T, JiraError> {
        self.wait_for_turn().await;
        let _permit = self
            .inner
            .in_flight
            .acquire()
            .await
            .map_err(|_| JiraError::Setup {
                detail: "the client was shut down".to_owned(),
            })?;
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone());
        if !call.query.is_empty() {
            request = request.query(call.query);
        }
        if let Some(body) = call.body {
            request = request.json(body);
        }
        let started = Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                {
                    let mut m = self.metrics_lock();
                    m.requests += 1;
                    m.transport_errors += 1;
                }
                let err = self.origin().transport_error(&e, &call.endpoint);
                tracing::debug!(
                    attempt,
                    ms = started.elapsed().as_millis() as u64,
                    "no response: {err}"
                );
                return Err(err);
            }
        };
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        self.record_status(status);
        if matches!(status.as_u16(), 429 | 503) {
            self.pause_for(retry_after);
        }
        let bytes = response.bytes().await.map_err(|e| match e.is_timeout() {
            true => JiraError::Timeout {
                endpoint: call.endpoint.clone(),
            },
            false => JiraError::Truncated {
                endpoint: call.endpoint.clone(),
            },
        })?;
        tracing::debug!(
            status = status.as_u16(),
            ms = started.elapsed().as_millis() as u64,
            attempt,
            bytes = bytes.len(),
            "response"
        );
        if status.is_success() {
            return self.origin().decode(status, &bytes, &call.endpoint);
        }
        Err(self
            .origin()
            .status_error(status, &bytes, retry_after, &call.endpoint))
    }

    /// Waits out a shared `Retry-After` pause, then for the steady-rate limiter.
    async fn wait_for_turn(&self) {
        loop {
            let until = *lock(&self.inner.paused_until);
            let now = Instant::now();
            match until {
                Some(until) if until > now => {
                    tokio::time::sleep_until(until).await;
                    self.metrics_lock().retry_after_wait_ms += (until - now).as_millis() as u64;
                }
                _ => break,
            }
        }
        let started = Instant::now();
        self.inner.limiter.until_ready().await;
        self.metrics_lock().limiter_wait_ms += started.elapsed().as_millis() as u64;
    }

    /// Holds every request of this client until `retry_after` has passed.
    fn pause_for(&self, retry_after: Option<Duration>) {
        let Some(wait) = retry_after.filter(|w| *w <= self.inner.retry.max_retry_after) else {
            return;
        };
        let until = Instant::now() + wait;
        let mut paused = lock(&self.inner.paused_until);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    fn record_status(&self, status: StatusCode) {
        let mut m = self.metrics_lock();
        m.requests += 1;
        *m.statuses.entry(status.as_u16()).or_default() += 1;
        if status == StatusCode::TOO_MANY_REQUESTS {
            m.throttled += 1;
        }
    }

    /// The site, as error messages name it.
    fn origin(&self) -> Origin<'_> {
        Origin {
            host: &self.inner.host,
            base_url: self.inner.base_url.as_str().trim_end_matches('/'),
        }
    }

    fn metrics_lock(&self) -> MutexGuard<'_, ClientMetrics> {
        lock(&self.inner.metrics)
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (plain counters).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::Settings;
    use crate::jira::model::Myself;
    use crate::simulator::{FaultKind, FaultPlan, SimConfig, Simulator};
    use secrecy::SecretString;

    /// A simulator and a client for it with millisecond backoff, so retries are quick.
    async fn client_for(max_retries: u32) -> (Simulator, JiraClient) {
        let config = SimConfig::small();
        let sim = Simulator::start(config.clone())
            .await
            .expect("simulator starts");
        let url = Url::parse(&sim.base_url()).expect("simulator URL");
        let token = SecretString::from(config.api_token.clone());
        let mut settings = Settings::for_site(&url, &config.email, token).expect("settings");
        settings.rate_limit.backoff_base_ms = 1;
        settings.rate_limit.backoff_max_ms = 5;
        settings.rate_limit.max_retries = max_retries;
        let client = JiraClient::new(&settings.jira, &settings.rate_limit).expect("client");
        (sim, client)
    }

    fn script(sim: &Simulator, faults: Vec<FaultKind>) {
        sim.set_faults(FaultPlan {
            script: faults,
            ..Default::default()
        });
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_the_real_answer_arrives() {
        let (sim, client) = client_for(5).await;
        script(
            &sim,
            vec![
                FaultKind::Status(503),
                FaultKind::Reset,
                FaultKind::Truncated,
                FaultKind::Status(502),
            ],
        );
        let me: Myself = client
            .get("/rest/api/3/myself", &[])
            .await
            .expect("fifth attempt succeeds");
        assert!(!me.account_id.is_empty());
        let m = client.metrics();
        assert_eq!((m.requests, m.retries), (5, 4), "{m:?}");
        assert_eq!(
            m.statuses.get(&200),
            Some(&2),
            "the truncated 200 and the real one: {m:?}"
        );
    }

    #[tokio::test]
    async fn retries_stop_at_max_retries_with_the_last_error() {
        let (sim, client) = client_for(2).await;
        script(&sim, vec![FaultKind::Status(500); 5]);
        let err = client
            .get::<Myself>("/rest/api/3/myself", &[])
            .await
            .expect_err("still failing");
        assert!(
            matches!(err, JiraError::Server { status: 500, .. }),
            "{err}"
        );
        assert_eq!(client.metrics().requests, 3);
    }

    #[tokio::test]
    async fn permanent_failures_are_returned_on_the_first_response() {
        let (sim, client) = client_for(5).await;
        script(&sim, vec![FaultKind::Unauthorized]);
        let err = client
            .get::<Myself>("/rest/api/3/myself", &[])
            .await
            .expect_err("401");
        assert!(matches!(err, JiraError::Unauthorized { .. }), "{err}");
        // An array where an object is expected is valid JSON of the wrong shape.
        let err = client
            .get::<Myself>("/rest/api/3/users/search", &[])
            .await
            .expect_err("shape");
        assert!(matches!(err, JiraError::Decode { .. }), "{err}");
        assert_eq!(client.metrics().requests, 2);
        assert_eq!(sim.request_log().len(), 2);
    }

    #[tokio::test]
    async fn a_retry_after_pauses_every_clone_of_the_client() {
        let (sim, client) = client_for(0).await;
        script(
            &sim,
            vec![FaultKind::TooManyRequests {
                retry_after_secs: Some(1),
            }],
        );
        let err = client
            .get::<Myself>("/rest/api/3/myself", &[])
            .await
            .expect_err("429");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
        let other = client.clone();
        let started = Instant::now();
        let _: Myself = other
            .get("/rest/api/3/myself", &[])
            .await
            .expect("after the pause");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        let m = client.metrics();
        assert!(m.retry_after_wait_ms >= 900 && m.throttled == 1, "{m:?}");
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_bound_fails_at_once_as_rate_limited() {
        let (sim, client) = client_for(5).await;
        script(
            &sim,
            vec![FaultKind::TooManyRequests {
                retry_after_secs: Some(3600),
            }],
        );
        let started = Instant::now();
        let err = client
            .get::<Myself>("/rest/api/3/myself", &[])
            .await
            .expect_err("429");
        assert!(
            matches!(err, JiraError::RateLimited { .. }) && err.exit_code() == 6,
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(client.metrics().requests, 1);
    }
}

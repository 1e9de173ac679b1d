//! The only code that speaks HTTP to Jira: authentication, pacing, concurrency, retries and the
//! classification of every response into data or a [`JiraError`].
//!
//! Every request first takes one of `max_in_flight` permits, then passes the site's pacing
//! ([`Pacer`]: a site-wide pause that `Retry-After` or a quota reset sets, so one 429 holds
//! every task rather than the one that got it; a gentle adaptive slowing under pressure; what
//! the site says is left in its bucket, never sent into; the steady-rate limiter), and only
//! then is sent. Transient failures are retried with exponential backoff and full jitter,
//! never sooner than the server asked ([`RetryPolicy`]). A 401 is never retried:
//! for [`CREDENTIALS_HOLD`] afterwards the client refuses to send anything, because repeated
//! failed logins can lock the account behind a CAPTCHA.

use crate::jira::auth::Credentials;
use crate::jira::error::{JiraError, Origin};
use crate::jira::metrics::{RequestMetrics, RunScope, endpoint_label, lock};
use crate::jira::rate_limit::{Pacer, RateSignals, Ticket, Waited, server_wait};
use crate::jira::retry::{Next, RetryPolicy};
use crate::settings::{JiraSettings, RateLimitSettings};
use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;

/// After a 401, how long the client refuses to send requests (each fails at once as
/// unauthorized), so a daemon with a revoked token tries the credentials a few times an hour
/// rather than on every scheduled run.
pub const CREDENTIALS_HOLD: Duration = Duration::from_secs(600);

/// How long a `/myself` that answered after a 401 elsewhere vouches for the credentials: other
/// 401s within it are a missing scope without asking again.
const IDENTITY_FRESH: Duration = Duration::from_secs(10);

/// The cumulative counters of a client (the same shape as a run's).
pub type ClientMetrics = RequestMetrics;

/// A client for one Jira site. Cheap to clone; clones share the pacing, permits and metrics.
#[derive(Clone)]
pub struct JiraClient {
    inner: Arc<Inner>,
    /// What the site is, found out once at connect ([`crate::jira::auth::connect`]).
    flavor: Flavor,
    /// Whether a 401 elsewhere is checked against `/myself` (a site's API): the credentials
    /// are dead only if the identity probe is refused too; otherwise the token lacks the scope
    /// of that one endpoint. The Admin API has no identity probe: every 401 is the key's.
    identity_probe: bool,
}

/// Jira Cloud, or Data Center / Server: which API the site speaks. Chosen once, when the
/// client connects; streams pick their way of reading from it before they start paging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    #[default]
    Cloud,
    /// `/rest/api/2` only, offset paging, users keyed by `key`.
    DataCenter,
}

impl Flavor {
    /// The REST API root both flavors share the paths below: `/rest/api/3` on Cloud,
    /// `/rest/api/2` on Data Center.
    pub fn rest(self) -> &'static str {
        match self {
            Flavor::Cloud => "/rest/api/3",
            Flavor::DataCenter => "/rest/api/2",
        }
    }
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    /// What request paths are appended to: the site, or the API gateway's `/ex/jira/{cloudId}`.
    api_root: String,
    /// The Authorization header of each request; an OAuth access token changes over time.
    auth: Credentials,
    host: String,
    pacer: Pacer,
    in_flight: Semaphore,
    retry: RetryPolicy,
    metrics: Mutex<RequestMetrics>,
    /// When Jira last rejected the credentials.
    rejected_at: Mutex<Option<Instant>>,
    /// How far the site's clock is ahead of ours, from the `Date` of its last answer.
    clock: Mutex<Option<chrono::Duration>>,
    /// The largest response body read, decompressed (`rate_limit.max_response_mb`).
    max_body: usize,
    /// When `/myself` last answered a check after a 401 elsewhere; held while one checks.
    identity_checked: tokio::sync::Mutex<Option<Instant>>,
}

/// What one request needs on each attempt.
struct Call<'a> {
    method: Method,
    url: Url,
    query: &'a [(&'a str, String)],
    body: Option<&'a serde_json::Value>,
    /// `METHOD /path`, as error messages name it.
    endpoint: String,
    /// The endpoint with ids collapsed, as metrics count it.
    label: String,
}

impl JiraClient {
    /// Builds the client: one connection pool (gzip on, connect and total timeouts), the auth
    /// header, the pacing and the retry policy.
    pub fn new(jira: &JiraSettings, limits: &RateLimitSettings) -> Result<Self, JiraError> {
        let auth = Credentials::fixed(jira)?;
        Self::with_credentials(jira, limits, auth, jira.base_url.clone())
    }

    /// A client whose requests go to `api_root` (the site, or the gateway's
    /// `/ex/jira/{cloudId}`) with the Authorization header `auth` gives each of them.
    pub fn with_credentials(
        jira: &JiraSettings,
        limits: &RateLimitSettings,
        auth: Credentials,
        api_root: Url,
    ) -> Result<Self, JiraError> {
        let setup = |detail: String| JiraError::Setup { detail };
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .user_agent(concat!("jira-sync/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .gzip(true)
            .connect_timeout(Duration::from_secs(limits.connect_timeout_secs))
            .timeout(Duration::from_secs(limits.request_timeout_secs))
            .tcp_keepalive(Duration::from_secs(60))
            .pool_max_idle_per_host(limits.max_in_flight.max(1))
            .build()
            .map_err(|e| setup(format!("{e}: the system may lack CA certificates")))?;
        let pacer = Pacer::new(limits)
            .ok_or_else(|| setup("rate_limit.requests_per_second is too high".to_owned()))?;
        let inner = Inner {
            http,
            base_url: jira.base_url.clone(),
            api_root: api_root.as_str().trim_end_matches('/').to_owned(),
            auth,
            host: jira.host(),
            pacer,
            in_flight: Semaphore::new(limits.max_in_flight.max(1)),
            retry: RetryPolicy::from_settings(limits),
            metrics: Mutex::new(RequestMetrics::default()),
            rejected_at: Mutex::new(None),
            clock: Mutex::new(None),
            identity_checked: tokio::sync::Mutex::new(None),
            max_body: usize::try_from(limits.max_response_mb)
                .unwrap_or(usize::MAX >> 20)
                .saturating_mul(1 << 20),
        };
        Ok(JiraClient {
            inner: Arc::new(inner),
            flavor: Flavor::Cloud,
            identity_probe: true,
        })
    }

    /// The site's base URL, as configured.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// Cloud or Data Center, as found at connect.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// This client for a site of `flavor` (sharing pacing, permits and metrics).
    pub fn with_flavor(self, flavor: Flavor) -> JiraClient {
        JiraClient { flavor, ..self }
    }

    /// This client for an API without `/myself` (the Admin API): a 401 is the credential's.
    pub fn without_identity_probe(self) -> JiraClient {
        JiraClient {
            identity_probe: false,
            ..self
        }
    }

    /// The path of `tail` under the site's REST API root ([`Flavor::rest`]): `rest("myself")`
    /// is `/rest/api/3/myself` on Cloud.
    pub fn rest(&self, tail: &str) -> String {
        format!("{}/{tail}", self.flavor.rest())
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

    /// `POST path` with a JSON body; the answer is checked to be complete JSON (a truncated
    /// body is retried like any other) but not decoded. A caller that holds many answers at
    /// once decodes each when it is ready to use it: the raw text is several times smaller
    /// than the decoded values.
    pub async fn post_body(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<JsonBody, JiraError> {
        self.request_with(Method::POST, path, &[], Some(body), checked_body)
            .await
    }

    /// Now on the site's clock: this machine's clock corrected by the `Date` of the site's last
    /// answer (to the second). Windows and marks that Jira compares with its own timestamps
    /// are computed on it, so a client clock that is off by hours loses nothing and delays
    /// nothing. Before any answer, this machine's clock.
    pub fn server_now(&self) -> chrono::DateTime<chrono::Utc> {
        let skew = *lock(&self.inner.clock);
        chrono::Utc::now() + skew.unwrap_or_default()
    }

    /// How far the site's clock is ahead of this machine's, once an answer told.
    pub fn clock_skew(&self) -> Option<chrono::Duration> {
        *lock(&self.inner.clock)
    }

    /// A snapshot of the cumulative counters.
    pub fn metrics(&self) -> ClientMetrics {
        lock(&self.inner.metrics).clone()
    }

    /// The share of `rate_limit.requests_per_second` the adaptive pacing allows right now.
    pub fn pace_share(&self) -> f64 {
        self.inner.pacer.share()
    }

    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, JiraError> {
        self.request_with(method, path, query, body, decode_json::<T>)
            .await
    }

    #[tracing::instrument(skip_all, fields(method = %method, path = path))]
    async fn request_with<R>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        decode: Decode<R>,
    ) -> Result<R, JiraError> {
        // Appended, not joined: the gateway's root has a path of its own.
        let url = Url::parse(&format!("{}{path}", self.inner.api_root)).map_err(|e| {
            JiraError::Setup {
                detail: format!("cannot build a URL from {path}: {e}"),
            }
        })?;
        let call = Call {
            endpoint: format!("{method} {path}"),
            label: endpoint_label(method.as_str(), path),
            method,
            url,
            query,
            body,
        };
        let mut attempt = 1;
        let mut renewed = false;
        loop {
            let err = match self.attempt(&call, attempt, !renewed, decode).await {
                Ok(value) => return Ok(value),
                Err(AttemptError::Renew) => {
                    // An access token that expired under way: one more try with a fresh one.
                    renewed = true;
                    continue;
                }
                Err(AttemptError::ScopeCheck) => {
                    return Err(self.explain_scope_401(&call.endpoint).await);
                }
                Err(AttemptError::Failed(err)) => err,
            };
            let Next::RetryAfter(delay) = self.inner.retry.next(&err, attempt, rand::random())
            else {
                return Err(err);
            };
            let asked = err.retry_after().unwrap_or_default().min(delay);
            tracing::warn!(
                endpoint = %call.endpoint,
                attempt,
                delay_ms = delay.as_millis() as u64,
                "retrying after {err}"
            );
            self.count(|m| {
                m.retries += 1;
                m.retry_after_wait_ms += asked.as_millis() as u64;
                m.backoff_wait_ms += (delay - asked).as_millis() as u64;
            });
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Sends the request once, after the permit and the pacing, and classifies the answer.
    async fn attempt<R>(
        &self,
        call: &Call<'_>,
        attempt: u32,
        may_renew: bool,
        decode: Decode<R>,
    ) -> Result<R, AttemptError> {
        self.refuse_if_rejected()?;
        let credentials = self.inner.auth.header().await?;
        let _permit = self
            .inner
            .in_flight
            .acquire()
            .await
            .map_err(|_| JiraError::Setup {
                detail: "the client was shut down".to_owned(),
            })?;
        let (waited, ticket) = self.inner.pacer.ready().await;
        self.count_waits(&waited);
        // Another task may have been refused the credentials while this one waited.
        self.refuse_if_rejected()?;
        let started = Instant::now();
        let response = match self.build(call, credentials.clone()).send().await {
            Ok(response) => response,
            Err(e) => {
                self.count(|m| m.attempt(&call.label, None));
                let err = self.origin().transport_error(&e, &call.endpoint);
                tracing::debug!(
                    attempt,
                    ms = started.elapsed().as_millis() as u64,
                    "no response: {err}"
                );
                return Err(err.into());
            }
        };
        let status = response.status();
        self.learn_clock(response.headers(), started);
        let wait = self.learn(status, response.headers(), &ticket);
        self.count(|m| m.attempt(&call.label, Some(status.as_u16())));
        let mut scope_check = false;
        if status == StatusCode::UNAUTHORIZED {
            if may_renew && self.inner.auth.rejected(&credentials).await {
                tracing::debug!("the access token was rejected: refreshing it");
                return Err(AttemptError::Renew);
            }
            if self.identity_probe && call.url.path() != self.identity_path() {
                // One endpoint refused: the credentials may be fine and only lack its scope.
                scope_check = true;
            } else {
                *lock(&self.inner.rejected_at) = Some(Instant::now());
            }
        }
        let bytes = read_capped(response, self.inner.max_body, &call.endpoint).await?;
        tracing::debug!(
            status = status.as_u16(),
            ms = started.elapsed().as_millis() as u64,
            attempt,
            bytes = bytes.len(),
            "response"
        );
        if status.is_success() {
            return Ok(decode(&self.origin(), status, bytes, &call.endpoint)?);
        }
        if scope_check {
            // Told outside the attempt, once its in-flight permit is given back.
            return Err(AttemptError::ScopeCheck);
        }
        Err(self
            .origin()
            .status_error(status, &bytes, wait, &call.endpoint)
            .into())
    }

    /// The path of the identity probe (`/myself`) under the client's root.
    fn identity_path(&self) -> String {
        let root = Url::parse(&self.inner.api_root)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        format!("{root}{}", self.rest("myself"))
    }

    /// After a 401 on `endpoint`: asks `/myself` once. Refused there too, the credentials are
    /// dead (and the client holds them, [`CREDENTIALS_HOLD`]); answered, the token lacks the
    /// scope of `endpoint` alone, and nothing is held.
    async fn explain_scope_401(&self, endpoint: &str) -> JiraError {
        let scope = || JiraError::Scope {
            endpoint: endpoint.to_owned(),
        };
        // One probe at a time: those waiting learn from its answer.
        let mut checked = self.inner.identity_checked.lock().await;
        if let Err(err) = self.refuse_if_rejected() {
            return err;
        }
        if checked.is_some_and(|at| at.elapsed() < IDENTITY_FRESH) {
            return scope();
        }
        let identity = self.rest("myself");
        let probe = Box::pin(self.request_with(
            Method::GET,
            &identity,
            &[],
            None,
            decode_json::<serde::de::IgnoredAny>,
        ));
        match probe.await {
            Ok(_) => {
                *checked = Some(Instant::now());
                scope()
            }
            Err(err @ JiraError::Unauthorized { .. }) => err,
            Err(_) => {
                // The identity probe could not tell: hold the credentials, as a 401 asks.
                *lock(&self.inner.rejected_at) = Some(Instant::now());
                JiraError::Unauthorized {
                    host: self.inner.host.clone(),
                }
            }
        }
    }

    fn build(&self, call: &Call<'_>, credentials: HeaderValue) -> reqwest::RequestBuilder {
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone())
            .header(header::AUTHORIZATION, credentials);
        if !call.query.is_empty() {
            request = request.query(call.query);
        }
        if let Some(body) = call.body {
            request = request.json(body);
        }
        request
    }

    /// Reads the rate-limit headers of the answer to the request of `ticket`: pauses the whole
    /// site for the wait Jira asked for (when within `rate_limit.max_retry_after_secs`), slows
    /// the pace on pressure, notes what is left in the site's bucket, and returns the wait for
    /// the error and the retry.
    fn learn(&self, status: StatusCode, headers: &HeaderMap, ticket: &Ticket) -> Option<Duration> {
        let signals = RateSignals::from_headers(headers);
        let wait = server_wait(status.as_u16(), &signals, chrono::Utc::now());
        let honoured = wait.filter(|w| *w <= self.inner.retry.max_server_wait);
        if let Some(pause) = honoured.filter(|w| !w.is_zero()) {
            tracing::info!(
                status = status.as_u16(),
                reason = ?signals.reason,
                pause_ms = pause.as_millis() as u64,
                "jira asked to wait: every request to the site pauses"
            );
            self.count(|m| m.pauses += 1);
        }
        self.inner
            .pacer
            .observe(status.as_u16(), &signals, honoured, ticket);
        wait
    }

    /// Notes the site's clock from a response's `Date` (second precision; the midpoint of the
    /// request stands for the moment it was written).
    fn learn_clock(&self, headers: &HeaderMap, sent: Instant) {
        let Some(date) = headers
            .get(header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|t| chrono::DateTime::parse_from_rfc2822(t).ok())
        else {
            return;
        };
        let half_trip = chrono::Duration::from_std(sent.elapsed() / 2).unwrap_or_default();
        let ours = chrono::Utc::now() - half_trip;
        // The header drops the milliseconds: half a second is the expected error.
        let skew = date.to_utc() + chrono::Duration::milliseconds(500) - ours;
        *lock(&self.inner.clock) = Some(skew);
    }

    /// Fails at once, without a request, within [`CREDENTIALS_HOLD`] of a 401.
    fn refuse_if_rejected(&self) -> Result<(), JiraError> {
        let rejected = *lock(&self.inner.rejected_at);
        match rejected {
            Some(at) if at.elapsed() < CREDENTIALS_HOLD => Err(JiraError::Unauthorized {
                host: self.inner.host.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn count_waits(&self, waited: &Waited) {
        if *waited == Waited::default() {
            return;
        }
        self.count(|m| {
            m.retry_after_wait_ms += waited.pause.as_millis() as u64;
            m.pacing_wait_ms += waited.pacing.as_millis() as u64;
            m.limiter_wait_ms += waited.limiter.as_millis() as u64;
        });
    }

    /// Applies `change` to the client's counters and to those of the current run.
    fn count(&self, change: impl Fn(&mut RequestMetrics)) {
        change(&mut lock(&self.inner.metrics));
        RunScope::with_current(change);
    }

    /// The site, as error messages name it.
    fn origin(&self) -> Origin<'_> {
        Origin {
            host: &self.inner.host,
            base_url: self.inner.base_url.as_str().trim_end_matches('/'),
        }
    }
}

/// Reads a response body of at most `limit` bytes (after decompression): a small gzip answer
/// can expand to gigabytes, and no page of Jira's comes near the limit.
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
    endpoint: &str,
) -> Result<Bytes, JiraError> {
    let broken = |e: reqwest::Error| match e.is_timeout() {
        true => JiraError::Timeout {
            endpoint: endpoint.to_owned(),
        },
        false => JiraError::Truncated {
            endpoint: endpoint.to_owned(),
        },
    };
    let expected = response.content_length().unwrap_or(0) as usize;
    let mut body = bytes::BytesMut::with_capacity(expected.min(limit));
    while let Some(chunk) = response.chunk().await.map_err(broken)? {
        if body.len() + chunk.len() > limit {
            return Err(JiraError::TooLarge {
                endpoint: endpoint.to_owned(),
                limit_mb: limit >> 20,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// How one attempt ended when it did not return data.
enum AttemptError {
    /// The access token was refused and a fresh one may work: send again.
    Renew,
    /// One endpoint answered 401: `/myself` tells whether the credentials or a scope failed.
    ScopeCheck,
    Failed(JiraError),
}

impl From<JiraError> for AttemptError {
    fn from(err: JiraError) -> Self {
        AttemptError::Failed(err)
    }
}

/// How a successful body becomes the caller's value.
type Decode<R> = fn(&Origin<'_>, StatusCode, Bytes, &str) -> Result<R, JiraError>;

fn decode_json<T: DeserializeOwned>(
    origin: &Origin<'_>,
    status: StatusCode,
    bytes: Bytes,
    endpoint: &str,
) -> Result<T, JiraError> {
    origin.decode(status, &bytes, endpoint)
}

fn checked_body(
    origin: &Origin<'_>,
    status: StatusCode,
    bytes: Bytes,
    endpoint: &str,
) -> Result<JsonBody, JiraError> {
    let bytes = match super::json::clean(&bytes) {
        std::borrow::Cow::Borrowed(_) => bytes,
        std::borrow::Cow::Owned(cleaned) => Bytes::from(cleaned),
    };
    origin.decode::<serde::de::IgnoredAny>(status, &bytes, endpoint)?;
    Ok(JsonBody {
        bytes,
        endpoint: endpoint.to_owned(),
    })
}

/// A response body known to be complete JSON, not yet decoded ([`JiraClient::post_body`]).
#[derive(Debug, Clone)]
pub struct JsonBody {
    bytes: Bytes,
    endpoint: String,
}

impl JsonBody {
    /// Decodes the body; JSON of another shape than `T` is a [`JiraError::Decode`].
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, JiraError> {
        serde_json::from_slice(&self.bytes).map_err(|err| JiraError::Decode {
            endpoint: self.endpoint.clone(),
            detail: err.to_string(),
        })
    }

    /// The size of the body in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

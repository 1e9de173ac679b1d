//! Pacing of the requests to one site: a steady-rate limiter, a site-wide pause that the
//! server's rate-limit answers set, and adaptive slowing when the server reports pressure.
//!
//! A governor `Quota` cannot change once built, so the adaptive part is a second gate in front
//! of it: while the site reports pressure (`X-RateLimit-NearLimit: true`, a low
//! `X-RateLimit-Remaining`, a 429) each request also reserves a slot spaced
//! `1 / (requests_per_second × share)` apart, with `share` cut in half on pressure and climbing
//! back linearly to 1, where the gate disappears and the limiter alone paces. Swapping limiters
//! instead would lose the limiter's state at every change and race with requests holding the
//! old one. The arithmetic is in pure functions, tested without sleeping.

use crate::settings::RateLimitSettings;
use chrono::{DateTime, NaiveDateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{self, HeaderMap};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Two pressure reports closer than this cut the pace once: the responses of requests that
/// were in flight together describe the same moment.
const CUT_INTERVAL: Duration = Duration::from_secs(1);

/// Why Jira says it limited a request (`RateLimit-Reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    /// An hourly points quota (`jira-quota-global-based`, `jira-quota-tenant-based`, and the
    /// older `jira-quota-based`, `jira-cost-based`): nothing passes until the reset.
    Quota,
    /// The per-endpoint token bucket (`jira-burst-based`).
    Burst,
    /// Writes to one issue (`jira-per-issue-on-write`), or a reason this version does not know.
    Other,
}

/// What a response's headers say about the site's limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateSignals {
    /// `Retry-After` in seconds.
    pub retry_after: Option<Duration>,
    pub reason: Option<LimitReason>,
    /// `X-RateLimit-Reset`: when the limit's window resets.
    pub reset: Option<DateTime<Utc>>,
    /// `X-RateLimit-NearLimit: true`: less than a fifth of a quota is left.
    pub near_limit: bool,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
}

impl RateSignals {
    /// Reads the documented headers and their `X-Beta-` forms.
    pub fn from_headers(headers: &HeaderMap) -> RateSignals {
        let text = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
                .map(str::trim)
        };
        let number = |names: &[&str]| text(names).and_then(|t| t.parse::<u64>().ok());
        RateSignals {
            retry_after: text(&[header::RETRY_AFTER.as_str()])
                .and_then(|t| t.parse::<u64>().ok())
                .map(Duration::from_secs),
            reason: text(&[
                "ratelimit-reason",
                "x-ratelimit-reason",
                "x-beta-ratelimit-reason",
            ])
            .map(parse_reason),
            reset: text(&["x-ratelimit-reset", "x-beta-ratelimit-reset"]).and_then(parse_reset),
            near_limit: text(&["x-ratelimit-nearlimit", "x-beta-ratelimit-nearlimit"])
                .is_some_and(|t| t.eq_ignore_ascii_case("true")),
            limit: number(&["x-ratelimit-limit", "x-beta-ratelimit-limit"]),
            remaining: number(&["x-ratelimit-remaining", "x-beta-ratelimit-remaining"]),
        }
    }
}

pub fn parse_reason(text: &str) -> LimitReason {
    match text.trim().to_ascii_lowercase().as_str() {
        "jira-quota-global-based"
        | "jira-quota-tenant-based"
        | "jira-quota-based"
        | "jira-cost-based" => LimitReason::Quota,
        "jira-burst-based" => LimitReason::Burst,
        _ => LimitReason::Other,
    }
}

/// `X-RateLimit-Reset`: `2026-01-01T01:01:01Z`, or minute precision `2026-03-26T16:00Z`.
pub fn parse_reset(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%MZ")
        .ok()
        .map(|t| t.and_utc())
}

/// How long the whole site must wait after a response: `Retry-After` on a 429 or 503, and for
/// a quota reason until `X-RateLimit-Reset` if that is later. `None`: the response imposes no
/// wait (a 429 without either header is retried with the client's own backoff).
pub fn server_wait(status: u16, signals: &RateSignals, now: DateTime<Utc>) -> Option<Duration> {
    if !matches!(status, 429 | 503) {
        return None;
    }
    let until_reset = match (signals.reason, signals.reset) {
        (Some(LimitReason::Quota), Some(reset)) if status == 429 => {
            Some((reset - now).to_std().unwrap_or(Duration::ZERO))
        }
        _ => None,
    };
    match (signals.retry_after, until_reset) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Whether a response says the site is close to its limit: a 429, `X-RateLimit-NearLimit`, or
/// `X-RateLimit-Remaining` below `low_share` of `X-RateLimit-Limit`.
pub fn under_pressure(status: u16, signals: &RateSignals, low_share: f64) -> bool {
    if status == 429 || signals.near_limit {
        return true;
    }
    match (signals.remaining, signals.limit) {
        (Some(remaining), Some(limit)) if limit > 0 => {
            (remaining as f64) < low_share * limit as f64
        }
        _ => false,
    }
}

/// The share of `requests_per_second` adaptive pacing allows, as a function of time: cut in
/// half on pressure (never below `min`), then back to 1 linearly over `recovery`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    /// The share right after the last cut.
    pub cut_to: f64,
    /// When the last cut happened; `None`: never cut, the share is 1.
    pub cut_at: Option<Instant>,
}

impl Default for Share {
    fn default() -> Self {
        Share {
            cut_to: 1.0,
            cut_at: None,
        }
    }
}

/// Adaptive pacing settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adaptive {
    pub min: f64,
    /// Time to climb from `min` back to the full rate.
    pub recovery: Duration,
    /// `X-RateLimit-Remaining` below this share of the limit is pressure.
    pub low_remaining: f64,
}

impl Share {
    pub fn at(&self, now: Instant, cfg: &Adaptive) -> f64 {
        let Some(cut_at) = self.cut_at else {
            return 1.0;
        };
        let elapsed = now.saturating_duration_since(cut_at).as_secs_f64();
        let per_sec = (1.0 - cfg.min) / cfg.recovery.as_secs_f64().max(0.001);
        (self.cut_to + elapsed * per_sec).min(1.0)
    }

    /// Halves the current share, unless the last cut was less than [`CUT_INTERVAL`] ago.
    pub fn cut(&mut self, now: Instant, cfg: &Adaptive) {
        if self
            .cut_at
            .is_some_and(|at| now.saturating_duration_since(at) < CUT_INTERVAL)
        {
            return;
        }
        self.cut_to = (self.at(now, cfg) * 0.5).max(cfg.min).min(1.0);
        self.cut_at = Some(now);
    }
}

/// The send time of the next request under adaptive pacing at `rps × share`, and the slot
/// after it. At full share there is no slot: the limiter alone paces.
pub fn reserve_slot(
    next_free: Option<Instant>,
    now: Instant,
    rps: f64,
    share: f64,
) -> (Instant, Option<Instant>) {
    if share >= 1.0 {
        return (now, None);
    }
    let interval = Duration::from_secs_f64(1.0 / (rps * share).max(0.001));
    let slot = next_free.map_or(now, |free| free.max(now));
    (slot, Some(slot + interval))
}

/// The governor quota for `rps` requests per second and bursts of `burst`.
pub fn quota(rps: f64, burst: u32) -> Option<Quota> {
    let period = Duration::from_secs_f64(1.0 / rps.max(0.001));
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Some(Quota::with_period(period)?.allow_burst(burst))
}

/// Time a request spent waiting at each gate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Waited {
    /// A site-wide pause from `Retry-After` or a quota reset.
    pub pause: Duration,
    /// The adaptive slot.
    pub pacing: Duration,
    /// The steady-rate limiter.
    pub limiter: Duration,
}

struct PaceState {
    paused_until: Option<Instant>,
    share: Share,
    next_free: Option<Instant>,
}

/// Everything that paces one site's requests. Shared by the clones of a client.
pub struct Pacer {
    limiter: DefaultDirectRateLimiter,
    rps: f64,
    adaptive: Adaptive,
    state: Mutex<PaceState>,
}

impl Pacer {
    pub fn new(limits: &RateLimitSettings) -> Option<Pacer> {
        Some(Pacer {
            limiter: RateLimiter::direct(quota(limits.requests_per_second, limits.burst)?),
            rps: limits.requests_per_second,
            adaptive: Adaptive {
                min: limits.adaptive_min_share,
                recovery: Duration::from_secs(limits.adaptive_recovery_secs),
                low_remaining: limits.low_remaining_share,
            },
            state: Mutex::new(PaceState {
                paused_until: None,
                share: Share::default(),
                next_free: None,
            }),
        })
    }

    /// Waits until a request may be sent: after any pause, in its adaptive slot, and when the
    /// limiter allows. A pause that starts meanwhile is waited out too.
    pub async fn ready(&self) -> Waited {
        let mut waited = Waited::default();
        loop {
            while let Some(until) = self.paused_until(Instant::now()) {
                let started = Instant::now();
                tokio::time::sleep_until(until).await;
                waited.pause += started.elapsed();
            }
            let slot = {
                let now = Instant::now();
                let mut state = self.lock();
                let share = state.share.at(now, &self.adaptive);
                let (slot, next) = reserve_slot(state.next_free, now, self.rps, share);
                state.next_free = next;
                slot
            };
            let started = Instant::now();
            tokio::time::sleep_until(slot).await;
            waited.pacing += started.elapsed();
            let started = Instant::now();
            self.limiter.until_ready().await;
            waited.limiter += started.elapsed();
            if self.paused_until(Instant::now()).is_none() {
                return waited;
            }
        }
    }

    /// Learns from a response: pauses the site for `wait` (unless it is zero), and cuts the
    /// pace on pressure.
    pub fn observe(&self, status: u16, signals: &RateSignals, wait: Option<Duration>) {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            let until = now + wait;
            if state.paused_until.is_none_or(|p| p < until) {
                state.paused_until = Some(until);
            }
        }
        if under_pressure(status, signals, self.adaptive.low_remaining) {
            state.share.cut(now, &self.adaptive);
        }
    }

    /// The current share of the configured rate (1 when no pressure was reported lately).
    pub fn share(&self) -> f64 {
        self.lock().share.at(Instant::now(), &self.adaptive)
    }

    fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.lock().paused_until.filter(|until| *until > now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PaceState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;

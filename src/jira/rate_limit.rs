//! Pacing of the requests to one site: a site-wide pause that the server's rate-limit answers
//! set, adaptive slowing, what the site says is left in its bucket, and a steady-rate limiter.
//!
//! Every request passes four gates, in this order, all shared by the clones of a client:
//!
//! 1. **The pause.** `Retry-After` on a 429 or 503, and for a quota reason the time until
//!    `X-RateLimit-Reset` if later, holds every request to the site ([`server_wait`]).
//! 2. **The adaptive slot.** Pressure cuts the share of `requests_per_second` the client uses
//!    to nine tenths of itself ([`CUT_FACTOR`]), at most once a second ([`CUT_INTERVAL`]: the
//!    answers of requests in flight together describe the same moment) and never below
//!    `adaptive_min_share`. Pressure is a 429, `X-RateLimit-NearLimit: true`, or a site that
//!    refills its bucket slower than the client paces (below). The share holds while pressure
//!    goes on; once answers have been clean for a second ([`QUIET`], counted from the end of
//!    any pause) it climbs back linearly to 1 over `adaptive_recovery_secs` ([`Share`]). Below
//!    1 each request reserves a slot spaced `1 / (requests_per_second × share)` apart; at 1 the
//!    slot disappears. A governor `Quota` cannot change once built, so this is a gate of its
//!    own: swapping limiters would lose their state at every change and race with requests
//!    holding the old one.
//! 3. **The site's bucket.** Jira's burst limit is a token bucket, and answers say what is
//!    left in it (`X-RateLimit-Remaining` of `X-RateLimit-Limit`). The client keeps an estimate
//!    of it ([`SiteBucket`]): the last answer's remaining, plus the refill at the client's own
//!    pace since that request was sent, less the requests sent or reserved after it. A request
//!    goes only when the estimate leaves `low_remaining_share` of the bucket unspent (at most
//!    a second of requests, [`reserve_tokens`]): the client never bursts beyond what the site
//!    says remains, and requests paced at the site's own rate, arriving with some jitter, find
//!    a token rather than a 429. A low remaining slows nothing else: a client pacing at or
//!    under the site's rate keeps that rate. If the answers keep reporting fewer tokens than
//!    the estimate expected, adding up past the reserve ([`shortfall_limit`]), the site
//!    refills slower than the client paces: that is pressure. Only a bucket that cannot have
//!    been full since the last answer counts, at most a token an answer, with a leak
//!    ([`SHORTFALL_LEAK`]): the rounding of the counts, and requests that overtake each other
//!    on the way, cancel out over the next answers.
//! 4. **The limiter.** A governor limiter of `requests_per_second` with bursts of `burst`.
//!
//! The arithmetic is in pure functions and in a state changed at explicit instants, tested
//! without sleeping (a simulated site in the tests runs the gates against Jira's bucket).

use crate::settings::RateLimitSettings;
use chrono::{DateTime, NaiveDateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{self, HeaderMap};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// What a cut leaves of the share: a gentle decrease. A 429 to a client pacing at the site's
/// rate is the jitter of arrival times, not a pace far above the limit; a client that is far
/// above it keeps being cut, once a second, while the pressure lasts.
const CUT_FACTOR: f64 = 0.9;

/// Two pressure reports closer than this cut the share once.
const CUT_INTERVAL: Duration = Duration::from_secs(1);

/// The share climbs back only once answers have been clean this long.
const QUIET: Duration = Duration::from_secs(1);

/// How fast a shortfall of the site's bucket fades: this share of the pace, in tokens a second.
/// What is left to add up is a pace more than this much above the site's refill.
const SHORTFALL_LEAK: f64 = 0.05;

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

/// Whether a response reports pressure that slows the pace: a 429 (the site refused a request
/// despite the pacing), or `X-RateLimit-NearLimit` (less than a fifth of a quota is left). A
/// low `X-RateLimit-Remaining` is not pressure: the site's bucket is meant to be used, and
/// [`SiteBucket`] keeps requests from being sent into it once empty.
pub fn under_pressure(status: u16, signals: &RateSignals) -> bool {
    status == 429 || signals.near_limit
}

/// The share of `requests_per_second` adaptive pacing allows, as a function of time: cut to
/// [`CUT_FACTOR`] of itself on pressure (at most once per [`CUT_INTERVAL`], never below `min`),
/// held while pressure goes on and for [`QUIET`] after, then back to 1 linearly over
/// `recovery`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    /// The share held since the last pressure report.
    pub from: f64,
    /// When the climb from it begins; `None`: never cut, the share is 1.
    pub since: Option<Instant>,
    /// When the share was last cut.
    pub cut_at: Option<Instant>,
}

impl Default for Share {
    fn default() -> Self {
        Share {
            from: 1.0,
            since: None,
            cut_at: None,
        }
    }
}

/// Adaptive pacing settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adaptive {
    pub min: f64,
    /// Time to climb back to the full rate after the last pressure report.
    pub recovery: Duration,
    /// The share of the site's bucket (`X-RateLimit-Limit`) left unspent.
    pub keep: f64,
}

impl Share {
    pub fn at(&self, now: Instant, cfg: &Adaptive) -> f64 {
        let Some(since) = self.since else {
            return 1.0;
        };
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        let climbed = (elapsed / cfg.recovery.as_secs_f64().max(0.001)).min(1.0);
        (self.from + (1.0 - self.from) * climbed).min(1.0)
    }

    /// A pressure report: the share is cut to [`CUT_FACTOR`] of itself unless the last cut was
    /// less than [`CUT_INTERVAL`] ago (the answers of requests in flight together describe the
    /// same moment), and in any case holds until [`QUIET`] after `climb_from` (now, or the end
    /// of the pause the report came with), then climbs back.
    pub fn cut(&mut self, now: Instant, climb_from: Instant, cfg: &Adaptive) {
        if cfg.min >= 1.0 {
            return;
        }
        let share = self.at(now, cfg);
        let recent = self
            .cut_at
            .is_some_and(|at| now.saturating_duration_since(at) < CUT_INTERVAL);
        self.from = match recent {
            true => share,
            false => {
                self.cut_at = Some(now);
                (share * CUT_FACTOR).max(cfg.min).min(1.0)
            }
        };
        self.since = Some(climb_from.max(now) + QUIET);
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

/// The tokens left unspent in a site's bucket of `limit`: `keep` of it, at most a second of
/// requests at `rps` (a quota's remaining is not worth holding back for), and always at least
/// one token to spend.
pub fn reserve_tokens(limit: f64, keep: f64, rps: f64) -> f64 {
    (keep * limit).min(rps).min(limit - 1.0).max(0.0)
}

/// How many tokens the site's answers may report short of the estimate, added up, before the
/// client takes it that it paces above the site's refill: one more than the reserve, which
/// is what protects the requests meanwhile, and at least three, beyond the noise of rounded
/// counts and of requests that overtake each other on the way.
pub fn shortfall_limit(reserve: f64) -> f64 {
    reserve.max(2.0) + 1.0
}

/// What the client knows of the site's token bucket, from the last answer that told
/// (`X-RateLimit-Remaining` and `X-RateLimit-Limit`): an estimate of the tokens at `at`,
/// less every request reserved until then (below zero while reserved requests wait).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SiteBucket {
    pub tokens: f64,
    pub at: Instant,
    /// The bucket's size.
    pub limit: f64,
}

impl SiteBucket {
    /// The estimate after an answer: `remaining` when the request was decided (no earlier
    /// than `sent`), plus the refill at `rate` since it was sent, less the `later` requests
    /// sent or reserved after it. The site's own rate is unknown: refilling at the client's
    /// pace assumes the client paces at or under it; if not, the shortfall says so.
    pub fn from_answer(
        remaining: u64,
        limit: u64,
        later: u64,
        sent: Instant,
        now: Instant,
        rate: f64,
    ) -> SiteBucket {
        let limit = limit as f64;
        let refill = now.saturating_duration_since(sent).as_secs_f64() * rate;
        SiteBucket {
            tokens: (remaining as f64 + refill).min(limit) - later as f64,
            at: now,
            limit,
        }
    }

    /// The estimated tokens at `now`, refilled at `rate` up to the bucket's size.
    pub fn tokens_at(&self, now: Instant, rate: f64) -> f64 {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        (self.tokens + refill).min(self.limit)
    }

    /// Takes a token for one request and returns when it may be sent: at once if `reserve`
    /// tokens are left after it, else once the refill at `rate` has brought them back.
    pub fn reserve(&mut self, now: Instant, rate: f64, reserve: f64) -> Instant {
        self.tokens = self.tokens_at(now, rate) - 1.0;
        self.at = now;
        if self.tokens >= reserve {
            return now;
        }
        now + Duration::from_secs_f64((reserve - self.tokens) / rate.max(0.001))
    }
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
    /// The adaptive slot and the site's bucket.
    pub pacing: Duration,
    /// The steady-rate limiter.
    pub limiter: Duration,
}

/// A request cleared to go: its place among the requests sent, and when it was sent, for
/// reading what the site says in the answer to it ([`Pacer::observe`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ticket {
    seq: u64,
    sent: Instant,
}

/// The state of a site's gates, changed under the pacer's lock; every change takes the time
/// it happens at, so tests drive it without sleeping.
struct PaceState {
    paused_until: Option<Instant>,
    share: Share,
    next_free: Option<Instant>,
    /// `None` until an answer tells the site's bucket.
    site: Option<SiteBucket>,
    /// Requests sent so far.
    sent: u64,
    /// Requests that reserved a token of the site's bucket and are not sent yet.
    pending: u64,
    /// The most the estimate of the site's bucket reached since the last answer.
    peak: f64,
    /// How many tokens fewer the site's answers reported than the client's pace left in its
    /// bucket, added up, and when last ([`shortfall_limit`]).
    shortfall: (f64, Instant),
}

impl PaceState {
    fn new(now: Instant) -> PaceState {
        PaceState {
            paused_until: None,
            share: Share::default(),
            next_free: None,
            site: None,
            sent: 0,
            pending: 0,
            peak: 0.0,
            shortfall: (0.0, now),
        }
    }

    fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|until| *until > now)
    }

    /// Reserves the adaptive slot and a token of the site's bucket for one request at `now`,
    /// at `rps` requests a second: when the request may go to the limiter. The request is then
    /// [`sent`](Self::send) or [`abandoned`](Self::abandon).
    fn reserve(&mut self, now: Instant, rps: f64, cfg: &Adaptive) -> Instant {
        let share = self.share.at(now, cfg);
        let site_at = self.site.as_mut().map_or(now, |site| {
            self.peak = self.peak.max(site.tokens_at(now, rps * share));
            site.reserve(now, rps * share, reserve_tokens(site.limit, cfg.keep, rps))
        });
        let (slot, next) = reserve_slot(self.next_free, site_at, rps, share);
        self.next_free = next;
        self.pending += 1;
        slot
    }

    /// A reserved request leaves at `now`.
    fn send(&mut self, now: Instant) -> Ticket {
        self.abandon();
        self.sent += 1;
        Ticket {
            seq: self.sent,
            sent: now,
        }
    }

    /// A reserved request is not sent after all (a pause began, or its task was dropped).
    fn abandon(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }

    /// Learns from the answer to the request of `ticket`, at `now`: pauses the site for `wait`
    /// (unless it is zero), cuts the pace on pressure, and notes what is left in the site's
    /// bucket.
    fn observe(
        &mut self,
        now: Instant,
        answer: (u16, &RateSignals, Option<Duration>),
        ticket: &Ticket,
        rps: f64,
        cfg: &Adaptive,
    ) {
        let (status, signals, wait) = answer;
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            let until = now + wait;
            if self.paused_until.is_none_or(|p| p < until) {
                self.paused_until = Some(until);
            }
        }
        let mut pressure = under_pressure(status, signals);
        if let (Some(remaining), Some(limit)) = (signals.remaining, signals.limit)
            && limit > 0
        {
            // Sent after it, or about to be: not yet counted in what the site said.
            let later = self.sent.saturating_sub(ticket.seq) + self.pending;
            let rate = rps * self.share.at(now, cfg);
            let site = SiteBucket::from_answer(remaining, limit, later, ticket.sent, now, rate);
            let reserve = reserve_tokens(site.limit, cfg.keep, rps);
            if let Some(before) = self.site {
                // Each answer's rounding and timing err both ways and cancel out over the next
                // answers; a shortfall that adds up is the site refilling slower than the
                // client's pace (or someone else spending its bucket). It is counted only
                // where it matters, while the bucket is within a second of requests of the
                // reserve (a big count, a quota's say, is no bucket the pace runs into), and
                // not if the bucket may have been full since the last answer: it may have
                // overflowed (the site's count is the estimate give or take two tokens, the
                // rounding and requests that overtook each other).
                let expected = before.tokens_at(now, rate);
                let peak = self.peak.max(expected).max(site.tokens + later as f64);
                let counted = expected <= reserve + rate && peak + 2.0 < site.limit;
                let drift = match counted {
                    true => (expected - site.tokens).min(1.0),
                    false => 0.0,
                };
                let (shortfall, at) = self.shortfall;
                let elapsed = now.saturating_duration_since(at).as_secs_f64();
                let left = (shortfall - elapsed * rate * SHORTFALL_LEAK).max(0.0);
                self.shortfall = ((left + drift).max(0.0), now);
            }
            if self.shortfall.0 > shortfall_limit(reserve) {
                self.shortfall.0 = 0.0;
                pressure = true;
            }
            self.peak = site.tokens;
            self.site = Some(site);
        }
        if pressure {
            // No answer comes during a pause to tell that the site is fine again: the climb
            // starts when it ends.
            let climb_from = self.paused_until(now).unwrap_or(now);
            self.share.cut(now, climb_from, cfg);
        }
    }
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
                keep: limits.low_remaining_share,
            },
            state: Mutex::new(PaceState::new(Instant::now())),
        })
    }

    /// Waits until a request may be sent: after any pause, in its adaptive slot, when the
    /// site's bucket has tokens to spare, and when the limiter allows. A pause that starts
    /// meanwhile is waited out too.
    pub async fn ready(&self) -> (Waited, Ticket) {
        let mut waited = Waited::default();
        loop {
            while let Some(until) = self.paused_until(Instant::now()) {
                let started = Instant::now();
                tokio::time::sleep_until(until).await;
                waited.pause += started.elapsed();
            }
            let slot = self
                .lock()
                .reserve(Instant::now(), self.rps, &self.adaptive);
            // Given back unless the request is sent, even if this task is dropped meanwhile.
            let mut reservation = Reservation {
                pacer: self,
                sent: false,
            };
            let started = Instant::now();
            tokio::time::sleep_until(slot).await;
            waited.pacing += started.elapsed();
            let started = Instant::now();
            self.limiter.until_ready().await;
            waited.limiter += started.elapsed();
            let now = Instant::now();
            let mut state = self.lock();
            if state.paused_until(now).is_none() {
                reservation.sent = true;
                return (waited, state.send(now));
            }
        }
    }

    /// Learns from the answer to the request of `ticket`: pauses the site for `wait` (unless
    /// it is zero), cuts the pace on pressure, and notes what is left in the site's bucket.
    pub fn observe(
        &self,
        status: u16,
        signals: &RateSignals,
        wait: Option<Duration>,
        ticket: &Ticket,
    ) {
        self.lock().observe(
            Instant::now(),
            (status, signals, wait),
            ticket,
            self.rps,
            &self.adaptive,
        );
    }

    /// The current share of the configured rate (1 when no pressure was reported lately).
    pub fn share(&self) -> f64 {
        self.lock().share.at(Instant::now(), &self.adaptive)
    }

    fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.lock().paused_until(now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PaceState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A request's reservation of the site's bucket, given back when dropped unless it was sent.
/// Declared before the lock's guard, it is dropped after it.
struct Reservation<'a> {
    pacer: &'a Pacer,
    sent: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.pacer.lock().abandon();
        }
    }
}

#[cfg(test)]
mod tests;

//! Tests of the pacing arithmetic and header parsing, without sleeping (a fake clock for the
//! limiter).

use super::*;
use governor::clock::{Clock, FakeRelativeClock};
use reqwest::header::HeaderValue;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_static(value));
    }
    map
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("valid time")
        .with_timezone(&Utc)
}

const CFG: Adaptive = Adaptive {
    min: 0.1,
    recovery: Duration::from_secs(5),
    keep: 0.2,
};

#[test]
fn reset_times_are_read_with_seconds_and_with_minute_precision() {
    assert_eq!(
        parse_reset("2026-01-01T01:01:01Z"),
        Some(at("2026-01-01T01:01:01Z"))
    );
    assert_eq!(
        parse_reset("2026-03-26T16:00Z"),
        Some(at("2026-03-26T16:00:00Z"))
    );
    assert_eq!(
        parse_reset(" 2026-03-26T16:00:00.500+00:00 "),
        Some(at("2026-03-26T16:00:00.5Z"))
    );
    assert_eq!(parse_reset("soon"), None);
}

#[test]
fn retry_after_is_read_in_seconds_and_other_forms_are_ignored() {
    let read = |value: &'static str| {
        RateSignals::from_headers(&headers(&[("retry-after", value)])).retry_after
    };
    assert_eq!(read("7"), Some(Duration::from_secs(7)));
    assert_eq!(read(" 0 "), Some(Duration::ZERO));
    assert_eq!(read("Wed, 21 Oct 2015 07:28:00 GMT"), None);
}

#[test]
fn every_documented_reason_is_classified() {
    for quota in [
        "jira-quota-global-based",
        "jira-quota-tenant-based",
        "jira-quota-based",
        "jira-cost-based",
    ] {
        assert_eq!(parse_reason(quota), LimitReason::Quota, "{quota}");
    }
    assert_eq!(parse_reason("jira-burst-based"), LimitReason::Burst);
    assert_eq!(parse_reason("jira-per-issue-on-write"), LimitReason::Other);
}

#[test]
fn headers_are_read_including_the_beta_forms() {
    let s = RateSignals::from_headers(&headers(&[
        ("retry-after", "7"),
        ("ratelimit-reason", "jira-burst-based"),
        ("x-ratelimit-reset", "2026-03-04T09:16:09Z"),
        ("x-ratelimit-limit", "100"),
        ("x-ratelimit-remaining", "0"),
    ]));
    assert_eq!(
        s,
        RateSignals {
            retry_after: Some(Duration::from_secs(7)),
            reason: Some(LimitReason::Burst),
            reset: Some(at("2026-03-04T09:16:09Z")),
            near_limit: false,
            limit: Some(100),
            remaining: Some(0),
        }
    );
    let beta = RateSignals::from_headers(&headers(&[
        ("x-beta-ratelimit-nearlimit", "true"),
        ("x-beta-ratelimit-reason", "jira-quota-based"),
    ]));
    assert!(beta.near_limit);
    assert_eq!(beta.reason, Some(LimitReason::Quota));
    let empty = RateSignals::from_headers(&HeaderMap::new());
    assert_eq!(empty, RateSignals::default());
}

#[test]
fn the_site_waits_for_retry_after_or_a_quota_reset_whichever_is_later() {
    let now = at("2026-03-26T15:59:30Z");
    let signals = |retry_after: Option<u64>, reason, reset: Option<&str>| RateSignals {
        retry_after: retry_after.map(Duration::from_secs),
        reason,
        reset: reset.map(at),
        ..RateSignals::default()
    };
    let secs = |s| Some(Duration::from_secs(s));
    let quota = Some(LimitReason::Quota);
    let burst = Some(LimitReason::Burst);
    let reset = Some("2026-03-26T16:00:00Z");
    assert_eq!(
        server_wait(429, &signals(Some(3), burst, reset), now),
        secs(3)
    );
    assert_eq!(
        server_wait(429, &signals(Some(3), quota, reset), now),
        secs(30)
    );
    assert_eq!(
        server_wait(429, &signals(Some(60), quota, reset), now),
        secs(60)
    );
    assert_eq!(
        server_wait(429, &signals(None, quota, reset), now),
        secs(30)
    );
    // A reset already past imposes nothing beyond Retry-After.
    let past = Some("2026-03-26T15:00:00Z");
    assert_eq!(
        server_wait(429, &signals(Some(2), quota, past), now),
        secs(2)
    );
    assert_eq!(
        server_wait(503, &signals(Some(0), None, None), now),
        secs(0)
    );
    assert_eq!(server_wait(503, &signals(None, None, None), now), None);
    assert_eq!(server_wait(429, &signals(None, burst, reset), now), None);
    assert_eq!(server_wait(500, &signals(Some(9), None, None), now), None);
}

#[test]
fn pressure_is_a_429_or_near_limit_and_little_remaining_is_not() {
    let remaining = |remaining, limit| RateSignals {
        remaining: Some(remaining),
        limit: Some(limit),
        ..RateSignals::default()
    };
    assert!(under_pressure(429, &RateSignals::default()));
    assert!(under_pressure(429, &remaining(0, 10)));
    assert!(!under_pressure(200, &RateSignals::default()));
    let near = RateSignals {
        near_limit: true,
        ..RateSignals::default()
    };
    assert!(under_pressure(200, &near));
    // An empty bucket on a served request: the site's bucket gate waits for tokens instead.
    assert!(!under_pressure(200, &remaining(0, 10)));
    assert!(!under_pressure(200, &remaining(0, 0)));
}

#[test]
fn pressure_cuts_a_tenth_once_per_moment_and_the_share_is_back_seconds_after_it_ends() {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    let t0 = Instant::now();
    let secs = |s: f64| t0 + Duration::from_secs_f64(s);
    let mut share = Share::default();
    assert_eq!(share.at(t0, &CFG), 1.0);
    share.cut(t0, t0, &CFG);
    assert!(close(share.at(t0, &CFG), 0.9));
    // Responses in flight together report the same moment: one cut, but the share holds.
    share.cut(secs(0.3), secs(0.3), &CFG);
    assert!(close(share.at(secs(1.3), &CFG), 0.9));
    // A second of clean answers, then back to full linearly over the 5 s of recovery.
    assert!(close(share.at(secs(3.3), &CFG), 0.94));
    assert_eq!(share.at(secs(6.3), &CFG), 1.0);
    // A cut during the climb starts from where the share is.
    share.cut(secs(3.3), secs(3.3), &CFG);
    assert!(close(share.at(secs(4.3), &CFG), 0.9 * 0.94));
    assert_eq!(share.at(secs(9.3), &CFG), 1.0);
    // The climb waits for the end of the pause the pressure came with.
    share.cut(secs(20.0), secs(23.0), &CFG);
    assert!(close(share.at(secs(24.0), &CFG), 0.9));
    assert_eq!(share.at(secs(29.0), &CFG), 1.0);
    // A client far above the site's rate keeps being cut, once a second, down to the minimum.
    for i in 0..40 {
        let at = secs(40.0 + f64::from(i));
        share.cut(at, at, &CFG);
    }
    assert!(
        close(share.at(secs(80.0), &CFG), 0.1),
        "never below the minimum"
    );
    assert_eq!(share.at(secs(85.0), &CFG), 1.0);
    // A minimum of 1 turns adaptive pacing off.
    let off = Adaptive { min: 1.0, ..CFG };
    let mut share = Share::default();
    share.cut(t0, t0, &off);
    assert_eq!(share.at(t0, &off), 1.0);
}

#[test]
fn a_share_of_the_sites_bucket_is_kept_at_most_a_second_of_requests_and_one_token_is_spent() {
    assert_eq!(reserve_tokens(10.0, 0.2, 10.0), 2.0);
    assert_eq!(reserve_tokens(10.0, 0.0, 10.0), 0.0);
    // A big bucket (or a quota's count): no more than a second of requests held back.
    assert_eq!(reserve_tokens(65_000.0, 0.2, 8.0), 8.0);
    // Never the whole bucket: a request always fits.
    assert_eq!(reserve_tokens(10.0, 1.0, 100.0), 9.0);
    assert_eq!(reserve_tokens(1.0, 0.2, 10.0), 0.0);
}

#[test]
fn the_sites_bucket_is_read_from_an_answer_less_the_requests_sent_after_it() {
    let t0 = Instant::now();
    let ms = |n| Duration::from_millis(n);
    // Sent at t0, answered 100 ms later with 5 of 10 left; 2 requests reserved after it.
    let site = SiteBucket::from_answer(5, 10, 2, t0, t0 + ms(100), 10.0);
    assert!(
        (site.tokens - 4.0).abs() < 1e-9,
        "5 + 1 refilled - 2: {site:?}"
    );
    assert_eq!(site.limit, 10.0);
    // Never above the bucket's size before the later requests are taken off.
    let full = SiteBucket::from_answer(10, 10, 3, t0, t0 + ms(500), 10.0);
    assert!((full.tokens - 7.0).abs() < 1e-9, "{full:?}");
    assert!((full.tokens_at(t0 + ms(800), 10.0) - 10.0).abs() < 1e-9);
    assert!((full.tokens_at(t0 + ms(5_000), 10.0) - 10.0).abs() < 1e-9);
}

#[test]
fn a_request_waits_until_the_site_keeps_its_reserve_after_it() {
    let t0 = Instant::now();
    let ms = |n| Duration::from_millis(n);
    let mut site = SiteBucket {
        tokens: 4.0,
        at: t0,
        limit: 10.0,
    };
    // Keeping 2 of 10 at 10 a second: two requests go at once, then one every 100 ms.
    assert_eq!(site.reserve(t0, 10.0, 2.0), t0);
    assert_eq!(site.reserve(t0, 10.0, 2.0), t0);
    let third = site.reserve(t0, 10.0, 2.0);
    assert!(
        third > t0 + ms(99) && third < t0 + ms(101),
        "{:?}",
        third - t0
    );
    let fourth = site.reserve(t0, 10.0, 2.0);
    assert!(fourth > t0 + ms(199) && fourth < t0 + ms(201));
    // Reserved requests are counted at once: the estimate is below zero while they wait.
    assert!((site.tokens_at(t0, 10.0) - 0.0).abs() < 1e-9);
    assert!((site.tokens_at(t0 + ms(200), 10.0) - 2.0).abs() < 1e-9);
}

#[test]
fn adaptive_slots_space_requests_only_below_the_full_share() {
    let t0 = Instant::now();
    assert_eq!(reserve_slot(None, t0, 10.0, 1.0), (t0, None));
    // Half of 10 requests/s: one every 200 ms.
    let (first, next) = reserve_slot(None, t0, 10.0, 0.5);
    assert_eq!(first, t0);
    assert_eq!(next, Some(t0 + Duration::from_millis(200)));
    let (second, next) = reserve_slot(next, t0 + Duration::from_millis(10), 10.0, 0.5);
    assert_eq!(second, t0 + Duration::from_millis(200));
    assert_eq!(next, Some(t0 + Duration::from_millis(400)));
    // A slot in the past is not waited for.
    let late = t0 + Duration::from_secs(5);
    assert_eq!(reserve_slot(next, late, 10.0, 0.5).0, late);
}

#[test]
fn the_limiter_allows_the_burst_then_one_request_per_period() {
    let clock = FakeRelativeClock::default();
    let quota = quota(4.0, 3).expect("quota");
    let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
    for _ in 0..3 {
        assert!(limiter.check().is_ok());
    }
    assert!(limiter.check().is_err(), "the burst is spent");
    clock.advance(Duration::from_millis(240));
    assert!(limiter.check().is_err(), "a period is 250 ms");
    clock.advance(Duration::from_millis(10));
    assert!(limiter.check().is_ok());
    assert!(limiter.check().is_err());
    // After an idle second the burst is back, never more.
    clock.advance(Duration::from_secs(10));
    let passed = (0..10).filter(|_| limiter.check().is_ok()).count();
    assert_eq!(passed, 3);
}

/// A site's burst limit as Jira keeps it (and the simulator): a bucket of `size` tokens
/// refilled at `rate` a second; a request that finds less than one token is refused.
struct JiraBucket {
    tokens: f64,
    at: Instant,
    rate: f64,
    size: f64,
}

impl JiraBucket {
    /// The tokens left (floored, as `X-RateLimit-Remaining` says them), or `Err` with the
    /// seconds of `Retry-After` (at least 1) when refused.
    fn take(&mut self, now: Instant) -> Result<u64, u64> {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.size);
        self.at = now;
        if self.tokens < 1.0 {
            return Err(((1.0 - self.tokens) / self.rate).ceil().max(1.0) as u64);
        }
        self.tokens -= 1.0;
        Ok(self.tokens.floor() as u64)
    }
}

/// What happens next to one of the client's tasks.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Asks the gates for a slot (after any pause).
    Reserve,
    /// Waits for the limiter, then sends.
    Limiter,
    /// The request reaches the site.
    Arrive(Ticket),
    /// The answer is back: served with what remains, or refused with `Retry-After`.
    Answer(Ticket, Result<u64, u64>),
}

/// The client's side of a simulated run: its settings and how long requests travel.
struct Client {
    rps: f64,
    burst: u32,
    /// Milliseconds from the limiter to the site, and from the site's decision to the answer.
    transit_ms: (u64, u64),
    answer_ms: (u64, u64),
    /// Milliseconds a task works on an answer before it asks for the next request.
    work_ms: (u64, u64),
}

/// What a simulated run served.
struct Run {
    served: usize,
    refused: usize,
    /// Served requests a second, between the first and the last served arrival.
    rate: f64,
    /// Whether the pace was ever cut.
    cut: bool,
}

/// Four tasks that each send their next request once the last is answered and worked on (a
/// refused one again after the pause), through the pacer's gates and a governor limiter on a fake
/// clock, to a site of `site_rate` requests a second with a bucket as big whose answers tell
/// what remains, until 2,000 requests were served.
fn simulate(client: &Client, site_rate: f64, seed: u64) -> Run {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut draw = |(low, high): (u64, u64)| Duration::from_millis(rng.random_range(low..=high));
    let t0 = Instant::now();
    let clock = FakeRelativeClock::default();
    let mut clock_at = t0;
    let quota = quota(client.rps, client.burst).expect("quota");
    let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
    let mut state = PaceState::new(t0);
    let mut site = JiraBucket {
        tokens: site_rate,
        at: t0,
        rate: site_rate,
        size: site_rate,
    };
    let mut tasks = [(t0, Step::Reserve); 4];
    let (mut served, mut refused, mut first, mut last) = (0, 0, None, t0);
    while served < 2_000 {
        let (task, &(now, step)) = tasks
            .iter()
            .enumerate()
            .min_by_key(|(_, (at, _))| *at)
            .expect("tasks");
        tasks[task] = match step {
            Step::Reserve => match state.paused_until(now) {
                Some(until) => (until, Step::Reserve),
                None => (state.reserve(now, client.rps, &CFG), Step::Limiter),
            },
            Step::Limiter => {
                clock.advance(now - clock_at);
                clock_at = now;
                match limiter.check() {
                    Err(not_until) => (now + not_until.wait_time_from(clock.now()), step),
                    // A pause began meanwhile: back to the gates, as `Pacer::ready` does.
                    Ok(()) if state.paused_until(now).is_some() => {
                        state.abandon();
                        (now, Step::Reserve)
                    }
                    Ok(()) => (now + draw(client.transit_ms), Step::Arrive(state.send(now))),
                }
            }
            Step::Arrive(ticket) => {
                let answer = site.take(now);
                if answer.is_ok() {
                    served += 1;
                    first.get_or_insert(now);
                    last = now;
                }
                (now + draw(client.answer_ms), Step::Answer(ticket, answer))
            }
            Step::Answer(ticket, answer) => {
                let (status, remaining, wait) = match answer {
                    Ok(remaining) => (200, remaining, None),
                    Err(secs) => {
                        refused += 1;
                        (429, 0, Some(Duration::from_secs(secs)))
                    }
                };
                let signals = RateSignals {
                    retry_after: wait,
                    remaining: Some(remaining),
                    limit: Some(site_rate as u64),
                    ..RateSignals::default()
                };
                let answer = (status, &signals, wait);
                state.observe(now, answer, &ticket, client.rps, &CFG);
                (now + draw(client.work_ms), Step::Reserve)
            }
        };
    }
    let secs = last.saturating_duration_since(first.unwrap_or(t0));
    Run {
        served,
        refused,
        rate: (served - 1) as f64 / secs.as_secs_f64(),
        cut: state.share.cut_at.is_some(),
    }
}

/// A distant site (up to 40 ms on the way, answers within 5 to 80 ms) and a near one whose
/// answers take up to 300 ms.
const NETWORKS: [((u64, u64), (u64, u64)); 2] = [((1, 40), (5, 80)), ((0, 3), (5, 300))];

/// A client at `rps` with a burst of as many, on `network` (one of [`NETWORKS`]), working
/// `work_ms` on each answer.
fn client(rps: f64, network: ((u64, u64), (u64, u64)), work_ms: (u64, u64)) -> Client {
    let (transit_ms, answer_ms) = network;
    Client {
        rps,
        burst: rps as u32,
        transit_ms,
        answer_ms,
        work_ms,
    }
}

#[test]
fn at_the_sites_own_rate_and_burst_the_client_uses_the_whole_budget_without_429s() {
    for (seed, network) in NETWORKS.into_iter().enumerate() {
        let run = simulate(&client(10.0, network, (0, 0)), 10.0, seed as u64);
        assert_eq!(run.refused, 0, "network {seed}");
        assert!(!run.cut, "network {seed}");
        assert!(run.rate >= 9.9, "network {seed}: {:.3} a second", run.rate);
    }
}

/// Far above the site's rate (5 times and more) the cuts, once a second, take longer to get
/// there: in this simulation about 1 % (5 times) and 3 to 4 % (10 times) of requests are
/// refused on the way.
#[test]
fn a_client_set_above_the_sites_rate_settles_at_it_from_what_the_site_says_remains() {
    for rps in [12.0, 15.0, 20.0, 30.0] {
        for (seed, network) in NETWORKS.into_iter().enumerate() {
            let run = simulate(&client(rps, network, (0, 0)), 10.0, seed as u64);
            let at = format!("{rps} against 10, network {seed}");
            assert!(
                run.refused * 100 < run.served,
                "{at}: {} of {} refused",
                run.refused,
                run.served
            );
            assert!(run.rate >= 9.8, "{at}: {:.3} a second", run.rate);
        }
    }
}

#[test]
fn a_client_that_leaves_part_of_the_budget_unused_is_never_slowed() {
    for (seed, network) in NETWORKS.into_iter().enumerate() {
        // Four tasks working 200 to 800 ms on each answer: 6 or 7 requests a second, bursty,
        // the site's bucket often full.
        let run = simulate(&client(10.0, network, (200, 800)), 10.0, seed as u64);
        assert_eq!(run.refused, 0, "network {seed}");
        assert!(!run.cut, "network {seed}: {:.3} a second", run.rate);
    }
}

#[test]
fn counts_far_above_a_second_of_requests_do_not_slow_the_pace() {
    // An hourly quota's count, if a site reported one this way: it only goes down, and is
    // nowhere near the point where the pace would run into it.
    let t0 = Instant::now();
    let mut state = PaceState::new(t0);
    let mut now = t0;
    for i in 0..1_000 {
        let slot = state.reserve(now, 8.0, &CFG);
        assert_eq!(slot, now, "request {i} held back");
        let ticket = state.send(now);
        now += Duration::from_millis(125);
        let signals = RateSignals {
            remaining: Some(50_000 - i),
            limit: Some(65_000),
            ..RateSignals::default()
        };
        state.observe(now, (200, &signals, None), &ticket, 8.0, &CFG);
    }
    assert_eq!(state.share.cut_at, None);
}

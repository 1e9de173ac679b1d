//! Tests of the pacing arithmetic and header parsing, without sleeping (a fake clock for the
//! limiter).

use super::*;
use governor::clock::FakeRelativeClock;
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
    recovery: Duration::from_secs(90),
    low_remaining: 0.2,
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
fn pressure_is_a_429_near_limit_or_little_remaining() {
    let remaining = |remaining, limit| RateSignals {
        remaining: Some(remaining),
        limit: Some(limit),
        ..RateSignals::default()
    };
    assert!(under_pressure(429, &RateSignals::default(), 0.2));
    assert!(!under_pressure(200, &RateSignals::default(), 0.2));
    let near = RateSignals {
        near_limit: true,
        ..RateSignals::default()
    };
    assert!(under_pressure(200, &near, 0.2));
    assert!(under_pressure(200, &remaining(19, 100), 0.2));
    assert!(!under_pressure(200, &remaining(20, 100), 0.2));
    assert!(!under_pressure(200, &remaining(0, 0), 0.2));
}

#[test]
fn pressure_halves_the_share_once_per_moment_and_it_recovers_linearly() {
    let t0 = Instant::now();
    let mut share = Share::default();
    assert_eq!(share.at(t0, &CFG), 1.0);
    share.cut(t0, &CFG);
    assert_eq!(share.at(t0, &CFG), 0.5);
    // Responses in flight together report the same pressure: one cut.
    share.cut(t0 + Duration::from_millis(300), &CFG);
    assert_eq!(share.at(t0, &CFG), 0.5);
    // 0.9 of recovery per 90 s: +0.01 per second.
    let later = t0 + Duration::from_secs(10);
    assert!((share.at(later, &CFG) - 0.6).abs() < 1e-9);
    share.cut(later, &CFG);
    assert!((share.at(later, &CFG) - 0.3).abs() < 1e-9);
    for i in 1..10 {
        share.cut(later + Duration::from_secs(2 * i), &CFG);
    }
    let floor = share.at(later + Duration::from_secs(18), &CFG);
    assert!(
        (floor - 0.1).abs() < 1e-9,
        "never below the minimum: {floor}"
    );
    assert_eq!(share.at(later + Duration::from_secs(200), &CFG), 1.0);
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

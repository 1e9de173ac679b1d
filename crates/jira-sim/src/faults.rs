//! Fault injection: what can go wrong, and the deterministic decision for each `/rest` request.
//!
//! The random fault of the n-th `/rest` request to an endpoint (counted per endpoint from when
//! the plan was set) is a pure function of (seed, endpoint, n), so a rerun with the same plan
//! and requests replays the same faults, even when requests to different endpoints interleave
//! differently. Storms and the token-bucket rate limit depend on wall-clock time by nature.

use std::collections::{HashMap, VecDeque};
use std::time::{Instant, SystemTime};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::data::mix64;

/// Which faults to inject. The default plan injects nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultPlan {
    pub seed: u64,
    /// Share of `/rest` requests (0.0 to 1.0) that get a random fault from `kinds`.
    pub rate: f64,
    pub kinds: Vec<FaultKind>,
    /// Jira's burst limit: a token bucket refilled at this many requests per second, holding
    /// `rate_limit_burst` tokens. One bucket for the whole site: every `/rest` and `/admin`
    /// request draws from it, which is stricter than Jira's buckets per endpoint and method.
    /// A request that finds less than one token gets 429 with `Retry-After` (seconds until a
    /// token is back, at least 1), `X-RateLimit-Reset` (now plus that wait), and
    /// `RateLimit-Reason: jira-burst-based`; every answer carries `X-RateLimit-Limit` (the
    /// bucket's size) and `X-RateLimit-Remaining` (the tokens left, floored; 0 on a 429).
    pub rate_limit_rps: Option<f64>,
    /// The bucket's size; `None`: as many tokens as `rate_limit_rps` (a second of requests).
    pub rate_limit_burst: Option<f64>,
    /// Every `/rest` request answers 429 until the storm ends.
    pub storm: Option<Storm>,
    /// Exact faults for the next `/rest` requests, one per request, before any random fault.
    pub script: Vec<FaultKind>,
    /// Every `/rest` request waits this long before it is answered, like a distant site
    /// (0: answer at once). Faults and rate limits are decided after the wait.
    pub latency_ms: u64,
}

/// A period in which every `/rest` request is rate limited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Storm {
    /// When the storm ends. In JSON an RFC 3339 timestamp.
    #[serde(with = "rfc3339")]
    pub until: SystemTime,
    pub retry_after_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FaultKind {
    /// An error status: 500 and other codes with a JSON body, 502 and 504 with an HTML page,
    /// 503 with a plain-text body.
    Status(u16),
    /// 429; without `retry_after_secs` the `Retry-After` header is left out.
    TooManyRequests { retry_after_secs: Option<u64> },
    /// The connection breaks: headers announce a body that never fully arrives.
    Reset,
    /// 200 with the real body cut in half (valid HTTP framing, invalid JSON).
    Truncated,
    /// The real answer, after a delay.
    Slow { delay_ms: u64 },
    /// 401 for this request alone (a scope this endpoint lacks, or a glitch).
    Unauthorized,
    /// 401 because the API token was revoked now: this request and every later one with it
    /// (until [`crate::Simulator::revoke_token`]`(false)`).
    Revoke,
}

/// Rate-limit headers for a response: the bucket size and what is left of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RateInfo {
    pub limit: u64,
    pub remaining: u64,
}

/// What happens to one `/rest` request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Pass,
    Fault(FaultKind),
    /// 429 from a storm or the token bucket.
    Limited {
        retry_after_secs: u64,
        reset: SystemTime,
        reason: &'static str,
    },
}

struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

pub(crate) struct FaultState {
    plan: FaultPlan,
    script: VecDeque<FaultKind>,
    /// Requests seen per endpoint since the plan was set.
    served: HashMap<String, u64>,
    bucket: Option<Bucket>,
}

/// The endpoint a request counts towards: `METHOD path`, with issue ids and keys collapsed
/// into `{idOrKey}`.
pub(crate) fn endpoint(method: &str, path: &str) -> String {
    let mut segments: Vec<&str> = path.split('/').collect();
    for i in 1..segments.len() {
        if segments[i - 1] == "issue" && segments[i] != "bulkfetch" {
            segments[i] = "{idOrKey}";
        }
    }
    format!("{method} {}", segments.join("/"))
}

impl FaultState {
    pub fn new(plan: FaultPlan) -> Self {
        let bucket = plan.rate_limit_rps.filter(|r| *r > 0.0).map(|rate| {
            let capacity = plan
                .rate_limit_burst
                .filter(|b| *b > 0.0)
                .unwrap_or(rate)
                .max(1.0);
            Bucket {
                rate,
                capacity,
                tokens: capacity,
                last: Instant::now(),
            }
        });
        FaultState {
            script: plan.script.iter().cloned().collect(),
            plan,
            served: HashMap::new(),
            bucket,
        }
    }

    /// Decides the fate of the next `/rest` request. Storms win over the rate limit, which
    /// wins over scripted faults, which win over random ones.
    pub fn decide(
        &mut self,
        endpoint: &str,
        now: SystemTime,
        instant: Instant,
    ) -> (Decision, Option<RateInfo>) {
        let counter = self.served.entry(endpoint.to_owned()).or_default();
        let n = *counter;
        *counter += 1;
        let rate = self.take_token(instant);
        if let Some(storm) = &self.plan.storm
            && now < storm.until
        {
            let decision = Decision::Limited {
                retry_after_secs: storm.retry_after_secs,
                reset: storm.until,
                reason: "jira-quota-tenant-based",
            };
            return (
                decision,
                rate.map(|(info, _)| RateInfo {
                    remaining: 0,
                    ..info
                }),
            );
        }
        if let Some((info, Some(wait_secs))) = rate {
            let reset = now + std::time::Duration::from_secs(wait_secs);
            let decision = Decision::Limited {
                retry_after_secs: wait_secs,
                reset,
                reason: "jira-burst-based",
            };
            return (decision, Some(info));
        }
        let info = rate.map(|(info, _)| info);
        if let Some(kind) = self.script.pop_front() {
            return (Decision::Fault(kind), info);
        }
        (
            random_fault(&self.plan, endpoint, n).map_or(Decision::Pass, Decision::Fault),
            info,
        )
    }

    /// Takes a token from the bucket; the second value is `Some(seconds to wait)` when empty.
    fn take_token(&mut self, now: Instant) -> Option<(RateInfo, Option<u64>)> {
        let bucket = self.bucket.as_mut()?;
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.last = now;
        bucket.tokens = (bucket.tokens + elapsed * bucket.rate).min(bucket.capacity);
        let limit = bucket.capacity.ceil() as u64;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Some((
                RateInfo {
                    limit,
                    remaining: bucket.tokens.floor() as u64,
                },
                None,
            ));
        }
        let wait = ((1.0 - bucket.tokens) / bucket.rate).ceil().max(1.0) as u64;
        Some((
            RateInfo {
                limit,
                remaining: 0,
            },
            Some(wait),
        ))
    }

    /// How long every `/rest` request is held before it is answered.
    pub fn latency(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.plan.latency_ms)
    }

    pub fn limit(&self) -> Option<u64> {
        self.bucket.as_ref().map(|b| b.capacity.ceil() as u64)
    }
}

/// The random fault of the `n`-th request to `endpoint`: a pure function of the plan's seed,
/// rate and kinds, the endpoint and `n`.
fn random_fault(plan: &FaultPlan, endpoint: &str, n: u64) -> Option<FaultKind> {
    if plan.kinds.is_empty() || plan.rate <= 0.0 {
        return None;
    }
    let endpoint_hash = endpoint.bytes().fold(0xCBF2_9CE4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    });
    let mut rng = ChaCha8Rng::seed_from_u64(mix64(
        plan.seed ^ mix64(endpoint_hash ^ mix64(n.wrapping_add(1))),
    ));
    if rng.random::<f64>() >= plan.rate {
        return None;
    }
    plan.kinds
        .get(rng.random_range(0..plan.kinds.len()))
        .cloned()
}

mod rfc3339 {
    use std::time::SystemTime;

    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
        let time: DateTime<Utc> = (*time).into();
        serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| SystemTime::from(t.with_timezone(&Utc)))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn plan() -> FaultPlan {
        FaultPlan {
            seed: 9,
            rate: 0.5,
            kinds: vec![
                FaultKind::Status(503),
                FaultKind::Reset,
                FaultKind::Truncated,
            ],
            ..FaultPlan::default()
        }
    }

    #[test]
    fn random_faults_are_a_function_of_seed_and_request_number() {
        let run = |plan: FaultPlan| {
            let mut state = FaultState::new(plan);
            (0..200)
                .map(|_| {
                    state
                        .decide("GET /rest/api/3/myself", SystemTime::now(), Instant::now())
                        .0
                })
                .collect::<Vec<_>>()
        };
        let first = run(plan());
        assert_eq!(first, run(plan()));
        let faults = first.iter().filter(|d| **d != Decision::Pass).count();
        assert!(
            (60..140).contains(&faults),
            "about half should fail, got {faults}"
        );
        assert_ne!(first, run(FaultPlan { seed: 10, ..plan() }));
    }

    #[test]
    fn each_endpoint_counts_its_own_requests() {
        let mut mixed = FaultState::new(plan());
        let mut alone = FaultState::new(plan());
        let mut interleaved = Vec::new();
        for _ in 0..50 {
            interleaved.push(mixed.decide("GET /a", SystemTime::now(), Instant::now()).0);
            mixed.decide("GET /b", SystemTime::now(), Instant::now());
        }
        let by_itself: Vec<Decision> = (0..50)
            .map(|_| alone.decide("GET /a", SystemTime::now(), Instant::now()).0)
            .collect();
        assert_eq!(interleaved, by_itself);
    }

    #[test]
    fn issue_ids_and_keys_collapse_into_one_endpoint() {
        assert_eq!(
            endpoint("GET", "/rest/api/3/issue/OPS-1"),
            "GET /rest/api/3/issue/{idOrKey}"
        );
        assert_eq!(
            endpoint("POST", "/rest/api/3/issue/bulkfetch"),
            "POST /rest/api/3/issue/bulkfetch"
        );
        assert_eq!(
            endpoint("GET", "/rest/api/3/myself"),
            "GET /rest/api/3/myself"
        );
    }

    #[test]
    fn scripted_faults_come_first_and_in_order() {
        let mut state = FaultState::new(FaultPlan {
            script: vec![FaultKind::Unauthorized, FaultKind::Status(500)],
            ..FaultPlan::default()
        });
        let mut next = || {
            state
                .decide("GET /rest/api/3/myself", SystemTime::now(), Instant::now())
                .0
        };
        assert_eq!(next(), Decision::Fault(FaultKind::Unauthorized));
        assert_eq!(next(), Decision::Fault(FaultKind::Status(500)));
        assert_eq!(next(), Decision::Pass);
    }

    #[test]
    fn the_bucket_allows_a_burst_then_limits_and_refills() {
        let mut state = FaultState::new(FaultPlan {
            rate_limit_rps: Some(2.0),
            ..FaultPlan::default()
        });
        let start = Instant::now();
        let now = SystemTime::now();
        let remaining =
            |(_, info): (Decision, Option<RateInfo>)| info.map(|i| (i.limit, i.remaining));
        assert_eq!(remaining(state.decide("GET /x", now, start)), Some((2, 1)));
        assert_eq!(remaining(state.decide("GET /y", now, start)), Some((2, 0)));
        let (limited, info) = state.decide("GET /x", now, start);
        assert!(
            matches!(
                limited,
                Decision::Limited {
                    retry_after_secs: 1,
                    ..
                }
            ),
            "{limited:?}"
        );
        assert_eq!(
            info,
            Some(RateInfo {
                limit: 2,
                remaining: 0
            })
        );
        assert_eq!(
            state
                .decide("GET /x", now, start + Duration::from_millis(600))
                .0,
            Decision::Pass
        );
    }

    #[test]
    fn the_bucket_may_hold_more_than_a_second_of_requests() {
        let mut state = FaultState::new(FaultPlan {
            rate_limit_rps: Some(2.0),
            rate_limit_burst: Some(5.0),
            ..FaultPlan::default()
        });
        let start = Instant::now();
        let now = SystemTime::now();
        let passed = (0..8)
            .filter(|_| state.decide("GET /x", now, start).0 == Decision::Pass)
            .count();
        assert_eq!(passed, 5);
        assert_eq!(state.limit(), Some(5));
        // Refilled at 2 a second: a token every 500 ms, never early.
        let (limited, _) = state.decide("GET /x", now, start + Duration::from_millis(490));
        assert!(matches!(limited, Decision::Limited { .. }), "{limited:?}");
        let (passed, info) = state.decide("GET /x", now, start + Duration::from_millis(510));
        assert_eq!(passed, Decision::Pass);
        assert_eq!(info.map(|i| i.remaining), Some(0));
    }

    #[test]
    fn plans_round_trip_through_json() {
        let plan = FaultPlan {
            storm: Some(Storm {
                until: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
                retry_after_secs: 3,
            }),
            script: vec![
                FaultKind::TooManyRequests {
                    retry_after_secs: None,
                },
                FaultKind::Slow { delay_ms: 5 },
            ],
            ..plan()
        };
        let text = serde_json::to_string(&plan).expect("serialize");
        assert!(text.contains("2026-01-01T00:00:00.000Z"), "{text}");
        assert_eq!(
            serde_json::from_str::<FaultPlan>(&text).expect("deserialize"),
            plan
        );
    }
}

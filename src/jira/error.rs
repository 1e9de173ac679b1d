//! What can go wrong talking to Jira, classified so callers can branch: retry, fail the run,
//! or tell the user what to fix; and the classification of raw responses (status, body,
//! transport failure) into those kinds. Messages never contain credentials.

use crate::failure::Failure;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// A failed request to Jira, after the client's retries (if the kind is retryable).
///
/// `endpoint` is `METHOD /path` without the query string.
#[derive(thiserror::Error, Debug)]
pub enum JiraError {
    /// 401: Jira rejected the credentials. Never retried: repeated 401s can lock the account
    /// behind a CAPTCHA.
    #[error(
        "invalid credentials for {host}: the email must be the Atlassian account that created the API token; the token may be revoked or expired (jira.email, jira.api_token)"
    )]
    Unauthorized { host: String },

    /// The credentials of a mode other than `basic` cannot be used (an OAuth refresh token
    /// that was revoked or expired, a token that only works through the gateway): `detail`
    /// says what to do. Never retried.
    #[error("{detail}")]
    Auth { detail: String },

    /// 401 on one endpoint while `/myself` still answers: the credentials work, but the token
    /// (scoped, or OAuth) lacks that endpoint's scope.
    #[error(
        "{endpoint} answered 401 although the credentials work (/myself answers): the token \
         lacks this endpoint's scope; add it to the scoped token or the OAuth app (read:jira-work, \
         read:jira-user, manage:jira-configuration), or disable the stream that needs it"
    )]
    Scope { endpoint: String },

    /// 403: authenticated, but a permission is missing.
    #[error("permission denied on {endpoint}: {message}")]
    Forbidden { endpoint: String, message: String },

    /// 404: the resource does not exist or the account may not see it (Jira does not say which).
    #[error("{endpoint} was not found: it does not exist or this account may not see it")]
    NotFound { endpoint: String },

    /// 410: Jira removed the endpoint.
    #[error("{endpoint} is gone (Jira removed it): {message}")]
    Gone { endpoint: String, message: String },

    /// 400: Jira rejected the request as malformed (bad JQL, a bad parameter).
    #[error("jira rejected {endpoint} as a bad request: {}", messages.join("; "))]
    BadRequest {
        endpoint: String,
        messages: Vec<String>,
    },

    /// Another 4xx that none of the variants above covers.
    #[error("jira answered {status} to {endpoint}: {message}")]
    Status {
        endpoint: String,
        status: u16,
        message: String,
    },

    /// 429 still, after the retries, or with a `Retry-After` longer than the client will wait.
    #[error("{}", rate_limited_message(endpoint, *retry_after))]
    RateLimited {
        endpoint: String,
        retry_after: Option<Duration>,
    },

    /// 5xx (after the retries, for the retryable ones).
    #[error(
        "jira answered {status} to {endpoint}: the site has a server-side problem; try again later"
    )]
    Server {
        endpoint: String,
        status: u16,
        retry_after: Option<Duration>,
    },

    /// No connection: DNS failure, connection refused, TLS failure, connect timeout.
    #[error("cannot connect to {host}: {detail}; check jira.base_url and the network")]
    Connect { host: String, detail: String },

    /// The connection broke after it was made (reset, closed early).
    #[error("the connection to jira broke during {endpoint}: {detail}")]
    Network { endpoint: String, detail: String },

    /// No complete response within `rate_limit.request_timeout_secs`.
    #[error("{endpoint} timed out: jira did not answer in time (rate_limit.request_timeout_secs)")]
    Timeout { endpoint: String },

    /// An HTML page or other non-JSON text where Jira's API answers with JSON.
    #[error("{base_url} does not look like a Jira Cloud site: {detail}; check jira.base_url")]
    NotJira { base_url: String, detail: String },

    /// The body ended before the JSON did.
    #[error("the response to {endpoint} was cut short")]
    Truncated { endpoint: String },

    /// A body larger than `rate_limit.max_response_mb` once decompressed.
    #[error(
        "the response to {endpoint} is larger than {limit_mb} MB once decompressed: jira-sync \
         stopped reading it (rate_limit.max_response_mb)"
    )]
    TooLarge { endpoint: String, limit_mb: usize },

    /// Valid JSON of an unexpected shape.
    #[error("cannot read the response to {endpoint}: {detail}")]
    Decode { endpoint: String, detail: String },

    /// The client cannot be built from the settings.
    #[error("cannot set up the jira client: {detail}")]
    Setup { detail: String },
}

fn rate_limited_message(endpoint: &str, retry_after: Option<Duration>) -> String {
    let asked = retry_after.map_or_else(String::new, |wait| {
        format!(" (jira asks to wait {}s)", wait.as_secs())
    });
    format!(
        "still rate limited on {endpoint}{asked}: try again later; rate_limit.max_retries and rate_limit.max_retry_after_secs bound how long jira-sync waits"
    )
}

impl JiraError {
    /// Whether the account may not read this (403, or 401 for a missing scope): a stream that
    /// is not essential is skipped with the reason.
    pub fn denies_access(&self) -> bool {
        matches!(self, JiraError::Forbidden { .. } | JiraError::Scope { .. })
    }

    /// Whether sending the same request again may succeed: 429, 500, 502, 503, 504, timeouts,
    /// broken connections and truncated bodies. Never 400/401/403/404/410 or decode errors,
    /// which would fail again the same way.
    pub fn is_retryable(&self) -> bool {
        match self {
            JiraError::RateLimited { .. }
            | JiraError::Timeout { .. }
            | JiraError::Network { .. }
            | JiraError::Truncated { .. } => true,
            JiraError::Server { status, .. } => matches!(status, 500 | 502 | 503 | 504),
            JiraError::Unauthorized { .. }
            | JiraError::Auth { .. }
            | JiraError::Scope { .. }
            | JiraError::TooLarge { .. }
            | JiraError::Forbidden { .. }
            | JiraError::NotFound { .. }
            | JiraError::Gone { .. }
            | JiraError::BadRequest { .. }
            | JiraError::Status { .. }
            | JiraError::Connect { .. }
            | JiraError::NotJira { .. }
            | JiraError::Decode { .. }
            | JiraError::Setup { .. } => false,
        }
    }

    /// The server's `Retry-After`, if it sent one with a 429 or 503.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            JiraError::RateLimited { retry_after, .. } | JiraError::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// What kind of failure this is, for the daemon and the exit code.
    pub fn failure(&self) -> Failure {
        match self {
            JiraError::Unauthorized { .. } | JiraError::Auth { .. } => Failure::Credentials,
            JiraError::Forbidden { .. } | JiraError::Scope { .. } => Failure::Permission,
            JiraError::NotFound { .. }
            | JiraError::Gone { .. }
            | JiraError::Connect { .. }
            | JiraError::Network { .. }
            | JiraError::Timeout { .. }
            | JiraError::NotJira { .. } => Failure::Unreachable,
            JiraError::RateLimited { .. } => Failure::RateLimited,
            JiraError::BadRequest { .. }
            | JiraError::Status { .. }
            | JiraError::Server { .. }
            | JiraError::Truncated { .. }
            | JiraError::Decode { .. }
            | JiraError::TooLarge { .. }
            | JiraError::Setup { .. } => Failure::Other,
        }
    }
}

/// Turns an error body into short human-readable messages, whatever its shape: Jira's
/// ErrorCollection (`errorMessages`, `errors`), a `{"message": ...}` object, or plain text.
pub fn error_messages(body: &[u8]) -> Vec<String> {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let mut messages = Vec::new();
        if let Some(list) = value.get("errorMessages").and_then(|v| v.as_array()) {
            messages.extend(list.iter().filter_map(|m| m.as_str()).map(str::to_owned));
        }
        if let Some(map) = value.get("errors").and_then(|v| v.as_object()) {
            for (field, message) in map {
                let text = message
                    .as_str()
                    .map_or_else(|| message.to_string(), str::to_owned);
                messages.push(format!("{field}: {text}"));
            }
        }
        if let Some(message) = value.get("message").and_then(|v| v.as_str()) {
            messages.push(message.to_owned());
        }
        if !messages.is_empty() {
            return messages;
        }
    }
    let text = String::from_utf8_lossy(body);
    if looks_like_html(body) {
        return vec!["an HTML page instead of a JSON error".to_owned()];
    }
    let snippet: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if snippet.is_empty() {
        return vec!["no details in the response".to_owned()];
    }
    vec![truncate(&snippet, 200)]
}

/// Whether a body is an HTML page (a login page, a proxy's error page, a marketing site).
pub fn looks_like_html(body: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&body[..body.len().min(512)])
        .trim_start()
        .to_lowercase();
    head.starts_with("<!doctype html")
        || head.starts_with("<html")
        || head.starts_with("<?xml")
        || head.starts_with("<head")
        || head.starts_with("<body")
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max_chars).collect();
    format!("{cut}…")
}

/// The site a response came from, so errors can name it.
pub(crate) struct Origin<'a> {
    /// `host[:port]`.
    pub host: &'a str,
    /// Without a trailing slash.
    pub base_url: &'a str,
}

impl Origin<'_> {
    /// Decodes a successful body; bodies that are not the expected JSON are classified.
    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        status: StatusCode,
        bytes: &[u8],
        endpoint: &str,
    ) -> Result<T, JiraError> {
        // 204 has no body; `null` decodes into `()`, `Option` and `serde_json::Value`.
        let bytes = if status == StatusCode::NO_CONTENT {
            &b"null"[..]
        } else {
            bytes
        };
        let cleaned = super::json::clean(bytes);
        let err = match serde_json::from_slice::<T>(&cleaned) {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let endpoint = endpoint.to_owned();
        let starts_like_json = bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| matches!(b, b'{' | b'['));
        match err.classify() {
            serde_json::error::Category::Data => Err(JiraError::Decode {
                endpoint,
                detail: err.to_string(),
            }),
            serde_json::error::Category::Eof => Err(JiraError::Truncated { endpoint }),
            _ if starts_like_json => Err(JiraError::Truncated { endpoint }),
            _ => Err(self.not_jira(format!(
                "{endpoint} answered with {} instead of JSON",
                if looks_like_html(bytes) {
                    "an HTML page"
                } else {
                    "text"
                }
            ))),
        }
    }

    /// Classifies an error status; the body is read for Jira's messages.
    pub(crate) fn status_error(
        &self,
        status: StatusCode,
        bytes: &[u8],
        retry_after: Option<Duration>,
        endpoint: &str,
    ) -> JiraError {
        let endpoint = endpoint.to_owned();
        let code = status.as_u16();
        match code {
            401 => JiraError::Unauthorized {
                host: self.host.to_owned(),
            },
            403 => JiraError::Forbidden {
                endpoint,
                message: error_messages(bytes).join("; "),
            },
            404 if looks_like_html(bytes) => {
                self.not_jira(format!("{endpoint} answered 404 with an HTML page"))
            }
            404 => JiraError::NotFound { endpoint },
            410 => JiraError::Gone {
                endpoint,
                message: error_messages(bytes).join("; "),
            },
            400 => JiraError::BadRequest {
                endpoint,
                messages: error_messages(bytes),
            },
            429 => JiraError::RateLimited {
                endpoint,
                retry_after,
            },
            500..=599 => JiraError::Server {
                endpoint,
                status: code,
                retry_after,
            },
            _ => JiraError::Status {
                endpoint,
                status: code,
                message: error_messages(bytes).join("; "),
            },
        }
    }

    /// Classifies a request that got no response.
    pub(crate) fn transport_error(&self, err: &reqwest::Error, endpoint: &str) -> JiraError {
        let detail = root_cause(err);
        if err.is_connect() {
            let detail = if err.is_timeout() {
                "the connection timed out (rate_limit.connect_timeout_secs)".to_owned()
            } else {
                detail
            };
            return JiraError::Connect {
                host: self.host.to_owned(),
                detail,
            };
        }
        if err.is_timeout() {
            return JiraError::Timeout {
                endpoint: endpoint.to_owned(),
            };
        }
        JiraError::Network {
            endpoint: endpoint.to_owned(),
            detail,
        }
    }

    fn not_jira(&self, detail: String) -> JiraError {
        JiraError::NotJira {
            base_url: self.base_url.to_owned(),
            detail,
        }
    }
}

/// The innermost cause of a transport error: "Connection refused (os error 111)", a DNS or
/// TLS failure. reqwest's own message only names the URL.
fn root_cause(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_every_shape_become_messages() {
        let collection =
            br#"{"errorMessages":["The value 'X' does not exist."],"errors":{"jql":"bad"}}"#;
        assert_eq!(
            error_messages(collection),
            vec!["The value 'X' does not exist.", "jql: bad"]
        );
        assert_eq!(
            error_messages(br#"{"message":"nope","status-code":401}"#),
            vec!["nope"]
        );
        assert_eq!(
            error_messages(b"Client must be authenticated to access this resource.\n"),
            vec!["Client must be authenticated to access this resource."]
        );
        assert_eq!(
            error_messages(b"<!DOCTYPE html><html>"),
            vec!["an HTML page instead of a JSON error"]
        );
        assert_eq!(error_messages(b""), vec!["no details in the response"]);
        assert_eq!(
            error_messages("x".repeat(500).as_bytes())[0]
                .chars()
                .count(),
            201
        );
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        let endpoint = || "GET /x".to_owned();
        assert!(
            JiraError::RateLimited {
                endpoint: endpoint(),
                retry_after: None
            }
            .is_retryable()
        );
        assert!(
            JiraError::Server {
                endpoint: endpoint(),
                status: 503,
                retry_after: None
            }
            .is_retryable()
        );
        assert!(
            !JiraError::Server {
                endpoint: endpoint(),
                status: 501,
                retry_after: None
            }
            .is_retryable()
        );
        assert!(
            JiraError::Truncated {
                endpoint: endpoint()
            }
            .is_retryable()
        );
        assert!(!JiraError::Unauthorized { host: "h".into() }.is_retryable());
        assert!(
            !JiraError::NotFound {
                endpoint: endpoint()
            }
            .is_retryable()
        );
        assert!(
            !JiraError::Decode {
                endpoint: endpoint(),
                detail: "d".into()
            }
            .is_retryable()
        );
    }
}

//! The layer every request passes: request log, fault injection, rate-limit headers and auth.
//! The Admin API (`/admin/`) shares the faults and the rate limit with `/rest`, but
//! authenticates with the organization API key.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};

use super::faults::{Decision, FaultKind, RateInfo, endpoint};
use super::routes::error_body;
use super::{RequestLogEntry, Shared};

const LOGIN_FAILED: &str = "Client must be authenticated to access this resource.";

/// Logs every request outside `/__sim/`, and sends `/rest` and `/admin` requests through
/// faults and auth.
pub(crate) async fn gate(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if path.starts_with("/__sim/") || path == "/__sim" {
        return next.run(request).await;
    }
    let at = SystemTime::now();
    let method = request.method().to_string();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let gateway_path = request
        .extensions()
        .get::<super::oauth::Gateway>()
        .map(|g| g.0.clone());
    let _in_flight = shared.concurrency.enter();
    let response = if shared.config.data_center && super::dc::cloud_only(&path) {
        // Data Center has no version 3 of the REST API, nor Cloud's newer listings.
        super::routes::error(StatusCode::NOT_FOUND, &format!("null for uri: {path}"))
    } else if path == "/rest" || path.starts_with("/rest/") || is_admin_api(&path) {
        rest(&shared, request, next).await
    } else {
        next.run(request).await
    };
    let mut response = response;
    // The site's own clock, as every Jira response states it.
    if let Ok(date) = axum::http::HeaderValue::from_str(&http_date(shared.now_ms())) {
        response
            .headers_mut()
            .insert(axum::http::header::DATE, date);
    }
    let status = response.status().as_u16();
    // Requests through the gateway are logged with the path they were sent to.
    let path = gateway_path.unwrap_or(path);
    shared.log().push(RequestLogEntry {
        at,
        method,
        path,
        query,
        status,
    });
    response
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) of `ms` since the epoch.
fn http_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

async fn rest(shared: &Arc<Shared>, request: Request, next: Next) -> Response {
    let latency = shared.faults().latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(status) = shared.failing(request.uri().path()) {
        return fault(shared, FaultKind::Status(status), request, next).await;
    }
    let endpoint = endpoint(request.method().as_str(), request.uri().path());
    let (decision, rate) = shared
        .faults()
        .decide(&endpoint, SystemTime::now(), Instant::now());
    let mut response = match decision {
        Decision::Pass => authorized(shared, request, next).await,
        Decision::Limited {
            retry_after_secs,
            reset,
            reason,
        } => too_many(
            Some(retry_after_secs),
            reset,
            reason,
            rate.map_or(100, |r| r.limit),
        ),
        Decision::Fault(kind) => fault(shared, kind, request, next).await,
    };
    if let Some(RateInfo { limit, remaining }) = rate {
        let headers = response.headers_mut();
        headers
            .entry("x-ratelimit-limit")
            .or_insert(HeaderValue::from(limit));
        headers
            .entry("x-ratelimit-remaining")
            .or_insert(HeaderValue::from(remaining));
    }
    response
}

fn is_admin_api(path: &str) -> bool {
    path.starts_with("/admin/")
}

/// Answers the request if it carries valid credentials (`serverInfo` is open to anyone).
async fn authorized(shared: &Shared, request: Request, next: Next) -> Response {
    if is_admin_api(request.uri().path()) {
        if !super::admin::authenticates(shared, request.headers()) {
            return super::admin::unauthorized();
        }
        return next.run(request).await;
    }
    let path = request.uri().path();
    let open = path.ends_with("/serverInfo");
    if !open
        && shared
            .config
            .unscoped_paths
            .iter()
            .any(|p| path.starts_with(p.as_str()))
    {
        return unauthorized();
    }
    let via_gateway = request
        .extensions()
        .get::<super::oauth::Gateway>()
        .is_some();
    if !open && !authenticates(shared, request.headers(), via_gateway) {
        if via_gateway {
            return super::oauth::gateway_unauthorized();
        }
        return unauthorized();
    }
    next.run(request).await
}

/// The site takes Basic `email:classic token` and a Bearer personal access token; the gateway
/// takes Basic with a classic or a scoped token, and Bearer OAuth access tokens.
fn authenticates(shared: &Shared, headers: &HeaderMap, via_gateway: bool) -> bool {
    if shared.revoked.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if via_gateway {
            return super::oauth::access_valid(shared, credentials);
        }
        return credentials == shared.config.api_token;
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials) else {
        return false;
    };
    let text = String::from_utf8_lossy(&decoded);
    text.split_once(':').is_some_and(|(email, token)| {
        email == shared.config.email
            && (token == shared.config.api_token
                || (via_gateway && token == shared.config.scoped_token))
    })
}

/// Jira Cloud's answer to missing or bad credentials: plain text, not an ErrorCollection.
pub(crate) fn unauthorized() -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    headers.insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Jira\", OAuth realm=\"Jira\""),
    );
    headers.insert(
        "x-seraph-loginreason",
        HeaderValue::from_static("AUTHENTICATED_FAILED"),
    );
    (StatusCode::UNAUTHORIZED, headers, LOGIN_FAILED).into_response()
}

fn iso(time: SystemTime) -> HeaderValue {
    let time: DateTime<Utc> = time.into();
    HeaderValue::try_from(time.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or(HeaderValue::from_static("1970-01-01T00:00:00Z"))
}

fn too_many(
    retry_after_secs: Option<u64>,
    reset: SystemTime,
    reason: &'static str,
    limit: u64,
) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(secs) = retry_after_secs {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(0));
    headers.insert("x-ratelimit-reset", iso(reset));
    headers.insert(
        HeaderName::from_static("ratelimit-reason"),
        HeaderValue::from_static(reason),
    );
    let body = error_body("Rate limit exceeded.");
    (StatusCode::TOO_MANY_REQUESTS, headers, body).into_response()
}

async fn fault(shared: &Arc<Shared>, kind: FaultKind, request: Request, next: Next) -> Response {
    match kind {
        FaultKind::Status(code) => status_fault(code),
        FaultKind::TooManyRequests { retry_after_secs } => {
            let wait = Duration::from_secs(retry_after_secs.unwrap_or(1).max(1));
            let limit = shared.faults().limit().unwrap_or(100);
            too_many(
                retry_after_secs,
                SystemTime::now() + wait,
                "jira-burst-based",
                limit,
            )
        }
        FaultKind::Reset => reset(),
        FaultKind::Truncated => truncated(authorized(shared, request, next).await).await,
        FaultKind::Slow { delay_ms } => {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            authorized(shared, request, next).await
        }
        FaultKind::Unauthorized if is_admin_api(request.uri().path()) => {
            super::admin::unauthorized()
        }
        FaultKind::Unauthorized => unauthorized(),
        FaultKind::Revoke => {
            // The token is revoked now: this request and every later one are refused.
            shared
                .revoked
                .store(true, std::sync::atomic::Ordering::Relaxed);
            unauthorized()
        }
    }
}

fn status_fault(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match code {
        502 | 504 => {
            let reason = status.canonical_reason().unwrap_or("Error");
            let page = format!(
                "<html><head><title>{code} {reason}</title></head><body><h1>{code} {reason}</h1></body></html>"
            );
            (status, [(CONTENT_TYPE, "text/html;charset=UTF-8")], page).into_response()
        }
        503 => (
            status,
            [(CONTENT_TYPE, "text/plain;charset=UTF-8")],
            "Service Unavailable",
        )
            .into_response(),
        _ => (status, error_body("Internal server error")).into_response(),
    }
}

/// A 200 whose headers promise more body than ever arrives: the body stream fails after a few
/// bytes, so the server aborts the connection and the client sees an incomplete message.
fn reset() -> Response {
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"{\"issues\":[")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated connection reset",
        )),
    ];
    let mut response = Response::new(Body::from_stream(futures::stream::iter(chunks)));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(4096));
    response
}

/// The real answer with its body cut in half and a matching `Content-Length`.
async fn truncated(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    parts.status = StatusCode::OK;
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(half.len()));
    Response::from_parts(parts, Body::from(half))
}

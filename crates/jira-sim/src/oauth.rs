//! Atlassian's side of authentication: the API gateway (`/ex/jira/{cloudId}/...`),
//! `/_edge/tenant_info`, and an OAuth 2.0 (3LO) authorization server with expiring access
//! tokens and rotating refresh tokens.
//!
//! A refresh token works once; after that it keeps working only within
//! `SimConfig::oauth_refresh_leeway` of its first use (Atlassian allows 10 minutes), then the
//! token endpoint answers 403 `invalid_grant`, as Atlassian does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::Shared;
use super::routes::Params;

/// Set on requests that arrived through the gateway: the path as sent.
#[derive(Clone)]
pub(crate) struct Gateway(pub String);

/// The authorization server's memory.
#[derive(Default)]
pub(crate) struct OAuth {
    /// Access token → when it expires.
    access: HashMap<String, Instant>,
    /// Refresh token → when it was first spent (`None` while unused).
    refresh: HashMap<String, Option<Instant>>,
    codes: Vec<String>,
    issued: u64,
    /// Successful refresh grants, for tests.
    pub refreshes: u64,
}

impl OAuth {
    pub fn new(initial_refresh_token: &str) -> OAuth {
        let mut oauth = OAuth::default();
        oauth.refresh.insert(initial_refresh_token.to_owned(), None);
        oauth
    }

    fn next(&mut self, kind: &str) -> String {
        self.issued += 1;
        let noise: u32 = rand::random();
        format!("sim-{kind}-{}-{noise:08x}", self.issued)
    }

    /// Ends every access token's life now, as if an hour had passed.
    pub fn expire_access_tokens(&mut self) {
        let now = Instant::now();
        for expiry in self.access.values_mut() {
            *expiry = now;
        }
    }
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_edge/tenant_info", get(tenant_info))
        .route("/oauth/token", post(token))
        .route(
            "/oauth/token/accessible-resources",
            get(accessible_resources),
        )
        .route("/authorize", get(authorize))
}

/// Runs before routing: `/ex/jira/{cloudId}/rest/...` becomes `/rest/...` marked [`Gateway`];
/// another cloudId gets the gateway's 404.
pub(crate) async fn gateway(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    let original = request.uri().path().to_owned();
    let Some(rest) = original.strip_prefix("/ex/jira/") else {
        return next.run(request).await;
    };
    let (cloud_id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if !cloud_id.eq_ignore_ascii_case(&shared.config.cloud_id) {
        let body = json!({"code": 404, "message": "Site not found for this cloudId"});
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    }
    let query = request
        .uri()
        .query()
        .map_or_else(String::new, |q| format!("?{q}"));
    let Ok(uri) = format!("/{tail}{query}").parse::<Uri>() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    *request.uri_mut() = uri;
    request.extensions_mut().insert(Gateway(original));
    next.run(request).await
}

/// Whether `token` is a live access token.
pub(crate) fn access_valid(shared: &Shared, token: &str) -> bool {
    shared
        .oauth()
        .access
        .get(token)
        .is_some_and(|expiry| Instant::now() < *expiry)
}

/// The gateway's answer to a missing, expired or wrong token.
pub(crate) fn gateway_unauthorized() -> Response {
    let body = json!({"code": 401, "message": "Unauthorized"});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

async fn tenant_info(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({ "cloudId": shared.config.cloud_id })).into_response()
}

fn grant_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({ "error": error, "error_description": description });
    (status, Json(body)).into_response()
}

/// `POST /oauth/token`: `authorization_code` and `refresh_token` grants, JSON or form body.
async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let fields: HashMap<String, String> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect(),
        _ => url::form_urlencoded::parse(&body).into_owned().collect(),
    };
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
    let config = &shared.config;
    if field("client_id") != config.oauth_client_id
        || field("client_secret") != config.oauth_client_secret
    {
        return grant_error(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized");
    }
    let mut oauth = shared.oauth();
    match field("grant_type") {
        "authorization_code" => {
            let code = field("code").to_owned();
            let Some(at) = oauth.codes.iter().position(|c| *c == code) else {
                return grant_error(
                    StatusCode::FORBIDDEN,
                    "invalid_grant",
                    "Invalid authorization code",
                );
            };
            oauth.codes.remove(at);
        }
        "refresh_token" => {
            let now = Instant::now();
            let leeway = config.oauth_refresh_leeway;
            match oauth.refresh.get_mut(field("refresh_token")) {
                Some(spent @ None) => *spent = Some(now),
                Some(Some(at)) if now.duration_since(*at) <= leeway => {}
                _ => {
                    return grant_error(
                        StatusCode::FORBIDDEN,
                        "invalid_grant",
                        "Unknown or invalid refresh token.",
                    );
                }
            }
            oauth.refreshes += 1;
        }
        _ => {
            return grant_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant type",
            );
        }
    }
    let access = oauth.next("access");
    let refresh = oauth.next("refresh");
    let ttl = config.oauth_access_ttl;
    oauth.access.insert(access.clone(), Instant::now() + ttl);
    oauth.refresh.insert(refresh.clone(), None);
    Json(json!({
        "access_token": access,
        "refresh_token": refresh,
        "expires_in": ttl.as_secs().max(1),
        "token_type": "Bearer",
        "scope": "read:jira-work read:jira-user manage:jira-configuration offline_access",
    }))
    .into_response()
}

async fn accessible_resources(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !access_valid(&shared, bearer) {
        return gateway_unauthorized();
    }
    Json(json!([
        {"id": "0a0b0c0d-1111-4222-8333-444455556666", "name": "other",
         "url": "https://other.atlassian.net", "scopes": ["read:jira-work"], "avatarUrl": ""},
        {"id": shared.config.cloud_id, "name": "simulated", "url": shared.base_url,
         "scopes": ["read:jira-work", "read:jira-user", "manage:jira-configuration"],
         "avatarUrl": ""},
    ]))
    .into_response()
}

/// `GET /authorize`: consent is given at once; redirects to `redirect_uri` with a code and the
/// `state`.
async fn authorize(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let params = Params::parse(uri.query().map(str::to_owned));
    if params.get("client_id") != Some(shared.config.oauth_client_id.as_str()) {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    }
    let Some(redirect) = params.get("redirect_uri") else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is required").into_response();
    };
    let mut oauth = shared.oauth();
    let code = oauth.next("code");
    oauth.codes.push(code.clone());
    let Ok(mut target) = url::Url::parse(redirect) else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is not a URL").into_response();
    };
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", params.get("state").unwrap_or_default());
    Redirect::to(target.as_str()).into_response()
}

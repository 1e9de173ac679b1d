//! The Atlassian Admin API's organization events: the polling feed
//! `/admin/v1/orgs/{orgId}/events-stream` (processing-time order, a cursor that keeps its
//! position and can be reused after the last page to poll for new events) and the filtered
//! search `/admin/v1/orgs/{orgId}/events` (newest first), with Bearer organization-key auth.
//!
//! Requests pass the same gate as `/rest` (request log, faults, rate limit), but authenticate
//! with the organization API key: anything else answers the API gateway's JSON 401. A wrong
//! organization id answers 404, a key without `read:events:admin` 403.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Shared;
use super::org::{OrgEvent, OrgView};
use super::routes::Params;

/// The largest page either endpoint serves, whatever `limit` asks for.
pub(crate) const MAX_LIMIT: usize = 500;
const DEFAULT_LIMIT: usize = 100;

type Answer = Result<Response, Failure>;

/// An Admin API error answer: `{"errors":[{"status","title","detail"}]}`.
pub(crate) struct Failure {
    status: StatusCode,
    detail: String,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let error = json!({"status": self.status.as_str(), "title": title, "detail": self.detail});
        (self.status, Json(json!({ "errors": [error] }))).into_response()
    }
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin/v1/orgs/{org_id}/events-stream", get(events_stream))
        .route("/admin/v1/orgs/{org_id}/events", get(events))
}

/// Whether the request carries the organization API key as a Bearer token.
pub(crate) fn authenticates(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (scheme, key) = value.trim().split_once(' ').unwrap_or((value, ""));
    scheme.eq_ignore_ascii_case("bearer") && key.trim() == shared.config.org_api_key
}

/// The API gateway's answer to a missing or wrong key (a site token included).
pub(crate) fn unauthorized() -> Response {
    let body = json!({"code": 401, "message": "Unauthorized"});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

fn failure(status: StatusCode, detail: &str) -> Failure {
    Failure {
        status,
        detail: detail.to_owned(),
    }
}

fn bad_request(detail: String) -> Failure {
    Failure {
        status: StatusCode::BAD_REQUEST,
        detail,
    }
}

/// 404 for another organization, 403 when the key lacks the scope.
fn check_org(shared: &Shared, org_id: &str) -> Result<(), Failure> {
    if org_id != shared.config.org_id {
        return Err(failure(StatusCode::NOT_FOUND, "Organization not found"));
    }
    if !shared.org().scope_granted {
        return Err(failure(
            StatusCode::FORBIDDEN,
            "The API key does not have the read:events:admin scope",
        ));
    }
    Ok(())
}

fn limit(params: &Params) -> Result<usize, Failure> {
    let limit = params
        .int("limit", DEFAULT_LIMIT as i64)
        .map_err(|_| bad_request("limit must be a number".to_owned()))?;
    if limit < 1 {
        return Err(bad_request("limit must be at least 1".to_owned()));
    }
    Ok(usize::try_from(limit).unwrap_or(MAX_LIMIT).min(MAX_LIMIT))
}

fn epoch_ms(params: &Params, name: &str) -> Result<Option<i64>, Failure> {
    match params.get(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| bad_request(format!("{name} must be a UNIX epoch time in milliseconds"))),
    }
}

fn encode<T: Serialize>(cursor: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, Failure> {
    URL_SAFE_NO_PAD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| bad_request("Invalid cursor".to_owned()))
}

/// The feed's cursor: the sort order, the lower bound on event time, and the position in
/// processing order (ascending: the next index; descending: one past the next index).
#[derive(Serialize, Deserialize)]
struct StreamCursor {
    desc: bool,
    from: Option<i64>,
    pos: usize,
}

/// A page of either endpoint: the events, the cursor of the next page if there is one, and the
/// links (`next` repeats the request's parameters with that cursor).
fn page(
    shared: &Shared,
    path: &str,
    params: &Params,
    data: Vec<Value>,
    next: Option<String>,
) -> Response {
    let mut links = json!({"self": format!("{}{path}", shared.base_url)});
    if let Some(next) = &next {
        links["next"] = json!(format!(
            "{}{path}?{}",
            shared.base_url,
            params.with("cursor", next)
        ));
    }
    let body = json!({
        "data": data,
        "meta": {"next": next, "page_size": data.len()},
        "links": links,
    });
    Json(body).into_response()
}

async fn events_stream(
    State(shared): State<Arc<Shared>>,
    Path(org_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Answer {
    check_org(&shared, &org_id)?;
    let params = Params::parse(raw);
    let limit = limit(&params)?;
    let to = epoch_ms(&params, "to")?;
    let org = shared.org();
    let cursor = match params.get("cursor").filter(|c| !c.is_empty()) {
        Some(text) => decode::<StreamCursor>(text)?,
        None => {
            let desc = match params.get("sortOrder").unwrap_or("asc") {
                "asc" => false,
                "desc" => true,
                other => return Err(bad_request(format!("Invalid sortOrder: {other}"))),
            };
            let from = epoch_ms(&params, "from")?;
            let pos = if desc { org.events.len() } else { 0 };
            StreamCursor { desc, from, pos }
        }
    };
    let wanted = |e: &OrgEvent| {
        cursor.from.is_none_or(|f| e.time_ms >= f) && to.is_none_or(|t| e.time_ms <= t)
    };
    let mut picked: Vec<&OrgEvent> = Vec::new();
    let mut pos = cursor.pos.min(org.events.len());
    while picked.len() < limit {
        let index = match cursor.desc {
            false if pos < org.events.len() => pos,
            true if pos > 0 => pos - 1,
            _ => break,
        };
        pos = if cursor.desc { index } else { index + 1 };
        if wanted(&org.events[index]) {
            picked.push(&org.events[index]);
        }
    }
    let site = shared.site();
    let view = OrgView {
        users: &site.users,
        org_id: &org_id,
        base: &shared.base_url,
    };
    let data: Vec<Value> = picked.iter().map(|e| view.render(e, true)).collect();
    // Ascending, the cursor always comes back: reused after the last page it finds new events.
    let next = (!cursor.desc || pos > 0).then(|| encode(&StreamCursor { pos, ..cursor }));
    let path = format!("/admin/v1/orgs/{org_id}/events-stream");
    Ok(page(&shared, &path, &params, data, next))
}

#[derive(Serialize, Deserialize)]
struct SearchCursor {
    offset: usize,
}

/// Whether a rendered event passes the `/events` filters (each list: any of its values).
fn matches(event: &Value, product: Option<&str>, params: &Params) -> bool {
    let attr = |path: &str| event.pointer(path).and_then(Value::as_str).unwrap_or("");
    let any = |name: &str, value: &str| {
        let wanted = params.list(name);
        wanted.is_empty() || wanted.iter().any(|w| w.eq_ignore_ascii_case(value))
    };
    let text = params.get("q").map(str::to_lowercase).unwrap_or_default();
    let message = attr("/message/content").to_lowercase();
    any("action", attr("/attributes/action"))
        && any("actor", attr("/attributes/actor/id"))
        && any("ip", attr("/attributes/location/ip"))
        && any("product", product.unwrap_or(""))
        && (text.is_empty() || message.contains(&text))
}

async fn events(
    State(shared): State<Arc<Shared>>,
    Path(org_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Answer {
    check_org(&shared, &org_id)?;
    let params = Params::parse(raw);
    let limit = limit(&params)?;
    let (from, to) = (epoch_ms(&params, "from")?, epoch_ms(&params, "to")?);
    let offset = match params.get("cursor").filter(|c| !c.is_empty()) {
        Some(text) => decode::<SearchCursor>(text)?.offset,
        None => 0,
    };
    let org = shared.org();
    let site = shared.site();
    let view = OrgView {
        users: &site.users,
        org_id: &org_id,
        base: &shared.base_url,
    };
    let mut chosen: Vec<&OrgEvent> = org
        .events
        .iter()
        .filter(|e| from.is_none_or(|f| e.time_ms >= f) && to.is_none_or(|t| e.time_ms <= t))
        .collect();
    chosen.sort_by_key(|e| std::cmp::Reverse((e.time_ms, e.processed_ms)));
    let found: Vec<Value> = chosen
        .iter()
        .map(|e| (view.render(e, false), e.product()))
        .filter(|(event, product)| matches(event, *product, &params))
        .map(|(event, _)| event)
        .collect();
    let data: Vec<Value> = found.iter().skip(offset).take(limit).cloned().collect();
    let end = offset + data.len();
    let next = (end < found.len()).then(|| encode(&SearchCursor { offset: end }));
    let path = format!("/admin/v1/orgs/{org_id}/events");
    Ok(page(&shared, &path, &params, data, next))
}

/// Appends an event processed now and returns its id (the control API and the handle).
pub(crate) fn append_event(shared: &Shared) -> String {
    let users = shared.site().users.len();
    let now = shared.now_ms();
    shared.org().append(users, now)
}

#[cfg(test)]
mod tests {
    use super::super::{SimConfig, Simulator};
    use serde_json::Value;

    struct Api {
        sim: Simulator,
        http: reqwest::Client,
    }

    impl Api {
        async fn start(org_events: usize) -> Api {
            let config = SimConfig {
                org_events,
                ..SimConfig::small()
            };
            let sim = Simulator::start(config).await.expect("simulator starts");
            Api {
                sim,
                http: reqwest::Client::new(),
            }
        }

        /// GET `path?query` with `key`: the status and the JSON body.
        async fn get_as(&self, key: &str, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
            let url = format!("{}{path}", self.sim.base_url());
            let response = self
                .http
                .get(url)
                .bearer_auth(key)
                .query(query)
                .send()
                .await
                .expect("response");
            let status = response.status().as_u16();
            (status, response.json().await.expect("JSON body"))
        }

        async fn get(&self, what: &str, query: &[(&str, &str)]) -> (u16, Value) {
            let config = self.sim.config();
            let path = format!("/admin/v1/orgs/{}/{what}", config.org_id);
            self.get_as(&config.org_api_key, &path, query).await
        }
    }

    fn ids(page: &Value) -> Vec<String> {
        let data = page["data"].as_array().cloned().unwrap_or_default();
        data.iter()
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect()
    }

    #[tokio::test]
    async fn keys_and_organizations_are_checked_like_the_gateway_does() {
        let api = Api::start(10).await;
        let path = format!("/admin/v1/orgs/{}/events-stream", api.sim.config().org_id);
        let site_token = api.sim.config().api_token.clone();
        let (status, body) = api.get_as(&site_token, &path, &[]).await;
        assert_eq!(
            (status, body),
            (
                401,
                serde_json::json!({"code": 401, "message": "Unauthorized"})
            )
        );
        let other = "/admin/v1/orgs/0f0e0d0c-0b0a-4909-8807-060504030201/events-stream";
        let (status, _) = api.get_as(&api.sim.config().org_api_key, other, &[]).await;
        assert_eq!(status, 404);
        api.sim.set_org_key_scope(false);
        assert_eq!(api.get("events", &[]).await.0, 403);
        assert_eq!(
            api.sim.request_count("/admin/"),
            3,
            "admin requests are logged"
        );
    }

    #[tokio::test]
    async fn the_feed_caps_pages_filters_by_time_and_its_cursor_polls_for_new_events() {
        let api = Api::start(600).await;
        let truth = api.sim.truth().org_event_ids;
        let (status, first) = api.get("events-stream", &[("limit", "1000")]).await;
        assert_eq!(status, 200);
        assert_eq!(
            ids(&first),
            truth[..super::MAX_LIMIT].to_vec(),
            "processing order, capped"
        );
        let next = first["meta"]["next"].as_str().expect("a cursor").to_owned();
        let (_, second) = api
            .get("events-stream", &[("cursor", &next), ("limit", "500")])
            .await;
        assert_eq!(ids(&second), truth[super::MAX_LIMIT..].to_vec());
        let last = second["meta"]["next"]
            .as_str()
            .expect("a cursor at the end")
            .to_owned();
        let (_, empty) = api.get("events-stream", &[("cursor", &last)]).await;
        assert!(ids(&empty).is_empty());
        assert_eq!(
            empty["meta"]["next"].as_str(),
            Some(last.as_str()),
            "the cursor stays put"
        );
        let added = api.sim.add_org_event();
        let (_, polled) = api.get("events-stream", &[("cursor", &last)]).await;
        assert_eq!(ids(&polled), vec![added]);

        let (_, recent) = api.get("events-stream", &[("from", "1767000000000")]).await;
        let times: Vec<&str> = recent["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|e| e["attributes"]["time"].as_str())
            .collect();
        assert!(
            !times.is_empty() && times.iter().all(|t| *t >= "2025-12-29T09:20"),
            "{times:?}"
        );
        let (_, desc) = api
            .get("events-stream", &[("sortOrder", "desc"), ("limit", "3")])
            .await;
        assert_eq!(ids(&desc)[0], api.sim.truth().org_event_ids[600]);
        assert_eq!(
            api.get("events-stream", &[("cursor", "bogus")]).await.0,
            400
        );
        assert_eq!(api.get("events-stream", &[("limit", "0")]).await.0, 400);
    }

    #[tokio::test]
    async fn the_control_api_appends_events_in_processing_order() {
        let api = Api::start(5).await;
        let url = format!("{}/__sim/org-events", api.sim.base_url());
        let one = api.http.post(&url).send().await.expect("response");
        assert_eq!(one.status().as_u16(), 201);
        let body = serde_json::json!({"count": 3});
        let three: Value = api
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("response")
            .json()
            .await
            .expect("JSON");
        let truth = api.sim.truth().org_event_ids;
        assert_eq!(truth.len(), 9);
        assert_eq!(three["ids"], serde_json::json!(truth[6..]));
    }

    #[tokio::test]
    async fn the_search_filters_by_product_and_action_newest_first_and_pages_to_an_end() {
        let api = Api::start(300).await;
        let (_, jira) = api
            .get("events", &[("product", "jira"), ("limit", "500")])
            .await;
        let events = jira["data"].as_array().expect("data").clone();
        assert!(!events.is_empty() && events.len() < 300);
        let times: Vec<&str> = events
            .iter()
            .filter_map(|e| e["attributes"]["time"].as_str())
            .collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
        assert!(
            events
                .iter()
                .all(|e| e["attributes"].get("processedAt").is_none())
        );
        assert!(jira["meta"]["next"].is_null());
        let (_, logins) = api
            .get("events", &[("action", "user_login"), ("limit", "5")])
            .await;
        assert_eq!(ids(&logins).len(), 5);
        let next = logins["meta"]["next"]
            .as_str()
            .expect("more logins")
            .to_owned();
        let (_, more) = api
            .get("events", &[("action", "user_login"), ("cursor", &next)])
            .await;
        assert!(ids(&more).iter().all(|id| !ids(&logins).contains(id)));
    }
}

//! The Jira REST endpoints other than search: identity, permissions, projects, fields, users,
//! audit, the removed legacy search, and the not-found answers.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::catalog::{ANCHOR_MS, PERMISSIONS};
use super::fields::all_fields;
use super::render::Ctx;
use super::site::Site;
use super::{Shared, admin, agile, control, dc, gate, groups, oauth, reference, search, work};
use crate::time::parse_jira_timestamp;

pub(crate) type Reply = Result<Response, ApiError>;

/// A Jira error answer: a status and one message, rendered as an ErrorCollection.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, &self.message)
    }
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        // Cloud serves version 2 of these as well; Data Center serves only version 2.
        .route("/rest/api/{version}/myself", get(myself))
        .route("/rest/api/{version}/serverInfo", get(server_info))
        .route("/rest/api/{version}/mypermissions", get(my_permissions))
        .route("/rest/api/{version}/project/search", get(project_search))
        .route("/rest/api/{version}/project", get(dc::project_list))
        .route("/rest/api/{version}/user/search", get(dc::user_search))
        .route("/rest/api/{version}/user", get(dc::user_get))
        .route("/rest/api/{version}/field", get(fields))
        .route("/rest/api/{version}/users/search", get(users))
        .route("/rest/api/{version}/users", get(users))
        .route("/rest/api/3/auditing/record", get(audit))
        .route("/rest/api/2/auditing/record", get(audit))
        .route(
            "/rest/api/3/search/jql",
            get(search::search_get).post(search::search_post),
        )
        .route(
            "/rest/api/3/search/approximate-count",
            post(search::approximate_count),
        )
        .route("/rest/api/3/issue/bulkfetch", post(search::bulkfetch))
        .route("/rest/api/3/issue/{id_or_key}", get(search::issue))
        .route(
            "/rest/api/3/issue/{id_or_key}/comment",
            get(work::issue_comments),
        )
        .route(
            "/rest/api/3/issue/{id_or_key}/worklog",
            get(work::issue_worklogs),
        )
        .route(
            "/rest/api/3/issue/{id_or_key}/changelog",
            get(work::issue_changelog),
        )
        .route(
            "/rest/api/3/changelog/bulkfetch",
            post(work::bulk_changelog),
        )
        .route("/rest/api/3/worklog/updated", get(work::worklogs_updated))
        .route("/rest/api/3/worklog/deleted", get(work::worklogs_deleted))
        .route("/rest/api/3/worklog/list", post(work::worklog_list))
        .route("/rest/api/2/issue/{id_or_key}", get(search::issue))
        .route(
            "/rest/api/{version}/search",
            get(legacy_search).post(legacy_search),
        )
        .merge(reference::router())
        .merge(groups::router())
        .merge(agile::router())
        .merge(control::router())
        .merge(admin::router())
        .merge(oauth::router())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            gate::gate,
        ))
        .with_state(shared)
}

/// The body of Jira's ErrorCollection with one message.
pub(crate) fn error_body(message: &str) -> Json<Value> {
    Json(json!({ "errorMessages": [message], "errors": {} }))
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, error_body(message)).into_response()
}

pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// Decoded query parameters, keeping repeats and order.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<String>) -> Params {
        let raw = raw.unwrap_or_default();
        Params(
            url::form_urlencoded::parse(raw.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter, each also split at commas.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// `list` as owned strings, for values kept past the parameters (`expand`, `fields`).
    pub fn owned_list(&self, name: &str) -> Vec<String> {
        self.list(name).into_iter().map(str::to_owned).collect()
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(name).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| {
                bad_request(format!(
                    "The value '{text}' is not valid for the parameter '{name}'."
                ))
            }),
        }
    }

    /// The same parameters with `name` set to `value`, encoded for a `nextPage` link.
    pub fn with(&self, name: &str, value: &str) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.0.iter().filter(|(k, _)| k != name) {
            out.append_pair(k, v);
        }
        out.append_pair(name, value);
        out.finish()
    }
}

/// `/myself`: the API user (user 0) in the site's user shape, with its zone and address.
async fn myself(State(shared): State<Arc<Shared>>) -> Response {
    let site = shared.site();
    let ctx = Ctx::new(&shared, &site);
    let mut user = if shared.config.data_center {
        ctx.dc_user(0)
    } else {
        ctx.user(0)
    };
    user["timeZone"] = json!(shared.user_zone_name());
    user["emailAddress"] = json!(shared.config.email);
    user["locale"] = json!("en_US");
    user["groups"] = json!({"size": 2, "items": []});
    user["applicationRoles"] = json!({"size": 1, "items": []});
    user["expand"] = json!("groups,applicationRoles");
    Json(user).into_response()
}

async fn server_info(State(shared): State<Arc<Shared>>) -> Response {
    let site = shared.site();
    let ctx = Ctx::new(&shared, &site);
    Json(json!({
        "baseUrl": shared.base_url,
        "displayUrl": shared.base_url,
        "version": "1001.0.0-SNAPSHOT",
        "versionNumbers": [1001, 0, 0],
        "deploymentType": if shared.config.data_center { "DataCenter" } else { "Cloud" },
        "buildNumber": 100_289,
        "buildDate": ctx.timestamp(ANCHOR_MS - 86_400_000),
        "serverTime": ctx.timestamp(shared.now_ms()),
        "serverTimeZone": shared.config.site_time_zone,
        "scmInfo": "57a0ca5b4a0bb0ac5f3fee4764acb1c14e4d7e71",
        "serverTitle": "Jira",
        "defaultLocale": {"locale": "en_US"},
    }))
    .into_response()
}

async fn my_permissions(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Reply {
    let params = Params::parse(raw);
    let keys = params.list("permissions");
    if keys.is_empty() {
        return Err(bad_request(
            "The 'permissions' query parameter is required.",
        ));
    }
    let admin = shared.is_admin();
    let mut permissions = serde_json::Map::new();
    for key in keys {
        let Some(p) = PERMISSIONS.iter().find(|p| p.key == key) else {
            return Err(bad_request(format!(
                "The permission key '{key}' is not valid."
            )));
        };
        permissions.insert(
            p.key.to_owned(),
            json!({"id": p.id, "key": p.key, "name": p.name, "type": p.kind,
                   "description": format!("Holds the '{}' permission.", p.name),
                   "havePermission": admin || !p.admin_only}),
        );
    }
    Ok(Json(json!({ "permissions": permissions })).into_response())
}

/// The projects a `/project/search` request selects, in the requested order.
fn select_projects(site: &Site, params: &Params) -> Result<Vec<usize>, ApiError> {
    let mut statuses = params.list("status");
    if statuses.is_empty() {
        statuses.push("live");
    }
    if let Some(bad) = statuses
        .iter()
        .find(|s| !matches!(**s, "live" | "archived" | "deleted"))
    {
        return Err(bad_request(format!("Invalid project status: {bad}.")));
    }
    let keys = params.list("keys");
    let ids = params.list("id");
    let query = params.get("query").map(str::to_lowercase);
    let mut chosen: Vec<usize> = (0..site.projects.len())
        .filter(|&i| {
            let p = &site.projects[i];
            let status = if p.archived_ms.is_some() {
                "archived"
            } else {
                "live"
            };
            statuses.contains(&status)
                && (keys.is_empty() || keys.iter().any(|k| k.eq_ignore_ascii_case(&p.key)))
                && (ids.is_empty() || ids.contains(&p.id.to_string().as_str()))
                && query.as_ref().is_none_or(|q| {
                    p.key.to_lowercase().contains(q) || p.name.to_lowercase().contains(q)
                })
        })
        .collect();
    let order = params.get("orderBy").unwrap_or("key");
    let by_name = order.trim_start_matches(['+', '-']) == "name";
    chosen.sort_by(|&a, &b| {
        let (a, b) = (&site.projects[a], &site.projects[b]);
        if by_name {
            a.name.cmp(&b.name)
        } else {
            a.key.cmp(&b.key)
        }
    });
    if order.starts_with('-') {
        chosen.reverse();
    }
    Ok(chosen)
}

async fn project_search(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Reply {
    let params = Params::parse(raw);
    let start = params.int("startAt", 0)?.max(0) as usize;
    let max = params.int("maxResults", 50)?.clamp(1, 100) as usize;
    let expand: Vec<String> = params.owned_list("expand");
    let site = shared.site();
    let chosen = select_projects(&site, &params)?;
    let insight = insight(&site);
    let ctx = Ctx::new(&shared, &site);
    let total = chosen.len();
    let values: Vec<Value> = chosen
        .iter()
        .skip(start)
        .take(max)
        .map(|&i| ctx.project(i, &expand, insight[i]))
        .collect();
    let path = format!("{}/rest/api/3/project/search", shared.base_url);
    let is_last = start + values.len() >= total;
    // The lie: a total far beyond the projects there are, and no page but an empty one last.
    let (total, is_last) = match shared.lies().project_total {
        Some(claimed) => (claimed, values.is_empty()),
        None => (total, is_last),
    };
    let mut page = json!({
        "self": format!("{path}?{}", params.with("startAt", &start.to_string())),
        "maxResults": max, "startAt": start, "total": total, "isLast": is_last, "values": values,
    });
    if !is_last {
        let next = params.with("startAt", &(start + max).to_string());
        page["nextPage"] = json!(format!("{path}?{next}"));
    }
    Ok(Json(page).into_response())
}

/// Per project: how many issues it holds and when one was last updated.
fn insight(site: &Site) -> Vec<(usize, Option<i64>)> {
    let mut out = vec![(0, None); site.projects.len()];
    for issue in site.issues.iter().filter(|i| !i.deleted) {
        let entry: &mut (usize, Option<i64>) = &mut out[issue.project];
        entry.0 += 1;
        entry.1 = Some(
            entry
                .1
                .map_or(issue.updated_ms, |t: i64| t.max(issue.updated_ms)),
        );
    }
    out
}

async fn fields(State(shared): State<Arc<Shared>>) -> Response {
    let heavy = shared.site().heavy;
    Json(all_fields(heavy).map(|f| f.details()).collect::<Vec<_>>()).into_response()
}

/// A 403 with `message` unless the account is an administrator (who holds every global
/// permission here).
pub(crate) fn admin_or_forbidden(shared: &Shared, message: &str) -> Result<(), ApiError> {
    if shared.is_admin() {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, message))
    }
}

async fn users(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Reply {
    admin_or_forbidden(
        &shared,
        "You do not have the 'Browse users and groups' permission required to view users.",
    )?;
    let params = Params::parse(raw);
    let start = params.int("startAt", 0)?.max(0) as usize;
    let max = match params.int("maxResults", 50)? {
        m if m <= 0 => 50,
        m => m.min(1000) as usize,
    };
    let site = shared.site();
    let ctx = Ctx::new(&shared, &site);
    let end = (start + max).min(site.users.len());
    let users: Vec<Value> = (start.min(end)..end).map(|i| ctx.user(i as u32)).collect();
    Ok(Json(users).into_response())
}

async fn audit(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Reply {
    admin_or_forbidden(
        &shared,
        "You do not have permission to view the audit log. Administer Jira permission is required.",
    )?;
    let params = Params::parse(raw);
    let offset = params.int("offset", 0)?.max(0) as usize;
    let limit = match params.int("limit", 1000)? {
        l if l <= 0 || l > 1000 => 1000,
        l => l as usize,
    };
    let bound = |name: &str| -> Result<Option<i64>, ApiError> {
        match params.get(name).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(text) => parse_jira_timestamp(text)
                .map(|t| Some(t.timestamp_millis()))
                .ok_or_else(|| {
                    bad_request(format!(
                        "The '{name}' date '{text}' is not a valid ISO 8601 date-time."
                    ))
                }),
        }
    };
    let (from, to) = (bound("from")?, bound("to")?);
    let terms: Vec<String> = params
        .get("filter")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    let site = shared.site();
    let ctx = Ctx::new(&shared, &site);
    let window =
        site.audit.iter().rev().filter(|r| {
            from.is_none_or(|f| r.created_ms >= f) && to.is_none_or(|t| r.created_ms <= t)
        });
    let records: Vec<Value> = if terms.is_empty() {
        window
            .skip(offset)
            .take(limit)
            .map(|r| ctx.audit_record(r))
            .collect()
    } else {
        // Matching against the rendered record covers every field the filter applies to.
        window
            .map(|r| ctx.audit_record(r))
            .filter(|r| {
                let text = r.to_string().to_lowercase();
                terms.iter().all(|t| text.contains(t))
            })
            .skip(offset)
            .take(limit)
            .collect()
    };
    Ok(Json(
        json!({ "offset": offset, "limit": limit, "total": site.audit.len(), "records": records }),
    )
    .into_response())
}

async fn legacy_search(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
    body: axum::body::Bytes,
) -> Reply {
    if shared.config.data_center {
        return search::data_center_search(&shared, &Params::parse(raw), &body);
    }
    Ok(error(
        StatusCode::GONE,
        "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046",
    ))
}

/// Unknown `/rest` paths get an ErrorCollection; anything else gets the site's HTML 404 page.
async fn not_found(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/rest/") || path.starts_with("/__sim/") {
        return error(
            StatusCode::NOT_FOUND,
            &format!("null for uri: {method} {path}"),
        );
    }
    let page = "<!DOCTYPE html><html><head><title>Page not found - Jira</title></head>\
                <body><h1>Oops, you've found a dead link.</h1></body></html>";
    (
        StatusCode::NOT_FOUND,
        [(CONTENT_TYPE, "text/html;charset=UTF-8")],
        page,
    )
        .into_response()
}

//! Issue search and retrieval: `/search/jql`, the approximate count, bulkfetch and GET issue.
//!
//! Search pages are evaluated against the current data on every call, as in Jira: the
//! `nextPageToken` carries only an offset and a hash of the JQL, so an issue updated while a
//! client pages through `ORDER BY updated` moves to the end of the result.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::Shared;
use super::data::Issue;
use super::fields::{FieldSel, names_and_schema};
use super::jql::{self, UNBOUNDED};
use super::render::Ctx;
use super::routes::{ApiError, Params, Reply, bad_request};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SearchBody {
    jql: Option<String>,
    next_page_token: Option<String>,
    max_results: Option<i64>,
    fields: Option<Vec<String>>,
    expand: Option<Value>,
    reconcile_issues: Option<Vec<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct BulkBody {
    issue_ids_or_keys: Option<Vec<Value>>,
    fields: Option<Vec<String>>,
}

struct SearchRequest {
    jql: String,
    token: Option<String>,
    max: Option<i64>,
    fields: Vec<String>,
    expand: Vec<String>,
    reconcile: Vec<i64>,
}

fn parse_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|_| {
        bad_request("Invalid request payload. Refer to the REST API documentation and try again.")
    })
}

/// `expand` arrives as a comma string (search) or a list (bulkfetch); accept both.
fn expand_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s.split(',').map(|e| e.trim().to_owned()).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) async fn search_get(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> Reply {
    let params = Params::parse(raw);
    let max = match params.get("maxResults") {
        None => None,
        Some(_) => Some(params.int("maxResults", 50)?),
    };
    let reconcile = params
        .list("reconcileIssues")
        .iter()
        .map(|v| {
            v.parse().map_err(|_| {
                bad_request(format!("The issue id '{v}' in reconcileIssues is invalid."))
            })
        })
        .collect::<Result<Vec<i64>, _>>()?;
    search(
        &shared,
        SearchRequest {
            jql: params.get("jql").unwrap_or_default().to_owned(),
            token: params.get("nextPageToken").map(str::to_owned),
            max,
            fields: params.owned_list("fields"),
            expand: params.owned_list("expand"),
            reconcile,
        },
    )
}

pub(crate) async fn search_post(State(shared): State<Arc<Shared>>, body: Bytes) -> Reply {
    let body: SearchBody = parse_body(&body)?;
    let jql = body.jql.unwrap_or_default();
    shared.searches().push(jql.clone());
    search(
        &shared,
        SearchRequest {
            jql,
            token: body.next_page_token,
            max: body.max_results,
            fields: body.fields.unwrap_or_default(),
            expand: expand_list(body.expand.as_ref()),
            reconcile: body.reconcile_issues.unwrap_or_default(),
        },
    )
}

/// FNV-1a of the trimmed JQL, so a token can be checked against the query it came from.
fn query_hash(jql: &str) -> String {
    let hash = jql.trim().bytes().fold(0xCBF2_9CE4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    });
    format!("{hash:016x}")
}

fn encode_token(offset: usize, jql: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({ "o": offset, "q": query_hash(jql) }).to_string())
}

fn decode_token(token: &str, jql: &str) -> Result<usize, ApiError> {
    let invalid = || bad_request("The provided next page token is invalid or expired.");
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if value["q"].as_str() != Some(query_hash(jql).as_str()) {
        return Err(invalid());
    }
    value["o"]
        .as_u64()
        .and_then(|o| usize::try_from(o).ok())
        .ok_or_else(invalid)
}

/// Every issue search shows for `jql` now, sorted by its `ORDER BY`.
fn matching<'a>(
    shared: &Shared,
    site: &'a super::site::Site,
    jql_text: &str,
    reconcile: &[i64],
) -> Result<Vec<&'a Issue>, ApiError> {
    let query = jql::parse(jql_text).map_err(|e| bad_request(e.0))?;
    let Some(filter) = &query.filter else {
        return Err(bad_request(UNBOUNDED));
    };
    let now = shared.now_ms();
    let pred = jql::compile(filter, site, shared.user_tz(), now).map_err(|e| bad_request(e.0))?;
    let mut hits: Vec<&Issue> = site
        .issues
        .iter()
        .filter_map(|issue| site.search_view(issue, now, reconcile))
        .filter(|view| pred.matches(view))
        .collect();
    jql::sort(&mut hits, &query.order, site);
    Ok(hits)
}

fn search(shared: &Shared, request: SearchRequest) -> Reply {
    let sel = FieldSel::parse(request.fields.iter().map(String::as_str), "id");
    // Pages of ids or keys alone may hold 5000; with any other field 100 at most.
    let cap = if sel.is_narrow() { 5000 } else { 100 };
    let max = request.max.unwrap_or(50).clamp(1, cap) as usize;
    let offset = match &request.token {
        Some(token) => decode_token(token, &request.jql)?,
        None => 0,
    };
    let site = shared.site();
    let hits = matching(shared, &site, &request.jql, &request.reconcile)?;
    let ctx = Ctx::new(shared, &site);
    let sel_key = super::rendered::fingerprint(&sel);
    let issues: Vec<Box<RawValue>> = hits
        .iter()
        .skip(offset)
        .take(max)
        .map(|i| shared.rendered_issue(&ctx, i, &sel, sel_key))
        .collect();
    let served: Vec<i64> = hits.iter().skip(offset).take(max).map(|i| i.id).collect();
    let is_last = offset + issues.len() >= hits.len();
    let heavy = site.heavy;
    drop(hits);
    drop(site);
    if !sel.is_listing() {
        shared.after_scan_page(&request.jql, &served);
    }
    let mut extra = json!({});
    add_names_and_schema(&mut extra, &request.expand, heavy);
    let next_page_token = match (&request.token, shared.lies().repeat_page_token) {
        (Some(sent), true) => Some(sent.clone()),
        _ => (!is_last).then(|| encode_token(offset + max, &request.jql)),
    };
    let is_last = is_last && next_page_token.is_none();
    let page = SearchPage {
        issues,
        is_last,
        next_page_token,
        names: extra.get("names").cloned(),
        schema: extra.get("schema").cloned(),
    };
    Ok(Json(page).into_response())
}

/// A page of `POST /rest/api/3/search/jql`; the issues come as rendered JSON.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SearchPage {
    issues: Vec<Box<RawValue>>,
    is_last: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    names: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<Value>,
}

fn add_names_and_schema(target: &mut Value, expand: &[String], heavy: bool) {
    let (names, schema) = names_and_schema(heavy);
    if expand.iter().any(|e| e == "names") {
        target["names"] = names;
    }
    if expand.iter().any(|e| e == "schema") {
        target["schema"] = schema;
    }
}

pub(crate) async fn approximate_count(State(shared): State<Arc<Shared>>, body: Bytes) -> Reply {
    let body: SearchBody = parse_body(&body)?;
    let site = shared.site();
    let hits = matching(&shared, &site, body.jql.as_deref().unwrap_or_default(), &[])?;
    Ok(Json(json!({ "count": hits.len() })).into_response())
}

/// Fetches up to 100 issues by id or key (former keys of moved issues included), in ascending
/// id order; missing and deleted issues are left out without an error, as Jira does.
pub(crate) async fn bulkfetch(State(shared): State<Arc<Shared>>, body: Bytes) -> Reply {
    let body: BulkBody = parse_body(&body)?;
    let wanted = body.issue_ids_or_keys.unwrap_or_default();
    if wanted.is_empty() {
        return Err(bad_request(
            "At least one issue ID or key is required in issueIdsOrKeys.",
        ));
    }
    if wanted.len() > 100 {
        return Err(bad_request(
            "The number of issue IDs or keys is limited to 100.",
        ));
    }
    let sel = FieldSel::parse(
        body.fields.iter().flatten().map(String::as_str),
        "*navigable",
    );
    let site = shared.site();
    let mut ids: Vec<i64> = wanted
        .iter()
        .filter_map(|v| match v {
            Value::String(s) => site.resolve(s),
            Value::Number(n) => site.resolve(&n.to_string()),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if shared.lies().bulkfetch_without_issues {
        return Ok(Json(json!({})).into_response());
    }
    let ctx = Ctx::new(&shared, &site);
    let sel_key = super::rendered::fingerprint(&sel);
    let issues: Vec<Box<RawValue>> = ids
        .iter()
        .filter_map(|&id| site.issue(id))
        .map(|i| shared.rendered_issue(&ctx, i, &sel, sel_key))
        .collect();
    // Serialized as it was rendered: a `Value` would parse it again, and a poisoned issue is
    // deeper than `serde_json` parses.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct BulkFetch {
        issues: Vec<Box<RawValue>>,
        issue_errors: [(); 0],
    }
    Ok(Json(BulkFetch {
        issues,
        issue_errors: [],
    })
    .into_response())
}

pub(crate) async fn issue(
    State(shared): State<Arc<Shared>>,
    Path(id_or_key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Reply {
    let params = Params::parse(raw);
    let sel = FieldSel::parse(params.list("fields"), "*all");
    let site = shared.site();
    let Some(issue) = site.resolve(&id_or_key).and_then(|id| site.issue(id)) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Issue does not exist or you do not have permission to see it.",
        ));
    };
    let ctx = Ctx::new(&shared, &site);
    let mut value = ctx.issue(issue, &sel);
    let expand: Vec<String> = params.owned_list("expand");
    add_names_and_schema(&mut value, &expand, site.heavy);
    Ok(Json(value).into_response())
}

/// Data Center's `/rest/api/2/search` (GET or POST): `startAt` paging with a `total`, the
/// page recomputed on every call like `/search/jql`. The query is validated unless
/// `validateQuery` is false: an issue id or key that does not exist is then a 400, where Cloud
/// simply matches nothing.
pub(crate) fn data_center_search(shared: &Shared, params: &Params, body: &Bytes) -> Reply {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct LegacyBody {
        jql: Option<String>,
        start_at: Option<i64>,
        max_results: Option<i64>,
        fields: Option<Vec<String>>,
        validate_query: Option<bool>,
    }
    let body: LegacyBody = parse_body(body)?;
    let jql = body
        .jql
        .or_else(|| params.get("jql").map(str::to_owned))
        .unwrap_or_default();
    let validate = body
        .validate_query
        .unwrap_or_else(|| params.get("validateQuery") != Some("false"));
    if validate
        && let Ok(query) = jql::parse(&jql)
        && let Some(filter) = &query.filter
        && let Some(missing) = jql::missing_issue(filter, &shared.site())
    {
        return Err(bad_request(format!(
            "An issue with key '{missing}' does not exist for field 'id'."
        )));
    }
    let start = body.start_at.unwrap_or(params.int("startAt", 0)?).max(0) as usize;
    let fields = body.fields.unwrap_or_else(|| params.owned_list("fields"));
    let sel = FieldSel::parse(fields.iter().map(String::as_str), "id");
    let full_cap = shared.config.dc_search_max.map_or(100, |m| m.max(1) as i64);
    let cap = if sel.is_listing() { 1000 } else { full_cap };
    let max = body
        .max_results
        .unwrap_or(params.int("maxResults", 50)?)
        .clamp(1, cap) as usize;
    let site = shared.site();
    let hits = matching(shared, &site, &jql, &[])?;
    let ctx = Ctx::new(shared, &site);
    let issues: Vec<Value> = hits
        .iter()
        .skip(start)
        .take(max)
        .map(|i| ctx.issue(i, &sel))
        .collect();
    let served: Vec<i64> = hits.iter().skip(start).take(max).map(|i| i.id).collect();
    let page =
        json!({ "startAt": start, "maxResults": max, "total": hits.len(), "issues": issues });
    drop(hits);
    drop(site);
    if !sel.is_listing() {
        shared.after_scan_page(&jql, &served);
    }
    Ok(Json(page).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_only_work_for_the_query_they_came_from() {
        let token = encode_token(150, "project = OPS");
        assert_eq!(decode_token(&token, "project = OPS").ok(), Some(150));
        assert_eq!(decode_token(&token, " project = OPS ").ok(), Some(150));
        assert!(decode_token(&token, "project = WEB").is_err());
        assert!(decode_token("not-a-token", "project = OPS").is_err());
    }
}

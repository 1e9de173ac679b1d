//! The site's reference data as Jira serves it: status categories, statuses, issue types,
//! priorities, resolutions, project categories, and each project's components and versions.
//! Statuses can be renamed and versions added at run time ([`Reference`]); issues render the
//! current names, as Jira's do (a rename does not move an issue's `updated`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde_json::{Value, json};

use super::Shared;
use super::catalog::{
    ANCHOR_MS, CATEGORIES, COMPONENTS, DAY_MS, ISSUE_TYPES, PRIORITIES, PROJECT_CATEGORIES,
    RESOLUTIONS, STATUSES,
};
use super::custom::{PLATFORMS, REGION_PARENTS, REGIONS, SEVERITY};
use super::fields::FIELDS;
use super::render::Ctx;
use super::routes::{Params, Reply, admin_or_forbidden};
use super::site::Site;
use super::work::not_found;

/// What changed in the reference data since the site was generated.
#[derive(Debug, Default, Clone)]
pub(crate) struct Reference {
    /// Statuses renamed: id → name.
    pub status_names: BTreeMap<&'static str, String>,
    /// Versions added: (project index, id, name).
    pub versions: Vec<(usize, i64, String)>,
    /// Options added to the select field Severity: (id, value).
    pub options: Vec<(i64, String)>,
    /// Members removed from groups: (group index, user index).
    pub left_groups: Vec<(usize, usize)>,
}

impl Reference {
    pub fn status_name(&self, index: usize) -> &str {
        let status = &STATUSES[index];
        self.status_names
            .get(status.id)
            .map_or(status.name, String::as_str)
    }
}

/// The components of the project at `index`: (id, name).
pub(crate) fn components(index: usize) -> Vec<(i64, &'static str)> {
    (0..3)
        .map(|j| {
            let id = 10_000 + index as i64 * 10 + j as i64;
            (id, COMPONENTS[(index + j) % COMPONENTS.len()])
        })
        .collect()
}

/// The versions of the project at `index`: (id, name, released, release date ms).
pub(crate) fn versions(site: &Site, index: usize) -> Vec<(i64, String, bool, Option<i64>)> {
    let mut all: Vec<(i64, String, bool, Option<i64>)> = (0..4)
        .map(|j| {
            let id = 10_100 + index as i64 * 10 + j;
            let date = ANCHOR_MS - (4 - j) * 60 * DAY_MS;
            (id, format!("{}.0", j + 1), j < 2, Some(date))
        })
        .collect();
    all.extend(
        site.reference
            .versions
            .iter()
            .filter(|(p, _, _)| *p == index)
            .map(|(_, id, name)| (*id, name.clone(), false, None)),
    );
    all
}

/// The custom fields with options (each has one context, [`context_id`]).
pub(crate) const OPTION_FIELDS: [&str; 3] = [
    "customfield_10015",
    "customfield_10016",
    "customfield_10017",
];

/// The id of a custom field's one context: Jira numbers contexts apart from fields; here it
/// is the field's number + 300.
pub(crate) fn context_id(field: &str) -> i64 {
    300 + field
        .trim_start_matches("customfield_")
        .parse::<i64>()
        .unwrap_or_default()
}

/// The options of the context `context` of `field`, options first, then cascading options (as
/// Jira orders them): (id, value, parent option id).
pub(crate) fn field_options(site: &Site, field: &str) -> Vec<(i64, String, Option<i64>)> {
    let own = |list: &[(i64, &str)]| -> Vec<(i64, String, Option<i64>)> {
        list.iter()
            .map(|(id, v)| (*id, (*v).to_owned(), None))
            .collect()
    };
    match field {
        "customfield_10015" => {
            let mut all = own(&SEVERITY);
            all.extend(
                site.reference
                    .options
                    .iter()
                    .map(|(id, v)| (*id, v.clone(), None)),
            );
            all
        }
        "customfield_10016" => own(&PLATFORMS),
        "customfield_10017" => {
            let mut all = own(&REGION_PARENTS);
            all.extend(
                REGIONS
                    .iter()
                    .map(|(p, _, id, v)| (*id, (*v).to_owned(), Some(*p))),
            );
            all
        }
        _ => Vec::new(),
    }
}

/// Every kind's (id, name) pairs, as the API shows them now.
pub(crate) fn truth(site: &Site) -> BTreeMap<&'static str, Vec<(String, String)>> {
    let mut kinds: BTreeMap<&'static str, Vec<(String, String)>> = BTreeMap::new();
    kinds.insert(
        "fields",
        super::fields::all_fields(site.heavy)
            .map(|f| (f.id.to_owned(), f.name.to_owned()))
            .collect(),
    );
    kinds.insert(
        "status_categories",
        status_categories()
            .iter()
            .map(|(id, _, name, _)| (id.to_string(), (*name).to_owned()))
            .collect(),
    );
    kinds.insert(
        "statuses",
        (0..STATUSES.len())
            .map(|i| {
                (
                    STATUSES[i].id.to_owned(),
                    site.reference.status_name(i).to_owned(),
                )
            })
            .collect(),
    );
    kinds.insert(
        "issue_types",
        ISSUE_TYPES
            .iter()
            .map(|t| (t.id.to_owned(), t.name.to_owned()))
            .collect(),
    );
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(id, name)| ((*id).to_owned(), (*name).to_owned()))
            .collect()
    };
    kinds.insert("priorities", pairs(&PRIORITIES));
    kinds.insert("resolutions", pairs(&RESOLUTIONS));
    kinds.insert("project_categories", pairs(&PROJECT_CATEGORIES));
    let mut components_all = Vec::new();
    let mut versions_all = Vec::new();
    for index in 0..site.projects.len() {
        components_all.extend(
            components(index)
                .into_iter()
                .map(|(id, name)| (id.to_string(), name.to_owned())),
        );
        versions_all.extend(
            versions(site, index)
                .into_iter()
                .map(|(id, name, _, _)| (id.to_string(), name)),
        );
    }
    kinds.insert(
        "field_options",
        OPTION_FIELDS
            .iter()
            .flat_map(|field| field_options(site, field))
            .map(|(id, value, _)| (id.to_string(), value))
            .collect(),
    );
    kinds.insert("components", components_all);
    kinds.insert("versions", versions_all);
    for list in kinds.values_mut() {
        list.sort();
    }
    kinds
}

/// Jira's status categories, "No Category" (1) included: (id, key, name, colour).
fn status_categories() -> Vec<(i64, &'static str, &'static str, &'static str)> {
    let mut all = vec![(1, "undefined", "No Category", "medium-gray")];
    all.extend(CATEGORIES.iter().map(|c| (c.id, c.key, c.name, c.color)));
    all
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/rest/api/{version}/statuscategory",
            get(status_category_list),
        )
        .route("/rest/api/{version}/status", get(status_list))
        .route("/rest/api/{version}/issuetype", get(issue_type_list))
        .route("/rest/api/{version}/priority/search", get(priority_search))
        .route("/rest/api/{version}/priority", get(priority_list))
        .route(
            "/rest/api/{version}/resolution/search",
            get(resolution_search),
        )
        .route("/rest/api/{version}/resolution", get(resolution_list))
        .route(
            "/rest/api/{version}/projectCategory",
            get(project_category_list),
        )
        .route(
            "/rest/api/{version}/project/{id_or_key}/components",
            get(project_components),
        )
        .route(
            "/rest/api/{version}/project/{id_or_key}/versions",
            get(project_versions),
        )
        .route(
            "/rest/api/{version}/field/{field}/context",
            get(field_contexts),
        )
        .route(
            "/rest/api/{version}/field/{field}/context/{context}/option",
            get(context_options),
        )
}

/// Field contexts and their options need the Administer Jira global permission.
const NOT_ADMIN: &str = "Only Jira administrators can access custom field contexts.";

/// `GET /field/{field}/context`: a custom field's contexts (one global context each here).
async fn field_contexts(
    State(shared): State<Arc<Shared>>,
    Path((_version, field)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Reply {
    admin_or_forbidden(&shared, NOT_ADMIN)?;
    let def = FIELDS
        .iter()
        .find(|f| f.id == field && f.custom.is_some())
        .ok_or_else(|| not_found("The custom field"))?;
    let id = context_id(def.id);
    let context = json!({"id": id.to_string(),
        "name": format!("Default Configuration Scheme for {}", def.name),
        "description": "Default configuration scheme generated by Jira",
        "isGlobalContext": true, "isAnyIssueType": true});
    page_bean(raw, vec![context])
}

/// `GET /field/{field}/context/{context}/option`: a context's options, paged.
async fn context_options(
    State(shared): State<Arc<Shared>>,
    Path((_version, field, context)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Reply {
    admin_or_forbidden(&shared, NOT_ADMIN)?;
    let known = OPTION_FIELDS
        .iter()
        .any(|f| *f == field && context_id(f).to_string() == context);
    if !known {
        return Err(not_found("The context"));
    }
    let site = shared.site();
    let values: Vec<Value> = field_options(&site, &field)
        .into_iter()
        .map(|(id, value, parent)| {
            let mut v = json!({"id": id.to_string(), "value": value, "disabled": false});
            if let Some(parent) = parent {
                v["optionId"] = json!(parent.to_string());
            }
            v
        })
        .collect();
    page_bean(raw, values)
}

async fn status_category_list(State(shared): State<Arc<Shared>>) -> Reply {
    let base = &shared.base_url;
    let list: Vec<Value> = status_categories()
        .into_iter()
        .map(|(id, key, name, color)| {
            json!({"self": format!("{base}/rest/api/3/statuscategory/{id}"),
                   "id": id, "key": key, "colorName": color, "name": name})
        })
        .collect();
    Ok(Json(list).into_response())
}

async fn status_list(State(shared): State<Arc<Shared>>) -> Reply {
    let site = shared.site();
    let ctx = Ctx::new(&shared, &site);
    let list: Vec<Value> = (0..STATUSES.len()).map(|i| ctx.status(i as u8)).collect();
    Ok(Json(list).into_response())
}

async fn issue_type_list(State(shared): State<Arc<Shared>>) -> Reply {
    let site = shared.site();
    let ctx = Ctx::new(&shared, &site);
    let list: Vec<Value> = ISSUE_TYPES.iter().map(|t| ctx.issue_type(t.id)).collect();
    Ok(Json(list).into_response())
}

/// A PageBean of `values`, `startAt`/`maxResults` as Jira pages them (50 by default, 100 at
/// most: the cautious reading).
fn page_bean(raw: Option<String>, values: Vec<Value>) -> Reply {
    page_of(&Params::parse(raw), values, 100)
}

/// A PageBean of `values` from `startAt`, `maxResults` pages (50 by default, `cap` at most).
pub(crate) fn page_of(params: &Params, values: Vec<Value>, cap: i64) -> Reply {
    let start = params.int("startAt", 0)?.max(0) as usize;
    let max = match params.int("maxResults", 50)? {
        m if m <= 0 => 50,
        m => m.min(cap) as usize,
    };
    let total = values.len();
    let page: Vec<Value> = values.into_iter().skip(start).take(max).collect();
    let is_last = start + page.len() >= total;
    Ok(Json(json!({
        "startAt": start, "maxResults": max, "total": total, "isLast": is_last, "values": page,
    }))
    .into_response())
}

fn priorities(shared: &Shared) -> Vec<Value> {
    let site = shared.site();
    let ctx = Ctx::new(shared, &site);
    let mut values: Vec<Value> = (0..PRIORITIES.len())
        .map(|i| ctx.priority(Some(i as u8)))
        .collect();
    for (i, value) in values.iter_mut().enumerate() {
        value["description"] = json!(format!("Priority {}.", i + 1));
        value["statusColor"] = json!(["#d04437", "#f15C75", "#f79232", "#707070", "#999999"][i]);
        value["isDefault"] = json!(i == 2);
    }
    values
}

fn resolutions(shared: &Shared) -> Vec<Value> {
    let site = shared.site();
    let ctx = Ctx::new(shared, &site);
    (0..RESOLUTIONS.len())
        .map(|i| ctx.resolution(Some(i as u8)))
        .collect()
}

async fn priority_search(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Reply {
    page_bean(raw, priorities(&shared))
}

/// `GET /priority`: every priority in one array (deprecated on Cloud; Data Center's way).
async fn priority_list(State(shared): State<Arc<Shared>>) -> Reply {
    Ok(Json(priorities(&shared)).into_response())
}

async fn resolution_search(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Reply {
    page_bean(raw, resolutions(&shared))
}

/// `GET /resolution`: every resolution in one array (Data Center's way).
async fn resolution_list(State(shared): State<Arc<Shared>>) -> Reply {
    Ok(Json(resolutions(&shared)).into_response())
}

async fn project_category_list(State(shared): State<Arc<Shared>>) -> Reply {
    let base = &shared.base_url;
    let list: Vec<Value> = PROJECT_CATEGORIES
        .iter()
        .map(|(id, name)| {
            json!({"self": format!("{base}/rest/api/3/projectCategory/{id}"),
                   "id": id, "name": name, "description": format!("{name} projects.")})
        })
        .collect();
    Ok(Json(list).into_response())
}

/// The index of the project `id_or_key` names.
fn project_index(site: &Site, id_or_key: &str) -> Option<usize> {
    site.projects
        .iter()
        .position(|p| p.id.to_string() == id_or_key || p.key.eq_ignore_ascii_case(id_or_key))
}

async fn project_components(
    State(shared): State<Arc<Shared>>,
    Path((_version, id_or_key)): Path<(String, String)>,
) -> Reply {
    let site = shared.site();
    let index = project_index(&site, &id_or_key).ok_or_else(|| not_found("Project"))?;
    let project = &site.projects[index];
    let base = &shared.base_url;
    let list: Vec<Value> = components(index)
        .into_iter()
        .map(|(id, name)| {
            json!({"self": format!("{base}/rest/api/3/component/{id}"), "id": id.to_string(),
                   "name": name, "description": format!("The {name} of {}.", project.name),
                   "assigneeType": "PROJECT_DEFAULT", "isAssigneeTypeValid": false,
                   "project": project.key, "projectId": project.id})
        })
        .collect();
    Ok(Json(list).into_response())
}

async fn project_versions(
    State(shared): State<Arc<Shared>>,
    Path((_version, id_or_key)): Path<(String, String)>,
) -> Reply {
    let site = shared.site();
    let index = project_index(&site, &id_or_key).ok_or_else(|| not_found("Project"))?;
    let project = &site.projects[index];
    let ctx = Ctx::new(&shared, &site);
    let base = &shared.base_url;
    let list: Vec<Value> = versions(&site, index)
        .into_iter()
        .map(|(id, name, released, date)| {
            let mut v = json!({"self": format!("{base}/rest/api/3/version/{id}"),
                   "id": id.to_string(), "name": name, "description": "",
                   "archived": false, "released": released, "projectId": project.id});
            if let Some(date) = date {
                v["releaseDate"] = json!(ctx.date(date));
            }
            v
        })
        .collect();
    Ok(Json(list).into_response())
}

//! Data Center mode: the endpoints and shapes where Jira Data Center differs from Cloud.
//!
//! - `GET /rest/api/2/project`: every visible project in one plain JSON array, no paging;
//!   archived projects only with `includeArchived=true`; `expand=description,lead,url`.
//! - `GET /rest/api/2/user/search?username=...`: `username` is required (matched as a prefix of
//!   the username, a word of the display name or the e-mail address; `.` matches everyone, the
//!   usual way to list all users), `includeActive` (default true) and `includeInactive` (default
//!   false), `startAt`/`maxResults` (default 50, at most 1000, as before Jira 10), a bare array.
//!   With `SimConfig::dc_user_window` set it behaves like Jira 10 (JRASERVER-78660): only the
//!   first `window` matches can be read, `startAt` and `maxResults` included (`startAt=98`,
//!   `maxResults=20` gives 2 users under a window of 100).
//! - `GET /rest/api/2/user?username=...` (or `key=...`): one user, matched exactly and ignoring
//!   case; 404 when there is none.
//! - Users are identified by `key` (`JIRAUSER10000`, …) and `name` (the username); there is no
//!   `accountId` and no `accountType`.
//! - Cloud-only endpoints (`/rest/api/3/*`, `/project/search`, `/users/search`, `/search/jql`,
//!   bulk fetch, `/_edge/tenant_info`) answer 404, as Data Center has no such resource.
//!
//! Sources: the Jira Server REST WADL (`api/2/project`: `expand`, `recent`; jira.js's server
//! module adds `includeArchived`, `browseArchive`), jira.js `server.findUsers` (`username`,
//! `includeActive`, `includeInactive`, `startAt`, `maxResults`), a Data Center user example
//! (`self`, `key`, `name`, `emailAddress`, `avatarUrls`, `displayName`, `active`, `deleted`,
//! `timeZone`, `locale`), and the `username=.` idiom for listing every user (JRA-29069). The
//! matching rule is Jira's `UserMatcherPredicate`: a case-insensitive prefix of the username,
//! of the e-mail address, or of the display name or any of its space-separated words.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use serde_json::{Value, json};

use super::Shared;
use super::data::User;
use super::render::{Ctx, add_contact};
use super::routes::{ApiError, Params, Reply, bad_request};

/// The first user key Data Center hands out in these simulated sites.
const FIRST_USER_KEY: usize = 10_000;

/// The user key of the `index`-th user, as a Data Center site names it.
pub(crate) fn user_key(index: usize) -> String {
    format!("JIRAUSER{}", FIRST_USER_KEY + index)
}

/// The username of the `index`-th user: the e-mail's local part, else `user<index>`.
fn username(user: &User, index: usize) -> String {
    match &user.email {
        Some(email) => email.split('@').next().unwrap_or_default().to_owned(),
        None => format!("user{index}"),
    }
}

/// Whether a path exists on Cloud only, so a Data Center site answers 404.
pub(crate) fn cloud_only(path: &str) -> bool {
    const CLOUD_ONLY: [&str; 9] = [
        "/rest/api/2/priority/search",
        "/rest/api/2/resolution/search",
        "/rest/api/2/project/search",
        "/rest/api/2/users/search",
        "/rest/api/2/users",
        "/rest/api/2/search/jql",
        "/rest/api/2/search/approximate-count",
        "/rest/api/2/issue/bulkfetch",
        "/_edge/tenant_info",
    ];
    path.starts_with("/rest/api/3/")
        || path.starts_with("/ex/jira/")
        || CLOUD_ONLY.contains(&path.trim_end_matches('/'))
}

impl Ctx<'_> {
    /// A user as Data Center embeds it in issues, project leads and user fields: `key` and
    /// `name` instead of `accountId`, no `accountType`.
    pub fn dc_user_details(&self, index: usize) -> Value {
        let Some(user) = self.site.users.get(index) else {
            return Value::Null;
        };
        let name = username(user, index);
        let mut value = json!({
            "self": format!("{}/rest/api/2/user?username={name}", self.base),
            "key": user_key(index),
            "name": name,
            "avatarUrls": self.dc_avatars(&name),
            "displayName": user.display_name,
            "active": user.active,
        });
        add_contact(&mut value, user);
        value
    }

    /// A user in Data Center's full shape (`/user/search`, `/user`, `/myself`).
    pub fn dc_user(&self, index: usize) -> Value {
        let mut value = self.dc_user_details(index);
        if let Some(user) = self.site.users.get(index) {
            value["deleted"] = json!(false);
            if user.time_zone.is_some() {
                value["locale"] = json!(user.locale);
            }
        }
        value
    }

    fn dc_avatars(&self, owner: &str) -> Value {
        let url = |size: &str| {
            format!(
                "{}/secure/useravatar?size={size}&ownerId={owner}",
                self.base
            )
        };
        json!({"48x48": url("large"), "24x24": url("small"), "16x16": url("xsmall"),
               "32x32": url("medium")})
    }

    /// A project in Data Center's shape: no `style`, `simplified`, `isPrivate` or insight;
    /// `archived` always present.
    pub fn dc_project(&self, index: usize, expand: &[String]) -> Value {
        let project = &self.site.projects[index];
        let mut value = self.project_ref(index);
        if let Some(map) = value.as_object_mut() {
            map.remove("simplified");
        }
        value["self"] = json!(format!("{}/rest/api/2/project/{}", self.base, project.id));
        value["expand"] = json!("description,lead,url,projectKeys");
        value["archived"] = json!(project.archived_ms.is_some());
        let wants = |name: &str| expand.iter().any(|e| e == name);
        if wants("description") {
            value["description"] = json!(format!("Work tracked by the {} team.", project.name));
        }
        if wants("lead") {
            // A lead is the short user object: no e-mail address or zone.
            let lead = self.dc_user_details(project.lead as usize);
            value["lead"] = json!({
                "self": lead["self"], "key": lead["key"], "name": lead["name"],
                "avatarUrls": lead["avatarUrls"], "displayName": lead["displayName"],
                "active": lead["active"],
            });
        }
        if wants("url") {
            value["url"] = json!(format!(
                "https://example.com/{}",
                project.key.to_lowercase()
            ));
        }
        value
    }
}

/// `GET /rest/api/2/project`: one array, ordered by key; archived projects on request.
pub(crate) async fn project_list(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> Reply {
    let params = Params::parse(raw);
    let archived = flag(&params, "includeArchived", false)?;
    let expand: Vec<String> = params.owned_list("expand");
    let site = shared.site();
    let ctx = Ctx::new(&shared, &site);
    let mut chosen: Vec<usize> = (0..site.projects.len())
        .filter(|&i| archived || site.projects[i].archived_ms.is_none())
        .collect();
    chosen.sort_by(|&a, &b| site.projects[a].key.cmp(&site.projects[b].key));
    let values: Vec<Value> = if shared.config.data_center {
        chosen.iter().map(|&i| ctx.dc_project(i, &expand)).collect()
    } else {
        // Cloud's deprecated "get all projects" lists live projects in its own shape.
        chosen
            .iter()
            .filter(|&&i| site.projects[i].archived_ms.is_none())
            .map(|&i| ctx.project(i, &expand, (0, None)))
            .collect()
    };
    Ok(Json(values).into_response())
}

/// `GET /rest/api/2/user/search` of Data Center.
pub(crate) async fn user_search(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> Reply {
    let params = Params::parse(raw);
    if !shared.config.data_center {
        if params.get("username").is_some() {
            return Err(bad_request(
                "The query parameter 'username' is not supported in GDPR strict mode.",
            ));
        }
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "user search by query is not simulated on Cloud; use /users/search",
        ));
    }
    let Some(query) = params
        .get("username")
        .map(str::trim)
        .filter(|q| !q.is_empty())
    else {
        return Err(bad_request("The username query parameter was not provided"));
    };
    let query = query.trim_matches('"').to_lowercase();
    let active = flag(&params, "includeActive", true)?;
    let inactive = flag(&params, "includeInactive", false)?;
    let start = params.int("startAt", 0)?.max(0) as usize;
    let max = match params.int("maxResults", 50)? {
        m if m <= 0 => 50,
        m => m.min(1000) as usize,
    };
    // Jira 10 reads no match past its window, however the request pages.
    let window = shared.config.dc_user_window.unwrap_or(usize::MAX);
    let max = start.saturating_add(max).min(window).saturating_sub(start);
    // Data Center answers an empty list, not 403, to an account without Browse Users.
    if !shared.is_admin() {
        return Ok(Json(Vec::<Value>::new()).into_response());
    }
    let site = shared.site();
    let ctx = Ctx::new(&shared, &site);
    let users: Vec<Value> = site
        .users
        .iter()
        .enumerate()
        .filter(|(_, u)| if u.active { active } else { inactive })
        .filter(|(i, u)| query == "." || matches_user(&query, u, &username(u, *i)))
        .skip(start)
        .take(max)
        .map(|(i, _)| ctx.dc_user(i))
        .collect();
    Ok(Json(users).into_response())
}

/// Data Center's user match (`UserMatcherPredicate`): a prefix of the username, of the e-mail
/// address, or of the display name or one of its words, ignoring case.
fn matches_user(query: &str, user: &User, name: &str) -> bool {
    name.to_lowercase().starts_with(query)
        || user
            .display_name
            .split_whitespace()
            .any(|w| w.to_lowercase().starts_with(query))
        || user
            .email
            .as_deref()
            .is_some_and(|e| e.to_lowercase().starts_with(query))
}

/// `GET /rest/api/2/user` of Data Center: the user with this `username` (or `key`), matched
/// exactly and ignoring case, active or not.
pub(crate) async fn user_get(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Reply {
    let params = Params::parse(raw);
    if !shared.config.data_center {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "user look-up is simulated on Data Center only",
        ));
    }
    let site = shared.site();
    let wanted = |param: &str| params.get(param).map(|v| v.trim().to_lowercase());
    let found = match (wanted("username"), wanted("key")) {
        (Some(name), _) => (0..site.users.len())
            .find(|&i| username(&site.users[i], i).to_lowercase() == name)
            .ok_or(format!("The user named '{name}' does not exist")),
        (None, Some(key)) => (0..site.users.len())
            .find(|&i| user_key(i).to_lowercase() == key)
            .ok_or(format!("The user with the key '{key}' does not exist")),
        (None, None) => {
            return Err(bad_request(
                "Either the 'username' or the 'key' query parameter must be provided",
            ));
        }
    };
    let index = found.map_err(|message| ApiError::new(StatusCode::NOT_FOUND, message))?;
    Ok(Json(Ctx::new(&shared, &site).dc_user(index)).into_response())
}

fn flag(params: &Params, name: &str, default: bool) -> Result<bool, ApiError> {
    match params.get(name).map(str::trim) {
        None | Some("") => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(bad_request(format!(
            "The value '{v}' is not valid for the parameter '{name}'."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_only_paths_are_recognised_and_data_center_paths_are_not() {
        for path in [
            "/rest/api/3/myself",
            "/rest/api/2/project/search",
            "/rest/api/2/users/search",
            "/rest/api/2/search/jql",
            "/rest/api/2/issue/bulkfetch",
            "/_edge/tenant_info",
        ] {
            assert!(cloud_only(path), "{path}");
        }
        for path in [
            "/rest/api/2/project",
            "/rest/api/2/user/search",
            "/rest/api/2/search",
            "/rest/api/2/issue/10001",
            "/rest/api/2/myself",
        ] {
            assert!(!cloud_only(path), "{path}");
        }
    }

    #[test]
    fn user_keys_count_up_from_ten_thousand() {
        assert_eq!(user_key(0), "JIRAUSER10000");
        assert_eq!(user_key(129), "JIRAUSER10129");
    }
}

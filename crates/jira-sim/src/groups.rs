//! Groups and their members as Jira Cloud serves them: `GET /group/bulk` (a PageBean of
//! `{name, groupId}`) and `GET /group/member?groupId=` (a PageBean of users, 50 a page at most,
//! inactive users only with `includeInactiveUsers=true`). Both need the "Browse users and
//! groups" permission. Membership follows a rule over the users' indices, so users added at run
//! time join too; members can be removed ([`crate::Simulator::remove_group_member`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use serde_json::{Value, json};

use super::Shared;
use super::reference::page_of;
use super::render::Ctx;
use super::routes::{Params, Reply, admin_or_forbidden};
use super::site::Site;
use super::work::not_found;

pub(crate) use super::catalog::GROUPS;

/// A group's id, as Jira's: a UUID.
pub(crate) fn group_id(index: usize) -> String {
    format!("{:08x}-5eed-4c0d-9a11-{:012x}", 0x6a00 + index, index + 1)
}

/// Whether user `user` is in group `group` (of [`GROUPS`]), as generated.
fn belongs(group: usize, user: usize) -> bool {
    match GROUPS[group] {
        "jira-admins" => user < 3,
        "site-admins" => user == 0,
        "developers" => user.is_multiple_of(3),
        _ => true,
    }
}

/// The indices of the users in group `group`, inactive ones included, those removed left out.
pub(crate) fn members(site: &Site, group: usize) -> Vec<usize> {
    (0..site.users.len())
        .filter(|&u| belongs(group, u))
        .filter(|&u| !site.reference.left_groups.contains(&(group, u)))
        .collect()
}

/// Every membership: (group id, group name, account id).
pub(crate) fn truth(site: &Site) -> Vec<(String, String, String)> {
    let mut all: Vec<(String, String, String)> = (0..GROUPS.len())
        .flat_map(|g| {
            members(site, g).into_iter().map(move |u| {
                (
                    group_id(g),
                    GROUPS[g].to_owned(),
                    site.users[u].account_id.clone(),
                )
            })
        })
        .collect();
    all.sort();
    all
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/rest/api/{version}/group/bulk", get(bulk))
        .route("/rest/api/{version}/group/member", get(member))
}

/// Groups and their members need the "Browse users and groups" permission.
const MAY_NOT_BROWSE: &str =
    "You do not have the 'Browse users and groups' permission required to view groups.";

async fn bulk(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Reply {
    admin_or_forbidden(&shared, MAY_NOT_BROWSE)?;
    let values: Vec<Value> = GROUPS
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"name": name, "groupId": group_id(i)}))
        .collect();
    page_of(&Params::parse(raw), values, 50)
}

async fn member(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Reply {
    admin_or_forbidden(&shared, MAY_NOT_BROWSE)?;
    let params = Params::parse(raw);
    let by_id = params.get("groupId");
    let by_name = params.get("groupname");
    let group = (0..GROUPS.len())
        .find(|&g| by_id == Some(group_id(g).as_str()) || by_name == Some(GROUPS[g]))
        .ok_or_else(|| not_found("The group"))?;
    let inactive = params.get("includeInactiveUsers") == Some("true");
    let site = shared.site();
    let ctx = Ctx::new(&shared, &site);
    let values: Vec<Value> = members(&site, group)
        .into_iter()
        .filter(|&u| inactive || site.users[u].active)
        .map(|u| ctx.user_details(u as u32))
        .collect();
    page_of(&params, values, 50)
}

//! JSON rendering of stored records in Jira Cloud's shapes: issues, users, projects, audit.
//! On a Data Center site every embedded user (assignee, reporter, creator, user fields, audit
//! authors) takes Data Center's shape instead (see `dc.rs`).

use super::Poison;
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use super::Shared;
use super::catalog::{
    AUDIT_KINDS, CATEGORIES, DAY_MS, GROUPS, ISSUE_TYPES, PRIORITIES, PROJECT_CATEGORIES,
    RESOLUTIONS, STATUSES,
};
use super::custom;
use super::data::{AccountKind, AuditRecord, Dice, Issue, User, mix64};
use super::fields::{FieldSel, all_fields};
use super::site::{Site, to_utc};
use crate::time::format_jira_timestamp;

/// What rendering needs: the site, the base URL for `self` links and the zone for timestamps.
pub(crate) struct Ctx<'a> {
    pub site: &'a Site,
    pub base: &'a str,
    pub tz: Tz,
    /// Render users in Data Center's shape (`key`, `name`, no `accountId`).
    pub data_center: bool,
}

impl<'a> Ctx<'a> {
    /// The context for rendering `site` as the simulator behind `shared` serves it.
    pub fn new(shared: &'a Shared, site: &'a Site) -> Ctx<'a> {
        Ctx {
            site,
            base: &shared.base_url,
            tz: shared.site_tz,
            data_center: shared.config.data_center,
        }
    }
}

/// Adds the user's e-mail address and zone to a rendered user (Cloud or Data Center shape),
/// each only where the user has one.
pub(super) fn add_contact(value: &mut Value, user: &User) {
    if let Some(email) = &user.email {
        value["emailAddress"] = json!(email);
    }
    if let Some(zone) = &user.time_zone {
        value["timeZone"] = json!(zone);
    }
}

const ISSUE_EXPAND: &str =
    "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations";

impl Ctx<'_> {
    pub fn timestamp(&self, ms: i64) -> String {
        format_jira_timestamp(to_utc(ms), self.tz)
    }

    pub fn date(&self, ms: i64) -> String {
        to_utc(ms)
            .with_timezone(&self.tz)
            .format("%Y-%m-%d")
            .to_string()
    }

    fn avatars(&self, kind: &str, id: &str) -> Value {
        let url = |size: u32| {
            format!(
                "{}/secure/{kind}avatar?size={size}&avatarId={id}",
                self.base
            )
        };
        json!({"48x48": url(48), "24x24": url(24), "16x16": url(16), "32x32": url(32)})
    }

    /// The compact user object embedded in issues (UserDetails; on Data Center, a user with
    /// `key` and `name` instead of `accountId`).
    pub fn user_details(&self, index: u32) -> Value {
        if self.data_center {
            return self.dc_user_details(index as usize);
        }
        let Some(user) = self.site.users.get(index as usize) else {
            return Value::Null;
        };
        let mut value = json!({
            "self": format!("{}/rest/api/3/user?accountId={}", self.base, user.account_id),
            "accountId": user.account_id,
            "avatarUrls": self.avatars("user", &user.account_id),
            "displayName": user.display_name,
            "active": user.active,
            "accountType": match user.kind {
                AccountKind::Atlassian => "atlassian",
                AccountKind::App(_) => "app",
                AccountKind::Customer => "customer",
            },
        });
        add_contact(&mut value, user);
        value
    }

    /// The full user object of `/users/search` and `/myself`.
    pub fn user(&self, index: u32) -> Value {
        let mut value = self.user_details(index);
        if let Some(user) = self.site.users.get(index as usize) {
            if let AccountKind::App(app_type) = user.kind {
                value["appType"] = json!(app_type);
            }
            if user.time_zone.is_some() {
                value["locale"] = json!(user.locale);
            }
        }
        value
    }

    pub fn project_ref(&self, index: usize) -> Value {
        let project = &self.site.projects[index];
        let mut value = json!({
            "self": format!("{}/rest/api/3/project/{}", self.base, project.id),
            "id": project.id.to_string(),
            "key": project.key,
            "name": project.name,
            "projectTypeKey": project.type_key,
            "simplified": project.simplified,
            "avatarUrls": self.avatars("project", &project.id.to_string()),
        });
        if let Some(category) = project.category {
            let (id, name) = PROJECT_CATEGORIES[category];
            value["projectCategory"] = json!({
                "self": format!("{}/rest/api/3/projectCategory/{id}", self.base),
                "id": id, "name": name, "description": format!("{name} projects"),
            });
        }
        value
    }

    /// A project as `/project/search` lists it. `insight` is (issue count, last update).
    pub fn project(&self, index: usize, expand: &[String], insight: (usize, Option<i64>)) -> Value {
        let project = &self.site.projects[index];
        let mut value = self.project_ref(index);
        value["expand"] = json!("description,lead,issueTypes,url,projectKeys,permissions,insight");
        value["style"] = json!(if project.simplified {
            "next-gen"
        } else {
            "classic"
        });
        value["isPrivate"] = json!(project.private);
        value["properties"] = json!({});
        if project.simplified {
            value["uuid"] = json!(project.uuid);
            value["entityId"] = json!(project.uuid);
        }
        if let Some(archived_ms) = project.archived_ms {
            value["archived"] = json!(true);
            value["archivedDate"] = json!(self.timestamp(archived_ms));
            value["archivedBy"] = self.user_details(0);
        }
        let wants = |name: &str| expand.iter().any(|e| e == name);
        if wants("description") {
            value["description"] = json!(format!("Work tracked by the {} team.", project.name));
        }
        if wants("lead") {
            value["lead"] = self.user_details(project.lead);
        }
        if wants("url") {
            value["url"] = json!(format!(
                "https://example.com/{}",
                project.key.to_lowercase()
            ));
        }
        if wants("projectKeys") {
            value["projectKeys"] = json!([project.key]);
        }
        if wants("insight") {
            let mut insight_value = json!({ "totalIssueCount": insight.0 });
            if let Some(last) = insight.1 {
                insight_value["lastIssueUpdateTime"] = json!(self.timestamp(last));
            }
            value["insight"] = insight_value;
        }
        if wants("issueTypes") {
            value["issueTypes"] = json!(
                ISSUE_TYPES
                    .iter()
                    .map(|t| self.issue_type(t.id))
                    .collect::<Vec<_>>()
            );
        }
        value
    }

    pub(crate) fn issue_type(&self, id: &str) -> Value {
        let Some(t) = ISSUE_TYPES.iter().find(|t| t.id == id) else {
            return Value::Null;
        };
        json!({
            "self": format!("{}/rest/api/3/issuetype/{}", self.base, t.id),
            "id": t.id, "description": format!("A {}.", t.name.to_lowercase()),
            "iconUrl": format!("{}/images/icons/issuetypes/{}.svg", self.base, t.name.to_lowercase()),
            "name": t.name, "subtask": t.subtask, "avatarId": 10300, "hierarchyLevel": t.level,
        })
    }

    pub(crate) fn status(&self, index: u8) -> Value {
        let status = &STATUSES[index as usize];
        let category = &CATEGORIES[status.category];
        json!({
            "self": format!("{}/rest/api/3/status/{}", self.base, status.id),
            "description": "", "iconUrl": format!("{}/images/icons/statuses/generic.png", self.base),
            "name": self.site.reference.status_name(index as usize), "id": status.id,
            "statusCategory": {
                "self": format!("{}/rest/api/3/statuscategory/{}", self.base, category.id),
                "id": category.id, "key": category.key, "colorName": category.color, "name": category.name,
            },
        })
    }

    pub(crate) fn priority(&self, index: Option<u8>) -> Value {
        index.and_then(|i| PRIORITIES.get(i as usize)).map_or(Value::Null, |(id, name)| {
            json!({
                "self": format!("{}/rest/api/3/priority/{id}", self.base),
                "iconUrl": format!("{}/images/icons/priorities/{}.svg", self.base, name.to_lowercase()),
                "name": name, "id": id,
            })
        })
    }

    pub(crate) fn resolution(&self, index: Option<u8>) -> Value {
        index
            .and_then(|i| RESOLUTIONS.get(i as usize))
            .map_or(Value::Null, |(id, name)| {
                json!({
                    "self": format!("{}/rest/api/3/resolution/{id}", self.base),
                    "id": id, "description": format!("{name}."), "name": name,
                })
            })
    }

    /// The short form of another issue, used by `parent` and `issuelinks`.
    pub(crate) fn issue_ref(&self, issue: &Issue) -> Value {
        json!({
            "id": issue.id.to_string(),
            "key": self.site.key_of(issue),
            "self": format!("{}/rest/api/3/issue/{}", self.base, issue.id),
            "fields": {
                "summary": custom::summary(issue),
                "status": self.status(issue.status),
                "priority": self.priority(issue.priority),
                "issuetype": self.issue_type(ISSUE_TYPES[issue.kind as usize].id),
            },
        })
    }

    /// An issue (IssueBean) with the selected fields.
    pub fn issue(&self, issue: &Issue, sel: &FieldSel) -> Value {
        let id = issue.id.to_string();
        if sel.id_only() {
            return json!({ "id": id });
        }
        let mut fields = Map::new();
        for def in all_fields(self.site.heavy).filter(|def| sel.wants(def.id)) {
            if let Some(value) = self.field(issue, def.id) {
                fields.insert(def.id.to_owned(), value);
            }
        }
        json!({
            "expand": ISSUE_EXPAND,
            "id": id,
            "self": format!("{}/rest/api/3/issue/{}", self.base, issue.id),
            "key": self.site.key_of(issue),
            "fields": fields,
        })
    }

    /// One field's value; `None` when Jira leaves the field out entirely (no parent).
    fn field(&self, issue: &Issue, id: &str) -> Option<Value> {
        let user = |index: Option<u32>| index.map_or(Value::Null, |i| self.user_details(i));
        Some(match id {
            "summary" => json!(poisoned_summary(custom::summary(issue), issue.poison)),
            "issuetype" => self.issue_type(ISSUE_TYPES[issue.kind as usize].id),
            "project" => self.project_ref(issue.project),
            "status" => self.status(issue.status),
            "priority" => self.priority(issue.priority),
            "resolution" => self.resolution(issue.resolution),
            "resolutiondate" => issue
                .resolved_ms
                .map_or(Value::Null, |ms| json!(self.timestamp(ms))),
            "assignee" if issue.poison == Some(Poison::Oversized) => {
                json!({"accountId": oversized_id(issue.id), "displayName": "Oversized", "active": true})
            }
            "assignee" => user(issue.assignee),
            "reporter" => user(Some(issue.reporter)),
            "creator" => user(Some(issue.creator)),
            "created" => json!(self.timestamp(issue.created_ms)),
            "updated" if issue.poison == Some(Poison::Unreadable) => json!("yesterday"),
            "updated" => json!(self.timestamp(issue.updated_ms)),
            "parent" => {
                return issue
                    .parent
                    .and_then(|p| self.site.issue(p))
                    .map(|p| self.issue_ref(p));
            }
            "issuelinks" => self.issue_links(issue),
            "comment" => self.comment_field(issue),
            "worklog" => self.worklog_field(issue),
            "environment" => Value::Null,
            "components" | "fixVersions" => self.components_or_versions(issue, id),
            _ => custom::value(self, issue, id),
        })
    }

    fn components_or_versions(&self, issue: &Issue, id: &str) -> Value {
        if id == "components" {
            let values: Vec<Value> = custom::components(issue)
                .into_iter()
                .map(|(cid, name)| {
                    json!({"self": format!("{}/rest/api/3/component/{cid}", self.base),
                           "id": cid.to_string(), "name": name})
                })
                .collect();
            return json!(values);
        }
        let Some((vid, j)) = custom::fix_version(issue) else {
            return json!([]);
        };
        json!([{
            "self": format!("{}/rest/api/3/version/{vid}", self.base),
            "id": vid.to_string(), "name": format!("{}.0", j + 1), "description": "",
            "archived": false, "released": j < 2,
            "releaseDate": self.date(super::catalog::ANCHOR_MS - (4 - j) * 60 * DAY_MS),
        }])
    }

    pub fn audit_record(&self, record: &AuditRecord) -> Value {
        let (category, summary, type_name) = AUDIT_KINDS[record.kind];
        let mut dice = Dice::new(mix64(record.seed));
        let author = self.user_id(record.author as usize).unwrap_or_default();
        let subject = self.user_id(record.subject as usize).unwrap_or_default();
        let group = dice.pick(&GROUPS);
        let object = match type_name {
            "USER" => {
                json!({"id": subject, "name": subject, "typeName": "USER", "parentId": "10000",
                             "parentName": "com.atlassian.crowd.directory.IdentityPlatformRemoteDirectory"})
            }
            "GROUP" => {
                json!({"name": group, "typeName": "GROUP", "parentId": "10000", "parentName": "Jira Internal Directory"})
            }
            _ => {
                json!({"id": (10_000 + dice.below(500)).to_string(), "name": format!("{summary} #{}", dice.below(90) + 10), "typeName": type_name})
            }
        };
        let changed = if summary.ends_with("updated") {
            json!([{"fieldName": "Name", "changedFrom": "Old name", "changedTo": "New name"}])
        } else {
            json!([])
        };
        let associated = if summary == "User added to group" {
            json!([{"id": group, "name": group, "typeName": "GROUP", "parentId": "10000", "parentName": "Jira Internal Directory"}])
        } else {
            json!([])
        };
        let mut value = json!({
            "id": record.id,
            "summary": summary,
            "remoteAddress": format!("203.0.113.{}", dice.below(254) + 1),
            "authorKey": "",
            "created": self.timestamp(record.created_ms),
            "category": category,
            "eventSource": if dice.chance(0.8) { "" } else { "Jira" },
            "description": "",
            "objectItem": object,
            "changedValues": changed,
            "associatedItems": associated,
        });
        // Data Center names the author by user key; Cloud by account id, with an empty key.
        match self.data_center {
            true => value["authorKey"] = json!(author),
            false => value["authorAccountId"] = json!(author),
        }
        value
    }

    /// The id the API gives the `index`-th user: its account id, on Data Center its key.
    pub fn user_id(&self, index: usize) -> Option<String> {
        let user = self.site.users.get(index)?;
        Some(match self.data_center {
            true => super::dc::user_key(index),
            false => user.account_id.clone(),
        })
    }
}

/// The character a lone surrogate stands in for until the rendered text gets the escape
/// itself (a string cannot hold one): U+10FFFF, a noncharacter no issue holds.
pub(crate) const LONE_SURROGATE_MARK: char = '\u{10FFFF}';

/// A summary carrying `poison`'s character, if any.
/// 8,000 characters from a simple generator: too varied to compress below an index row.
fn oversized_id(seed: i64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut state = seed as u64 ^ 0x9E37_79B9_7F4A_7C15;
    (0..8_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(DIGITS[(state % DIGITS.len() as u64) as usize])
        })
        .collect()
}

fn poisoned_summary(summary: String, poison: Option<Poison>) -> String {
    match poison {
        Some(Poison::Nul) => format!("{summary} \u{0} (a NUL character)"),
        Some(Poison::LoneSurrogate) => {
            format!("{summary} {LONE_SURROGATE_MARK} (a lone surrogate)")
        }
        _ => summary,
    }
}

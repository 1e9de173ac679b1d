//! Reference data: the vocabularies issues point into (fields and the options of option-valued
//! custom fields, status categories, statuses, issue types, priorities, resolutions, project
//! categories), each project's components and versions, group memberships, and the Agile API's
//! boards and sprints. Each kind is a stream of its own: a full refresh on its own interval
//! (`[streams.<name>] interval_secs`, an hour by default; kinds listed under what another
//! stream stored run after it: components and versions after the projects stream, sprints
//! after the boards stream, field options after the fields stream) that lists everything,
//! writes only
//! the rows that changed, and marks deleted, in the same transaction, the rows the listing no
//! longer names (never on an empty listing). A record that cannot be read is set aside in
//! `jira.quarantine` and read again with the next listing.
//!
//! Jira renames a status or a priority without touching the issues that show it, so their
//! `raw` keeps the old name until they change: join `jira.issues.status_id`-like values to
//! these tables for current names.

use super::parse::{ParseError, Record, read_records};
use super::{Availability, Probe, Run, Schedule, Stream, StreamContext, StreamStatus};
use crate::jira::model::RawRecord;
use crate::jira::{Flavor, JiraError};
use crate::settings::{ConfigError, Settings};
use crate::store::status::{Count, Which};
use crate::store::table::{Kind, Owner, Table, col};
use crate::store::{Batch, Cell, CheckpointWrite, PageWrite};
use serde::Deserialize;
use serde_json::Value;

/// Where a kind is listed, under the REST prefix (`/rest/api/3` or, on Data Center, `/2`).
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// One array.
    List(&'static str),
    /// A PageBean (`startAt`, `isLast`) on Cloud; `list`, one array, on Data Center.
    Paged {
        paged: &'static str,
        list: &'static str,
    },
    /// One array per live project (`{project}` is its id).
    PerProject(&'static str),
    /// The Agile API (an absolute path): pages of `values` until `isLast`.
    Agile(&'static str),
    /// The Agile API, paged, per live scrum board (`{board}` is its id).
    PerScrumBoard(&'static str),
    /// Each live option-valued custom field's contexts (`field/{field}/context`), then each
    /// context's options (`.../context/{context}/option`), PageBeans (Cloud only).
    FieldOptions,
    /// Every group (`group/bulk`), then each group's members, inactive ones included
    /// (`group/member`), PageBeans (Cloud only).
    GroupMembers,
}

/// What a record was listed under: the project, board or field context (`id`), the field or
/// group (`key`) and the group's name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Under {
    pub id: Option<i64>,
    pub key: Option<String>,
    pub name: Option<String>,
}

impl Under {
    fn id(id: i64) -> Under {
        Under {
            id: Some(id),
            ..Under::default()
        }
    }
}

/// One kind of reference data.
pub struct RefKind {
    /// The stream's name (and its `[streams.<name>]` section).
    pub name: &'static str,
    /// What one record is called in messages.
    pub entity: &'static str,
    pub table: &'static Table,
    pub source: Source,
    /// The row's cells in the table's column order, given the record and what it was listed
    /// under (the project of a per-project kind, say).
    pub parse: fn(&Value, &Under) -> Result<Vec<Cell>, ParseError>,
    /// What to do when the account may not read it.
    pub fix: &'static str,
}

const fn table(name: &'static str, columns: &'static [crate::store::table::Column]) -> Table {
    Table {
        name,
        owner: Owner::Site,
        key: &["id"],
        columns,
        version: None,
        soft_delete: true,
    }
}

static FIELDS: Table = table(
    "jira.fields",
    &[
        col("id", Kind::Text),
        col("key", Kind::Text),
        col("name", Kind::Text),
        col("custom", Kind::Bool),
        col("schema_type", Kind::Text),
        col("schema_items", Kind::Text),
        col("schema_custom", Kind::Text),
        col("raw", Kind::Jsonb),
    ],
);
static BOARDS: Table = table(
    "jira.boards",
    &[
        col("id", Kind::Int8),
        col("name", Kind::Text),
        col("type", Kind::Text),
        col("project_id", Kind::Int8),
        col("raw", Kind::Jsonb),
    ],
);
static SPRINTS: Table = table(
    "jira.sprints",
    &[
        col("id", Kind::Int8),
        col("origin_board_id", Kind::Int8),
        col("name", Kind::Text),
        col("state", Kind::Text),
        col("goal", Kind::Text),
        col("start_date", Kind::Timestamptz),
        col("end_date", Kind::Timestamptz),
        col("complete_date", Kind::Timestamptz),
        col("created_date", Kind::Timestamptz),
        col("raw", Kind::Jsonb),
    ],
);
static STATUS_CATEGORIES: Table = table(
    "jira.status_categories",
    &[
        col("id", Kind::Int8),
        col("key", Kind::Text),
        col("name", Kind::Text),
        col("color_name", Kind::Text),
        col("raw", Kind::Jsonb),
    ],
);
static STATUSES: Table = table(
    "jira.statuses",
    &[
        col("id", Kind::Int8),
        col("name", Kind::Text),
        col("description", Kind::Text),
        col("status_category_id", Kind::Int8),
        col("raw", Kind::Jsonb),
    ],
);
static ISSUE_TYPES: Table = table(
    "jira.issue_types",
    &[
        col("id", Kind::Int8),
        col("name", Kind::Text),
        col("description", Kind::Text),
        col("subtask", Kind::Bool),
        col("hierarchy_level", Kind::Int8),
        col("raw", Kind::Jsonb),
    ],
);
static PRIORITIES: Table = table(
    "jira.priorities",
    &[
        col("id", Kind::Int8),
        col("name", Kind::Text),
        col("description", Kind::Text),
        col("status_color", Kind::Text),
        col("raw", Kind::Jsonb),
    ],
);
static RESOLUTIONS: Table = table(
    "jira.resolutions",
    &[
        col("id", Kind::Int8),
        col("name", Kind::Text),
        col("description", Kind::Text),
        col("raw", Kind::Jsonb),
    ],
);
static PROJECT_CATEGORIES: Table = table(
    "jira.project_categories",
    &[
        col("id", Kind::Int8),
        col("name", Kind::Text),
        col("description", Kind::Text),
        col("raw", Kind::Jsonb),
    ],
);
static COMPONENTS: Table = table(
    "jira.components",
    &[
        col("id", Kind::Int8),
        col("project_id", Kind::Int8),
        col("name", Kind::Text),
        col("description", Kind::Text),
        col("lead_account_id", Kind::Text),
        col("raw", Kind::Jsonb),
    ],
);
static VERSIONS: Table = table(
    "jira.versions",
    &[
        col("id", Kind::Int8),
        col("project_id", Kind::Int8),
        col("name", Kind::Text),
        col("description", Kind::Text),
        col("archived", Kind::Bool),
        col("released", Kind::Bool),
        col("start_date", Kind::Date),
        col("release_date", Kind::Date),
        col("raw", Kind::Jsonb),
    ],
);

static FIELD_OPTIONS: Table = table(
    "jira.field_options",
    &[
        col("id", Kind::Int8),
        col("field_id", Kind::Text),
        col("context_id", Kind::Int8),
        col("parent_id", Kind::Int8),
        col("value", Kind::Text),
        col("disabled", Kind::Bool),
        col("raw", Kind::Jsonb),
    ],
);

static USER_GROUPS: Table = table(
    "jira.user_groups",
    &[
        col("id", Kind::Text),
        col("group_id", Kind::Text),
        col("group_name", Kind::Text),
        col("account_id", Kind::Text),
        col("raw", Kind::Jsonb),
    ],
);

const ADMIN_FIX: &str = "the account sees no such records; check its permissions, or set \
                         [streams.<name>] enabled = false";

fn parse_field(v: &Value, _: &Under) -> Result<Vec<Cell>, ParseError> {
    let r = Record::new("field", v, &["name"]);
    Ok(vec![
        r.req_str("id")?.into(),
        r.opt_str("key")?.into(),
        r.opt_str("name")?.into(),
        r.opt_bool("custom")?.into(),
        r.opt_str("schema.type")?.into(),
        r.opt_str("schema.items")?.into(),
        r.opt_str("schema.custom")?.into(),
        v.clone().into(),
    ])
}

fn parse_board(v: &Value, _: &Under) -> Result<Vec<Cell>, ParseError> {
    let r = Record::new("board", v, &["name"]);
    Ok(vec![
        r.req_id("id")?.into(),
        r.opt_str("name")?.into(),
        r.opt_str("type")?.into(),
        r.opt_id("location.projectId")?.into(),
        v.clone().into(),
    ])
}

fn parse_sprint(v: &Value, board: &Under) -> Result<Vec<Cell>, ParseError> {
    let r = Record::new("sprint", v, &["name"]);
    let origin = match r.opt_id("originBoardId")? {
        Some(id) => Some(id),
        None => board.id,
    };
    Ok(vec![
        r.req_id("id")?.into(),
        origin.into(),
        r.opt_str("name")?.into(),
        r.opt_str("state")?.into(),
        r.opt_str("goal")?.into(),
        r.opt_ts("startDate")?.into(),
        r.opt_ts("endDate")?.into(),
        r.opt_ts("completeDate")?.into(),
        r.opt_ts("createdDate")?.into(),
        v.clone().into(),
    ])
}

fn parse_status_category(v: &Value, _: &Under) -> Result<Vec<Cell>, ParseError> {
    let r = Record::new("status category", v, &["key"]);
    Ok(vec![
        r.req_id("id")?.into(),
        r.opt_str("key")?.into(),
        r.opt_str("name")?.into(),
        r.opt_str("colorName")?.into(),
        v.clone().into(),
    ])
}

fn parse_status(v: &Value, _: &Under) -> Result<Vec<Cell>, ParseError> {
    let r = Record::new("status", v, &["name"]);
    Ok(vec![
        r.req_id("id")?.into(),
        r.opt_str("name")?.into(),
        r.opt_str("description")?.into(),
        r.opt_id("statusCategory.id")?.into(),
        v.clone().into(),
    ])
}

fn parse_issue_type(v: &Value, _: &Under) -> Result<Vec<Cell>, ParseError> {
    let r = Record::new("issue type", v, &["name"]);
    Ok(vec![
        r.req_id("id")?.into(),
        r.opt_str("name")?.into(),
        r.opt_str("description")?.into(),
        r.opt_bool("subtask")?.into(),
        r.opt_id("hierarchyLevel")?.into(),
        v.clone().into(),
    ])
}

fn parse_priority(v: &Value, _: &Under) -> Result<Vec<Cell>, ParseError> {
    let r = Record::new("priority", v, &["name"]);
    Ok(vec![
        r.req_id("id")?.into(),
        r.opt_str("name")?.into(),
        r.opt_str("description")?.into(),
        r.opt_str("statusColor")?.into(),
        v.clone().into(),
    ])
}

fn parse_named(entity: &'static str, v: &Value) -> Result<Vec<Cell>, ParseError> {
    let r = Record::new(entity, v, &["name"]);
    Ok(vec![
        r.req_id("id")?.into(),
        r.opt_str("name")?.into(),
        r.opt_str("description")?.into(),
        v.clone().into(),
    ])
}

fn parse_resolution(v: &Value, _: &Under) -> Result<Vec<Cell>, ParseError> {
    parse_named("resolution", v)
}

fn parse_project_category(v: &Value, _: &Under) -> Result<Vec<Cell>, ParseError> {
    parse_named("project category", v)
}

fn parse_component(v: &Value, under: &Under) -> Result<Vec<Cell>, ParseError> {
    let r = Record::new("component", v, &["name"]);
    let project = match under.id {
        Some(id) => Some(id),
        None => r.opt_id("projectId")?,
    };
    Ok(vec![
        r.req_id("id")?.into(),
        project.into(),
        r.opt_str("name")?.into(),
        r.opt_str("description")?.into(),
        r.opt_user_id("lead")?.into(),
        v.clone().into(),
    ])
}

fn parse_version(v: &Value, under: &Under) -> Result<Vec<Cell>, ParseError> {
    let r = Record::new("version", v, &["name"]);
    let project = match under.id {
        Some(id) => Some(id),
        None => r.opt_id("projectId")?,
    };
    Ok(vec![
        r.req_id("id")?.into(),
        project.into(),
        r.opt_str("name")?.into(),
        r.opt_str("description")?.into(),
        r.opt_bool("archived")?.into(),
        r.opt_bool("released")?.into(),
        r.opt_date("startDate")?.into(),
        r.opt_date("releaseDate")?.into(),
        v.clone().into(),
    ])
}

fn parse_field_option(v: &Value, under: &Under) -> Result<Vec<Cell>, ParseError> {
    let r = Record::new("field option", v, &["value"]);
    Ok(vec![
        r.req_id("id")?.into(),
        under.key.clone().unwrap_or_default().into(),
        under.id.unwrap_or_default().into(),
        r.opt_id("optionId")?.into(),
        r.opt_str("value")?.into(),
        r.opt_bool("disabled")?.into(),
        v.clone().into(),
    ])
}

fn parse_membership(v: &Value, group: &Under) -> Result<Vec<Cell>, ParseError> {
    let r = Record::new("group member", v, &["displayName"]);
    let account = r.req_str("accountId")?;
    let group_id = group.key.clone().unwrap_or_default();
    Ok(vec![
        format!("{group_id}:{account}").into(),
        group_id.into(),
        group.name.clone().into(),
        account.into(),
        v.clone().into(),
    ])
}

/// Every kind, in the order reports list them.
pub static KINDS: [RefKind; 13] = [
    RefKind {
        name: "fields",
        entity: "field",
        table: &FIELDS,
        source: Source::List("field"),
        parse: parse_field,
        fix: ADMIN_FIX,
    },
    RefKind {
        name: "field_options",
        entity: "field option",
        table: &FIELD_OPTIONS,
        source: Source::FieldOptions,
        parse: parse_field_option,
        fix: "listing custom field contexts and options needs the Administer Jira global \
              permission; grant it, or set [streams.field_options] enabled = false",
    },
    RefKind {
        name: "status_categories",
        entity: "status category",
        table: &STATUS_CATEGORIES,
        source: Source::List("statuscategory"),
        parse: parse_status_category,
        fix: ADMIN_FIX,
    },
    RefKind {
        name: "statuses",
        entity: "status",
        table: &STATUSES,
        source: Source::List("status"),
        parse: parse_status,
        fix: ADMIN_FIX,
    },
    RefKind {
        name: "issue_types",
        entity: "issue type",
        table: &ISSUE_TYPES,
        source: Source::List("issuetype"),
        parse: parse_issue_type,
        fix: ADMIN_FIX,
    },
    RefKind {
        name: "priorities",
        entity: "priority",
        table: &PRIORITIES,
        source: Source::Paged {
            paged: "priority/search",
            list: "priority",
        },
        parse: parse_priority,
        fix: ADMIN_FIX,
    },
    RefKind {
        name: "resolutions",
        entity: "resolution",
        table: &RESOLUTIONS,
        source: Source::Paged {
            paged: "resolution/search",
            list: "resolution",
        },
        parse: parse_resolution,
        fix: ADMIN_FIX,
    },
    RefKind {
        name: "project_categories",
        entity: "project category",
        table: &PROJECT_CATEGORIES,
        source: Source::List("projectCategory"),
        parse: parse_project_category,
        fix: ADMIN_FIX,
    },
    RefKind {
        name: "components",
        entity: "component",
        table: &COMPONENTS,
        source: Source::PerProject("project/{project}/components"),
        parse: parse_component,
        fix: ADMIN_FIX,
    },
    RefKind {
        name: "versions",
        entity: "version",
        table: &VERSIONS,
        source: Source::PerProject("project/{project}/versions"),
        parse: parse_version,
        fix: ADMIN_FIX,
    },
    RefKind {
        name: "user_groups",
        entity: "group member",
        table: &USER_GROUPS,
        source: Source::GroupMembers,
        parse: parse_membership,
        fix: "listing groups needs the Browse users and groups global permission; grant it, \
              or set [streams.user_groups] enabled = false",
    },
    RefKind {
        name: "boards",
        entity: "board",
        table: &BOARDS,
        source: Source::Agile("/rest/agile/1.0/board"),
        parse: parse_board,
        fix: "the account sees no boards (Jira Software); grant it Browse Projects on the \
              boards' projects, or set [streams.boards] enabled = false",
    },
    RefKind {
        name: "sprints",
        entity: "sprint",
        table: &SPRINTS,
        source: Source::PerScrumBoard("/rest/agile/1.0/board/{board}/sprint"),
        parse: parse_sprint,
        fix: ADMIN_FIX,
    },
];

/// `[streams.<name>]` of a reference kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    #[serde(default)]
    interval_secs: Option<u64>,
}

fn enabled_by_default() -> bool {
    true
}

/// How often a kind listed on its own runs by default: hourly.
const INTERVAL_SECS: u64 = 3600;

/// Pages a PageBean listing follows at most: reference lists are short; more is a server
/// that does not page.
const MAX_PAGES: usize = 1000;
const PAGE_SIZE: usize = 100;

/// A PageBean page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageBean {
    #[serde(default)]
    values: Vec<RawRecord>,
    #[serde(default)]
    is_last: Option<bool>,
}

/// One kind of reference data as a stream.
pub struct Reference {
    kind: &'static RefKind,
    schedule: Schedule,
}

impl Reference {
    pub fn new(settings: &Settings, kind: &'static RefKind) -> Result<Reference, ConfigError> {
        let section: Section = settings.streams.parse(kind.name)?;
        let interval = section.interval_secs.unwrap_or(INTERVAL_SECS);
        let mut schedule = Schedule::every(section.enabled, interval);
        let leader = match kind.source {
            Source::PerProject(_) => Some("projects"),
            Source::PerScrumBoard(_) => Some("boards"),
            Source::FieldOptions => Some("fields"),
            _ => None,
        };
        if let Some(leader) = leader {
            if section.interval_secs.is_some() {
                return Err(ConfigError::Load(format!(
                    "streams.{}.interval_secs: {} are listed after each run of the {leader} \
                     stream, under what it stored; remove the key",
                    kind.name, kind.name
                )));
            }
            // Listed under what the leader stored: after it.
            schedule.follows = Some(leader);
        }
        Ok(Reference { kind, schedule })
    }

    /// Every record of the kind, with what each was listed under.
    async fn list(
        &self,
        ctx: &StreamContext,
        run: &Run<'_>,
    ) -> anyhow::Result<Vec<(RawRecord, Under)>> {
        let client = &ctx.client;
        let mut records = Vec::new();
        match (self.kind.source, ctx.flavor()) {
            (Source::List(path), _) | (Source::Paged { list: path, .. }, Flavor::DataCenter) => {
                run.counters.request();
                let list: Vec<RawRecord> = client.get(&client.rest(path), &[]).await?;
                records.extend(list.into_iter().map(|r| (r, Under::default())));
            }
            (Source::Paged { paged, .. }, Flavor::Cloud) => {
                let path = client.rest(paged);
                for record in bean_pages(ctx, run, &path, PAGE_SIZE, &[]).await? {
                    records.push((record, Under::default()));
                }
            }
            (Source::Agile(path), _) => {
                for record in bean_pages(ctx, run, path, AGILE_PAGE_SIZE, &[]).await? {
                    records.push((record, Under::default()));
                }
            }
            (Source::FieldOptions | Source::GroupMembers, Flavor::DataCenter) => {
                unreachable!("field options and groups are not listed on Data Center")
            }
            (Source::GroupMembers, Flavor::Cloud) => {
                let path = client.rest("group/bulk");
                for group in bean_pages(ctx, run, &path, GROUP_PAGE_SIZE, &[]).await? {
                    let group: Group = serde_json::from_str(group.get())
                        .map_err(|e| anyhow::anyhow!("a group is unreadable: {e}"))?;
                    let query = [
                        ("groupId", group.group_id.clone()),
                        ("includeInactiveUsers", "true".to_owned()),
                    ];
                    let path = client.rest("group/member");
                    let under = Under {
                        id: None,
                        key: Some(group.group_id),
                        name: group.name,
                    };
                    match bean_pages(ctx, run, &path, GROUP_PAGE_SIZE, &query).await {
                        Ok(list) => records.extend(list.into_iter().map(|r| (r, under.clone()))),
                        // Deleted since it was listed.
                        Err(err) if gone(&err) => {}
                        Err(err) => return Err(err),
                    }
                }
            }
            (Source::FieldOptions, Flavor::Cloud) => {
                for field in ctx
                    .store
                    .custom_fields_of_types(&ctx.site, &OPTION_TYPES)
                    .await?
                {
                    let path = client.rest(&format!("field/{field}/context"));
                    let contexts = match bean_pages(ctx, run, &path, PAGE_SIZE, &[]).await {
                        Ok(list) => list,
                        // Deleted since the fields stream listed it.
                        Err(err) if gone(&err) => continue,
                        Err(err) => return Err(err),
                    };
                    for context in contexts {
                        let context: FieldContext =
                            serde_json::from_str(context.get()).map_err(|e| {
                                anyhow::anyhow!("a context of field {field} is unreadable: {e}")
                            })?;
                        let id = context.id.as_i64().ok_or_else(|| {
                            anyhow::anyhow!(
                                "a context of field {field} has the id {:?}",
                                context.id
                            )
                        })?;
                        let path = client.rest(&format!("field/{field}/context/{id}/option"));
                        let under = Under {
                            id: Some(id),
                            key: Some(field.clone()),
                            name: None,
                        };
                        match bean_pages(ctx, run, &path, PAGE_SIZE, &[]).await {
                            Ok(list) => {
                                records.extend(list.into_iter().map(|r| (r, under.clone())));
                            }
                            Err(err) if gone(&err) => {}
                            Err(err) => return Err(err),
                        }
                    }
                }
            }
            (Source::PerScrumBoard(template), _) => {
                let boards = ctx.store.live_scrum_boards(&ctx.site).await?;
                for board in boards {
                    let path = template.replace("{board}", &board.to_string());
                    match bean_pages(ctx, run, &path, AGILE_PAGE_SIZE, &[]).await {
                        Ok(list) => {
                            records.extend(list.into_iter().map(|r| (r, Under::id(board))));
                        }
                        // Gone, hidden, or no longer a scrum board since it was listed.
                        Err(err) if gone(&err) => {}
                        Err(err) => return Err(err),
                    }
                }
            }
            (Source::PerProject(template), _) => {
                let projects = ctx
                    .store
                    .live_ids(&super::projects::TABLE, &ctx.site)
                    .await?;
                for project in projects {
                    let path = client.rest(&template.replace("{project}", &project.to_string()));
                    run.counters.request();
                    match client.get::<Vec<RawRecord>>(&path, &[]).await {
                        Ok(list) => {
                            records.extend(list.into_iter().map(|r| (r, Under::id(project))));
                        }
                        // Gone or hidden since the projects stream listed it: its records
                        // leave with it.
                        Err(JiraError::NotFound { .. }) => {}
                        Err(err) => return Err(err.into()),
                    }
                }
            }
        }
        Ok(records)
    }
}

/// A custom field's context, as far as it is read here.
#[derive(Debug, Deserialize)]
struct FieldContext {
    id: crate::jira::model::FlexId,
}

impl Reference {
    /// Field options: the contexts of the first option-valued custom field `field` lists
    /// (only administrators may read them). Cloud only ([`cloud_only`]).
    async fn probe_options(&self, probe: &Probe<'_>) -> Result<Availability, JiraError> {
        let fields = match probe.request(&probe.client.rest("field"), &[]).await? {
            Ok(fields) => fields,
            Err(refusal) => return Ok(refusal.unreadable(self.kind.fix)),
        };
        let first = fields.as_array().into_iter().flatten().find(|f| {
            f.pointer("/schema/custom")
                .and_then(Value::as_str)
                .is_some_and(|c| OPTION_TYPES.contains(&c))
        });
        let Some(id) = first.and_then(|f| f.get("id")).and_then(Value::as_str) else {
            return Ok(Availability::Readable {
                detail: Some("no custom field has options".to_owned()),
            });
        };
        let path = probe.client.rest(&format!("field/{id}/context"));
        self.readable(probe, &path, &[("maxResults", "1".to_owned())])
            .await
    }

    /// Whether one request for `path` is answered: readable, or unreadable with the kind's fix.
    async fn readable(
        &self,
        probe: &Probe<'_>,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Availability, JiraError> {
        Ok(match probe.request(path, query).await? {
            Ok(_) => Availability::Readable { detail: None },
            Err(refusal) => refusal.unreadable(self.kind.fix),
        })
    }
}

/// The custom field types whose values are options (`schema.custom`).
const OPTION_TYPES: [&str; 5] = [
    "com.atlassian.jira.plugin.system.customfieldtypes:select",
    "com.atlassian.jira.plugin.system.customfieldtypes:multiselect",
    "com.atlassian.jira.plugin.system.customfieldtypes:radiobuttons",
    "com.atlassian.jira.plugin.system.customfieldtypes:multicheckboxes",
    "com.atlassian.jira.plugin.system.customfieldtypes:cascadingselect",
];

/// A group, as `group/bulk` lists it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Group {
    group_id: String,
    #[serde(default)]
    name: Option<String>,
}

/// Groups and members are listed 50 a page (the member listing's maximum).
const GROUP_PAGE_SIZE: usize = 50;

/// Every page of a PageBean listing at `path` (absolute) with `query`, `size` records a page.
async fn bean_pages(
    ctx: &StreamContext,
    run: &Run<'_>,
    path: &str,
    size: usize,
    query: &[(&str, String)],
) -> anyhow::Result<Vec<RawRecord>> {
    let mut records = Vec::new();
    let mut start = 0;
    for _ in 0..MAX_PAGES {
        run.counters.request();
        let page: PageBean = ctx
            .client
            .get(
                path,
                &[
                    query,
                    &[
                        ("startAt", start.to_string()),
                        ("maxResults", size.to_string()),
                    ],
                ]
                .concat(),
            )
            .await?;
        let got = page.values.len();
        records.extend(page.values);
        if page.is_last.unwrap_or(true) || got == 0 {
            return Ok(records);
        }
        start += got;
    }
    anyhow::bail!(
        "{path} did not end after {MAX_PAGES} pages: the server does not page as Jira does"
    )
}

/// Whether `err` says the listed thing is gone or not listable (404, or 400 for a board that
/// does not support sprints).
fn gone(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<JiraError>(),
        Some(JiraError::NotFound { .. } | JiraError::BadRequest { .. })
    )
}

/// Whether `err` is a 403.
fn forbidden(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<JiraError>(),
        Some(JiraError::Forbidden { .. })
    )
}

/// Why a kind listed through Cloud-only endpoints is not listed on Data Center.
fn cloud_only(source: Source, flavor: Flavor) -> Option<&'static str> {
    match (source, flavor) {
        (Source::FieldOptions, Flavor::DataCenter) => Some(
            "Data Center has no custom field context API: field options are listed on Jira \
             Cloud only",
        ),
        (Source::GroupMembers, Flavor::DataCenter) => Some(
            "groups are listed through group/bulk, which Data Center lacks: user groups are \
             listed on Jira Cloud only",
        ),
        _ => None,
    }
}

/// The Agile API's page size (its documented default).
const AGILE_PAGE_SIZE: usize = 50;

#[async_trait::async_trait]
impl Stream for Reference {
    fn name(&self) -> &'static str {
        self.kind.name
    }

    fn schedule(&self) -> Schedule {
        self.schedule
    }

    async fn run(&self, ctx: &StreamContext, run: &Run<'_>) -> anyhow::Result<StreamStatus> {
        let kind = self.kind;
        if let Some(why) = cloud_only(kind.source, ctx.flavor()) {
            return Ok(StreamStatus::Skipped(why.to_owned()));
        }
        let needs_permission = matches!(kind.source, Source::FieldOptions | Source::GroupMembers);
        let records = match self.list(ctx, run).await {
            Ok(records) => records,
            // Listed with a global permission only: the rest of the site syncs without it.
            Err(err) if needs_permission && forbidden(&err) => {
                return Ok(StreamStatus::Skipped(format!("{err:#}; {}", kind.fix)));
            }
            Err(err) => return Err(err),
        };
        let total = records.len();
        let mut seen: Vec<String> = Vec::with_capacity(total);
        let mut batch = Batch::new(kind.table, &ctx.site);
        let mut set_aside = Vec::new();
        let mut unique: std::collections::HashSet<String> = std::collections::HashSet::new();
        // Records listed under one project are read together, with that project's id.
        let mut groups: Vec<(Under, Vec<RawRecord>)> = Vec::new();
        for (record, under) in records {
            match groups.last_mut() {
                Some((u, list)) if *u == under => list.push(record),
                _ => groups.push((under, vec![record])),
            }
        }
        for (under, list) in groups {
            let read = read_records(kind.name, kind.entity, list, |v| (kind.parse)(&v, &under));
            for cells in read.rows {
                let id = match cells.first() {
                    Some(Cell::Int8(Some(id))) => id.to_string(),
                    Some(Cell::Text(Some(id))) => id.clone(),
                    _ => continue,
                };
                // A sprint shows on every board that holds its issues: stored once, by id.
                if unique.insert(id.clone()) {
                    seen.push(id);
                    batch.push(cells);
                }
            }
            seen.extend(read.set_aside.iter().map(|s| s.record_id.clone()));
            set_aside.extend(read.set_aside);
        }
        let mut page = PageWrite::new(kind.name, batch, CheckpointWrite::None);
        page.set_aside = set_aside;
        page.resolves = true;
        page.listing = Some((kind.table, seen));
        let written = ctx.store.write_page(&ctx.site, page).await?;
        run.counters.page(total, written, run.progress);
        Ok(StreamStatus::Done)
    }

    fn rows(&self, site: &str) -> Option<Count> {
        Some(Count {
            table: self.kind.table,
            owner: site.to_owned(),
            which: Which::Live,
        })
    }

    async fn probe(&self, probe: &Probe<'_>) -> Option<Result<Availability, JiraError>> {
        if let Some(why) = cloud_only(self.kind.source, probe.client.flavor()) {
            return Some(Ok(Availability::NotConfigured {
                reason: why.to_owned(),
            }));
        }
        let one = || vec![("maxResults", "1".to_owned())];
        let (path, query) = match (self.kind.source, probe.client.flavor()) {
            (Source::List(path), _) | (Source::Paged { list: path, .. }, Flavor::DataCenter) => {
                (probe.client.rest(path), vec![])
            }
            (Source::Paged { paged, .. }, Flavor::Cloud) => (probe.client.rest(paged), one()),
            (Source::GroupMembers, _) => (probe.client.rest("group/bulk"), one()),
            (Source::Agile(path), _) => (path.to_owned(), one()),
            (Source::FieldOptions, _) => return Some(self.probe_options(probe).await),
            // Listed per project or board: readable wherever those are.
            (Source::PerProject(_) | Source::PerScrumBoard(_), _) => return None,
        };
        Some(self.readable(probe, &path, &query).await)
    }
}

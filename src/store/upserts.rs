//! Batched upserts: one statement per page, columns bound as arrays and expanded with UNNEST.
//!
//! Rules every upsert keeps: an older version never overwrites a newer one (issues compare
//! `updated`), and an unchanged row is not rewritten (`raw IS DISTINCT FROM`), so the number of
//! affected rows is exactly the number of rows that changed.

use super::rows::{AuditRow, IssueRow, OrgEventRow, ProjectRow, UserRow};
use sqlx::PgConnection;

const UPSERT_PROJECTS: &str = r#"
INSERT INTO jira.projects AS t (site, id, key, name, project_type, style, simplified, category_id,
    category_name, lead_account_id, is_private, archived, archived_at, raw, synced_at, deleted_at)
SELECT $1, u.id, u.key, u.name, u.project_type, u.style, u.simplified, u.category_id,
    u.category_name, u.lead_account_id, u.is_private, u.archived, u.archived_at, u.raw, now(), NULL
FROM UNNEST($2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[], $8::int8[],
    $9::text[], $10::text[], $11::bool[], $12::bool[], $13::timestamptz[], $14::jsonb[])
    AS u(id, key, name, project_type, style, simplified, category_id, category_name,
         lead_account_id, is_private, archived, archived_at, raw)
ON CONFLICT (site, id) DO UPDATE SET
    key = excluded.key, name = excluded.name, project_type = excluded.project_type,
    style = excluded.style, simplified = excluded.simplified, category_id = excluded.category_id,
    category_name = excluded.category_name, lead_account_id = excluded.lead_account_id,
    is_private = excluded.is_private, archived = excluded.archived,
    archived_at = excluded.archived_at, raw = excluded.raw, synced_at = excluded.synced_at,
    deleted_at = NULL
WHERE t.raw IS DISTINCT FROM excluded.raw OR t.deleted_at IS NOT NULL
"#;

pub async fn upsert_projects(
    conn: &mut PgConnection,
    site: &str,
    rows: &[ProjectRow],
) -> sqlx::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let result = sqlx::query(UPSERT_PROJECTS)
        .bind(site)
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.key.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.project_type.clone())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.style.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.simplified).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.category_id).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.category_name.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.lead_account_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.is_private).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.archived).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.archived_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| &r.raw).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}

const MARK_PROJECTS_DELETED: &str = r#"
UPDATE jira.projects SET deleted_at = now()
WHERE site = $1 AND deleted_at IS NULL AND NOT (id = ANY($2::int8[]))
"#;

/// Soft-deletes the projects of `site` that are not in `seen`. Returns how many were marked.
pub async fn mark_projects_deleted(
    conn: &mut PgConnection,
    site: &str,
    seen: &[i64],
) -> sqlx::Result<u64> {
    let result = sqlx::query(MARK_PROJECTS_DELETED)
        .bind(site)
        .bind(seen)
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}

const UPSERT_ISSUES: &str = r#"
INSERT INTO jira.issues AS t (site, id, key, project_id, project_key, issue_type, issue_type_id,
    is_subtask, status, status_id, status_category, priority, resolution, assignee_account_id,
    reporter_account_id, creator_account_id, parent_id, parent_key, summary, labels, created,
    updated, resolved_at, due_date, raw, synced_at, deleted_at)
SELECT $1, u.id, u.key, u.project_id, u.project_key, u.issue_type, u.issue_type_id, u.is_subtask,
    u.status, u.status_id, u.status_category, u.priority, u.resolution, u.assignee, u.reporter,
    u.creator, u.parent_id, u.parent_key, u.summary,
    ARRAY(SELECT jsonb_array_elements_text(u.labels)), u.created, u.updated, u.resolved_at,
    u.due_date, u.raw, now(), NULL
FROM UNNEST($2::int8[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::text[], $8::bool[],
    $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
    $16::text[], $17::int8[], $18::text[], $19::text[], $20::jsonb[], $21::timestamptz[],
    $22::timestamptz[], $23::timestamptz[], $24::date[], $25::jsonb[])
    AS u(id, key, project_id, project_key, issue_type, issue_type_id, is_subtask, status,
         status_id, status_category, priority, resolution, assignee, reporter, creator,
         parent_id, parent_key, summary, labels, created, updated, resolved_at, due_date, raw)
ON CONFLICT (site, id) DO UPDATE SET
    key = excluded.key, project_id = excluded.project_id, project_key = excluded.project_key,
    issue_type = excluded.issue_type, issue_type_id = excluded.issue_type_id,
    is_subtask = excluded.is_subtask, status = excluded.status, status_id = excluded.status_id,
    status_category = excluded.status_category, priority = excluded.priority,
    resolution = excluded.resolution, assignee_account_id = excluded.assignee_account_id,
    reporter_account_id = excluded.reporter_account_id,
    creator_account_id = excluded.creator_account_id, parent_id = excluded.parent_id,
    parent_key = excluded.parent_key, summary = excluded.summary, labels = excluded.labels,
    created = excluded.created, updated = excluded.updated, resolved_at = excluded.resolved_at,
    due_date = excluded.due_date, raw = excluded.raw, synced_at = excluded.synced_at,
    deleted_at = NULL
WHERE excluded.updated >= t.updated
  AND (t.raw IS DISTINCT FROM excluded.raw OR t.deleted_at IS NOT NULL)
"#;

/// Upserts a page of issues. Rows must have distinct ids (PostgreSQL rejects a statement that
/// updates one row twice); [`dedupe_issues`] ensures it.
pub async fn upsert_issues(
    conn: &mut PgConnection,
    site: &str,
    rows: &[IssueRow],
) -> sqlx::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let text =
        |f: fn(&IssueRow) -> &Option<String>| rows.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
    let result = sqlx::query(UPSERT_ISSUES)
        .bind(site)
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.key.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.project_id).collect::<Vec<_>>())
        .bind(text(|r| &r.project_key))
        .bind(text(|r| &r.issue_type))
        .bind(text(|r| &r.issue_type_id))
        .bind(rows.iter().map(|r| r.is_subtask).collect::<Vec<_>>())
        .bind(text(|r| &r.status))
        .bind(text(|r| &r.status_id))
        .bind(text(|r| &r.status_category))
        .bind(text(|r| &r.priority))
        .bind(text(|r| &r.resolution))
        .bind(text(|r| &r.assignee_account_id))
        .bind(text(|r| &r.reporter_account_id))
        .bind(text(|r| &r.creator_account_id))
        .bind(rows.iter().map(|r| r.parent_id).collect::<Vec<_>>())
        .bind(text(|r| &r.parent_key))
        .bind(text(|r| &r.summary))
        .bind(rows.iter().map(|r| &r.labels).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.updated).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.resolved_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.due_date).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| &r.raw).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}

/// Keeps one row per issue id, the newest by `updated` (a page read while Jira changes can
/// repeat an issue).
pub fn dedupe_issues(rows: &mut Vec<IssueRow>) {
    rows.sort_by(|a, b| a.id.cmp(&b.id).then(b.updated.cmp(&a.updated)));
    rows.dedup_by_key(|r| r.id);
}

const UPSERT_USERS: &str = r#"
INSERT INTO jira.users AS t (site, account_id, account_type, app_type, display_name, email,
    active, time_zone, locale, raw, synced_at)
SELECT $1, u.account_id, u.account_type, u.app_type, u.display_name, u.email, u.active,
    u.time_zone, u.locale, u.raw, now()
FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[], $8::text[],
    $9::text[], $10::jsonb[])
    AS u(account_id, account_type, app_type, display_name, email, active, time_zone, locale, raw)
ON CONFLICT (site, account_id) DO UPDATE SET
    account_type = excluded.account_type, app_type = excluded.app_type,
    display_name = excluded.display_name, email = excluded.email, active = excluded.active,
    time_zone = excluded.time_zone, locale = excluded.locale, raw = excluded.raw,
    synced_at = excluded.synced_at
WHERE t.raw IS DISTINCT FROM excluded.raw
"#;

pub async fn upsert_users(
    conn: &mut PgConnection,
    site: &str,
    rows: &[UserRow],
) -> sqlx::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let text =
        |f: fn(&UserRow) -> &Option<String>| rows.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
    let result = sqlx::query(UPSERT_USERS)
        .bind(site)
        .bind(
            rows.iter()
                .map(|r| r.account_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(text(|r| &r.account_type))
        .bind(text(|r| &r.app_type))
        .bind(text(|r| &r.display_name))
        .bind(text(|r| &r.email))
        .bind(rows.iter().map(|r| r.active).collect::<Vec<_>>())
        .bind(text(|r| &r.time_zone))
        .bind(text(|r| &r.locale))
        .bind(rows.iter().map(|r| &r.raw).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}

const INSERT_AUDIT: &str = r#"
INSERT INTO jira.audit_records (site, id, created, category, summary, description, event_source,
    author_account_id, remote_address, object_item, changed_values, associated_items, raw,
    synced_at)
SELECT $1, u.id, u.created, u.category, u.summary, u.description, u.event_source, u.author,
    u.remote_address, u.object_item, u.changed_values, u.associated_items, u.raw, now()
FROM UNNEST($2::int8[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::text[], $10::jsonb[], $11::jsonb[], $12::jsonb[], $13::jsonb[])
    AS u(id, created, category, summary, description, event_source, author, remote_address,
         object_item, changed_values, associated_items, raw)
ON CONFLICT (site, id) DO UPDATE SET
    created = excluded.created, category = excluded.category, summary = excluded.summary,
    description = excluded.description, event_source = excluded.event_source,
    author_account_id = excluded.author_account_id, remote_address = excluded.remote_address,
    object_item = excluded.object_item, changed_values = excluded.changed_values,
    associated_items = excluded.associated_items, raw = excluded.raw,
    synced_at = excluded.synced_at
WHERE jira.audit_records.raw IS DISTINCT FROM excluded.raw
"#;

/// Inserts a page of audit records; a record already stored unchanged is not rewritten.
/// Rows must have distinct ids.
pub async fn upsert_audit(
    conn: &mut PgConnection,
    site: &str,
    rows: &[AuditRow],
) -> sqlx::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let text =
        |f: fn(&AuditRow) -> &Option<String>| rows.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
    let result = sqlx::query(INSERT_AUDIT)
        .bind(site)
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created).collect::<Vec<_>>())
        .bind(text(|r| &r.category))
        .bind(text(|r| &r.summary))
        .bind(text(|r| &r.description))
        .bind(text(|r| &r.event_source))
        .bind(text(|r| &r.author_account_id))
        .bind(text(|r| &r.remote_address))
        .bind(
            rows.iter()
                .map(|r| r.object_item.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.changed_values.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.associated_items.clone())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| &r.raw).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}

const UPSERT_ORG_EVENTS: &str = r#"
INSERT INTO jira.org_events AS t (org_id, id, time, processed_at, action, actor_id, actor_name,
    actor_email, ip, product, message, context, container, raw, synced_at)
SELECT $1, u.id, u.time, u.processed_at, u.action, u.actor_id, u.actor_name, u.actor_email,
    u.ip, u.product, u.message, u.context, u.container, u.raw, now()
FROM UNNEST($2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::text[],
    $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::jsonb[], $13::jsonb[],
    $14::jsonb[])
    AS u(id, time, processed_at, action, actor_id, actor_name, actor_email, ip, product,
         message, context, container, raw)
ON CONFLICT (org_id, id) DO UPDATE SET
    time = excluded.time, processed_at = excluded.processed_at, action = excluded.action,
    actor_id = excluded.actor_id, actor_name = excluded.actor_name,
    actor_email = excluded.actor_email, ip = excluded.ip, product = excluded.product,
    message = excluded.message, context = excluded.context, container = excluded.container,
    raw = excluded.raw, synced_at = excluded.synced_at
WHERE t.raw IS DISTINCT FROM excluded.raw
"#;

/// Upserts a page of organization events; an event already stored unchanged is not rewritten.
/// Rows must have distinct ids ([`dedupe_org_events`]).
pub async fn upsert_org_events(
    conn: &mut PgConnection,
    org_id: &str,
    rows: &[OrgEventRow],
) -> sqlx::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let text = |f: fn(&OrgEventRow) -> &Option<String>| {
        rows.iter().map(|r| f(r).clone()).collect::<Vec<_>>()
    };
    let json = |f: fn(&OrgEventRow) -> &Option<serde_json::Value>| {
        rows.iter().map(|r| f(r).clone()).collect::<Vec<_>>()
    };
    let result = sqlx::query(UPSERT_ORG_EVENTS)
        .bind(org_id)
        .bind(rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.time).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.processed_at).collect::<Vec<_>>())
        .bind(text(|r| &r.action))
        .bind(text(|r| &r.actor_id))
        .bind(text(|r| &r.actor_name))
        .bind(text(|r| &r.actor_email))
        .bind(text(|r| &r.ip))
        .bind(text(|r| &r.product))
        .bind(text(|r| &r.message))
        .bind(json(|r| &r.context))
        .bind(json(|r| &r.container))
        .bind(rows.iter().map(|r| &r.raw).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}

/// Keeps one row per event id, the last one read (a feed may repeat an event within a page).
pub fn dedupe_org_events(rows: &mut Vec<OrgEventRow>) {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<OrgEventRow> = rows
        .drain(..)
        .rev()
        .filter(|r| seen.insert(r.id.clone()))
        .collect();
    kept.reverse();
    *rows = kept;
}

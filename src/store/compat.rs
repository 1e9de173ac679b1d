//! The Fivetran-compatible schema (`[database] fivetran_schema`, `jira_fivetran` by default):
//! views over the `jira` tables of one site with the names, columns and types Fivetran's Jira
//! connector produces and Fivetran's `dbt_jira` package reads. They are views, so they are as
//! current as the tables, within the same transactions. Timestamps are UTC without a zone,
//! as Fivetran writes them (the package casts every source column to `timestamp`).
//!
//! `issue_field_history` holds, per issue and single-valued field, the value it had at the
//! issue's creation (the `from` of its first change, or its current value when it never
//! changed, for the fields the package tracks), then one row per change, from the complete
//! change histories. `issue_multiselect_history` holds one row per value of the multi-valued
//! fields (labels, components, fix versions, affected versions, sprints) at the issue's
//! creation.

/// Fields the package follows that have a value from creation whether or not they changed.
const TRACKED: &str = "('status', i.status_id), ('assignee', i.assignee_account_id), \
     ('priority', i.raw->'fields'->'priority'->>'id'), ('issuetype', i.issue_type_id), \
     ('resolution', i.raw->'fields'->'resolution'->>'id'), ('summary', i.summary)";

/// Multi-valued fields: their changes are not single values.
const MULTI: &str = "('labels', 'components', 'fixVersions', 'versions', 'Sprint', 'Fix Version', \
     'Component')";

/// Whether `name` can be a schema name here: a plain lower-case identifier.
pub fn valid_schema_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
        && name != "jira"
}

/// The statements that create (or replace) the views of `site` in `schema`.
pub fn statements(schema: &str, site: &str) -> Vec<String> {
    let site = site.replace('\'', "''");
    let s = schema;
    let utc = |column: &str| format!("({column} AT TIME ZONE 'UTC')");
    let synced = utc("synced_at");
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {s}"),
        format!(
            "CREATE OR REPLACE VIEW {s}.issue AS SELECT i.id, \
             (i.deleted_at IS NOT NULL) AS _fivetran_deleted, {synced} AS _fivetran_synced, \
             NULL::float8 AS _original_estimate, NULL::float8 AS _remaining_estimate, \
             NULL::float8 AS _time_spent, i.assignee_account_id AS assignee, \
             {created} AS created, i.creator_account_id AS creator, \
             NULL::text AS description, i.due_date, NULL::text AS environment, \
             i.issue_type_id::bigint AS issue_type, i.issue_type_id::bigint AS work_type, i.key, \
             (i.raw->'fields'->>'timeoriginalestimate')::float8 AS original_estimate, \
             i.parent_id, (i.raw->'fields'->'priority'->>'id')::bigint AS priority, \
             i.project_id AS project, \
             (i.raw->'fields'->>'timeestimate')::float8 AS remaining_estimate, \
             i.reporter_account_id AS reporter, \
             (i.raw->'fields'->'resolution'->>'id')::bigint AS resolution, \
             {resolved} AS resolved, i.status_id::bigint AS status, \
             NULL::timestamp AS status_category_changed, i.summary, \
             (i.raw->'fields'->>'timespent')::float8 AS time_spent, {updated} AS updated, \
             (i.raw->'fields'->>'workratio')::float8 AS work_ratio \
             FROM jira.issues i WHERE i.site = '{site}'",
            created = utc("i.created"),
            resolved = utc("i.resolved_at"),
            updated = utc("i.updated"),
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.project AS SELECT id, {synced} AS _fivetran_synced, \
             raw->>'description' AS description, key, lead_account_id AS lead_id, name, \
             NULL::bigint AS permission_scheme_id, category_id AS project_category_id \
             FROM jira.projects WHERE site = '{site}' AND deleted_at IS NULL"
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.\"user\" AS SELECT account_id AS id, \
             {synced} AS _fivetran_synced, email, locale, display_name AS name, time_zone, \
             NULL::text AS username, active AS is_active \
             FROM jira.users WHERE site = '{site}'"
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.issue_type AS SELECT id, {synced} AS _fivetran_synced, \
             description, name, subtask \
             FROM jira.issue_types WHERE site = '{site}' AND deleted_at IS NULL"
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.status AS SELECT id, {synced} AS _fivetran_synced, \
             description, name, status_category_id \
             FROM jira.statuses WHERE site = '{site}' AND deleted_at IS NULL"
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.status_category AS SELECT id, \
             {synced} AS _fivetran_synced, name \
             FROM jira.status_categories WHERE site = '{site}' AND deleted_at IS NULL"
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.resolution AS SELECT id, {synced} AS _fivetran_synced, \
             description, name \
             FROM jira.resolutions WHERE site = '{site}' AND deleted_at IS NULL"
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.priority AS SELECT id, {synced} AS _fivetran_synced, \
             description, name \
             FROM jira.priorities WHERE site = '{site}' AND deleted_at IS NULL"
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.comment AS SELECT id, {synced} AS _fivetran_synced, \
             author_account_id AS author_id, body_text AS body, {created} AS created, \
             coalesce(jsd_public, visibility IS NULL) AS is_public, issue_id, \
             update_author_account_id AS update_author_id, {updated} AS updated \
             FROM jira.comments WHERE site = '{site}' AND deleted_at IS NULL",
            created = utc("created"),
            updated = utc("updated"),
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.component AS SELECT id, {synced} AS _fivetran_synced, \
             description, name, project_id \
             FROM jira.components WHERE site = '{site}' AND deleted_at IS NULL"
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.field AS SELECT id, {synced} AS _fivetran_synced, \
             (schema_type = 'array') AS is_array, custom AS is_custom, name \
             FROM jira.fields WHERE site = '{site}' AND deleted_at IS NULL"
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.field_option AS SELECT id, \
             {synced} AS _fivetran_synced, parent_id, value AS name \
             FROM jira.field_options WHERE site = '{site}' AND deleted_at IS NULL"
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.issue_link AS SELECT issue_id, related_issue_id, \
             outward AS relationship, {synced} AS _fivetran_synced \
             FROM jira.issue_links WHERE site = '{site}' AND deleted_at IS NULL"
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.sprint AS SELECT id, \
             (deleted_at IS NOT NULL) AS _fivetran_deleted, {synced} AS _fivetran_synced, \
             origin_board_id AS board_id, {complete} AS complete_date, {end} AS end_date, \
             name, {start} AS start_date \
             FROM jira.sprints WHERE site = '{site}'",
            complete = utc("complete_date"),
            end = utc("end_date"),
            start = utc("start_date"),
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.version AS SELECT id, {synced} AS _fivetran_synced, \
             archived, description, name, \
             (NOT coalesce(released, false) AND release_date < current_date) AS overdue, \
             project_id, release_date, released, start_date \
             FROM jira.versions WHERE site = '{site}' AND deleted_at IS NULL"
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.issue_field_history AS \
             WITH items AS ( \
               SELECT c.issue_id, c.created, c.id AS changelog_id, c.author_account_id, \
                      coalesce(it.item->>'fieldId', it.item->>'field') AS field_id, \
                      coalesce(it.item->>'to', it.item->>'toString') AS value, \
                      coalesce(it.item->>'from', it.item->>'fromString') AS before, it.ord \
               FROM jira.changelogs c \
               CROSS JOIN LATERAL jsonb_array_elements(c.items) WITH ORDINALITY AS it(item, ord) \
               WHERE c.site = '{site}' AND c.deleted_at IS NULL \
             ), single AS ( \
               SELECT * FROM items WHERE field_id NOT IN {MULTI} \
             ), live AS ( \
               SELECT * FROM jira.issues WHERE site = '{site}' AND deleted_at IS NULL \
             ), changes AS ( \
               SELECT s.field_id, s.issue_id, s.created AS time, s.value, \
                      s.author_account_id AS author_id, s.changelog_id, s.ord, 1 AS rank \
               FROM single s JOIN live i ON i.id = s.issue_id \
             ), first_values AS ( \
               SELECT DISTINCT ON (s.field_id, s.issue_id) s.field_id, s.issue_id, \
                      i.created AS time, s.before AS value, i.creator_account_id AS author_id, \
                      0::bigint AS changelog_id, 0::bigint AS ord, 0 AS rank \
               FROM single s JOIN live i ON i.id = s.issue_id \
               ORDER BY s.field_id, s.issue_id, s.created, s.changelog_id, s.ord \
             ), unchanged AS ( \
               SELECT f.field_id, i.id AS issue_id, i.created AS time, f.value, \
                      i.creator_account_id AS author_id, 0::bigint AS changelog_id, \
                      0::bigint AS ord, 0 AS rank \
               FROM live i CROSS JOIN LATERAL (VALUES {TRACKED}) AS f(field_id, value) \
               WHERE f.value IS NOT NULL AND NOT EXISTS ( \
                 SELECT 1 FROM single s WHERE s.issue_id = i.id AND s.field_id = f.field_id) \
             ), every AS ( \
               SELECT * FROM changes UNION ALL SELECT * FROM first_values \
               UNION ALL SELECT * FROM unchanged \
             ) \
             SELECT DISTINCT ON (field_id, issue_id, time) field_id, issue_id, \
                    (time AT TIME ZONE 'UTC') AS time, now() AT TIME ZONE 'UTC' AS _fivetran_synced, \
                    value, true AS is_active, author_id \
             FROM every ORDER BY field_id, issue_id, time, rank DESC, changelog_id DESC, ord DESC"
        ),
        format!(
            "CREATE OR REPLACE VIEW {s}.issue_multiselect_history AS \
             WITH live AS ( \
               SELECT * FROM jira.issues WHERE site = '{site}' AND deleted_at IS NULL \
             ), current_values AS ( \
               SELECT 'labels' AS field_id, i.id AS issue_id, i.created, \
                      i.creator_account_id AS author_id, l.value \
               FROM live i CROSS JOIN LATERAL jsonb_array_elements_text( \
                 coalesce(i.raw->'fields'->'labels', '[]')) AS l(value) \
               UNION ALL \
               SELECT f.field_id, i.id, i.created, i.creator_account_id, v->>'id' \
               FROM live i CROSS JOIN LATERAL (VALUES ('components'), ('fixVersions'), \
                 ('versions')) AS f(field_id) \
               CROSS JOIN LATERAL jsonb_array_elements( \
                 CASE jsonb_typeof(i.raw->'fields'->f.field_id) WHEN 'array' \
                 THEN i.raw->'fields'->f.field_id ELSE '[]' END) AS v \
               UNION ALL \
               SELECT f.id, i.id, i.created, i.creator_account_id, v->>'id' \
               FROM live i JOIN jira.fields f ON f.site = '{site}' AND f.deleted_at IS NULL \
                 AND f.schema_custom = 'com.pyxis.greenhopper.jira:gh-sprint' \
               CROSS JOIN LATERAL jsonb_array_elements( \
                 CASE jsonb_typeof(i.raw->'fields'->f.id) WHEN 'array' \
                 THEN i.raw->'fields'->f.id ELSE '[]' END) AS v \
             ) \
             SELECT DISTINCT md5(field_id || ':' || issue_id || ':' || value) AS _fivetran_id, \
                    field_id, issue_id, (created AT TIME ZONE 'UTC') AS time, \
                    now() AT TIME ZONE 'UTC' AS _fivetran_synced, value, true AS is_active, \
                    author_id \
             FROM current_values WHERE value IS NOT NULL"
        ),
    ]
}

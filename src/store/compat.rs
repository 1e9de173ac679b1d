//! The Fivetran-compatible schema (`[database] fivetran_schema`, `jira_fivetran` by default):
//! views over the `jira` tables of one site with the names, columns and types Fivetran's Jira
//! connector produces and Fivetran's `dbt_jira` package reads. They are views, so they are as
//! current as the tables, within the same transactions. Timestamps are UTC without a zone,
//! as Fivetran writes them (the package casts every source column to `timestamp`).
//!
//! `issue_field_history` holds, per issue and single-valued field, the value it had at the
//! issue's creation (the `from` of its first change, or its current value when it never
//! changed, for the fields the package tracks), then one row per change, from the complete
//! change histories. `issue_multiselect_history` holds, per issue and multi-valued field
//! (labels, components, fix versions, affected versions, sprints), one row per value of the
//! whole set it had at the creation and after each change (a row with a null value
//! where a change left it empty), rebuilt from the changelogs: labels and sprints are
//! recorded as whole sets (`fromString`/`toString`, space-separated; `from`/`to`, sprint ids),
//! components and versions one added or removed value per item. Other multi-valued custom
//! fields (multi-selects by option id, multi-user pickers by account id, string lists) give
//! their current values at creation; their changes are left out of both tables.

/// Fields the package follows that have a value from creation whether or not they changed.
const TRACKED: &str = "('status', i.status_id), ('assignee', i.assignee_account_id), \
     ('priority', i.raw->'fields'->'priority'->>'id'), ('issuetype', i.issue_type_id), \
     ('resolution', i.raw->'fields'->'resolution'->>'id'), ('summary', i.summary)";

/// The Sprint field's type.
const SPRINT_TYPE: &str = "com.pyxis.greenhopper.jira:gh-sprint";

/// Multi-valued fields: their changes are not single values.
const MULTI: &str = "('labels', 'components', 'fixVersions', 'versions', 'Sprint', 'Fix Version', \
     'Component', 'Version')";

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
                      coalesce(it.item->>'from', it.item->>'fromString') AS before, it.ord, \
                      it.item->>'field' AS field_name \
               FROM jira.changelogs c \
               CROSS JOIN LATERAL jsonb_array_elements(c.items) WITH ORDINALITY AS it(item, ord) \
               WHERE c.site = '{site}' AND c.deleted_at IS NULL \
             ), single AS ( \
               SELECT * FROM items WHERE field_id NOT IN {MULTI} \
                 AND coalesce(field_name, '') NOT IN {MULTI} \
                 AND field_id NOT IN (SELECT id FROM jira.fields WHERE site = '{site}' \
                                      AND schema_type = 'array') \
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
             ), sprint_fields AS ( \
               SELECT id FROM jira.fields WHERE site = '{site}' AND deleted_at IS NULL \
                 AND schema_custom = '{SPRINT_TYPE}' \
             ), other_arrays AS ( \
               SELECT id FROM jira.fields WHERE site = '{site}' AND deleted_at IS NULL \
                 AND custom AND schema_type = 'array' \
                 AND schema_custom IS DISTINCT FROM '{SPRINT_TYPE}' \
             ), current_values AS ( \
               SELECT 'labels' AS field_id, i.id AS issue_id, l.value \
               FROM live i CROSS JOIN LATERAL jsonb_array_elements_text( \
                 CASE jsonb_typeof(i.raw->'fields'->'labels') WHEN 'array' \
                 THEN i.raw->'fields'->'labels' ELSE '[]' END) AS l(value) \
               UNION ALL \
               SELECT f.field_id, i.id, v->>'id' \
               FROM live i CROSS JOIN LATERAL (VALUES ('components'), ('fixVersions'), \
                 ('versions')) AS f(field_id) \
               CROSS JOIN LATERAL jsonb_array_elements( \
                 CASE jsonb_typeof(i.raw->'fields'->f.field_id) WHEN 'array' \
                 THEN i.raw->'fields'->f.field_id ELSE '[]' END) AS v \
               UNION ALL \
               SELECT f.id, i.id, v->>'id' \
               FROM live i CROSS JOIN sprint_fields f \
               CROSS JOIN LATERAL jsonb_array_elements( \
                 CASE jsonb_typeof(i.raw->'fields'->f.id) WHEN 'array' \
                 THEN i.raw->'fields'->f.id ELSE '[]' END) AS v \
               UNION ALL \
               SELECT f.id, i.id, CASE jsonb_typeof(v) WHEN 'object' \
                 THEN coalesce(v->>'id', v->>'accountId', v->>'value', v->>'name') \
                 ELSE v #>> '{{}}' END \
               FROM live i CROSS JOIN other_arrays f \
               CROSS JOIN LATERAL jsonb_array_elements( \
                 CASE jsonb_typeof(i.raw->'fields'->f.id) WHEN 'array' \
                 THEN i.raw->'fields'->f.id ELSE '[]' END) AS v \
             ), items AS ( \
               SELECT c.issue_id, c.created AS time, c.id AS changelog_id, \
                      c.author_account_id AS author_id, it.ord, it.item, \
                      CASE \
                        WHEN it.item->>'fieldId' IN (SELECT id FROM sprint_fields) \
                          THEN it.item->>'fieldId' \
                        WHEN it.item->>'fieldId' IS NULL AND it.item->>'field' = 'Sprint' \
                          THEN (SELECT min(id) FROM sprint_fields) \
                        WHEN coalesce(it.item->>'fieldId', it.item->>'field') = 'labels' \
                          THEN 'labels' \
                        WHEN it.item->>'fieldId' = 'components' OR it.item->>'field' = 'Component' \
                          THEN 'components' \
                        WHEN it.item->>'fieldId' = 'fixVersions' \
                          OR it.item->>'field' = 'Fix Version' THEN 'fixVersions' \
                        WHEN it.item->>'fieldId' = 'versions' OR it.item->>'field' = 'Version' \
                          THEN 'versions' \
                      END AS field_id \
               FROM jira.changelogs c JOIN live i ON i.id = c.issue_id \
               CROSS JOIN LATERAL jsonb_array_elements(c.items) WITH ORDINALITY AS it(item, ord) \
               WHERE c.site = '{site}' AND c.deleted_at IS NULL \
             ), whole AS ( \
               SELECT field_id, issue_id, time, changelog_id, ord, author_id, \
                 array_remove(CASE WHEN field_id = 'labels' \
                   THEN string_to_array(coalesce(item->>'fromString', ''), ' ') \
                   ELSE string_to_array(regexp_replace(coalesce(item->>'from', ''), '\\s', '', 'g'), ',') \
                 END, '') AS before, \
                 array_remove(CASE WHEN field_id = 'labels' \
                   THEN string_to_array(coalesce(item->>'toString', ''), ' ') \
                   ELSE string_to_array(regexp_replace(coalesce(item->>'to', ''), '\\s', '', 'g'), ',') \
                 END, '') AS after \
               FROM items WHERE field_id = 'labels' OR field_id IN (SELECT id FROM sprint_fields) \
             ), whole_sets AS ( \
               SELECT * FROM ( \
                 SELECT DISTINCT ON (field_id, issue_id, time) field_id, issue_id, time, \
                        author_id, after AS vals, false AS initial \
                 FROM whole ORDER BY field_id, issue_id, time, changelog_id DESC, ord DESC) a \
               UNION ALL \
               SELECT * FROM ( \
                 SELECT DISTINCT ON (w.field_id, w.issue_id) w.field_id, w.issue_id, \
                        i.created AS time, i.creator_account_id AS author_id, w.before AS vals, \
                        true AS initial \
                 FROM whole w JOIN live i ON i.id = w.issue_id \
                 ORDER BY w.field_id, w.issue_id, w.time, w.changelog_id, w.ord) b \
             ), delta AS ( \
               SELECT field_id, issue_id, time, changelog_id, ord, author_id, \
                      item->>'from' AS removed, item->>'to' AS added \
               FROM items WHERE field_id IN ('components', 'fixVersions', 'versions') \
             ), delta_events AS ( \
               SELECT field_id, issue_id, removed AS value, time, changelog_id, ord, \
                      false AS added FROM delta WHERE removed IS NOT NULL \
               UNION ALL \
               SELECT field_id, issue_id, added, time, changelog_id, ord, true \
               FROM delta WHERE added IS NOT NULL \
             ), delta_times AS ( \
               SELECT * FROM ( \
                 SELECT DISTINCT ON (field_id, issue_id, time) field_id, issue_id, time, \
                        author_id, false AS initial \
                 FROM delta ORDER BY field_id, issue_id, time, changelog_id DESC, ord DESC) a \
               UNION ALL \
               SELECT DISTINCT d.field_id, d.issue_id, i.created, i.creator_account_id, true \
               FROM delta d JOIN live i ON i.id = d.issue_id \
             ), universe AS ( \
               SELECT field_id, issue_id, value FROM delta_events \
               UNION \
               SELECT c.field_id, c.issue_id, c.value FROM current_values c \
               WHERE EXISTS (SELECT 1 FROM delta d \
                             WHERE d.field_id = c.field_id AND d.issue_id = c.issue_id) \
             ), delta_sets AS ( \
               SELECT t.field_id, t.issue_id, t.time, t.author_id, \
                      coalesce(array_agg(u.value) FILTER (WHERE m.member), '{{}}') AS vals, \
                      t.initial \
               FROM delta_times t \
               JOIN universe u ON u.field_id = t.field_id AND u.issue_id = t.issue_id \
               CROSS JOIN LATERAL (SELECT coalesce( \
                 (SELECT NOT e.added FROM delta_events e \
                  WHERE e.field_id = u.field_id AND e.issue_id = u.issue_id \
                    AND e.value = u.value AND (t.initial OR e.time > t.time) \
                  ORDER BY e.time, e.changelog_id, e.ord LIMIT 1), \
                 EXISTS (SELECT 1 FROM current_values c WHERE c.field_id = u.field_id \
                         AND c.issue_id = u.issue_id AND c.value = u.value)) AS member) m \
               GROUP BY t.field_id, t.issue_id, t.time, t.author_id, t.initial \
             ), unchanged AS ( \
               SELECT c.field_id, c.issue_id, i.created AS time, \
                      i.creator_account_id AS author_id, array_agg(c.value) AS vals, \
                      true AS initial \
               FROM current_values c JOIN live i ON i.id = c.issue_id \
               WHERE c.value IS NOT NULL AND NOT EXISTS ( \
                 SELECT 1 FROM items x WHERE x.field_id = c.field_id AND x.issue_id = c.issue_id) \
               GROUP BY c.field_id, c.issue_id, i.created, i.creator_account_id \
             ), sets AS ( \
               SELECT field_id, issue_id, time, author_id, vals, initial FROM whole_sets \
               UNION ALL \
               SELECT field_id, issue_id, time, author_id, vals, initial FROM delta_sets \
               UNION ALL \
               SELECT field_id, issue_id, time, author_id, vals, initial FROM unchanged \
             ), every AS ( \
               SELECT s.field_id, s.issue_id, s.time, s.author_id, v.value \
               FROM sets s CROSS JOIN LATERAL unnest(s.vals) AS v(value) \
               UNION ALL \
               SELECT field_id, issue_id, time, author_id, NULL \
               FROM sets WHERE cardinality(vals) = 0 AND NOT initial \
             ) \
             SELECT DISTINCT ON (field_id, issue_id, time, value) \
                    md5(field_id || ':' || issue_id || ':' || extract(epoch FROM time) || ':' \
                        || coalesce(value, '')) AS _fivetran_id, \
                    field_id, issue_id, (time AT TIME ZONE 'UTC') AS time, \
                    now() AT TIME ZONE 'UTC' AS _fivetran_synced, value, true AS is_active, \
                    author_id \
             FROM every ORDER BY field_id, issue_id, time, value"
        ),
    ]
}

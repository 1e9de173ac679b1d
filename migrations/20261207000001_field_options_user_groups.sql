-- Custom field options and group memberships.

-- The options of select, multi-select, radio, checkbox and cascading custom fields, read
-- through each field's contexts (Administer Jira is needed to list them). Option ids are unique
-- across the site; `parent_id` is the parent option of a cascading field's child option.
CREATE TABLE jira.field_options (
    site        text        NOT NULL,
    id          bigint      NOT NULL,
    field_id    text        NOT NULL,
    context_id  bigint      NOT NULL,
    parent_id   bigint,
    value       text,
    disabled    boolean,
    raw         jsonb       NOT NULL,
    synced_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    PRIMARY KEY (site, id)
);
CREATE INDEX field_options_field_idx ON jira.field_options (site, field_id);

-- Group memberships: one row per group and member (inactive members included), keyed by
-- `id` = '<group_id>:<account_id>'. Listing groups needs "Browse users and groups".
CREATE TABLE jira.user_groups (
    site        text        NOT NULL,
    id          text        NOT NULL,
    group_id    text        NOT NULL,
    group_name  text,
    account_id  text        NOT NULL,
    raw         jsonb       NOT NULL,
    synced_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    PRIMARY KEY (site, id)
);
CREATE INDEX user_groups_account_idx ON jira.user_groups (site, account_id);

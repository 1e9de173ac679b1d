-- The records of issues: every change history, comment, worklog and link, read with the issues
-- stream in the same run. Keyed by site first; `raw` keeps the record as Jira sent it; a record
-- Jira no longer shows is marked `deleted_at`, never deleted.

-- One row per change history (its items as Jira gives them: field, fieldtype, fieldId, from,
-- fromString, to, toString, and any other key).
CREATE TABLE jira.changelogs (
    site               text        NOT NULL,
    id                 bigint      NOT NULL,
    issue_id           bigint      NOT NULL,
    author_account_id  text,
    created            timestamptz NOT NULL,
    items              jsonb       NOT NULL,
    raw                jsonb       NOT NULL,
    synced_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    PRIMARY KEY (site, id)
);
CREATE INDEX changelogs_issue_idx ON jira.changelogs (site, issue_id, created);

CREATE TABLE jira.comments (
    site                      text        NOT NULL,
    id                        bigint      NOT NULL,
    issue_id                  bigint      NOT NULL,
    author_account_id         text,
    update_author_account_id  text,
    created                   timestamptz,
    updated                   timestamptz,
    -- The body (Atlassian Document Format) as plain text, for search and language models.
    body_text                 text,
    body                      jsonb,
    visibility                jsonb,
    jsd_public                boolean,
    raw                       jsonb       NOT NULL,
    synced_at                 timestamptz NOT NULL DEFAULT now(),
    deleted_at                timestamptz,
    PRIMARY KEY (site, id)
);
CREATE INDEX comments_issue_idx ON jira.comments (site, issue_id);

CREATE TABLE jira.worklogs (
    site                      text        NOT NULL,
    id                        bigint      NOT NULL,
    issue_id                  bigint      NOT NULL,
    author_account_id         text,
    update_author_account_id  text,
    started                   timestamptz,
    time_spent_seconds        bigint,
    created                   timestamptz,
    updated                   timestamptz,
    comment_text              text,
    raw                       jsonb       NOT NULL,
    synced_at                 timestamptz NOT NULL DEFAULT now(),
    deleted_at                timestamptz,
    PRIMARY KEY (site, id)
);
CREATE INDEX worklogs_issue_idx ON jira.worklogs (site, issue_id);
CREATE INDEX worklogs_started_idx ON jira.worklogs (site, started);

-- A link shows on both of its issues; its row names the one whose view says the link type's
-- outward description of the other ("A blocks B": issue_id A, related_issue_id B).
CREATE TABLE jira.issue_links (
    site              text        NOT NULL,
    id                bigint      NOT NULL,
    issue_id          bigint      NOT NULL,
    related_issue_id  bigint      NOT NULL,
    link_type_id      text,
    link_type_name    text,
    outward           text,
    inward            text,
    raw               jsonb       NOT NULL,
    synced_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    PRIMARY KEY (site, id)
);
CREATE INDEX issue_links_issue_idx ON jira.issue_links (site, issue_id);
CREATE INDEX issue_links_related_idx ON jira.issue_links (site, related_issue_id);

-- Which issues' records of each kind were read whole, and at which `updated` of the issue. An
-- issue whose `updated` is past its mark (or that has none) is behind: its records are read in
-- the same run. Committed with the issue pages, so a crash leaves issues behind, never wrongly
-- complete. `synced_updated` is null when the list was seen truncated.
CREATE TABLE jira.issue_child_sync (
    site            text        NOT NULL,
    child           text        NOT NULL,
    issue_id        bigint      NOT NULL,
    synced_updated  timestamptz,
    PRIMARY KEY (site, child, issue_id)
);

ALTER TABLE jira.sync_runs ADD COLUMN tables jsonb;
COMMENT ON COLUMN jira.sync_runs.tables IS
    'rows of other tables written with the stream''s own (the records of issues): per table, rows read and rows written';

-- As for issues: LZ4 where the server has it, never a reason for the migration to fail.
DO $$
BEGIN
    ALTER TABLE jira.changelogs ALTER COLUMN raw SET COMPRESSION lz4;
    ALTER TABLE jira.comments ALTER COLUMN raw SET COMPRESSION lz4;
    ALTER TABLE jira.worklogs ALTER COLUMN raw SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'the raw columns of issue records keep the default compression: %', SQLERRM;
END
$$;

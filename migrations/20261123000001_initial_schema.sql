-- The jira schema: one copy of each Jira entity per site, typed columns for analytics and the
-- full API record beside them (raw). Every key starts with the site, so one database can hold
-- several sites. Timestamps are timestamptz (converted from Jira's +0000-style offsets).

CREATE SCHEMA IF NOT EXISTS jira;

CREATE TABLE jira.projects (
    site             text        NOT NULL,
    id               bigint      NOT NULL,
    key              text        NOT NULL,
    name             text        NOT NULL,
    project_type     text,
    style            text,
    simplified       boolean,
    category_id      bigint,
    category_name    text,
    lead_account_id  text,
    is_private       boolean,
    archived         boolean     NOT NULL DEFAULT false,
    archived_at      timestamptz,
    raw              jsonb       NOT NULL,
    synced_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    PRIMARY KEY (site, id)
);
CREATE INDEX projects_key_idx ON jira.projects (site, key);

CREATE TABLE jira.issues (
    site                 text        NOT NULL,
    id                   bigint      NOT NULL,
    key                  text        NOT NULL,
    project_id           bigint      NOT NULL,
    project_key          text,
    issue_type           text,
    issue_type_id        text,
    is_subtask           boolean,
    status               text,
    status_id            text,
    status_category      text,
    priority             text,
    resolution           text,
    assignee_account_id  text,
    reporter_account_id  text,
    creator_account_id   text,
    parent_id            bigint,
    parent_key           text,
    summary              text,
    labels               text[]      NOT NULL DEFAULT '{}',
    created              timestamptz,
    updated              timestamptz NOT NULL,
    resolved_at          timestamptz,
    due_date             date,
    raw                  jsonb       NOT NULL,
    synced_at            timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz,
    PRIMARY KEY (site, id)
);
CREATE INDEX issues_project_idx  ON jira.issues (site, project_id);
CREATE INDEX issues_updated_idx  ON jira.issues (site, updated);
CREATE INDEX issues_assignee_idx ON jira.issues (site, assignee_account_id);
CREATE INDEX issues_key_idx      ON jira.issues (site, key);
CREATE INDEX issues_parent_idx   ON jira.issues (site, parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE jira.users (
    site          text        NOT NULL,
    account_id    text        NOT NULL,
    account_type  text,
    app_type      text,
    display_name  text,
    email         text,
    active        boolean,
    time_zone     text,
    locale        text,
    raw           jsonb       NOT NULL,
    synced_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, account_id)
);

CREATE TABLE jira.audit_records (
    site               text        NOT NULL,
    id                 bigint      NOT NULL,
    created            timestamptz NOT NULL,
    category           text,
    summary            text,
    description        text,
    event_source       text,
    author_account_id  text,
    remote_address     text,
    object_item        jsonb,
    changed_values     jsonb,
    associated_items   jsonb,
    raw                jsonb       NOT NULL,
    synced_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, id)
);
CREATE INDEX audit_records_created_idx ON jira.audit_records (site, created);

-- One checkpoint per site and stream: versioned JSON, written in the same transaction as the
-- page it covers.
CREATE TABLE jira.sync_state (
    site        text        NOT NULL,
    stream      text        NOT NULL,
    checkpoint  jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, stream)
);

-- One row per stream run.
CREATE TABLE jira.sync_runs (
    id            bigserial   PRIMARY KEY,
    site          text        NOT NULL,
    stream        text        NOT NULL,
    mode          text        NOT NULL CHECK (mode IN ('full', 'incremental')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    status        text        NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    rows_seen     bigint      NOT NULL DEFAULT 0,
    rows_written  bigint      NOT NULL DEFAULT 0,
    requests      bigint      NOT NULL DEFAULT 0,
    error         text
);
CREATE INDEX sync_runs_stream_idx ON jira.sync_runs (site, stream, started_at DESC);

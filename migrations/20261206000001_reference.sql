-- Reference data: the vocabularies issues point into, and each project's components and
-- versions. Each table is refreshed whole by a stream of its own; a row Jira no longer lists is
-- marked `deleted_at`, never deleted. Keyed by site first; `raw` keeps the record as Jira sent it.

-- Every field, system and custom, keyed by its string id (`summary`, `customfield_10020`).
CREATE TABLE jira.fields (
    site           text        NOT NULL,
    id             text        NOT NULL,
    key            text,
    name           text,
    custom         boolean,
    schema_type    text,
    schema_items   text,
    schema_custom  text,
    raw            jsonb       NOT NULL,
    synced_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz,
    PRIMARY KEY (site, id)
);

CREATE TABLE jira.status_categories (
    site        text        NOT NULL,
    id          bigint      NOT NULL,
    key         text,
    name        text,
    color_name  text,
    raw         jsonb       NOT NULL,
    synced_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    PRIMARY KEY (site, id)
);

CREATE TABLE jira.statuses (
    site                text        NOT NULL,
    id                  bigint      NOT NULL,
    name                text,
    description         text,
    status_category_id  bigint,
    raw                 jsonb       NOT NULL,
    synced_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    PRIMARY KEY (site, id)
);

CREATE TABLE jira.issue_types (
    site             text        NOT NULL,
    id               bigint      NOT NULL,
    name             text,
    description      text,
    subtask          boolean,
    hierarchy_level  bigint,
    raw              jsonb       NOT NULL,
    synced_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    PRIMARY KEY (site, id)
);

CREATE TABLE jira.priorities (
    site          text        NOT NULL,
    id            bigint      NOT NULL,
    name          text,
    description   text,
    status_color  text,
    raw           jsonb       NOT NULL,
    synced_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    PRIMARY KEY (site, id)
);

CREATE TABLE jira.resolutions (
    site         text        NOT NULL,
    id           bigint      NOT NULL,
    name         text,
    description  text,
    raw          jsonb       NOT NULL,
    synced_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    PRIMARY KEY (site, id)
);

CREATE TABLE jira.project_categories (
    site         text        NOT NULL,
    id           bigint      NOT NULL,
    name         text,
    description  text,
    raw          jsonb       NOT NULL,
    synced_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    PRIMARY KEY (site, id)
);

CREATE TABLE jira.components (
    site             text        NOT NULL,
    id               bigint      NOT NULL,
    project_id       bigint,
    name             text,
    description      text,
    lead_account_id  text,
    raw              jsonb       NOT NULL,
    synced_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    PRIMARY KEY (site, id)
);
CREATE INDEX components_project_idx ON jira.components (site, project_id);

CREATE TABLE jira.versions (
    site          text        NOT NULL,
    id            bigint      NOT NULL,
    project_id    bigint,
    name          text,
    description   text,
    archived      boolean,
    released      boolean,
    start_date    date,
    release_date  date,
    raw           jsonb       NOT NULL,
    synced_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    PRIMARY KEY (site, id)
);
CREATE INDEX versions_project_idx ON jira.versions (site, project_id);

-- The Agile API's boards, and every scrum board's sprints (closed ones included), keyed by
-- sprint id: a sprint shows on every board holding its issues; `origin_board_id` is its own.
CREATE TABLE jira.boards (
    site        text        NOT NULL,
    id          bigint      NOT NULL,
    name        text,
    type        text,
    project_id  bigint,
    raw         jsonb       NOT NULL,
    synced_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    PRIMARY KEY (site, id)
);

CREATE TABLE jira.sprints (
    site             text        NOT NULL,
    id               bigint      NOT NULL,
    origin_board_id  bigint,
    name             text,
    state            text,
    goal             text,
    start_date       timestamptz,
    end_date         timestamptz,
    complete_date    timestamptz,
    created_date     timestamptz,
    raw              jsonb       NOT NULL,
    synced_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    PRIMARY KEY (site, id)
);
CREATE INDEX sprints_board_idx ON jira.sprints (site, origin_board_id);

-- Organization audit events from the Atlassian Admin API (events-stream): who logged in, who
-- changed permissions, which API keys were created, across every product of the organization.
-- Keyed by the organization, not the site: several sites of one organization share these rows.

CREATE TABLE jira.org_events (
    org_id        text        NOT NULL,
    id            text        NOT NULL,
    time          timestamptz NOT NULL,
    processed_at  timestamptz,
    action        text,
    actor_id      text,
    actor_name    text,
    actor_email   text,
    ip            text,
    product       text,
    message       text,
    context       jsonb,
    container     jsonb,
    raw           jsonb       NOT NULL,
    synced_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);
CREATE INDEX org_events_time_idx ON jira.org_events (org_id, time);

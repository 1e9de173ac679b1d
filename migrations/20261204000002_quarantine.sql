-- Records that cannot be stored as Jira sent them (a field that cannot be read, nesting deeper
-- than jira-sync accepts, a value PostgreSQL refuses) are set aside here instead of stopping
-- their stream: the rest of the page and of the site lands. Each is retried on later runs and
-- removed from here once it is stored.
CREATE TABLE jira.quarantine (
    site        text        NOT NULL,
    stream      text        NOT NULL,
    -- The record's id as Jira gives it (an issue's numeric id, a user's account id), or, for a
    -- record without one, a digest of its text.
    record_id   text        NOT NULL,
    record_key  text,
    error       text        NOT NULL,
    -- The record as Jira sent it (NUL characters and lone surrogates replaced; see the README).
    raw_text    text        NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    attempts    integer     NOT NULL DEFAULT 1,
    PRIMARY KEY (site, stream, record_id)
);

ALTER TABLE jira.sync_runs ADD COLUMN set_aside bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN jira.sync_runs.set_aside IS 'records the run put in jira.quarantine';

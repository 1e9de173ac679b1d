-- The writer lease's fencing token. A process that takes a site's advisory lock (the daemon, or
-- `sync --once`) bumps the site's epoch and records who it is; every page it writes checks, in
-- its own transaction, that the epoch is still the one it took. A writer whose lock connection
-- died can then commit nothing once another process has taken over.
CREATE TABLE jira.writer_leases (
    site         text        PRIMARY KEY,
    epoch        bigint      NOT NULL,
    holder       text        NOT NULL,
    acquired_at  timestamptz NOT NULL DEFAULT now()
);


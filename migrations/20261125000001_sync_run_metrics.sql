-- What each run asked of Jira and how long it was held back: typed columns for the figures
-- people filter and chart on, and the full counters (requests by endpoint and status class,
-- retries, 429s, site pauses, waits on the limiter, adaptive pacing, Retry-After and backoff)
-- as `metrics`. `requests` stays the number of logical requests the streams made; `metrics`
-- counts every HTTP attempt, retries included.

ALTER TABLE jira.sync_runs
    ADD COLUMN http_requests       bigint NOT NULL DEFAULT 0,
    ADD COLUMN retries             bigint NOT NULL DEFAULT 0,
    ADD COLUMN throttled           bigint NOT NULL DEFAULT 0,
    ADD COLUMN limiter_wait_ms     bigint NOT NULL DEFAULT 0,
    ADD COLUMN retry_after_wait_ms bigint NOT NULL DEFAULT 0,
    ADD COLUMN metrics             jsonb;

COMMENT ON COLUMN jira.sync_runs.throttled IS '429 responses';
COMMENT ON COLUMN jira.sync_runs.limiter_wait_ms IS
    'time requests waited for the steady-rate limiter and adaptive pacing, summed over requests';
COMMENT ON COLUMN jira.sync_runs.retry_after_wait_ms IS
    'time requests waited because Jira asked for it (Retry-After, quota reset), summed';

-- What authenticating to a site needs to remember between runs: the cloudId the API gateway
-- addresses the site by (auth = "scoped" or "oauth"), and the current OAuth 2.0 refresh token.
-- Refresh tokens rotate on every use, so the latest one must survive restarts; it is written in
-- the same statement that learns it, before the access token it came with is used. When
-- jira.token_encryption_key is set the token is stored encrypted (refresh_token_encrypted).

CREATE TABLE jira.credentials (
    site                     text        PRIMARY KEY,
    cloud_id                 text,
    refresh_token            text,
    refresh_token_encrypted  boolean     NOT NULL DEFAULT false,
    refreshed_at             timestamptz,
    updated_at               timestamptz NOT NULL DEFAULT now()
);

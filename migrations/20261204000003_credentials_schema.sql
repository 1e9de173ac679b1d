-- Credentials get a schema of their own: BI roles granted the `jira` schema (every table of
-- synced data) see nothing of the cached cloudId and the OAuth refresh token.
CREATE SCHEMA IF NOT EXISTS jira_secrets;
ALTER TABLE jira.credentials SET SCHEMA jira_secrets;

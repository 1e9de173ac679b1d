//! The only code that writes SQL: the pool, migrations, batched upserts, checkpoints and the
//! run history.
//!
//! Every write of a page happens in one transaction together with the stream's checkpoint, so a
//! crash at any instant leaves rows and cursor consistent. The store knows nothing of Jira's
//! JSON: streams hand it row types ([`rows`]).

pub mod checkpoints;
pub mod credentials;
pub mod rows;
pub mod runs;
mod upserts;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

pub use checkpoints::CheckpointWrite;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects to `url` with at most `max_connections` connections.
    pub async fn connect(url: &SecretString, max_connections: u32) -> anyhow::Result<Store> {
        let options = PgConnectOptions::from_str(url.expose_secret()).map_err(|err| {
            anyhow::anyhow!(
                "database.url is not a valid PostgreSQL URL: {}",
                redact(&err.to_string(), url)
            )
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|err| {
                anyhow::Error::new(err).context(format!(
                    "cannot connect to PostgreSQL at {}: check database.url (or DATABASE_URL), \
                     that the server runs and that the role may log in",
                    describe_url(url)
                ))
            })?;
        Ok(Store { pool })
    }

    /// Wraps an existing pool (tests and the demo).
    pub fn from_pool(pool: PgPool) -> Store {
        Store { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations. sqlx takes an advisory lock, so replicas may start together.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .context("cannot apply the database migrations")?;
        Ok(())
    }

    pub async fn begin(&self) -> anyhow::Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

/// `jira-sync migrate`: applies the migrations in `migrations/`.
pub async fn migrate_command(settings: &crate::config::Settings) -> anyhow::Result<()> {
    let store = connect_from_settings(settings).await?;
    store.migrate().await?;
    tracing::info!(database = %describe_url(database_url(settings)?), "migrations applied");
    Ok(())
}

/// Connects using `[database]` settings, with an actionable error when no URL is configured.
pub async fn connect_from_settings(settings: &crate::config::Settings) -> anyhow::Result<Store> {
    let url = database_url(settings)?;
    Store::connect(url, settings.database.max_connections).await
}

fn database_url(settings: &crate::config::Settings) -> anyhow::Result<&SecretString> {
    Ok(settings.database.require_url()?)
}

/// `host:port/database` of a connection URL, without user or password, for messages.
pub fn describe_url(url: &SecretString) -> String {
    match url::Url::parse(url.expose_secret()) {
        Ok(u) => format!(
            "{}:{}{}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(5432),
            u.path()
        ),
        Err(_) => "(unparsable URL)".to_string(),
    }
}

/// Removes the URL's password from `text`, should a driver message quote it.
fn redact(text: &str, url: &SecretString) -> String {
    match url::Url::parse(url.expose_secret()) {
        Ok(u) => match u.password() {
            Some(p) if !p.is_empty() => text.replace(p, "[REDACTED]"),
            _ => text.to_string(),
        },
        Err(_) => text.to_string(),
    }
}

impl Store {
    /// Upserts projects in one transaction; returns the rows that changed.
    pub async fn write_projects(
        &self,
        site: &str,
        rows: &[rows::ProjectRow],
    ) -> anyhow::Result<u64> {
        let mut tx = self.begin().await?;
        let written = upserts::upsert_projects(&mut tx, site, rows).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Soft-deletes the projects not in `seen` (a full project listing).
    pub async fn mark_projects_deleted(&self, site: &str, seen: &[i64]) -> anyhow::Result<u64> {
        let mut tx = self.begin().await?;
        let marked = upserts::mark_projects_deleted(&mut tx, site, seen).await?;
        tx.commit().await?;
        Ok(marked)
    }

    /// Number of projects of `site` not yet soft-deleted.
    pub async fn count_live_projects(&self, site: &str) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM jira.projects WHERE site = $1 AND deleted_at IS NULL",
        )
        .bind(site)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Number of live projects of `site` whose id is not in `seen`.
    pub async fn count_projects_missing(&self, site: &str, seen: &[i64]) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM jira.projects \
             WHERE site = $1 AND deleted_at IS NULL AND NOT (id = ANY($2::int8[]))",
        )
        .bind(site)
        .bind(seen)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Upserts a page of issues and applies the checkpoint change in the same transaction.
    pub async fn write_issue_page(
        &self,
        site: &str,
        mut rows: Vec<rows::IssueRow>,
        checkpoint: &CheckpointWrite,
    ) -> anyhow::Result<u64> {
        upserts::dedupe_issues(&mut rows);
        let mut tx = self.begin().await?;
        let written = upserts::upsert_issues(&mut tx, site, &rows).await?;
        checkpoints::apply(&mut tx, site, checkpoint).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Ids of the issues stored for a project and not marked deleted.
    pub async fn live_issue_ids(&self, site: &str, project_id: i64) -> anyhow::Result<Vec<i64>> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM jira.issues WHERE site = $1 AND project_id = $2 AND deleted_at IS NULL",
        )
        .bind(site)
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Soft-deletes issues (never `DELETE`): sets `deleted_at` where it is not set yet.
    pub async fn mark_issues_deleted(&self, site: &str, ids: &[i64]) -> anyhow::Result<u64> {
        let result = sqlx::query(
            "UPDATE jira.issues SET deleted_at = now() \
             WHERE site = $1 AND id = ANY($2::int8[]) AND deleted_at IS NULL",
        )
        .bind(site)
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// Upserts a page of users in one transaction.
    pub async fn write_users(&self, site: &str, rows: &[rows::UserRow]) -> anyhow::Result<u64> {
        let mut tx = self.begin().await?;
        let written = upserts::upsert_users(&mut tx, site, rows).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Writes a page of organization events and the checkpoint change in the same transaction.
    /// Events are keyed by organization; the checkpoint, like every other, by site.
    pub async fn write_org_events_page(
        &self,
        site: &str,
        org_id: &str,
        mut rows: Vec<rows::OrgEventRow>,
        checkpoint: &CheckpointWrite,
    ) -> anyhow::Result<u64> {
        upserts::dedupe_org_events(&mut rows);
        let mut tx = self.begin().await?;
        let written = upserts::upsert_org_events(&mut tx, org_id, &rows).await?;
        checkpoints::apply(&mut tx, site, checkpoint).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Writes a page of audit records and the checkpoint change in the same transaction.
    pub async fn write_audit_page(
        &self,
        site: &str,
        rows: &[rows::AuditRow],
        checkpoint: &CheckpointWrite,
    ) -> anyhow::Result<u64> {
        let mut tx = self.begin().await?;
        let written = upserts::upsert_audit(&mut tx, site, rows).await?;
        checkpoints::apply(&mut tx, site, checkpoint).await?;
        tx.commit().await?;
        Ok(written)
    }
}

//! The only code that speaks SQL, reads included: the pool, migrations, table writes, soft
//! deletes, checkpoints, the run history, the credentials row, the writer lease's lock and the
//! reads behind `jira-sync status`.
//!
//! Every write of a page happens in one transaction together with the stream's checkpoint
//! change ([`Store::write_page`]), so a crash at any instant leaves rows and cursor consistent.
//! The store knows nothing of Jira's JSON: streams describe their tables ([`table::Table`]) and
//! hand it rows of typed cells.

pub mod checkpoints;
pub mod credentials;
pub mod lease;
pub mod runs;
pub mod status;
pub mod table;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

pub use checkpoints::CheckpointWrite;
pub use table::{Batch, Cell, Row, Table};

use crate::failure::Failure;
use crate::settings::DatabaseSettings;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

/// A page of rows, and the checkpoint change that covers them: written in one transaction.
/// The batches may belong to several tables (an issue page and its issues' child records).
pub struct PageWrite {
    pub batches: Vec<Batch>,
    pub checkpoint: CheckpointWrite,
}

impl PageWrite {
    /// One batch and the checkpoint change that covers it.
    pub fn new(batch: Batch, checkpoint: CheckpointWrite) -> PageWrite {
        PageWrite {
            batches: vec![batch],
            checkpoint,
        }
    }
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

    /// Connects as `[database]` says, with an actionable error when no URL is configured.
    pub async fn open(database: &DatabaseSettings) -> anyhow::Result<Store> {
        Store::connect(database.require_url()?, database.max_connections).await
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

    /// The migrations this binary carries that the database has not applied (each one, not
    /// just the latest: a migration added out of order must be applied too), as
    /// `version description`.
    pub async fn missing_migrations(&self) -> anyhow::Result<Vec<String>> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?;
        Ok(MIGRATOR
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect())
    }

    async fn begin(&self) -> anyhow::Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// Writes a page: every batch, then the checkpoint change, in one transaction. Returns the
    /// rows that changed.
    pub async fn write_page(&self, site: &str, page: PageWrite) -> anyhow::Result<u64> {
        let mut tx = self.begin().await?;
        let mut written = 0;
        for batch in page.batches {
            written += batch.write(&mut tx).await?;
        }
        // Last, so the checkpoint row is locked only for the moment before the commit.
        checkpoints::apply(&mut tx, site, page.checkpoint).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Writes rows without a checkpoint (full refreshes).
    pub async fn write(&self, batch: Batch) -> anyhow::Result<u64> {
        self.write_page("", PageWrite::new(batch, CheckpointWrite::None))
            .await
    }

    /// The numeric ids of the rows of `table` owned by `site` whose `column` is `value` and
    /// that are not marked deleted (the live issues of a project, say).
    pub async fn live_ids_where(
        &self,
        table: &'static Table,
        site: &str,
        column: &'static str,
        value: i64,
    ) -> anyhow::Result<Vec<i64>> {
        let sql = format!(
            "SELECT id FROM {} WHERE {} = $1 AND {column} = $2 AND deleted_at IS NULL",
            table.name,
            table.owner.column()
        );
        let rows: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(site)
            .bind(value)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Soft-deletes (never `DELETE`s) the rows of `table` with these ids: sets `deleted_at`
    /// where it is not set yet. Returns how many it marked.
    pub async fn mark_deleted(
        &self,
        table: &'static Table,
        site: &str,
        ids: &[i64],
    ) -> anyhow::Result<u64> {
        let sql = format!(
            "UPDATE {} SET deleted_at = now() \
             WHERE {} = $1 AND id = ANY($2::int8[]) AND deleted_at IS NULL",
            table.name,
            table.owner.column()
        );
        let result = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(site)
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    /// How many live rows of `table` `site` has, and how many of them have an id not in
    /// `seen` (a full listing): what a full refresh would mark deleted.
    pub async fn count_missing(
        &self,
        table: &'static Table,
        site: &str,
        seen: &[i64],
    ) -> anyhow::Result<(i64, i64)> {
        let sql = format!(
            "SELECT count(*), count(*) FILTER (WHERE NOT (id = ANY($2::int8[]))) FROM {} \
             WHERE {} = $1 AND deleted_at IS NULL",
            table.name,
            table.owner.column()
        );
        let counts: (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(site)
            .bind(seen)
            .fetch_one(&self.pool)
            .await?;
        Ok(counts)
    }

    /// Soft-deletes the live rows of `table` whose id is not in `seen` (a full listing).
    pub async fn mark_missing_deleted(
        &self,
        table: &'static Table,
        site: &str,
        seen: &[i64],
    ) -> anyhow::Result<u64> {
        let sql = format!(
            "UPDATE {} SET deleted_at = now() \
             WHERE {} = $1 AND deleted_at IS NULL AND NOT (id = ANY($2::int8[]))",
            table.name,
            table.owner.column()
        );
        let result = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(site)
            .bind(seen)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }
}

/// Whether `err` is the database's: a failed statement, connection or migration.
pub fn failure_of(err: &(dyn std::error::Error + 'static)) -> Option<Failure> {
    let database = err.is::<sqlx::Error>() || err.is::<sqlx::migrate::MigrateError>();
    database.then_some(Failure::Database)
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

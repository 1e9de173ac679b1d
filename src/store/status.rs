//! The reads behind `jira-sync status` and the daemon's schedule: runs, checkpoints, row
//! counts and the writer lease, on one connection of their own, so they work while a daemon
//! writes, after it stopped, and when Jira is down.

use super::table::Table;
use crate::settings::DatabaseSettings;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use std::collections::HashMap;

/// The last run of a stream, as `jira.sync_runs` holds it.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub stream: String,
    /// `running`, `succeeded`, `failed` or `skipped`.
    pub status: String,
    pub mode: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub rows_seen: i64,
    pub rows_written: i64,
    pub requests: i64,
}

/// Which rows of a table count as a stream's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Not marked deleted (every row of a table without soft deletes).
    Live,
    /// Marked deleted.
    Deleted,
}

/// The rows of `table` owned by `owner` (a site, or an organization) that `which` selects.
#[derive(Debug, Clone)]
pub struct Count {
    pub table: &'static Table,
    pub owner: String,
    pub which: Which,
}

/// A connection for reading the status of one site.
pub struct StatusReader {
    conn: PgConnection,
}

impl StatusReader {
    pub async fn open(database: &DatabaseSettings) -> anyhow::Result<StatusReader> {
        Ok(StatusReader {
            conn: super::lease::connect_one(database).await?,
        })
    }

    /// Whether the database has been migrated at all.
    pub async fn migrated(&mut self) -> anyhow::Result<bool> {
        Ok(
            sqlx::query_scalar("SELECT to_regclass('jira.sync_runs') IS NOT NULL")
                .fetch_one(&mut self.conn)
                .await?,
        )
    }

    pub async fn last_successes(
        &mut self,
        site: &str,
    ) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
        last_successes(&mut self.conn, site).await
    }

    /// The latest run of each stream of `site`.
    pub async fn last_runs(&mut self, site: &str) -> anyhow::Result<HashMap<String, RunRow>> {
        type Raw = (
            String,
            String,
            String,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            Option<String>,
            i64,
            i64,
            i64,
        );
        let rows: Vec<Raw> = sqlx::query_as(
            "SELECT DISTINCT ON (stream) stream, status, mode, started_at, finished_at, error, \
             rows_seen, rows_written, requests FROM jira.sync_runs WHERE site = $1 \
             ORDER BY stream, started_at DESC, id DESC",
        )
        .bind(site)
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let run = RunRow {
                    stream: r.0.clone(),
                    status: r.1,
                    mode: r.2,
                    started_at: r.3,
                    finished_at: r.4,
                    error: r.5,
                    rows_seen: r.6,
                    rows_written: r.7,
                    requests: r.8,
                };
                (r.0, run)
            })
            .collect())
    }

    /// Every checkpoint document of `site`, by stream.
    pub async fn checkpoints(&mut self, site: &str) -> anyhow::Result<HashMap<String, Value>> {
        let rows: Vec<(String, Value)> =
            sqlx::query_as("SELECT stream, checkpoint FROM jira.sync_state WHERE site = $1")
                .bind(site)
                .fetch_all(&mut self.conn)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// How many records of each stream of `site` are held in `jira.quarantine`.
    pub async fn quarantined(&mut self, site: &str) -> anyhow::Result<HashMap<String, i64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT stream, count(*) FROM jira.quarantine WHERE site = $1 GROUP BY stream",
        )
        .bind(site)
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Who holds the writer lease of `site` now, if anyone does.
    pub async fn writer(&mut self, site: &str) -> anyhow::Result<Option<String>> {
        super::lease::holder(&mut self.conn, site).await
    }

    /// The number of rows `count` selects.
    pub async fn count(&mut self, count: &Count) -> anyhow::Result<i64> {
        let table = count.table;
        let filter = match (count.which, table.soft_delete) {
            (Which::Live, true) => " AND deleted_at IS NULL",
            (Which::Live, false) => "",
            (Which::Deleted, true) => " AND deleted_at IS NOT NULL",
            (Which::Deleted, false) => " AND false",
        };
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {} = $1{filter}",
            table.name,
            table.owner.column()
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&count.owner)
            .fetch_one(&mut self.conn)
            .await?)
    }

    /// How many live issues of `site` have records of `child` that are not current (to be
    /// read by the next issues run).
    pub async fn count_behind(&mut self, site: &str, child: &str) -> anyhow::Result<i64> {
        let sql = format!(
            "SELECT count(*) FROM jira.issues i \
             LEFT JOIN jira.issue_child_sync s \
               ON s.site = i.site AND s.child = $2 AND s.issue_id = i.id \
             WHERE i.site = $1 AND i.deleted_at IS NULL AND {}",
            super::children::Behind::NotCurrent.condition()
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(site)
            .bind(child)
            .fetch_one(&mut self.conn)
            .await?)
    }

    /// Whether a `jira-sync run` holds the writer lease of `site`.
    pub async fn writer_active(&mut self, site: &str) -> anyhow::Result<bool> {
        super::lease::is_held(&mut self.conn, site).await
    }
}

/// When each stream of `site` last finished a run successfully.
pub async fn last_successes<'e>(
    db: impl PgExecutor<'e>,
    site: &str,
) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT stream, max(finished_at) FROM jira.sync_runs \
         WHERE site = $1 AND status = 'succeeded' AND finished_at IS NOT NULL GROUP BY stream",
    )
    .bind(site)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().collect())
}

impl super::Store {
    /// When each stream of `site` last finished a run successfully.
    pub async fn last_successes(
        &self,
        site: &str,
    ) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
        last_successes(self.pool(), site).await
    }

    /// How many rows each of `tables` holds, in order (the demo's summary).
    pub async fn table_sizes(&self, tables: &[&'static Table]) -> anyhow::Result<Vec<i64>> {
        let mut sizes = Vec::with_capacity(tables.len());
        for table in tables {
            let sql = format!("SELECT count(*) FROM {}", table.name);
            sizes.push(
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(self.pool())
                    .await?,
            );
        }
        Ok(sizes)
    }
}

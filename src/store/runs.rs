//! The run history in `jira.sync_runs`: one row per stream run, opened when the run starts so a
//! crash leaves a visible `running` row behind.

use super::Store;

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunRecord<'a> {
    pub status: &'a str,
    pub rows_seen: u64,
    pub rows_written: u64,
    pub requests: u64,
    pub error: Option<&'a str>,
}

impl Store {
    /// Opens a run row and returns its id.
    pub async fn start_run(&self, site: &str, stream: &str, mode: &str) -> anyhow::Result<i64> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO jira.sync_runs (site, stream, mode, status) VALUES ($1, $2, $3, 'running') RETURNING id",
        )
        .bind(site)
        .bind(stream)
        .bind(mode)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn finish_run(&self, id: i64, record: &RunRecord<'_>) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE jira.sync_runs SET finished_at = now(), status = $2, rows_seen = $3, \
             rows_written = $4, requests = $5, error = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(record.status)
        .bind(i64::try_from(record.rows_seen).unwrap_or(i64::MAX))
        .bind(i64::try_from(record.rows_written).unwrap_or(i64::MAX))
        .bind(i64::try_from(record.requests).unwrap_or(i64::MAX))
        .bind(record.error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

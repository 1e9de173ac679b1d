//! The run history in `jira.sync_runs`: one row per stream run, opened when the run starts so a
//! crash leaves a visible `running` row behind, and closed with what the run did, including its
//! HTTP metrics.

use super::Store;
use sqlx::PgConnection;

/// What a finished run reports.
#[derive(Debug, Clone, Default)]
pub struct RunRecord<'a> {
    pub status: &'a str,
    pub rows_seen: u64,
    pub rows_written: u64,
    /// Records set aside in `jira.quarantine`.
    pub set_aside: u64,
    /// Rows of other tables written with the stream's own: (table, read, written).
    pub tables: &'a [(&'static str, u64, u64)],
    pub requests: u64,
    pub error: Option<&'a str>,
    /// The run's HTTP counters.
    pub http: HttpRecord,
}

/// The HTTP columns of a run's row; all zero and no `metrics` document when none were kept.
#[derive(Debug, Clone, Default)]
pub struct HttpRecord {
    pub requests: u64,
    pub retries: u64,
    /// 429 responses.
    pub throttled: u64,
    /// Waits for the steady-rate limiter and adaptive pacing, summed over requests.
    pub limiter_wait_ms: u64,
    /// Waits Jira asked for (`Retry-After`, quota resets), summed.
    pub retry_after_wait_ms: u64,
    /// Every counter, by endpoint and status class (`jira.sync_runs.metrics`).
    pub metrics: Option<serde_json::Value>,
}

/// `{"jira.comments": {"rows": 12, "written": 3}, …}`, or nothing when there are none.
fn tables_document(tables: &[(&'static str, u64, u64)]) -> Option<serde_json::Value> {
    (!tables.is_empty()).then(|| {
        tables
            .iter()
            .map(|(table, rows, written)| {
                (
                    (*table).to_owned(),
                    serde_json::json!({"rows": rows, "written": written}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    })
}

const FINISH: &str = "UPDATE jira.sync_runs SET finished_at = now(), status = $2, rows_seen = $3, \
     rows_written = $4, requests = $5, error = $6, http_requests = $7, retries = $8, \
     throttled = $9, limiter_wait_ms = $10, retry_after_wait_ms = $11, metrics = $12, \
     set_aside = $13, tables = $14 WHERE id = $1";

/// Closes as failed the runs of `site` still marked `running`, on `conn` (the writer lease's
/// own connection: only the lease holder may call it, since nobody else can be running them
/// then). Returns how many it closed.
pub async fn close_abandoned_runs(conn: &mut PgConnection, site: &str) -> sqlx::Result<u64> {
    let closed = sqlx::query(
        "UPDATE jira.sync_runs SET status = 'failed', finished_at = now(), \
         error = 'abandoned: the jira-sync process running it stopped without finishing it' \
         WHERE site = $1 AND status = 'running'",
    )
    .bind(site)
    .execute(conn)
    .await?;
    Ok(closed.rows_affected())
}

impl Store {
    /// Opens a run row and returns its id.
    pub async fn start_run(&self, site: &str, stream: &str, mode: &str) -> anyhow::Result<i64> {
        self.bounded(async {
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO jira.sync_runs (site, stream, mode, status) \
                 VALUES ($1, $2, $3, 'running') RETURNING id",
            )
            .bind(site)
            .bind(stream)
            .bind(mode)
            .fetch_one(self.pool())
            .await?;
            Ok(id)
        })
        .await
    }

    pub async fn finish_run(&self, id: i64, record: &RunRecord<'_>) -> anyhow::Result<()> {
        let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let http = &record.http;
        sqlx::query(FINISH)
            .bind(id)
            .bind(record.status)
            .bind(big(record.rows_seen))
            .bind(big(record.rows_written))
            .bind(big(record.requests))
            .bind(record.error)
            .bind(big(http.requests))
            .bind(big(http.retries))
            .bind(big(http.throttled))
            .bind(big(http.limiter_wait_ms))
            .bind(big(http.retry_after_wait_ms))
            .bind(&http.metrics)
            .bind(big(record.set_aside))
            .bind(tables_document(record.tables))
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

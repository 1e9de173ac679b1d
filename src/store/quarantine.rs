//! `jira.quarantine`: records that cannot be stored as Jira sent them, set aside in the
//! transaction of the page they came with (so the cursor never passes a record that is in
//! neither its table nor here), retried on later runs, and removed once stored.

use super::Store;
use sqlx::PgConnection;
use std::collections::HashMap;

/// A record set aside.
#[derive(Debug, Clone, PartialEq)]
pub struct SetAside {
    pub stream: &'static str,
    /// The record's id as Jira gives it, or a digest of its text when it has none.
    pub record_id: String,
    pub record_key: Option<String>,
    /// Why it cannot be stored.
    pub error: String,
    /// The record as Jira sent it.
    pub raw_text: String,
}

/// A record in quarantine, as a retry reads it.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub record_id: String,
    pub record_key: Option<String>,
    pub raw_text: String,
    pub attempts: i32,
}

const UPSERT: &str = "INSERT INTO jira.quarantine AS q (site, stream, record_id, record_key, \
     error, raw_text) SELECT $1, $2, u.id, u.key, u.error, u.raw \
     FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[]) AS u(id, key, error, raw) \
     ON CONFLICT (site, stream, record_id) DO UPDATE SET record_key = excluded.record_key, \
     error = excluded.error, raw_text = excluded.raw_text, last_seen = now(), \
     attempts = q.attempts + 1";

/// Files `records` (one stream's) in quarantine, or counts another attempt of those already in.
pub(super) async fn set_aside(
    conn: &mut PgConnection,
    site: &str,
    records: &[SetAside],
) -> sqlx::Result<()> {
    let mut by_stream: HashMap<&str, Vec<&SetAside>> = HashMap::new();
    for record in records {
        by_stream.entry(record.stream).or_default().push(record);
    }
    for (stream, records) in by_stream {
        // One row per id: a page can repeat a record.
        let mut seen = std::collections::HashSet::new();
        let records: Vec<&SetAside> = records
            .into_iter()
            .rev()
            .filter(|r| seen.insert(r.record_id.as_str()))
            .collect();
        sqlx::query(UPSERT)
            .bind(site)
            .bind(stream)
            .bind(
                records
                    .iter()
                    .map(|r| r.record_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                records
                    .iter()
                    .map(|r| r.record_key.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(records.iter().map(|r| r.error.as_str()).collect::<Vec<_>>())
            .bind(
                records
                    .iter()
                    .map(|r| r.raw_text.as_str())
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Takes the records `ids` of `stream` out of quarantine: they are stored now.
pub(super) async fn resolve(
    conn: &mut PgConnection,
    site: &str,
    stream: &str,
    ids: &[String],
) -> sqlx::Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "DELETE FROM jira.quarantine WHERE site = $1 AND stream = $2 AND record_id = ANY($3)",
    )
    .bind(site)
    .bind(stream)
    .bind(ids)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

impl Store {
    /// The records of `stream` in quarantine, oldest first.
    pub async fn quarantined(&self, site: &str, stream: &str) -> anyhow::Result<Vec<Quarantined>> {
        let rows: Vec<(String, Option<String>, String, i32)> = sqlx::query_as(
            "SELECT record_id, record_key, raw_text, attempts FROM jira.quarantine \
             WHERE site = $1 AND stream = $2 ORDER BY first_seen, record_id",
        )
        .bind(site)
        .bind(stream)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(record_id, record_key, raw_text, attempts)| Quarantined {
                record_id,
                record_key,
                raw_text,
                attempts,
            })
            .collect())
    }

    /// Takes records of `stream` out of quarantine that are gone from Jira (nothing to store).
    pub async fn drop_quarantined(
        &self,
        site: &str,
        stream: &str,
        ids: &[String],
    ) -> anyhow::Result<u64> {
        let mut tx = self.begin_write().await?;
        let done = resolve(&mut tx, site, stream, ids).await?;
        tx.commit().await?;
        Ok(done)
    }
}
